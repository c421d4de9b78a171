//! The enrolled identity against a real etcd: keys private and never in etcd, kept across
//! reboots without a new enrollment, a node without a valid identity stopped before etcd, and a
//! node whose address changed carries its reservation and record along.

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;

use mc::converge::{Stage, State};

use super::support::*;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn keys_are_private_and_the_identity_survives_a_reboot() {
    let etcd = start_etcd();
    let (node, sd) = booted_node(0, &etcd.endpoint());
    let identity = node.path("/var/lib/molten/identity");
    assert_eq!(mode(&identity), 0o700);
    let mut keys = 0;
    for entry in std::fs::read_dir(&identity).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "key") {
            assert_eq!(mode(&path), 0o600, "{}", path.display());
            keys += 1;
        }
    }
    assert_eq!(keys, 5, "a member holds five identities");
    // The trust roots the units read: public, the authority's own.
    for (file, pem) in [
        ("etcd-ca.pem", &trust().etcd.cert_pem),
        ("docker-ca.pem", &trust().docker.cert_pem),
    ] {
        assert_eq!(mode(&node.path("/etc/molten/tls").join(file)), 0o644);
        assert_eq!(&node.tls(file), pem, "{file}");
    }

    // The record names every certificate by fingerprint and expiry; etcd holds no key.
    let (record, values) = block_on(async {
        let mut c = etcd_client(&etcd.endpoint()).await;
        let record = mc::records::all_records(&mut c).await.unwrap().remove(0);
        (record, mc::etcd::get_prefix(&mut c, "").await.unwrap())
    });
    let docker_server = std::fs::read_to_string(identity.join("docker-server.pem")).unwrap();
    let docker_summary = record
        .certificates
        .iter()
        .find(|c| c.kind == "docker-server")
        .unwrap();
    assert_eq!(
        docker_summary.fingerprint,
        mc::identity::fingerprint(&docker_server).unwrap()
    );
    assert!(!values.is_empty());
    for (key, value) in &values {
        assert!(!value.contains("PRIVATE KEY"), "key material in {key}");
    }

    // A reboot: the identity is valid, nothing is enrolled or rewritten.
    let before = snapshot(&identity);
    let report = node.converge(Stage::Boot, None, &sd);
    assert!(report.ok(), "{:#?}", report.steps);
    let identity_step = step(&report, "identity");
    assert_eq!(identity_step.state, State::Unchanged, "{identity_step:?}");
    assert!(
        identity_step.detail.contains("5 certificates valid until"),
        "{identity_step:?}"
    );
    assert_eq!(snapshot(&identity), before, "same keys, same certificates");
}

#[test]
fn a_node_without_a_valid_identity_fails_the_step_and_reaches_no_etcd() {
    let etcd = start_etcd();
    let (node, sd) = booted_node(0, &etcd.endpoint());
    // The etcd-client key is gone (a disk restored without it): no converge as this node.
    std::fs::remove_file(node.path("/var/lib/molten/identity/etcd-client.key")).unwrap();
    let report = node.converge(Stage::Boot, None, &sd);
    assert!(!report.ok());
    let identity = step(&report, "identity");
    assert_eq!(identity.state, State::Failed);
    let error = identity.error.as_deref().unwrap();
    assert!(
        error.contains("no valid identity (etcd-client") && error.contains("mc-enroll.service"),
        "{error}"
    );
    assert_eq!(step(&report, "etcd").state, State::Failed);
    assert!(report.publish_error.is_some());
}

#[test]
fn a_changed_address_moves_the_reservation_and_the_record() {
    let etcd = start_etcd();
    let (mut node, sd) = booted_node(0, &etcd.endpoint());
    let trust_section = node.config.trust.clone();
    node.config = node_config("node-0", 0, Ipv4Addr::new(10, 0, 0, 77), &etcd.endpoint());
    node.config.trust = trust_section;
    node.write_config();
    let report = node.converge(Stage::Boot, None, &sd);
    assert!(report.ok(), "{:#?}", report.steps);
    // Its own old reservation follows the new address; the record too.
    assert!(
        step(&report, "flannel").detail.contains("address changed"),
        "{:?}",
        step(&report, "flannel")
    );
    let record = block_on(async {
        let mut c = etcd_client(&etcd.endpoint()).await;
        mc::records::all_records(&mut c).await.unwrap().remove(0)
    });
    assert_eq!(record.private_ip, Ipv4Addr::new(10, 0, 0, 77));
    assert_eq!(record.docker_endpoint, "tcp://10.0.0.77:2376");
}
