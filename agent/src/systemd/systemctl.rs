//! The production [`Systemd`]: `systemctl`, run directly or through a command prefix.

use std::path::Path;
use std::process::{Command, Output};

use anyhow::{bail, Context};

use super::manager::Systemd;

/// Talks to a systemd through `systemctl`: by default the one of the machine `mc` runs on, or,
/// through a command prefix, one this process cannot reach directly (e.g.
/// `nsenter -t <pid1> -m -p -r -w --` for a node in its own namespaces; the lab tests use it).
///
/// Which root it acts for is decided by [`super::converge_units`]: unit actions only happen when
/// the managed root itself shows a booted systemd (`<root>/run/systemd/system`), so
/// `mc converge --root DIR` on an operator's machine never reloads that machine's systemd.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Systemctl {
    /// The command (and its arguments) that runs `systemctl ...` after it; empty: run it directly.
    prefix: Vec<String>,
}

impl Systemctl {
    /// The `systemctl` of the machine `mc` runs on.
    pub fn local() -> Self {
        Self::default()
    }

    /// `systemctl` started after `prefix`, which must name at least a program.
    pub fn via(prefix: Vec<String>) -> anyhow::Result<Self> {
        if prefix.is_empty() {
            bail!("a command prefix for systemctl needs at least a program");
        }
        Ok(Self { prefix })
    }

    fn command(&self) -> Command {
        match self.prefix.split_first() {
            None => Command::new("systemctl"),
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg("systemctl");
                cmd
            }
        }
    }

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
}

/// `systemctl is-system-running` prints this when no systemd is running as PID 1.
const OFFLINE: &str = "offline";

impl Systemd for Systemctl {
    /// systemd is running when `systemctl is-system-running` answers or, for the local one, when
    /// `/run/systemd/system` exists (what `sd_booted()` checks; through a prefix that path is
    /// this machine's, not the target's, so it says nothing).
    fn is_running(&self) -> bool {
        (self.prefix.is_empty() && Path::new("/run/systemd/system").is_dir()) || self.answers()
    }

    fn daemon_reload(&self) -> anyhow::Result<()> {
        self.run_ok(&["daemon-reload"])
    }

    /// "active", "reloading" and "activating" count as active: the unit runs (or is about to)
    /// with its old configuration. Anything else printed means inactive; no answer is an error.
    fn is_active(&self, unit: &str) -> anyhow::Result<bool> {
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

    fn restart(&self, unit: &str) -> anyhow::Result<()> {
        self.run_ok(&["restart", unit])
    }

    fn queued_start_jobs(&self) -> anyhow::Result<Vec<String>> {
        let args = ["list-jobs", "--no-legend", "--no-pager", "--plain"];
        let out = self.run(&args)?;
        if !out.status.success() {
            bail!(
                "systemctl {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(parse_start_jobs(&String::from_utf8_lossy(&out.stdout)))
    }

    fn start_no_block(&self, units: &[String]) -> anyhow::Result<()> {
        let mut args = vec!["start", "--no-block"];
        args.extend(units.iter().map(String::as_str));
        self.run_ok(&args)
    }

    fn stop(&self, unit: &str) -> anyhow::Result<()> {
        self.run_ok(&["stop", unit])
    }
}

/// Units with a `start` job in `systemctl list-jobs --no-legend` output: one job per line,
/// `JOB UNIT TYPE STATE`. Other lines ("No jobs running.", blank) are not jobs.
fn parse_start_jobs(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                [id, unit, "start", _state, ..] if id.parse::<u64>().is_ok() => {
                    Some(unit.to_string())
                }
                _ => None,
            }
        })
        .collect()
}

fn is_active_state(state: &str) -> bool {
    matches!(state, "active" | "reloading" | "activating")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_runs_systemctl_after_it() {
        let local = Systemctl::local().command();
        assert_eq!(local.get_program(), "systemctl");
        assert_eq!(local.get_args().count(), 0);
        assert!(Systemctl::via(vec![]).is_err());
        let via = Systemctl::via(vec!["/usr/bin/env".into(), "-i".into()]).unwrap();
        let cmd = via.command();
        assert_eq!(cmd.get_program(), "/usr/bin/env");
        let args: Vec<_> = cmd.get_args().collect();
        assert_eq!(args, ["-i", "systemctl"]);
        // Here no systemd runs: a prefix that cannot reach one answers "not running".
        let nowhere = Systemctl::via(vec!["/nonexistent/prefix".into()]).unwrap();
        assert!(!nowhere.is_running());
        assert!(nowhere.daemon_reload().is_err());
    }

    #[test]
    fn start_jobs_are_parsed_from_list_jobs() {
        let text = "  41 docker.service      start waiting\n\
                    42 mc-network.service  start waiting\n\
                    7 mc.service          start running\n\
                    50 flanneld.service    stop  waiting\n\
                    51 docker.socket       restart waiting\n";
        assert_eq!(
            parse_start_jobs(text),
            ["docker.service", "mc-network.service", "mc.service"]
        );
        assert!(parse_start_jobs("No jobs running.\n").is_empty());
        assert!(parse_start_jobs("").is_empty());
        assert!(parse_start_jobs("JOB UNIT TYPE STATE\n").is_empty());
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
