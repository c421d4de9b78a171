//! etcd over mutual TLS with access control, against a real etcd 3.4 started with
//! `--client-cert-auth`: the members' bootstrap (as CN=root) is idempotent, a node's identity
//! writes its own record and status and nothing of another node's, and a client without a
//! certificate from the etcd CA gets nothing.

use std::time::Duration;

use mc::etcd::{self, rbac, EtcdTls, Retry};
use molten_contract::keys;
use molten_testkit::etcd::{EtcdServer, ServerTls};
use molten_testkit::pki::{Issued, TestCa};

fn tls(ca: &TestCa, issued: &Issued) -> EtcdTls {
    EtcdTls::new(&ca.cert_pem, &issued.cert_pem, &issued.key_pem)
}

fn refused<T>(result: anyhow::Result<T>) -> anyhow::Error {
    match result {
        Ok(_) => panic!("connected"),
        Err(e) => e,
    }
}

fn retry() -> Retry {
    Retry {
        budget: Duration::from_secs(3),
        first_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(500),
    }
}

/// An etcd CA in `dir`, one etcd member with client-certificate auth, and a `root` certificate.
fn etcd_with_client_auth(dir: &std::path::Path) -> (TestCa, EtcdServer, Issued) {
    let etcd_ca = TestCa::new("etcd", dir).unwrap();
    let server = etcd_ca.issue("member", &["127.0.0.1"]).unwrap();
    let etcd = EtcdServer::start_tls(
        "m0",
        ServerTls {
            ca: etcd_ca.cert.clone(),
            cert: server.cert.clone(),
            key: server.key.clone(),
        },
    )
    .unwrap();
    let root = etcd_ca.issue("root", &[]).unwrap();
    (etcd_ca, etcd, root)
}

#[tokio::test]
async fn a_node_writes_only_its_own_keys_and_the_bootstrap_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let (etcd_ca, etcd, root) = etcd_with_client_auth(dir.path());
    let endpoints = vec![etcd.endpoint()];
    assert!(endpoints[0].starts_with("https://"));
    let docker_ca = TestCa::new("docker", dir.path()).unwrap();

    let node_a = etcd_ca.issue("node-a", &[]).unwrap();
    let node_b = etcd_ca.issue("node-b", &[]).unwrap();
    let stranger = etcd_ca.issue("node-z", &[]).unwrap();

    let roster = vec![
        "node-a".to_string(),
        "node-b".to_string(),
        "root".to_string(),
    ];
    let mut admin = etcd::connect(&endpoints, retry(), tls(&etcd_ca, &root))
        .await
        .unwrap();
    let first = rbac::bootstrap(&mut admin, &roster).await.unwrap();
    assert_eq!(first.created, vec!["root", "node-a", "node-b"]);
    assert_eq!(first.refused, vec!["root"], "root is never a node's user");
    let again = rbac::bootstrap(&mut admin, &roster).await.unwrap();
    assert!(again.created.is_empty(), "{again:?}");
    // Drift is repaired: a revoked permission comes back at the next bootstrap.
    etcd.etcdctl_as(
        &root.cert,
        &root.key,
        &[
            "role",
            "revoke-permission",
            "node-a",
            "/molten/status/node-a",
        ],
    )
    .unwrap();
    rbac::bootstrap(&mut admin, &roster).await.unwrap();
    let role = etcd
        .etcdctl_as(&root.cert, &root.key, &["role", "get", "node-a"])
        .unwrap();
    assert!(role.contains("/molten/status/node-a"), "{role}");
    let users = etcd
        .etcdctl_as(&root.cert, &root.key, &["user", "list"])
        .unwrap();
    assert_eq!(
        users.split_whitespace().collect::<Vec<_>>(),
        ["node-a", "node-b", "root"]
    );

    // Node A: its own record and status, reads under /molten/, flannel leases.
    let mut a = etcd::connect(&endpoints, retry(), tls(&etcd_ca, &node_a))
        .await
        .unwrap();
    etcd::put(&mut a, &keys::node_record("node-a"), "{}")
        .await
        .unwrap();
    etcd::put(&mut a, &keys::node_status("node-a"), "{}")
        .await
        .unwrap();
    etcd::put(&mut a, "/coreos.com/network/subnets/10.1.1.0-24", "{}")
        .await
        .unwrap();
    let mut b = etcd::connect(&endpoints, retry(), tls(&etcd_ca, &node_b))
        .await
        .unwrap();
    etcd::put(&mut b, &keys::node_record("node-b"), "{\"b\":1}")
        .await
        .unwrap();
    assert_eq!(
        etcd::get(&mut a, &keys::node_record("node-b"))
            .await
            .unwrap()
            .unwrap()
            .value,
        "{\"b\":1}"
    );

    // ... and nothing of B's, nor anything else outside its grants.
    for key in [
        keys::node_record("node-b"),
        keys::node_status("node-b"),
        "/molten/nodes/node-a-evil".to_string(),
        "/molten/ca/key".to_string(),
        "/coreos.com/network/config".to_string(),
    ] {
        let err = etcd::put(&mut a, &key, "forged").await.unwrap_err();
        assert!(
            format!("{err:#}").contains("permission denied"),
            "{key}: {err:#}"
        );
    }
    assert_eq!(
        etcd::get(&mut b, &keys::node_record("node-b"))
            .await
            .unwrap()
            .unwrap()
            .value,
        "{\"b\":1}",
        "B's record is untouched"
    );

    // A certificate from the etcd CA for a user without a role reads nothing.
    let mut z = etcd::connect(&endpoints, retry(), tls(&etcd_ca, &stranger))
        .await
        .unwrap();
    let err = etcd::get(&mut z, &keys::node_record("node-a"))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("permission denied"), "{err:#}");

    // A Docker-CA certificate, or none at all: no connection.
    let docker_client = docker_ca.issue("node-a", &[]).unwrap();
    let err = refused(etcd::connect(&endpoints, retry(), tls(&etcd_ca, &docker_client)).await);
    assert!(
        format!("{err:#}").contains("connecting to etcd")
            || format!("{err:#}").contains("etcd unreachable"),
        "{err:#}"
    );
    // etcdctl, too, gets no answer with it (fails after its timeout).
    etcd.etcdctl_as(
        &docker_client.cert,
        &docker_client.key,
        &["get", "/molten/", "--prefix"],
    )
    .unwrap_err();
    // No certificate at all: etcd's own client, without TLS, gets no answer (etcdctl without a
    // certificate neither); mc has no way to dial without one, and refuses a plain URL.
    molten_testkit::etcd::etcdctl(&etcd.endpoint(), &["get", "/molten/", "--prefix"]).unwrap_err();
    let bare = async {
        let mut client = etcd_client::Client::connect([etcd.endpoint()], None).await?;
        client.get("/molten/", None).await
    };
    let bare = tokio::time::timeout(std::time::Duration::from_secs(10), bare).await;
    assert!(!matches!(bare, Ok(Ok(_))), "read without a certificate");
    let plain = refused(
        etcd::connect(
            &[etcd.endpoint().replace("https", "http")],
            retry(),
            tls(&etcd_ca, &root),
        )
        .await,
    );
    assert!(
        format!("{plain:#}").contains("is not https://"),
        "{plain:#}"
    );

    // Three members bootstrapping at once (first boot): every one succeeds.
    let racers: Vec<_> = (0..3)
        .map(|_| {
            let endpoints = endpoints.clone();
            let tls = tls(&etcd_ca, &root);
            tokio::spawn(async move {
                let mut client = etcd::connect(&endpoints, retry(), tls).await.unwrap();
                let roster = vec!["node-r1".to_string(), "node-r2".to_string()];
                rbac::bootstrap(&mut client, &roster).await
            })
        })
        .collect();
    let mut created = Vec::new();
    for racer in racers {
        created.extend(racer.await.unwrap().unwrap().created);
    }
    created.sort();
    assert_eq!(created, ["node-r1", "node-r2"], "each user created once");

    // Bootstrapping after auth is on, with a node enrolled later, adds only that node.
    let later = rbac::bootstrap(&mut admin, &["node-c".to_string()])
        .await
        .unwrap();
    assert_eq!(later.created, vec!["node-c"]);
}

/// A revoked node (the authority's roster lists it): its user and role are deleted, so its
/// still-valid certificate reads and writes nothing; the others are untouched; repeat is a no-op.
#[tokio::test]
async fn a_revoked_node_loses_its_etcd_user() {
    let dir = tempfile::tempdir().unwrap();
    let (etcd_ca, etcd, root) = etcd_with_client_auth(dir.path());
    let endpoints = vec![etcd.endpoint()];
    let node_a = etcd_ca.issue("node-a", &[]).unwrap();
    let node_b = etcd_ca.issue("node-b", &[]).unwrap();
    let mut admin = etcd::connect(&endpoints, retry(), tls(&etcd_ca, &root))
        .await
        .unwrap();
    let roster = vec!["node-a".to_string(), "node-b".to_string()];
    rbac::bootstrap(&mut admin, &roster).await.unwrap();
    let mut b = etcd::connect(&endpoints, retry(), tls(&etcd_ca, &node_b))
        .await
        .unwrap();
    etcd::put(&mut b, &keys::node_status("node-b"), "{}")
        .await
        .unwrap();

    let revoked = vec![
        "node-b".to_string(),
        "root".to_string(),
        "node-q".to_string(),
    ];
    let removed = rbac::revoke(&mut admin, &revoked).await.unwrap();
    assert_eq!(removed, ["node-b"], "root and unknown names are left alone");
    let users = etcd
        .etcdctl_as(&root.cert, &root.key, &["user", "list"])
        .unwrap();
    assert_eq!(
        users.split_whitespace().collect::<Vec<_>>(),
        ["node-a", "root"]
    );
    let roles = etcd
        .etcdctl_as(&root.cert, &root.key, &["role", "list"])
        .unwrap();
    assert!(!roles.contains("node-b"), "{roles}");
    for result in [
        etcd::get(&mut b, &keys::node_record("node-a"))
            .await
            .map(|_| ()),
        etcd::put(&mut b, &keys::node_status("node-b"), "{}").await,
    ] {
        let err = result.unwrap_err();
        assert!(format!("{err:#}").contains("permission denied"), "{err:#}");
    }
    let mut a = etcd::connect(&endpoints, retry(), tls(&etcd_ca, &node_a))
        .await
        .unwrap();
    etcd::put(&mut a, &keys::node_status("node-a"), "{}")
        .await
        .unwrap();
    assert!(rbac::revoke(&mut admin, &revoked).await.unwrap().is_empty());
}
