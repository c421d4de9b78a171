//! Ten agents booting together against one etcd.

use std::collections::BTreeSet;

use mc::converge::Stage;
use mc::records::NodeRecord;
use molten_contract::keys;
use molten_testkit::etcd::EtcdServer;

use super::support::*;

#[test]
fn ten_agents_make_one_ca_ten_subnets_and_ten_records() {
    let etcd = EtcdServer::start().unwrap();
    let nodes = numbered_nodes(10, &etcd.endpoint());

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

    // Exactly one CA: one key in etcd, and every node holds and publishes that same one.
    let ca_keys = etcd
        .etcdctl(&["get", "/molten/ca/", "--prefix", "--keys-only"])
        .unwrap();
    let ca_keys: Vec<_> = ca_keys.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(ca_keys, vec![keys::CA_CERT, keys::CA_KEY]);
    let cas: BTreeSet<String> = nodes.iter().map(|n| n.tls("ca.pem")).collect();
    assert_eq!(cas.len(), 1);
    let created: usize = reports
        .iter()
        .filter(|r| step(r, "pki").detail.contains("created cluster CA"))
        .count();
    assert_eq!(created, 1, "exactly one agent reports creating the CA");

    block_on(async {
        let mut client = etcd_client(&etcd.endpoint()).await;
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
        assert_eq!(fingerprints.len(), 1);
        for r in &records {
            assert_eq!(r.docker_endpoint, format!("tcp://{}:2376", r.private_ip));
            let key = keys::node_status(&r.name);
            let status = get(&mut client, &key).await.expect("status published");
            assert!(status.value.contains("\"ok\":true"), "{}", status.value);
        }
    });
}
