//! A real etcd (Debian's `/usr/bin/etcd`, v3 API) on 127.0.0.1 with random ports and a temp
//! data dir.
//!
//! ```no_run
//! let etcd = molten_testkit::etcd::EtcdServer::start()?;
//! let endpoint = etcd.endpoint(); // "http://127.0.0.1:PORT"
//! etcd.etcdctl(&["put", "/k", "v"])?;
//! # anyhow::Ok(())
//! ```
//! Dropping the server kills it by PID and removes its data dir.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tempfile::TempDir;

use crate::http;
use crate::packages::ensure_binary;
use crate::process::{free_port, log_tail, wait_until, ChildGuard};

pub const ETCD: &str = "/usr/bin/etcd";
pub const ETCDCTL: &str = "/usr/bin/etcdctl";

/// How long [`EtcdServer::start`] waits for `/health` to say true.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A running single-member etcd. Stopped (by PID) on drop.
#[derive(Debug)]
pub struct EtcdServer {
    // Field order matters: the process stops before its data dir is removed.
    child: ChildGuard,
    name: String,
    client_port: u16,
    peer_port: u16,
    log: PathBuf,
    dir: TempDir,
}

impl EtcdServer {
    /// Starts a member named `default`.
    pub fn start() -> Result<Self> {
        Self::start_named("default")
    }

    /// Starts a member named `name` (its name appears in `member list`).
    pub fn start_named(name: &str) -> Result<Self> {
        ensure_binary(ETCD, "etcd-server")?;
        // Ports are picked free but may be taken before etcd binds them: retry with new ones.
        let mut last = None;
        for _ in 0..3 {
            match Self::try_start(name) {
                Ok(server) => return Ok(server),
                Err(err) => last = Some(err),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    fn try_start(name: &str) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("molten-etcd-")
            .tempdir()
            .context("failed to create etcd temp dir")?;
        let client_port = free_port()?;
        let peer_port = free_port()?;
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let log = dir.path().join("etcd.log");
        let out = File::create(&log).context("failed to create etcd log")?;
        let child = Command::new(ETCD)
            .arg(format!("--name={name}"))
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster={name}={peer}"))
            .arg("--initial-cluster-state=new")
            .arg(format!("--initial-cluster-token=molten-test-{client_port}"))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("failed to start {ETCD}"))?;
        let mut server = Self {
            child: ChildGuard::new(format!("etcd {name}"), child),
            name: name.to_string(),
            client_port,
            peer_port,
            log,
            dir,
        };
        server.wait_healthy().with_context(|| {
            format!(
                "etcd did not become healthy; its log ends with:\n{}",
                log_tail(&server.log, 3000)
            )
        })?;
        Ok(server)
    }

    fn wait_healthy(&mut self) -> Result<()> {
        let addr = format!("127.0.0.1:{}", self.client_port);
        let child = &mut self.child;
        wait_until(
            "etcd /health",
            START_TIMEOUT,
            Duration::from_millis(100),
            || {
                child.ensure_running()?;
                Ok(match http::get_tcp(&addr, "/health") {
                    Ok(r) if r.status == 200 && r.body.contains("\"true\"") => Some(()),
                    _ => None,
                })
            },
        )
    }

    /// The client URL, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The peer URL, `http://127.0.0.1:PORT`.
    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The etcd process's PID (0 once stopped).
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// The server's temp dir (data dir and log); removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The file etcd logs to.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Runs `etcdctl --endpoints=<this server> ARGS`, returning stdout; fails with its stderr.
    pub fn etcdctl(&self, args: &[&str]) -> Result<String> {
        etcdctl(&self.endpoint(), args)
    }

    /// Stops etcd now (SIGTERM, then SIGKILL after a grace period). Dropping does the same.
    pub fn stop(mut self) -> Result<()> {
        self.child.stop()?;
        Ok(())
    }
}

/// Runs `etcdctl --endpoints=ENDPOINTS ARGS` (v3 API), returning stdout.
pub fn etcdctl(endpoints: &str, args: &[&str]) -> Result<String> {
    ensure_binary(ETCDCTL, "etcd-client")?;
    let output = Command::new(ETCDCTL)
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .arg("--command-timeout=10s")
        .args(args)
        .output()
        .with_context(|| format!("failed to run {ETCDCTL}"))?;
    if !output.status.success() {
        bail!(
            "etcdctl {} failed with {}: {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    String::from_utf8(output.stdout).context("etcdctl printed non-UTF-8")
}
