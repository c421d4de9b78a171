//! dockerd started with the agent's TLS flags and an enrolled identity (docker-server from the
//! Docker CA, the Docker CA as its only root): a Docker-CA client certificate (BOSH's, from
//! `molten authority issue-client`) is served; an etcd-CA certificate and no certificate are
//! refused.

use std::net::Ipv4Addr;

use mc::docker::ClientTls;
use mc::identity::{IdentityDir, Kind};
use mc::systemd::{tls_listen_args, TlsPaths};
use molten_testkit::docker::Dockerd;
use molten_testkit::fixtures;
use molten_testkit::pki::{enroll_for_test, TestCa};

#[tokio::test]
async fn dockerd_trusts_the_docker_ca_only() {
    let pki = tempfile::tempdir().unwrap();
    let etcd_ca = TestCa::new("etcd", pki.path()).unwrap();
    let docker_ca = TestCa::new("docker", pki.path()).unwrap();
    let authority_ca = TestCa::new("authority", pki.path()).unwrap();
    let root = tempfile::tempdir().unwrap();
    let mut config = fixtures::node_config("node-d", 0, Ipv4Addr::LOCALHOST);
    config.node.roles = vec![molten_contract::Role::Worker];
    let authority = ("https://127.0.0.1:9", authority_ca.cert_pem.as_str());
    enroll_for_test(
        root.path(),
        &mut config,
        &etcd_ca,
        &docker_ca,
        authority,
        &["node-d"],
    )
    .unwrap();

    let identity = IdentityDir::new(root.path(), "/var/lib/molten");
    let port = molten_testkit::free_port().unwrap();
    let tls = TlsPaths {
        ca: docker_ca.cert.clone(),
        server_cert: identity.cert_path(Kind::DockerServer),
        server_key: identity.key_path(Kind::DockerServer),
    };
    let _docker = Dockerd::builder()
        .args(tls_listen_args(Ipv4Addr::LOCALHOST, port, &tls))
        .start()
        .unwrap();
    let host = format!("tcp://127.0.0.1:{port}");

    let client = |ca: &TestCa, cn: &str| {
        let issued = ca.issue(cn, &[]).unwrap();
        ClientTls {
            ca: docker_ca.cert.clone(),
            cert: issued.cert,
            key: issued.key,
        }
    };
    let bosh = client(&docker_ca, "bosh");
    let docker = mc::docker::connect(&host, Some(&bosh)).await.unwrap();
    docker.ping().await.unwrap();

    // The node's own etcd identity (etcd CA) is refused, and so is a client without one.
    let etcd_client = ClientTls {
        ca: docker_ca.cert.clone(),
        cert: identity.cert_path(Kind::EtcdClient),
        key: identity.key_path(Kind::EtcdClient),
    };
    let Err(err) = mc::docker::connect(&host, Some(&etcd_client)).await else {
        panic!("dockerd accepted an etcd-CA certificate")
    };
    assert!(format!("{err:#}").contains("not answering"), "{err:#}");
    let other_etcd = client(&etcd_ca, "root");
    assert!(mc::docker::connect(&host, Some(&other_etcd)).await.is_err());
    assert!(mc::docker::connect(&host, None).await.is_err());
}
