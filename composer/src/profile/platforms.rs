//! The `platforms` sections, and what composing for one platform demands of the nodes.

use std::net::Ipv4Addr;
use std::path::Path;

use molten_contract::DockerSettings;

use super::defaults as d;
use super::ipxe_assets;
use super::nodes::{address_problem, Draft};
use super::raw::{RawIpxe, RawPacket, RawProfile, RawVagrant, Sp};
use super::report::{At, Report};
use super::values;
use crate::model::{Flannel, IpxeSettings, PacketSettings, Platform, VagrantSettings};

fn at<T>(path: &str, value: &Sp<T>) -> At {
    At::of(path, value)
}

pub(crate) fn packet(raw: &RawPacket, report: &mut Report) -> PacketSettings {
    let base = "$.platforms.packet";
    let project_at = at(&format!("{base}.project_id"), &raw.project_id);
    if !is_uuid(&raw.project_id) {
        report.error(
            &project_at,
            format!(
                "project_id `{}` is not a UUID",
                values::shorten(&raw.project_id, 40)
            ),
        );
    }
    let metro_ok = (2..=8).contains(&raw.metro.len())
        && raw
            .metro
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !metro_ok {
        report.error(
            &at(&format!("{base}.metro"), &raw.metro),
            format!(
                "`{}` is not a metro code (like am, da, sv)",
                values::shorten(&raw.metro, 40)
            ),
        );
    }
    if raw.plan.is_empty()
        || raw
            .plan
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        report.error(
            &at(&format!("{base}.plan"), &raw.plan),
            "plan must be a plan slug like c3.small.x86",
        );
    }
    let os = raw
        .operating_system
        .as_ref()
        .map_or(d::PACKET_OPERATING_SYSTEM.to_string(), |v| v.to_string());
    if let Some(v) = &raw.operating_system {
        let ok = !v.is_empty()
            && v.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !ok {
            report.error(
                &at(&format!("{base}.operating_system"), v),
                format!(
                    "`{}` is not an operating-system slug like flatcar_stable",
                    values::shorten(v, 40)
                ),
            );
        }
    }
    let billing = raw
        .billing_cycle
        .as_ref()
        .map_or(d::PACKET_BILLING_CYCLE.to_string(), |v| v.to_string());
    if let Some(v) = &raw.billing_cycle {
        if !d::PACKET_BILLING_CYCLES.contains(&v.as_str()) {
            report.error(
                &at(&format!("{base}.billing_cycle"), v),
                format!(
                    "billing_cycle `{}` is not one of hourly, monthly",
                    values::shorten(v, 40)
                ),
            );
        }
    }
    PacketSettings {
        project_id: raw.project_id.to_string(),
        metro: raw.metro.to_string(),
        plan: raw.plan.to_string(),
        operating_system: os,
        billing_cycle: billing,
    }
}

fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

pub(crate) fn vagrant(
    raw: Option<&RawVagrant>,
    flannel: Option<&Flannel>,
    docker: Option<&DockerSettings>,
    report: &mut Report,
) -> (VagrantSettings, Option<At>) {
    let base = "$.platforms.vagrant";
    let empty = RawVagrant::default();
    let v = raw.unwrap_or(&empty);
    let box_name = v
        .box_name
        .as_ref()
        .map_or(d::VAGRANT_BOX.to_string(), |b| b.to_string());
    if let Some(b) = &v.box_name {
        if b.is_empty() || b.chars().any(char::is_whitespace) {
            report.error(
                &at(&format!("{base}.box"), b),
                "box must be a Vagrant box name like flatcar-stable",
            );
        }
    }
    let memory_mb = v.memory_mb.as_ref().map_or(d::VAGRANT_MEMORY_MB, |m| **m);
    if let Some(m) = &v.memory_mb {
        if **m < d::VAGRANT_MIN_MEMORY_MB {
            report.error(
                &at(&format!("{base}.memory_mb"), m),
                format!(
                    "{} MiB is too little for a node; give at least {}",
                    **m,
                    d::VAGRANT_MIN_MEMORY_MB
                ),
            );
        }
    }
    let cpus = v.cpus.as_ref().map_or(d::VAGRANT_CPUS, |c| **c);
    if let Some(c) = &v.cpus {
        if **c == 0 || **c > 64 {
            report.error(
                &at(&format!("{base}.cpus"), c),
                "cpus must be between 1 and 64",
            );
        }
    }
    let serve_port = v.serve_port.as_ref().map_or(d::VAGRANT_SERVE_PORT, |p| **p);
    if let Some(p) = &v.serve_port {
        if **p == 0 {
            report.error(
                &at(&format!("{base}.serve_port"), p),
                "port 0 is not a usable port",
            );
        }
    }
    let default_host: Ipv4Addr = d::VAGRANT_HOST_IP.parse().expect("valid default");
    let (host_ip, host_at) = match &v.host_ip {
        Some(text) => {
            let host_at = at(&format!("{base}.host_ip"), text);
            match values::ipv4(text) {
                Ok(ip) => {
                    if let Some(problem) = address_problem(ip, flannel, docker) {
                        report.error(
                            &host_at,
                            problem
                                .replace("a node's address", "the host's address")
                                .replace("node addresses", "the host's address"),
                        );
                    }
                    (ip, Some(host_at))
                }
                Err(message) => {
                    report.error(&host_at, message);
                    (default_host, None)
                }
            }
        }
        None => (default_host, None),
    };
    let settings = VagrantSettings {
        box_name,
        memory_mb,
        cpus,
        host_ip,
        serve_port,
    };
    (settings, host_at)
}

pub(crate) fn ipxe(raw: &RawIpxe, base_dir: &Path, report: &mut Report) -> IpxeSettings {
    let base = "$.platforms.ipxe";
    let url_at = at(&format!("{base}.base_url"), &raw.base_url);
    if let Err(message) = values::http_url(&raw.base_url) {
        report.error(&url_at, message);
    }
    let file = |value: Option<&Sp<String>>, key: &str, default: &str, report: &mut Report| {
        let Some(v) = value else {
            return default.to_string();
        };
        if let Err(message) = values::file_name(v) {
            report.error(&at(&format!("{base}.{key}"), v), message);
        }
        v.to_string()
    };
    let kernel = file(raw.kernel.as_ref(), "kernel", d::IPXE_KERNEL, report);
    let initrd = file(raw.initrd.as_ref(), "initrd", d::IPXE_INITRD, report);
    for (i, arg) in raw.kernel_args.iter().enumerate() {
        let arg_at = at(&format!("{base}.kernel_args[{i}]"), arg);
        if arg.is_empty() || arg.chars().any(|c| c.is_whitespace() || c.is_control()) {
            report.error(
                &arg_at,
                "a kernel argument is one word without spaces; list each separately",
            );
        } else if [
            "ignition.config.url=",
            "flatcar.first_boot",
            "flatcar.config.url=",
        ]
        .iter()
        .any(|own| arg.starts_with(own))
        {
            report.error(
                &arg_at,
                format!(
                    "molten sets `{}` itself",
                    arg.split('=').next().unwrap_or("")
                ),
            );
        }
    }
    let assets = ipxe_assets::assets(raw, base_dir, &kernel, &initrd, report);
    IpxeSettings {
        base_url: raw.base_url.trim_end_matches('/').to_string(),
        kernel,
        initrd,
        kernel_args: raw.kernel_args.iter().map(|a| a.to_string()).collect(),
        install_to_disk: raw.install_to_disk.as_ref().is_some_and(|b| **b),
        assets,
    }
}

/// What composing for `platform` needs beyond the profile's own rules.
pub(crate) fn check_target(
    platform: Platform,
    raw: &RawProfile,
    drafts: &[Draft],
    settings: Targets<'_>,
    report: &mut Report,
) {
    let sections = raw.platforms.as_ref();
    let section_at = |key: &str| match sections {
        Some(p) => At::of("$.platforms", p).child(key),
        None => At::new(format!("$.platforms.{key}"), (0, 0)),
    };
    let needs = |report: &mut Report, what: &str, why: &str| {
        let mut seen = std::collections::HashSet::new();
        for draft in drafts {
            let (missing, written) = match what {
                "ip" => (draft.ip_at.is_none(), "start_ip"),
                "mac" => (draft.mac_at.is_none(), "start_mac"),
                _ => (draft.disk_at.is_none(), "install_disk"),
            };
            if missing && seen.insert(draft.entry.path.clone()) {
                let key = if draft.suffix.is_empty() {
                    what
                } else {
                    written
                };
                let whose = draft.label.split(' ').next().unwrap_or_default();
                report.error(&draft.entry, format!("{whose} has no {key}; {why}"));
            }
        }
    };
    match platform {
        Platform::Vagrant => {
            needs(
                report,
                "ip",
                "the vagrant platform needs a fixed private address for every node",
            );
            if let Some(host_at) = settings.vagrant_host_at {
                if let Some(node) = drafts
                    .iter()
                    .find(|d| d.node.ip == Some(settings.vagrant_host_ip))
                {
                    report.error(
                        host_at,
                        format!(
                            "host_ip {} is also {}'s address",
                            settings.vagrant_host_ip, node.label
                        ),
                    );
                }
            }
        }
        Platform::Ipxe => {
            if !settings.has_ipxe {
                report.error(
                    &section_at("ipxe"),
                    "composing for ipxe needs a `platforms.ipxe` section (at least base_url)",
                );
            }
            needs(
                report,
                "ip",
                "the ipxe platform needs a fixed private address for every node",
            );
            needs(
                report,
                "mac",
                "iPXE finds each node's config by the MAC of its booting NIC",
            );
            if settings.install_to_disk {
                needs(
                    report,
                    "install_disk",
                    "platforms.ipxe.install_to_disk is true",
                );
            }
        }
        Platform::Packet => {
            if !settings.has_packet {
                report.error(
                    &section_at("packet"),
                    "composing for packet needs a `platforms.packet` section (project_id, metro, plan)",
                );
            }
            if let Some(agent_at) = &settings.local_agent_at {
                report.error(agent_at, packet_local_agent(agent_at));
            }
            let mut seen = std::collections::HashSet::new();
            for draft in drafts {
                if let Some(ip_at) = &draft.ip_at {
                    if seen.insert(ip_at.path.clone()) {
                        report.error(
                            ip_at,
                            "packet assigns private addresses at boot: remove the address from the profile",
                        );
                    }
                }
            }
        }
    }
}

/// The platform settings `check_target` looks at.
pub(crate) struct Targets<'a> {
    pub has_packet: bool,
    pub has_ipxe: bool,
    pub install_to_disk: bool,
    pub vagrant_host_ip: Ipv4Addr,
    pub vagrant_host_at: Option<&'a At>,
    /// Where a local agent binary was named, if the agent is one.
    pub local_agent_at: Option<At>,
}

/// Why packet refuses a local agent, and what to write instead.
fn packet_local_agent(at: &At) -> String {
    let instead = if at.path == "--agent" {
        "drop --agent and give"
    } else {
        "replace agent.path with"
    };
    format!(
        "platform packet serves no files, so its nodes cannot download a local agent binary: \
         publish mc where the nodes can reach it, then {instead} \
         `agent: {{url: <its URL>, sha512: <its sha512sum>}}` in the profile"
    )
}
