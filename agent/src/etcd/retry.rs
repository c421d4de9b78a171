//! How long and how often the agent tries etcd.

use std::time::Duration;

/// How long and how often to try reaching etcd before giving up.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Total time budget for all attempts.
    pub budget: Duration,
    /// Pause after the first failed attempt; doubles up to `max_backoff`.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            budget: Duration::from_secs(60),
            first_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(4),
        }
    }
}

impl Retry {
    pub fn with_budget(budget: Duration) -> Self {
        Self {
            budget,
            ..Self::default()
        }
    }
}

/// Per-request limit, so a hung member cannot stall a converge forever.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
