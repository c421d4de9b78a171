//! The agent's one result vocabulary, a leaf every step module may use: a step returns
//! [`Done`] (its [`State`] and a detail) or an error; [`run_step`] records either as a
//! [`StepOutcome`] (one line of `mc status`). Subsystems that report more (the systemd and
//! Docker network steps) turn their own details into a `Done` themselves.

use std::future::Future;
use std::time::Instant;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Unchanged,
    Changed,
    Failed,
    /// Not run: a step it needs failed, or there is nothing to act on (e.g. no systemd).
    Skipped,
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::Unchanged => "unchanged",
            State::Changed => "changed",
            State::Failed => "failed",
            State::Skipped => "skipped",
        })
    }
}

/// A step's successful result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    pub state: State,
    pub detail: String,
}

impl Done {
    pub fn changed(detail: impl Into<String>) -> Self {
        Self {
            state: State::Changed,
            detail: detail.into(),
        }
    }
    pub fn unchanged(detail: impl Into<String>) -> Self {
        Self {
            state: State::Unchanged,
            detail: detail.into(),
        }
    }
    pub fn skipped(detail: impl Into<String>) -> Self {
        Self {
            state: State::Skipped,
            detail: detail.into(),
        }
    }
    /// Changed if `changed`, else unchanged.
    pub fn from_flag(changed: bool, detail: impl Into<String>) -> Self {
        if changed {
            Self::changed(detail)
        } else {
            Self::unchanged(detail)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepOutcome {
    pub name: String,
    /// `boot` or `network`: the stage the step belongs to.
    pub stage: String,
    pub state: State,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: u64,
}

impl StepOutcome {
    pub fn skipped(name: &str, stage: &str, why: impl Into<String>) -> Self {
        Self {
            name: name.to_string(),
            stage: stage.to_string(),
            state: State::Skipped,
            detail: why.into(),
            error: None,
            duration_ms: 0,
        }
    }

    pub fn failed(&self) -> bool {
        self.state == State::Failed
    }

    /// Whether no step of `steps` failed: the verdict of a run and of a published status.
    pub fn all_ok(steps: &[StepOutcome]) -> bool {
        !steps.iter().any(StepOutcome::failed)
    }
}

/// Runs one step, timing it and turning an error into a failed outcome with the full chain.
/// The value the step produces (for later steps) is returned alongside.
pub async fn run_step<T, F>(name: &str, stage: &str, step: F) -> (StepOutcome, Option<T>)
where
    F: Future<Output = anyhow::Result<(Done, T)>>,
{
    let started = Instant::now();
    let result = step.await;
    let duration_ms = started.elapsed().as_millis() as u64;
    let (state, detail, error, value) = match result {
        Ok((done, value)) => (done.state, done.detail, None, Some(value)),
        Err(err) => (State::Failed, String::new(), Some(format!("{err:#}")), None),
    };
    match &error {
        Some(e) => tracing::error!(step = name, error = %e, "step failed"),
        None => tracing::info!(step = name, state = %state, detail = %detail, "step done"),
    }
    let outcome = StepOutcome {
        name: name.to_string(),
        stage: stage.to_string(),
        state,
        detail,
        error,
        duration_ms,
    };
    (outcome, value)
}
