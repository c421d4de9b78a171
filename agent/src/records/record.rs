//! The node record type: a leaf, so the record checks and the readers both use it without
//! importing the module that calls them.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use molten_contract::Role;
use serde::{Deserialize, Serialize};

/// The node-record format this build writes and reads; a reader shows a newer one as such.
pub const RECORD_VERSION: u32 = 1;

fn record_version_1() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeRecord {
    /// [`RECORD_VERSION`]; absent in records written before the field existed (version 1).
    #[serde(default = "record_version_1")]
    pub version: u32,
    pub name: String,
    pub cluster: String,
    pub zone: u32,
    pub roles: Vec<Role>,
    pub private_ip: Ipv4Addr,
    /// The node's flannel subnet and its gateway (first host address).
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    /// `tcp://<private-ip>:<tls-port>`, TLS with the cluster CA.
    pub docker_endpoint: String,
    /// SHA-256 of the cluster CA certificate (DER), hex.
    pub ca_fingerprint: String,
    /// Docker server certificate expiry, RFC 3339.
    pub server_cert_expiry: String,
    /// Every enrolled certificate: kind, fingerprint, expiry (public facts; keys stay on the node).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<CertSummary>,
    /// The Docker network BOSH uses on this node, when BOSH is enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bosh_network: Option<String>,
    pub mc_version: String,
}

/// One certificate of a node as its record shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertSummary {
    pub kind: String,
    /// SHA-256 of the certificate (DER), hex.
    pub fingerprint: String,
    /// RFC 3339.
    pub not_after: String,
}

impl NodeRecord {
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}
