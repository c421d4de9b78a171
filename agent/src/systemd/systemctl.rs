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

/// `systemctl` started through a command prefix, for a systemd this process cannot reach
/// directly, e.g. `nsenter -t <pid1> -m -p -r -w --` for a node in its own namespaces (the lab
/// tests use it). Same calls and answers as [`Systemctl`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemctlVia {
    prefix: Vec<String>,
}

impl SystemctlVia {
    /// `prefix` is the command (and its arguments) that runs `systemctl ...` after it; it must
    /// not be empty.
    pub fn new(prefix: Vec<String>) -> anyhow::Result<Self> {
        if prefix.is_empty() {
            bail!("a command prefix for systemctl needs at least a program");
        }
        Ok(Self { prefix })
    }
}

/// `systemctl is-system-running` prints this when no systemd is running as PID 1.
const OFFLINE: &str = "offline";

/// How to start `systemctl`: directly, or after a prefix.
trait Runner {
    fn command(&self) -> Command;

    fn run(&self, args: &[&str]) -> anyhow::Result<Output> {
        self.command()
            .args(args)
            .output()
            .with_context(|| format!("failed to run systemctl {}", args.join(" ")))
    }

    fn run_ok(&self, args: &[&str]) -> anyhow::Result<()> {
        let out = self.run(args)?;
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

    /// `systemctl is-system-running` names any state but "offline" (it exits non-zero for
    /// "degraded" and "starting" too, which still mean systemd answers).
    fn answers(&self) -> bool {
        match self.run(&["is-system-running"]) {
            Ok(out) => {
                let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
                !state.is_empty() && state != OFFLINE
            }
            Err(_) => false,
        }
    }

    /// "active", "reloading" and "activating" count as active: the unit runs (or is about to)
    /// with its old configuration. Anything else printed means inactive; no answer is an error.
    fn unit_active(&self, unit: &str) -> anyhow::Result<bool> {
        let out = self.run(&["is-active", unit])?;
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
}

impl Runner for Systemctl {
    fn command(&self) -> Command {
        Command::new("systemctl")
    }
}

impl Runner for SystemctlVia {
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.prefix[0]);
        cmd.args(&self.prefix[1..]).arg("systemctl");
        cmd
    }
}

impl Systemd for Systemctl {
    /// systemd is running when `/run/systemd/system` exists (what `sd_booted()` checks), or
    /// when `systemctl is-system-running` answers.
    fn is_running(&self) -> bool {
        Path::new("/run/systemd/system").is_dir() || self.answers()
    }

    fn daemon_reload(&self) -> anyhow::Result<()> {
        self.run_ok(&["daemon-reload"])
    }

    fn is_active(&self, unit: &str) -> anyhow::Result<bool> {
        self.unit_active(unit)
    }

    fn restart(&self, unit: &str) -> anyhow::Result<()> {
        self.run_ok(&["restart", unit])
    }
}

impl Systemd for SystemctlVia {
    fn is_running(&self) -> bool {
        self.answers()
    }

    fn daemon_reload(&self) -> anyhow::Result<()> {
        self.run_ok(&["daemon-reload"])
    }

    fn is_active(&self, unit: &str) -> anyhow::Result<bool> {
        self.unit_active(unit)
    }

    fn restart(&self, unit: &str) -> anyhow::Result<()> {
        self.run_ok(&["restart", unit])
    }
}

fn is_active_state(state: &str) -> bool {
    matches!(state, "active" | "reloading" | "activating")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_runs_systemctl_after_it() {
        assert!(SystemctlVia::new(vec![]).is_err());
        let via = SystemctlVia::new(vec!["/usr/bin/env".into(), "-i".into()]).unwrap();
        let cmd = via.command();
        assert_eq!(cmd.get_program(), "/usr/bin/env");
        let args: Vec<_> = cmd.get_args().collect();
        assert_eq!(args, ["-i", "systemctl"]);
        // Here no systemd runs: a prefix that cannot reach one answers "not running".
        let nowhere = SystemctlVia::new(vec!["/nonexistent/prefix".into()]).unwrap();
        assert!(!nowhere.is_running());
        assert!(nowhere.daemon_reload().is_err());
    }

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
