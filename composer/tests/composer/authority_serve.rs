//! The authority's HTTPS endpoints against the real listener (rustls, HTTP/1, the authority's
//! files with their lock): enrollment, replay, expiry, unknown nodes, names only from the
//! profile, renewal and roster only with a valid etcd client certificate.

use crate::authority_support;

use ::time::Duration;
use authority_support::*;
use molten_contract::trust::CertificateKind::{self, *};
use x509_parser::prelude::*;

const ALL: [CertificateKind; 5] = [EtcdPeer, EtcdServer, EtcdClient, EtcdAdmin, DockerServer];

fn der(pem: &str) -> Vec<u8> {
    x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .unwrap()
        .1
        .contents
}

/// CN and SANs (as text) of `pem`, after checking it was signed by `ca_pem`.
fn inspect(pem: &str, ca_pem: &str) -> (String, Vec<String>) {
    let leaf_der = der(pem);
    let ca_der = der(ca_pem);
    let (_, leaf) = X509Certificate::from_der(&leaf_der).unwrap();
    let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
    leaf.verify_signature(Some(ca.public_key()))
        .expect("signed by the expected CA");
    let cn = leaf
        .subject()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    let sans = leaf
        .subject_alternative_name()
        .unwrap()
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .map(|name| match name {
                    GeneralName::IPAddress(bytes) if bytes.len() == 4 => {
                        std::net::Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).to_string()
                    }
                    other => format!("{other}"),
                })
                .collect()
        })
        .unwrap_or_default();
    (cn, sans)
}

#[tokio::test(flavor = "multi_thread")]
async fn enrollment_signs_only_the_profile_names_once() {
    let fixture = Fixture::new(&[node("n0", "10.0.0.10", true)]);
    let server = Server::start(&fixture.authority, Duration::days(90)).await;
    let ca = fixture.read("authority-ca.pem");
    let etcd_ca = fixture.read("etcd-ca.pem");
    let docker_ca = fixture.read("docker-ca.pem");
    let token = &fixture.tokens["n0"];

    let (body, _keys) = body("n0", Some(token), &ALL);
    let answer = request(server.addr, &ca, None, "POST", "/v1/enroll", &body)
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    let json = answer.json();
    let certs = &json["certificates"];
    let cert = |kind: CertificateKind| certs[kind.name()].as_str().unwrap().to_string();
    // Every CSR asked for CN=root, evil.example and 10.66.66.66: none of it is signed.
    assert_eq!(
        inspect(&cert(EtcdPeer), &etcd_ca),
        ("n0".to_string(), vec!["10.0.0.10".to_string()])
    );
    let (cn, sans) = inspect(&cert(EtcdServer), &etcd_ca);
    assert_eq!(cn, "n0");
    assert_eq!(sans, ["10.0.0.10", "127.0.0.1", "DNSName(localhost)"]);
    assert_eq!(inspect(&cert(EtcdClient), &etcd_ca), ("n0".into(), vec![]));
    assert_eq!(inspect(&cert(EtcdAdmin), &etcd_ca), ("root".into(), vec![]));
    assert_eq!(
        inspect(&cert(DockerServer), &docker_ca),
        ("n0".into(), vec!["10.0.0.10".to_string()])
    );
    let not_after = ::time::OffsetDateTime::parse(
        json["not_after"].as_str().unwrap(),
        &::time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let expected = ::time::OffsetDateTime::now_utc() + Duration::days(90);
    assert!(
        (not_after - expected).abs() < Duration::minutes(1),
        "{not_after}"
    );

    // The token is spent, durably: the record says when and from where.
    let state: serde_json::Value = serde_json::from_str(&fixture.read("enrollment.json")).unwrap();
    let used_from = state["nodes"]["n0"]["used_from"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(used_from.starts_with("127.0.0.1:"), "{used_from}");
    assert_eq!(server.logs.containing("enrolled node=n0").len(), 1);

    // A replay (a stolen copy of the node's Ignition) is refused and reported loudly.
    let (body, _keys) = body_for_replay(token);
    let replay = request(server.addr, &ca, None, "POST", "/v1/enroll", &body)
        .await
        .unwrap();
    assert_eq!(replay.status, 409, "{replay:?}");
    assert_eq!(replay.json()["kind"], "token-reused");
    let alerts = server.logs.containing("ALERT: REUSED ENROLLMENT TOKEN");
    assert_eq!(alerts.len(), 1, "{:?}", server.logs.lines());
    assert!(
        alerts[0].contains(&format!("from {used_from}")),
        "{}",
        alerts[0]
    );
    assert!(alerts[0].contains("node \"n0\""), "{}", alerts[0]);
    server.stop().await;
}

fn body_for_replay(token: &str) -> (String, Vec<rcgen::KeyPair>) {
    body("n0", Some(token), &[EtcdClient])
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_unknown_wrong_and_malformed_requests_are_refused_and_logged() {
    let past = ::time::OffsetDateTime::now_utc() - Duration::hours(2);
    let fixture = Fixture::registered_at(
        &[
            node("n0", "10.0.0.10", true),
            node("w1", "10.0.0.20", false),
        ],
        past,
        Duration::hours(1),
    );
    let server = Server::start(&fixture.authority, Duration::days(90)).await;
    let ca = fixture.read("authority-ca.pem");
    let post = |body: String| {
        let ca = ca.clone();
        let addr = server.addr;
        async move {
            request(addr, &ca, None, "POST", "/v1/enroll", &body)
                .await
                .unwrap()
        }
    };

    let expired = post(body("n0", Some(&fixture.tokens["n0"]), &[EtcdClient]).0).await;
    assert_eq!(expired.status, 403, "{expired:?}");
    assert_eq!(expired.json()["kind"], "token-expired");
    assert_eq!(server.logs.containing("reason=token-expired").len(), 1);

    let unknown = post(body("n9", Some("x"), &[EtcdClient]).0).await;
    assert_eq!(unknown.status, 404, "{unknown:?}");
    assert_eq!(unknown.json()["kind"], "unknown-node");
    assert_eq!(server.logs.containing("node=\"n9\"").len(), 1);

    let wrong = post(body("n0", Some(&fixture.tokens["w1"]), &[EtcdClient]).0).await;
    assert_eq!(wrong.json()["kind"], "token-invalid");

    let garbage = post("{not json".to_string()).await;
    assert_eq!(garbage.status, 400, "{garbage:?}");
    assert_eq!(garbage.json()["kind"], "bad-request");
    let huge = post(format!("{{\"node\":\"{}\"}}", "a".repeat(100_000))).await;
    assert_eq!(huge.status, 400, "{huge:?}");
    let refusals = server.logs.containing("refused enroll");
    assert_eq!(refusals.len(), 5, "{refusals:#?}");
    // Nothing was spent by any of them.
    let state: serde_json::Value = serde_json::from_str(&fixture.read("enrollment.json")).unwrap();
    assert!(state["nodes"]["n0"]["used_at"].is_null());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_gets_no_member_certificate_and_keeps_its_token() {
    let fixture = Fixture::new(&[node("w1", "10.0.0.20", false)]);
    let server = Server::start(&fixture.authority, Duration::days(90)).await;
    let ca = fixture.read("authority-ca.pem");
    let token = &fixture.tokens["w1"];
    let (asks_peer, _) = body("w1", Some(token), &[EtcdClient, EtcdPeer]);
    let refused = request(server.addr, &ca, None, "POST", "/v1/enroll", &asks_peer)
        .await
        .unwrap();
    assert_eq!(refused.status, 400, "{refused:?}");
    assert!(refused.json()["message"]
        .as_str()
        .unwrap()
        .contains("not an etcd member"));
    let (right, _) = body("w1", Some(token), &[EtcdClient, DockerServer]);
    let ok = request(server.addr, &ca, None, "POST", "/v1/enroll", &right)
        .await
        .unwrap();
    assert_eq!(
        ok.status, 200,
        "a refused request does not burn the token: {ok:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn renewal_and_roster_need_a_valid_etcd_client_certificate() {
    let fixture = Fixture::new(&[node("n0", "10.0.0.10", true), node("n1", "10.0.0.11", true)]);
    let server = Server::start(&fixture.authority, Duration::seconds(4)).await;
    let ca = fixture.read("authority-ca.pem");
    let etcd_ca = fixture.read("etcd-ca.pem");

    let (enroll, keys) = body("n0", Some(&fixture.tokens["n0"]), &[EtcdClient]);
    let answer = request(server.addr, &ca, None, "POST", "/v1/enroll", &enroll)
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    let n0 = ClientCert {
        cert: answer.json()["certificates"]["etcd-client"]
            .as_str()
            .unwrap()
            .to_string(),
        key: keys[0].serialize_pem(),
    };

    let (renew, _) = body("n0", None, &[EtcdClient, EtcdServer]);
    let anonymous = request(server.addr, &ca, None, "POST", "/v1/renew", &renew)
        .await
        .unwrap();
    assert_eq!(anonymous.status, 401, "{anonymous:?}");
    assert_eq!(anonymous.json()["kind"], "not-authenticated");

    let renewed = request(server.addr, &ca, Some(&n0), "POST", "/v1/renew", &renew)
        .await
        .unwrap();
    assert_eq!(renewed.status, 200, "{renewed:?}");
    let json = renewed.json();
    let (cn, sans) = inspect(
        json["certificates"]["etcd-server"].as_str().unwrap(),
        &etcd_ca,
    );
    assert_eq!((cn.as_str(), sans[0].as_str()), ("n0", "10.0.0.10"));

    // n0's certificate cannot renew n1, who has not even enrolled.
    let (as_n1, _) = body("n1", None, &[EtcdClient]);
    let other = request(server.addr, &ca, Some(&n0), "POST", "/v1/renew", &as_n1)
        .await
        .unwrap();
    assert_eq!(other.status, 401, "{other:?}");
    assert!(other.json()["message"]
        .as_str()
        .unwrap()
        .contains("names \"n0\""));

    let roster = request(server.addr, &ca, Some(&n0), "GET", "/v1/roster", "")
        .await
        .unwrap();
    assert_eq!(roster.status, 200, "{roster:?}");
    assert_eq!(roster.json()["nodes"], serde_json::json!(["n0"]));
    let no_cert = request(server.addr, &ca, None, "GET", "/v1/roster", "")
        .await
        .unwrap();
    assert_eq!(no_cert.status, 401);

    // A Docker client certificate (another CA) is refused during the handshake.
    let docker = fixture.authority.ca(molten::authority::DOCKER_CA).unwrap();
    let (cert, key) = docker
        .issue_with_new_key(
            "n0",
            &[],
            false,
            ::time::OffsetDateTime::now_utc(),
            Duration::days(1),
        )
        .unwrap();
    let foreign = ClientCert { cert, key };
    let refused = request(
        server.addr,
        &ca,
        Some(&foreign),
        "POST",
        "/v1/renew",
        &renew,
    )
    .await;
    assert!(refused.is_err(), "a Docker certificate passed: {refused:?}");

    // Once expired (validity 4 s here), n0's certificate is refused too.
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let stale = request(server.addr, &ca, Some(&n0), "POST", "/v1/renew", &renew).await;
    assert!(stale.is_err(), "an expired certificate passed: {stale:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_certificate_is_pinned_to_the_authority_ca() {
    let fixture = Fixture::new(&[node("n0", "10.0.0.10", true)]);
    let server = Server::start(&fixture.authority, Duration::days(1)).await;
    // Another authority's CA does not verify this server.
    let other = Fixture::new(&[]);
    let result = request(
        server.addr,
        &other.read("authority-ca.pem"),
        None,
        "GET",
        "/v1/roster",
        "",
    )
    .await;
    assert!(result.is_err(), "{result:?}");
    server.stop().await;
}

/// `molten authority revoke` (the real binary, on the authority a running serve uses): the
/// node's certificate no longer renews, its token is dead, the roster names it revoked; compose
/// refuses it until `readmit`.
#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_node_gets_nothing_and_the_roster_says_so() {
    let fixture = Fixture::new(&[node("n0", "10.0.0.10", true), node("n1", "10.0.0.11", true)]);
    let server = Server::start(&fixture.authority, Duration::days(1)).await;
    let ca = fixture.read("authority-ca.pem");
    let mut certs = std::collections::BTreeMap::new();
    for name in ["n0", "n1"] {
        let (enroll, keys) = body(name, Some(&fixture.tokens[name]), &[EtcdClient]);
        let answer = request(server.addr, &ca, None, "POST", "/v1/enroll", &enroll)
            .await
            .unwrap();
        assert_eq!(answer.status, 200, "{answer:?}");
        let cert = answer.json()["certificates"]["etcd-client"]
            .as_str()
            .unwrap()
            .to_string();
        certs.insert(
            name,
            ClientCert {
                cert,
                key: keys[0].serialize_pem(),
            },
        );
    }
    let revoke = std::process::Command::new(env!("CARGO_BIN_EXE_molten"))
        .args([
            "authority",
            "revoke",
            "--node",
            "n1",
            "--reason",
            "stolen laptop",
        ])
        .arg("--dir")
        .arg(fixture.dir())
        .output()
        .unwrap();
    assert!(
        revoke.status.success(),
        "{}",
        String::from_utf8_lossy(&revoke.stderr)
    );

    let (renew, _) = body("n1", None, &[EtcdClient]);
    let refused = request(
        server.addr,
        &ca,
        Some(&certs["n1"]),
        "POST",
        "/v1/renew",
        &renew,
    )
    .await
    .unwrap();
    assert_eq!(refused.status, 403, "{refused:?}");
    assert_eq!(refused.json()["kind"], "node-revoked");
    assert!(refused.json()["message"]
        .as_str()
        .unwrap()
        .contains("stolen laptop"));
    let roster = request(
        server.addr,
        &ca,
        Some(&certs["n0"]),
        "GET",
        "/v1/roster",
        "",
    )
    .await
    .unwrap();
    assert_eq!(roster.json()["nodes"], serde_json::json!(["n0"]));
    assert_eq!(roster.json()["revoked"], serde_json::json!(["n1"]));
    assert_eq!(server.logs.containing("reason=node-revoked").len(), 1);
    // Revoking twice, or a node the authority never knew, is an error with a clear message.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_molten"))
        .args(["authority", "revoke", "--node", "n1"])
        .arg("--dir")
        .arg(fixture.dir())
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("no node \"n1\" to revoke"));
    server.stop().await;
}

/// One host holding idle connections cannot take the HTTPS listener: past the per-client cap
/// its next connection is closed at once, and a slot it frees is usable again.
#[tokio::test(flavor = "multi_thread")]
async fn one_client_cannot_take_every_https_slot() {
    use tokio::io::AsyncReadExt;
    let fixture = Fixture::new(&[node("n0", "10.0.0.10", true)]);
    let limits = molten::serve::Limits {
        max_connections_per_client: 2,
        ..molten::serve::Limits::default()
    };
    let server = Server::start_with(&fixture.authority, Duration::days(1), limits).await;
    let ca = fixture.read("authority-ca.pem");
    let mut idle = Vec::new();
    for _ in 0..2 {
        idle.push(tokio::net::TcpStream::connect(server.addr).await.unwrap());
    }
    // Admitted connections wait for a handshake; give the accept loop time to admit both.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut third = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), third.read(&mut buf))
        .await
        .expect("the connection over the cap was not closed");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    // A real request over the cap fails the same way…
    let refused = request(server.addr, &ca, None, "GET", "/v1/roster", "").await;
    assert!(refused.is_err(), "{refused:?}");
    // …and succeeds (an answer, here a refusal for lack of a certificate) once a slot is free.
    drop(idle.pop());
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let answered = request(server.addr, &ca, None, "GET", "/v1/roster", "")
        .await
        .unwrap();
    assert_eq!(answered.status, 401, "{answered:?}");
    server.stop().await;
}

/// `molten serve --authority` as the operator starts it: authority only (a packet bastion),
/// logs on stderr, stops on SIGTERM.
#[tokio::test(flavor = "multi_thread")]
async fn molten_serve_answers_enrollments_and_stops_on_sigterm() {
    use std::io::BufRead;
    let fixture = Fixture::new(&[node("n0", "10.0.0.10", true)]);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_molten"))
        .args(["serve", "--authority"])
        .arg(fixture.dir())
        .args(["--tls-listen", "127.0.0.1:0", "--san", "authority.example"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("serve announces itself");
    assert!(first.contains("authority.example"), "{first}");
    let addr: std::net::SocketAddr = first
        .split("https://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no address in {first:?}"));

    let ca = fixture.read("authority-ca.pem");
    let (enroll, _) = body("n0", Some(&fixture.tokens["n0"]), &[EtcdClient]);
    let answer = request(addr, &ca, None, "POST", "/v1/enroll", &enroll)
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    let replay = request(addr, &ca, None, "POST", "/v1/enroll", &enroll)
        .await
        .unwrap();
    assert_eq!(replay.status, 409, "{replay:?}");

    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("a child has a pid");
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let lines: Vec<String> = rx.try_iter().collect();
    assert!(
        lines.iter().any(|l| l.contains("enrolled node=n0")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("ALERT: REUSED ENROLLMENT TOKEN")),
        "{lines:#?}"
    );
}

#[test]
fn an_authority_inside_the_bundle_is_refused() {
    let fixture = Fixture::new(&[]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_molten"))
        .arg("serve")
        .arg(fixture.work.path())
        .arg("--authority")
        .arg(fixture.dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("keep the authority outside every bundle"),
        "{stderr}"
    );
}
