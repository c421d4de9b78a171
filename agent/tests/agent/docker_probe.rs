//! `mc status`'s Docker probe against real daemons (issue 11): each node record in a real etcd
//! points at one of them, and each outcome is told apart — a dockerd with a certificate from the
//! cluster's Docker CA (ok, with and without /_ping), a closed port (refused), a listener that
//! accepts and never answers (timed out), a dockerd whose certificate comes from another CA and
//! one whose certificate does not name the node's address (wrong certificate), and a dockerd
//! that refuses the operator's client certificate (ping failed).

use std::net::{Ipv4Addr, TcpListener};
use std::time::{Duration, Instant};

use mc::systemd::{tls_listen_args, TlsPaths};
use molten_testkit::docker::Dockerd;
use molten_testkit::pki::{Issued, TestCa};
use serde_json::{json, Value};

use crate::core::support::{block_on, etcd_client, run_mc_root, start_etcd, text};

const LIMIT: Duration = Duration::from_secs(60);

/// A dockerd on 127.0.0.1 presenting `server`, trusting `client_ca` for clients.
fn dockerd(server: &Issued, client_ca: &TestCa) -> (Dockerd, u16) {
    let port = molten_testkit::free_port().unwrap();
    let tls = TlsPaths {
        ca: client_ca.cert.clone(),
        server_cert: server.cert.clone(),
        server_key: server.key.clone(),
    };
    let docker = Dockerd::builder()
        .args(tls_listen_args(Ipv4Addr::LOCALHOST, port, &tls))
        .start()
        .unwrap();
    (docker, port)
}

/// A valid record (naming the Docker CA of fingerprint `ca`) and a fresh status of a node at
/// 127.0.0.1:`port` in zone `zone`.
async fn publish(client: &mut etcd_client::Client, ca: &str, name: &str, zone: u32, port: u16) {
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let record = json!({
        "version": 1, "name": name, "cluster": "dev", "zone": zone, "roles": ["worker"],
        "private_ip": "127.0.0.1",
        "subnet": format!("10.213.{}.0/24", zone + 1),
        "gateway": format!("10.213.{}.1", zone + 1),
        "docker_endpoint": format!("tcp://127.0.0.1:{port}"),
        "ca_fingerprint": ca, "server_cert_expiry": "2099-01-01T00:00:00Z",
        "mc_version": "0.1.0"
    });
    let status = json!({
        "node": name, "steps": [], "ok": true, "started": now, "finished": now,
        "duration_ms": 1, "mc_version": "0.1.0"
    });
    for (prefix, value) in [("nodes", record), ("status", status)] {
        client
            .put(format!("/molten/{prefix}/{name}"), value.to_string(), None)
            .await
            .unwrap();
    }
}

fn probe_of<'a>(views: &'a Value, name: &str) -> &'a Value {
    let view = views
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {views:#}"));
    &view["probe"]
}

#[test]
fn each_probe_outcome_against_real_daemons() {
    let pki = tempfile::tempdir().unwrap();
    let docker_ca = TestCa::new("docker", pki.path()).unwrap();
    let other_ca = TestCa::new("other", pki.path()).unwrap();
    let operator = docker_ca.issue("bosh", &[]).unwrap();

    let (_good, good_port) = dockerd(
        &docker_ca.issue("good", &["127.0.0.1"]).unwrap(),
        &docker_ca,
    );
    let (_foreign, foreign_port) = dockerd(
        &other_ca.issue("foreign", &["127.0.0.1"]).unwrap(),
        &docker_ca,
    );
    let (_elsewhere, elsewhere_port) = dockerd(
        &docker_ca.issue("elsewhere", &["10.9.9.9"]).unwrap(),
        &docker_ca,
    );
    // Presents the right certificate but trusts another CA's clients: our ping is refused.
    let (_picky, picky_port) = dockerd(
        &docker_ca.issue("picky", &["127.0.0.1"]).unwrap(),
        &other_ca,
    );
    let closed_port = molten_testkit::free_port().unwrap();
    // Accepts every connection and never says a word.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming() {
            held.push(stream);
        }
    });

    let etcd = start_etcd();
    let ep = etcd.endpoint();
    let fingerprint = mc::identity::fingerprint(&docker_ca.cert_pem).unwrap();
    block_on(async {
        let mut client = etcd_client(&ep).await;
        for (name, zone, port) in [
            ("node-ok", 0, good_port),
            ("node-foreign", 1, foreign_port),
            ("node-elsewhere", 2, elsewhere_port),
            ("node-refused", 3, closed_port),
            ("node-silent", 4, silent_port),
            ("node-picky", 5, picky_port),
        ] {
            publish(&mut client, &fingerprint, name, zone, port).await;
        }
    });
    let ca = docker_ca.cert.to_str().unwrap();
    let status = |extra: &[&str]| {
        let mut args = vec!["status", "--etcd", &ep, "--json", "--docker-ca", ca];
        args.extend(["--probe-timeout", "3"]);
        args.extend(extra);
        let started = Instant::now();
        let out = run_mc_root(&args, LIMIT);
        let views: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}{}", text(&out.stdout), text(&out.stderr)));
        (out, views, started.elapsed())
    };

    let (out, views, took) = status(&[
        "--client-cert",
        operator.cert.to_str().unwrap(),
        "--client-key",
        operator.key.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "unreachable nodes fail the status"
    );
    // Concurrent and bounded: the silent node costs one timeout, not one per node.
    assert!(took < Duration::from_secs(20), "{took:?}");
    let ok = probe_of(&views, "node-ok");
    assert_eq!(ok["result"], "ok", "{views:#}");
    assert_eq!(ok["detail"], "ok (TLS handshake and /_ping)");
    assert_eq!(probe_of(&views, "node-refused")["result"], "refused");
    assert_eq!(probe_of(&views, "node-silent")["result"], "timed-out");
    let foreign = probe_of(&views, "node-foreign");
    assert_eq!(foreign["result"], "wrong-certificate", "{views:#}");
    assert_eq!(
        foreign["detail"],
        "wrong certificate: not issued by the cluster's Docker CA"
    );
    let elsewhere = probe_of(&views, "node-elsewhere");
    assert_eq!(elsewhere["result"], "wrong-certificate", "{views:#}");
    let detail = elsewhere["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("wrong certificate: not issued for the node's address 127.0.0.1"),
        "{detail}"
    );
    let picky = probe_of(&views, "node-picky");
    assert_eq!(picky["result"], "ping-failed", "{views:#}");
    for view in views.as_array().unwrap() {
        let expected = if view["name"] == "node-ok" {
            "ok"
        } else {
            "unreachable"
        };
        assert_eq!(view["health"], expected, "{view:#}");
    }

    // Without a client certificate: the handshake alone, and it says so.
    let (_, views, _) = status(&[]);
    for name in ["node-ok", "node-picky"] {
        assert_eq!(
            probe_of(&views, name)["detail"],
            "ok (TLS handshake only: no client certificate for /_ping)"
        );
    }
    // A client certificate dockerd does not trust (another CA): the handshake passes, the ping
    // does not.
    let stranger = other_ca.issue("stranger", &[]).unwrap();
    let out = run_mc_root(
        &[
            "status",
            "--etcd",
            &ep,
            "--json",
            "--docker-ca",
            ca,
            "--client-cert",
            stranger.cert.to_str().unwrap(),
            "--client-key",
            stranger.key.to_str().unwrap(),
        ],
        LIMIT,
    );
    let err = text(&out.stderr);
    assert!(
        err.contains("--client-cert") && err.contains("not signed by the given CA"),
        "mc refuses to present a certificate of another CA: {err}"
    );

    // The table: a PROBE column, the reason in DETAIL.
    let out = run_mc_root(
        &[
            "status",
            "--etcd",
            &ep,
            "--docker-ca",
            ca,
            "--probe-timeout",
            "3",
        ],
        LIMIT,
    );
    let table = text(&out.stdout);
    let row = |name: &str| {
        table
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in {table}"))
            .to_string()
    };
    assert!(row("node-ok ").ends_with(" ok (tls only)"), "{table}");
    assert!(row("node-refused ").contains("Docker refused"), "{table}");
    assert!(row("node-silent ").contains("Docker timed out"), "{table}");
    assert!(
        row("node-foreign ").contains("Docker wrong certificate: not issued by"),
        "{table}"
    );
}
