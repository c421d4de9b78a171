//! The cluster-wide sections: name, os, SSH keys, etcd, flannel, Docker, BOSH.

use ipnet::Ipv4Net;
use molten_contract::snapshots::{self, SnapshotSettings};
use molten_contract::{BoshSettings, DockerSettings, FlannelSettings, OsVariant};

use super::defaults as d;
use super::raw::{RawEtcd, RawFlannel, RawOs, RawProfile, RawSnapshots, Sp};
use super::report::{At, Report};
use super::values;
use crate::model::{Etcd, Flannel, Runtime};

/// A value with the place it came from (the section's place when it was a default).
pub(crate) struct Placed<T> {
    pub value: T,
    pub at: At,
    /// Whether the profile wrote it (as opposed to a default).
    pub written: bool,
}

/// A key of an optional section: the written value, or the default placed at the section.
fn placed<T: Clone>(value: Option<&Sp<T>>, section: &At, key: &str, default: T) -> Placed<T> {
    match value {
        Some(v) => Placed {
            value: (**v).clone(),
            at: At::of(section.child(key).path, v),
            written: true,
        },
        None => Placed {
            value: default,
            at: section.child(key),
            written: false,
        },
    }
}

/// Where a section is, or `$.<key>` without position when it was left out.
pub(crate) fn section_at<T>(key: &str, value: Option<&Sp<T>>) -> At {
    match value {
        Some(v) => At::of(format!("$.{key}"), v),
        None => At::new(format!("$.{key}"), (0, 0)),
    }
}

pub(crate) fn os(raw: &RawProfile) -> OsVariant {
    match raw.os.as_deref() {
        Some(RawOs::Debian) => OsVariant::Debian,
        Some(RawOs::Flatcar) | None => OsVariant::Flatcar,
    }
}

pub(crate) fn name(raw: &RawProfile, report: &mut Report) -> String {
    if let Err(message) = values::dns_label(&raw.name) {
        report.error(
            &At::of("$.name", &raw.name),
            format!("cluster name {message}"),
        );
    }
    raw.name.to_string()
}

pub(crate) fn ssh_keys(raw: &RawProfile, report: &mut Report) -> Vec<String> {
    if raw.ssh_authorized_keys.is_empty() {
        report.warn(
            &At::new("$.ssh_authorized_keys", (0, 0)),
            "no ssh_authorized_keys: nobody can log in to the nodes as `core`",
        );
    }
    let mut keys = Vec::new();
    for (i, key) in raw.ssh_authorized_keys.iter().enumerate() {
        let at = At::of(format!("$.ssh_authorized_keys[{i}]"), key);
        let line = key.trim();
        match values::ssh_public_key(line) {
            Ok(()) if keys.iter().any(|k: &String| k == line) => {
                report.warn(&at, "this key is listed twice");
            }
            Ok(()) => keys.push(line.to_string()),
            Err(message) => report.error(&at, message),
        }
    }
    keys
}

/// How etcd or flanneld runs on `os`: a pinned image on Flatcar, a binary on Debian.
fn runtime(
    component: &str,
    os: OsVariant,
    image: Option<&Sp<String>>,
    binary: Option<&Sp<String>>,
    section: &At,
    defaults: (&str, &str),
    report: &mut Report,
) -> Runtime {
    let (default_image, default_binary) = defaults;
    match os {
        OsVariant::Flatcar => {
            if let Some(binary) = binary {
                report.error(
                    &At::of(section.child("binary").path, binary),
                    format!("{component}.binary is for os debian; on flatcar {component} runs from {component}.image"),
                );
            }
            let image = placed(image, section, "image", default_image.to_string());
            match values::pinned_image(&image.value) {
                Ok(tag) if component == "flannel" => check_flannel_tag(tag, &image, report),
                Ok(_) => {}
                Err(message) => report.error(&image.at, message),
            }
            Runtime::Container { image: image.value }
        }
        OsVariant::Debian => {
            if let Some(image) = image {
                report.error(
                    &At::of(section.child("image").path, image),
                    format!("{component}.image is for os flatcar; on debian {component} runs from {component}.binary"),
                );
            }
            let binary = placed(binary, section, "binary", default_binary.to_string());
            if let Err(message) = values::absolute_path(&binary.value) {
                report.error(&binary.at, message);
            }
            Runtime::Binary { path: binary.value }
        }
    }
}

fn check_flannel_tag(tag: Option<String>, image: &Placed<String>, report: &mut Report) {
    let Some(tag) = tag else { return };
    if let Some(version) = values::tag_version(&tag) {
        if version < d::FLANNEL_MIN_VERSION {
            report.error(
                &image.at,
                format!(
                    "flannel {tag} speaks only the etcd v2 API, which etcd 3.4+ disables; use flannel v{}.{} or newer",
                    d::FLANNEL_MIN_VERSION.0,
                    d::FLANNEL_MIN_VERSION.1
                ),
            );
        }
    }
}

fn port(
    value: Option<&Sp<u16>>,
    section: &At,
    key: &str,
    default: u16,
    report: &mut Report,
) -> Placed<u16> {
    let port = placed(value, section, key, default);
    if port.value == 0 {
        report.error(&port.at, "port 0 is not a usable port");
    }
    port
}

pub(crate) fn etcd(
    raw: &RawProfile,
    os: OsVariant,
    report: &mut Report,
) -> (Etcd, [Placed<u16>; 2]) {
    let empty = RawEtcd::default();
    let section = section_at("etcd", raw.etcd.as_ref());
    let e = raw.etcd.as_deref().unwrap_or(&empty);
    let runtime = runtime(
        "etcd",
        os,
        e.image.as_ref(),
        e.binary.as_ref(),
        &section,
        (d::ETCD_IMAGE, d::ETCD_BINARY),
        report,
    );
    let client = port(
        e.client_port.as_ref(),
        &section,
        "client_port",
        d::ETCD_CLIENT_PORT,
        report,
    );
    let peer = port(
        e.peer_port.as_ref(),
        &section,
        "peer_port",
        d::ETCD_PEER_PORT,
        report,
    );
    let etcd = Etcd {
        runtime,
        client_port: client.value,
        peer_port: peer.value,
        snapshots: etcd_snapshots(e.snapshots.as_ref(), &section, report),
    };
    (etcd, [client, peer])
}

/// `etcd.snapshots`, by the rules the agent checks again ([`SnapshotSettings::check`]).
fn etcd_snapshots(
    raw: Option<&Sp<RawSnapshots>>,
    etcd: &At,
    report: &mut Report,
) -> SnapshotSettings {
    let section = match raw {
        Some(s) => At::of(etcd.child("snapshots").path, s),
        None => etcd.child("snapshots"),
    };
    let empty = RawSnapshots::default();
    let s = raw.map_or(&empty, |s| &**s);
    let schedule = placed(
        s.schedule.as_ref(),
        &section,
        "schedule",
        snapshots::DEFAULT_SCHEDULE.to_string(),
    );
    if let Err(message) = snapshots::check_schedule(&schedule.value) {
        report.error(&schedule.at, message);
    }
    let keep = placed(s.keep.as_ref(), &section, "keep", snapshots::DEFAULT_KEEP);
    if let Err(message) = snapshots::check_keep(keep.value) {
        report.error(&keep.at, message);
    }
    SnapshotSettings {
        schedule: schedule.value,
        keep: keep.value,
    }
}

pub(crate) struct FlannelPlaced {
    pub flannel: Option<Flannel>,
    pub network_at: At,
}

pub(crate) fn flannel(raw: &RawProfile, os: OsVariant, report: &mut Report) -> FlannelPlaced {
    let empty = RawFlannel::default();
    let section = section_at("flannel", raw.flannel.as_ref());
    let f = raw.flannel.as_deref().unwrap_or(&empty);
    let runtime = runtime(
        "flannel",
        os,
        f.image.as_ref(),
        f.binary.as_ref(),
        &section,
        (d::FLANNEL_IMAGE, d::FLANNEL_BINARY),
        report,
    );
    let backend = placed(
        f.backend.as_ref(),
        &section,
        "backend",
        d::FLANNEL_BACKEND.to_string(),
    );
    if backend.value != d::FLANNEL_BACKEND {
        report.error(
            &backend.at,
            format!(
                "flannel backend `{}` is not supported; molten uses `vxlan`",
                backend.value
            ),
        );
    }
    let network = placed(
        f.network.as_ref(),
        &section,
        "network",
        d::FLANNEL_NETWORK.to_string(),
    );
    let subnet_len = placed(
        f.subnet_len.as_ref(),
        &section,
        "subnet_len",
        d::FLANNEL_SUBNET_LEN,
    );
    let parsed = values::cidr(&network.value)
        .map_err(|m| report.error(&network.at, m))
        .ok();
    let flannel = parsed.and_then(|net| {
        let settings = FlannelSettings::new(net, subnet_len.value);
        match settings.zone_capacity() {
            Ok(_) => Some(Flannel { settings, runtime }),
            Err(err) => {
                report.error(&subnet_len.at, err.to_string());
                None
            }
        }
    });
    FlannelPlaced {
        flannel,
        network_at: network.at,
    }
}

pub(crate) fn docker(
    raw: &RawProfile,
    flannel: &FlannelPlaced,
    report: &mut Report,
) -> (Option<DockerSettings>, Placed<u16>) {
    let section = section_at("docker", raw.docker.as_ref());
    let (bridge, tls) = match raw.docker.as_deref() {
        Some(dk) => (dk.bridge_cidr.as_ref(), dk.tls_port.as_ref()),
        None => (None, None),
    };
    let tls_port = port(tls, &section, "tls_port", d::DOCKER_TLS_PORT, report);
    let bridge = placed(
        bridge,
        &section,
        "bridge_cidr",
        d::DOCKER_BRIDGE_CIDR.to_string(),
    );
    let parsed = values::cidr(&bridge.value)
        .map_err(|m| report.error(&bridge.at, m))
        .ok();
    if let (Some(net), Some(f)) = (parsed, &flannel.flannel) {
        if overlaps(net, f.settings.network) {
            // Point at whichever of the two the user wrote.
            let at = if bridge.written {
                &bridge.at
            } else {
                &flannel.network_at
            };
            report.error(
                at,
                format!(
                    "docker.bridge_cidr {net} overlaps flannel.network {}; docker0 must stay off the overlay",
                    f.settings.network
                ),
            );
        }
    }
    let settings = parsed.map(|bridge_cidr| DockerSettings {
        bridge_cidr,
        tls_port: tls_port.value,
    });
    (settings, tls_port)
}

pub(crate) fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The etcd and Docker ports share the node's address, so they must differ.
pub(crate) fn distinct_ports(ports: &[(&str, &Placed<u16>)], report: &mut Report) {
    for (i, (name, port)) in ports.iter().enumerate() {
        if let Some((other, _)) = ports[..i]
            .iter()
            .find(|(_, p)| p.value == port.value && port.value != 0)
        {
            report.error(&port.at, format!("{name} {} is also {other}", port.value));
        }
    }
}

pub(crate) fn bosh(raw: &RawProfile, report: &mut Report) -> BoshSettings {
    let section = section_at("bosh", raw.bosh.as_ref());
    let (enabled, name) = match raw.bosh.as_deref() {
        Some(b) => (b.enabled.as_ref(), b.network_name.as_ref()),
        None => (None, None),
    };
    let enabled = placed(enabled, &section, "enabled", d::BOSH_ENABLED);
    let name = placed(
        name,
        &section,
        "network_name",
        d::BOSH_NETWORK_NAME.to_string(),
    );
    if let Err(message) = values::docker_network_name(&name.value) {
        report.error(&name.at, message);
    }
    BoshSettings {
        enabled: enabled.value,
        network_name: name.value,
    }
}
