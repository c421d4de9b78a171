//! The agent's timers under a real systemd: a lab node (Debian image, systemd as PID 1, own
//! network namespace) gets `mc-converge.timer` and `mc-etcd-snapshot.timer` from
//! `converge_timers`; its systemd loads both, enables them and arms them, a second converge
//! touches nothing, after a reboot both timers are armed again without the agent, and once the
//! node is no longer a member the snapshot timer is removed and stopped. Needs root
//! and, the first time, a Debian mirror to build the cached node image.

use std::net::Ipv4Addr;
use std::time::Duration;

use mc::systemd::{self, timers};
use molten_contract::Role;
use molten_testkit::fixtures;
use molten_testkit::lab::netns::Hub;
use molten_testkit::lab::node::LabNode;
use molten_testkit::lab::{image, image_cache, nodes_dir, unique_id};

use crate::systemd_live::agent_view;

const HUB_IP: Ipv4Addr = Ipv4Addr::new(10, 87, 0, 1);
const NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 87, 0, 11);

fn show(node: &LabNode, property: &str, unit: &str) -> String {
    node.exec(&["systemctl", "show", "-p", property, "--value", unit])
        .unwrap()
        .trim()
        .to_string()
}

fn assert_armed(node: &LabNode, timer: &str) {
    assert_eq!(
        node.unit_state(timer).unwrap(),
        "active",
        "{}",
        node.diagnose(&[timer])
    );
    assert_eq!(show(node, "UnitFileState", timer), "enabled");
    let service = timer.replace(".timer", ".service");
    assert_eq!(show(node, "LoadState", &service), "loaded");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_timers_are_loaded_enabled_armed_and_left_alone_on_a_warm_converge() {
    let image = image::ensure_image(&image_cache()).unwrap();
    let id = unique_id();
    let hub = Hub::create(&format!("{id}-hub"), HUB_IP, 24).unwrap();
    let netns = hub.attach(&format!("{id}-n1"), "p1", NODE_IP).unwrap();
    std::fs::create_dir_all(nodes_dir()).unwrap();
    let work = tempfile::tempdir_in(nodes_dir()).unwrap();
    let name = "timers-live";
    let mut node = LabNode::create(name, NODE_IP, &image, &work.path().join(name), netns).unwrap();
    node.boot().unwrap();
    node.wait_booted(Duration::from_secs(120)).unwrap();

    let mut cfg = fixtures::node_config(name, 0, NODE_IP);
    cfg.node.roles = vec![Role::Etcd, Role::Worker];
    let (root, node_systemctl) = agent_view(&node);

    let first = systemd::converge_timers(&root, &cfg, &node_systemctl).unwrap();
    assert!(first.reloaded && first.changed(), "{first:?}");
    assert_eq!(
        first.started,
        [timers::CONVERGE_TIMER, timers::SNAPSHOT_TIMER],
        "{first:?}"
    );
    assert_armed(&node, timers::CONVERGE_TIMER);
    assert_armed(&node, timers::SNAPSHOT_TIMER);
    let calendar = show(&node, "TimersCalendar", timers::SNAPSHOT_TIMER);
    // systemd shows `daily` normalised.
    assert!(calendar.contains("OnCalendar=*-*-* 00:00:00"), "{calendar}");
    let monotonic = show(&node, "TimersMonotonic", timers::CONVERGE_TIMER);
    assert!(
        monotonic.contains("OnBootUSec") && monotonic.contains("OnUnitInactiveUSec"),
        "{monotonic}"
    );

    let warm = systemd::converge_timers(&root, &cfg, &node_systemctl).unwrap();
    assert_eq!(warm, systemd::UnitsOutcome::default());

    // Enabled means armed at the next boot with no agent involved.
    node.reboot().unwrap();
    node.wait_booted(Duration::from_secs(120)).unwrap();
    assert_armed(&node, timers::CONVERGE_TIMER);
    assert_armed(&node, timers::SNAPSHOT_TIMER);

    // No longer a member: the snapshot timer's files go and the running timer is stopped now,
    // not at the next reboot; the converge timer keeps running. (The reboot gave the node a
    // new PID 1, so the agent's view of it is taken again.)
    let (root, node_systemctl) = agent_view(&node);
    cfg.node.roles = vec![Role::Worker];
    let worker = systemd::converge_timers(&root, &cfg, &node_systemctl).unwrap();
    assert_eq!(worker.stopped, [timers::SNAPSHOT_TIMER], "{worker:?}");
    // Stopped, not failed: left to the reload, systemd marks the removed timer failed (the
    // node `degraded`) until a reboot.
    assert_eq!(
        node.unit_state(timers::SNAPSHOT_TIMER).unwrap(),
        "inactive",
        "{}",
        node.diagnose(&[timers::SNAPSHOT_TIMER])
    );
    assert_eq!(
        show(&node, "LoadState", timers::SNAPSHOT_TIMER),
        "not-found"
    );
    assert_armed(&node, timers::CONVERGE_TIMER);

    node.kill().unwrap();
}
