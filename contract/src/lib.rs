//! The contract between `molten` (the composer) and `mc` (the agent).
//!
//! The composer writes one [`NodeConfig`] per node to [`NODE_CONFIG_PATH`]; the agent reads it at
//! every boot. Both sides use these types, so the format cannot drift. The format is versioned:
//! a change that an older agent could not read bumps [`NODE_CONFIG_VERSION`].
//!
//! Logic that both sides must agree on lives here too: which flannel subnet a zone gets
//! ([`FlannelSettings::subnet_for_zone`]), the etcd key layout ([`keys`]) and the per-OS unit names
//! and paths ([`OsVariant::layout`]).

mod flannel;
pub mod keys;
mod layout;
pub mod snapshots;
pub mod trust;

use std::net::Ipv4Addr;
use std::path::Path;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

pub use flannel::{
    gateway, FlannelSettings, SubnetError, DEFAULT_PREFIX as FLANNEL_DEFAULT_PREFIX,
};
pub use layout::{OsLayout, OsVariant};
pub use snapshots::SnapshotSettings;
pub use trust::TrustSettings;

/// Where the node config lives on a node (relative to the node's root).
pub const NODE_CONFIG_PATH: &str = "/etc/molten/node.json";

/// The node-config format version this build writes and reads.
/// Version 2 made `trust` required: every node enrolls with a cluster authority.
pub const NODE_CONFIG_VERSION: u32 = 2;

/// Everything the agent needs to know about its node and cluster. Written by the composer, read
/// by the agent; never contains a secret (the node creates its keys and keeps them on its own
/// disk; its enrollment token is a separate file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Always [`NODE_CONFIG_VERSION`]; checked by [`NodeConfig::from_json`].
    pub version: u32,
    /// The cluster's name (from the profile).
    pub cluster: String,
    pub os: OsVariant,
    pub node: NodeIdentity,
    pub etcd: EtcdSettings,
    pub flannel: FlannelSettings,
    pub docker: DockerSettings,
    pub bosh: BoshSettings,
    /// The cluster authority and the node's TLS identity ([`trust`]).
    pub trust: TrustSettings,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeIdentity {
    /// Node name; also its hostname and its etcd member name.
    pub name: String,
    /// Zone index: selects the node's flannel subnet and its BOSH AZ `z<zone>`.
    pub zone: u32,
    pub roles: Vec<Role>,
    /// How the node learns its private IPv4 address.
    pub address: AddressSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The node runs an etcd member.
    Etcd,
    /// The node runs workloads (Docker for BOSH).
    Worker,
}

/// Where a node's private address comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "kebab-case", deny_unknown_fields)]
pub enum AddressSource {
    /// The profile fixed the address (vagrant, ipxe, the lab).
    Static { private_ip: Ipv4Addr },
    /// Known only at boot: read from the metadata environment file Afterburn writes
    /// (`AFTERBURN_PACKET_IPV4_PRIVATE_0`, older `COREOS_PACKET_IPV4_PRIVATE_0`).
    PacketMetadata { env_file: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdSettings {
    /// Client URLs the agent dials (v3 API), e.g. `http://10.0.0.10:2379`.
    pub endpoints: Vec<String>,
    /// The members' snapshot schedule and retention ([`snapshots`]). Optional and left out when
    /// default, so a default node config reads the same to an older `mc`; one that sets it is
    /// refused by an `mc` without the field (`unknown field`), never misread.
    #[serde(default, skip_serializing_if = "SnapshotSettings::is_default")]
    pub snapshots: SnapshotSettings,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerSettings {
    /// The default bridge (`docker0`) range; never overlaps the flannel network.
    pub bridge_cidr: Ipv4Net,
    /// The TLS port Docker listens on at the node's private IP (2376).
    pub tls_port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoshSettings {
    pub enabled: bool,
    /// The Docker network BOSH manual networks use (`cloud_properties.name`).
    pub network_name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a valid node config: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("{path} has node-config version {found}; this mc reads version {NODE_CONFIG_VERSION}")]
    Version { path: String, found: u32 },
    #[error(
        "{path} has node-config version 1, which predates the cluster authority: this node has \
         no trust section (etcd without TLS, keys in etcd). Recompose it with an authority \
         (`molten compose`, see docs/security.md) and reprovision it; this mc reads version \
         {NODE_CONFIG_VERSION}"
    )]
    BeforeAuthority { path: String },
}

impl NodeConfig {
    /// Parses and checks a node config; `origin` names the source in errors.
    ///
    /// The version is read first, on its own: a config of another version is reported as that
    /// ("version 3; this mc reads version 2"), not as whatever field it added being unknown.
    pub fn from_json(origin: &str, text: &str) -> Result<Self, NodeConfigError> {
        let parse_error = |source| NodeConfigError::Parse {
            path: origin.to_string(),
            source,
        };
        /// Only the version; every other field is ignored here.
        #[derive(Deserialize)]
        struct Versioned {
            version: u32,
        }
        let Versioned { version } = serde_json::from_str(text).map_err(parse_error)?;
        if version == 1 {
            return Err(NodeConfigError::BeforeAuthority {
                path: origin.to_string(),
            });
        }
        if version != NODE_CONFIG_VERSION {
            return Err(NodeConfigError::Version {
                path: origin.to_string(),
                found: version,
            });
        }
        serde_json::from_str(text).map_err(parse_error)
    }

    /// Reads a node config from a file.
    pub fn load(path: &Path) -> Result<Self, NodeConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| NodeConfigError::Read {
            path: origin.clone(),
            source,
        })?;
        Self::from_json(&origin, &text)
    }

    /// A readable JSON form (pretty, stable field order, trailing newline) for people and docs.
    /// The composer writes the compact form to keep Ignition small; the agent reads either.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("node config serializes");
        text.push('\n');
        text
    }

    pub fn has_role(&self, role: Role) -> bool {
        self.node.roles.contains(&role)
    }

    /// This node's flannel subnet, derived from its zone.
    pub fn subnet(&self) -> Result<Ipv4Net, SubnetError> {
        self.flannel.subnet_for_zone(self.node.zone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> NodeConfig {
        let ip = |text: &str| trust::SubjectAltName::Ip(text.parse().unwrap());
        NodeConfig {
            version: NODE_CONFIG_VERSION,
            cluster: "dev".into(),
            os: OsVariant::Flatcar,
            node: NodeIdentity {
                name: "node-0".into(),
                zone: 0,
                roles: vec![Role::Etcd, Role::Worker],
                address: AddressSource::Static {
                    private_ip: "10.0.0.10".parse().unwrap(),
                },
            },
            etcd: EtcdSettings {
                endpoints: vec!["https://10.0.0.10:2379".into()],
                snapshots: SnapshotSettings::default(),
            },
            flannel: FlannelSettings::new("10.1.0.0/16".parse().unwrap(), 24),
            docker: DockerSettings {
                bridge_cidr: "10.255.240.0/20".parse().unwrap(),
                tls_port: 2376,
            },
            bosh: BoshSettings {
                enabled: true,
                network_name: "bosh".into(),
            },
            trust: TrustSettings {
                authority_url: "https://10.0.0.1:8443".into(),
                authority_ca: "CA PEM".into(),
                etcd_ca: "ETCD PEM".into(),
                docker_ca: "DOCKER PEM".into(),
                identity: trust::NodeTlsIdentity {
                    etcd_peer_sans: vec![ip("10.0.0.10")],
                    etcd_server_sans: vec![ip("10.0.0.10"), ip("127.0.0.1")],
                    etcd_client_cn: "node-0".into(),
                    docker_server_sans: vec![ip("10.0.0.10")],
                },
                roster: vec!["node-0".into(), "node-1".into()],
                state_dir: trust::DEFAULT_STATE_DIR.into(),
            },
        }
    }

    #[test]
    fn json_round_trips() {
        let config = sample();
        let text = config.to_json();
        assert_eq!(NodeConfig::from_json("t", &text).unwrap(), config);
        assert!(text.ends_with("}\n"));
        assert!(text.contains("\"etcd_client_cn\": \"node-0\""), "{text}");
    }

    #[test]
    fn the_trust_section_is_required() {
        let mut value: serde_json::Value = serde_json::from_str(&sample().to_json()).unwrap();
        value.as_object_mut().unwrap().remove("trust");
        let err = NodeConfig::from_json("node.json", &value.to_string()).unwrap_err();
        assert!(err.to_string().contains("missing field `trust`"), "{err}");
    }

    #[test]
    fn a_config_from_before_the_authority_says_to_recompose() {
        let mut value: serde_json::Value = serde_json::from_str(&sample().to_json()).unwrap();
        value["version"] = 1.into();
        value.as_object_mut().unwrap().remove("trust");
        let err = NodeConfig::from_json("node.json", &value.to_string()).unwrap_err();
        let text = err.to_string();
        for needle in [
            "node.json has node-config version 1",
            "predates the cluster authority",
            "Recompose it with an authority",
            "this mc reads version 2",
        ] {
            assert!(text.contains(needle), "{needle:?} not in {text}");
        }
    }

    #[test]
    fn rejects_other_versions() {
        let text = sample()
            .to_json()
            .replace("\"version\": 2", "\"version\": 3");
        let err = NodeConfig::from_json("node.json", &text).unwrap_err();
        assert_eq!(
            err.to_string(),
            "node.json has node-config version 3; this mc reads version 2"
        );
        // A newer config also adds fields: the version is what the error names.
        let newer = text.replacen('{', "{\"enrollment_window\": 3600, ", 1);
        let err = NodeConfig::from_json("node.json", &newer).unwrap_err();
        assert_eq!(
            err.to_string(),
            "node.json has node-config version 3; this mc reads version 2"
        );
        let missing = NodeConfig::from_json("node.json", "{}").unwrap_err();
        assert!(
            missing.to_string().contains("missing field `version`"),
            "{missing}"
        );
    }

    #[test]
    fn rejects_unknown_fields() {
        let text = sample()
            .to_json()
            .replace("\"cluster\"", "\"clustr\": 1, \"cluster\"");
        let err = NodeConfig::from_json("node.json", &text).unwrap_err();
        assert!(err.to_string().contains("unknown field `clustr`"), "{err}");
    }

    #[test]
    fn default_snapshots_are_left_out_and_read_back_as_default() {
        let text = sample().to_json();
        assert!(!text.contains("snapshots"), "{text}");
        let mut config = sample();
        config.etcd.snapshots = SnapshotSettings {
            schedule: "weekly".into(),
            keep: 4,
        };
        let text = config.to_json();
        assert!(
            text.contains("\"snapshots\": {\n      \"schedule\": \"weekly\",\n      \"keep\": 4\n"),
            "{text}"
        );
        assert_eq!(NodeConfig::from_json("t", &text).unwrap(), config);
    }

    #[test]
    fn address_source_is_tagged() {
        let text = sample().to_json();
        assert!(text.contains("\"source\": \"static\""), "{text}");
        assert!(text.contains("\"private_ip\": \"10.0.0.10\""), "{text}");
    }
}
