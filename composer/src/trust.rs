//! Composing with an authority (`molten compose --authority`): each node's `trust` section (the
//! authority's public certificates, the names it will sign for the node, the roster) and its
//! enrollment token, which goes only into that node's own Ignition, in its own 0600 file.
//!
//! The names derive from the node's plan: a fixed address becomes an IP SAN; an address known
//! only at boot (packet) becomes a `boot-address` SAN bounded to the provider's private range.

use std::collections::BTreeMap;

use molten_contract::trust::{NodeTlsIdentity, SubjectAltName, DEFAULT_STATE_DIR, ETCD_ROOT_USER};
use molten_contract::{AddressSource, Role, TrustSettings};

use crate::authority::register::{register_nodes, NodeEnrollment};
use crate::authority::Authority;
use crate::error::ComposeError;
use crate::model::{Cluster, Node};
use crate::plan::NodePlan;

/// Packet/Equinix Metal private addresses come from 10.0.0.0/8.
pub const BOOT_ADDRESS_RANGE: &str = "10.0.0.0/8";
/// The port of `molten serve --authority`'s HTTPS listener when the URL is derived.
pub const DEFAULT_AUTHORITY_PORT: u16 = 8443;

/// What compose needs from the operator to wire trust in.
#[derive(Debug, Clone)]
pub struct TrustInput {
    pub authority: Authority,
    /// `https://<host>:<port>`, how nodes reach `molten serve --authority`.
    pub authority_url: String,
    pub token_ttl: time::Duration,
    pub now: time::OffsetDateTime,
}

/// Every node's trust section and token, after registering the nodes with the authority.
pub struct ComposeTrust {
    pub authority_url: String,
    pub authority_ca: String,
    settings: BTreeMap<String, TrustSettings>,
    tokens: BTreeMap<String, String>,
}

/// One node's share: its trust section and its token.
pub struct NodeTrust<'a> {
    pub settings: &'a TrustSettings,
    pub token: &'a str,
}

impl ComposeTrust {
    pub fn node(&self, name: &str) -> Option<NodeTrust<'_>> {
        Some(NodeTrust {
            settings: self.settings.get(name)?,
            token: self.tokens.get(name)?,
        })
    }
}

/// The names the authority signs for `node` given where its address comes from.
pub fn identity(node: &Node, address: &AddressSource) -> NodeTlsIdentity {
    let own = match address {
        AddressSource::Static { private_ip } => SubjectAltName::Ip((*private_ip).into()),
        AddressSource::PacketMetadata { .. } => SubjectAltName::BootAddress {
            within: BOOT_ADDRESS_RANGE.parse().expect("a valid range"),
        },
    };
    let member = node.has_role(Role::Etcd);
    let etcd_sans = if member { vec![own.clone()] } else { vec![] };
    NodeTlsIdentity {
        etcd_peer_sans: etcd_sans.clone(),
        etcd_server_sans: etcd_sans,
        etcd_client_cn: node.name.clone(),
        docker_server_sans: vec![
            own,
            SubjectAltName::Ip([127, 0, 0, 1].into()),
            SubjectAltName::Dns(node.name.clone()),
        ],
    }
}

/// Registers every node (with its planned address) and returns their trust sections and tokens.
pub fn prepare(
    cluster: &Cluster,
    plans: &[(&Node, &NodePlan)],
    input: &TrustInput,
) -> Result<ComposeTrust, ComposeError> {
    let authority_error = |err: anyhow::Error| {
        ComposeError::Internal(format!(
            "authority {}: {err:#}",
            input.authority.dir().display()
        ))
    };
    if let Some(node) = cluster.nodes.iter().find(|n| n.name == ETCD_ROOT_USER) {
        return Err(ComposeError::invalid_at(
            &node.origin,
            format!(
                "a node named {ETCD_ROOT_USER:?} would share the etcd administrator's user: \
                 rename it"
            ),
        ));
    }
    let roots = input.authority.public_roots().map_err(authority_error)?;
    let enrollments: Vec<NodeEnrollment> = plans
        .iter()
        .map(|(node, plan)| NodeEnrollment {
            name: node.name.clone(),
            member: node.has_role(Role::Etcd),
            identity: identity(node, &plan.address),
        })
        .collect();
    let serve_name = url_host(&input.authority_url).ok_or_else(|| {
        ComposeError::invalid(
            "--authority-url",
            format!("{} is not https://<host>:<port>", input.authority_url),
        )
    })?;
    let tokens = register_nodes(
        &input.authority,
        &cluster.name,
        &enrollments,
        &[serve_name],
        input.now,
        input.token_ttl,
    )
    .map_err(authority_error)?;
    let roster: Vec<String> = cluster.nodes.iter().map(|n| n.name.clone()).collect();
    let settings = enrollments
        .into_iter()
        .map(|e| {
            let settings = TrustSettings {
                authority_url: input.authority_url.clone(),
                authority_ca: roots.authority_ca.clone(),
                etcd_ca: roots.etcd_ca.clone(),
                docker_ca: roots.docker_ca.clone(),
                identity: e.identity,
                roster: roster.clone(),
                state_dir: DEFAULT_STATE_DIR.to_string(),
            };
            (e.name, settings)
        })
        .collect();
    Ok(ComposeTrust {
        authority_url: input.authority_url.clone(),
        authority_ca: roots.authority_ca,
        settings,
        tokens,
    })
}

/// A throwaway authority in a private temporary directory (removed on drop), for composing in
/// memory (`molten validate --platform`, tests): nothing of it reaches a node.
pub struct ScratchAuthority {
    pub input: TrustInput,
    _dir: tempfile::TempDir,
}

/// A [`ScratchAuthority`] for `cluster`, its nodes reaching it beside the bundle served at
/// `served_base_url` (`https://<host>:8443`; `https://127.0.0.1:8443` where nothing is served).
pub fn scratch_input(
    cluster: &Cluster,
    served_base_url: Option<&str>,
) -> anyhow::Result<ScratchAuthority> {
    let authority_url = served_base_url
        .and_then(default_authority_url)
        .unwrap_or_else(|| format!("https://127.0.0.1:{DEFAULT_AUTHORITY_PORT}"));
    let dir = tempfile::Builder::new()
        .prefix("molten-validate-")
        .tempdir()?;
    let now = time::OffsetDateTime::now_utc();
    let authority = Authority::init(&dir.path().join("authority"), &cluster.name, now)?;
    Ok(ScratchAuthority {
        input: TrustInput {
            authority,
            authority_url,
            token_ttl: time::Duration::hours(24),
            now,
        },
        _dir: dir,
    })
}

/// The host of an `https://host:port[/...]` URL.
pub fn url_host(url: &str) -> Option<String> {
    let rest = url.strip_prefix("https://")?;
    let authority = rest.split('/').next()?;
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host,
        _ => authority,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then(|| host.to_string())
}

/// `https://<host of base_url>:8443`: the authority beside the bundle server.
pub fn default_authority_url(served_base_url: &str) -> Option<String> {
    let rest = served_base_url
        .strip_prefix("http://")
        .or_else(|| served_base_url.strip_prefix("https://"))?;
    let authority = rest.split('/').next()?;
    let host = match authority.rsplit_once(':') {
        Some((host, _)) => host,
        None => authority,
    };
    (!host.is_empty()).then(|| format!("https://{host}:{DEFAULT_AUTHORITY_PORT}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            url_host("https://10.0.0.1:8443").as_deref(),
            Some("10.0.0.1")
        );
        assert_eq!(
            url_host("https://bastion.example/x").as_deref(),
            Some("bastion.example")
        );
        assert_eq!(url_host("http://10.0.0.1:8443"), None);
        assert_eq!(
            default_authority_url("http://192.168.56.1:8080").as_deref(),
            Some("https://192.168.56.1:8443")
        );
        assert_eq!(
            default_authority_url("http://10.0.0.2:8080/bundle/").as_deref(),
            Some("https://10.0.0.2:8443")
        );
    }
}
