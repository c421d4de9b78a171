//! What a valid profile becomes, and the rules the corpus cannot show (defaults, expansion,
//! agent hashing, options). Exact error texts live in `corpus/`.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use molten::diagnostics::Severity;
use molten::model::{Agent, MacAddr, Runtime};
use molten::platform::Platform;
use molten::profile::{defaults, json_schema, load, load_file, LoadOptions};
use molten_contract::{OsVariant, Role};
use sha2::{Digest, Sha512};

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBSqkpJLN/W+kUxvnG0wIhyjZlDb1wEUdapqVUrmMKOC op@example";

fn profiles() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles")
}

struct Agentfile {
    dir: tempfile::TempDir,
}

impl Agentfile {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("mc"), b"#!/bin/sh\nexit 0\n").unwrap();
        Self { dir }
    }
    fn path(&self) -> PathBuf {
        self.dir.path().join("mc")
    }
    fn sha512(&self) -> String {
        hex::encode(Sha512::digest(std::fs::read(self.path()).unwrap()))
    }
}

fn opts(agent: &Path) -> LoadOptions<'_> {
    LoadOptions {
        platform: None,
        agent_override: Some(agent),
        strict: false,
    }
}

/// A small valid profile with `extra` appended (top-level keys).
fn profile(nodes: &str, extra: &str) -> String {
    format!("version: 1\nname: t\nssh_authorized_keys: [{KEY}]\nnodes:\n{nodes}{extra}")
}

const THREE: &str = "  - {name: a, zone: 0, roles: [etcd], ip: 10.0.0.1, mac: 52:54:00:00:00:01}
  - {name: b, zone: 1, roles: [worker, etcd, worker], ip: 10.0.0.2}
  - {name: c, zone: 2, roles: [etcd]}
";

#[test]
fn defaults_fill_what_the_profile_leaves_out() {
    let agent = Agentfile::new();
    let loaded = load(
        "t.yaml",
        &profile(THREE, ""),
        Path::new("."),
        &opts(&agent.path()),
    )
    .unwrap();
    assert!(loaded.warnings.is_empty(), "{}", loaded.warnings);
    let c = loaded.cluster;
    assert_eq!(c.os, OsVariant::Flatcar);
    assert_eq!(c.ssh_authorized_keys, [KEY]);
    assert_eq!(
        c.etcd.runtime,
        Runtime::Container {
            image: defaults::ETCD_IMAGE.into()
        }
    );
    assert_eq!((c.etcd.client_port, c.etcd.peer_port), (2379, 2380));
    assert_eq!(c.flannel.settings.network.to_string(), "10.1.0.0/16");
    assert_eq!(c.flannel.settings.subnet_len, 24);
    assert_eq!(c.flannel.settings.backend, "vxlan");
    assert_eq!(
        c.flannel.runtime,
        Runtime::Container {
            image: defaults::FLANNEL_IMAGE.into()
        }
    );
    assert_eq!(c.docker.bridge_cidr.to_string(), "10.255.240.0/20");
    assert_eq!(c.docker.tls_port, 2376);
    assert!(c.bosh.enabled);
    assert_eq!(c.bosh.network_name, "bosh");
    assert_eq!(c.vagrant.box_name, "flatcar-stable");
    assert_eq!(c.vagrant.host_ip, Ipv4Addr::new(192, 168, 56, 1));
    assert_eq!(
        (c.vagrant.memory_mb, c.vagrant.cpus, c.vagrant.serve_port),
        (2048, 2, 8080)
    );
    assert!(c.packet.is_none() && c.ipxe.is_none());
    // Roles come out sorted and deduplicated; absent values stay absent.
    assert_eq!(c.nodes[1].roles, [Role::Etcd, Role::Worker]);
    assert_eq!(c.nodes[0].mac, Some(MacAddr([0x52, 0x54, 0, 0, 0, 1])));
    assert_eq!(c.nodes[2].ip, None);
    assert_eq!(c.nodes[1].origin.path, "$.nodes[1]");
    assert_eq!(c.nodes[1].origin.line, 6);
}

#[test]
fn debian_runs_binaries() {
    let agent = Agentfile::new();
    let text = profile(THREE, "os: debian\nflannel: {binary: /opt/bin/flanneld}\n");
    let c = load("t.yaml", &text, Path::new("."), &opts(&agent.path()))
        .unwrap()
        .cluster;
    assert_eq!(c.os, OsVariant::Debian);
    assert_eq!(
        c.etcd.runtime,
        Runtime::Binary {
            path: "/usr/bin/etcd".into()
        }
    );
    assert_eq!(
        c.flannel.runtime,
        Runtime::Binary {
            path: "/opt/bin/flanneld".into()
        }
    );
}

#[test]
fn rack_profile_expands_to_numbered_nodes() {
    let agent = Agentfile::new();
    let c = load_file(&profiles().join("rack.yaml"), &opts(&agent.path()))
        .unwrap()
        .cluster;
    assert_eq!(c.nodes.len(), 24);
    let first = &c.nodes[0];
    assert_eq!(first.name, "rack-a-01");
    assert_eq!(first.zone, 0);
    assert_eq!(first.ip, Some(Ipv4Addr::new(10, 0, 1, 11)));
    assert_eq!(first.mac.unwrap().to_string(), "52:54:00:0a:01:11");
    assert_eq!(first.install_disk.as_deref(), Some("/dev/sda"));
    assert_eq!(first.roles, [Role::Etcd, Role::Worker]);
    let last_of_b = &c.nodes[15];
    assert_eq!(last_of_b.name, "rack-b-08");
    assert_eq!(last_of_b.zone, 15);
    assert_eq!(last_of_b.ip, Some(Ipv4Addr::new(10, 0, 2, 18)));
    assert_eq!(last_of_b.roles, [Role::Worker]);
    assert_eq!(last_of_b.origin.path, "$.racks[1]");
    let members: Vec<&str> = c.etcd_members().map(|n| n.name.as_str()).collect();
    assert_eq!(members, ["rack-a-01", "rack-b-01", "rack-c-01"]);
    let ipxe = c.ipxe.unwrap();
    assert!(ipxe.install_to_disk);
    assert_eq!(ipxe.kernel, defaults::IPXE_KERNEL);
    assert_eq!(ipxe.kernel_args, ["console=tty0", "console=ttyS0,115200n8"]);
}

#[test]
fn rack_numbering_follows_start_index_and_digits() {
    let agent = Agentfile::new();
    let text = profile(
        "  - {name: a, zone: 0, roles: [etcd]}\n",
        "racks:\n  - {prefix: r, count: 3, start_index: 9, digits: 3, start_zone: 5, roles: [worker], start_ip: 10.0.0.254, start_mac: 52:54:00:00:00:ff}\n",
    );
    let c = load("t.yaml", &text, Path::new("."), &opts(&agent.path()))
        .unwrap()
        .cluster;
    let names: Vec<&str> = c.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["a", "r009", "r010", "r011"]);
    assert_eq!(c.nodes[3].zone, 7);
    // Addresses and MACs carry into the next octet.
    assert_eq!(c.nodes[3].ip, Some(Ipv4Addr::new(10, 0, 1, 0)));
    assert_eq!(c.nodes[2].mac.unwrap().to_string(), "52:54:00:00:01:00");
}

#[test]
fn packet_drops_addresses_and_needs_its_section() {
    let agent = Agentfile::new();
    let agent_path = agent.path();
    let packet = LoadOptions {
        platform: Some(Platform::Packet.rules()),
        ..opts(&agent_path)
    };
    // Packet nodes download the agent: the profile gets a URL, as its comment says.
    let text = std::fs::read_to_string(profiles().join("packet.yaml")).unwrap();
    let text = format!(
        "{text}agent: {{url: https://downloads.example.org/mc, sha512: {}}}\n",
        agent.sha512()
    );
    let by_url = LoadOptions {
        agent_override: None,
        ..packet
    };
    let c = load("packet.yaml", &text, &profiles(), &by_url)
        .unwrap()
        .cluster;
    assert!(matches!(c.agent, Agent::Url { .. }));
    assert!(c.nodes.iter().all(|n| n.ip.is_none()));
    let p = c.packet.unwrap();
    assert_eq!((p.metro.as_str(), p.plan.as_str()), ("am", "c3.small.x86"));
    assert_eq!(
        (p.operating_system.as_str(), p.billing_cycle.as_str()),
        ("flatcar_stable", "hourly")
    );
    // dev.yaml has addresses and no packet section: two kinds of error.
    let err = load_file(&profiles().join("dev.yaml"), &packet).unwrap_err();
    assert!(err.iter().any(|d| d.path == "$.platforms.packet"), "{err}");
    assert_eq!(
        err.iter()
            .filter(|d| d.message.starts_with("packet assigns"))
            .count(),
        3
    );
}

#[test]
fn local_agent_is_hashed_relative_to_the_profile() {
    let agent = Agentfile::new();
    let text = profile(THREE, "agent: {path: mc}\n");
    let no_override = LoadOptions::default();
    let c = load("t.yaml", &text, agent.dir.path(), &no_override)
        .unwrap()
        .cluster;
    let size = std::fs::metadata(agent.path()).unwrap().len();
    assert_eq!(
        c.agent,
        Agent::Local {
            path: agent.path(),
            sha512: agent.sha512(),
            size
        }
    );
    // The same sha512 written in the profile (any case) is accepted.
    let text = profile(
        THREE,
        &format!(
            "agent: {{path: mc, sha512: {}}}\n",
            agent.sha512().to_uppercase()
        ),
    );
    load("t.yaml", &text, agent.dir.path(), &no_override).unwrap();
}

#[test]
fn url_agent_keeps_its_sha512_and_override_wins() {
    let agent = Agentfile::new();
    let sum = "AB".repeat(64);
    let text = profile(
        THREE,
        &format!("agent: {{url: 'https://example.org/mc', sha512: {sum}}}\n"),
    );
    let c = load("t.yaml", &text, Path::new("."), &LoadOptions::default())
        .unwrap()
        .cluster;
    assert_eq!(
        c.agent,
        Agent::Url {
            url: "https://example.org/mc".into(),
            sha512: "ab".repeat(64)
        }
    );
    let text = profile(THREE, "agent: {path: does-not-exist}\n");
    let c = load("t.yaml", &text, Path::new("."), &opts(&agent.path()))
        .unwrap()
        .cluster;
    assert!(matches!(c.agent, Agent::Local { ref sha512, .. } if *sha512 == agent.sha512()));
}

#[test]
fn agent_is_required_somewhere() {
    let err = load(
        "t.yaml",
        &profile(THREE, ""),
        Path::new("."),
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert_eq!(err.len(), 1);
    assert_eq!(err.0[0].path, "$.agent");
    let missing = LoadOptions {
        agent_override: Some(Path::new("/nonexistent/mc")),
        ..LoadOptions::default()
    };
    let err = load("t.yaml", &profile(THREE, ""), Path::new("."), &missing).unwrap_err();
    assert_eq!(err.0[0].path, "--agent");
    assert!(err.0[0].message.contains("No such file"), "{err}");
}

#[test]
fn warnings_pass_unless_strict() {
    let agent = Agentfile::new();
    let four = format!("{THREE}  - {{name: d, zone: 3, roles: [etcd]}}\n");
    let text = profile(&four, "").replace(&format!("ssh_authorized_keys: [{KEY}]\n"), "");
    let loaded = load("t.yaml", &text, Path::new("."), &opts(&agent.path())).unwrap();
    let severities: Vec<Severity> = loaded.warnings.iter().map(|d| d.severity).collect();
    assert_eq!(severities, [Severity::Warning, Severity::Warning]);
    let agent_path = agent.path();
    let strict = LoadOptions {
        strict: true,
        ..opts(&agent_path)
    };
    let err = load("t.yaml", &text, Path::new("."), &strict).unwrap_err();
    assert_eq!(err.len(), 2);
    assert!(!err.has_errors());
}

#[test]
fn diagnostics_carry_position_and_sort_by_line() {
    let agent = Agentfile::new();
    let text = profile(THREE, "docker: {tls_port: 2380}\n").replace("name: t\n", "name: T\n");
    let err = load("t.yaml", &text, Path::new("."), &opts(&agent.path())).unwrap_err();
    let found: Vec<(&str, usize, usize)> = err
        .iter()
        .map(|d| (d.path.as_str(), d.line, d.column))
        .collect();
    assert_eq!(found, [("$.name", 2, 7), ("$.docker.tls_port", 8, 20)]);
    assert_eq!(err.0[0].line_text.as_deref(), Some("name: T"));
    assert!(err.has_errors());
}

#[test]
fn ipxe_base_url_loses_its_trailing_slash() {
    let agent = Agentfile::new();
    let text = profile(
        THREE,
        "platforms: {ipxe: {base_url: 'http://10.0.0.9:8080/'}}\n",
    );
    let c = load("t.yaml", &text, Path::new("."), &opts(&agent.path()))
        .unwrap()
        .cluster;
    assert_eq!(c.ipxe.unwrap().base_url, "http://10.0.0.9:8080");
}

#[test]
fn a_byte_order_mark_is_ignored() {
    let agent = Agentfile::new();
    let text = format!("\u{feff}{}", profile(THREE, ""));
    let c = load("t.yaml", &text, Path::new("."), &opts(&agent.path()))
        .unwrap()
        .cluster;
    assert_eq!(c.name, "t");
}

#[test]
fn unreadable_profile_is_an_error_naming_it() {
    let err = load_file(Path::new("/nonexistent/p.yaml"), &LoadOptions::default()).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("error[$]: cannot read the profile: "),
        "{err}"
    );
}

#[test]
fn schema_describes_every_key_and_refuses_others() {
    let schema = json_schema();
    let props = schema["properties"].as_object().unwrap();
    for key in [
        "version",
        "name",
        "os",
        "ssh_authorized_keys",
        "etcd",
        "flannel",
        "docker",
        "agent",
        "bosh",
        "nodes",
        "racks",
        "platforms",
    ] {
        assert!(props.contains_key(key), "schema lacks {key}");
    }
    assert_eq!(schema["additionalProperties"], false);
    let text = schema.to_string();
    for key in [
        "start_mac",
        "etcd_members",
        "install_to_disk",
        "billing_cycle",
        "serve_port",
        "subnet_len",
    ] {
        assert!(text.contains(&format!("\"{key}\"")), "schema lacks {key}");
    }
}

/// A node's own data disk overrides the platform's; vagrant ignores both (its boxes persist).
/// The refusals and their exact lines are corpus cases 69-71.
#[test]
fn data_disks_resolve_per_node_and_only_ipxe_needs_them() {
    let agent = Agentfile::new();
    let agent_path = agent.path();
    let nodes = "  - {name: a, zone: 0, roles: [etcd], ip: 10.0.0.1, mac: 52:54:00:00:00:01}
  - {name: b, zone: 1, roles: [worker], ip: 10.0.0.2, mac: 52:54:00:00:00:02, data_disk: /dev/sdb}
";
    let ipxe = LoadOptions {
        platform: Some(Platform::Ipxe.rules()),
        ..opts(&agent_path)
    };
    let with_default = profile(
        nodes,
        "platforms:\n  ipxe: {base_url: http://10.0.0.9:8080, data_disk: /dev/vdb}\n",
    );
    let c = load("t.yaml", &with_default, Path::new("."), &ipxe)
        .unwrap()
        .cluster;
    assert_eq!(
        c.ipxe.as_ref().unwrap().data_disk.as_deref(),
        Some("/dev/vdb")
    );
    assert_eq!(c.nodes[0].data_disk, None);
    assert_eq!(c.nodes[1].data_disk.as_deref(), Some("/dev/sdb"));

    // Without the default, node a has none: refused for ipxe at its entry, fine for vagrant.
    let without = profile(
        nodes,
        "platforms:\n  ipxe: {base_url: http://10.0.0.9:8080}\n",
    );
    let err = load("t.yaml", &without, Path::new("."), &ipxe).unwrap_err();
    let errors: Vec<(&str, usize)> = err.iter().map(|d| (d.path.as_str(), d.line)).collect();
    assert_eq!(errors, [("$.nodes[0]", 5)], "{err}");
    assert!(err.iter().next().unwrap().message.contains("single-use"));
    let vagrant = LoadOptions {
        platform: Some(Platform::Vagrant.rules()),
        ..opts(&agent_path)
    };
    load("t.yaml", &without, Path::new("."), &vagrant).unwrap();
    load("t.yaml", &without, Path::new("."), &opts(&agent_path)).unwrap();
}

#[test]
fn etcd_snapshots_default_to_daily_seven_and_take_a_calendar_expression() {
    let agent = Agentfile::new();
    let default = load(
        "t.yaml",
        &profile(THREE, ""),
        Path::new("."),
        &opts(&agent.path()),
    )
    .unwrap()
    .cluster;
    assert_eq!(
        default.etcd.snapshots,
        molten_contract::SnapshotSettings::default()
    );
    assert!(default.etcd.snapshots.is_default());

    let text = profile(
        THREE,
        "etcd:\n  snapshots:\n    schedule: \"Mon..Fri *-*-* 02:30:00\"\n    keep: 30\n",
    );
    let loaded = load("t.yaml", &text, Path::new("."), &opts(&agent.path())).unwrap();
    assert!(loaded.warnings.is_empty(), "{}", loaded.warnings);
    let snapshots = &loaded.cluster.etcd.snapshots;
    assert_eq!(snapshots.schedule, "Mon..Fri *-*-* 02:30:00");
    assert_eq!(snapshots.keep, 30);

    // Only one of the two: the other keeps its default.
    let text = profile(THREE, "etcd:\n  snapshots: {keep: 3}\n");
    let loaded = load("t.yaml", &text, Path::new("."), &opts(&agent.path())).unwrap();
    assert_eq!(loaded.cluster.etcd.snapshots.schedule, "daily");
    assert_eq!(loaded.cluster.etcd.snapshots.keep, 3);
}
