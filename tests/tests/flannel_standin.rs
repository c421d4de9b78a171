//! The flanneld stand-in (a test fixture) against a real etcd: it must honour a reservation and
//! keep it one (flanneld updates a reservation with TTL 0), renew an earlier lease for its IP
//! under a fresh 24 h lease, pick a free subnet otherwise and write subnet.env.

use std::process::{Command, Stdio};
use std::time::Duration;

use molten_testkit::etcd::EtcdServer;
use molten_testkit::{wait_until, ChildGuard};

const PREFIX: &str = "/coreos.com/network";
const CONFIG: &str = r#"{"Network":"10.1.0.0/16","SubnetLen":24,"Backend":{"Type":"vxlan"}}"#;

fn start_standin(etcd: &EtcdServer, public_ip: &str, subnet_file: &std::path::Path) -> ChildGuard {
    let child = Command::new(env!("CARGO_BIN_EXE_flanneld-standin"))
        .arg(format!("--etcd-endpoints={}", etcd.endpoint()))
        .arg(format!("--etcd-prefix={PREFIX}"))
        .env("FLANNELD_PUBLIC_IP", public_ip)
        .arg(format!("--subnet-file={}", subnet_file.display()))
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    ChildGuard::new("flanneld-standin", child)
}

fn wait_for_file(path: &std::path::Path) -> String {
    wait_until(
        "subnet.env",
        Duration::from_secs(20),
        Duration::from_millis(50),
        || Ok(std::fs::read_to_string(path).ok()),
    )
    .unwrap()
}

fn lease_of(etcd: &EtcdServer, key: &str) -> i64 {
    let out = etcd.etcdctl(&["get", key, "-w", "json"]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["kvs"][0]["lease"].as_i64().unwrap_or(0)
}

fn granted_ttl(etcd: &EtcdServer, lease: i64) -> i64 {
    let ttl = etcd
        .etcdctl(&["lease", "timetolive", &format!("{lease:x}")])
        .unwrap();
    ttl.split("granted with TTL(")
        .nth(1)
        .and_then(|s| s.split('s').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("unexpected timetolive output: {ttl}"))
}

#[test]
fn honours_a_reservation_and_keeps_it_a_reservation() {
    let etcd = EtcdServer::start().unwrap();
    etcd.etcdctl(&["put", &format!("{PREFIX}/config"), CONFIG])
        .unwrap();
    let key = format!("{PREFIX}/subnets/10.1.3.0-24");
    etcd.etcdctl(&[
        "put",
        &key,
        r#"{"PublicIP":"10.88.0.13","BackendType":"vxlan"}"#,
    ])
    .unwrap();
    assert_eq!(lease_of(&etcd, &key), 0, "a reservation has no lease");

    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("flannel/subnet.env");
    let mut standin = start_standin(&etcd, "10.88.0.13", &env_file);
    let env = wait_for_file(&env_file);
    assert_eq!(
        env,
        "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n"
    );
    assert_eq!(lease_of(&etcd, &key), 0, "the reservation is still one");
    let value = etcd.etcdctl(&["get", &key, "--print-value-only"]).unwrap();
    assert!(value.contains("\"PublicIP\":\"10.88.0.13\""), "{value}");
    standin.ensure_running().unwrap();
    let status = standin.stop().unwrap().unwrap();
    assert!(status.success(), "SIGTERM should end it cleanly: {status}");
}

#[test]
fn renews_an_earlier_lease_for_its_ip_for_24_hours() {
    let etcd = EtcdServer::start().unwrap();
    etcd.etcdctl(&["put", &format!("{PREFIX}/config"), CONFIG])
        .unwrap();
    let granted = etcd.etcdctl(&["lease", "grant", "600"]).unwrap();
    let old_lease = granted
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("unexpected lease grant output: {granted}"))
        .to_string();
    let key = format!("{PREFIX}/subnets/10.1.4.0-24");
    etcd.etcdctl(&[
        "put",
        &format!("--lease={old_lease}"),
        &key,
        r#"{"PublicIP":"10.88.0.14","BackendType":"vxlan"}"#,
    ])
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("flannel/subnet.env");
    let _standin = start_standin(&etcd, "10.88.0.14", &env_file);
    let env = wait_for_file(&env_file);
    assert!(env.contains("FLANNEL_SUBNET=10.1.4.1/24\n"), "{env}");
    let lease = lease_of(&etcd, &key);
    assert_ne!(lease, 0, "the subnet is under a lease");
    assert_ne!(format!("{lease:x}"), old_lease, "under a new lease");
    assert_eq!(granted_ttl(&etcd, lease), 86400);
}

#[test]
fn takes_the_first_free_subnet_when_nothing_is_reserved_for_it() {
    let etcd = EtcdServer::start().unwrap();
    etcd.etcdctl(&["put", &format!("{PREFIX}/config"), CONFIG])
        .unwrap();
    // 10.1.1.0/24 belongs to someone else.
    etcd.etcdctl(&[
        "put",
        &format!("{PREFIX}/subnets/10.1.1.0-24"),
        r#"{"PublicIP":"10.88.0.11","BackendType":"vxlan"}"#,
    ])
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("subnet.env");
    let _standin = start_standin(&etcd, "10.88.0.99", &env_file);
    let env = wait_for_file(&env_file);
    assert!(env.contains("FLANNEL_SUBNET=10.1.2.1/24\n"), "{env}");
    assert_ne!(lease_of(&etcd, &format!("{PREFIX}/subnets/10.1.2.0-24")), 0);
    assert_eq!(lease_of(&etcd, &format!("{PREFIX}/subnets/10.1.1.0-24")), 0);
}

#[test]
fn waits_for_the_network_config() {
    let etcd = EtcdServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("subnet.env");
    let _standin = start_standin(&etcd, "10.88.0.5", &env_file);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !env_file.exists(),
        "wrote subnet.env without a network config"
    );
    etcd.etcdctl(&["put", &format!("{PREFIX}/config"), CONFIG])
        .unwrap();
    assert!(wait_for_file(&env_file).contains("FLANNEL_SUBNET=10.1.1.1/24"));
}

#[test]
fn rejects_flags_it_does_not_implement() {
    let out = Command::new(env!("CARGO_BIN_EXE_flanneld-standin"))
        .arg("--kube-subnet-mgr")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not support --kube-subnet-mgr"), "{err}");
}
