//! A real multi-member etcd cluster (Debian's `/usr/bin/etcd`) on 127.0.0.1, as molten runs it:
//! https client and peer URLs with `--client-cert-auth` and `--peer-client-cert-auth`, every
//! member with its own ports and data dir, stopped by PID on drop. Members can be stopped, wiped,
//! started again, and new ones started with the environment a join produced — or, as molten's
//! static members run it, with the unit's static settings overridden by `mc etcd-join`'s env
//! file ([`EtcdCluster::start_unit`]).
//!
//! ```no_run
//! use molten_testkit::etcd_cluster::EtcdCluster;
//! let dir = tempfile::tempdir()?;
//! let trust = molten_testkit::pki::TestTrust::new(dir.path())?;
//! let mut cluster = EtcdCluster::start(&["a", "b", "c"], trust.etcd_server("cluster")?)?;
//! cluster.stop("c")?;
//! cluster.wipe("c")?;
//! # anyhow::Ok(())
//! ```

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tempfile::TempDir;

use crate::etcd::{ServerTls, ETCD};
use crate::http;
use crate::packages::ensure_binary;
use crate::process::{free_port, log_tail, wait_until, ChildGuard};

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// One member's ports, directory and (while it runs) process.
#[derive(Debug)]
pub struct ClusterMember {
    // Field order: the process stops before its directory is removed.
    child: Option<ChildGuard>,
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    /// Plain-HTTP `/health` and `/metrics`: the client port wants a client certificate.
    pub metrics_port: u16,
    dir: TempDir,
}

impl ClusterMember {
    fn new(name: &str) -> Result<Self> {
        Ok(Self {
            child: None,
            name: name.to_string(),
            client_port: free_port()?,
            peer_port: free_port()?,
            metrics_port: free_port()?,
            dir: tempfile::Builder::new()
                .prefix(&format!("molten-etcd-{name}-"))
                .tempdir()
                .context("failed to create a member dir")?,
        })
    }

    pub fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.client_port)
    }

    pub fn peer_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.peer_port)
    }

    /// The member's data dir (etcd's `--data-dir`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(ChildGuard::pid)
    }
}

/// The members of one cluster (including ones added later).
#[derive(Debug)]
pub struct EtcdCluster {
    token: String,
    /// Every member's server and peer certificate (SANs 127.0.0.1): one will do on loopback.
    tls: ServerTls,
    members: Vec<ClusterMember>,
}

impl EtcdCluster {
    /// Starts `names` as a new cluster (static bootstrap) and waits until it has a leader.
    pub fn start(names: &[&str], tls: ServerTls) -> Result<Self> {
        ensure_binary(ETCD, "etcd-server")?;
        let members = names
            .iter()
            .map(|n| ClusterMember::new(n))
            .collect::<Result<Vec<_>>>()?;
        let initial = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Self {
            token: format!("molten-test-{}", members[0].client_port),
            tls,
            members,
        };
        for name in names {
            cluster.spawn(name, &initial, "new")?;
        }
        for name in names {
            cluster.wait_healthy(name)?;
        }
        Ok(cluster)
    }

    /// Reserves ports and directories for `names` without starting any: a static cluster before
    /// its first boot, whose members start as the composed unit would ([`Self::start_unit`]).
    pub fn reserve_all(names: &[&str], tls: ServerTls) -> Result<Self> {
        ensure_binary(ETCD, "etcd-server")?;
        let members = names
            .iter()
            .map(|n| ClusterMember::new(n))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            token: format!("molten-test-{}", members[0].client_port),
            tls,
            members,
        })
    }

    /// `name=peer,...` of `names`: the static initial cluster a profile listing them composes.
    pub fn static_initial(&self, names: &[&str]) -> String {
        names
            .iter()
            .map(|n| format!("{n}={}", self.member(n).peer_url()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts the member as a static member's composed etcd unit does after `mc etcd-join`:
    /// the static settings (`static_initial`, state `new`, the cluster token), with
    /// `ETCD_INITIAL_CLUSTER` and `ETCD_INITIAL_CLUSTER_STATE` from `env_file` replacing them
    /// when the file exists (systemd's `EnvironmentFile=` overrides `Environment=`). Does not
    /// wait: a member of a new cluster serves only once a quorum runs.
    pub fn start_unit(&mut self, name: &str, static_initial: &str, env_file: &Path) -> Result<()> {
        let mut initial = static_initial.to_string();
        let mut state = "new".to_string();
        match std::fs::read_to_string(env_file) {
            Ok(text) => {
                for line in text.lines().filter(|l| !l.starts_with('#')) {
                    match line.split_once('=') {
                        Some(("ETCD_INITIAL_CLUSTER", v)) => initial = v.to_string(),
                        Some(("ETCD_INITIAL_CLUSTER_STATE", v)) => state = v.to_string(),
                        Some(("ETCD_NAME", v)) if v != name => {
                            bail!("{} names member {v}, not {name}", env_file.display())
                        }
                        _ => {}
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", env_file.display())),
        }
        self.spawn(name, &initial, &state)
    }

    /// Every member's client URL (running or not), comma separated for etcdctl.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(ClusterMember::endpoint).collect()
    }

    pub fn member(&self, name: &str) -> &ClusterMember {
        self.members
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no member {name} in the test cluster"))
    }

    fn member_mut(&mut self, name: &str) -> Result<&mut ClusterMember> {
        self.members
            .iter_mut()
            .find(|m| m.name == name)
            .with_context(|| format!("no member {name} in the test cluster"))
    }

    /// Reserves ports and a directory for a member that is not started yet.
    pub fn reserve(&mut self, name: &str) -> Result<&ClusterMember> {
        self.members.push(ClusterMember::new(name)?);
        Ok(self.members.last().expect("just pushed"))
    }

    /// Forgets a stopped member (its directory is removed).
    pub fn discard(&mut self, name: &str) -> Result<()> {
        self.stop(name)?;
        self.members.retain(|m| m.name != name);
        Ok(())
    }

    /// Stops the member (SIGTERM, then SIGKILL), keeping its data.
    pub fn stop(&mut self, name: &str) -> Result<()> {
        if let Some(mut child) = self.member_mut(name)?.child.take() {
            child.stop()?;
        }
        Ok(())
    }

    /// Deletes the member's data dir (it must be stopped): a disk replaced or wiped.
    pub fn wipe(&mut self, name: &str) -> Result<()> {
        let member = self.member_mut(name)?;
        if member.is_running() {
            bail!("stop {name} before wiping it");
        }
        match std::fs::remove_dir_all(member.data_dir()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).context("failed to wipe the data dir"),
        }
    }

    /// Starts the member again on its own data (a reboot). With no data, etcd needs
    /// [`Self::start_existing`] instead.
    pub fn restart(&mut self, name: &str) -> Result<()> {
        self.spawn(name, "", "existing")?;
        self.wait_serving(name)
    }

    /// Starts the member joining an existing cluster as `initial_cluster` describes (what
    /// `mc etcd-join` writes), and waits until it serves clients.
    pub fn start_existing(&mut self, name: &str, initial_cluster: &str) -> Result<()> {
        self.spawn(name, initial_cluster, "existing")?;
        self.wait_serving(name)
    }

    /// Starts the member on a data dir prepared elsewhere (a restored snapshot).
    pub fn start_on(&mut self, name: &str, data_dir: &Path) -> Result<()> {
        let member = self.member_mut(name)?;
        if member.data_dir() != data_dir {
            let _ = std::fs::remove_dir_all(member.data_dir());
            crate::process::run(
                Command::new("cp")
                    .arg("-a")
                    .arg(data_dir)
                    .arg(member.data_dir()),
            )?;
        }
        self.spawn(name, "", "existing")?;
        self.wait_serving(name)
    }

    fn spawn(&mut self, name: &str, initial_cluster: &str, state: &str) -> Result<()> {
        let token = self.token.clone();
        let tls = self.tls.clone();
        let member = self.member_mut(name)?;
        if member.is_running() {
            bail!("{name} runs already");
        }
        let log = File::options()
            .create(true)
            .append(true)
            .open(member.log_path())
            .context("failed to open the member log")?;
        let path = |p: &Path| p.display().to_string();
        let mut cmd = Command::new(ETCD);
        cmd.arg("--client-cert-auth")
            .arg(format!("--trusted-ca-file={}", path(&tls.ca)))
            .arg(format!("--cert-file={}", path(&tls.cert)))
            .arg(format!("--key-file={}", path(&tls.key)))
            .arg("--peer-client-cert-auth")
            .arg(format!("--peer-trusted-ca-file={}", path(&tls.ca)))
            .arg(format!("--peer-cert-file={}", path(&tls.cert)))
            .arg(format!("--peer-key-file={}", path(&tls.key)))
            .arg(format!(
                "--listen-metrics-urls=http://127.0.0.1:{}",
                member.metrics_port
            ))
            .arg(format!("--name={name}"))
            .arg(format!("--data-dir={}", member.data_dir().display()))
            .arg(format!("--listen-client-urls={}", member.endpoint()))
            .arg(format!("--advertise-client-urls={}", member.endpoint()))
            .arg(format!("--listen-peer-urls={}", member.peer_url()))
            .arg(format!(
                "--initial-advertise-peer-urls={}",
                member.peer_url()
            ))
            .arg(format!("--initial-cluster-state={state}"))
            .arg(format!("--initial-cluster-token={token}"))
            // Faster elections keep the tests short; the ratio to the heartbeat is etcd's default.
            .arg("--heartbeat-interval=50")
            .arg("--election-timeout=500");
        if !initial_cluster.is_empty() {
            cmd.arg(format!("--initial-cluster={initial_cluster}"));
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("failed to start {ETCD}"))?;
        member.child = Some(ChildGuard::new(format!("etcd {name}"), child));
        Ok(())
    }

    /// Waits until the member's `/health` says true (it is part of a cluster with a leader).
    pub fn wait_healthy(&mut self, name: &str) -> Result<()> {
        self.wait_http(name, "/health", |status, body| {
            status == 200 && body.contains("\"true\"")
        })
    }

    /// Waits until the member serves clients: its gRPC `Status` answers over mutual TLS (a
    /// learner answers too; etcd serves clients only once it has joined and published itself).
    pub fn wait_serving(&mut self, name: &str) -> Result<()> {
        let tls = self.tls.clone();
        let member = self.member_mut(name)?;
        let endpoint = member.endpoint();
        let log = member.log_path();
        let child = member.child.as_mut().context("the member is not running")?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let read = |p: &Path| std::fs::read_to_string(p);
        let options = etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(1))
            .with_timeout(Duration::from_secs(1))
            .with_tls(
                etcd_client::TlsOptions::new()
                    .ca_certificate(etcd_client::Certificate::from_pem(read(&tls.ca)?))
                    .identity(etcd_client::Identity::from_pem(
                        read(&tls.cert)?,
                        read(&tls.key)?,
                    )),
            );
        wait_until(
            &format!("etcd {name} serving clients"),
            START_TIMEOUT,
            Duration::from_millis(100),
            || {
                child.ensure_running()?;
                let answered = runtime.block_on(async {
                    let mut client =
                        etcd_client::Client::connect([endpoint.as_str()], Some(options.clone()))
                            .await?;
                    client.status().await
                });
                Ok(answered.ok().map(|_| ()))
            },
        )
        .with_context(|| format!("etcd {name}'s log ends with:\n{}", log_tail(&log, 3000)))
    }

    fn wait_http(&mut self, name: &str, path: &str, ok: impl Fn(u16, &str) -> bool) -> Result<()> {
        let member = self.member_mut(name)?;
        let addr = format!("127.0.0.1:{}", member.metrics_port);
        let log = member.log_path();
        let child = member.child.as_mut().context("the member is not running")?;
        wait_until(
            &format!("etcd {name} {path}"),
            START_TIMEOUT,
            Duration::from_millis(100),
            || {
                child.ensure_running()?;
                Ok(match http::get_tcp(&addr, path) {
                    Ok(r) if ok(r.status, &r.body) => Some(()),
                    _ => None,
                })
            },
        )
        .with_context(|| format!("etcd {name}'s log ends with:\n{}", log_tail(&log, 3000)))
    }
}
