//! The drop-ins under a real systemd: a lab node (Debian image, systemd as PID 1, own network
//! namespace) runs Docker; `converge_units` writes the drop-ins into it, reloads its systemd and
//! restarts the running dockerd, which then serves mutual TLS on the node's private IP with
//! docker0 moved to the bridge CIDR. A second converge touches nothing. Needs root and, the first
//! time, a Debian mirror to build the cached node image (like the lab's own tests).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mc::docker::{self, ClientTls};
use mc::pki::{cert, Ca, Kind};
use mc::systemd::{self, Systemctl, TlsPaths};
use molten_contract::{NodeConfig, Role};
use molten_testkit::fixtures;
use molten_testkit::ignition;
use molten_testkit::lab::netns::Hub;
use molten_testkit::lab::node::LabNode;
use molten_testkit::lab::{image, image_cache, nodes_dir, unique_id};

const HUB_IP: Ipv4Addr = Ipv4Addr::new(10, 86, 0, 1);
const NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 86, 0, 11);
const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 86, 0, 12);

/// A worker that reaches etcd on the hub.
fn config() -> NodeConfig {
    let mut config = fixtures::node_config("units-live", 0, NODE_IP);
    config.node.roles = vec![Role::Worker];
    config.etcd.endpoints = vec![format!("http://{HUB_IP}:2379")];
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
    let image = image::ensure_image(&image_cache()).unwrap();
    let id = unique_id();
    let hub = Hub::create(&format!("{id}-hub"), HUB_IP, 24).unwrap();
    let netns = hub.attach(&format!("{id}-n1"), "p1", NODE_IP).unwrap();
    let peer = hub.attach(&format!("{id}-n2"), "p2", PEER_IP).unwrap();
    std::fs::create_dir_all(nodes_dir()).unwrap();
    let work = tempfile::tempdir_in(nodes_dir()).unwrap();
    let name = "units-live";
    let mut node = LabNode::create(name, NODE_IP, &image, &work.path().join(name), netns).unwrap();
    let ign = work.path().join("node.ign");
    std::fs::write(&ign, ignition_config(name)).unwrap();
    ignition::apply_files(&ign, &node.root()).unwrap();
    node.boot().unwrap();
    node.wait_booted(Duration::from_secs(120)).unwrap();
    assert_docker_active(&node);
    let pid_before = main_pid(&node);

    // The PKI step's files, where the layout says (keys are the PKI step's business; here
    // only their content matters).
    let cfg = config();
    let layout = cfg.os.layout();
    let tls_dir = PathBuf::from(layout.tls_dir);
    let ca = Ca::generate("live").unwrap();
    let server_kind = Kind::Server {
        ips: vec![NODE_IP.into(), Ipv4Addr::LOCALHOST.into()],
        dns: vec![name.into()],
    };
    let server = cert::issue(&ca, name, &server_kind, cert::VALIDITY).unwrap();
    let tls = TlsPaths {
        ca: tls_dir.join("ca.pem"),
        server_cert: tls_dir.join("server-cert.pem"),
        server_key: tls_dir.join("server-key.pem"),
    };
    let on_node = |p: &Path| node.root().join(p.strip_prefix("/").unwrap());
    put(&on_node(&tls.ca), &ca.cert_pem);
    put(&on_node(&tls.server_cert), &server.cert_pem);
    put(&on_node(&tls.server_key), &server.key_pem);

    // The node as the agent on it sees it: its mount namespace (where /run/systemd/system
    // lives) through /proc/<pid1>/root, and its systemd through nsenter.
    let pid1 = node.pid1().unwrap();
    let root = PathBuf::from(format!("/proc/{pid1}/root"));
    let node_systemctl = Systemctl::via(
        [
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
        .collect(),
    )
    .unwrap();

    let first = systemd::converge_units(&root, &cfg, NODE_IP, &tls, &node_systemctl).unwrap();
    assert_eq!(first.written.len(), 2, "{first:?}");
    assert!(first.reloaded, "{first:?}");
    assert_eq!(first.restarted, ["docker.service"], "{first:?}");
    assert!(first.skipped.is_empty(), "{first:?}");
    assert_docker_active(&node);
    let pid_after = main_pid(&node);
    assert_ne!(pid_before, pid_after, "dockerd was restarted");

    // dockerd, started by systemd from our drop-in, serves mutual TLS on the private IP.
    let client_pair = cert::issue(&ca, name, &Kind::Client, cert::VALIDITY).unwrap();
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
    assert_eq!(main_pid(&node), pid_after, "dockerd kept running untouched");

    node.kill().unwrap();
}
