//! What keeps the boot going without an operator: `mc.service` and `mc-enroll.service` retry on
//! failure, with no start limit that gives up for good (a cold rack start, or an authority not yet
//! reachable, may take longer than any fixed number of attempts). Kept short: every byte here is
//! in every node's Ignition, which has a budget of 3,000 bytes on the dev profile.

/// `[Unit]` line: never stop retrying.
pub const NO_START_LIMIT: &str = "StartLimitIntervalSec=0\n";

/// `[Service]` lines: retried 10 s after each failure (a fixed, bounded pause).
pub const RESTART_ON_FAILURE: &str = "Restart=on-failure\nRestartSec=10\n";
