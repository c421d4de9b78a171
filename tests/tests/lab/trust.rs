//! Issue 10's proofs in the lab: what an attacker on the rack network (the hub namespace)
//! cannot do, and certificates that renew under a running cluster.

use std::time::Duration;

use molten_testkit::lab::checks::{mc_status, MC};
use molten_testkit::lab::cluster::{Lab, CERT_VALIDITY};
use molten_testkit::lab::{intruder, probes};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::cluster::{check, options, DOCKER_TLS_PORT};

/// Issue 10's proofs, from the hub namespace: an attacker on the rack network.
pub fn trust_holds_against_the_rack_network(lab: &Lab, names: &[String]) {
    // No certificate: nothing.
    let anonymous = check(lab, "anonymous access", intruder::anonymous_access(lab));
    assert_eq!(
        (anonymous.etcd_reads, anonymous.docker_calls),
        (0, 0),
        "{anonymous:?}"
    );
    assert_eq!(anonymous.attempts, 4 * names.len());

    // A node's stolen etcd certificate writes only what is that node's own.
    let (a, b) = (lab.node(&names[0]), lab.node(&names[1]));
    check(lab, "cross writes", intruder::cross_node_writes(lab, a, b));

    // B's token, read from its served Ignition, replayed after B enrolled: refused, loudly.
    let token = check(
        lab,
        "B's token",
        intruder::token_in_served_config(lab, &b.name),
    );
    let (status, kind) = check(lab, "replay", intruder::enroll_with(lab, &b.name, &token));
    assert_eq!((status, kind.as_str()), (409, "token-reused"));
    let log = lab.serve_log();
    assert!(
        log.contains(&format!(
            "ALERT: REUSED ENROLLMENT TOKEN for node {:?}",
            b.name
        )),
        "the replay was not logged:\n{log}"
    );

    // No key material in etcd: not the nodes' keys, not a PEM key, not a token.
    let scanned = check(lab, "scan", intruder::scan_for_secrets(lab, &[token]));
    assert!(scanned >= names.len() * 2, "only {scanned} keys in etcd");

    // A token past its expiry: the operator re-composed (B gets a new token, valid 1 s).
    let again = lab.dir.join("bundle-again");
    check(
        lab,
        "recompose",
        lab.recompose(&options().profile, &again, &["--token-ttl", "1s"]),
    );
    let fresh = check(lab, "new token", intruder::token_in_bundle(&again, &b.name));
    std::thread::sleep(Duration::from_millis(2100));
    let (status, kind) = check(lab, "expired", intruder::enroll_with(lab, &b.name, &fresh));
    assert_eq!((status, kind.as_str()), (403, "token-expired"));
    assert!(
        lab.serve_log().contains(&format!("node={:?} ", b.name))
            && lab.serve_log().contains("reason=token-expired"),
        "the expired token was not logged"
    );

    // One CA's certificate is no good at the other's service.
    check(
        lab,
        "etcd refuses a Docker certificate",
        intruder::etcd_refuses(lab, &lab.operator.docker_client()),
    );
    for node in &lab.nodes {
        check(
            lab,
            "dockerd refuses etcd certificates",
            intruder::docker_refuses(lab, node, lab.operator.etcd_root())
                .and_then(|()| intruder::docker_refuses(lab, node, probes::etcd_client_of(a))),
        );
    }
}

/// Short-lived certificates renew (forced, then on the timer's own schedule), dockerd
/// serves the new one, and `mc status` shows the new expiry; then back to long ones.
pub fn certificates_renew(lab: &mut Lab, name: &str) {
    let expiry_of = |lab: &Lab| -> OffsetDateTime {
        let views = check(lab, "mc status", mc_status(lab.node(name)));
        let view = views.iter().find(|v| v["name"] == name).expect("own view");
        let text = view["cert_expiry"].as_str().expect("cert_expiry");
        OffsetDateTime::parse(text, &Rfc3339).expect("RFC 3339")
    };
    let print = |lab: &Lab| {
        check(lab, "prints", probes::cert_fingerprints(lab.node(name)))["docker-server.pem"].clone()
    };
    let long = expiry_of(lab);
    let first = print(lab);
    let restarted = lab.restart_serve("90s");
    check(lab, "serve, 90 s certificates", restarted);

    // Forced: new certificates at once, dockerd restarted onto its new one.
    check(
        lab,
        "mc renew --force",
        lab.node(name).exec(&[MC, "renew", "--force"]).map(|_| ()),
    );
    let forced = print(lab);
    assert_ne!(forced, first, "mc renew --force kept the old certificate");
    check(
        lab,
        "docker serves it",
        probes::docker_tls(lab, lab.node(name), DOCKER_TLS_PORT),
    );

    // Due (less than a third of the validity left): the timer's service renews by itself.
    check(
        lab,
        "mc-renew.service",
        lab.node(name)
            .exec(&["systemctl", "start", "mc-renew.service"])
            .map(|_| ()),
    );
    let timed = print(lab);
    assert_ne!(
        timed, forced,
        "mc-renew.service did not renew a due certificate"
    );
    check(
        lab,
        "docker serves it",
        probes::docker_tls(lab, lab.node(name), DOCKER_TLS_PORT),
    );
    check(
        lab,
        "converge",
        lab.node(name).exec(&[MC, "converge"]).map(|_| ()),
    );
    let short = expiry_of(lab);
    let now = OffsetDateTime::now_utc();
    assert!(
        short < long && short <= now + time::Duration::seconds(95),
        "mc status shows {short}, the renewed certificates expire about {}",
        now + time::Duration::seconds(90)
    );
    assert_eq!(
        intruder::enrollments(&lab.serve_log(), name),
        1,
        "renewal enrolled again"
    );

    // Back to long-lived certificates, as an operator would after the test.
    let restarted = lab.restart_serve(CERT_VALIDITY);
    check(lab, "serve", restarted);
    check(
        lab,
        "mc renew",
        lab.node(name).exec(&[MC, "renew"]).map(|_| ()),
    );
    check(
        lab,
        "converge",
        lab.node(name).exec(&[MC, "converge"]).map(|_| ()),
    );
    assert!(expiry_of(lab) > now + time::Duration::hours(1));
    check(
        lab,
        "etcd after renewal",
        probes::etcd_cluster(
            lab,
            &lab.spec
                .names
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        ),
    );
}

/// The operator revokes a node: the members delete its etcd user at their next converge, so its
/// still-valid certificate reads nothing, and the authority refuses to renew it.
pub fn revocation(lab: &Lab, member: &str, revoked: &str) {
    let out = std::process::Command::new(&lab.binaries.molten)
        .args(["authority", "revoke", "--node", revoked, "--reason", "lab"])
        .arg("--dir")
        .arg(&lab.authority)
        .output()
        .expect("molten authority revoke");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stolen = probes::etcd_client_of(lab.node(revoked));
    let endpoints = lab.etcd_endpoints();
    check(
        lab,
        "control: the revoked node still reads before the members converge",
        lab.etcdctl_as(
            Some(&stolen),
            &endpoints,
            &["get", "/molten/nodes/", "--prefix"],
        )
        .map(|_| ()),
    );
    let converged = check(
        lab,
        "member converge",
        lab.node(member).exec(&[MC, "converge"]),
    );
    assert!(
        converged.contains(&format!("deleted revoked users {revoked}")),
        "{converged}"
    );
    let refused = lab.etcdctl_as(
        Some(&stolen),
        &endpoints,
        &["get", "/molten/nodes/", "--prefix"],
    );
    assert!(
        format!("{:#}", refused.as_ref().unwrap_err()).contains("permission denied"),
        "{revoked}'s certificate still reads etcd: {refused:?}"
    );
    let renew = check(
        lab,
        "mc renew on the revoked node",
        lab.node(revoked).exec_output(&[MC, "renew", "--force"]),
    );
    let said = String::from_utf8_lossy(&renew.stderr);
    assert!(
        !renew.status.success() && said.contains("node-revoked"),
        "{revoked} renewed after revocation: {said}"
    );
}

/// With access control on, a member's `mc etcd members` and `mc etcd snapshot` work (as its
/// etcd-admin identity), while a node's own etcd-client identity may not take a snapshot.
pub fn etcd_operations_under_access_control(lab: &Lab, member: &str) {
    let node = lab.node(member);
    let members = check(lab, "mc etcd members", node.exec(&[MC, "etcd", "members"]));
    assert_eq!(
        members.lines().filter(|l| l.contains("https://")).count(),
        lab.nodes.len(),
        "{members}"
    );
    let saved = check(
        lab,
        "mc etcd snapshot",
        node.exec(&[MC, "etcd", "snapshot"]),
    );
    assert!(saved.starts_with("saved "), "{saved}");
    let file = lab.dir.join("node-snapshot.db");
    let as_node = lab.etcdctl_as(
        Some(&probes::etcd_client_of(node)),
        &format!("https://{}:2379", node.ip),
        &["snapshot", "save", &file.display().to_string()],
    );
    assert!(
        as_node.is_err(),
        "a node's etcd-client identity took a snapshot of the whole keyspace"
    );
}
