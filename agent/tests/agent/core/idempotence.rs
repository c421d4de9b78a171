//! A second converge with nothing changed writes nothing, restarts nothing, says unchanged —
//! with the real etcd and dockerd.

use mc::converge::{Stage, State};
use molten_contract::keys;
use molten_testkit::docker::Dockerd;

use super::support::*;

#[test]
fn second_converge_changes_nothing() {
    let etcd = start_etcd();
    let docker = Dockerd::start().unwrap();
    let node = numbered_node(0, &etcd.endpoint());
    node.boot_systemd();
    let systemd = RecordingSystemd::default();

    let first = node.converge(Stage::All, Some(docker.host()), &systemd);
    assert!(first.ok(), "{:#?}", first.steps);
    assert_eq!(
        step(&first, "identity").state,
        State::Changed,
        "CAs installed"
    );
    assert_eq!(step(&first, "rbac").state, State::Changed, "users created");
    assert_eq!(step(&first, "units").state, State::Changed);
    assert_eq!(step(&first, "docker-network").state, State::Changed);
    assert_eq!(step(&first, "record").state, State::Changed);
    let calls = systemd.take();
    assert_eq!(
        calls.iter().filter(|c| *c == "daemon-reload").count(),
        1,
        "{calls:?}"
    );

    // The network is on the node's flannel subnet.
    let inspect = docker
        .cli(&[
            "network",
            "inspect",
            "bosh-node-0",
            "--format",
            "{{(index .IPAM.Config 0).Subnet}}",
        ])
        .unwrap();
    assert_eq!(inspect.trim(), "10.213.1.0/24");

    let before = snapshot(node.root.path());
    let record_rev = block_on(async {
        let mut c = etcd_client(&etcd.endpoint()).await;
        get(&mut c, &keys::node_record("node-0"))
            .await
            .unwrap()
            .mod_revision
    });

    let second = node.converge(Stage::All, Some(docker.host()), &systemd);
    assert!(second.ok(), "{:#?}", second.steps);
    for s in &second.steps {
        assert_eq!(s.state, State::Unchanged, "{s:#?}");
    }
    assert!(!second.changed());
    assert!(mc::converge::summary(&second).contains("converge: unchanged"));
    assert_eq!(
        systemd.take(),
        Vec::<String>::new(),
        "no reload, no restart"
    );
    assert_eq!(snapshot(node.root.path()), before, "no file rewritten");
    block_on(async {
        let mut c = etcd_client(&etcd.endpoint()).await;
        let rev = get(&mut c, &keys::node_record("node-0"))
            .await
            .unwrap()
            .mod_revision;
        assert_eq!(rev, record_rev, "identical node record not rewritten");
        // The status merges both stages and says ok.
        let status = mc::records::read_status(&mut c, "node-0")
            .await
            .unwrap()
            .unwrap();
        assert!(status.ok);
        let names: Vec<_> = status.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "address",
                "identity",
                "etcd",
                "etcd-member",
                "rbac",
                "flannel",
                "units",
                "record",
                "docker-network"
            ]
        );
    });
}

#[test]
fn stages_publish_one_merged_status() {
    let etcd = start_etcd();
    let docker = Dockerd::start().unwrap();
    let node = numbered_node(3, &etcd.endpoint());
    let boot = node.converge(Stage::Boot, None, &RecordingSystemd::default());
    assert!(boot.ok(), "{:#?}", boot.steps);
    // No systemd in this root: unit actions are reported as skipped, not dropped.
    assert!(
        step(&boot, "units").detail.contains("skipped"),
        "{:#?}",
        boot.steps
    );
    let network = node.converge(
        Stage::Network,
        Some(docker.host()),
        &RecordingSystemd::default(),
    );
    assert!(network.ok(), "{:#?}", network.steps);
    let stages: Vec<_> = network
        .status
        .steps
        .iter()
        .map(|s| (s.stage.as_str(), s.name.as_str()))
        .collect();
    assert!(stages.contains(&("boot", "identity")), "{stages:?}");
    assert!(
        stages.contains(&("network", "docker-network")),
        "{stages:?}"
    );
    assert!(network.status.ok);
}
