//! The drop-ins as systemd itself reads them: `systemd-analyze verify --root` loads each unit
//! with its drop-ins and dumps the merged result, so these tests check what dockerd and flanneld
//! would actually be started with, and that systemd finds nothing to complain about in our files.

use std::fs;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

use mc::systemd::{self, dockerd_args, Systemd, TlsPaths, DROPIN_NAME};
use molten_contract::{NodeConfig, OsVariant};
use molten_testkit::fixtures;
use molten_testkit::packages::ensure_binary;

const ANALYZE: &str = "/usr/bin/systemd-analyze";
const IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);

/// The real unit Debian's docker.io installs (the package the test harness installs anyway).
const DEBIAN_DOCKER_UNIT: &str = "/lib/systemd/system/docker.service";

/// A unit shaped like Flatcar's docker.service: flannel's helper file sets DOCKER_OPT_BIP, and
/// the command line appends $DOCKER_OPTS and the DOCKER_OPT_* variables.
const FLATCAR_LIKE_DOCKER_UNIT: &str = "[Unit]\nDescription=Docker (Flatcar-shaped test unit)\n\
    [Service]\nType=notify\nEnvironmentFile=-/run/flannel/flannel_docker_opts.env\n\
    ExecStart=/usr/bin/dockerd --host=fd:// $DOCKER_OPTS $DOCKER_OPT_BIP $DOCKER_OPT_MTU\n";

/// A flanneld unit like the composer's: endpoints in FLANNEL_OPTS, nothing about addresses.
const FLANNEL_UNIT: &str = "[Unit]\nDescription=flannel (test unit)\n[Service]\nType=notify\n\
    Environment=\"FLANNEL_OPTS=--etcd-endpoints=http://10.0.0.10:2379\"\n\
    ExecStart=/opt/bin/flanneld $FLANNEL_OPTS\n";

/// No systemd runs in the test root: every action must come back as skipped.
struct Absent;

impl Systemd for Absent {
    fn is_running(&self) -> bool {
        false
    }
    fn daemon_reload(&self) -> anyhow::Result<()> {
        panic!("no daemon-reload without systemd")
    }
    fn is_active(&self, unit: &str) -> anyhow::Result<bool> {
        panic!("no is-active {unit} without systemd")
    }
    fn restart(&self, unit: &str) -> anyhow::Result<()> {
        panic!("no restart {unit} without systemd")
    }
    fn queued_start_jobs(&self) -> anyhow::Result<Vec<String>> {
        panic!("no list-jobs without systemd")
    }
    fn start_no_block(&self, units: &[String]) -> anyhow::Result<()> {
        panic!("no start {units:?} without systemd")
    }
    fn stop(&self, unit: &str) -> anyhow::Result<()> {
        panic!("no stop {unit} without systemd")
    }
}

/// node-0 at [`IP`] (etcd on the same address) on `os`.
fn config(os: OsVariant) -> NodeConfig {
    let mut config = fixtures::node_config("node-0", 0, IP);
    config.os = os;
    config
}

fn tls() -> TlsPaths {
    TlsPaths {
        ca: "/etc/molten/tls/ca.pem".into(),
        server_cert: "/etc/molten/tls/server-cert.pem".into(),
        server_key: "/etc/molten/tls/server-key.pem".into(),
    }
}

/// A root with vendor units in /usr/lib/systemd/system and the agent's drop-ins written.
fn root_with_units(os: OsVariant, docker_unit: &str) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let vendor = root.path().join("usr/lib/systemd/system");
    fs::create_dir_all(&vendor).unwrap();
    fs::write(vendor.join("docker.service"), docker_unit).unwrap();
    fs::write(vendor.join("flanneld.service"), FLANNEL_UNIT).unwrap();
    let outcome = systemd::converge_units(root.path(), &config(os), IP, &tls(), &Absent).unwrap();
    assert_eq!(outcome.written.len(), 2, "{outcome:?}");
    assert_eq!(outcome.skipped.len(), 3, "{outcome:?}");
    root
}

/// `systemd-analyze verify` of `unit` under `root`: the unit's dump section, and every line
/// systemd logged about a file of ours.
fn analyze(root: &Path, unit: &str) -> (Vec<String>, Vec<String>) {
    ensure_binary(ANALYZE, "systemd").unwrap();
    let out = Command::new(ANALYZE)
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg("--man=no")
        .arg(unit)
        .env("SYSTEMD_LOG_LEVEL", "debug")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let dump: Vec<String> = text
        .lines()
        .skip_while(|l| l.trim() != format!("-> Unit {unit}:"))
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with("-> Unit "))
        .map(|l| l.trim().to_string())
        .collect();
    assert!(!dump.is_empty(), "systemd did not load {unit}:\n{text}");
    let complaints = text
        .lines()
        .filter(|l| l.contains(DROPIN_NAME) && !l.trim_start().starts_with("DropIn Path:"))
        .map(str::to_string)
        .collect();
    (dump, complaints)
}

/// docker.service is ordered after flanneld by a unit file (our drop-in), not by chance.
fn assert_after_flanneld(dump: &[String]) {
    assert!(
        dump.iter()
            .any(|l| l == "After: flanneld.service (origin-file)"),
        "{dump:#?}"
    );
}

fn lines_starting<'a>(dump: &'a [String], prefix: &str) -> Vec<&'a str> {
    dump.iter().filter_map(|l| l.strip_prefix(prefix)).collect()
}

#[test]
fn debian_dockerd_runs_with_tls_and_the_moved_bridge() {
    let vendor = fs::read_to_string(DEBIAN_DOCKER_UNIT).unwrap_or_else(|_| {
        ensure_binary("/usr/sbin/dockerd", "docker.io").unwrap();
        fs::read_to_string(DEBIAN_DOCKER_UNIT).unwrap()
    });
    let root = root_with_units(OsVariant::Debian, &vendor);
    let (dump, complaints) = analyze(root.path(), "docker.service");
    assert!(complaints.is_empty(), "systemd complained: {complaints:#?}");
    assert!(
        dump.iter()
            .any(|l| l.starts_with("DropIn Path:") && l.ends_with(DROPIN_NAME)),
        "{dump:#?}"
    );

    // Exactly one command: ours replaced the vendor's (two would make systemd refuse to start).
    let commands = lines_starting(&dump, "Command Line: ");
    let exec_start: Vec<_> = commands
        .iter()
        .filter(|c| c.starts_with("/usr/sbin/dockerd"))
        .collect();
    let flags = dockerd_args(&config(OsVariant::Debian), IP, &tls()).join(" ");
    assert_eq!(
        exec_start,
        [&format!(
            "/usr/sbin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock {flags} \
             \"\\$DOCKER_OPTS\""
        )
        .as_str()],
        "{dump:#?}"
    );
    assert!(
        flags.contains("-H tcp://10.0.0.10:2376 --tlsverify"),
        "{flags}"
    );
    assert!(flags.ends_with("--bip=10.255.240.1/20"), "{flags}");
    assert_after_flanneld(&dump);
}

#[test]
fn flatcar_dockerd_gets_docker_opts_and_not_flannels_bip() {
    let root = root_with_units(OsVariant::Flatcar, FLATCAR_LIKE_DOCKER_UNIT);
    let (dump, complaints) = analyze(root.path(), "docker.service");
    assert!(complaints.is_empty(), "systemd complained: {complaints:#?}");
    let flags = dockerd_args(&config(OsVariant::Flatcar), IP, &tls()).join(" ");
    assert_eq!(
        lines_starting(&dump, "Environment: "),
        [format!("DOCKER_OPTS={flags}").as_str()],
        "{dump:#?}"
    );
    assert!(
        lines_starting(&dump, "EnvironmentFile: ").is_empty(),
        "flannel's docker options file must not be read: {dump:#?}"
    );
    assert_after_flanneld(&dump);
}

#[test]
fn flanneld_gets_its_addresses_next_to_the_composers_options() {
    for os in [OsVariant::Debian, OsVariant::Flatcar] {
        let root = root_with_units(os, FLATCAR_LIKE_DOCKER_UNIT);
        let (dump, complaints) = analyze(root.path(), "flanneld.service");
        assert!(
            complaints.is_empty(),
            "{os:?}: systemd complained: {complaints:#?}"
        );
        let mut env = lines_starting(&dump, "Environment: ");
        env.sort();
        assert_eq!(
            env,
            [
                "FLANNELD_IFACE=10.0.0.10",
                "FLANNELD_PUBLIC_IP=10.0.0.10",
                "FLANNEL_OPTS=--etcd-endpoints=http://10.0.0.10:2379",
            ],
            "{os:?}: {dump:#?}"
        );
        assert_eq!(
            lines_starting(&dump, "Command Line: "),
            ["/opt/bin/flanneld \"\\$FLANNEL_OPTS\""],
            "{os:?}: the composer's command line is untouched"
        );
    }
}
