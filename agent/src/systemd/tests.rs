//! converge_units against a recording fake systemd.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use molten_contract::{NodeConfig, OsVariant};

use super::*;

/// Records every call; `active` lists the units that run.
#[derive(Default)]
pub(super) struct FakeSystemd {
    pub running: bool,
    pub active: BTreeSet<String>,
    pub fail_restart: bool,
    /// How many of the next `daemon-reload`s fail.
    pub failing_reloads: std::cell::Cell<u32>,
    /// Units with a queued start job; `daemon-reload` drops those in `lost_on_reload`.
    pub queued: RefCell<Vec<String>>,
    pub lost_on_reload: BTreeSet<String>,
    pub calls: RefCell<Vec<String>>,
}

impl FakeSystemd {
    pub fn running(active: &[&str]) -> Self {
        Self {
            running: true,
            active: active.iter().map(|u| u.to_string()).collect(),
            ..Self::default()
        }
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.borrow().clone()
    }

    pub fn take_calls(&self) -> Vec<String> {
        self.calls.borrow_mut().drain(..).collect()
    }
}

impl Systemd for FakeSystemd {
    fn is_running(&self) -> bool {
        self.running
    }
    fn daemon_reload(&self) -> anyhow::Result<()> {
        self.calls.borrow_mut().push("daemon-reload".into());
        if self.failing_reloads.get() > 0 {
            self.failing_reloads.set(self.failing_reloads.get() - 1);
            anyhow::bail!("Failed to reload daemon: Access denied");
        }
        self.queued
            .borrow_mut()
            .retain(|u| !self.lost_on_reload.contains(u));
        Ok(())
    }
    fn is_active(&self, unit: &str) -> anyhow::Result<bool> {
        self.calls.borrow_mut().push(format!("is-active {unit}"));
        Ok(self.active.contains(unit))
    }
    fn restart(&self, unit: &str) -> anyhow::Result<()> {
        self.calls.borrow_mut().push(format!("restart {unit}"));
        if self.fail_restart {
            anyhow::bail!("Job for {unit} failed");
        }
        Ok(())
    }
    fn queued_start_jobs(&self) -> anyhow::Result<Vec<String>> {
        self.calls.borrow_mut().push("list-jobs".into());
        Ok(self.queued.borrow().clone())
    }
    fn start_no_block(&self, units: &[String]) -> anyhow::Result<()> {
        self.calls
            .borrow_mut()
            .push(format!("start --no-block {}", units.join(" ")));
        self.queued.borrow_mut().extend(units.iter().cloned());
        Ok(())
    }
    fn stop(&self, unit: &str) -> anyhow::Result<()> {
        self.calls.borrow_mut().push(format!("stop {unit}"));
        Ok(())
    }
}

/// node-0 at [`IP`] (etcd on the same address) on `os`.
pub(super) fn config(os: OsVariant) -> NodeConfig {
    let mut config = molten_testkit::fixtures::node_config("node-0", 0, IP);
    config.os = os;
    config
}

pub(super) const IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);

/// `converge_units` for the sample node on `os` at [`IP`] with the standard TLS paths.
fn converge_sample(
    os: OsVariant,
    root: &Path,
    systemd: &dyn Systemd,
) -> anyhow::Result<UnitsOutcome> {
    converge_units(root, &config(os), IP, &tls(), systemd)
}

pub(super) fn tls() -> TlsPaths {
    TlsPaths {
        ca: "/etc/molten/tls/ca.pem".into(),
        server_cert: "/etc/molten/tls/server-cert.pem".into(),
        server_key: "/etc/molten/tls/server-key.pem".into(),
    }
}

/// A root whose systemd is booted (`<root>/run/systemd/system` exists).
pub(super) fn booted_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    fs::create_dir_all(root.path().join("run/systemd/system")).unwrap();
    root
}

pub(super) fn dropin(root: &Path, unit: &str) -> PathBuf {
    root.join("etc/systemd/system")
        .join(format!("{unit}.d"))
        .join(DROPIN_NAME)
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

#[test]
fn first_run_writes_both_dropins_and_reloads_once() {
    let root = booted_root();
    let systemd = FakeSystemd::running(&[]);
    let outcome = converge_sample(OsVariant::Debian, root.path(), &systemd).unwrap();

    let docker = dropin(root.path(), "docker.service");
    let flannel = dropin(root.path(), "flanneld.service");
    assert_eq!(outcome.written, vec![docker.clone(), flannel.clone()]);
    assert!(outcome.reloaded);
    assert!(outcome.restarted.is_empty(), "nothing runs yet at boot");
    assert!(outcome.skipped.is_empty());
    assert_eq!(
        systemd.calls(),
        [
            "list-jobs",
            "daemon-reload",
            "is-active docker.service",
            "is-active flanneld.service"
        ]
    );

    let docker = read(&docker);
    assert!(docker.starts_with(HEADER), "{docker}");
    assert!(docker.contains("After=flanneld.service\n"), "{docker}");
    // Renewals restart dockerd and flanneld: a start limit would leave them stopped.
    assert!(docker.contains("\nStartLimitIntervalSec=0\n"), "{docker}");
    assert!(
        read(&flannel).contains("[Unit]\n# mc restarts this unit")
            && read(&flannel).contains("\nStartLimitIntervalSec=0\n"),
        "{}",
        read(&flannel)
    );
    assert!(
        docker.contains(
            "ExecStart=\nExecStart=/usr/sbin/dockerd -H fd:// \
             --containerd=/run/containerd/containerd.sock -H tcp://10.0.0.10:2376 --tlsverify \
             --tlscacert=/etc/molten/tls/ca.pem --tlscert=/etc/molten/tls/server-cert.pem \
             --tlskey=/etc/molten/tls/server-key.pem --bip=10.255.240.1/20 $DOCKER_OPTS\n"
        ),
        "{docker}"
    );
    let flannel = read(&flannel);
    assert!(
        flannel.contains("Environment=FLANNELD_IFACE=10.0.0.10\n"),
        "{flannel}"
    );
    assert!(
        flannel.contains("Environment=FLANNELD_PUBLIC_IP=10.0.0.10\n"),
        "{flannel}"
    );
}

#[test]
fn flatcar_sets_docker_opts_and_drops_flannels_bip() {
    let root = booted_root();
    let systemd = FakeSystemd::running(&[]);
    converge_sample(OsVariant::Flatcar, root.path(), &systemd).unwrap();
    let docker = read(&dropin(root.path(), "docker.service"));
    assert!(!docker.contains("ExecStart"), "{docker}");
    assert!(docker.contains("\nEnvironmentFile=\n"), "{docker}");
    assert!(
        docker.contains(
            "Environment=\"DOCKER_OPTS=-H tcp://10.0.0.10:2376 --tlsverify \
             --tlscacert=/etc/molten/tls/ca.pem --tlscert=/etc/molten/tls/server-cert.pem \
             --tlskey=/etc/molten/tls/server-key.pem --bip=10.255.240.1/20\"\n"
        ),
        "{docker}"
    );
}

#[test]
fn second_run_changes_nothing() {
    let root = booted_root();
    let systemd = FakeSystemd::running(&["docker.service", "flanneld.service"]);
    let cfg = config(OsVariant::Debian);
    converge_units(root.path(), &cfg, IP, &tls(), &systemd).unwrap();
    let docker = dropin(root.path(), "docker.service");
    let before = fs::metadata(&docker).unwrap();
    systemd.take_calls();

    let outcome = converge_units(root.path(), &cfg, IP, &tls(), &systemd).unwrap();
    assert_eq!(outcome, UnitsOutcome::default());
    assert!(!outcome.changed());
    assert!(systemd.calls().is_empty(), "{:?}", systemd.calls());
    let after = fs::metadata(&docker).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (before.ino(), before.mtime_nsec()),
        (after.ino(), after.mtime_nsec())
    );
}

#[test]
fn ip_change_rewrites_and_restarts_only_active_changed_units() {
    let root = booted_root();
    let cfg = config(OsVariant::Debian);
    converge_units(root.path(), &cfg, IP, &tls(), &FakeSystemd::running(&[])).unwrap();

    // docker runs, flanneld does not: both drop-ins change, only docker restarts.
    let systemd = FakeSystemd::running(&["docker.service", "etcd.service"]);
    let new_ip = Ipv4Addr::new(10, 0, 0, 99);
    let outcome = converge_units(root.path(), &cfg, new_ip, &tls(), &systemd).unwrap();
    assert_eq!(outcome.written.len(), 2);
    assert!(outcome.reloaded);
    assert_eq!(outcome.restarted, ["docker.service"]);
    assert_eq!(
        systemd.calls(),
        [
            "list-jobs",
            "daemon-reload",
            "is-active docker.service",
            "restart docker.service",
            "is-active flanneld.service"
        ]
    );
    assert!(read(&dropin(root.path(), "docker.service")).contains("tcp://10.0.0.99:2376"));
    assert!(read(&dropin(root.path(), "flanneld.service")).contains("FLANNELD_IFACE=10.0.0.99"));
}

#[test]
fn bridge_change_touches_only_docker() {
    let root = booted_root();
    let mut cfg = config(OsVariant::Debian);
    converge_units(root.path(), &cfg, IP, &tls(), &FakeSystemd::running(&[])).unwrap();

    cfg.docker.bridge_cidr = "172.31.0.0/16".parse().unwrap();
    let systemd = FakeSystemd::running(&["docker.service", "flanneld.service"]);
    let outcome = converge_units(root.path(), &cfg, IP, &tls(), &systemd).unwrap();
    assert_eq!(outcome.written, [dropin(root.path(), "docker.service")]);
    assert_eq!(outcome.restarted, ["docker.service"]);
    assert_eq!(
        systemd.calls(),
        [
            "list-jobs",
            "daemon-reload",
            "is-active docker.service",
            "restart docker.service"
        ]
    );
}

#[test]
fn without_systemd_actions_are_reported_as_skipped() {
    // A plain directory: no booted systemd in the root, even if one answers elsewhere.
    let root = tempfile::tempdir().unwrap();
    let systemd = FakeSystemd::running(&["docker.service"]);
    let outcome = converge_sample(OsVariant::Debian, root.path(), &systemd).unwrap();
    assert_eq!(outcome.written.len(), 2);
    assert!(!outcome.reloaded);
    assert!(outcome.restarted.is_empty());
    assert_eq!(
        outcome.skipped,
        [
            "daemon-reload",
            "restart docker.service (if active)",
            "restart flanneld.service (if active)"
        ]
    );
    assert!(systemd.calls().is_empty());

    // A booted root whose systemd does not answer is skipped too.
    let root = booted_root();
    let silent = FakeSystemd::default();
    let outcome = converge_sample(OsVariant::Debian, root.path(), &silent).unwrap();
    assert_eq!(outcome.skipped.len(), 3);
    assert!(silent.calls().is_empty());
}

#[test]
fn stale_dropins_of_ours_are_removed_and_their_unit_reloaded() {
    let root = booted_root();
    // An older agent put TLS on docker.socket (MoltenCore's way); someone else owns etcd's.
    let stale = dropin(root.path(), "docker.socket");
    fs::create_dir_all(stale.parent().unwrap()).unwrap();
    fs::write(
        &stale,
        format!("{HEADER}\n[Socket]\nListenStream=10.0.0.10:2376\n"),
    )
    .unwrap();
    let foreign = dropin(root.path(), "etcd.service");
    fs::create_dir_all(foreign.parent().unwrap()).unwrap();
    fs::write(&foreign, "[Service]\nEnvironment=X=1\n").unwrap();

    let systemd = FakeSystemd::running(&["docker.socket"]);
    let outcome = converge_sample(OsVariant::Debian, root.path(), &systemd).unwrap();
    assert_eq!(outcome.removed, std::slice::from_ref(&stale));
    assert!(!stale.exists());
    assert!(foreign.exists(), "a drop-in without our header is not ours");
    assert_eq!(outcome.restarted, ["docker.socket"]);
    assert_eq!(
        systemd
            .calls()
            .iter()
            .filter(|c| *c == "daemon-reload")
            .count(),
        1
    );
}

#[test]
fn a_failed_restart_is_an_error_naming_the_unit() {
    let root = booted_root();
    let systemd = FakeSystemd {
        fail_restart: true,
        ..FakeSystemd::running(&["docker.service"])
    };
    let err = converge_sample(OsVariant::Debian, root.path(), &systemd).unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("docker.service changed but failed to restart"),
        "{text}"
    );
    assert!(text.contains("Job for docker.service failed"), "{text}");
}

#[test]
fn tls_paths_systemd_would_reinterpret_are_refused_before_writing() {
    let root = booted_root();
    let mut paths = tls();
    paths.server_key = "/etc/molten/my tls/key.pem".into();
    let systemd = FakeSystemd::running(&[]);
    let err = converge_units(
        root.path(),
        &config(OsVariant::Debian),
        IP,
        &paths,
        &systemd,
    )
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("--tlskey=/etc/molten/my tls/key.pem"),
        "{err:#}"
    );
    assert!(!root.path().join("etc").exists(), "no partial output");
    assert!(systemd.calls().is_empty());
}

/// A first boot: mc.service runs while the units ordered after it wait in systemd's queue.
fn booting(queued: &[&str], lost_on_reload: &[&str]) -> FakeSystemd {
    FakeSystemd {
        queued: RefCell::new(queued.iter().map(|u| u.to_string()).collect()),
        lost_on_reload: lost_on_reload.iter().map(|u| u.to_string()).collect(),
        ..FakeSystemd::running(&[])
    }
}

#[test]
fn start_jobs_lost_by_the_reload_are_enqueued_again_without_blocking() {
    let root = booted_root();
    let queued = [
        "docker.socket",
        "docker.service",
        "flanneld.service",
        "mc-network.service",
        "unrelated.service",
    ];
    let systemd = booting(
        &queued,
        &["docker.service", "mc-network.service", "unrelated.service"],
    );
    let outcome = converge_sample(OsVariant::Debian, root.path(), &systemd).unwrap();
    assert_eq!(outcome.requeued, ["docker.service", "mc-network.service"]);
    assert_eq!(
        systemd.calls(),
        [
            "list-jobs",
            "daemon-reload",
            "list-jobs",
            "is-active docker.service",
            "is-active mc-network.service",
            "start --no-block docker.service mc-network.service",
            "is-active docker.service",
            "is-active flanneld.service",
        ]
    );
}

#[test]
fn start_jobs_kept_by_the_reload_are_left_alone() {
    let root = booted_root();
    let systemd = booting(&["docker.service", "flanneld.service"], &[]);
    let outcome = converge_sample(OsVariant::Debian, root.path(), &systemd).unwrap();
    assert!(outcome.requeued.is_empty());
    assert!(
        !systemd.calls().iter().any(|c| c.starts_with("start")),
        "{:?}",
        systemd.calls()
    );
}

#[test]
fn units_without_a_queued_job_are_never_started() {
    let root = booted_root();
    // The operator disabled Docker: no job, so nothing to lose and nothing to start.
    let systemd = booting(&[], &["docker.service"]);
    let outcome = converge_sample(OsVariant::Debian, root.path(), &systemd).unwrap();
    assert!(outcome.requeued.is_empty());
    assert_eq!(
        systemd.calls(),
        [
            "list-jobs",
            "daemon-reload",
            "is-active docker.service",
            "is-active flanneld.service"
        ]
    );
}

#[test]
fn a_lost_job_whose_unit_already_runs_is_not_started_again() {
    let root = booted_root();
    let systemd = FakeSystemd {
        active: ["docker.service".to_string()].into(),
        ..booting(&["docker.service"], &["docker.service"])
    };
    let outcome = converge_sample(OsVariant::Debian, root.path(), &systemd).unwrap();
    assert!(outcome.requeued.is_empty());
    assert!(!systemd.calls().iter().any(|c| c.starts_with("start")));
}
