//! converge_timers against the recording fake systemd.

use std::fs;
use std::path::{Path, PathBuf};

use molten_contract::{OsVariant, Role};

use super::tests::{booted_root, config, tls, FakeSystemd, IP};
use super::timers::*;
use super::*;

fn unit(root: &Path, name: &str) -> PathBuf {
    root.join("etc/systemd/system").join(name)
}

fn link(root: &Path, timer: &str) -> PathBuf {
    root.join("etc/systemd/system/timers.target.wants")
        .join(timer)
}

fn member() -> NodeConfig {
    let mut config = config(OsVariant::Debian);
    config.node.roles = vec![Role::Etcd, Role::Worker];
    config
}

fn worker() -> NodeConfig {
    let mut config = config(OsVariant::Debian);
    config.node.roles = vec![Role::Worker];
    config
}

#[test]
fn a_member_gets_both_timers_enabled_and_started_then_a_warm_run_changes_nothing() {
    let root = booted_root();
    let systemd = FakeSystemd::running(&[]);
    let first = converge_timers(root.path(), &member(), &systemd).unwrap();
    let r = root.path();
    assert_eq!(
        first.written,
        vec![
            unit(r, CONVERGE_TIMER),
            unit(r, CONVERGE_SERVICE),
            link(r, CONVERGE_TIMER),
            unit(r, SNAPSHOT_TIMER),
            unit(r, SNAPSHOT_SERVICE),
            link(r, SNAPSHOT_TIMER),
        ]
    );
    assert!(first.reloaded && first.changed());
    assert_eq!(first.started, [CONVERGE_TIMER, SNAPSHOT_TIMER]);
    assert!(first.restarted.is_empty());
    assert_eq!(
        systemd.take_calls(),
        [
            "list-jobs",
            "daemon-reload",
            "is-active mc-converge.timer",
            "start --no-block mc-converge.timer",
            "is-active mc-etcd-snapshot.timer",
            "start --no-block mc-etcd-snapshot.timer",
        ]
    );
    assert_eq!(
        fs::read_link(link(r, SNAPSHOT_TIMER)).unwrap(),
        Path::new("/etc/systemd/system/mc-etcd-snapshot.timer")
    );
    let converge = fs::read_to_string(unit(r, CONVERGE_SERVICE)).unwrap();
    assert!(converge.starts_with(render::HEADER), "{converge}");
    assert!(
        converge.contains("ExecStart=/opt/bin/mc converge --lock-wait 300\n"),
        "{converge}"
    );
    let snapshot = fs::read_to_string(unit(r, SNAPSHOT_SERVICE)).unwrap();
    assert!(
        snapshot.contains("ExecStart=/opt/bin/mc etcd snapshot --keep 7\n"),
        "{snapshot}"
    );
    assert!(snapshot.contains("RequiresMountsFor=/var/lib/molten\n"));
    let daily = fs::read_to_string(unit(r, SNAPSHOT_TIMER)).unwrap();
    assert!(daily.contains("OnCalendar=daily\n") && daily.contains("Persistent=true\n"));
    assert!(!r.join("run/molten/units-pending").exists());

    let warm = converge_timers(r, &member(), &systemd).unwrap();
    assert_eq!(warm, UnitsOutcome::default());
    assert!(systemd.calls().is_empty(), "{:?}", systemd.calls());
}

#[test]
fn a_worker_gets_no_snapshot_timer_and_loses_one_it_had() {
    let root = booted_root();
    let r = root.path();
    let systemd = FakeSystemd::running(&[]);
    converge_timers(r, &member(), &systemd).unwrap();
    systemd.take_calls();

    let systemd = FakeSystemd::running(&[CONVERGE_TIMER, SNAPSHOT_TIMER]);
    let outcome = converge_timers(r, &worker(), &systemd).unwrap();
    assert!(outcome.written.is_empty(), "{outcome:?}");
    assert_eq!(
        outcome.removed,
        vec![
            unit(r, SNAPSHOT_TIMER),
            link(r, SNAPSHOT_TIMER),
            unit(r, SNAPSHOT_SERVICE),
        ]
    );
    assert!(outcome.reloaded && outcome.changed());
    assert!(outcome.restarted.is_empty() && outcome.started.is_empty());
    // The removed timer still ran from memory: stopped before the reload; the converge timer,
    // which also runs, is left alone.
    assert_eq!(outcome.stopped, [SNAPSHOT_TIMER]);
    assert_eq!(
        systemd.take_calls(),
        [
            "is-active mc-etcd-snapshot.timer",
            "stop mc-etcd-snapshot.timer",
            "list-jobs",
            "daemon-reload",
        ]
    );
    assert!(
        outcome
            .done()
            .detail
            .contains("stopped mc-etcd-snapshot.timer"),
        "{:?}",
        outcome.done()
    );
    assert!(unit(r, CONVERGE_TIMER).exists());
    assert!(fs::read_link(link(r, CONVERGE_TIMER)).is_ok());

    // Someone else's unit of that name is not ours to remove.
    fs::write(unit(r, SNAPSHOT_TIMER), "[Timer]\nOnCalendar=hourly\n").unwrap();
    let again = converge_timers(r, &worker(), &systemd).unwrap();
    assert_eq!(again, UnitsOutcome::default());
    assert!(unit(r, SNAPSHOT_TIMER).exists());
    assert!(systemd.calls().is_empty(), "{:?}", systemd.calls());
}

#[test]
fn a_removed_timer_that_no_longer_runs_is_not_stopped() {
    let root = booted_root();
    let r = root.path();
    converge_timers(r, &member(), &FakeSystemd::running(&[])).unwrap();

    let systemd = FakeSystemd::running(&[CONVERGE_TIMER]);
    let outcome = converge_timers(r, &worker(), &systemd).unwrap();
    assert_eq!(outcome.removed.len(), 3, "{outcome:?}");
    assert!(outcome.stopped.is_empty(), "{outcome:?}");
    let calls = systemd.calls();
    assert!(calls.contains(&"is-active mc-etcd-snapshot.timer".to_string()));
    assert!(!calls.iter().any(|c| c.starts_with("stop")), "{calls:?}");
}

#[test]
fn without_a_booted_systemd_a_removed_timer_is_reported_as_not_stopped() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let systemd = FakeSystemd::running(&[SNAPSHOT_TIMER]);
    converge_timers(r, &member(), &systemd).unwrap();
    let outcome = converge_timers(r, &worker(), &systemd).unwrap();
    assert_eq!(outcome.removed.len(), 3, "{outcome:?}");
    assert!(outcome.stopped.is_empty());
    assert_eq!(
        outcome.skipped,
        ["daemon-reload", "stop mc-etcd-snapshot.timer (if active)"]
    );
    assert!(systemd.calls().is_empty(), "{:?}", systemd.calls());
}

#[test]
fn an_edited_unit_is_put_back_and_its_running_timer_restarted() {
    let root = booted_root();
    let r = root.path();
    converge_timers(r, &worker(), &FakeSystemd::running(&[])).unwrap();
    fs::write(
        unit(r, CONVERGE_SERVICE),
        "[Service]\nExecStart=/bin/false\n",
    )
    .unwrap();
    fs::remove_file(link(r, CONVERGE_TIMER)).unwrap();

    let systemd = FakeSystemd::running(&[CONVERGE_TIMER]);
    let outcome = converge_timers(r, &worker(), &systemd).unwrap();
    assert_eq!(
        outcome.written,
        vec![unit(r, CONVERGE_SERVICE), link(r, CONVERGE_TIMER)]
    );
    // The timer restarts; the service, which may be the very run doing this, is not touched.
    assert_eq!(outcome.restarted, [CONVERGE_TIMER]);
    assert!(!systemd.calls().iter().any(|c| c.contains(CONVERGE_SERVICE)));
}

#[test]
fn a_failed_reload_after_installing_timers_is_done_by_the_next_units_run() {
    let root = booted_root();
    let r = root.path();
    let systemd = FakeSystemd::running(&[]);
    systemd.failing_reloads.set(1);
    let err = converge_timers(r, &worker(), &systemd).unwrap_err();
    assert!(format!("{err:#}").contains("Access denied"), "{err:#}");
    systemd.take_calls();

    // The files are in place, so converge_timers sees nothing to do; the pending record makes
    // the next units run reload and start the timer.
    assert_eq!(
        converge_timers(r, &worker(), &systemd).unwrap(),
        UnitsOutcome::default()
    );
    let after = converge_units(r, &worker(), IP, &tls(), &systemd).unwrap();
    assert_eq!(after.retried, [CONVERGE_TIMER]);
    assert!(
        after.started.contains(&CONVERGE_TIMER.to_string()),
        "{after:?}"
    );
    assert!(after.changed());
    assert!(!r.join("run/molten/units-pending").exists());
}

#[test]
fn without_a_booted_systemd_the_files_are_written_and_the_actions_skipped() {
    let root = tempfile::tempdir().unwrap();
    let systemd = FakeSystemd::running(&[]);
    let outcome = converge_timers(root.path(), &worker(), &systemd).unwrap();
    assert_eq!(outcome.written.len(), 3);
    assert!(!outcome.reloaded);
    assert_eq!(
        outcome.skipped,
        ["daemon-reload", "restart mc-converge.timer (if active)"]
    );
}

#[test]
fn the_units_step_writes_dropins_and_timers_with_one_reload() {
    let root = booted_root();
    let r = root.path();
    let systemd = FakeSystemd::running(&["docker.service"]);
    let outcome = converge_node_units(r, &member(), IP, &tls(), &systemd).unwrap();
    assert_eq!(outcome.written.len(), 2 + 6, "{outcome:?}");
    assert_eq!(outcome.restarted, ["docker.service"]);
    assert_eq!(outcome.started, [CONVERGE_TIMER, SNAPSHOT_TIMER]);
    let calls = systemd.take_calls();
    assert_eq!(
        calls.iter().filter(|c| *c == "daemon-reload").count(),
        1,
        "{calls:?}"
    );
    let warm = converge_node_units(r, &member(), IP, &tls(), &systemd).unwrap();
    assert_eq!(warm, UnitsOutcome::default());
    assert_eq!(warm.done().state, crate::outcome::State::Unchanged);

    // Turned into a worker: the snapshot timer goes, with one reload and nothing restarted.
    let systemd = FakeSystemd::running(&[CONVERGE_TIMER, SNAPSHOT_TIMER]);
    let worker = converge_node_units(r, &worker(), IP, &tls(), &systemd).unwrap();
    assert_eq!(worker.removed.len(), 3, "{worker:?}");
    assert!(worker.reloaded && worker.restarted.is_empty(), "{worker:?}");
    // The snapshot timer, still running, is stopped; nothing else is.
    assert_eq!(worker.stopped, [SNAPSHOT_TIMER]);
    let stops: Vec<String> = systemd
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("stop "))
        .collect();
    assert_eq!(stops, ["stop mc-etcd-snapshot.timer"]);
}

#[test]
fn the_snapshot_timer_follows_the_node_configs_schedule_and_retention() {
    let root = booted_root();
    let r = root.path();
    let mut config = member();
    config.etcd.snapshots = molten_contract::SnapshotSettings {
        schedule: "Mon..Fri *-*-* 02:30:00".into(),
        keep: 30,
    };
    let systemd = FakeSystemd::running(&[]);
    converge_timers(r, &config, &systemd).unwrap();
    let timer = fs::read_to_string(unit(r, SNAPSHOT_TIMER)).unwrap();
    assert!(
        timer.contains("OnCalendar=Mon..Fri *-*-* 02:30:00\n")
            && timer.contains("RandomizedDelaySec=5min\n"),
        "a calendar expression may run more often than daily: {timer}"
    );
    assert!(
        timer.contains("Description=molten agent: etcd snapshot (Mon..Fri *-*-* 02:30:00)\n"),
        "{timer}"
    );
    let service = fs::read_to_string(unit(r, SNAPSHOT_SERVICE)).unwrap();
    assert!(
        service.contains("ExecStart=/opt/bin/mc etcd snapshot --keep 30\n"),
        "{service}"
    );

    // Back to the defaults: the units are what they were before the settings existed, and the
    // running timer restarts with them.
    let systemd = FakeSystemd::running(&[SNAPSHOT_TIMER]);
    let outcome = converge_timers(r, &member(), &systemd).unwrap();
    assert_eq!(
        outcome.written,
        [unit(r, SNAPSHOT_TIMER), unit(r, SNAPSHOT_SERVICE)]
    );
    assert_eq!(outcome.restarted, [SNAPSHOT_TIMER]);
    let timer = fs::read_to_string(unit(r, SNAPSHOT_TIMER)).unwrap();
    assert!(
        timer.contains("Description=molten agent: daily etcd snapshot\n")
            && timer.contains("OnCalendar=daily\n")
            && timer.contains("RandomizedDelaySec=1h\n"),
        "{timer}"
    );
}

#[test]
fn snapshot_settings_that_break_the_rules_are_refused_before_any_file_is_written() {
    let cases = [
        ("daily\nExecStartPre=/bin/sh -c reboot", 7, "a line break"),
        ("*-*-* 02:00 %n", 7, "`%`"),
        ("daily", 0, "etcd.snapshots.keep: keep 0 is out of range"),
        ("daily", 366, "keep 1 to 365"),
    ];
    for (schedule, keep, needle) in cases {
        let root = booted_root();
        let r = root.path();
        let mut config = member();
        config.etcd.snapshots = molten_contract::SnapshotSettings {
            schedule: schedule.into(),
            keep,
        };
        let systemd = FakeSystemd::running(&[]);
        let err = converge_node_units(r, &config, IP, &tls(), &systemd).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains(needle), "{schedule:?} {keep}: {text}");
        assert!(
            text.contains("cannot go into mc-etcd-snapshot.timer"),
            "{text}"
        );
        // Neither the timers nor the drop-ins were written, and systemd was not called.
        assert!(!r.join("etc/systemd/system").exists());
        assert!(systemd.calls().is_empty(), "{:?}", systemd.calls());
    }
    // A worker does not use them.
    let root = booted_root();
    let mut config = worker();
    config.etcd.snapshots.keep = 0;
    converge_timers(root.path(), &config, &FakeSystemd::running(&[])).unwrap();
}
