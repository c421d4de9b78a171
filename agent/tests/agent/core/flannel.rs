//! The flannel reservation against a real etcd: re-put after flanneld turned it into a lease,
//! never taking a subnet another node holds, following this node's own address change.

use etcd_client::PutOptions;
use mc::converge::{Stage, State};
use molten_contract::FlannelSettings;

use super::support::*;

fn lease_key(node: &Node) -> String {
    let settings: &FlannelSettings = &node.config.flannel;
    settings.lease_key(node.config.subnet().unwrap())
}

#[test]
fn reservation_is_put_again_after_flanneld_made_it_a_lease() {
    let etcd = start_etcd();
    let (node, sd) = booted_node(0, &etcd.endpoint());
    let key = lease_key(&node);

    block_on(async {
        let mut c = etcd_client(&etcd.endpoint()).await;
        let entry = get(&mut c, &key).await.unwrap();
        assert_eq!(entry.lease, 0, "a reservation has no lease");
        // What flanneld does when it renews: the same key, its VTEP data, a 24 h lease.
        let lease = c.lease_grant(86_400, None).await.unwrap().id();
        let value = r#"{"PublicIP":"10.0.0.10","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:42:ac:11:00:02"}}"#;
        c.put(
            key.as_str(),
            value,
            Some(PutOptions::new().with_lease(lease)),
        )
        .await
        .unwrap();
    });

    let report = node.converge(Stage::Boot, None, &sd);
    assert!(report.ok(), "{:#?}", report.steps);
    let flannel = step(&report, "flannel");
    assert_eq!(flannel.state, State::Changed);
    assert!(flannel.detail.contains("was a lease"), "{flannel:?}");
    block_on(async {
        let mut c = etcd_client(&etcd.endpoint()).await;
        let entry = get(&mut c, &key).await.unwrap();
        assert_eq!(entry.lease, 0, "reservation again");
        let v: serde_json::Value = serde_json::from_str(&entry.value).unwrap();
        assert_eq!(v["PublicIP"], "10.0.0.10");
        assert_eq!(
            v["BackendData"]["VtepMAC"], "02:42:ac:11:00:02",
            "flanneld's data kept"
        );
    });
    let again = node.converge(Stage::Boot, None, &sd);
    assert_eq!(step(&again, "flannel").state, State::Unchanged);
}

#[test]
fn a_subnet_held_by_another_node_is_never_taken() {
    let etcd = start_etcd();
    let node = numbered_node(1, &etcd.endpoint());
    let key = lease_key(&node);
    let theirs = r#"{"PublicIP":"10.0.0.99","BackendType":"vxlan"}"#;
    trust()
        .etcdctl_root(&etcd.endpoint(), &["put", &key, theirs])
        .unwrap();

    let report = node.converge(Stage::Boot, None, &RecordingSystemd::default());
    assert!(!report.ok());
    let flannel = step(&report, "flannel");
    assert_eq!(flannel.state, State::Failed);
    let error = flannel.error.as_deref().unwrap();
    assert!(
        error.contains(&key) && error.contains("10.0.0.99"),
        "{error}"
    );
    assert_eq!(
        trust()
            .etcdctl_root(&etcd.endpoint(), &["get", &key, "--print-value-only"])
            .unwrap()
            .trim(),
        theirs
    );
    // The failure is published for `mc status`.
    assert!(report.publish_error.is_none());
    assert!(!report.status.ok);
    assert_eq!(report.status.failed_step().unwrap().name, "flannel");
}

#[test]
fn a_different_network_config_is_a_conflict_not_overwritten() {
    let etcd = start_etcd();
    let other = r#"{"Network":"10.50.0.0/16","SubnetLen":24,"Backend":{"Type":"vxlan"}}"#;
    trust()
        .etcdctl_root(
            &etcd.endpoint(),
            &["put", "/coreos.com/network/config", other],
        )
        .unwrap();
    let node = numbered_node(2, &etcd.endpoint());
    let report = node.converge(Stage::Boot, None, &RecordingSystemd::default());
    let flannel = step(&report, "flannel");
    assert_eq!(flannel.state, State::Failed);
    assert!(
        flannel.error.as_deref().unwrap().contains("conflict"),
        "{flannel:?}"
    );
    assert_eq!(
        trust()
            .etcdctl_root(
                &etcd.endpoint(),
                &["get", "/coreos.com/network/config", "--print-value-only"]
            )
            .unwrap()
            .trim(),
        other
    );
}

#[test]
fn the_bosh_network_follows_flannels_actual_lease_and_a_mismatch_fails_naming_both() {
    let etcd = start_etcd();
    let (node, sd) = booted_node(1, &etcd.endpoint());
    // flanneld holds another subnet than zone 1's (a lost reservation, a changed network).
    node.write_flannel_lease(
        "FLANNEL_NETWORK=10.213.0.0/16\nFLANNEL_SUBNET=10.213.7.1/24\nFLANNEL_MTU=1450\n",
    );
    // No Docker is reachable: the step must fail on the lease before it ever connects.
    let report = node.converge(Stage::Network, Some("tcp://127.0.0.1:1".into()), &sd);
    let network = step(&report, "docker-network");
    assert_eq!(network.state, State::Failed);
    let error = network.error.as_deref().unwrap();
    assert!(
        error.contains("flannel leased 10.213.7.0/24 (gateway 10.213.7.1)")
            && error.contains("zone 1's subnet is 10.213.2.0/24"),
        "{error}"
    );

    std::fs::remove_file(node.path("run/flannel/subnet.env")).unwrap();
    let report = node.converge(Stage::Network, Some("tcp://127.0.0.1:1".into()), &sd);
    let error = step(&report, "docker-network").error.clone().unwrap();
    assert!(
        error.contains("subnet.env is missing: flanneld holds no lease"),
        "{error}"
    );
}
