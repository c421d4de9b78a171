//! `mc etcd-join` with two real etcd members: the seed, and a new member that joins it with the
//! environment the command writes.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::Duration;

use mc::etcd::Retry;
use mc::etcd_join::{join, JoinOptions};
use molten_testkit::etcd::ETCD;
use molten_testkit::{free_port, wait_until, ChildGuard};

use super::support::*;

fn env_value<'a>(env: &'a str, key: &str) -> &'a str {
    env.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key} missing in {env}"))
}

#[test]
fn a_new_member_joins_the_seed_and_starts() {
    let seed = trust().start_etcd("seed").unwrap();
    let node = Node::new(node_config(
        "node-1",
        1,
        Ipv4Addr::LOCALHOST,
        &seed.endpoint(),
    ));
    let peer_port = free_port().unwrap();
    let data = tempfile::tempdir().unwrap();
    let options = JoinOptions {
        root: node.root.path().to_path_buf(),
        config: None,
        etcd: None,
        peer_port,
        env_file: None,
        data_dir: Some(data.path().join("data")),
        retry: Retry::with_budget(Duration::from_secs(10)),
        bootstrap_after: None,
    };
    let outcome = block_on(join(&options)).unwrap();
    assert!(outcome.added && outcome.env_written);
    assert_eq!(outcome.env_file, node.path("/run/molten/etcd-join.env"));
    let env = std::fs::read_to_string(&outcome.env_file).unwrap();
    let peer = format!("https://127.0.0.1:{peer_port}");
    assert_eq!(
        env_value(&env, "ETCD_INITIAL_CLUSTER"),
        format!("node-1={peer},seed={}", seed.peer_url())
    );
    assert_eq!(env_value(&env, "ETCD_INITIAL_CLUSTER_STATE"), "existing");

    // Start the new member the way its unit would: etcd reads the ETCD_* environment, and
    // serves clients and peers with the node's enrolled etcd-server and etcd-peer identities.
    let client = format!("https://127.0.0.1:{}", free_port().unwrap());
    let mut cmd = Command::new(ETCD);
    for line in env.lines().filter(|l| l.starts_with("ETCD_")) {
        let (k, v) = line.split_once('=').unwrap();
        cmd.env(k, v);
    }
    let identity = node.path("/var/lib/molten/identity");
    let etcd_ca = &trust().etcd.cert;
    let child = cmd
        .env("ETCD_CLIENT_CERT_AUTH", "true")
        .env("ETCD_TRUSTED_CA_FILE", etcd_ca)
        .env("ETCD_CERT_FILE", identity.join("etcd-server.pem"))
        .env("ETCD_KEY_FILE", identity.join("etcd-server.key"))
        .env("ETCD_PEER_CLIENT_CERT_AUTH", "true")
        .env("ETCD_PEER_TRUSTED_CA_FILE", etcd_ca)
        .env("ETCD_PEER_CERT_FILE", identity.join("etcd-peer.pem"))
        .env("ETCD_PEER_KEY_FILE", identity.join("etcd-peer.key"))
        .env("ETCD_DATA_DIR", data.path().join("data"))
        .env("ETCD_LISTEN_PEER_URLS", &peer)
        .env("ETCD_INITIAL_ADVERTISE_PEER_URLS", &peer)
        .env("ETCD_LISTEN_CLIENT_URLS", &client)
        .env("ETCD_ADVERTISE_CLIENT_URLS", &client)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(data.path().join("etcd.log")).unwrap())
        .spawn()
        .unwrap();
    let _member = ChildGuard::new("etcd node-1", child);
    wait_until(
        "node-1 started",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let list = trust()
                .etcdctl_root(&seed.endpoint(), &["member", "list"])
                .unwrap_or_default();
            Ok(list
                .lines()
                .any(|l| l.contains(", started, node-1,"))
                .then_some(()))
        },
    )
    .unwrap();
    assert_eq!(
        trust()
            .etcdctl_root(&seed.endpoint(), &["member", "list"])
            .unwrap()
            .lines()
            .count(),
        2
    );
    // It joined as a learner; once promoted it serves writes.
    let promoted = block_on(async {
        let mut etcd = mc::etcd::Etcd::connect(&[seed.endpoint()], options.retry, root_tls())
            .await
            .unwrap();
        mc::etcd::membership::promote_by_name(&mut etcd, "node-1", Duration::from_secs(30)).await
    })
    .unwrap();
    assert!(promoted);
    let value = trust()
        .etcdctl_root(&client, &["put", "/joined", "yes"])
        .unwrap();
    assert!(value.contains("OK"));

    // Running it again (a reboot) finds the member and leaves the file alone.
    let again = block_on(join(&options)).unwrap();
    assert!(!again.added && !again.env_written, "{again:?}");
    assert_eq!(
        trust()
            .etcdctl_root(&seed.endpoint(), &["member", "list"])
            .unwrap()
            .lines()
            .count(),
        2
    );
}
