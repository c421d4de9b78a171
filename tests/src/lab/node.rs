//! One lab node: a copy of the image as its root, booted with systemd as PID 1 in its own PID,
//! mount, UTS and IPC namespaces, inside its network namespace. No VM and no systemd-nspawn
//! (which needs a system bus on the host): `unshare` + `pivot_root`, so the root is a real mount
//! root and services' own mount namespacing (PrivateTmp=, ProtectSystem=) works.
//!
//! Killing PID 1 ends the node; booting the same root again is a reboot.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::cgroups::NodeCgroups;
use super::netns::NetNs;
use crate::process::{die_with_parent, log_tail, run, signal, wait_until, ChildGuard};

/// Mounts the root on itself, pivots into it and execs systemd. `$1` = root, `$2` = the file
/// that stands in for `/dev/console`. Runs as PID 1 of the node's new PID namespace.
const BOOT_SCRIPT: &str = r#"set -e
mount --bind "$1" "$1"
mount -t proc proc "$1/proc"
mount --bind "$2" "$1/dev/console"
cd "$1"
pivot_root . .
umount -l .
cd /
mount -t sysfs sys /sys
mount -t tmpfs -o mode=0755 tmp /run
mount -t tmpfs tmp /tmp
exec env -i container=other PATH=/usr/sbin:/usr/bin:/sbin:/bin /lib/systemd/systemd --system
"#;

const NODE_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Joins the cgroups listed in `$MOLTEN_LAB_CGROUP_PROCS` (colon separated), then execs the
/// rest of the command line (which creates the namespaces, the cgroup one rooted here).
const JOIN_CGROUPS: &str = r#"IFS=:
for procs in $MOLTEN_LAB_CGROUP_PROCS; do echo $$ > "$procs" || exit 1; done
unset MOLTEN_LAB_CGROUP_PROCS IFS
exec "$@"
"#;

#[derive(Debug)]
struct Booted {
    /// The `unshare` process (our child); PID 1 of the node is its only child.
    unshare: ChildGuard,
    pid1: u32,
    cgroups: NodeCgroups,
}

#[derive(Debug)]
pub struct LabNode {
    pub name: String,
    pub ip: Ipv4Addr,
    /// The node's directory: `root/`, `console.log`, `boot.log`.
    pub dir: PathBuf,
    pub netns: NetNs,
    booted: Option<Booted>,
    boots: u32,
}

impl LabNode {
    /// Copies `image` to `<dir>/root` (`cp -a --reflink=auto`) and wraps it.
    pub fn create(
        name: &str,
        ip: Ipv4Addr,
        image: &Path,
        dir: &Path,
        netns: NetNs,
    ) -> Result<Self> {
        copy_image(image, dir)?;
        Ok(Self::from_prepared(name, ip, dir, netns))
    }

    /// A node whose `<dir>/root` is already in place (see [`copy_image`]).
    pub fn from_prepared(name: &str, ip: Ipv4Addr, dir: &Path, netns: NetNs) -> Self {
        Self {
            name: name.to_string(),
            ip,
            dir: dir.to_path_buf(),
            netns,
            booted: None,
            boots: 0,
        }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    pub fn console_log(&self) -> PathBuf {
        self.dir.join("console.log")
    }

    /// How often this node has been booted.
    pub fn boots(&self) -> u32 {
        self.boots
    }

    /// The host PID of the node's systemd, while it runs.
    pub fn pid1(&self) -> Option<u32> {
        self.booted.as_ref().map(|b| b.pid1)
    }

    /// Boots systemd as PID 1 on the node's root, in its network namespace.
    pub fn boot(&mut self) -> Result<()> {
        if self.booted.is_some() {
            bail!("{} is already running", self.name);
        }
        let console = self.console_log();
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&console)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("boot.log"))?;
        let cgroups = NodeCgroups::create(&format!("{}-{}", self.netns.name(), self.name))?;
        let procs: Vec<String> = cgroups
            .procs_files()
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", JOIN_CGROUPS, "join-cgroups"])
            .env("MOLTEN_LAB_CGROUP_PROCS", procs.join(":"))
            .args(["ip", "netns", "exec", self.netns.name(), "unshare"]);
        cmd.args([
            "--cgroup",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount",
            "--uts",
            "--ipc",
            "--propagation",
            "private",
            "/bin/sh",
            "-c",
            BOOT_SCRIPT,
            "boot",
        ])
        .arg(self.root())
        .arg(&console)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
        // If the test process dies without running its destructors, the kernel kills the node.
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("failed to start {}", self.name))?;
        let mut unshare = ChildGuard::new(format!("node {}", self.name), child)
            .with_grace(Duration::from_secs(5));
        let unshare_pid = unshare.pid();
        let pid1 = wait_until(
            "the node's PID 1",
            Duration::from_secs(10),
            Duration::from_millis(20),
            || {
                unshare.ensure_running()?;
                Ok(first_child(unshare_pid))
            },
        )
        .with_context(|| {
            format!(
                "{} did not boot; boot.log:\n{}",
                self.name,
                log_tail(&self.dir.join("boot.log"), 2000)
            )
        })?;
        self.booted = Some(Booted {
            unshare,
            pid1,
            cgroups,
        });
        self.boots += 1;
        Ok(())
    }

    /// Kills PID 1 (the whole node goes with its PID namespace) and reaps it.
    pub fn kill(&mut self) -> Result<()> {
        let Some(mut booted) = self.booted.take() else {
            return Ok(());
        };
        signal(booted.pid1, libc::SIGKILL)?;
        booted.unshare.stop()?;
        booted.cgroups.remove()
    }

    /// Kill, then boot the same root again.
    pub fn reboot(&mut self) -> Result<()> {
        self.kill()?;
        self.boot()
    }

    fn nsenter(&self, args: &[&str]) -> Result<Command> {
        let pid1 = self
            .pid1()
            .with_context(|| format!("{} is not running", self.name))?;
        let mut cmd = Command::new("nsenter");
        cmd.args([
            "-t",
            &pid1.to_string(),
            "-m",
            "-u",
            "-i",
            "-n",
            "-p",
            "-r",
            "-w",
        ])
        .args(["--", "/usr/bin/env", "-i", NODE_PATH, "HOME=/root"])
        .args(args)
        .stdin(Stdio::null());
        Ok(cmd)
    }

    /// Runs a command inside the node; its full output, whatever the exit status.
    pub fn exec_output(&self, args: &[&str]) -> Result<Output> {
        self.nsenter(args)?
            .output()
            .with_context(|| format!("failed to enter {}", self.name))
    }

    /// Runs a command inside the node and returns stdout; fails with stderr on a non-zero exit.
    pub fn exec(&self, args: &[&str]) -> Result<String> {
        let out = self.exec_output(args)?;
        if !out.status.success() {
            bail!(
                "on {}: `{}` failed with {}: {}{}",
                self.name,
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Waits until systemd has finished booting (`running` or `degraded`) and returns the state.
    pub fn wait_booted(&self, timeout: Duration) -> Result<String> {
        let pid1 = self
            .pid1()
            .with_context(|| format!("{} is not running", self.name))?;
        let result = wait_until(
            &format!("{} to finish booting", self.name),
            timeout,
            Duration::from_millis(200),
            || {
                if !Path::new(&format!("/proc/{pid1}")).exists() {
                    bail!("{} ended while booting", self.name);
                }
                let out = self.exec_output(&["systemctl", "is-system-running"])?;
                let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
                Ok(matches!(state.as_str(), "running" | "degraded").then_some(state))
            },
        );
        result.with_context(|| {
            format!(
                "{}; jobs:\n{}",
                self.name,
                self.exec(&["systemctl", "list-jobs", "--no-pager"])
                    .unwrap_or_default()
            )
        })
    }

    /// `systemctl is-active UNIT` (e.g. `active`, `failed`, `inactive`).
    pub fn unit_state(&self, unit: &str) -> Result<String> {
        let out = self.exec_output(&["systemctl", "is-active", unit])?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// The node's journal for `unit` (last lines), for failure messages.
    pub fn journal(&self, unit: &str, lines: u32) -> String {
        self.exec(&[
            "journalctl",
            "--no-pager",
            "-b",
            "-u",
            unit,
            "-n",
            &lines.to_string(),
        ])
        .unwrap_or_else(|e| format!("<no journal: {e:#}>"))
    }
}

impl LabNode {
    /// Ordering cycles in the node's boot transaction, as `systemd-analyze verify` finds them in
    /// the node's unit files (empty when there is none). PID 1 breaks such a cycle at boot by
    /// deleting one job of it, a different one from boot to boot (hash order), before journald
    /// runs, so the journal never says why a unit was not started.
    pub fn ordering_cycles(&self) -> Result<Vec<String>> {
        let out = self.exec_output(&["systemd-analyze", "verify", "default.target"])?;
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        Ok(text
            .lines()
            .filter(|l| {
                l.contains("ordering cycle")
                    || l.contains("Found dependency on")
                    || l.contains("to break ordering cycle")
            })
            .map(str::to_string)
            .collect())
    }

    /// What went on in the node, for a failing test's message: ordering cycles, failed units,
    /// pending jobs and the journal of each unit in `units`.
    pub fn diagnose(&self, units: &[&str]) -> String {
        let mut report = format!("===== {} =====\n", self.name);
        match self.ordering_cycles() {
            Ok(cycles) if cycles.is_empty() => {}
            Ok(cycles) => report += &format!("ordering cycle(s):\n{}\n", cycles.join("\n")),
            Err(err) => report += &format!("systemd-analyze verify: {err:#}\n"),
        }
        for args in [
            &["systemctl", "--failed", "--no-pager"][..],
            &["systemctl", "list-jobs", "--no-pager"][..],
        ] {
            report += &self.exec(args).unwrap_or_else(|e| format!("{e:#}\n"));
        }
        for unit in units {
            report += &format!("--- {unit}\n{}", self.journal(unit, 25));
        }
        report
    }
}

impl Drop for LabNode {
    fn drop(&mut self) {
        if let Err(err) = self.kill() {
            eprintln!("molten-lab: failed to stop node {}: {err:#}", self.name);
        }
    }
}

/// Copies `image` to `<dir>/root` (`cp -a --reflink=auto`) with a persistent journal dir.
pub fn copy_image(image: &Path, dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let root = dir.join("root");
    run(Command::new("cp")
        .args(["-a", "--reflink=auto"])
        .arg(image)
        .arg(&root))
    .with_context(|| format!("failed to copy the image into {}", dir.display()))?;
    // A persistent journal: readable after the node is gone (`journalctl -D`).
    std::fs::create_dir_all(root.join("var/log/journal"))?;
    Ok(root)
}

/// The first child of `pid` (from `/proc/<pid>/task/*/children`).
fn first_child(pid: u32) -> Option<u32> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    tasks.filter_map(|t| t.ok()).find_map(|task| {
        let children = std::fs::read_to_string(task.path().join("children")).ok()?;
        children.split_whitespace().next()?.parse().ok()
    })
}
