//! The drop-ins under a real systemd: a lab node (Debian image, systemd as PID 1, own network
//! namespace) runs Docker; `converge_units` writes the drop-ins into it, reloads its systemd and
//! restarts the running dockerd, which then serves mutual TLS on the node's private IP with
//! docker0 moved to the bridge CIDR. A second converge touches nothing. And a first-boot converge
//! whose reload loses Docker's queued start job enqueues it again without waiting for it. Needs
//! root and, the first time, a Debian mirror to build the cached node image (like the lab's own
//! tests). A first daemon-reload that fails is done by the next converge, which reports it.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mc::docker::{self, ClientTls};
use mc::systemd::{self, Systemctl, Systemd, TlsPaths};
use molten_contract::{NodeConfig, Role};
use molten_testkit::fixtures;
use molten_testkit::ignition;
use molten_testkit::lab::netns::Hub;
use molten_testkit::lab::node::LabNode;
use molten_testkit::lab::{image, image_cache, nodes_dir, unique_id};
use molten_testkit::pki::TestCa;

const HUB_IP: Ipv4Addr = Ipv4Addr::new(10, 86, 0, 1);
const NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 86, 0, 11);
const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 86, 0, 12);

/// A worker that reaches etcd on the hub.
fn config() -> NodeConfig {
    let mut config = fixtures::node_config("units-live", 0, NODE_IP);
    config.node.roles = vec![Role::Worker];
    config.etcd.endpoints = vec![format!("https://{HUB_IP}:2379")];
    config
}

/// Hostname and Docker enabled: the node boots with a stock dockerd running.
fn ignition_config(name: &str) -> String {
    format!(
        r#"{{"ignition":{{"version":"3.3.0"}},
"storage":{{"files":[{{"path":"/etc/hostname","mode":420,"contents":{{"source":"data:,{name}%0A"}}}}]}},
"systemd":{{"units":[{{"name":"docker.service","enabled":true}}]}}}}"#
    )
}

/// Writes `pem` at `path` (under the node's root), creating directories.
fn put(path: &Path, pem: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, pem).unwrap();
}

fn assert_docker_active(node: &LabNode) {
    assert_eq!(
        node.unit_state("docker.service").unwrap(),
        "active",
        "{}",
        node.diagnose(&["docker.service"])
    );
}

/// The enrolled identity's files where the agent's drop-in points dockerd (the Docker CA, the
/// node's docker-server pair), for a server certificate of `name` at `NODE_IP` from a test
/// Docker CA made in `pki` (keys are `mc enroll`'s business; here only their content matters).
fn install_tls(node: &LabNode, cfg: &NodeConfig, name: &str, pki: &Path) -> (TestCa, TlsPaths) {
    let ca = TestCa::new("docker", pki).unwrap();
    let server = ca
        .issue(name, &[&NODE_IP.to_string(), "127.0.0.1", name])
        .unwrap();
    let settings = mc::enroll::Settings::from_config(cfg);
    let tls = mc::converge::trust::docker_tls_paths(cfg, &settings);
    let on_node = |p: &Path| node.root().join(p.strip_prefix("/").unwrap());
    put(&on_node(&tls.ca), &ca.cert_pem);
    put(&on_node(&tls.server_cert), &server.cert_pem);
    put(&on_node(&tls.server_key), &server.key_pem);
    (ca, tls)
}

/// A lab node booted from [`ignition_config`], Docker up. Fields drop in order: the node first,
/// then its namespaces, then its files.
struct Booted {
    node: LabNode,
    hub: Hub,
    _work: tempfile::TempDir,
}

fn boot_node(name: &str) -> Booted {
    let image = image::ensure_image(&image_cache()).unwrap();
    let id = unique_id();
    let hub = Hub::create(&format!("{id}-hub"), HUB_IP, 24).unwrap();
    let netns = hub.attach(&format!("{id}-n1"), "p1", NODE_IP).unwrap();
    std::fs::create_dir_all(nodes_dir()).unwrap();
    let work = tempfile::tempdir_in(nodes_dir()).unwrap();
    let mut node = LabNode::create(name, NODE_IP, &image, &work.path().join(name), netns).unwrap();
    let ign = work.path().join("node.ign");
    std::fs::write(&ign, ignition_config(name)).unwrap();
    ignition::apply_files(&ign, &node.root()).unwrap();
    node.boot().unwrap();
    node.wait_booted(Duration::from_secs(120)).unwrap();
    assert_docker_active(&node);
    Booted {
        node,
        hub,
        _work: work,
    }
}

/// The node as the agent on it sees it: its mount namespace (where /run/systemd/system lives)
/// through /proc/<pid1>/root, and its systemd through nsenter.
pub(crate) fn agent_view(node: &LabNode) -> (PathBuf, Systemctl) {
    let pid1 = node.pid1().unwrap();
    let root = PathBuf::from(format!("/proc/{pid1}/root"));
    let prefix = [
        "nsenter",
        "-t",
        &pid1.to_string(),
        "-m",
        "-p",
        "-r",
        "-w",
        "--",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    (root, Systemctl::via(prefix).unwrap())
}

fn main_pid(node: &LabNode) -> String {
    node.exec(&[
        "systemctl",
        "show",
        "-p",
        "MainPID",
        "--value",
        "docker.service",
    ])
    .unwrap()
    .trim()
    .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn running_dockerd_is_restarted_into_tls_once_and_left_alone_after() {
    let name = "units-live";
    let mut booted = boot_node(name);
    let peer = booted
        .hub
        .attach(&format!("{}-n2", unique_id()), "p2", PEER_IP)
        .unwrap();
    let node = &mut booted.node;
    let pid_before = main_pid(node);

    let cfg = config();
    let pki = tempfile::tempdir().unwrap();
    let (ca, tls) = install_tls(node, &cfg, name, pki.path());
    let (root, node_systemctl) = agent_view(node);

    let first = systemd::converge_units(&root, &cfg, NODE_IP, &tls, &node_systemctl).unwrap();
    assert_eq!(first.written.len(), 2, "{first:?}");
    assert!(first.reloaded, "{first:?}");
    assert_eq!(first.restarted, ["docker.service"], "{first:?}");
    assert!(first.skipped.is_empty(), "{first:?}");
    assert_docker_active(node);
    let pid_after = main_pid(node);
    assert_ne!(pid_before, pid_after, "dockerd was restarted");

    // dockerd, started by systemd from our drop-in, serves mutual TLS on the private IP.
    // The operator's Docker client certificate (BOSH's), from the Docker CA.
    let client_pair = ca.issue("bosh", &[]).unwrap();
    // Kept until the end of the test: the probe thread reads the files from it.
    let client_dir = tempfile::tempdir().unwrap();
    let client_tls = ClientTls {
        ca: client_dir.path().join("ca.pem"),
        cert: client_dir.path().join("cert.pem"),
        key: client_dir.path().join("key.pem"),
    };
    put(&client_tls.ca, &ca.cert_pem);
    put(&client_tls.cert, &client_pair.cert_pem);
    put(&client_tls.key, &client_pair.key_pem);
    // Probed from a peer on the lab bridge, inside its own network namespace: traffic from the
    // host's namespace to lab addresses may not reach the bridge directly.
    let host = format!("tcp://{NODE_IP}:2376");
    let ping = peer
        .run_in(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let client = docker::connect(&host, Some(&client_tls)).await?;
                Ok(client.ping().await?)
            })
        })
        .unwrap_or_else(|e| panic!("{e:#}\n{}", node.diagnose(&["docker.service"])));
    assert_eq!(ping, "OK");

    // docker0 left the default range for the profile's bridge CIDR.
    let docker0 = node
        .exec(&["ip", "-4", "-o", "addr", "show", "dev", "docker0"])
        .unwrap();
    assert!(docker0.contains("10.255.240.1/20"), "{docker0}");

    // Nothing changed: no write, no reload, no restart.
    let second = systemd::converge_units(&root, &cfg, NODE_IP, &tls, &node_systemctl).unwrap();
    assert_eq!(second, systemd::UnitsOutcome::default());
    assert_eq!(main_pid(node), pid_after, "dockerd kept running untouched");

    node.kill().unwrap();
}

/// The real systemd of the node, whose `daemon-reload` also loses `lost`'s queued start job (as
/// systemd/systemd#23615 does at random): the job is cancelled right after the real reload.
struct ReloadLosesJob<'a> {
    systemctl: &'a Systemctl,
    node: &'a LabNode,
    lost: &'a str,
}

impl Systemd for ReloadLosesJob<'_> {
    fn is_running(&self) -> bool {
        self.systemctl.is_running()
    }
    fn daemon_reload(&self) -> anyhow::Result<()> {
        self.systemctl.daemon_reload()?;
        let jobs = self
            .node
            .exec(&["systemctl", "list-jobs", "--no-legend", "--plain"])?;
        for line in jobs.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.get(1) == Some(&self.lost) {
                self.node.exec(&["systemctl", "cancel", fields[0]])?;
            }
        }
        Ok(())
    }
    fn is_active(&self, unit: &str) -> anyhow::Result<bool> {
        self.systemctl.is_active(unit)
    }
    fn restart(&self, unit: &str) -> anyhow::Result<()> {
        self.systemctl.restart(unit)
    }
    fn queued_start_jobs(&self) -> anyhow::Result<Vec<String>> {
        self.systemctl.queued_start_jobs()
    }
    fn start_no_block(&self, units: &[String]) -> anyhow::Result<()> {
        self.systemctl.start_no_block(units)
    }
    fn stop(&self, unit: &str) -> anyhow::Result<()> {
        self.systemctl.stop(unit)
    }
}

/// Holds Docker's start job in the queue until `/run/release-docker` exists, like mc.service
/// (ordered before Docker) does at first boot.
const BLOCKER_UNIT: &str = "[Unit]\nDescription=holds docker's start job (test)\n\
    [Service]\nType=oneshot\n\
    ExecStart=/bin/sh -c 'while [ ! -e /run/release-docker ]; do sleep 0.2; done'\n";

#[tokio::test(flavor = "multi_thread")]
async fn a_start_job_lost_by_the_first_boot_reload_is_enqueued_again_without_blocking() {
    let image = image::ensure_image(&image_cache()).unwrap();
    let id = unique_id();
    let hub = Hub::create(&format!("{id}-hub"), HUB_IP, 24).unwrap();
    let netns = hub.attach(&format!("{id}-n1"), "p1", NODE_IP).unwrap();
    std::fs::create_dir_all(nodes_dir()).unwrap();
    let work = tempfile::tempdir_in(nodes_dir()).unwrap();
    let name = "units-requeue";
    let mut node = LabNode::create(name, NODE_IP, &image, &work.path().join(name), netns).unwrap();
    let ign = work.path().join("node.ign");
    std::fs::write(&ign, ignition_config(name)).unwrap();
    ignition::apply_files(&ign, &node.root()).unwrap();
    put(
        &node.root().join("etc/systemd/system/hold-docker.service"),
        BLOCKER_UNIT,
    );
    put(
        &node
            .root()
            .join("etc/systemd/system/docker.service.d/10-test-hold.conf"),
        "[Unit]\nAfter=hold-docker.service\n",
    );
    node.boot().unwrap();
    node.wait_booted(Duration::from_secs(120)).unwrap();

    // First boot as mc.service sees it: Docker is not running and its start job waits.
    node.exec(&["systemctl", "stop", "docker.service", "docker.socket"])
        .unwrap();
    node.exec(&[
        "systemctl",
        "start",
        "--no-block",
        "hold-docker.service",
        "docker.service",
    ])
    .unwrap();
    let cfg = config();
    let pki = tempfile::tempdir().unwrap();
    let (_ca, tls) = install_tls(&node, &cfg, name, pki.path());
    let (root, node_systemctl) = agent_view(&node);
    let queued = node_systemctl.queued_start_jobs().unwrap();
    assert!(queued.contains(&"docker.service".to_string()), "{queued:?}");

    let lossy = ReloadLosesJob {
        systemctl: &node_systemctl,
        node: &node,
        lost: "docker.service",
    };
    let outcome = systemd::converge_units(&root, &cfg, NODE_IP, &tls, &lossy).unwrap();
    assert!(outcome.reloaded, "{outcome:?}");
    assert_eq!(outcome.requeued, ["docker.service"], "{outcome:?}");
    assert!(outcome.restarted.is_empty(), "{outcome:?}");
    // converge_units returned while Docker still waits: the job is queued again, not run.
    let queued = node_systemctl.queued_start_jobs().unwrap();
    assert!(queued.contains(&"docker.service".to_string()), "{queued:?}");
    assert_ne!(node.unit_state("docker.service").unwrap(), "active");

    // Once what Docker is ordered after finishes, the re-enqueued job starts it.
    node.exec(&["touch", "/run/release-docker"]).unwrap();
    let mut state = String::new();
    for _ in 0..300 {
        state = node.unit_state("docker.service").unwrap();
        if state == "active" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(state, "active", "{}", node.diagnose(&["docker.service"]));

    node.kill().unwrap();
}

/// The node's real systemd, except that the first `daemon-reload` fails (as it does when the
/// manager is busy or a D-Bus call times out) without reaching systemd.
struct FirstReloadFails<'a> {
    systemctl: &'a Systemctl,
    failed: std::cell::Cell<bool>,
}

impl Systemd for FirstReloadFails<'_> {
    fn is_running(&self) -> bool {
        self.systemctl.is_running()
    }
    fn daemon_reload(&self) -> anyhow::Result<()> {
        if !self.failed.replace(true) {
            anyhow::bail!("Failed to reload daemon: Connection timed out (forced by the test)");
        }
        self.systemctl.daemon_reload()
    }
    fn is_active(&self, unit: &str) -> anyhow::Result<bool> {
        self.systemctl.is_active(unit)
    }
    fn restart(&self, unit: &str) -> anyhow::Result<()> {
        self.systemctl.restart(unit)
    }
    fn queued_start_jobs(&self) -> anyhow::Result<Vec<String>> {
        self.systemctl.queued_start_jobs()
    }
    fn start_no_block(&self, units: &[String]) -> anyhow::Result<()> {
        self.systemctl.start_no_block(units)
    }
    fn stop(&self, unit: &str) -> anyhow::Result<()> {
        self.systemctl.stop(unit)
    }
}

/// dockerd's command line as systemd has loaded it. (systemd's own `NeedDaemonReload` stays
/// "no" here: it does not notice a drop-in directory that did not exist when it loaded the unit,
/// which is why mc keeps its own record of what is due.)
fn loaded_exec_start(node: &LabNode) -> String {
    node.exec(&[
        "systemctl",
        "show",
        "-p",
        "ExecStart",
        "--value",
        "docker.service",
    ])
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_daemon_reload_is_retried_by_the_next_converge_which_reports_a_change() {
    let name = "units-retry";
    let mut booted = boot_node(name);
    let node = &mut booted.node;
    let pid_before = main_pid(node);

    let cfg = config();
    let pki = tempfile::tempdir().unwrap();
    let (_ca, tls) = install_tls(node, &cfg, name, pki.path());
    let (root, node_systemctl) = agent_view(node);
    let flaky = FirstReloadFails {
        systemctl: &node_systemctl,
        failed: std::cell::Cell::new(false),
    };

    let err = systemd::converge_units(&root, &cfg, NODE_IP, &tls, &flaky).unwrap_err();
    assert!(format!("{err:#}").contains("forced by the test"), "{err:#}");
    // The drop-ins are on disk, systemd has not read them, dockerd runs the old configuration.
    assert!(!loaded_exec_start(node).contains("--tlsverify"));
    assert_eq!(main_pid(node), pid_before);

    // The next converge finds no file to change but the reload and restart still due.
    let second = systemd::converge_units(&root, &cfg, NODE_IP, &tls, &flaky).unwrap();
    assert!(second.written.is_empty(), "{second:?}");
    assert!(second.reloaded, "{second:?}");
    assert_eq!(second.retried, ["docker.service", "flanneld.service"]);
    assert_eq!(second.restarted, ["docker.service"], "{second:?}");
    assert!(second.changed(), "reported as a change: {second:?}");
    assert!(loaded_exec_start(node).contains("--tlsverify"));
    assert_docker_active(node);
    assert_ne!(
        main_pid(node),
        pid_before,
        "dockerd restarted into the new configuration"
    );
    let docker0 = node
        .exec(&["ip", "-4", "-o", "addr", "show", "dev", "docker0"])
        .unwrap();
    assert!(docker0.contains("10.255.240.1/20"), "{docker0}");

    // Then nothing is due any more.
    let third = systemd::converge_units(&root, &cfg, NODE_IP, &tls, &node_systemctl).unwrap();
    assert_eq!(third, systemd::UnitsOutcome::default());

    node.kill().unwrap();
}
