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
    tls: Option<ServerTls>,
    client_port: u16,
    /// Plain-HTTP `/health` (and metrics): with client-cert-auth the client port needs a cert.
    metrics_port: u16,
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
        Self::start_inner(name, None)
    }

    /// Starts a member whose client and peer URLs are https with mutual TLS
    /// (`--client-cert-auth`, `--peer-client-cert-auth`): a client without a certificate from
    /// `tls.ca` gets nothing. Authentication is off until someone runs `auth enable`.
    pub fn start_tls(name: &str, tls: ServerTls) -> Result<Self> {
        Self::start_inner(name, Some(tls))
    }

    fn start_inner(name: &str, tls: Option<ServerTls>) -> Result<Self> {
        ensure_binary(ETCD, "etcd-server")?;
        // Ports are picked free but may be taken before etcd binds them: retry with new ones.
        let mut last = None;
        for _ in 0..3 {
            match Self::try_start(name, tls.clone()) {
                Ok(server) => return Ok(server),
                Err(err) => last = Some(err),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    fn try_start(name: &str, tls: Option<ServerTls>) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("molten-etcd-")
            .tempdir()
            .context("failed to create etcd temp dir")?;
        let client_port = free_port()?;
        let peer_port = free_port()?;
        let metrics_port = free_port()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let client = format!("{scheme}://127.0.0.1:{client_port}");
        let peer = format!("{scheme}://127.0.0.1:{peer_port}");
        let log = dir.path().join("etcd.log");
        let out = File::create(&log).context("failed to create etcd log")?;
        let mut command = Command::new(ETCD);
        if let Some(tls) = &tls {
            let path = |p: &Path| p.display().to_string();
            command
                .arg("--client-cert-auth")
                .arg(format!("--trusted-ca-file={}", path(&tls.ca)))
                .arg(format!("--cert-file={}", path(&tls.cert)))
                .arg(format!("--key-file={}", path(&tls.key)))
                .arg("--peer-client-cert-auth")
                .arg(format!("--peer-trusted-ca-file={}", path(&tls.ca)))
                .arg(format!("--peer-cert-file={}", path(&tls.cert)))
                .arg(format!("--peer-key-file={}", path(&tls.key)));
        }
        let child = command
            .arg(format!(
                "--listen-metrics-urls=http://127.0.0.1:{metrics_port}"
            ))
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
            tls,
            client_port,
            metrics_port,
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
        let addr = format!("127.0.0.1:{}", self.metrics_port);
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

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// The client URL, `http://127.0.0.1:PORT` (`https://` with TLS).
    pub fn endpoint(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme(), self.client_port)
    }

    /// The peer URL, `http://127.0.0.1:PORT` (`https://` with TLS).
    pub fn peer_url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme(), self.peer_port)
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
    /// With TLS it presents the server's own certificate (whose CN is the etcd user once
    /// authentication is on); [`EtcdServer::etcdctl_as`] presents another.
    pub fn etcdctl(&self, args: &[&str]) -> Result<String> {
        match &self.tls {
            None => etcdctl(&self.endpoint(), args),
            Some(tls) => etcdctl_tls(&self.endpoint(), &tls.ca, &tls.cert, &tls.key, args),
        }
    }

    /// `etcdctl` with the client certificate `cert`/`key` (the server's CA is trusted).
    pub fn etcdctl_as(&self, cert: &Path, key: &Path, args: &[&str]) -> Result<String> {
        let tls = self.tls.as_ref().context("etcdctl_as needs a TLS server")?;
        etcdctl_tls(&self.endpoint(), &tls.ca, cert, key, args)
    }

    /// Stops etcd now (SIGTERM, then SIGKILL after a grace period). Dropping does the same.
    pub fn stop(mut self) -> Result<()> {
        self.child.stop()?;
        Ok(())
    }
}

/// The server side of etcd's mutual TLS (PEM files): the CA that clients and peers must be
/// signed by, and the member's own certificate (used for client and peer URLs).
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Runs `etcdctl --endpoints=ENDPOINTS ARGS` (v3 API), returning stdout.
pub fn etcdctl(endpoints: &str, args: &[&str]) -> Result<String> {
    run_etcdctl(endpoints, &[], args)
}

/// `etcdctl` over TLS with a client certificate.
pub fn etcdctl_tls(
    endpoints: &str,
    ca: &Path,
    cert: &Path,
    key: &Path,
    args: &[&str],
) -> Result<String> {
    let tls = [
        format!("--cacert={}", ca.display()),
        format!("--cert={}", cert.display()),
        format!("--key={}", key.display()),
    ];
    run_etcdctl(endpoints, &tls, args)
}

fn run_etcdctl(endpoints: &str, tls: &[String], args: &[&str]) -> Result<String> {
    ensure_binary(ETCDCTL, "etcd-client")?;
    let output = Command::new(ETCDCTL)
        .env("ETCDCTL_API", "3")
        .args(tls)
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
