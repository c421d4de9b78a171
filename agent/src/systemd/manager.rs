//! The systemd calls the agent makes, behind a trait, and the TLS paths its units name.

use std::path::PathBuf;

/// The systemd calls the agent makes. Production uses [`Systemctl`]; unit tests use a fake.
pub trait Systemd {
    /// Whether a systemd manager answers at all. When it does not, unit actions are reported
    /// as skipped in `UnitsOutcome::skipped`.
    fn is_running(&self) -> bool;
    /// `systemctl daemon-reload`: makes systemd read changed unit files.
    fn daemon_reload(&self) -> anyhow::Result<()>;
    /// Whether `unit` is running (so a changed configuration needs a restart to apply).
    fn is_active(&self, unit: &str) -> anyhow::Result<bool>;
    /// `systemctl restart <unit>`.
    fn restart(&self, unit: &str) -> anyhow::Result<()>;
    /// The units that have a start job queued (`systemctl list-jobs`).
    fn queued_start_jobs(&self) -> anyhow::Result<Vec<String>>;
    /// `systemctl start --no-block <units>`: enqueues start jobs without waiting for them
    /// (mc.service is ordered before these units, so waiting would deadlock the boot).
    fn start_no_block(&self, units: &[String]) -> anyhow::Result<()>;
    /// `systemctl stop <unit>`: ends a unit whose files the converge removed (a running timer
    /// stays armed from memory until stopped, even after `daemon-reload`).
    fn stop(&self, unit: &str) -> anyhow::Result<()>;
}

/// This node's Docker server TLS files as seen on the node (no `--root` prefix): they go into
/// dockerd's command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPaths {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}
