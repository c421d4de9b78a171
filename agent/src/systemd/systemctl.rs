//! The production [`Systemd`]: the `systemctl` of the machine `mc` runs on.

use std::path::Path;
use std::process::{Command, Output};

use anyhow::{bail, Context};

use super::Systemd;

/// Talks to the running system's systemd through `systemctl`.
///
/// Which root it acts for is decided by [`super::converge_units`]: unit actions only happen when
/// the managed root itself shows a booted systemd (`<root>/run/systemd/system`), so
/// `mc converge --root DIR` on an operator's machine never reloads that machine's systemd.
#[derive(Debug, Clone, Copy, Default)]
pub struct Systemctl;

/// `systemctl is-system-running` prints this when no systemd is running as PID 1.
const OFFLINE: &str = "offline";

impl Systemctl {
    fn run(args: &[&str]) -> anyhow::Result<Output> {
        Command::new("systemctl")
            .args(args)
            .output()
            .with_context(|| format!("failed to run systemctl {}", args.join(" ")))
    }

    fn run_ok(args: &[&str]) -> anyhow::Result<()> {
        let out = Self::run(args)?;
        if !out.status.success() {
            bail!(
                "systemctl {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}

impl Systemd for Systemctl {
    /// systemd is running when `/run/systemd/system` exists (what `sd_booted()` checks), or
    /// when `systemctl is-system-running` names any state but "offline" (it exits non-zero for
    /// "degraded" and "starting" too, which still mean systemd answers).
    fn is_running(&self) -> bool {
        if Path::new("/run/systemd/system").is_dir() {
            return true;
        }
        match Self::run(&["is-system-running"]) {
            Ok(out) => {
                let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
                !state.is_empty() && state != OFFLINE
            }
            Err(_) => false,
        }
    }

    fn daemon_reload(&self) -> anyhow::Result<()> {
        Self::run_ok(&["daemon-reload"])
    }

    /// "active", "reloading" and "activating" count as active: the unit runs (or is about to)
    /// with its old configuration. Anything else printed means inactive; no answer is an error.
    fn is_active(&self, unit: &str) -> anyhow::Result<bool> {
        let out = Self::run(&["is-active", unit])?;
        let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if state.is_empty() {
            bail!(
                "systemctl is-active {unit} gave no state ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(is_active_state(&state))
    }

    fn restart(&self, unit: &str) -> anyhow::Result<()> {
        Self::run_ok(&["restart", unit])
    }
}

fn is_active_state(state: &str) -> bool {
    matches!(state, "active" | "reloading" | "activating")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_that_run_old_configuration_count_as_active() {
        for state in ["active", "reloading", "activating"] {
            assert!(is_active_state(state), "{state}");
        }
        for state in ["inactive", "failed", "deactivating", "unknown"] {
            assert!(!is_active_state(state), "{state}");
        }
    }
}
