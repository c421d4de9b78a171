//! One mc at a time on a node, through the built binary.

use std::time::Duration;

use mc::lock::{NodeLock, LOCK_PATH};

use super::support::*;

#[test]
fn a_second_converge_on_a_node_is_refused_while_one_runs_and_proceeds_after() {
    let etcd = start_etcd();
    let node = numbered_node(0, &etcd.endpoint());
    let root = node.root.path().to_str().unwrap().to_string();
    let lock_path = node.path(LOCK_PATH);
    let held = NodeLock::acquire(&lock_path, "mc converge (test)", Duration::ZERO).unwrap();

    let out = run_mc(
        &[
            "converge",
            "--root",
            &root,
            "--stage",
            "boot",
            "--lock-wait",
            "1",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(75), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("another mc (pid "), "{err}");
    assert!(err.contains(": mc converge (test))"), "{err}");
    assert!(err.contains("run/molten/mc.lock"), "{err}");
    assert!(text(&out.stdout).is_empty(), "no step ran");

    drop(held);
    let out = run_mc(
        &["converge", "--root", &root, "--stage", "boot"],
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("converge: changed"));
}
