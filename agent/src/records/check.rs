//! Reading a node record is reading untrusted input: every record is checked on its own against
//! its key and the cluster's rules, and a bad one is isolated (reported with its reason) instead
//! of failing every reader of the cluster.

use std::net::SocketAddrV4;

use ipnet::Ipv4Net;
use molten_contract::{FlannelSettings, NodeConfig};
use serde_json::Value;

use super::record::{NodeRecord, RECORD_VERSION};
use crate::text::{bound, quote, MAX_ERROR_BYTES};

/// A record larger than this is refused unread (a real one is well under 1 KiB).
pub const MAX_RECORD_BYTES: usize = 16 * 1024;
/// Longest node name (a DNS label, as the profile requires).
const MAX_NAME: usize = 63;
/// Most certificate summaries a record may carry (a node has five kinds).
const MAX_CERTIFICATES: usize = 16;
/// Longest free-text field (cluster name, mc version, timestamps, network name).
const MAX_FIELD: usize = 128;

/// The cluster facts a record must agree with. A fact that is not known (`None`) is not checked;
/// the node config, when present, knows both.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub flannel: Option<FlannelSettings>,
    pub docker_port: Option<u16>,
    /// SHA-256 (hex) of the cluster's Docker CA (node.json's `trust.docker_ca`, or the operator's
    /// `--docker-ca`): a record naming another CA is a node that answers to another cluster.
    pub docker_ca_fingerprint: Option<String>,
}

impl Rules {
    pub fn from_config(config: &NodeConfig) -> Rules {
        Rules {
            flannel: Some(config.flannel.clone()),
            docker_port: Some(config.docker.tls_port),
            docker_ca_fingerprint: crate::identity::fingerprint(&config.trust.docker_ca).ok(),
        }
    }

    /// The Docker CA the operator gave (`--docker-ca`): records must name it.
    pub fn with_docker_ca(mut self, docker_ca_pem: &str) -> anyhow::Result<Rules> {
        self.docker_ca_fingerprint = Some(
            crate::identity::fingerprint(docker_ca_pem)
                .map_err(|e| anyhow::anyhow!("the Docker CA: {e:#}"))?,
        );
        Ok(self)
    }

    /// The network and subnet length from flannel's network config in etcd (what flanneld itself
    /// uses), for a reader without a node config.
    pub fn from_flannel_config(value: &str) -> Option<FlannelSettings> {
        let value: Value = serde_json::from_str(value).ok()?;
        let network: Ipv4Net = value.get("Network")?.as_str()?.parse().ok()?;
        let subnet_len = value.get("SubnetLen").map_or(Some(24), Value::as_u64)?;
        Some(FlannelSettings::new(
            network,
            u8::try_from(subnet_len).ok()?,
        ))
    }
}

/// One entry under the node-record prefix, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    Valid(Box<NodeRecord>),
    /// Written by a newer mc (a record version this build does not read): shown, not judged.
    Newer {
        version: u64,
        mc_version: Option<String>,
    },
    /// Anything else; the reason is escaped and bounded, safe to print.
    Invalid(String),
}

/// Checks the value stored under `/molten/nodes/<key_name>`.
pub fn check_record(key_name: &str, value: &[u8], rules: &Rules) -> Checked {
    match check(key_name, value, rules) {
        Ok(checked) => checked,
        Err(reason) => Checked::Invalid(bound(&reason, MAX_ERROR_BYTES)),
    }
}

fn check(key_name: &str, value: &[u8], rules: &Rules) -> Result<Checked, String> {
    if value.len() > MAX_RECORD_BYTES {
        return Err(format!(
            "record is {} bytes, more than {MAX_RECORD_BYTES}",
            value.len()
        ));
    }
    let text = std::str::from_utf8(value).map_err(|_| "record is not UTF-8 text".to_string())?;
    let json: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let object = json.as_object().ok_or("not a JSON object")?;
    let version = match object.get("version") {
        None => 1, // records of mc before the field existed
        Some(v) => v.as_u64().ok_or("version is not a number")?,
    };
    if version == 0 {
        return Err("version 0 does not exist".into());
    }
    if version > u64::from(RECORD_VERSION) {
        let mc_version = object
            .get("mc_version")
            .and_then(Value::as_str)
            .map(|v| bound(&crate::text::escape(v), MAX_FIELD));
        return Ok(Checked::Newer {
            version,
            mc_version,
        });
    }
    let record: NodeRecord =
        serde_json::from_value(json).map_err(|e| format!("not a node record: {e}"))?;
    check_fields(key_name, &record, rules)?;
    Ok(Checked::Valid(Box::new(record)))
}

fn check_fields(key_name: &str, record: &NodeRecord, rules: &Rules) -> Result<(), String> {
    check_name(&record.name)?;
    if record.name != key_name {
        return Err(format!(
            "name {} differs from its key's {}",
            quote(&record.name),
            quote(key_name)
        ));
    }
    for (field, value) in [
        ("cluster", &record.cluster),
        ("ca_fingerprint", &record.ca_fingerprint),
        ("server_cert_expiry", &record.server_cert_expiry),
        ("mc_version", &record.mc_version),
    ] {
        check_text(field, value)?;
    }
    if let Some(network) = &record.bosh_network {
        check_docker_network_name(network)?;
    }
    if record.certificates.len() > MAX_CERTIFICATES {
        return Err(format!(
            "{} certificates; a node has at most {MAX_CERTIFICATES}",
            record.certificates.len()
        ));
    }
    for cert in &record.certificates {
        for (field, value) in [
            ("certificates.kind", &cert.kind),
            ("certificates.fingerprint", &cert.fingerprint),
            ("certificates.not_after", &cert.not_after),
        ] {
            check_text(field, value)?;
        }
    }
    if record.roles.len() > 2 {
        return Err(format!(
            "{} roles; a node has at most 2",
            record.roles.len()
        ));
    }
    check_ca(record, rules.docker_ca_fingerprint.as_deref())?;
    check_endpoint(record, rules.docker_port)?;
    check_subnet(record, rules.flannel.as_ref())
}

/// The record names the cluster's Docker CA (when the reader knows it).
fn check_ca(record: &NodeRecord, expected: Option<&str>) -> Result<(), String> {
    match expected {
        Some(expected) if !record.ca_fingerprint.eq_ignore_ascii_case(expected) => Err(format!(
            "ca_fingerprint {} is not the cluster's Docker CA ({expected})",
            quote(&record.ca_fingerprint)
        )),
        _ => Ok(()),
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let label = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if label {
        Ok(())
    } else {
        Err(format!(
            "name {} is not a node name (1-{MAX_NAME} of a-z, 0-9, -)",
            quote(name)
        ))
    }
}

fn check_text(field: &str, value: &str) -> Result<(), String> {
    if value.len() > MAX_FIELD {
        return Err(format!(
            "{field} is {} bytes, more than {MAX_FIELD}",
            value.len()
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("{field} {} holds control characters", quote(value)));
    }
    Ok(())
}

/// Docker's own rule for network names.
fn check_docker_network_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= MAX_FIELD
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "bosh_network {} is not a Docker network name",
            quote(name)
        ))
    }
}

/// `tcp://<private_ip>:<port>`, the port the cluster's Docker listens on when known.
fn check_endpoint(record: &NodeRecord, docker_port: Option<u16>) -> Result<(), String> {
    let endpoint = &record.docker_endpoint;
    let addr: SocketAddrV4 = endpoint
        .strip_prefix("tcp://")
        .and_then(|rest| rest.parse().ok())
        .ok_or_else(|| {
            format!(
                "docker_endpoint {} is not tcp://<IPv4>:<port>",
                quote(endpoint)
            )
        })?;
    if *addr.ip() != record.private_ip {
        return Err(format!(
            "docker_endpoint {} is not on the node's address {}",
            quote(endpoint),
            record.private_ip
        ));
    }
    if let Some(port) = docker_port {
        if addr.port() != port {
            return Err(format!(
                "docker_endpoint {} is not on the cluster's Docker port {port}",
                quote(endpoint)
            ));
        }
    }
    if addr.ip().is_unspecified() || addr.ip().is_broadcast() || addr.ip().is_multicast() {
        return Err(format!(
            "private_ip {} is not a host address",
            record.private_ip
        ));
    }
    Ok(())
}

/// The subnet is the zone's (the contract's rule) and the gateway its first address.
fn check_subnet(record: &NodeRecord, flannel: Option<&FlannelSettings>) -> Result<(), String> {
    if let Some(flannel) = flannel {
        let expected = flannel
            .subnet_for_zone(record.zone)
            .map_err(|e| format!("zone {}: {e}", record.zone))?;
        if record.subnet != expected {
            return Err(format!(
                "subnet {} is not zone {}'s subnet {expected}",
                record.subnet, record.zone
            ));
        }
    }
    let gateway = molten_contract::gateway(record.subnet);
    if record.gateway != gateway || record.subnet.prefix_len() > 30 {
        return Err(format!(
            "gateway {} is not the first address of subnet {} ({gateway})",
            record.gateway, record.subnet
        ));
    }
    if record.subnet.contains(&record.private_ip) {
        return Err(format!(
            "private_ip {} lies inside its container subnet {}",
            record.private_ip, record.subnet
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
