//! What the agent publishes in etcd: the node record (what others need to reach this node) and
//! the status of its last converge. `mc status` and `mc bosh` read these, each record checked on
//! its own ([`check`]): one bad record is reported, never fatal to the others.

pub mod check;
mod record;

use anyhow::Result;
use etcd_client::Client;
use molten_contract::keys;
use serde::{Deserialize, Serialize};

use crate::etcd;
use crate::outcome::StepOutcome;
use crate::text::{bound, MAX_ERROR_BYTES};
pub use check::{check_record, Checked, Rules, MAX_RECORD_BYTES};
pub use record::{CertSummary, NodeRecord, RECORD_VERSION};

/// This build's version, in records and `mc version`.
pub const MC_VERSION: &str = env!("CARGO_PKG_VERSION");
/// A status larger than this is not read (a real one is a few KiB: errors are bounded).
pub const MAX_STATUS_BYTES: usize = 256 * 1024;

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
        Some(entry) => Ok(parse_status(node, entry.value.as_bytes()).ok()),
        None => Ok(None),
    }
}

/// Puts the status with every step's error and detail bounded, so it always fits etcd's request
/// limit whatever a failing step quoted.
pub async fn publish_status(client: &mut Client, status: &Status) -> Result<()> {
    let value = serde_json::to_string(&bounded(status)).expect("status serializes");
    etcd::put(client, &keys::node_status(&status.node), &value).await
}

fn bounded(status: &Status) -> Status {
    let mut status = status.clone();
    for step in &mut status.steps {
        step.detail = bound(&step.detail, MAX_ERROR_BYTES);
        if let Some(error) = &mut step.error {
            *error = bound(error, MAX_ERROR_BYTES);
        }
    }
    status
}

/// The status stored under `/molten/status/<key_name>`, checked: bounded size, the node it names
/// is its key's. The error is escaped and bounded, safe to print.
pub fn parse_status(key_name: &str, value: &[u8]) -> Result<Status, String> {
    if value.len() > MAX_STATUS_BYTES {
        return Err(format!(
            "status is {} bytes, more than {MAX_STATUS_BYTES}",
            value.len()
        ));
    }
    let status: Status = serde_json::from_slice(value)
        .map_err(|e| bound(&format!("unreadable status: {e}"), MAX_ERROR_BYTES))?;
    if status.node != key_name {
        return Err(format!(
            "status names node {} under its key's {}",
            crate::text::quote(&status.node),
            crate::text::quote(key_name)
        ));
    }
    Ok(status)
}

/// One key under the node-record prefix: the name its key gives and what the value is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordEntry {
    /// The key's suffix, as stored (untrusted: escape before printing).
    pub name: String,
    pub checked: Checked,
}

/// The rules records are checked against: the node config's when it is given, else flannel's
/// network config from etcd (the Docker port is then not checked).
pub async fn rules(
    client: &mut Client,
    config: Option<&molten_contract::NodeConfig>,
) -> Result<Rules> {
    if let Some(config) = config {
        return Ok(Rules::from_config(config));
    }
    let key = format!("{}/config", molten_contract::FLANNEL_DEFAULT_PREFIX);
    let flannel = etcd::get(client, &key)
        .await?
        .and_then(|entry| Rules::from_flannel_config(&entry.value));
    Ok(Rules {
        flannel,
        docker_port: None,
        docker_ca_fingerprint: None,
    })
}

/// Every key under the node-record prefix, sorted by name, each checked on its own.
pub async fn read_records(client: &mut Client, rules: &Rules) -> Result<Vec<RecordEntry>> {
    let mut out = Vec::new();
    for (key, value) in etcd::get_prefix_bytes(client, keys::NODES_PREFIX).await? {
        let name = key[keys::NODES_PREFIX.len()..].to_string();
        let checked = check_record(&name, &value, rules);
        out.push(RecordEntry { name, checked });
    }
    Ok(out)
}

/// The valid node records, sorted by name (others are left out: see [`read_records`]).
pub async fn all_records(client: &mut Client) -> Result<Vec<NodeRecord>> {
    let rules = rules(client, None).await?;
    Ok(read_records(client, &rules)
        .await?
        .into_iter()
        .filter_map(|entry| match entry.checked {
            Checked::Valid(record) => Some(*record),
            _ => None,
        })
        .collect())
}

/// Every status in etcd, by the name its key gives; unreadable ones are reported as such.
pub async fn all_statuses(client: &mut Client) -> Result<Vec<(String, Result<Status, String>)>> {
    let mut out = Vec::new();
    for (key, value) in etcd::get_prefix_bytes(client, keys::STATUS_PREFIX).await? {
        let name = key[keys::STATUS_PREFIX.len()..].to_string();
        let status = parse_status(&name, &value);
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
