//! A real dockerd (Debian's `docker.io`) per test, isolated from every other dockerd on the
//! machine: its own data root, exec root (and so its own containerd), pidfile and unix socket in
//! a temp dir. By default it runs with `--bridge=none --iptables=false`, so it creates no
//! `docker0` and touches no firewall; user-defined bridge networks still work (each gets its own
//! `br-<id>` bridge, removed again when the daemon is dropped).
//!
//! ```no_run
//! use molten_testkit::docker::Dockerd;
//! let docker = Dockerd::start()?;                        // unix socket only
//! let tls = Dockerd::builder().arg("--tlsverify").start()?; // extra daemon flags
//! docker.import_busybox_image("busybox")?;
//! docker.cli(&["run", "--rm", "busybox", "true"])?;
//! println!("{}", docker.host());                          // unix:///tmp/.../docker.sock
//! # anyhow::Ok(())
//! ```

use std::fs::File;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tempfile::TempDir;

use crate::http;
use crate::mounts::unmount_under;
use crate::packages::ensure_binary;
use crate::process::{log_tail, run, wait_until, ChildGuard};

pub const DOCKERD: &str = "/usr/sbin/dockerd";
/// The Debian CLI (a different `docker` may come first on PATH).
pub const DOCKER_CLI: &str = "/usr/bin/docker";
pub const BUSYBOX: &str = "/bin/busybox";

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Collects daemon flags; [`DockerdBuilder::start`] launches it.
#[derive(Debug, Clone)]
pub struct DockerdBuilder {
    args: Vec<String>,
    default_network_flags: bool,
}

impl DockerdBuilder {
    /// Adds one daemon flag, e.g. `-H tcp://127.0.0.1:PORT` as two calls or `--tlsverify`.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Drops the default `--bridge=none --iptables=false`. Only for tests that really need
    /// `docker0`: give them a unique `--bip` and `--bridge` so concurrent daemons do not collide.
    pub fn without_default_network_flags(mut self) -> Self {
        self.default_network_flags = false;
        self
    }

    pub fn start(self) -> Result<Dockerd> {
        ensure_binary(DOCKERD, "docker.io")?;
        let dir = tempfile::Builder::new()
            .prefix("molten-dockerd-")
            .tempdir()
            .context("failed to create dockerd temp dir")?;
        let socket = dir.path().join("docker.sock");
        let log = dir.path().join("dockerd.log");
        let out = File::create(&log).context("failed to create dockerd log")?;
        let mut cmd = Command::new(DOCKERD);
        cmd.arg(format!("--data-root={}", dir.path().join("data").display()))
            .arg(format!("--exec-root={}", dir.path().join("exec").display()))
            .arg(format!(
                "--pidfile={}",
                dir.path().join("docker.pid").display()
            ))
            .arg(format!("--host=unix://{}", socket.display()));
        if self.default_network_flags {
            cmd.args(["--bridge=none", "--iptables=false", "--ip-masq=false"]);
        }
        let child = cmd
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("failed to start {DOCKERD}"))?;
        let mut daemon = Dockerd {
            child: ChildGuard::new("dockerd", child).with_grace(Duration::from_secs(20)),
            socket,
            log,
            dir,
        };
        daemon.wait_ready().with_context(|| {
            format!(
                "dockerd did not answer /_ping; its log ends with:\n{}",
                log_tail(&daemon.log, 3000)
            )
        })?;
        Ok(daemon)
    }
}

/// A running dockerd. Dropping it stops it by PID, removes the bridges of its networks and
/// unmounts anything left under its temp dir.
#[derive(Debug)]
pub struct Dockerd {
    child: ChildGuard,
    socket: PathBuf,
    log: PathBuf,
    dir: TempDir,
}

impl Dockerd {
    /// A daemon with the default isolation flags and nothing else.
    pub fn start() -> Result<Self> {
        Self::builder().start()
    }

    pub fn builder() -> DockerdBuilder {
        DockerdBuilder {
            args: Vec::new(),
            default_network_flags: true,
        }
    }

    fn wait_ready(&mut self) -> Result<()> {
        let socket = self.socket.clone();
        let child = &mut self.child;
        wait_until(
            "dockerd /_ping",
            START_TIMEOUT,
            Duration::from_millis(100),
            || {
                child.ensure_running()?;
                Ok(match http::get_unix(&socket, "/_ping") {
                    Ok(r) if r.status == 200 => Some(()),
                    _ => None,
                })
            },
        )
    }

    /// `unix:///.../docker.sock`, for `DOCKER_HOST` or `docker -H`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// A scratch directory that lives as long as the daemon (e.g. for TLS files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs the Debian docker CLI against this daemon and returns its stdout; fails with stderr.
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        let output = Command::new(DOCKER_CLI)
            .arg("--host")
            .arg(self.host())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("failed to run {DOCKER_CLI}"))?;
        if !output.status.success() {
            bail!(
                "docker {} failed with {}: {}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        String::from_utf8(output.stdout).context("docker printed non-UTF-8")
    }

    /// Imports a tiny image named `name` holding only a static busybox (package
    /// `busybox-static`) with a link per applet; its default command is `/bin/sh`. No registry
    /// needed.
    pub fn import_busybox_image(&self, name: &str) -> Result<()> {
        ensure_binary(BUSYBOX, "busybox-static")?;
        let rootfs = tempfile::tempdir_in(self.dir.path())?;
        let bin = rootfs.path().join("bin");
        std::fs::create_dir_all(&bin)?;
        std::fs::copy(BUSYBOX, bin.join("busybox")).context("failed to copy busybox")?;
        for applet in busybox_applets()? {
            if applet != "busybox" {
                symlink("busybox", bin.join(&applet))
                    .with_context(|| format!("failed to link applet {applet}"))?;
            }
        }
        let tarball = self.dir.path().join(format!("{name}.tar"));
        run(Command::new("tar")
            .arg("-C")
            .arg(rootfs.path())
            .arg("-cf")
            .arg(&tarball)
            .arg("."))?;
        self.cli(&[
            "import",
            "--change",
            "CMD [\"/bin/sh\"]",
            &tarball.display().to_string(),
            name,
        ])?;
        Ok(())
    }

    /// Linux bridge names of this daemon's bridge networks (to remove them after it stops).
    fn bridge_names(&self) -> Vec<String> {
        let Ok(out) = self.cli(&[
            "network",
            "ls",
            "--filter",
            "driver=bridge",
            "--no-trunc",
            "--format",
            "{{.ID}}",
        ]) else {
            return Vec::new();
        };
        out.lines()
            .filter_map(|id| {
                let name = self
                    .cli(&[
                        "network",
                        "inspect",
                        "--format",
                        "{{index .Options \"com.docker.network.bridge.name\"}}",
                        id,
                    ])
                    .ok()?;
                let name = name.trim();
                Some(if name.is_empty() || name == "<no value>" {
                    format!("br-{}", &id[..12.min(id.len())])
                } else {
                    name.to_string()
                })
            })
            .collect()
    }

    /// Stops the daemon now; dropping does the same.
    pub fn stop(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        if self.child.pid() == 0 {
            return Ok(());
        }
        let bridges = self.bridge_names();
        self.child.stop()?;
        for bridge in bridges {
            // Only links this daemon created; the default `docker0` is never one of them here.
            if bridge != "docker0" && Path::new("/sys/class/net").join(&bridge).exists() {
                if let Err(err) = run(Command::new("ip").args(["link", "del", &bridge])) {
                    eprintln!("molten-testkit: could not remove bridge {bridge}: {err:#}");
                }
            }
        }
        unmount_under(self.dir.path())
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if let Err(err) = self.shutdown() {
            eprintln!("molten-testkit: dockerd cleanup failed: {err:#}");
        }
    }
}

fn busybox_applets() -> Result<Vec<String>> {
    let output = Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .context("failed to run busybox --list")?;
    if !output.status.success() {
        bail!("busybox --list failed with {}", output.status);
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .filter(|a| !a.is_empty() && !a.contains('/'))
        .collect())
}
