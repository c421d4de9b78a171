//! Bad input and broken parts, through the built binary: clear errors, bounded time, non-zero
//! exit, status published when etcd is there.

use std::time::Duration;

use mc::converge::State;
use molten_testkit::free_port;

use super::support::*;

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn a_missing_node_config_is_named_and_nothing_is_written() {
    let root = tempfile::tempdir().unwrap();
    let root_arg = root.path().to_str().unwrap();
    let out = run_mc(&["converge", "--root", root_arg], LIMIT);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("etc/molten/node.json") && err.contains("cannot read"),
        "{err}"
    );
    assert!(
        std::fs::read_dir(root.path()).unwrap().next().is_none(),
        "no partial state"
    );
}

#[test]
fn a_malformed_node_config_names_the_problem() {
    let etcd = start_etcd();
    let node = numbered_node(0, &etcd.endpoint());
    let broken = node
        .config
        .to_json()
        .replace("\"zone\": 0", "\"zone\": \"zero\"");
    std::fs::write(node.config_path(), broken).unwrap();
    let before = snapshot(node.root.path());
    let root_arg = node.root.path().to_str().unwrap();
    let out = run_mc(&["converge", "--root", root_arg], LIMIT);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("not a valid node config") && err.contains("line"),
        "{err}"
    );
    assert_eq!(snapshot(node.root.path()), before);
    assert_eq!(
        trust()
            .etcdctl_root(&etcd.endpoint(), &["get", "/", "--prefix", "--keys-only"])
            .unwrap()
            .trim(),
        ""
    );
}

#[test]
fn a_node_config_from_before_the_authority_is_refused_saying_to_recompose() {
    let etcd = start_etcd();
    let node = numbered_node(0, &etcd.endpoint());
    let mut old: serde_json::Value = serde_json::from_str(&node.config.to_json()).unwrap();
    old["version"] = 1.into();
    old.as_object_mut().unwrap().remove("trust");
    old["etcd"]["endpoints"] = serde_json::json!([etcd.endpoint().replace("https", "http")]);
    std::fs::write(node.config_path(), old.to_string()).unwrap();
    let before = snapshot(node.root.path());
    let root_arg = node.root.path().to_str().unwrap();
    let out = run_mc(&["converge", "--root", root_arg], LIMIT);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    for needle in [
        "node-config version 1",
        "predates the cluster authority",
        "Recompose it with an authority",
    ] {
        assert!(err.contains(needle), "{needle:?} not in {err}");
    }
    assert_eq!(snapshot(node.root.path()), before, "nothing written");
}

#[test]
fn a_plain_http_etcd_endpoint_is_a_configuration_error() {
    let etcd = start_etcd();
    let mut node = numbered_node(0, &etcd.endpoint());
    let plain = etcd.endpoint().replace("https://", "http://");
    node.config.etcd.endpoints = vec![plain.clone()];
    node.write_config();
    let root_arg = node.root.path().to_str().unwrap();
    let started = std::time::Instant::now();
    let out = run_mc(
        &["converge", "--root", root_arg, "--etcd-timeout", "30"],
        LIMIT,
    );
    assert!(!out.status.success());
    // Refused at once, not retried until the budget is spent.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("etcd endpoint \"{plain}\" is not https://")),
        "{stdout}"
    );
    // The same from the operator's side.
    let mut args = vec!["status", "--etcd", plain.as_str()];
    let tls = root_tls_args();
    args.extend(tls.iter().map(String::as_str));
    let out = run_mc(&args, LIMIT);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("is not https://"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn etcd_down_fails_in_bounded_time_naming_the_endpoint() {
    let dead = format!("https://127.0.0.1:{}", free_port().unwrap());
    let node = numbered_node(0, &dead);
    let root_arg = node.root.path().to_str().unwrap();
    let out = run_mc(
        &[
            "converge",
            "--root",
            root_arg,
            "--stage",
            "boot",
            "--etcd-timeout",
            "3",
        ],
        LIMIT,
    );
    assert!(!out.status.success());
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        stdout.contains("etcd") && stdout.contains(&dead),
        "{stdout}"
    );
    assert!(stdout.contains("converge: failed"), "{stdout}");
    // The status could not be published: it goes to stderr (journald) instead.
    assert!(stderr.contains("status not published"), "{stderr}");
    let marker = mc::commands::STATUS_FOLLOWS;
    let json_start = stderr.find(marker).expect("status JSON on stderr") + marker.len();
    let status: mc::records::Status = serde_json::from_str(&stderr[json_start..]).unwrap();
    let etcd_step = status.steps.iter().find(|s| s.name == "etcd").unwrap();
    assert_eq!(etcd_step.state, State::Failed);
    assert!(etcd_step.error.as_deref().unwrap().contains("unreachable"));
    for skipped in ["flannel", "record"] {
        let s = status.steps.iter().find(|s| s.name == skipped).unwrap();
        assert_eq!(s.state, State::Skipped, "{s:?}");
    }
}

#[test]
fn docker_down_fails_the_step_publishes_status_and_exits_non_zero() {
    let etcd = start_etcd();
    let node = numbered_node(0, &etcd.endpoint());
    let root_arg = node.root.path().to_str().unwrap();
    let socket = node.path("/nowhere/docker.sock");
    let host = format!("unix://{}", socket.display());
    let out = run_mc(
        &["converge", "--root", root_arg, "--docker-host", &host],
        LIMIT,
    );
    assert!(!out.status.success(), "{}", text(&out.stdout));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("docker-network") && stdout.contains(&host),
        "{stdout}"
    );

    let status_out = run_mc_root(
        &["status", "--etcd", &etcd.endpoint(), "--json", "--no-probe"],
        LIMIT,
    );
    assert!(
        !status_out.status.success(),
        "a failed node makes mc status fail"
    );
    let views: serde_json::Value = serde_json::from_slice(&status_out.stdout)
        .unwrap_or_else(|err| panic!("{err}: stderr: {}", text(&status_out.stderr)));
    assert_eq!(views[0]["name"], "node-0");
    assert_eq!(views[0]["health"], "failed");
    assert_eq!(views[0]["failed_step"], "docker-network");
    assert!(views[0]["error"].as_str().unwrap().contains(&host));
    let out = run_mc_root(&["status", "--etcd", &etcd.endpoint(), "--no-probe"], LIMIT);
    let table = text(&out.stdout);
    assert!(
        table.contains("node-0") && table.contains("failed  -      docker-network:"),
        "{table}\nstderr ({}): {}",
        out.status,
        text(&out.stderr)
    );
}

#[test]
fn version_and_help() {
    let out = run_mc(&["version"], LIMIT);
    assert!(out.status.success());
    // `mc 0.1.0 (commit 0123456789ab)`: the version and the git commit built from.
    let version = text(&out.stdout);
    let commit = version
        .trim()
        .strip_prefix(&format!("mc {} (commit ", env!("CARGO_PKG_VERSION")))
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("mc version printed {version:?}"));
    assert!(
        commit == "unknown"
            || (commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{version:?}"
    );
    let help = run_mc(&["--help"], LIMIT);
    assert!(text(&help.stdout).contains("Examples:"));
}
