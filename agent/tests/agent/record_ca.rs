//! A node record must name the cluster's Docker CA (issue 11): in a real etcd, a record whose
//! `ca_fingerprint` is another CA's is isolated as `invalid` by `mc status --docker-ca` and left
//! out by `mc bosh` with the operator's certificate, while the node naming the cluster's CA comes
//! out whole.

use std::time::Duration;

use molten_testkit::pki::TestCa;
use serde_json::{json, Value};

use crate::core::support::{block_on, etcd_client, run_mc_root, start_etcd, text};

const LIMIT: Duration = Duration::from_secs(60);
const PARTIAL: i32 = 3;

/// A record and a fresh, successful status of a BOSH worker in zone `zone`.
fn node(name: &str, zone: u32, ca_fingerprint: &str) -> (Value, Value) {
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let record = json!({
        "version": 1, "name": name, "cluster": "dev", "zone": zone, "roles": ["worker"],
        "private_ip": format!("10.0.0.{}", 10 + zone),
        "subnet": format!("10.213.{}.0/24", zone + 1),
        "gateway": format!("10.213.{}.1", zone + 1),
        "docker_endpoint": format!("tcp://10.0.0.{}:2376", 10 + zone),
        "ca_fingerprint": ca_fingerprint,
        "server_cert_expiry": "2099-01-01T00:00:00Z",
        "bosh_network": "bosh", "mc_version": "0.1.0"
    });
    let status = json!({
        "node": name, "steps": [], "ok": true, "started": now, "finished": now,
        "duration_ms": 1, "mc_version": "0.1.0"
    });
    (record, status)
}

#[test]
fn a_record_naming_another_docker_ca_is_isolated() {
    let pki = tempfile::tempdir().unwrap();
    let cluster_ca = TestCa::new("docker", pki.path()).unwrap();
    let other_ca = TestCa::new("other", pki.path()).unwrap();
    let operator = cluster_ca.issue("bosh", &[]).unwrap();
    let fingerprint = |ca: &TestCa| mc::identity::fingerprint(&ca.cert_pem).unwrap();
    let etcd = start_etcd();
    let ep = etcd.endpoint();
    block_on(async {
        let mut client = etcd_client(&ep).await;
        for (name, zone, ca) in [("node-0", 0, &cluster_ca), ("node-1", 1, &other_ca)] {
            let (record, status) = node(name, zone, &fingerprint(ca));
            for (prefix, value) in [("nodes", record), ("status", status)] {
                client
                    .put(format!("/molten/{prefix}/{name}"), value.to_string(), None)
                    .await
                    .unwrap();
            }
        }
    });
    let ca = cluster_ca.cert.to_str().unwrap();

    // Without the cluster's CA the reader cannot tell: both records are taken.
    let out = run_mc_root(&["status", "--etcd", &ep, "--no-probe", "--json"], LIMIT);
    let views: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(views[1]["health"], "ok", "{views:#}");

    let out = run_mc_root(
        &[
            "status",
            "--etcd",
            &ep,
            "--no-probe",
            "--json",
            "--docker-ca",
            ca,
        ],
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(PARTIAL), "{}", text(&out.stderr));
    let views: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(views[0]["name"], "node-0");
    assert_eq!(views[0]["health"], "ok", "{views:#}");
    assert_eq!(views[1]["name"], "node-1");
    assert_eq!(views[1]["health"], "invalid", "{views:#}");
    let error = views[1]["error"].as_str().unwrap();
    assert!(
        error.starts_with("invalid: ca_fingerprint")
            && error.contains(&fingerprint(&other_ca))
            && error.contains(&format!(
                "not the cluster's Docker CA ({})",
                fingerprint(&cluster_ca)
            )),
        "{error}"
    );

    let out = run_mc_root(
        &[
            "bosh",
            "cpi-config",
            "--etcd",
            &ep,
            "--client-cert",
            operator.cert.to_str().unwrap(),
            "--client-key",
            operator.key.to_str().unwrap(),
            "--docker-ca",
            ca,
        ],
        LIMIT,
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(PARTIAL), "{stderr}");
    assert!(
        stderr.contains("node node-1 left out: invalid record: ca_fingerprint"),
        "{stderr}"
    );
    let cpi = text(&out.stdout);
    assert!(cpi.contains("tcp://10.0.0.10:2376"), "{cpi}");
    assert!(!cpi.contains("tcp://10.0.0.11:2376"), "{cpi}");
}
