//! Certificates against a real etcd: stable across boots, renewed near expiry, reissued when the
//! address changes; keys 0600.

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;

use mc::converge::{Stage, State};
use mc::pki::{self, cert, Ca, Kind};
use molten_contract::keys;
use molten_testkit::etcd::EtcdServer;

use super::support::*;

fn days_left(pem: &str) -> i64 {
    (cert::not_after(pem).unwrap() - time::OffsetDateTime::now_utc()).whole_days()
}

fn sans(pem: &str) -> String {
    let sans: Vec<String> = cert::san_strings(pem).unwrap().into_iter().collect();
    sans.join(",")
}

#[test]
fn keys_are_private_and_certificates_survive_a_reboot() {
    let etcd = EtcdServer::start().unwrap();
    let (node, sd) = booted_node(0, &etcd.endpoint());
    for (file, mode) in [
        ("ca.pem", 0o644),
        ("server-cert.pem", 0o644),
        ("server-key.pem", 0o600),
        ("client-cert.pem", 0o644),
        ("client-key.pem", 0o600),
    ] {
        let meta = std::fs::metadata(node.path("/etc/molten/tls").join(file)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, mode, "{file}");
    }
    let server = node.tls("server-cert.pem");
    assert_eq!(sans(&server), "10.0.0.10,127.0.0.1,node-0");
    assert!(days_left(&server) > 360);

    // A "reboot" that lost the disk (reinstall): the certificates come back from etcd.
    std::fs::remove_dir_all(node.path("/etc/molten/tls")).unwrap();
    let report = node.converge(Stage::Boot, None, &sd);
    assert!(report.ok());
    assert_eq!(
        node.tls("server-cert.pem"),
        server,
        "same certificate, not a new one"
    );
}

#[test]
fn a_certificate_near_expiry_is_renewed() {
    let etcd = EtcdServer::start().unwrap();
    let (node, sd) = booted_node(0, &etcd.endpoint());

    // Replace the server certificate (etcd and disk) by one that expires in 10 days.
    let short = block_on(async {
        let mut c = etcd_client(&etcd.endpoint()).await;
        let ca_cert = get(&mut c, keys::CA_CERT).await.unwrap().value;
        let ca_key = get(&mut c, keys::CA_KEY).await.unwrap().value;
        let ca = Ca::from_pem(&ca_cert, &ca_key).unwrap();
        let kind = pki::server_kind(&node.config, Ipv4Addr::new(10, 0, 0, 10));
        let short = cert::issue(&ca, "node-0", &kind, time::Duration::days(10)).unwrap();
        let item = |i| keys::node_tls("node-0", i);
        mc::etcd::put(&mut c, &item(pki::SERVER_CERT_ITEM), &short.cert_pem)
            .await
            .unwrap();
        mc::etcd::put(&mut c, &item(pki::SERVER_KEY_ITEM), &short.key_pem)
            .await
            .unwrap();
        short
    });
    std::fs::write(
        node.path("/etc/molten/tls/server-cert.pem"),
        &short.cert_pem,
    )
    .unwrap();
    assert!(days_left(&node.tls("server-cert.pem")) < 11);
    let client_before = node.tls("client-cert.pem");

    let report = node.converge(Stage::Boot, None, &sd);
    assert!(report.ok(), "{:#?}", report.steps);
    let pki_step = step(&report, "pki");
    assert_eq!(pki_step.state, State::Changed);
    assert!(
        pki_step.detail.contains("server-cert: issued (expires in"),
        "{pki_step:?}"
    );
    assert!(days_left(&node.tls("server-cert.pem")) > 360);
    assert_ne!(node.tls("server-key.pem"), short.key_pem);
    assert_eq!(
        node.tls("client-cert.pem"),
        client_before,
        "the valid client cert is kept"
    );
}

#[test]
fn a_changed_address_gets_a_server_certificate_with_the_new_san() {
    let etcd = EtcdServer::start().unwrap();
    let (mut node, sd) = booted_node(0, &etcd.endpoint());
    let old = node.tls("server-cert.pem");

    node.config = node_config("node-0", 0, Ipv4Addr::new(10, 0, 0, 77), &etcd.endpoint());
    node.write_config();
    let report = node.converge(Stage::Boot, None, &sd);
    assert!(report.ok(), "{:#?}", report.steps);
    let new = node.tls("server-cert.pem");
    assert_ne!(new, old);
    assert_eq!(sans(&new), "10.0.0.77,127.0.0.1,node-0");
    assert!(
        step(&report, "pki").detail.contains("SANs"),
        "{:?}",
        step(&report, "pki")
    );
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
    assert!(matches!(
        pki::server_kind(&node.config, record.private_ip),
        Kind::Server { .. }
    ));
}
