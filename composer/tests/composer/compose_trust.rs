//! `molten compose --authority`: every node gets its trust section and its own token (0600,
//! in its own config only), etcd and flanneld get mutual TLS on both OS variants, Vagrant's
//! pointer fetches over HTTPS pinned to the authority CA; the real Ignition applies the files;
//! composing twice from one authority gives the same bytes.

use crate::common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use molten::platform::Platform;

struct Composed {
    work: tempfile::TempDir,
    authority: PathBuf,
    out: PathBuf,
}

fn compose(platform: Platform, profile: &str, extra: &[&str]) -> Composed {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let profile = common::profile_for(platform, &common::repo_root().join(profile), work.path());
    compose_in(work, platform, &profile, &out, extra)
}

fn compose_in(
    work: tempfile::TempDir,
    platform: Platform,
    profile: &Path,
    out: &Path,
    extra: &[&str],
) -> Composed {
    let agent = common::fake_agent(work.path());
    let authority = work.path().join("dev.authority");
    let out = out.to_path_buf();
    let mut args: Vec<String> = vec![
        "compose".into(),
        "--platform".into(),
        platform.name().into(),
        "--profile".into(),
        profile.display().to_string(),
        "--out".into(),
        out.display().to_string(),
        "--authority".into(),
        authority.display().to_string(),
    ];
    args.extend(common::agent_args(platform, &agent));
    args.extend(extra.iter().map(|s| s.to_string()));
    let init = common::molten(&[
        "authority",
        "init",
        "--profile",
        &profile.display().to_string(),
        "--dir",
        &authority.display().to_string(),
    ]);
    assert!(init.status.success(), "{init:?}");
    let result = common::molten(&args);
    assert!(result.status.success(), "{result:?}");
    Composed {
        work,
        authority,
        out,
    }
}

fn tokens(authority: &Path, nodes: &[&str]) -> BTreeMap<String, String> {
    // The tokens are derived from the authority's key; recompute them as compose did.
    let authority = molten::authority::Authority::open(authority).unwrap();
    let key = authority.token_key().unwrap();
    let state = authority.read_state().unwrap();
    nodes
        .iter()
        .map(|n| {
            let generation = state.nodes[*n].generation;
            (n.to_string(), key.token(&state.cluster, n, generation))
        })
        .collect()
}

#[test]
fn each_token_is_only_in_its_own_node_config_and_nothing_private_is_anywhere() {
    let c = compose(Platform::Vagrant, "profiles/dev.yaml", &[]);
    let names = ["core-01", "core-02", "core-03"];
    let tokens = tokens(&c.authority, &names);
    let tree = common::read_tree(&c.out);
    for (rel, bytes) in &tree {
        let text = String::from_utf8_lossy(bytes);
        assert!(!text.contains("PRIVATE KEY"), "{rel}");
        for (node, token) in &tokens {
            let own = rel == &format!("ignition/{node}.ign");
            assert_eq!(
                text.contains(token.as_str()),
                own,
                "{node}'s token in {rel}"
            );
        }
    }
    // The pointer (VirtualBox: at most 1 KiB) fetches over HTTPS and pins the authority CA.
    let pointer: serde_json::Value = serde_json::from_slice(&tree["pointer/core-01.ign"]).unwrap();
    assert!(tree["pointer/core-01.ign"].len() <= 1024);
    assert_eq!(
        pointer["ignition"]["config"]["replace"]["source"],
        "https://192.168.56.1:8443/ignition/core-01.ign"
    );
    let cas = &pointer["ignition"]["security"]["tls"]["certificateAuthorities"];
    assert_eq!(cas.as_array().unwrap().len(), 1);
    for (rel, _) in tree.iter().filter(|(rel, _)| rel.ends_with(".ign")) {
        molten_testkit::ignition::validate(&c.out.join(rel))
            .unwrap_or_else(|e| panic!("{rel}: {e:#}"));
    }
    // Flatcar: etcd's TLS settings as ETCD_* for the container, flanneld's client certificate.
    let full = String::from_utf8_lossy(&tree["ignition/core-01.ign"]).into_owned();
    for needle in [
        "ETCD_CLIENT_CERT_AUTH=true",
        "ETCD_PEER_CLIENT_CERT_AUTH=true",
        "ETCD_CERT_FILE=/etc/ssl/certs/identity/etcd-server.pem",
        "ETCD_SSL_DIR=/var/lib/molten",
        "https://192.168.56.11:2380",
        "--etcd-certfile=/var/lib/molten/identity/etcd-client.pem",
        "mc-enroll.service",
        "mc-renew.timer",
    ] {
        assert!(
            full.contains(needle) || decoded_units(&full).contains(needle),
            "{needle}"
        );
    }
    drop(c.work);
}

/// The units' text of a config (units are never compressed, but JSON-escaped).
fn decoded_units(config: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(config).unwrap();
    let mut text = String::new();
    for unit in value["systemd"]["units"].as_array().unwrap() {
        text.push_str(unit["contents"].as_str().unwrap_or(""));
        for dropin in unit["dropins"].as_array().into_iter().flatten() {
            text.push_str(dropin["contents"].as_str().unwrap_or(""));
        }
    }
    text
}

#[test]
fn the_real_ignition_writes_the_token_0600_and_the_trust_section() {
    // The full config fetches the agent from the bundle: serve it on 127.0.0.1 (which the
    // profile cannot name), composing in-process as `molten compose --authority` does.
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let server = common::serve::FileServer::start(&out, 0);
    let agent = common::fake_agent(work.path());
    let options = molten::profile::LoadOptions {
        platform: Some(Platform::Vagrant.rules()),
        agent_override: Some(&agent),
        strict: false,
    };
    let profile = common::repo_root().join("profiles/dev.yaml");
    let mut cluster = molten::profile::load_file(&profile, &options)
        .unwrap_or_else(|d| panic!("{d}"))
        .cluster;
    cluster.vagrant.host_ip = "127.0.0.1".parse().unwrap();
    cluster.vagrant.serve_port = server.port();
    let now = time::OffsetDateTime::now_utc();
    let authority_dir = work.path().join("dev.authority");
    let input = molten::trust::TrustInput {
        authority: molten::authority::Authority::init(&authority_dir, "dev", now).unwrap(),
        authority_url: "https://127.0.0.1:8443".into(),
        token_ttl: time::Duration::hours(1),
        now,
    };
    let composed = molten::compose::compose(&cluster, Platform::Vagrant, &input)
        .unwrap_or_else(|e| panic!("{e}"));
    molten::output::write_bundle(&composed.bundle, &out).unwrap();
    let c = Composed {
        work,
        authority: authority_dir,
        out,
    };
    let root = c.work.path().join("root");
    molten_testkit::ignition::prepare_root(&root).unwrap();
    molten_testkit::ignition::apply_files(&c.out.join("ignition/core-02.ign"), &root)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let token_file = root.join("etc/molten/enroll-token");
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let token = std::fs::read_to_string(&token_file).unwrap();
    assert_eq!(token.trim(), tokens(&c.authority, &["core-02"])["core-02"]);
    let config = molten_contract::NodeConfig::load(&root.join("etc/molten/node.json")).unwrap();
    let trust = config.trust;
    assert_eq!(trust.authority_url, "https://127.0.0.1:8443");
    assert_eq!(trust.roster, ["core-01", "core-02", "core-03"]);
    assert_eq!(trust.identity.etcd_client_cn, "core-02");
    let etcd_ca = std::fs::read_to_string(c.authority.join("etcd-ca.pem")).unwrap();
    assert_eq!(trust.etcd_ca, etcd_ca);
    // node.json is the CAs' only carrier: `mc enroll` installs them (no second copy to drift).
    assert!(!root.join("etc/molten/tls/etcd-ca.pem").exists());
}

#[test]
fn ipxe_members_wait_for_enrollment_and_composing_again_is_identical() {
    let profile = "profiles/rack.yaml";
    let c = compose(Platform::Ipxe, profile, &[]);
    let tree = common::read_tree(&c.out);
    let (_, first) = tree
        .iter()
        .find(|(rel, _)| rel.starts_with("ignition/") && !rel.contains("install"))
        .unwrap();
    let units = decoded_units(&String::from_utf8_lossy(first));
    assert!(units.contains("ETCD_SSL_DIR=/var/lib/molten"), "{units}");
    assert!(units.contains("After=mc-enroll.service"), "{units}");
    // Same authority, same profile: the same bytes (tokens are derived, not drawn).
    let again = c.work.path().join("again");
    let agent = common::fake_agent(c.work.path());
    let mut args: Vec<String> = vec![
        "compose".into(),
        "--platform".into(),
        "ipxe".into(),
        "--profile".into(),
        common::repo_root().join(profile).display().to_string(),
        "--out".into(),
        again.display().to_string(),
        "--authority".into(),
        c.authority.display().to_string(),
    ];
    args.extend(common::agent_args(Platform::Ipxe, &agent));
    let result = common::molten(&args);
    assert!(result.status.success(), "{result:?}");
    assert_eq!(common::read_tree(&again), tree);
}

#[test]
fn debian_etcd_and_flanneld_get_tls_flags() {
    let c = compose(Platform::Vagrant, "tests/lab/lab.yaml", &[]);
    let tree = common::read_tree(&c.out);
    let member = tree
        .iter()
        .find(|(rel, _)| rel.starts_with("ignition/") && !rel.contains("install"))
        .map(|(_, bytes)| decoded_units(&String::from_utf8_lossy(bytes)))
        .unwrap();
    for needle in [
        "[Unit]\nAfter=mc-enroll.service\nWants=mc-enroll.service\nStartLimitIntervalSec=0\n\
         [Service]\nUser=root\n",
        "--listen-client-urls=https://",
        "--client-cert-auth=true",
        "--peer-client-cert-auth=true",
        "--trusted-ca-file=/etc/molten/tls/etcd-ca.pem",
        "--cert-file=/var/lib/molten/identity/etcd-server.pem",
        "--peer-key-file=/var/lib/molten/identity/etcd-peer.key",
        "--etcd-endpoints=https://",
        "--etcd-cafile=/etc/molten/tls/etcd-ca.pem",
        "--etcd-keyfile=/var/lib/molten/identity/etcd-client.key",
        "UnsetEnvironment=",
        "ETCD_CERT_FILE",
    ] {
        assert!(member.contains(needle), "{needle}: {member}");
    }
    assert!(!member.contains("http://"), "{member}");
}

#[test]
fn an_authority_inside_the_output_or_a_packet_without_url_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let agent = common::fake_agent(work.path());
    let out = work.path().join("out");
    let mut args: Vec<String> = vec![
        "compose".into(),
        "--platform".into(),
        "vagrant".into(),
        "--out".into(),
        out.display().to_string(),
        "--authority".into(),
        out.join("dev.authority").display().to_string(),
    ];
    args.extend(common::agent_args(Platform::Vagrant, &agent));
    let result = common::molten(&args);
    assert_eq!(result.status.code(), Some(2), "{result:?}");
    assert!(String::from_utf8_lossy(&result.stderr).contains("must stay outside every bundle"));
    assert!(!out.exists());

    let profile = common::profile_for(
        Platform::Packet,
        &common::repo_root().join("profiles/packet.yaml"),
        work.path(),
    );
    let authority = work.path().join("p.authority");
    let init = common::molten(&[
        "authority",
        "init",
        "--profile",
        &profile.display().to_string(),
        "--dir",
        &authority.display().to_string(),
    ]);
    assert!(init.status.success(), "{init:?}");
    let packet = common::molten(&[
        "compose",
        "--platform",
        "packet",
        "--profile",
        &profile.display().to_string(),
        "--out",
        &work.path().join("p").display().to_string(),
        "--authority",
        &authority.display().to_string(),
    ]);
    assert_eq!(packet.status.code(), Some(2), "{packet:?}");
    assert!(String::from_utf8_lossy(&packet.stderr).contains("--authority-url"));

    // With the bastion's URL: addresses known only at boot become bounded boot-address names.
    let out = work.path().join("p");
    let packet = common::molten(&[
        "compose",
        "--platform",
        "packet",
        "--profile",
        &profile.display().to_string(),
        "--out",
        &out.display().to_string(),
        "--authority",
        &authority.display().to_string(),
        "--authority-url",
        "https://bastion.example:8443",
    ]);
    assert!(packet.status.success(), "{packet:?}");
    let state = std::fs::read_to_string(authority.join("enrollment.json")).unwrap();
    assert!(state.contains("\"boot-address\""), "{state}");
    assert!(state.contains("\"within\": \"10.0.0.0/8\""), "{state}");
    assert!(
        state.contains("\"bastion.example\""),
        "serve's certificate name: {state}"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The whole Vagrant path with the real parts: the pointer config, applied by the real Ignition
/// engine, fetches the full config from `molten serve --authority`'s HTTPS listener, trusting
/// only the authority CA it pins, and writes the node's files (the agent comes from the
/// plain-HTTP listener, checked by its sha512).
#[test]
fn the_real_ignition_follows_the_pinned_pointer_over_https() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let (http_port, https_port) = (free_port(), free_port());
    let agent = common::fake_agent(work.path());
    let options = molten::profile::LoadOptions {
        platform: Some(Platform::Vagrant.rules()),
        agent_override: Some(&agent),
        strict: false,
    };
    let profile = common::repo_root().join("profiles/dev.yaml");
    let mut cluster = molten::profile::load_file(&profile, &options)
        .unwrap_or_else(|d| panic!("{d}"))
        .cluster;
    cluster.vagrant.host_ip = "127.0.0.1".parse().unwrap();
    cluster.vagrant.serve_port = http_port;
    let now = time::OffsetDateTime::now_utc();
    let authority_dir = work.path().join("dev.authority");
    let input = molten::trust::TrustInput {
        authority: molten::authority::Authority::init(&authority_dir, "dev", now).unwrap(),
        authority_url: format!("https://127.0.0.1:{https_port}"),
        token_ttl: time::Duration::hours(1),
        now,
    };
    let composed = molten::compose::compose(&cluster, Platform::Vagrant, &input)
        .unwrap_or_else(|e| panic!("{e}"));
    molten::output::write_bundle(&composed.bundle, &out).unwrap();

    let mut serve = std::process::Command::new(env!("CARGO_BIN_EXE_molten"))
        .arg("serve")
        .arg(&out)
        .args(["--listen", &format!("127.0.0.1:{http_port}")])
        .arg("--authority")
        .arg(&authority_dir)
        .args(["--tls-listen", &format!("127.0.0.1:{https_port}")])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", https_port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "serve did not listen");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    // Every node's pointer, applied by the real engine, fetches its own full config.
    let mut results = Vec::new();
    for node in ["core-01", "core-02", "core-03"] {
        let root = work.path().join(format!("root-{node}"));
        let pointer = out.join(format!("pointer/{node}.ign"));
        let (tx, rx) = std::sync::mpsc::channel();
        let (pointer2, root2) = (pointer.clone(), root.clone());
        std::thread::spawn(move || {
            let _ = tx.send(molten_testkit::ignition::apply_files_online(
                &pointer2, &root2,
            ));
        });
        // Ignition retries a fetch it cannot verify forever: bound it.
        results.push((
            node,
            root,
            rx.recv_timeout(std::time::Duration::from_secs(120)),
        ));
    }
    let pid = rustix::process::Pid::from_raw(serve.id() as i32).expect("a child has a pid");
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    serve.wait().unwrap();
    for (node, root, applied) in results {
        let log = applied
            .expect("Ignition finished within 2 minutes")
            .unwrap_or_else(|e| panic!("{node}: {e:#}"));
        assert!(
            log.contains(&format!(
                "https://127.0.0.1:{https_port}/ignition/{node}.ign"
            )),
            "{log}"
        );
        let token = root.join("etc/molten/enroll-token");
        let mode = std::fs::metadata(&token).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            std::fs::read_to_string(root.join("etc/hostname")).unwrap(),
            format!("{node}\n")
        );
        assert!(root.join("opt/bin/mc").is_file());
    }
}

/// `--authority` with no directory (what `scripts/compose` passes), or no flag at all: every
/// compose has an authority. The one beside the profile is created on the first compose (0700,
/// with a message) and reused by the next ones, which give the same bytes.
#[test]
fn a_bare_authority_flag_creates_the_authority_beside_the_profile_once() {
    let work = tempfile::tempdir().unwrap();
    // A copy, so the authority is created in the temp dir and not in the repository.
    let profile = work.path().join("dev.yaml");
    std::fs::copy(common::repo_root().join("profiles/dev.yaml"), &profile).unwrap();
    let agent = common::fake_agent(work.path());
    let compose_to = |out: &Path, flag: bool| {
        let mut args: Vec<String> = vec![
            "compose".into(),
            "--platform".into(),
            "vagrant".into(),
            "--profile".into(),
            profile.display().to_string(),
            "--out".into(),
            out.display().to_string(),
        ];
        args.extend(common::agent_args(Platform::Vagrant, &agent));
        if flag {
            args.push("--authority".into());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        common::molten(&args)
    };
    let first = compose_to(&work.path().join("a"), true);
    assert!(first.status.success(), "{first:?}");
    assert!(String::from_utf8_lossy(&first.stderr).contains("created the authority"));
    let dir = profile.parent().unwrap().join("dev.authority");
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{}", dir.display());

    let second = compose_to(&work.path().join("b"), true);
    assert!(second.status.success(), "{second:?}");
    assert!(!String::from_utf8_lossy(&second.stderr).contains("created the authority"));
    let third = compose_to(&work.path().join("c"), false);
    assert!(third.status.success(), "{third:?}");
    assert!(!String::from_utf8_lossy(&third.stderr).contains("created the authority"));
    let node =
        |out: &str| std::fs::read(work.path().join(out).join("ignition/core-01.ign")).unwrap();
    assert_eq!(node("a"), node("b"), "one authority, the same bytes");
    assert_eq!(node("a"), node("c"), "no flag: the same authority");

    // An authority others may read is refused, and nothing is written.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).unwrap();
    let refused = compose_to(&work.path().join("d"), false);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains(&dir.display().to_string()),
        "{refused:?}"
    );
    assert!(!work.path().join("d").exists());
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    // A directory given that is not there is not created: it must be `molten authority init`'s.
    let missing = work.path().join("typo.authority");
    let mut args = vec![
        "compose",
        "--platform",
        "vagrant",
        "--profile",
        profile.to_str().unwrap(),
        "--out",
    ];
    let out_e = work.path().join("e");
    args.push(out_e.to_str().unwrap());
    let agent_args = common::agent_args(Platform::Vagrant, &agent);
    args.extend(agent_args.iter().map(String::as_str));
    args.extend(["--authority", missing.to_str().unwrap()]);
    let refused = common::molten(&args);
    assert!(!refused.status.success());
    assert!(!missing.exists() && !out_e.exists());
}
