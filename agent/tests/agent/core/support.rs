//! Helpers: the suite's trust (one throwaway authority: etcd, Docker and authority CAs), etcd
//! over mutual TLS, enrolled node roots with a node config, a recording fake systemd, running
//! converges.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Mutex;
use std::time::Duration;

use mc::converge::{self, Options, Report, Stage};
use mc::etcd::Retry;
use mc::systemd::Systemd;
use molten_contract::{FlannelSettings, NodeConfig};
use molten_testkit::etcd::EtcdServer;
use molten_testkit::etcd_cluster::EtcdCluster;
use molten_testkit::fixtures;
use molten_testkit::pki::TestTrust;
use tempfile::TempDir;

/// The suite's authority CAs, made once per test process under cargo's target tmp dir (never
/// the source tree): every etcd of the suite and every node identity comes from them.
pub fn trust() -> &'static TestTrust {
    static TRUST: std::sync::OnceLock<TestTrust> = std::sync::OnceLock::new();
    TRUST.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("agent-trust-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TestTrust::new(&dir).unwrap()
    })
}

/// A single-member etcd with https and `--client-cert-auth`, from the suite's etcd CA.
pub fn start_etcd() -> EtcdServer {
    trust().start_etcd("default").unwrap()
}

/// A multi-member etcd with https and mutual TLS on client and peer URLs.
pub fn start_cluster(names: &[&str]) -> EtcdCluster {
    EtcdCluster::start(names, trust().etcd_server("cluster").unwrap()).unwrap()
}

/// The etcd root identity (the operator's `issue-client --etcd-root`).
pub fn root_tls() -> mc::etcd::EtcdTls {
    let t = trust();
    mc::etcd::EtcdTls::new(&t.etcd.cert_pem, &t.root.cert_pem, &t.root.key_pem)
}

/// `--etcd-cert --etcd-key --etcd-ca` of the root identity, for the mc binary.
pub fn root_tls_args() -> Vec<String> {
    let t = trust();
    vec![
        "--etcd-cert".into(),
        t.root.cert.display().to_string(),
        "--etcd-key".into(),
        t.root.key.display().to_string(),
        "--etcd-ca".into(),
        t.etcd.cert.display().to_string(),
    ]
}

/// The operator's Docker client certificate (`molten authority issue-client --name bosh`).
pub fn operator_docker() -> &'static molten_testkit::pki::Issued {
    static BOSH: std::sync::OnceLock<molten_testkit::pki::Issued> = std::sync::OnceLock::new();
    BOSH.get_or_init(|| trust().docker.issue("bosh", &[]).unwrap())
}

/// `mc bosh`'s certificates: the root etcd identity ([`root_tls_args`]), the Docker CA and the
/// operator's Docker client certificate.
pub fn bosh_tls_args() -> Vec<String> {
    let mut args = root_tls_args();
    let bosh = operator_docker();
    args.extend([
        "--docker-ca".into(),
        trust().docker.cert.display().to_string(),
        "--client-cert".into(),
        bosh.cert.display().to_string(),
        "--client-key".into(),
        bosh.key.display().to_string(),
    ]);
    args
}

/// The fixture node config with this suite's own flannel network and a BOSH network named
/// after the node, so concurrent tests never put two Docker bridges on one range or name.
pub fn node_config(name: &str, zone: u32, ip: Ipv4Addr, etcd: &str) -> NodeConfig {
    let mut config = fixtures::node_config(name, zone, ip);
    config.etcd.endpoints = vec![etcd.to_string()];
    config.flannel = FlannelSettings::new("10.213.0.0/16".parse().unwrap(), 24);
    config.bosh.network_name = format!("bosh-{name}");
    config
}

/// `node-<i>` in zone `i` at 10.0.0.(10 + i), its config written, using the etcd at `etcd`.
pub fn numbered_node(i: u8, etcd: &str) -> Node {
    let ip = Ipv4Addr::new(10, 0, 0, 10 + i);
    Node::new(node_config(&format!("node-{i}"), u32::from(i), ip, etcd))
}

/// `node-0` to `node-<n-1>`, as [`numbered_node`] makes them.
pub fn numbered_nodes(n: u8, etcd: &str) -> Vec<Node> {
    (0..n).map(|i| numbered_node(i, etcd)).collect()
}

/// [`numbered_node`] after a first boot converge that succeeded, with the systemd it used.
pub fn booted_node(i: u8, etcd: &str) -> (Node, RecordingSystemd) {
    let node = numbered_node(i, etcd);
    let sd = RecordingSystemd::default();
    let report = node.converge(Stage::Boot, None, &sd);
    assert!(report.ok(), "first boot: {:#?}", report.steps);
    (node, sd)
}

/// An enrolled node's root directory: its identity under `/var/lib/molten/identity` (from the
/// suite's CAs) and its node config at `/etc/molten/node.json`.
pub struct Node {
    pub root: TempDir,
    pub config: NodeConfig,
}

impl Node {
    /// Enrolls the node (roster: `config.trust.roster`) and writes its config.
    pub fn new(mut config: NodeConfig) -> Self {
        let root = tempfile::tempdir().unwrap();
        let roster = config.trust.roster.clone();
        let roster: Vec<&str> = roster.iter().map(String::as_str).collect();
        trust().enroll(root.path(), &mut config, &roster).unwrap();
        let node = Self { root, config };
        node.write_config();
        node.write_flannel_lease(&molten_testkit::fixtures::flannel_subnet_env(&node.config));
        node
    }

    /// Writes `/run/flannel/subnet.env` as flanneld does once it holds its lease.
    pub fn write_flannel_lease(&self, content: &str) {
        let path = self.path("run/flannel/subnet.env");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    pub fn write_config(&self) {
        let path = self.config_path();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, self.config.to_json()).unwrap();
    }

    pub fn config_path(&self) -> PathBuf {
        self.root.path().join("etc/molten/node.json")
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel.trim_start_matches('/'))
    }

    pub fn tls(&self, file: &str) -> String {
        std::fs::read_to_string(self.path("/etc/molten/tls").join(file)).unwrap()
    }

    /// Pretends systemd runs in this root, so the (fake) systemd gets unit actions.
    pub fn boot_systemd(&self) {
        std::fs::create_dir_all(self.path("/run/systemd/system")).unwrap();
    }

    pub fn options(&self, stage: Stage, docker_host: Option<String>) -> Options {
        Options {
            root: self.root.path().to_path_buf(),
            config: None,
            etcd: None,
            docker_host,
            docker_client: None,
            stage,
            etcd_retry: Retry::with_budget(Duration::from_secs(10)),
        }
    }

    pub fn converge(&self, stage: Stage, docker_host: Option<String>, sd: &dyn Systemd) -> Report {
        let options = self.options(stage, docker_host);
        block_on(converge::converge(&options, sd)).expect("config loads")
    }
}

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// The retry budget of the etcd membership and snapshot tests (clusters form and re-form).
pub const MEMBERSHIP_RETRY: mc::etcd::Retry = mc::etcd::Retry {
    budget: std::time::Duration::from_secs(20),
    first_backoff: std::time::Duration::from_millis(100),
    max_backoff: std::time::Duration::from_secs(1),
};

/// The node that runs etcd member `name` of a testkit cluster (its private IP is 127.0.0.1,
/// like the cluster's).
pub fn member_node(name: &str) -> Node {
    Node::new(node_config(
        name,
        0,
        std::net::Ipv4Addr::LOCALHOST,
        "https://127.0.0.1:1",
    ))
}

/// A running systemd with nothing active: converge writes its files, restarts nothing.
pub struct IdleSystemd;

impl Systemd for IdleSystemd {
    fn is_running(&self) -> bool {
        true
    }
    fn daemon_reload(&self) -> anyhow::Result<()> {
        Ok(())
    }
    fn is_active(&self, _unit: &str) -> anyhow::Result<bool> {
        Ok(false)
    }
    fn restart(&self, _unit: &str) -> anyhow::Result<()> {
        Ok(())
    }
    fn queued_start_jobs(&self) -> anyhow::Result<Vec<String>> {
        Ok(Vec::new())
    }
    fn start_no_block(&self, _units: &[String]) -> anyhow::Result<()> {
        Ok(())
    }
    fn stop(&self, _unit: &str) -> anyhow::Result<()> {
        Ok(())
    }
}

/// A systemd that records calls; every unit counts as active.
#[derive(Default)]
pub struct RecordingSystemd {
    pub calls: Mutex<Vec<String>>,
}

impl RecordingSystemd {
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.calls.lock().unwrap())
    }
}

impl Systemd for RecordingSystemd {
    fn is_running(&self) -> bool {
        true
    }
    fn daemon_reload(&self) -> anyhow::Result<()> {
        self.calls.lock().unwrap().push("daemon-reload".into());
        Ok(())
    }
    fn is_active(&self, _unit: &str) -> anyhow::Result<bool> {
        Ok(true)
    }
    fn restart(&self, unit: &str) -> anyhow::Result<()> {
        self.calls.lock().unwrap().push(format!("restart {unit}"));
        Ok(())
    }
    /// No boot in progress: no queued jobs, so a reload never requeues anything.
    fn queued_start_jobs(&self) -> anyhow::Result<Vec<String>> {
        Ok(Vec::new())
    }
    fn start_no_block(&self, units: &[String]) -> anyhow::Result<()> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("start --no-block {}", units.join(" ")));
        Ok(())
    }
    fn stop(&self, unit: &str) -> anyhow::Result<()> {
        self.calls.lock().unwrap().push(format!("stop {unit}"));
        Ok(())
    }
}

/// Every file under `dir` with its inode, mtime (ns) and size.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u64, i128, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                let mtime =
                    i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
                out.insert(entry.path(), (meta.ino(), mtime, meta.size()));
            }
        }
    }
    out
}

pub fn step<'a>(report: &'a Report, name: &str) -> &'a converge::StepOutcome {
    report
        .steps
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no step {name} in {:#?}", report.steps))
}

/// A client of the etcd at `endpoint` as etcd's root (it reads and writes everything, also
/// once a member turned authentication on).
pub async fn etcd_client(endpoint: &str) -> etcd_client::Client {
    mc::etcd::connect(
        &[endpoint.to_string()],
        Retry::with_budget(Duration::from_secs(10)),
        root_tls(),
    )
    .await
    .unwrap()
}

pub async fn get(client: &mut etcd_client::Client, key: &str) -> Option<mc::etcd::Entry> {
    mc::etcd::get(client, key).await.unwrap()
}

/// Runs the built `mc` binary with `args`, killing it if it runs longer than `limit`.
pub fn run_mc(args: &[&str], limit: Duration) -> Output {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_mc"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (done, finished) = std::sync::mpsc::channel::<()>();
    // Kills mc (by its PID) if it outlives `limit`, so a hang fails the test instead of CI.
    let watchdog = std::thread::spawn(move || {
        if finished.recv_timeout(limit).is_err() {
            let _ = molten_testkit::process::signal(pid, 9);
            return true;
        }
        false
    });
    let output = child.wait_with_output().unwrap();
    let _ = done.send(());
    let killed = watchdog.join().unwrap();
    assert!(!killed, "mc {args:?} ran longer than {limit:?}");
    output
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// [`run_mc`] as the operator with etcd's root identity ([`root_tls_args`] appended): for
/// commands given `--etcd` off the node.
pub fn run_mc_root(args: &[&str], limit: Duration) -> Output {
    let tls = root_tls_args();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(tls.iter().map(String::as_str));
    run_mc(&all, limit)
}

/// An etcd session as the cluster's `root` user, through the members `names` only.
pub async fn session(
    cluster: &molten_testkit::etcd_cluster::EtcdCluster,
    names: &[&str],
) -> mc::etcd::Etcd {
    let endpoints: Vec<String> = names.iter().map(|n| cluster.member(n).endpoint()).collect();
    mc::etcd::Etcd::connect(&endpoints, MEMBERSHIP_RETRY, root_tls())
        .await
        .unwrap()
}

/// The member list as the members `through` see it.
pub fn members(
    cluster: &molten_testkit::etcd_cluster::EtcdCluster,
    through: &[&str],
) -> Vec<mc::etcd::membership::Member> {
    block_on(async {
        let mut etcd = session(cluster, through).await;
        mc::etcd::membership::list(&mut etcd).await.unwrap()
    })
}
