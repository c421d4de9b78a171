//! `mc status` reads the cluster from etcd and probes each node's Docker endpoint.

use std::net::{Ipv4Addr, TcpListener};
use std::time::Duration;

use mc::converge::Stage;

use super::support::*;

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn healthy_and_unreachable_nodes_are_told_apart() {
    let etcd = start_etcd();
    // node-0's "Docker" listens (a plain TCP listener on its TLS port); node-1's does not.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut up = node_config("node-0", 0, Ipv4Addr::LOCALHOST, &etcd.endpoint());
    up.docker.tls_port = listener.local_addr().unwrap().port();
    let mut down = node_config("node-1", 1, Ipv4Addr::new(127, 0, 0, 2), &etcd.endpoint());
    down.docker.tls_port = molten_testkit::free_port().unwrap();
    for config in [up, down] {
        let node = Node::new(config);
        assert!(node
            .converge(Stage::Boot, None, &RecordingSystemd::default())
            .ok());
    }

    let ep = etcd.endpoint();
    let tls = root_tls_args();
    let status = |extra: &str| {
        let mut args = vec!["status", "--etcd", &ep, extra];
        args.extend(tls.iter().map(String::as_str));
        run_mc(&args, LIMIT)
    };
    let out = status("--json");
    assert!(!out.status.success(), "one node is unreachable");
    let views: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(views[0]["name"], "node-0");
    assert_eq!(views[0]["health"], "ok");
    assert_eq!(views[0]["subnet"], "10.213.1.0/24");
    assert!(views[0]["age_seconds"].as_i64().unwrap() < 600);
    assert_eq!(views[1]["name"], "node-1");
    assert_eq!(views[1]["health"], "unreachable");

    // Without the probe both are ok, and the exit code says so.
    let out = status("--no-probe");
    assert!(out.status.success(), "{}", text(&out.stdout));
    let output = text(&out.stdout);
    let (table, members) = output.split_once("\n\n").expect("nodes, then etcd members");
    // Header, two nodes, and each node's first certificate expiry.
    assert_eq!(table.lines().count(), 4, "{table}");
    // Then etcd's own health: the one member leads, its last snapshot was never taken.
    assert_eq!(members.lines().count(), 2, "{members}");
    assert!(members.starts_with("MEMBER "), "{members}");
    let member = members.lines().nth(1).unwrap();
    assert!(
        member.contains(" leader ") && member.contains("never"),
        "{members}"
    );
    assert!(
        table.lines().skip(1).take(2).all(|l| l.contains(" ok")),
        "{table}"
    );
    let expiry = table.lines().last().unwrap();
    assert!(
        expiry.starts_with("certificates valid until: node-0 "),
        "{table}"
    );
}
