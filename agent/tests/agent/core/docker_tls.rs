//! The enrolled identity works with a real dockerd: started with the agent's TLS flags (the
//! Docker CA, the node's docker-server pair), it serves `mc converge --docker-host tcp://...`
//! presenting the operator's Docker client certificate, and refuses a client without one. Over
//! TCP without a client certificate, converge says what it needs instead of trying.

use std::net::Ipv4Addr;

use mc::converge::{DockerClient, Stage, State};
use mc::systemd::{tls_listen_args, TlsPaths};
use molten_testkit::docker::Dockerd;

use super::support::*;

#[test]
fn dockerd_serves_the_agent_over_mutual_tls_with_the_enrolled_identity() {
    let etcd = start_etcd();
    let port = molten_testkit::free_port().unwrap();
    let mut config = node_config("node-5", 5, Ipv4Addr::LOCALHOST, &etcd.endpoint());
    config.docker.tls_port = port;
    let node = Node::new(config);
    let boot = node.converge(Stage::Boot, None, &RecordingSystemd::default());
    assert!(boot.ok(), "{:#?}", boot.steps);

    // The files the units step points dockerd at, under the node's root.
    let identity = node.path("/var/lib/molten/identity");
    let tls = TlsPaths {
        ca: node.path("/etc/molten/tls/docker-ca.pem"),
        server_cert: identity.join("docker-server.pem"),
        server_key: identity.join("docker-server.key"),
    };
    let dropin =
        std::fs::read_to_string(node.path("/etc/systemd/system/docker.service.d/50-mc.conf"))
            .unwrap();
    for path in [
        "/etc/molten/tls/docker-ca.pem",
        "/var/lib/molten/identity/docker-server",
    ] {
        assert!(dropin.contains(path), "{path} not in {dropin}");
    }
    let docker = Dockerd::builder()
        .args(tls_listen_args(Ipv4Addr::LOCALHOST, port, &tls))
        .start()
        .unwrap();
    let host = format!("tcp://127.0.0.1:{port}");

    // Over TCP without a client certificate: the step fails saying what it needs.
    let report = node.converge(
        Stage::Network,
        Some(host.clone()),
        &RecordingSystemd::default(),
    );
    let error = step(&report, "docker-network").error.clone().unwrap();
    assert!(error.contains("--docker-cert"), "{error}");

    let operator = operator_docker();
    let mut options = node.options(Stage::Network, Some(host.clone()));
    options.docker_client = Some(DockerClient {
        cert: operator.cert.clone(),
        key: operator.key.clone(),
    });
    let network = block_on(mc::converge::converge(
        &options,
        &RecordingSystemd::default(),
    ))
    .unwrap();
    assert!(network.ok(), "{:#?}", network.steps);
    assert_eq!(step(&network, "docker-network").state, State::Changed);
    let subnet = docker
        .cli(&[
            "network",
            "inspect",
            "bosh-node-5",
            "--format",
            "{{(index .IPAM.Config 0).Subnet}}",
        ])
        .unwrap();
    assert_eq!(subnet.trim(), "10.213.6.0/24");

    // Without a client certificate the daemon does not answer.
    let refused = block_on(mc::docker::connect(&host, None));
    assert!(
        refused.is_err(),
        "plain HTTP to a --tlsverify daemon must fail"
    );
}
