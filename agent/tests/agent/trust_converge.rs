//! `mc converge` on enrolled nodes against a real etcd 3.4 with `--client-cert-auth`: the
//! member turns on access control, each node talks to etcd as itself, dockerd gets the
//! enrolled Docker certificate, the records carry fingerprints and expiry, and no key material
//! is anywhere in etcd. `mc bosh` uses the operator's Docker client certificate.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use mc::converge::{converge, Options, Stage, State};
use mc::etcd::{self, EtcdTls, Retry};
use molten_contract::{keys, NodeConfig, Role};
use molten_testkit::etcd::{EtcdServer, ServerTls};
use molten_testkit::fixtures;
use molten_testkit::pki::{enroll_for_test, TestCa};

use crate::core::support::IdleSystemd;

/// systemd on a booted node where nothing runs yet.
fn prepare_root(root: &Path, config: &NodeConfig) {
    let path = root.join("etc/molten/node.json");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, config.to_json()).unwrap();
    std::fs::create_dir_all(root.join("run/systemd/system")).unwrap();
}

fn options(root: &Path) -> Options {
    Options {
        root: root.to_path_buf(),
        config: None,
        etcd: None,
        docker_host: None,
        docker_client: None,
        stage: Stage::Boot,
        etcd_retry: Retry::with_budget(Duration::from_secs(10)),
    }
}

#[tokio::test]
async fn enrolled_nodes_converge_over_mtls_and_etcd_holds_no_key() {
    let pki = tempfile::tempdir().unwrap();
    let etcd_ca = TestCa::new("etcd", pki.path()).unwrap();
    let docker_ca = TestCa::new("docker", pki.path()).unwrap();
    let authority_ca = TestCa::new("authority", pki.path()).unwrap();
    let member_cert = etcd_ca.issue("m0", &["127.0.0.1"]).unwrap();
    let etcd = EtcdServer::start_tls(
        "m0",
        ServerTls {
            ca: etcd_ca.cert.clone(),
            cert: member_cert.cert.clone(),
            key: member_cert.key.clone(),
        },
    )
    .unwrap();
    // Nothing listens there: renewal is not due and the roster falls back to node.json's.
    let authority = ("https://127.0.0.1:9", authority_ca.cert_pem.as_str());
    let roster = ["node-a", "node-b"];

    let mut configs = Vec::new();
    let mut roots = Vec::new();
    for (name, zone, roles) in [
        ("node-a", 0, vec![Role::Etcd, Role::Worker]),
        ("node-b", 1, vec![Role::Worker]),
    ] {
        let mut config = fixtures::node_config(name, zone, Ipv4Addr::new(127, 0, 0, 1));
        config.node.roles = roles;
        config.etcd.endpoints = vec![etcd.endpoint()];
        config.flannel =
            molten_contract::FlannelSettings::new("10.215.0.0/16".parse().unwrap(), 24);
        let root = tempfile::tempdir().unwrap();
        enroll_for_test(
            root.path(),
            &mut config,
            &etcd_ca,
            &docker_ca,
            authority,
            &roster,
        )
        .unwrap();
        prepare_root(root.path(), &config);
        configs.push(config);
        roots.push(root);
    }

    // The member first: it creates the roles and turns authentication on.
    let a = converge(&options(roots[0].path()), &IdleSystemd)
        .await
        .unwrap();
    assert!(a.ok(), "{:#?}", a.steps);
    let names: Vec<&str> = a.steps.iter().map(|s| s.name.as_str()).collect();
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
            "record"
        ]
    );
    let rbac = a.steps.iter().find(|s| s.name == "rbac").unwrap();
    assert!(
        rbac.detail.contains("created users root, node-a, node-b"),
        "{}",
        rbac.detail
    );
    // The worker, as its own etcd user with a role only.
    let b = converge(&options(roots[1].path()), &IdleSystemd)
        .await
        .unwrap();
    assert!(b.ok(), "{:#?}", b.steps);
    assert!(
        !b.steps.iter().any(|s| s.name == "rbac"),
        "workers hold no root identity"
    );

    // A second converge is warm: nothing to do.
    let again = converge(&options(roots[0].path()), &IdleSystemd)
        .await
        .unwrap();
    assert!(again.ok() && !again.changed(), "{:#?}", again.steps);

    // dockerd: the Docker CA alone and the enrolled docker-server pair.
    let dropin = std::fs::read_to_string(
        roots[1]
            .path()
            .join("etc/systemd/system/docker.service.d/50-mc.conf"),
    )
    .unwrap();
    assert!(
        dropin.contains("--tlscacert=/etc/molten/tls/docker-ca.pem"),
        "{dropin}"
    );
    assert!(
        dropin.contains("--tlskey=/var/lib/molten/identity/docker-server.key"),
        "{dropin}"
    );
    let installed =
        std::fs::read_to_string(roots[1].path().join("etc/molten/tls/docker-ca.pem")).unwrap();
    assert_eq!(installed, docker_ca.cert_pem);

    // Records: fingerprints and expiry of every certificate, nothing more.
    let root_id = etcd_ca.issue("root", &[]).unwrap();
    let mut admin = etcd::connect(
        &[etcd.endpoint()],
        Retry::with_budget(Duration::from_secs(5)),
        EtcdTls::new(&etcd_ca.cert_pem, &root_id.cert_pem, &root_id.key_pem),
    )
    .await
    .unwrap();
    let records = mc::records::all_records(&mut admin).await.unwrap();
    assert_eq!(records.len(), 2);
    let record_a = records.iter().find(|r| r.name == "node-a").unwrap();
    let kinds: Vec<&str> = record_a
        .certificates
        .iter()
        .map(|c| c.kind.as_str())
        .collect();
    assert_eq!(
        kinds,
        [
            "etcd-peer",
            "etcd-server",
            "etcd-client",
            "etcd-admin",
            "docker-server"
        ]
    );
    assert_eq!(
        record_a.ca_fingerprint,
        mc::identity::fingerprint(&docker_ca.cert_pem).unwrap()
    );

    // The key scan: every key in etcd, none with key material, no CA or TLS subtree.
    let all = etcd::get_prefix(&mut admin, "").await.unwrap();
    assert!(
        all.len() >= 5,
        "{:?}",
        all.iter().map(|(k, _)| k).collect::<Vec<_>>()
    );
    for (key, value) in &all {
        assert!(!value.contains("PRIVATE KEY"), "key material in {key}");
        assert!(!value.contains("BEGIN"), "PEM in {key}");
        assert!(
            !key.starts_with("/molten/ca/") && !key.starts_with("/molten/tls/"),
            "{key}"
        );
    }

    // mc bosh with the operator's Docker client certificate: no node key involved.
    let rules = mc::records::rules(&mut admin, None).await.unwrap();
    let operator = docker_ca.issue("bosh", &[]).unwrap();
    let pair = mc::identity::Pair {
        cert_pem: operator.cert_pem.clone(),
        key_pem: operator.key_pem.clone(),
    };
    let inputs = mc::bosh::load(&mut admin, &rules, &docker_ca.cert_pem)
        .await
        .unwrap();
    let cpi = mc::bosh::cpi_config(&inputs, &pair);
    assert!(
        cpi.contains("docker-z0") && cpi.contains("docker-z1"),
        "{cpi}"
    );
    let first_line = |pem: &str| pem.lines().nth(1).unwrap().to_string();
    assert!(cpi.contains(&first_line(&operator.cert_pem)), "{cpi}");
    let err = mc::bosh::load(&mut admin, &rules, &etcd_ca.cert_pem)
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("not the given one"), "{err:#}");

    // Node B's certificate may write flannel leases (flanneld must): a lease on part of A's
    // subnet naming B's address is found by A's next converge.
    let b_dir = roots[1].path().join("var/lib/molten/identity");
    let read = |f: &str| std::fs::read_to_string(b_dir.join(f)).unwrap();
    let mut as_b = etcd::connect(
        &[etcd.endpoint()],
        Retry::with_budget(Duration::from_secs(5)),
        EtcdTls::new(
            &etcd_ca.cert_pem,
            &read("etcd-client.pem"),
            &read("etcd-client.key"),
        ),
    )
    .await
    .unwrap();
    let subnet_a = configs[0].subnet().unwrap();
    let forged = format!("/coreos.com/network/subnets/{}-25", subnet_a.network());
    etcd::put(
        &mut as_b,
        &forged,
        r#"{"PublicIP":"10.9.9.9","BackendType":"vxlan"}"#,
    )
    .await
    .unwrap();
    let err = etcd::put(&mut as_b, &keys::node_record("node-a"), "{}")
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("permission denied"), "{err:#}");
    let hijacked = converge(&options(roots[0].path()), &IdleSystemd)
        .await
        .unwrap();
    let flannel = hijacked.steps.iter().find(|s| s.name == "flannel").unwrap();
    let error = flannel.error.as_deref().unwrap_or_default();
    assert!(
        error.contains(&forged) && error.contains("10.9.9.9"),
        "{flannel:?}"
    );
    assert_eq!(configs[0].trust.roster, ["node-a", "node-b"]);
    assert_eq!(
        a.steps[1].state,
        State::Changed,
        "the identity step installed the CAs"
    );
}
