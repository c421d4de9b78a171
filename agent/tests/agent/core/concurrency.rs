//! Ten enrolled agents booting together against one etcd with mutual TLS: one access-control
//! bootstrap that every member may run at once, one trust root, ten subnets and ten records.

use std::collections::BTreeSet;

use mc::converge::Stage;
use mc::records::NodeRecord;
use molten_contract::keys;

use super::support::*;

#[test]
fn ten_agents_make_one_trust_root_ten_subnets_and_ten_records() {
    let etcd = start_etcd();
    let names: Vec<String> = (0..10).map(|i| format!("node-{i}")).collect();
    let nodes: Vec<Node> = (0..10u8)
        .map(|i| {
            let ip = std::net::Ipv4Addr::new(10, 0, 0, 10 + i);
            let mut config =
                node_config(&names[usize::from(i)], u32::from(i), ip, &etcd.endpoint());
            // Every member creates a user and role for every node, concurrently.
            config.trust.roster = names.clone();
            Node::new(config)
        })
        .collect();

    // Each agent on its own thread and runtime, released together.
    let barrier = std::sync::Barrier::new(nodes.len());
    let reports: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = nodes
            .iter()
            .map(|node| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    node.converge(Stage::Boot, None, &RecordingSystemd::default())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (node, report) in nodes.iter().zip(&reports) {
        assert!(
            report.ok(),
            "{}: {:#?}",
            node.config.node.name,
            report.steps
        );
    }

    // One access control: authentication on, a user for every node (and root), created once
    // whichever member got there first; no node's bootstrap failed on another's.
    let users = trust()
        .etcdctl_root(&etcd.endpoint(), &["user", "list"])
        .unwrap();
    let users: BTreeSet<&str> = users.lines().filter(|l| !l.is_empty()).collect();
    let mut expected: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    expected.insert("root");
    assert_eq!(users, expected);
    // Each user is reported created by exactly one of the ten (etcd says "already exists" to
    // the others).
    let mut created: Vec<String> = reports
        .iter()
        .filter_map(|r| {
            let detail = &step(r, "rbac").detail;
            let list = detail.split("created users ").nth(1)?;
            Some(list.split(';').next().unwrap().to_string())
        })
        .flat_map(|list| list.split(", ").map(str::to_string).collect::<Vec<_>>())
        .collect();
    created.sort();
    let expected_list: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    assert_eq!(created, expected_list);
    let without_certificate = molten_testkit::etcd::etcdctl(&etcd.endpoint(), &["get", "/x"]);
    assert!(without_certificate.is_err(), "no certificate, no answer");

    // Exactly one trust root: every node installed the authority's Docker CA and publishes it.
    let cas: BTreeSet<String> = nodes.iter().map(|n| n.tls("docker-ca.pem")).collect();
    assert_eq!(cas, BTreeSet::from([trust().docker.cert_pem.clone()]));

    block_on(async {
        let mut client = etcd_client(&etcd.endpoint()).await;
        // No key material, no CA or TLS subtree: only records, statuses and flannel's keys.
        for (key, value) in mc::etcd::get_prefix(&mut client, "").await.unwrap() {
            assert!(!value.contains("PRIVATE KEY"), "key material in {key}");
            assert!(
                !key.starts_with("/molten/ca/") && !key.starts_with("/molten/tls/"),
                "{key}"
            );
        }
        // Ten distinct subnets, each reserved (no lease) for its node's address.
        let leases = mc::etcd::get_prefix(&mut client, "/coreos.com/network/subnets/")
            .await
            .unwrap();
        assert_eq!(leases.len(), 10);
        let ips: BTreeSet<String> = leases
            .iter()
            .map(|(_, v)| {
                serde_json::from_str::<serde_json::Value>(v).unwrap()["PublicIP"].to_string()
            })
            .collect();
        assert_eq!(ips.len(), 10);

        let records = mc::records::all_records(&mut client).await.unwrap();
        assert_eq!(records.len(), 10);
        let subnets: BTreeSet<_> = records.iter().map(|r: &NodeRecord| r.subnet).collect();
        assert_eq!(subnets.len(), 10);
        let fingerprints: BTreeSet<_> = records.iter().map(|r| r.ca_fingerprint.clone()).collect();
        assert_eq!(
            fingerprints,
            BTreeSet::from([mc::identity::fingerprint(&trust().docker.cert_pem).unwrap()])
        );
        for r in &records {
            assert_eq!(r.docker_endpoint, format!("tcp://{}:2376", r.private_ip));
            let key = keys::node_status(&r.name);
            let status = get(&mut client, &key).await.expect("status published");
            assert!(status.value.contains("\"ok\":true"), "{}", status.value);
        }
    });
}
