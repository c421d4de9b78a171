//! `mc converge`: runs the steps of a stage in order, each reported, then publishes the result.
//!
//! Stage `boot` (mc.service, before flanneld and Docker): address, identity (the enrolled
//! identity valid, renewed when due), etcd, etcd-member (a learner of this node promoted once
//! caught up; members only), rbac (members), flannel, units, record. Stage `network` (mc-network.service, after Docker and flanneld): etcd,
//! docker-network. A step whose input is missing because an earlier step failed is `skipped`.

mod network;
mod options;
mod record;
mod steps;
pub mod trust;

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};

pub use crate::outcome::{run_step, Done, State, StepOutcome};
pub use network::docker_host;
pub use options::{DockerClient, Options, Stage};
pub use record::{node_record, RecordCerts};

use crate::config::Config;
use crate::etcd::Etcd;
use crate::records::{self, Status, MC_VERSION};
use crate::systemd::Systemd;

/// The result of a converge run.
#[derive(Debug, Clone)]
pub struct Report {
    /// The steps this run executed.
    pub steps: Vec<StepOutcome>,
    /// The status as published (including the other stage's last steps).
    pub status: Status,
    /// Why the status could not be published, if it could not.
    pub publish_error: Option<String>,
}

impl Report {
    /// Whether every step of this run succeeded and the status was published.
    pub fn ok(&self) -> bool {
        self.publish_error.is_none() && StepOutcome::all_ok(&self.steps)
    }

    /// Whether this run changed anything.
    pub fn changed(&self) -> bool {
        self.steps.iter().any(|s| s.state == State::Changed)
    }
}

/// Loads the node config once, with its derived values ([`Config`]); errors name the file.
pub fn load_config(path: &Path) -> Result<Config> {
    Config::load(path)
}

/// Runs the steps of `options.stage` and publishes the status. Errors only when the node config
/// cannot be read; every other failure is a failed step in the report.
pub async fn converge(options: &Options, systemd: &dyn Systemd) -> Result<Report> {
    let config = load_config(&options.config_path())?;
    let started_at = crate::timestamp::now();
    let started = Instant::now();
    let mut run = steps::Run::new(options, &config, systemd);
    run.execute().await;
    let steps::Run { outcomes, etcd, .. } = run;

    let mut status = Status {
        node: config.node.name.clone(),
        steps: outcomes.clone(),
        ok: StepOutcome::all_ok(&outcomes),
        started: crate::timestamp::rfc3339(started_at),
        finished: crate::timestamp::rfc3339(crate::timestamp::now()),
        duration_ms: started.elapsed().as_millis() as u64,
        mc_version: MC_VERSION.to_string(),
    };
    let publish_error = match etcd {
        Some(mut etcd) => publish(&mut etcd, options.stage, &mut status)
            .await
            .err()
            .map(|e| format!("{e:#}")),
        None => Some("etcd unreachable: status not published".to_string()),
    };
    Ok(Report {
        steps: outcomes,
        status,
        publish_error,
    })
}

async fn publish(etcd: &mut Etcd, stage: Stage, status: &mut Status) -> Result<()> {
    let node = &status.node;
    let previous = etcd
        .run("reading the last status", |mut client| async move {
            records::read_status(&mut client, node).await
        })
        .await?;
    status.steps = records::merge_steps(
        previous.as_ref(),
        stage.names(),
        std::mem::take(&mut status.steps),
    );
    status.ok = StepOutcome::all_ok(&status.steps);
    let status = &*status;
    etcd.run("publishing the status", |mut client| async move {
        records::publish_status(&mut client, status).await
    })
    .await
    .context("publishing the status")
}

/// A short human summary of a report, one line per step.
pub fn summary(report: &Report) -> String {
    let mut out = String::new();
    for step in &report.steps {
        let text = step.error.as_deref().unwrap_or(&step.detail);
        out.push_str(&format!(
            "{:<15} {:<9} {:>6}ms  {}\n",
            step.name, step.state, step.duration_ms, text
        ));
    }
    let verdict = match (report.ok(), report.changed()) {
        (false, _) => "failed",
        (true, true) => "changed",
        (true, false) => "unchanged",
    };
    out.push_str(&format!("converge: {verdict}\n"));
    if let Some(e) = &report.publish_error {
        out.push_str(&format!("status not published: {e}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str, state: State, error: Option<&str>) -> StepOutcome {
        StepOutcome {
            name: name.into(),
            stage: "boot".into(),
            state,
            detail: "d".into(),
            error: error.map(str::to_string),
            duration_ms: 2,
        }
    }

    fn report(steps: Vec<StepOutcome>, publish_error: Option<&str>) -> Report {
        Report {
            status: Status {
                node: "n".into(),
                steps: steps.clone(),
                ok: true,
                started: String::new(),
                finished: String::new(),
                duration_ms: 0,
                mc_version: MC_VERSION.into(),
            },
            steps,
            publish_error: publish_error.map(str::to_string),
        }
    }

    #[test]
    fn verdicts() {
        let unchanged = report(vec![step("etcd", State::Unchanged, None)], None);
        assert!(unchanged.ok() && !unchanged.changed());
        assert!(summary(&unchanged).ends_with("converge: unchanged\n"));

        let changed = report(vec![step("identity", State::Changed, None)], None);
        assert!(summary(&changed).ends_with("converge: changed\n"));

        let failed = report(vec![step("identity", State::Failed, Some("boom"))], None);
        assert!(!failed.ok());
        let text = summary(&failed);
        assert!(text.contains("identity") && text.contains("boom"), "{text}");
        assert!(text.ends_with("converge: failed\n"));

        let unpublished = report(
            vec![step("etcd", State::Unchanged, None)],
            Some("etcd gone"),
        );
        assert!(
            !unpublished.ok(),
            "a status that was not published is a failure"
        );
        assert!(summary(&unpublished).contains("status not published: etcd gone"));
    }

    #[test]
    fn stages_name_their_steps() {
        assert_eq!(Stage::All.names(), &["boot", "network"]);
        assert_eq!(Stage::Network.names(), &["network"]);
    }
}
