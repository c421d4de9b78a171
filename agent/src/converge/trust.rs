//! The converge steps of a node with a `trust` section: `identity` (the enrolled identity is
//! valid, renewed in the last third of its validity, trust roots installed, the daemons whose
//! files changed restarted) and, on etcd members, `rbac` (users and roles, then `auth enable`).
//!
//! Nothing here touches a private key except to read the node's own from its identity dir.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use molten_contract::trust::{DOCKER_CA_FILE, ETCD_CA_FILE};
use molten_contract::NodeConfig;

use super::record::RecordCerts;
use crate::enroll::{self, Settings};
use crate::etcd::{rbac, Etcd, EtcdTls};
use crate::fs::{under_root, write_if_changed, MODE_PUBLIC};
use crate::identity::{self, CertInfo, Held, Kind};
use crate::outcome::{Done, State};
use crate::systemd::{self, Systemd, TlsPaths};

/// What the identity step leaves for later steps.
#[derive(Debug, Clone)]
pub struct IdentityState {
    pub infos: Vec<CertInfo>,
}

impl IdentityState {
    pub fn info(&self, kind: Kind) -> Option<&CertInfo> {
        self.infos.iter().find(|i| i.kind == kind)
    }
}

/// The trust roots as installed for the units (`<tls_dir>/etcd-ca.pem`, `docker-ca.pem`).
pub fn ca_paths(config: &NodeConfig) -> (PathBuf, PathBuf) {
    let dir = Path::new(config.os.layout().tls_dir);
    (dir.join(ETCD_CA_FILE), dir.join(DOCKER_CA_FILE))
}

/// dockerd's TLS files: the Docker CA only, and the enrolled docker-server pair.
pub fn docker_tls_paths(config: &NodeConfig, settings: &Settings) -> TlsPaths {
    let identity = settings.identity(Path::new("/"));
    TlsPaths {
        ca: ca_paths(config).1,
        server_cert: identity.cert_path(Kind::DockerServer),
        server_key: identity.key_path(Kind::DockerServer),
    }
}

/// The etcd client identity of this node (its etcd user), for every etcd call `mc` makes.
pub fn etcd_tls(root: &Path, settings: &Settings, kind: Kind) -> Result<EtcdTls> {
    EtcdTls::from_identity(&settings.identity(root), kind, &settings.roots.etcd_ca)
}

/// The `identity` step: checks the identity, renews it when due, installs the trust roots and
/// restarts running daemons whose files changed.
pub async fn ensure_identity(
    root: &Path,
    config: &NodeConfig,
    settings: &Settings,
    systemd: &dyn Systemd,
) -> Result<(Done, IdentityState)> {
    let now = crate::timestamp::now();
    let dir = settings.identity(root);
    match identity::held(&dir, &settings.kinds(), &settings.roots, now)? {
        Held::Valid(_) => {}
        Held::Unusable { kind, reason } => anyhow::bail!(
            "no valid identity ({kind}: {reason}); mc-enroll.service enrolls the node{}",
            enroll::last_failure(root, &settings.state_dir)
                .map(|f| format!("; last attempt: {f}"))
                .unwrap_or_default()
        ),
    }
    let renewed = enroll::renew(root, settings, false).await;
    let (infos, renewed_kinds, renew_note) = match renewed {
        Ok(r) => (r.infos, r.kinds, None),
        // The current certificates are still valid: keep going, report, retry next time.
        Err(e) => {
            let held = match identity::held(&dir, &settings.kinds(), &settings.roots, now)? {
                Held::Valid(infos) => infos,
                Held::Unusable { kind, reason } => anyhow::bail!("{kind}: {reason}"),
            };
            (held, Vec::new(), Some(format!("renewal failed: {e:#}")))
        }
    };
    let changed_files = install_roots(root, config, settings)?;
    let units = units_to_restart(config, &renewed_kinds, &changed_files);
    let restarted = systemd::restart_if_active(root, systemd, &units)?;

    let earliest = infos
        .iter()
        .map(|i| i.not_after)
        .min()
        .context("no certificates")?;
    let mut parts = vec![format!(
        "{} certificates valid until {}",
        infos.len(),
        crate::timestamp::rfc3339(earliest)
    )];
    if !renewed_kinds.is_empty() {
        let names: Vec<&str> = renewed_kinds.iter().map(|k| k.name()).collect();
        parts.push(format!("renewed {}", names.join(", ")));
    }
    if !changed_files.is_empty() {
        parts.push(format!("wrote {}", changed_files.join(", ")));
    }
    if !restarted.is_empty() {
        parts.push(format!("restarted {}", restarted.join(", ")));
    }
    let changed = !renewed_kinds.is_empty() || !changed_files.is_empty();
    if let Some(note) = renew_note {
        // A failed renewal with valid certificates is a failure to see, not to hide.
        anyhow::bail!("{}; {note}", parts.join("; "));
    }
    Ok((
        Done::from_flag(changed, parts.join("; ")),
        IdentityState { infos },
    ))
}

/// Writes the trust roots the units read (etcd CA for etcd and flanneld, Docker CA for
/// dockerd) where they differ. Returns the paths written (as on the node).
/// node.json is their only source: compose does not write them (smaller Ignition, one truth).
pub fn install_roots(root: &Path, config: &NodeConfig, settings: &Settings) -> Result<Vec<String>> {
    let (etcd_ca, docker_ca) = ca_paths(config);
    let mut files = vec![
        (etcd_ca, &settings.roots.etcd_ca),
        (docker_ca, &settings.roots.docker_ca),
    ];
    if let Some(copy) = config.os.layout().etcd_ca_copy {
        files.push((PathBuf::from(copy), &settings.roots.etcd_ca));
    }
    let mut written = Vec::new();
    for (path, pem) in &files {
        if write_if_changed(
            &under_root(root, &path.to_string_lossy()),
            pem.as_bytes(),
            MODE_PUBLIC,
        )? {
            written.push(path.display().to_string());
        }
    }
    Ok(written)
}

/// Which daemons read which files: dockerd the Docker pair and CA, flanneld the etcd client
/// pair and the etcd CA, etcd its peer and server pairs and the etcd CA.
pub fn units_to_restart(config: &NodeConfig, kinds: &[Kind], ca_files: &[String]) -> Vec<String> {
    let layout = config.os.layout();
    let (etcd_ca, docker_ca) = ca_paths(config);
    let copy_changed = layout
        .etcd_ca_copy
        .is_some_and(|copy| ca_files.iter().any(|f| f == copy));
    let etcd_ca_changed = copy_changed || ca_files.contains(&etcd_ca.display().to_string());
    let docker_ca_changed = ca_files.contains(&docker_ca.display().to_string());
    let member = config.has_role(molten_contract::Role::Etcd);
    let mut units = BTreeSet::new();
    if docker_ca_changed || kinds.contains(&Kind::DockerServer) {
        units.insert(layout.docker_unit.to_string());
    }
    if etcd_ca_changed || kinds.contains(&Kind::EtcdClient) {
        units.insert(layout.flannel_unit.to_string());
    }
    if member
        && (etcd_ca_changed || kinds.contains(&Kind::EtcdPeer) || kinds.contains(&Kind::EtcdServer))
    {
        units.insert(layout.etcd_unit.to_string());
    }
    units.into_iter().collect()
}

/// The `rbac` step (members): as CN=root, flannel's network config, then a user and role for
/// every node of the roster (node.json's, plus the authority's enrolled nodes when it answers),
/// then `auth enable`.
pub async fn ensure_rbac(
    root: &Path,
    config: &NodeConfig,
    settings: &Settings,
    admin: &mut Etcd,
) -> Result<Done> {
    let flannel = &config.flannel;
    let network = admin
        .run("flannel network config", |mut client| async move {
            crate::flannel::ensure_network_config(&mut client, flannel).await
        })
        .await?;
    let mut roster: Vec<String> = config.trust.roster.clone();
    let mut notes = Vec::new();
    let mut revoked = Vec::new();
    match enroll::roster(root, settings).await {
        Ok(answer) => {
            roster.extend(answer.nodes);
            revoked = answer.revoked;
        }
        Err(e) => notes.push(format!(
            "authority roster unavailable ({e:#}): node.json's only"
        )),
    }
    // node.json's roster is from compose time: a node revoked since must not get its user back.
    roster.retain(|name| !revoked.contains(name));
    roster.sort();
    roster.dedup();
    let (roster, revoked) = (&roster, &revoked);
    let done = admin
        .run("etcd users and roles", |mut client| async move {
            rbac::bootstrap(&mut client, roster).await
        })
        .await?;
    let removed = admin
        .run("revoked etcd users", |mut client| async move {
            rbac::revoke(&mut client, revoked).await
        })
        .await?;
    let mut parts = vec![format!(
        "auth on; {} node roles",
        roster.iter().filter(|n| rbac::valid_user(n)).count()
    )];
    if network.state == State::Changed {
        parts.push(network.detail);
    }
    if !done.created.is_empty() {
        parts.push(format!("created users {}", done.created.join(", ")));
    }
    if !done.refused.is_empty() {
        let shown: Vec<String> = done
            .refused
            .iter()
            .map(|n| format!("{:?}", n.chars().take(64).collect::<String>()))
            .collect();
        parts.push(format!("refused names {}", shown.join(", ")));
    }
    if !removed.is_empty() {
        parts.push(format!("deleted revoked users {}", removed.join(", ")));
    }
    parts.extend(notes);
    let changed =
        !done.created.is_empty() || !removed.is_empty() || network.state == State::Changed;
    Ok(Done::from_flag(changed, parts.join("; ")))
}

/// The record's certificate facts, from the identity step or (when it failed) the disk.
pub fn record_certs(
    settings: &Settings,
    state: Option<&IdentityState>,
    root: &Path,
) -> Option<RecordCerts> {
    let infos = match state {
        Some(state) => state.infos.clone(),
        None => match identity::held(
            &settings.identity(root),
            &settings.kinds(),
            &settings.roots,
            crate::timestamp::now(),
        ) {
            Ok(Held::Valid(infos)) => infos,
            _ => return None,
        },
    };
    let docker = infos.iter().find(|i| i.kind == Kind::DockerServer)?;
    Some(RecordCerts {
        docker_ca_fingerprint: identity::fingerprint(&settings.roots.docker_ca).ok()?,
        docker_server_expiry: docker.not_after,
        certificates: infos
            .iter()
            .map(|i| crate::records::CertSummary {
                kind: i.kind.name().to_string(),
                fingerprint: i.fingerprint.clone(),
                not_after: crate::timestamp::rfc3339(i.not_after),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use molten_contract::Role;

    fn config(member: bool) -> NodeConfig {
        let ip = std::net::Ipv4Addr::new(10, 0, 0, 10);
        let mut config = molten_testkit::fixtures::node_config("n0", 0, ip);
        config.node.roles = if member {
            vec![Role::Etcd, Role::Worker]
        } else {
            vec![Role::Worker]
        };
        config
    }

    #[test]
    fn each_daemon_restarts_only_for_its_own_files() {
        let member = config(true);
        assert!(units_to_restart(&member, &[], &[]).is_empty());
        assert_eq!(
            units_to_restart(&member, &[Kind::DockerServer], &[]),
            ["docker.service"]
        );
        assert_eq!(
            units_to_restart(&member, &[Kind::EtcdClient], &[]),
            ["flanneld.service"]
        );
        assert_eq!(
            units_to_restart(&member, &[Kind::EtcdAdmin], &[]),
            Vec::<String>::new(),
            "only mc uses the admin identity"
        );
        let etcd_ca = ca_paths(&member).0.display().to_string();
        assert_eq!(
            units_to_restart(&member, &[], std::slice::from_ref(&etcd_ca)),
            ["etcd.service", "flanneld.service"]
        );
        assert_eq!(
            units_to_restart(&config(false), &[Kind::EtcdPeer], &[etcd_ca]),
            ["flanneld.service"],
            "workers run no etcd"
        );
    }

    #[test]
    fn the_roots_come_from_node_json_and_flatcar_gets_its_etcd_ca_copy() {
        let root = tempfile::tempdir().unwrap();
        let mut flatcar = config(true);
        flatcar.os = molten_contract::OsVariant::Flatcar;
        let settings = Settings::from_config(&flatcar);
        let written = install_roots(root.path(), &flatcar, &settings).unwrap();
        assert_eq!(
            written,
            [
                "/etc/molten/tls/etcd-ca.pem",
                "/etc/molten/tls/docker-ca.pem",
                "/var/lib/molten/etcd-ca.pem"
            ]
        );
        let copy = std::fs::read_to_string(root.path().join("var/lib/molten/etcd-ca.pem")).unwrap();
        assert_eq!(copy, flatcar.trust.etcd_ca);
        assert!(install_roots(root.path(), &flatcar, &settings)
            .unwrap()
            .is_empty());
        // A changed copy restarts what reads it.
        assert_eq!(
            units_to_restart(&flatcar, &[], &["/var/lib/molten/etcd-ca.pem".to_string()]),
            ["etcd-member.service", "flanneld.service"]
        );
        // Debian has no copy.
        let debian = config(true);
        let other = tempfile::tempdir().unwrap();
        assert_eq!(
            install_roots(other.path(), &debian, &Settings::from_config(&debian))
                .unwrap()
                .len(),
            2
        );
    }
}
