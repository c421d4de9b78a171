//! Unit actions that failed are done by the next run, though no file changes then.

use std::fs;

use molten_contract::OsVariant;

use super::tests::{booted_root, config, dropin, tls, FakeSystemd, IP};
use super::*;

#[test]
fn a_failed_reload_is_retried_by_the_next_run_and_reported_as_a_change() {
    let root = booted_root();
    let cfg = config(OsVariant::Debian);
    let systemd = FakeSystemd::running(&["docker.service"]);
    systemd.failing_reloads.set(1);
    let err = converge_units(root.path(), &cfg, IP, &tls(), &systemd).unwrap_err();
    assert!(
        format!("{err:#}").contains("systemd could not reload"),
        "{err:#}"
    );
    assert!(
        dropin(root.path(), "docker.service").exists(),
        "written before the reload"
    );
    let pending = root.path().join("run/molten/units-pending");
    let recorded = fs::read_to_string(&pending).unwrap();
    assert!(recorded.contains("\ndocker.service\n"), "{recorded}");
    assert!(recorded.contains("\nflanneld.service\n"), "{recorded}");
    systemd.take_calls();

    // No file changes now, yet the reload and restart are due: done, and reported as a change.
    let outcome = converge_units(root.path(), &cfg, IP, &tls(), &systemd).unwrap();
    assert!(outcome.written.is_empty(), "{outcome:?}");
    assert_eq!(outcome.retried, ["docker.service", "flanneld.service"]);
    assert!(outcome.reloaded);
    assert_eq!(outcome.restarted, ["docker.service"]);
    assert!(outcome.changed());
    assert!(systemd.calls().contains(&"daemon-reload".to_string()));
    assert!(!pending.exists(), "cleared once everything was done");

    // And then the node is settled.
    systemd.take_calls();
    let third = converge_units(root.path(), &cfg, IP, &tls(), &systemd).unwrap();
    assert_eq!(third, UnitsOutcome::default());
    assert!(systemd.calls().is_empty(), "{:?}", systemd.calls());
}

#[test]
fn a_failed_restart_stays_due_until_it_succeeds() {
    let root = booted_root();
    let cfg = config(OsVariant::Debian);
    let failing = FakeSystemd {
        fail_restart: true,
        ..FakeSystemd::running(&["docker.service"])
    };
    converge_units(root.path(), &cfg, IP, &tls(), &failing).unwrap_err();
    converge_units(root.path(), &cfg, IP, &tls(), &failing).unwrap_err();
    let working = FakeSystemd::running(&["docker.service"]);
    let outcome = converge_units(root.path(), &cfg, IP, &tls(), &working).unwrap();
    assert_eq!(outcome.restarted, ["docker.service"]);
    assert!(outcome.changed());
}

#[test]
fn without_systemd_nothing_is_recorded_as_due() {
    let root = tempfile::tempdir().unwrap();
    let cfg = config(OsVariant::Debian);
    let outcome = converge_units(root.path(), &cfg, IP, &tls(), &FakeSystemd::default()).unwrap();
    assert!(!outcome.skipped.is_empty());
    assert!(!root.path().join("run/molten/units-pending").exists());
}
