//! `mc status`: the whole cluster from etcd, one line per node — which node failed, at which
//! step, and why.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use etcd_client::Client;
use serde::Serialize;
use time::OffsetDateTime;

use crate::docker::probe::{Outcome, ProbeView, Prober};
use crate::records::{self, Checked, NodeRecord, Rules, Status};
use crate::text::{bound, escape, MAX_ERROR_BYTES};

/// How a node looks from etcd (and, with the probe, from the network).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Last converge succeeded, recently enough, and Docker's endpoint passed the probe.
    Ok,
    /// A step of the last converge failed (see `failed_step`, `error`).
    Failed,
    /// Docker's endpoint failed the probe: refused, timed out, wrong certificate, ping failed
    /// (see `probe`).
    Unreachable,
    /// The last converge is older than the stale threshold: certificates are renewed only when
    /// `mc converge` runs, so run it (or reboot).
    Stale,
    /// A record but no status (or an unreadable one).
    Unknown,
    /// The node record fails its checks (see `error`: `invalid: <reason>`); only this node is
    /// affected.
    Invalid,
    /// The node record was written by a newer mc than this one: shown, not judged.
    Newer,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    pub name: String,
    pub zone: Option<u32>,
    pub private_ip: Option<String>,
    pub subnet: Option<String>,
    pub docker_endpoint: Option<String>,
    /// When the last converge finished (RFC 3339) and how long ago, in seconds.
    pub last_converge: Option<String>,
    pub age_seconds: Option<i64>,
    pub health: Health,
    pub failed_step: Option<String>,
    pub error: Option<String>,
    /// The node's first certificate expiry (RFC 3339) and a warning when it is near.
    pub cert_expiry: Option<String>,
    pub cert_warning: Option<String>,
    /// What the Docker probe found (absent with `--no-probe` or without a valid record).
    pub probe: Option<ProbeView>,
}

/// Options of `mc status`.
#[derive(Debug, Clone)]
pub struct StatusOptions {
    pub stale_after: Duration,
    /// Probes each node's Docker endpoint (`None`: no probe).
    pub prober: Option<Prober>,
}

impl Default for StatusOptions {
    fn default() -> Self {
        Self {
            // The certificate renewal window: past it, a node that never converges may let its
            // Docker certificate expire.
            stale_after: Duration::from_secs(30 * 24 * 3600),
            prober: None,
        }
    }
}

/// What `mc status` reads from etcd: every node record (each checked on its own) and every
/// status. Reads only, so a caller may repeat it after a transient etcd failure.
#[derive(Debug, Clone)]
pub struct ClusterState {
    pub records: Vec<records::RecordEntry>,
    pub statuses: Vec<(String, Result<Status, String>)>,
}

/// Reads [`ClusterState`] from etcd.
pub async fn read(client: &mut Client, rules: &Rules) -> Result<ClusterState> {
    Ok(ClusterState {
        records: records::read_records(client, rules).await?,
        statuses: records::all_statuses(client).await?,
    })
}

/// One view per node of `state`, after probing each node's Docker endpoint (when
/// `options.prober` is set).
pub async fn collect(state: ClusterState, options: &StatusOptions) -> Vec<NodeView> {
    let mut records: BTreeMap<String, NodeRecord> = BTreeMap::new();
    let mut unusable: BTreeMap<String, (Health, String)> = BTreeMap::new();
    for entry in state.records {
        match entry.checked {
            Checked::Valid(record) => {
                records.insert(entry.name, *record);
            }
            Checked::Invalid(reason) => {
                unusable.insert(entry.name, (Health::Invalid, format!("invalid: {reason}")));
            }
            Checked::Newer {
                version,
                mc_version,
            } => {
                let reason = crate::bosh::newer_reason(version, mc_version.as_deref());
                unusable.insert(entry.name, (Health::Newer, reason));
            }
        }
    }
    let statuses: BTreeMap<String, Result<Status, String>> = state.statuses.into_iter().collect();
    let mut names: Vec<&String> = records
        .keys()
        .chain(unusable.keys())
        .chain(statuses.keys())
        .collect();
    names.sort();
    names.dedup();
    // Probe every node at once: a cluster of dead nodes costs one timeout, not one per node.
    let mut probes = tokio::task::JoinSet::new();
    if let Some(prober) = &options.prober {
        for record in records.values() {
            let (name, endpoint, prober) = (
                record.name.clone(),
                record.docker_endpoint.clone(),
                prober.clone(),
            );
            probes.spawn(async move { (name, prober.probe(&endpoint).await) });
        }
    }
    let probed: BTreeMap<String, Outcome> = probes.join_all().await.into_iter().collect();
    let now = OffsetDateTime::now_utc();
    names
        .into_iter()
        .map(|name| {
            if let Some((health, reason)) = unusable.get(name) {
                return unusable_view(name, *health, reason);
            }
            view(
                name,
                records.get(name),
                statuses.get(name),
                probed.get(name),
                now,
                options,
            )
        })
        .collect()
}

/// A node whose record cannot be used: its name and why, nothing read from the record.
fn unusable_view(name: &str, health: Health, reason: &str) -> NodeView {
    NodeView {
        name: name.to_string(),
        zone: None,
        private_ip: None,
        subnet: None,
        docker_endpoint: None,
        last_converge: None,
        age_seconds: None,
        health,
        failed_step: None,
        error: Some(reason.to_string()),
        cert_expiry: None,
        cert_warning: None,
        probe: None,
    }
}

/// Builds one line; pure so the rules are testable.
pub fn view(
    name: &str,
    record: Option<&NodeRecord>,
    status: Option<&Result<Status, String>>,
    probe: Option<&Outcome>,
    now: OffsetDateTime,
    options: &StatusOptions,
) -> NodeView {
    let mut v = NodeView {
        name: name.to_string(),
        zone: record.map(|r| r.zone),
        private_ip: record.map(|r| r.private_ip.to_string()),
        subnet: record.map(|r| r.subnet.to_string()),
        docker_endpoint: record.map(|r| r.docker_endpoint.clone()),
        last_converge: None,
        age_seconds: None,
        health: Health::Unknown,
        failed_step: None,
        error: None,
        cert_expiry: None,
        cert_warning: None,
        probe: probe.map(ProbeView::from),
    };
    if let Some(expiry) = record.and_then(crate::cert_expiry::earliest) {
        v.cert_expiry = Some(crate::timestamp::rfc3339(expiry));
        v.cert_warning = crate::cert_expiry::warning(name, expiry, now);
    }
    let status = match status {
        Some(Ok(status)) => status,
        Some(Err(e)) => {
            v.error = Some(e.clone());
            return v;
        }
        None => {
            v.error = Some("no converge status published".to_string());
            return v;
        }
    };
    v.last_converge = Some(status.finished.clone());
    let age = crate::timestamp::parse_rfc3339(&status.finished).map(|t| (now - t).whole_seconds());
    v.age_seconds = age;
    v.health = if let Some(step) = status.failed_step() {
        v.failed_step = Some(step.name.clone());
        v.error = step.error.clone();
        Health::Failed
    } else if let Some(failed) = probe.filter(|p| !p.is_ok()) {
        v.error = Some(format!("Docker {failed}"));
        Health::Unreachable
    } else if age.is_none_or(|a| a > options.stale_after.as_secs() as i64) {
        Health::Stale
    } else {
        Health::Ok
    };
    v
}

/// `1d3h`, `5m`, `42s`.
pub fn human_age(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86400, s % 86400 / 3600),
    }
}

/// The table `mc status` prints. Every cell that came from etcd is escaped ([`escape`]): a
/// record cannot move the cursor, recolour the terminal or forge a line.
pub fn table(views: &[NodeView]) -> String {
    let dash = || "-".to_string();
    let rows: Vec<[String; 8]> = views
        .iter()
        .map(|v| {
            [
                v.name.clone(),
                v.zone.map(|z| format!("z{z}")).unwrap_or_else(dash),
                v.subnet.clone().unwrap_or_else(dash),
                v.docker_endpoint.clone().unwrap_or_else(dash),
                v.age_seconds
                    .map(|a| format!("{} ago", human_age(a)))
                    .unwrap_or_else(dash),
                format!("{:?}", v.health).to_lowercase(),
                v.probe
                    .as_ref()
                    .map(|p| p.summary.to_string())
                    .unwrap_or_else(dash),
                match (&v.failed_step, &v.error) {
                    (Some(step), Some(e)) => format!("{step}: {e}"),
                    (None, Some(e)) => e.clone(),
                    _ => String::new(),
                },
            ]
            .map(|cell| bound(&escape(&cell), MAX_ERROR_BYTES))
        })
        .collect();
    let header = [
        "NODE",
        "ZONE",
        "SUBNET",
        "DOCKER",
        "CONVERGED",
        "HEALTH",
        "PROBE",
        "DETAIL",
    ];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
    let expiries: Vec<String> = views
        .iter()
        .filter_map(|v| Some(format!("{} {}", escape(&v.name), v.cert_expiry.as_ref()?)))
        .collect();
    if !expiries.is_empty() {
        out.push_str(&format!(
            "certificates valid until: {}\n",
            expiries.join(", ")
        ));
    }
    for warning in views.iter().filter_map(|v| v.cert_warning.as_ref()) {
        out.push_str(&format!("warning: {}\n", escape(warning)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::converge::{State, StepOutcome};

    fn status(finished: OffsetDateTime, failed: bool) -> Status {
        Status {
            node: "n0".into(),
            steps: vec![StepOutcome {
                name: "flannel".into(),
                stage: "boot".into(),
                state: if failed {
                    State::Failed
                } else {
                    State::Unchanged
                },
                detail: String::new(),
                error: failed.then(|| "etcd put failed".to_string()),
                duration_ms: 3,
            }],
            ok: !failed,
            started: crate::timestamp::rfc3339(finished),
            finished: crate::timestamp::rfc3339(finished),
            duration_ms: 3,
            mc_version: "0".into(),
        }
    }

    #[test]
    fn health_rules() {
        let now = OffsetDateTime::now_utc();
        let o = StatusOptions::default();
        let ok = Ok(status(now - time::Duration::minutes(5), false));
        assert_eq!(
            view(
                "n0",
                None,
                Some(&ok),
                Some(&Outcome::Ok { pinged: true }),
                now,
                &o
            )
            .health,
            Health::Ok
        );
        let wrong = Outcome::WrongCertificate("not issued by the cluster's Docker CA".into());
        let v = view("n0", None, Some(&ok), Some(&wrong), now, &o);
        assert_eq!(v.health, Health::Unreachable);
        assert_eq!(
            v.error.as_deref(),
            Some("Docker wrong certificate: not issued by the cluster's Docker CA")
        );
        assert_eq!(v.probe.unwrap().result, "wrong-certificate");
        for fine in [Outcome::Ok { pinged: false }, Outcome::Connected] {
            assert_eq!(
                view("n0", None, Some(&ok), Some(&fine), now, &o).health,
                Health::Ok
            );
        }
        let old = Ok(status(now - time::Duration::days(40), false));
        assert_eq!(
            view("n0", None, Some(&old), None, now, &o).health,
            Health::Stale
        );
        let failed = Ok(status(now, true));
        let v = view("n0", None, Some(&failed), Some(&Outcome::Refused), now, &o);
        assert_eq!(v.health, Health::Failed);
        assert_eq!(v.failed_step.as_deref(), Some("flannel"));
        assert_eq!(v.error.as_deref(), Some("etcd put failed"));
        assert_eq!(
            view("n0", None, None, None, now, &o).health,
            Health::Unknown
        );
    }

    #[test]
    fn table_shows_the_failed_step() {
        let now = OffsetDateTime::now_utc();
        let failed = Ok(status(now - time::Duration::seconds(90), true));
        let v = view(
            "n0",
            None,
            Some(&failed),
            None,
            now,
            &StatusOptions::default(),
        );
        let text = table(&[v]);
        assert!(text.starts_with("NODE"), "{text}");
        assert!(text.contains("1m ago"), "{text}");
        assert!(
            text.contains("failed  -      flannel: etcd put failed"),
            "{text}"
        );
        assert_eq!(human_age(90_000), "1d1h");
    }
}
