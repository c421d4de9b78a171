//! The local lab (issue 4). Needs root, debootstrap and a Debian mirror (the host's apt source)
//! the first time, to build the cached node image.

use std::net::Ipv4Addr;
use std::time::Duration;

use molten_testkit::ignition;
use molten_testkit::lab::netns::Hub;
use molten_testkit::lab::node::LabNode;
use molten_testkit::lab::{image, image_cache, nodes_dir, unique_id};

/// A hand-written Ignition enabling Docker and a one-member etcd: proves the lab machinery
/// (image, engine, namespaces, systemd as PID 1) independently of `molten compose`.
fn single_node_ignition(name: &str, ip: Ipv4Addr) -> String {
    let dropin = format!(
        "[Service]\\nEnvironment=ETCD_NAME={name}\\nEnvironment=ETCD_LISTEN_CLIENT_URLS=http://{ip}:2379,http://127.0.0.1:2379\\nEnvironment=ETCD_ADVERTISE_CLIENT_URLS=http://{ip}:2379\\n"
    );
    format!(
        r#"{{"ignition":{{"version":"3.3.0"}},
"storage":{{"files":[{{"path":"/etc/hostname","mode":420,"contents":{{"source":"data:,{name}%0A"}}}}]}},
"systemd":{{"units":[{{"name":"docker.service","enabled":true}},{{"name":"etcd.service","enabled":true,"dropins":[{{"name":"20-lab.conf","contents":"{dropin}"}}]}}]}}}}"#
    )
}

#[test]
fn one_node_boots_systemd_from_its_ignition() {
    let image = image::ensure_image(&image_cache()).unwrap();
    let id = unique_id();
    let hub_ip: Ipv4Addr = "10.88.0.1".parse().unwrap();
    let ip: Ipv4Addr = "10.88.0.11".parse().unwrap();
    let hub = Hub::create(&format!("{id}-hub"), hub_ip, 24).unwrap();
    let netns = hub.attach(&format!("{id}-n1"), "p1", ip).unwrap();
    std::fs::create_dir_all(nodes_dir()).unwrap();
    let work = tempfile::tempdir_in(nodes_dir()).unwrap();
    let mut node =
        LabNode::create("lab-one", ip, &image, &work.path().join("lab-one"), netns).unwrap();

    let config = work.path().join("lab-one.ign");
    std::fs::write(&config, single_node_ignition("lab-one", ip)).unwrap();
    ignition::validate(&config).unwrap();
    ignition::apply_files(&config, &node.root()).unwrap();

    node.boot().unwrap();
    let state = node.wait_booted(Duration::from_secs(90)).unwrap();
    assert_eq!(
        state,
        "running",
        "failed units:\n{}",
        node.exec(&["systemctl", "--failed", "--no-pager"])
            .unwrap_or_default()
    );
    assert_eq!(node.exec(&["hostname"]).unwrap().trim(), "lab-one");
    for unit in ["docker.service", "etcd.service"] {
        assert_eq!(
            node.unit_state(unit).unwrap(),
            "active",
            "{}",
            node.journal(unit, 30)
        );
    }
    // etcd answers on the node's address, seen from the hub across the bridge.
    let health = hub
        .ns
        .command("/usr/bin/etcdctl")
        .args(["--endpoints=http://10.88.0.11:2379", "endpoint", "health"])
        .output()
        .unwrap();
    assert!(
        health.status.success(),
        "{}",
        String::from_utf8_lossy(&health.stderr)
    );

    // Reboot: kill PID 1, boot the same root; the units come back.
    let first_pid1 = node.pid1().unwrap();
    node.reboot().unwrap();
    assert!(!std::path::Path::new(&format!("/proc/{first_pid1}")).exists());
    node.wait_booted(Duration::from_secs(90)).unwrap();
    assert_eq!(node.unit_state("etcd.service").unwrap(), "active");
    assert_eq!(node.boots(), 2);
}
