//! `mc enroll` and `mc status` as the binary: an enrolled node does nothing (and needs no
//! authority); a node that cannot enroll exits non-zero, keeps no key, and its `mc status`
//! says why; a config without a trust section or with a plain-HTTP authority is refused.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use molten_contract::NodeConfig;
use molten_testkit::fixtures;
use molten_testkit::pki::{enroll_for_test, TestCa};

use super::support::{run_mc, text};

const LIMIT: Duration = Duration::from_secs(60);

fn write(root: &Path, config: &NodeConfig) {
    let path = root.join("etc/molten/node.json");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, config.to_json()).unwrap();
    std::fs::write(root.join("etc/molten/enroll-token"), "token\n").unwrap();
}

#[test]
fn enroll_is_idempotent_and_a_failure_shows_in_status() {
    let pki = tempfile::tempdir().unwrap();
    let etcd_ca = TestCa::new("etcd", pki.path()).unwrap();
    let docker_ca = TestCa::new("docker", pki.path()).unwrap();
    let authority_ca = TestCa::new("authority", pki.path()).unwrap();
    // Nothing listens on this port: any attempt to reach the authority fails.
    let url = format!("https://127.0.0.1:{}", molten_testkit::free_port().unwrap());
    let authority = (url.as_str(), authority_ca.cert_pem.as_str());

    // Enrolled: nothing to do, no authority needed; the trust roots are installed.
    let enrolled = tempfile::tempdir().unwrap();
    let mut config = fixtures::node_config("node-e", 0, Ipv4Addr::LOCALHOST);
    enroll_for_test(
        enrolled.path(),
        &mut config,
        &etcd_ca,
        &docker_ca,
        authority,
        &["node-e"],
    )
    .unwrap();
    write(enrolled.path(), &config);
    let root = enrolled.path().to_str().unwrap();
    let out = run_mc(&["enroll", "--root", root], LIMIT);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("already enrolled: 5 certificates"),
        "{}",
        text(&out.stdout)
    );
    let installed =
        std::fs::read_to_string(enrolled.path().join("etc/molten/tls/docker-ca.pem")).unwrap();
    assert_eq!(installed, docker_ca.cert_pem);

    // Not enrolled and the authority unreachable: non-zero, no key kept, status says why.
    let fresh = tempfile::tempdir().unwrap();
    write(fresh.path(), &config);
    let root = fresh.path().to_str().unwrap();
    let out = run_mc(&["enroll", "--root", root], LIMIT);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains(&url), "{}", text(&out.stderr));
    assert!(!fresh
        .path()
        .join("var/lib/molten/identity/etcd-client.key")
        .exists());
    let failure =
        std::fs::read_to_string(fresh.path().join("var/lib/molten/enroll-failure.json")).unwrap();
    assert!(failure.contains("\"operation\": \"enroll\""), "{failure}");
    let status = run_mc(&["status", "--root", root, "--no-probe"], LIMIT);
    assert!(!status.status.success());
    let stderr = text(&status.stderr);
    assert!(
        stderr.starts_with("this node could not enroll: "),
        "{stderr}"
    );
    assert!(stderr.contains("run mc enroll"), "{stderr}");

    // A plain-HTTP authority is never used.
    let mut plain = config.clone();
    plain.trust.authority_url = "http://127.0.0.1:1".into();
    write(fresh.path(), &plain);
    let out = run_mc(&["enroll", "--root", root], LIMIT);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("only https:// is accepted"),
        "{}",
        text(&out.stderr)
    );

    // A node config from before the authority (version 1, no trust section): nothing to
    // enroll with, and the error says to recompose.
    let mut old: serde_json::Value = serde_json::from_str(&config.to_json()).unwrap();
    old["version"] = 1.into();
    old.as_object_mut().unwrap().remove("trust");
    std::fs::write(fresh.path().join("etc/molten/node.json"), old.to_string()).unwrap();
    let out = run_mc(&["enroll", "--root", root], LIMIT);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("predates the cluster authority"),
        "{}",
        text(&out.stderr)
    );
}
