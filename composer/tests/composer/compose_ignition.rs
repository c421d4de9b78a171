//! The composed Ignition against the real Ignition: every config passes `ignition-validate`,
//! and the engine's `fetch`/`files` stages apply each dev node's config to a directory standing
//! for the node's root, fetching the agent (on vagrant the full config behind the pointer comes
//! over HTTPS from `molten serve --authority`: `compose_trust.rs`)
//! from a file server on 127.0.0.1 and checking their hashes. ipxe's RAM-run nodes: the engine
//! creates etcd's directory on the data filesystem (the `files` stage needs no disk; creating
//! and reusing the filesystem is the `disks` stage, which needs systemd as PID 1 to wait for the
//! device and is not run here), and `systemd-analyze verify` loads the mount units and the `mc`
//! units from the applied root. Plus: nothing secret anywhere.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use molten::platform::sample::FAKE_AGENT;
use molten::platform::Platform;
use molten::profile::{load_file, LoadOptions};
use molten_contract::NodeConfig;

/// Composes every shipped profile for every platform it supports into `work`.
fn compose_all(work: &Path) -> Vec<std::path::PathBuf> {
    let agent = common::fake_agent(work);
    let mut outs = Vec::new();
    for (name, profile) in common::shipped_profiles() {
        for platform in Platform::ALL {
            let input = common::profile_for(platform, &profile, work);
            if !common::supports(&input, platform, &agent) {
                continue;
            }
            let out = work.join(format!("{name}-{platform}"));
            common::compose_to(&input, platform, &agent, &out);
            outs.push(out);
        }
    }
    outs
}

#[test]
fn every_config_passes_ignition_validate() {
    let work = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for out in compose_all(work.path()) {
        for (rel, _) in common::read_tree(&out) {
            if rel.ends_with(".ign") {
                molten_testkit::ignition::validate(&out.join(&rel))
                    .unwrap_or_else(|e| panic!("{}: {e:#}", out.join(&rel).display()));
                checked += 1;
            }
        }
    }
    assert!(checked >= 9, "only {checked} configs found");
}

#[test]
fn no_output_holds_a_secret() {
    let work = tempfile::tempdir().unwrap();
    let markers = [
        "PRIVATE KEY",
        "passwordHash",
        "password_hash",
        "$6$",
        "$y$",
        "token=",
        "auth_token",
        "METAL_AUTH_TOKEN=",
    ];
    let mut scanned = 0;
    for out in compose_all(work.path()) {
        for (rel, bytes) in common::read_tree(&out) {
            let text = String::from_utf8_lossy(&bytes);
            // PEM is only ever a certificate (the authority's public CAs), never a key; inline
            // files are percent-encoded data URLs.
            assert_eq!(
                text.matches("-----BEGIN").count(),
                text.matches("-----BEGIN CERTIFICATE-----").count()
                    + text.matches("-----BEGIN%20CERTIFICATE-----").count(),
                "{}/{rel} holds PEM that is not a certificate",
                out.display()
            );
            for marker in markers {
                // The packet README tells users to export the token themselves (no value).
                if marker == "METAL_AUTH_TOKEN=" && text.contains("METAL_AUTH_TOKEN=...") {
                    continue;
                }
                assert!(
                    !text.contains(marker),
                    "{}/{rel} contains {marker:?}",
                    out.display()
                );
            }
            scanned += 1;
        }
    }
    assert!(scanned > 20, "only {scanned} files scanned");
}

/// The dev profile composed for `platform`, its bundle served on 127.0.0.1 as the profile's
/// host address would serve it.
struct Served {
    _work: tempfile::TempDir,
    out: std::path::PathBuf,
    cluster: molten::model::Cluster,
    server: common::serve::FileServer,
}

fn serve_dev(platform: Platform) -> Served {
    let work = tempfile::tempdir().unwrap();
    let agent = common::fake_agent(work.path());
    let out = work.path().join("out");
    let server = common::serve::FileServer::start(&out, 0);
    let profile = common::repo_root().join("profiles/dev.yaml");
    let options = LoadOptions {
        platform: Some(platform.rules()),
        agent_override: Some(&agent),
        strict: false,
    };
    let mut cluster = load_file(&profile, &options)
        .unwrap_or_else(|d| panic!("{d}"))
        .cluster;
    cluster.vagrant.host_ip = "127.0.0.1".parse().unwrap();
    cluster.vagrant.serve_port = server.port();
    if let Some(ipxe) = cluster.ipxe.as_mut() {
        ipxe.base_url = format!("http://127.0.0.1:{}", server.port());
    }
    let composed = molten::platform::sample::compose(&cluster, platform).unwrap();
    molten::output::write_bundle(&composed.bundle, &out).unwrap();
    Served {
        _work: work,
        out,
        cluster,
        server,
    }
}

fn read(root: &Path, path: &str) -> String {
    let full = root.join(path.trim_start_matches('/'));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

fn mode(root: &Path, path: &str) -> u32 {
    std::fs::metadata(root.join(path.trim_start_matches('/')))
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

/// What the engine must have written for `node` of the dev cluster.
fn check_applied_node(
    root: &Path,
    served: &Served,
    node: &molten::model::Node,
    platform: Platform,
) {
    let layout = served.cluster.os.layout();
    assert_eq!(read(root, "/etc/hostname"), format!("{}\n", node.name));
    assert_eq!(mode(root, "/etc/hostname"), 0o644);

    let config = NodeConfig::load(&root.join("etc/molten/node.json")).unwrap();
    let target = platform.target();
    let delivery = target.delivery(&served.cluster).unwrap();
    let plan = target.plan_node(&served.cluster, node, &delivery).unwrap();
    // Everything but the trust section follows from the profile and the plan; the trust
    // section names this node and the authority's CAs.
    assert_eq!(
        config,
        molten::nodeconfig::node_config(&served.cluster, node, &plan, &config.trust)
    );
    assert_eq!(config.trust.identity.etcd_client_cn, node.name);
    assert!(config.trust.etcd_ca.contains("BEGIN CERTIFICATE"));
    assert_eq!(mode(root, "/etc/molten/node.json"), 0o644);

    let agent = root.join(layout.agent_binary.trim_start_matches('/'));
    assert_eq!(std::fs::read(&agent).unwrap(), FAKE_AGENT);
    assert_eq!(mode(root, layout.agent_binary), 0o755);

    let units = root.join("etc/systemd/system");
    let dropin = |unit: &str| read(&units, &format!("{unit}.d/20-molten.conf"));
    let etcd = dropin(layout.etcd_unit);
    assert!(etcd.contains(&format!("ETCD_NAME={}", node.name)), "{etcd}");
    assert!(etcd.contains("ETCD_INITIAL_CLUSTER_STATE=new"), "{etcd}");
    let flannel = dropin(layout.flannel_unit);
    assert!(
        flannel.contains("--etcd-prefix=/coreos.com/network"),
        "{flannel}"
    );
    let mc = read(&units, layout.agent_unit);
    assert!(
        mc.contains("ExecStart=/opt/bin/mc converge --stage boot"),
        "{mc}"
    );
    // A failed boot converge is retried until it succeeds, never given up.
    assert!(
        mc.contains("\nStartLimitIntervalSec=0\n[Service]\n"),
        "{mc}"
    );
    assert!(mc.contains("\nRestart=on-failure\nRestartSec=10\n"), "{mc}");
    // No certificate before the clock is synchronised.
    assert!(after_time_sync(&mc), "{mc}");
    let mc_network = read(&units, layout.agent_network_unit);
    assert!(mc_network.contains("ExecStart=/opt/bin/mc converge --stage network"));

    let presets = read(root, "/etc/systemd/system-preset/20-ignition.preset");
    for unit in [
        layout.etcd_unit,
        layout.flannel_unit,
        layout.agent_unit,
        layout.agent_network_unit,
    ] {
        assert!(
            presets.lines().any(|l| l == format!("enable {unit}")),
            "{unit} not enabled in:\n{presets}"
        );
    }

    let keys = find_authorized_keys(&root.join("home/core/.ssh"));
    for key in &served.cluster.ssh_authorized_keys {
        assert!(keys.contains(key.as_str()), "key missing for core: {keys}");
    }
    check_data_disk(root, served, node, platform, &presets);
}

/// dev's ipxe nodes run from RAM with `platforms.ipxe.data_disk: /dev/vdb`: the config keeps
/// the filesystem across boots, the engine created etcd's directory on it, the mount units are
/// enabled and every unit that uses the state requires them. Vagrant's nodes get none of it.
fn check_data_disk(
    root: &Path,
    served: &Served,
    node: &molten::model::Node,
    platform: Platform,
    presets: &str,
) {
    let layout = served.cluster.os.layout();
    let config_path = served.out.join(format!("ignition/{}.ign", node.name));
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    let units = root.join("etc/systemd/system");
    if platform != Platform::Ipxe {
        assert!(config["storage"].get("filesystems").is_none(), "{config}");
        assert!(!units.join("var-lib-molten.mount").exists());
        return;
    }
    assert_eq!(
        config["storage"]["filesystems"],
        serde_json::json!([{
            "device": "/dev/vdb", "format": "ext4", "label": "molten-data",
            "path": "/var/lib/molten", "wipeFilesystem": false
        }])
    );
    assert!(root.join("var/lib/molten/etcd").is_dir());
    assert_eq!(mode(root, "/var/lib/molten/etcd"), 0o700);
    let state = read(&units, "var-lib-molten.mount");
    assert!(
        state.contains("What=/dev/disk/by-label/molten-data\nWhere=/var/lib/molten\nType=ext4\n"),
        "{state}"
    );
    assert!(state.contains("WantedBy=local-fs.target\n"), "{state}");
    let etcd_mount = read(&units, "var-lib-etcd.mount");
    assert!(
        etcd_mount.starts_with(
            "[Unit]\nRequiresMountsFor=/var/lib/molten\n[Mount]\n\
             What=/var/lib/molten/etcd\nWhere=/var/lib/etcd\nOptions=bind\n"
        ),
        "{etcd_mount}"
    );
    for unit in ["var-lib-molten.mount", "var-lib-etcd.mount"] {
        assert!(
            presets.lines().any(|l| l == format!("enable {unit}")),
            "{unit} not enabled in:\n{presets}"
        );
    }
    let etcd = read(&units, &format!("{}.d/20-molten.conf", layout.etcd_unit));
    assert!(
        etcd.starts_with("[Unit]\nRequiresMountsFor=/var/lib/molten /var/lib/etcd\n"),
        "{etcd}"
    );
    for unit in [
        "mc-enroll.service",
        "mc-renew.service",
        layout.agent_unit,
        layout.agent_network_unit,
    ] {
        let text = read(&units, unit);
        assert!(
            text.starts_with("[Unit]\nRequiresMountsFor=/var/lib/molten\n"),
            "{unit}: {text}"
        );
    }
    check_mounts_with_systemd(root, layout.agent_unit, layout.agent_network_unit);
}

/// The units as systemd itself loads them from the applied root (`systemd-analyze verify
/// --root`): no complaint about any line, every `mc` unit requires and follows the state mount,
/// the state mount waits for the labelled disk before `local-fs.target`, and etcd's bind mount
/// requires the state mount. (etcd's own unit is Flatcar's, absent here: its drop-in's line is
/// checked as text above.)
fn check_mounts_with_systemd(root: &Path, agent_unit: &str, network_unit: &str) {
    const ANALYZE: &str = "/usr/bin/systemd-analyze";
    molten_testkit::packages::ensure_binary(ANALYZE, "systemd").unwrap();
    let units = [
        "var-lib-molten.mount",
        "var-lib-etcd.mount",
        "mc-enroll.service",
        "mc-renew.service",
        agent_unit,
        network_unit,
    ];
    let out = std::process::Command::new(ANALYZE)
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg("--man=no")
        .args(units)
        .env("SYSTEMD_LOG_LEVEL", "debug")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // systemd reports a bad line as `<file>:<line>: <what>`.
    let complaints: Vec<&str> = text
        .lines()
        .filter(|l| {
            units.iter().any(|u| {
                l.split_once(&format!("{u}:"))
                    .is_some_and(|(_, rest)| rest.starts_with(|c: char| c.is_ascii_digit()))
            })
        })
        .collect();
    assert!(complaints.is_empty(), "systemd complained: {complaints:#?}");
    let dump = |unit: &str| -> Vec<String> {
        let dump: Vec<String> = text
            .lines()
            .skip_while(|l| l.trim() != format!("-> Unit {unit}:"))
            .skip(1)
            .take_while(|l| !l.trim_start().starts_with("-> Unit "))
            .map(|l| l.trim().to_string())
            .collect();
        assert!(!dump.is_empty(), "systemd did not load {unit}:\n{text}");
        dump
    };
    // `line` with any origin: `RequiresMountsFor=` gives `origin-file`, a bind mount's source
    // adds the same dependency as `origin-path`.
    let has = |dump: &[String], line: &str| {
        dump.iter()
            .any(|l| l == line || l.starts_with(&format!("{line} (")))
    };
    for unit in &units[2..] {
        let d = dump(unit);
        for line in [
            "Requires: var-lib-molten.mount",
            "After: var-lib-molten.mount",
        ] {
            assert!(has(&d, line), "{unit} lacks {line:?}: {d:#?}");
        }
    }
    let state = dump("var-lib-molten.mount");
    for line in [
        "Requires: dev-disk-by\\x2dlabel-molten\\x2ddata.device",
        "After: dev-disk-by\\x2dlabel-molten\\x2ddata.device",
        "Before: local-fs.target",
    ] {
        assert!(
            has(&state, line),
            "var-lib-molten.mount lacks {line:?}: {state:#?}"
        );
    }
    let etcd = dump("var-lib-etcd.mount");
    for line in [
        "Requires: var-lib-molten.mount",
        "After: var-lib-molten.mount",
    ] {
        assert!(
            has(&etcd, line),
            "var-lib-etcd.mount lacks {line:?}: {etcd:#?}"
        );
    }
}

/// Ignition writes `authorized_keys` or a fragment under `authorized_keys.d/`.
/// The unit's `After=` orders it after `time-sync.target` (ordering only: the target is passive).
fn after_time_sync(unit: &str) -> bool {
    unit.lines()
        .filter_map(|l| l.strip_prefix("After="))
        .any(|after| after.split(' ').any(|u| u == "time-sync.target"))
        && !unit
            .lines()
            .any(|l| l.starts_with("Wants=") && l.contains("time-sync"))
}

fn find_authorized_keys(ssh: &Path) -> String {
    let tree = common::read_tree(ssh);
    assert!(!tree.is_empty(), "no SSH keys under {}", ssh.display());
    tree.values()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect()
}

/// Each node's full config of the vagrant bundle (what its pointer fetches over HTTPS from
/// `molten serve --authority`: `compose_trust.rs` follows the pointers themselves).
#[test]
fn the_engine_applies_each_dev_node_of_the_vagrant_bundle() {
    let served = serve_dev(Platform::Vagrant);
    for node in &served.cluster.nodes {
        let root = tempfile::tempdir().unwrap();
        let full = served.out.join(format!("ignition/{}.ign", node.name));
        molten_testkit::ignition::apply_files(&full, root.path())
            .unwrap_or_else(|e| panic!("{}: {e:#}", node.name));
        check_applied_node(root.path(), &served, node, Platform::Vagrant);
    }
    let requests = served.server.requests.lock().unwrap().clone();
    assert!(requests.iter().any(|r| r == "/assets/mc"), "{requests:?}");
}

/// How `path`'s contents are stored in the Ignition at `config`: `(source scheme, compression)`.
fn inline_form(config: &Path, path: &str) -> (String, Option<String>) {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(config).unwrap()).unwrap();
    let file = json["storage"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == path)
        .unwrap_or_else(|| panic!("{path} not in {}", config.display()));
    let source = file["contents"]["source"].as_str().unwrap();
    let scheme = source[..=source.find(',').unwrap()].to_string();
    let compression = file["contents"]["compression"].as_str().map(str::to_string);
    (scheme, compression)
}

#[test]
fn the_engine_applies_each_dev_node_of_the_ipxe_bundle() {
    let served = serve_dev(Platform::Ipxe);
    for node in &served.cluster.nodes {
        let root = tempfile::tempdir().unwrap();
        let config = served.out.join(format!("ignition/{}.ign", node.name));
        // node.json travels gzipped, so the engine's decompression is what the checks see.
        assert_eq!(
            inline_form(&config, molten_contract::NODE_CONFIG_PATH),
            ("data:;base64,".to_string(), Some("gzip".to_string()))
        );
        molten_testkit::ignition::apply_files(&config, root.path())
            .unwrap_or_else(|e| panic!("{}: {e:#}", node.name));
        check_applied_node(root.path(), &served, node, Platform::Ipxe);
    }
}

#[test]
fn the_engine_refuses_an_agent_that_does_not_match_its_hash() {
    let served = serve_dev(Platform::Ipxe);
    std::fs::write(served.out.join("assets/mc"), b"tampered").unwrap();
    let root = tempfile::tempdir().unwrap();
    let node = &served.cluster.nodes[0];
    let config = served.out.join(format!("ignition/{}.ign", node.name));
    let err = molten_testkit::ignition::apply_files(&config, root.path()).unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("hash") || text.contains("verification"),
        "{text}"
    );
    assert!(!root.path().join("opt/bin/mc").exists());
}

#[test]
fn vagrant_pointers_fit_a_virtualbox_guest_property() {
    let work = tempfile::tempdir().unwrap();
    let mut pointers = 0;
    for out in compose_all(work.path()) {
        for (rel, bytes) in common::read_tree(&out) {
            if rel.starts_with("pointer/") {
                assert!(
                    bytes.len() <= 1024,
                    "{}/{rel} is {} bytes; VirtualBox takes at most 1024",
                    out.display(),
                    bytes.len()
                );
                pointers += 1;
            }
        }
    }
    assert!(pointers >= 3, "only {pointers} pointer configs");
}

/// The Ignition budget per node of the dev profile: 3,000 bytes was the budget before
/// every node carried its trust material; the three CA certificates in node.json, the token and
/// the enrollment and renewal units add about 3.5 KB (measured: 6,431-6,435 bytes), so the budget
/// was 7,000. The CA files themselves are written by `mc enroll` from node.json, not by Ignition.
/// dev's ipxe nodes run from RAM and carry their data disk (filesystem, directory, two mount
/// units, `RequiresMountsFor=` in five units): about 760 bytes more (then 7,175-7,191 bytes),
/// so the budget is 7,400. `mc etcd-join` before etcd on static members added about 150 bytes
/// to every node: measured 2026-12-01 over five composes each (the certificates' gzip varies),
/// ipxe 7,326-7,342 bytes, vagrant 6,570-6,578.
const IGNITION_BUDGET: usize = 7_400;

#[test]
fn every_dev_node_config_fits_its_budget() {
    let work = tempfile::tempdir().unwrap();
    let agent = common::fake_agent(work.path());
    let profile = common::repo_root().join("profiles/dev.yaml");
    let mut checked = 0;
    for platform in [Platform::Vagrant, Platform::Ipxe] {
        let out = work.path().join(platform.to_string());
        common::compose_to(&profile, platform, &agent, &out);
        for (rel, bytes) in common::read_tree(&out.join("ignition")) {
            assert!(
                bytes.len() <= IGNITION_BUDGET,
                "{platform} ignition/{rel} is {} bytes; the budget is {IGNITION_BUDGET}",
                bytes.len()
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 6, "dev has 3 nodes per platform");
}

/// packet's Terraform substitutes the seed's address inside node configs with a string
/// `replace()`, so its inline files stay plain text even where gzip would be smaller.
#[test]
fn packet_node_configs_stay_plain_text() {
    let work = tempfile::tempdir().unwrap();
    let agent = common::fake_agent(work.path());
    let mut checked = 0;
    for (name, profile) in common::shipped_profiles() {
        let input = common::profile_for(Platform::Packet, &profile, work.path());
        if !common::supports(&input, Platform::Packet, &agent) {
            continue;
        }
        let out = work.path().join(format!("{name}-packet"));
        common::compose_to(&input, Platform::Packet, &agent, &out);
        for (rel, _) in common::read_tree(&out) {
            if rel.ends_with(".ign") {
                let form = inline_form(&out.join(&rel), molten_contract::NODE_CONFIG_PATH);
                assert_eq!(form, ("data:,".to_string(), None), "{name}-packet/{rel}");
                checked += 1;
            }
        }
    }
    assert!(checked >= 3, "only {checked} packet configs");
}

/// A Debian cluster (the lab's OS): the engine applies a member's `etcd.service` drop-in and a
/// worker's mask, and enables the flanneld unit molten ships.
#[test]
fn the_engine_applies_debian_members_and_masks_etcd_on_workers() {
    use molten::model::Runtime;
    use molten::platform::sample;
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let server = common::serve::FileServer::start(&out, 0);
    let agent = common::fake_agent(work.path());
    let mut cluster = sample::with_local_agent(sample::cluster(1, 1), agent, FAKE_AGENT);
    cluster.os = molten_contract::OsVariant::Debian;
    cluster.etcd.runtime = Runtime::Binary {
        path: "/usr/bin/etcd".into(),
    };
    cluster.flannel.runtime = Runtime::Binary {
        path: "/usr/local/bin/flanneld".into(),
    };
    cluster.ipxe.as_mut().unwrap().base_url = format!("http://127.0.0.1:{}", server.port());
    let composed = molten::platform::sample::compose(&cluster, Platform::Ipxe).unwrap();
    molten::output::write_bundle(&composed.bundle, &out).unwrap();

    let member = tempfile::tempdir().unwrap();
    molten_testkit::ignition::apply_files(&out.join("ignition/node-0.ign"), member.path()).unwrap();
    let units = member.path().join("etc/systemd/system");
    let dropin = read(&units, "etcd.service.d/20-molten.conf");
    assert!(dropin.contains("ExecStart=\nExecStart=/usr/bin/etcd \\\n  --name=node-0"));
    // Debian's etcd.service sets ETCD_NAME (and /etc/default/etcd may set more); etcd refuses a
    // flag whose variable is also set, so every flag passed must have its variable unset.
    let unset: Vec<&str> = dropin
        .lines()
        .find_map(|l| l.strip_prefix("UnsetEnvironment="))
        .expect("the drop-in unsets etcd's variables")
        .split(' ')
        .collect();
    // etcd's own flags (ExecStartPre's `mc etcd-join` flags are not etcd's).
    let (_, exec) = dropin.split_once("ExecStart=\nExecStart=").unwrap();
    let flags: Vec<String> = exec
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("--"))
        .map(|f| {
            format!(
                "ETCD_{}",
                f.split('=')
                    .next()
                    .unwrap()
                    .replace('-', "_")
                    .to_uppercase()
            )
        })
        .collect();
    assert!(flags.len() >= 8, "{dropin}");
    for var in &flags {
        assert!(
            unset.contains(&var.as_str()),
            "{var} is passed as a flag but not unset: {dropin}"
        );
    }
    // The membership is in variables that mc etcd-join's env file overrides: never unset.
    for var in ["ETCD_INITIAL_CLUSTER", "ETCD_INITIAL_CLUSTER_STATE"] {
        assert!(
            !unset.contains(&var) && !flags.contains(&var.to_string()),
            "{dropin}"
        );
    }
    let environment = dropin.find("\nEnvironment=ETCD_INITIAL_CLUSTER=").unwrap();
    let env_file = dropin
        .find("\nEnvironmentFile=-/run/molten/etcd-join.env\n")
        .unwrap();
    assert!(environment < env_file, "{dropin}");
    assert!(
        dropin.contains("\nExecStartPre=/opt/bin/mc etcd-join --peer-port 2380 --data-dir /var/lib/etcd --bootstrap-after 10\n"),
        "{dropin}"
    );
    assert!(read(&units, "flanneld.service").contains("ExecStart=/usr/local/bin/flanneld "));
    assert!(after_time_sync(&read(&units, "mc.service")));
    let presets = read(
        member.path(),
        "/etc/systemd/system-preset/20-ignition.preset",
    );
    assert!(
        presets.lines().any(|l| l == "enable etcd.service"),
        "{presets}"
    );

    let worker = tempfile::tempdir().unwrap();
    molten_testkit::ignition::apply_files(&out.join("ignition/node-1.ign"), worker.path()).unwrap();
    let masked = worker.path().join("etc/systemd/system/etcd.service");
    assert_eq!(
        std::fs::read_link(&masked).unwrap(),
        Path::new("/dev/null"),
        "etcd.service is not masked on the worker"
    );
    assert_eq!(
        std::fs::read(worker.path().join("opt/bin/mc")).unwrap(),
        FAKE_AGENT
    );
}
