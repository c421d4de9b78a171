//! `mc bosh`: BOSH cloud-config and cpi-config rendered from the node records in etcd.
//!
//! One AZ `z<zone>` per BOSH node, each with its own Docker CPI `docker-z<zone>` that talks to
//! that node's dockerd over mutual TLS (the Docker CA and the operator's Docker client certificate
//! from `molten authority issue-client`; no key comes from etcd); one manual network with a subnet
//! per AZ on the node's flannel subnet. Output is sorted by zone and depends only on etcd and the
//! given certificate, so it stays the same across reboots.

mod yaml;

use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::{bail, Context, Result};
use etcd_client::Client;
use molten_contract::{keys, Role};

use crate::fs::{write_if_changed, MODE_PUBLIC, MODE_SECRET};
use crate::identity::Pair;
use crate::records::{self, Checked, NodeRecord, Rules};
use crate::text::escape;
use yaml::{emit, Map, Value};

/// The Docker API version the CPI speaks (Docker 18.06+).
pub const CPI_API_VERSION: &str = "1.38";
/// The name of the manual network in the cloud-config.
pub const NETWORK_NAME: &str = "default";
/// Addresses at the start of each subnet kept from BOSH (gateway and a few spare).
pub const RESERVED_HOSTS: u32 = 20;

/// Knobs of the cloud-config that the node records do not carry.
#[derive(Debug, Clone)]
pub struct CloudOptions {
    pub dns: Vec<Ipv4Addr>,
    /// Persistent disk size of the `default` disk type, MB.
    pub disk_size_mb: i64,
    pub compilation_workers: i64,
}

impl Default for CloudOptions {
    fn default() -> Self {
        Self {
            dns: vec![Ipv4Addr::new(8, 8, 8, 8)],
            disk_size_mb: 10_240,
            compilation_workers: 4,
        }
    }
}

/// One BOSH AZ: a node whose dockerd its CPI talks to.
#[derive(Debug, Clone)]
pub struct Zone {
    pub record: NodeRecord,
    pub network: String,
}

/// Everything the two documents are made from.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// The Docker CA every node's dockerd trusts.
    pub ca_pem: String,
    /// Sorted by zone.
    pub zones: Vec<Zone>,
    /// Nodes left out, with why (already escaped and bounded): the documents cover the others.
    pub left_out: Vec<LeftOut>,
}

/// A node `mc bosh` could not include.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftOut {
    /// The node's name as its key gives it, escaped.
    pub name: String,
    pub reason: String,
}

/// Reads the records of BOSH nodes (workers with BOSH enabled) from etcd; every CPI will trust
/// `docker_ca`. A node whose record is invalid or newer than this mc, or names another Docker CA
/// (its dockerd would refuse the operator's certificate, or is not ours), is left out (see
/// [`Inputs::left_out`]); so are both nodes of a zone claimed twice.
pub async fn load(etcd: &mut Client, rules: &Rules, docker_ca: &str) -> Result<Inputs> {
    let ca_pem = docker_ca.to_string();
    let ca_fingerprint = crate::identity::fingerprint(&ca_pem).context("the Docker CA")?;
    let mut zones = Vec::new();
    let mut left_out = Vec::new();
    let mut leave_out = |name: &str, reason: String| {
        left_out.push(LeftOut {
            name: escape(name),
            reason,
        })
    };
    for entry in records::read_records(etcd, rules).await? {
        let record = match entry.checked {
            Checked::Valid(record) => *record,
            Checked::Invalid(reason) => {
                leave_out(&entry.name, format!("invalid record: {reason}"));
                continue;
            }
            Checked::Newer {
                version,
                mc_version,
            } => {
                leave_out(&entry.name, newer_reason(version, mc_version.as_deref()));
                continue;
            }
        };
        let Some(network) = record.bosh_network.clone() else {
            continue;
        };
        if !record.has_role(Role::Worker) {
            continue;
        }
        // The record names the CA its dockerd trusts: a CPI must not be pointed at a daemon
        // that would not accept this certificate (or at an impostor's).
        if record.ca_fingerprint != ca_fingerprint {
            leave_out(
                &record.name,
                format!(
                    "its record names Docker CA {}, not the given one ({ca_fingerprint})",
                    escape(&record.ca_fingerprint)
                ),
            );
            continue;
        }
        zones.push(Zone { record, network });
    }
    zones.sort_by_key(|z| z.record.zone);
    let mut claimed_twice = std::collections::BTreeSet::new();
    for pair in zones.windows(2) {
        if pair[0].record.zone == pair[1].record.zone {
            claimed_twice.insert(pair[0].record.zone);
        }
    }
    zones.retain(|z| {
        let twice = claimed_twice.contains(&z.record.zone);
        if twice {
            leave_out(
                &z.record.name,
                format!("zone {} is claimed by another node too", z.record.zone),
            );
        }
        !twice
    });
    if zones.is_empty() && !left_out.is_empty() {
        let reasons: Vec<String> = left_out
            .iter()
            .map(|node| format!("{}: {}", node.name, node.reason))
            .collect();
        bail!("no usable BOSH node: {}", reasons.join("; "));
    }
    if zones.is_empty() {
        bail!(
            "no node record with BOSH enabled under {}",
            keys::NODES_PREFIX
        );
    }
    Ok(Inputs {
        ca_pem,
        zones,
        left_out,
    })
}

/// Why a record of a newer mc is not used (it may hold fields this mc would drop).
pub fn newer_reason(version: u64, mc_version: Option<&str>) -> String {
    format!(
        "record version {version}{} is newer than this mc reads ({}); upgrade mc",
        mc_version.map(|v| format!(" (mc {v})")).unwrap_or_default(),
        records::RECORD_VERSION
    )
}

fn az(zone: u32) -> String {
    format!("z{zone}")
}

fn cpi(zone: u32) -> String {
    format!("docker-z{zone}")
}

/// `cpis:` one Docker CPI per AZ, each presenting the operator's Docker client certificate
/// `client` (`molten authority issue-client`).
pub fn cpi_config(inputs: &Inputs, client: &Pair) -> String {
    let cpis: Vec<Map> = inputs
        .zones
        .iter()
        .map(|z| {
            let tls = Map::new()
                .with("ca", inputs.ca_pem.as_str())
                .with("certificate", client.cert_pem.as_str())
                .with("private_key", client.key_pem.as_str());
            let properties = Map::new()
                .with("host", z.record.docker_endpoint.as_str())
                .with("api_version", CPI_API_VERSION)
                .with("tls", tls);
            Map::new()
                .with("name", cpi(z.record.zone))
                .with("type", "docker")
                .with("properties", properties)
        })
        .collect();
    emit(Map::new().with("cpis", cpis))
}

/// `azs`, `networks`, `vm_types`, `disk_types`, `compilation`.
pub fn cloud_config(inputs: &Inputs, options: &CloudOptions) -> String {
    let azs: Vec<Map> = inputs
        .zones
        .iter()
        .map(|z| {
            Map::new()
                .with("name", az(z.record.zone))
                .with("cpi", cpi(z.record.zone))
        })
        .collect();
    let dns: Vec<String> = options.dns.iter().map(ToString::to_string).collect();
    let subnets: Vec<Map> = inputs
        .zones
        .iter()
        .map(|z| {
            let first = u32::from(z.record.subnet.network()) + 1;
            let reserved = format!(
                "{}-{}",
                Ipv4Addr::from(first),
                Ipv4Addr::from(first + RESERVED_HOSTS - 1)
            );
            Map::new()
                .with("az", az(z.record.zone))
                .with("range", z.record.subnet.to_string())
                .with("gateway", z.record.gateway.to_string())
                .with("reserved", vec![reserved])
                .with("dns", dns.clone())
                .with(
                    "cloud_properties",
                    Map::new().with("name", z.network.as_str()),
                )
        })
        .collect();
    let network = Map::new()
        .with("name", NETWORK_NAME)
        .with("type", "manual")
        .with("subnets", subnets);
    let vm_types = vec![Map::new()
        .with("name", "default")
        .with("cloud_properties", Map::new())];
    let disk_types = vec![Map::new()
        .with("name", "default")
        .with("disk_size", options.disk_size_mb)
        .with("cloud_properties", Map::new())];
    let first_az = inputs.zones.first().map(|z| az(z.record.zone));
    let compilation = Map::new()
        .with("az", first_az.unwrap_or_default())
        .with("network", NETWORK_NAME)
        .with("vm_type", "default")
        .with("workers", options.compilation_workers)
        .with("reuse_compilation_vms", true);
    emit(
        Map::new()
            .with("azs", azs)
            .with("networks", vec![network])
            .with("vm_types", vm_types)
            .with("disk_types", disk_types)
            .with("compilation", Value::from(compilation)),
    )
}

/// File names `mc bosh write` uses.
pub const CLOUD_CONFIG_FILE: &str = "cloud-config.yml";
pub const CPI_CONFIG_FILE: &str = "cpi-config.yml";

/// Writes both documents into `dir`, each only if it changed (the cpi-config holds private keys:
/// 0600). Returns the files written.
pub fn write(
    dir: &Path,
    inputs: &Inputs,
    client: &Pair,
    options: &CloudOptions,
) -> Result<Vec<String>> {
    let mut written = Vec::new();
    let files = [
        (
            CLOUD_CONFIG_FILE,
            cloud_config(inputs, options),
            MODE_PUBLIC,
        ),
        (CPI_CONFIG_FILE, cpi_config(inputs, client), MODE_SECRET),
    ];
    for (name, text, mode) in files {
        if write_if_changed(&dir.join(name), text.as_bytes(), mode)? {
            written.push(name.to_string());
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests;
