//! What the agent publishes in etcd: the node record (what others need to reach this node) and
//! the status of its last converge. `mc status` and `mc bosh` read these.

use std::net::Ipv4Addr;

use anyhow::{Context, Result};
use etcd_client::Client;
use ipnet::Ipv4Net;
use molten_contract::{keys, Role};
use serde::{Deserialize, Serialize};

use crate::etcd;
use crate::outcome::StepOutcome;

/// This build's version, in records and `mc version`.
pub const MC_VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub node: String,
    /// Every step of the last run of each stage (`boot`, `network`).
    pub steps: Vec<StepOutcome>,
    /// No step failed.
    pub ok: bool,
    /// Start and end of the latest run, RFC 3339.
    pub started: String,
    pub finished: String,
    pub duration_ms: u64,
    pub mc_version: String,
}

impl Status {
    /// The first failed step, if any.
    pub fn failed_step(&self) -> Option<&StepOutcome> {
        self.steps.iter().find(|s| s.failed())
    }
}

/// Keeps the steps of stages this run did not execute (from the previous status), so the status
/// shows a node's whole picture after `--stage boot` then `--stage network`.
pub fn merge_steps(
    previous: Option<&Status>,
    ran_stages: &[&str],
    new: Vec<StepOutcome>,
) -> Vec<StepOutcome> {
    let mut steps: Vec<StepOutcome> = previous
        .map(|p| {
            p.steps
                .iter()
                .filter(|s| !ran_stages.contains(&s.stage.as_str()))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    steps.extend(new);
    // Boot steps first, as they run at boot.
    steps.sort_by_key(|s| s.stage != "boot");
    steps
}

/// Puts the node record unless etcd already holds the same one. Returns whether it wrote.
pub async fn publish_record(client: &mut Client, record: &NodeRecord) -> Result<bool> {
    let key = keys::node_record(&record.name);
    if let Some(existing) = etcd::get(client, &key).await? {
        if serde_json::from_str::<NodeRecord>(&existing.value)
            .ok()
            .as_ref()
            == Some(record)
        {
            return Ok(false);
        }
    }
    let value = serde_json::to_string(record).expect("record serializes");
    etcd::put(client, &key, &value).await?;
    Ok(true)
}

pub async fn read_status(client: &mut Client, node: &str) -> Result<Option<Status>> {
    let key = keys::node_status(node);
    match etcd::get(client, &key).await? {
        // An unreadable old status (older format) is replaced rather than fatal.
        Some(entry) => Ok(serde_json::from_str(&entry.value).ok()),
        None => Ok(None),
    }
}

pub async fn publish_status(client: &mut Client, status: &Status) -> Result<()> {
    let value = serde_json::to_string(status).expect("status serializes");
    etcd::put(client, &keys::node_status(&status.node), &value).await
}

/// Every node record in etcd, sorted by name. A record that does not parse is an error naming
/// its key: output built from half the cluster would be wrong.
pub async fn all_records(client: &mut Client) -> Result<Vec<NodeRecord>> {
    let mut out = Vec::new();
    for (key, value) in etcd::get_prefix(client, keys::NODES_PREFIX).await? {
        let record: NodeRecord = serde_json::from_str(&value)
            .with_context(|| format!("etcd key {key} is not a node record"))?;
        out.push(record);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Every status in etcd, by node name; unreadable ones are reported as such.
pub async fn all_statuses(client: &mut Client) -> Result<Vec<(String, Result<Status, String>)>> {
    let mut out = Vec::new();
    for (key, value) in etcd::get_prefix(client, keys::STATUS_PREFIX).await? {
        let name = key.trim_start_matches(keys::STATUS_PREFIX).to_string();
        let status = serde_json::from_str(&value).map_err(|e| format!("unreadable status: {e}"));
        out.push((name, status));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::converge::State;

    fn step(name: &str, stage: &str, state: State) -> StepOutcome {
        StepOutcome {
            name: name.into(),
            stage: stage.into(),
            state,
            detail: String::new(),
            error: None,
            duration_ms: 1,
        }
    }

    #[test]
    fn steps_of_the_other_stage_are_kept() {
        let previous = Status {
            node: "n".into(),
            steps: vec![
                step("etcd", "boot", State::Unchanged),
                step("docker-network", "network", State::Failed),
            ],
            ok: false,
            started: String::new(),
            finished: String::new(),
            duration_ms: 0,
            mc_version: MC_VERSION.into(),
        };
        let merged = merge_steps(
            Some(&previous),
            &["network"],
            vec![step("docker-network", "network", State::Changed)],
        );
        let names: Vec<_> = merged.iter().map(|s| (s.name.as_str(), s.state)).collect();
        assert_eq!(
            names,
            vec![
                ("etcd", State::Unchanged),
                ("docker-network", State::Changed)
            ]
        );
        let merged = merge_steps(Some(&previous), &["boot", "network"], vec![]);
        assert!(merged.is_empty());
    }
}
