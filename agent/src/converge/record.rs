//! The node record a converge publishes: what other nodes and `mc bosh` need to reach this node.

use std::net::Ipv4Addr;

use molten_contract::gateway;

use crate::config::Config;
use crate::records::{self, NodeRecord, MC_VERSION};

/// What the node record says about certificates: fingerprints and expiry, never a key.
#[derive(Debug, Clone)]
pub struct RecordCerts {
    /// SHA-256 of the CA dockerd trusts (and signed its certificate).
    pub docker_ca_fingerprint: String,
    pub docker_server_expiry: time::OffsetDateTime,
    /// Every enrolled certificate of the node.
    pub certificates: Vec<records::CertSummary>,
}

/// The node record: what other nodes and `mc bosh` need to reach this node.
pub fn node_record(config: &Config, ip: Ipv4Addr, certs: &RecordCerts) -> NodeRecord {
    let subnet = config.subnet;
    NodeRecord {
        version: crate::records::RECORD_VERSION,
        name: config.node.name.clone(),
        cluster: config.cluster.clone(),
        zone: config.node.zone,
        roles: config.node.roles.clone(),
        private_ip: ip,
        subnet,
        gateway: gateway(subnet),
        docker_endpoint: format!("tcp://{ip}:{}", config.docker.tls_port),
        ca_fingerprint: certs.docker_ca_fingerprint.clone(),
        server_cert_expiry: crate::timestamp::rfc3339(certs.docker_server_expiry),
        certificates: certs.certificates.clone(),
        bosh_network: config
            .bosh
            .enabled
            .then(|| config.bosh.network_name.clone()),
        mc_version: MC_VERSION.to_string(),
    }
}
