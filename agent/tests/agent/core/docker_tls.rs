//! The certificates the agent issues work with a real dockerd: started with the agent's TLS
//! flags, it serves `mc converge --docker-host tcp://...` (the node's client certificate) and
//! refuses a client without one.

use std::net::Ipv4Addr;

use mc::converge::{Stage, State};
use mc::systemd::{tls_listen_args, TlsPaths};
use molten_testkit::docker::Dockerd;
use molten_testkit::etcd::EtcdServer;

use super::support::*;

#[test]
fn dockerd_serves_the_agent_over_mutual_tls_with_its_own_certificates() {
    let etcd = EtcdServer::start().unwrap();
    let port = molten_testkit::free_port().unwrap();
    let mut config = node_config("node-5", 5, Ipv4Addr::LOCALHOST, &etcd.endpoint());
    config.docker.tls_port = port;
    let node = Node::new(config);
    let boot = node.converge(Stage::Boot, None, &RecordingSystemd::default());
    assert!(boot.ok(), "{:#?}", boot.steps);

    let dir = node.path("/etc/molten/tls");
    let tls = TlsPaths {
        ca: dir.join("ca.pem"),
        server_cert: dir.join("server-cert.pem"),
        server_key: dir.join("server-key.pem"),
    };
    let docker = Dockerd::builder()
        .args(tls_listen_args(Ipv4Addr::LOCALHOST, port, &tls))
        .start()
        .unwrap();
    let host = format!("tcp://127.0.0.1:{port}");

    let network = node.converge(
        Stage::Network,
        Some(host.clone()),
        &RecordingSystemd::default(),
    );
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
