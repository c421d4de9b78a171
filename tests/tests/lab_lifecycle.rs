//! Issue 12's proofs in the lab (docs/lab.md): etcd's lifecycle on real Debian members under
//! systemd — a cold start with one member held back 90 s, a reboot of every member in turn, a
//! snapshot. Nobody logs in to a node except where docs/operations.md tells the operator to.
//! One lab, provisioned once; the cases run in order, each from the healthy three-member
//! cluster the one before left. The figures it prints (`molten-lab: figure:`) are in
//! docs/performance.md ("lab: etcd lifecycle").
//!
//! Needs root, like `--test lab` (tests/tests/lab.rs).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use molten_testkit::lab::checks::{
    all_ok, check, healths, mc_status, restarts, wait_node, wait_status, CONVERGE, MC,
};
use molten_testkit::lab::cluster::{Lab, LabOptions};
use molten_testkit::lab::{intruder, probes};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// How long the last member is held back at the cold start (issue 12's figure).
const HELD_BACK: Duration = Duration::from_secs(90);

/// A key the operator writes before the snapshot; the restored cluster must hold it.
const MARKER_KEY: &str = "/lab/lifecycle/marker";

/// Where `mc etcd snapshot` keeps snapshots on a member.
const SNAPSHOTS: &str = "var/lib/molten/etcd-snapshots";

fn options() -> LabOptions {
    LabOptions::lab_profile(&PathBuf::from(env!("CARGO_BIN_EXE_flanneld-standin"))).unwrap()
}

fn refs(names: &[String]) -> Vec<&str> {
    names.iter().map(String::as_str).collect()
}

#[test]
fn etcd_lifecycle_without_an_operator() {
    let total = Instant::now();
    let mut lab = Lab::provision(&options()).unwrap();
    let names: Vec<String> = lab.nodes.iter().map(|n| n.name.clone()).collect();
    assert_eq!(
        names,
        ["lab-1", "lab-2", "lab-3"],
        "the lab profile's nodes"
    );

    let cluster = cold_start_with_one_member_held_back(&mut lab, &names);
    reboots_keep_the_cluster(&mut lab, &names, cluster);
    snapshot(&lab, &names[0]);
    eprintln!(
        "molten-lab: figure: whole lifecycle test {:.0} s",
        total.elapsed().as_secs_f64()
    );
}

/// Every one of `names` shows every one of `names` `ok` in `mc status`.
fn everyone_sees_all_ok(lab: &Lab, names: &[String], timeout: Duration) {
    for name in names {
        check(
            lab,
            &format!("mc status on {name}"),
            wait_status(lab, name, &all_ok(names), timeout),
        );
    }
}

/// Each node enrolled exactly once (its identity is on its persistent state dir).
fn enrolled_once(lab: &Lab, names: &[String]) {
    let log = lab.serve_log();
    for name in names {
        assert_eq!(
            intruder::enrollments(&log, name),
            1,
            "{name} did not enroll exactly once:\n{log}"
        );
    }
}

/// The member list: exactly `names`, no member without a name (added, never started), every
/// member a voter. Returns `name → member id`.
fn member_ids(lab: &Lab, names: &[&str]) -> BTreeMap<String, u64> {
    let (_, members) = check(
        lab,
        "member list",
        probes::etcd_members(lab, &lab.etcd_endpoints_of(names)),
    );
    let mut found: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
    found.sort_unstable();
    let mut want = names.to_vec();
    want.sort_unstable();
    assert_eq!(found, want, "etcd members: {members:?}");
    assert!(
        members.iter().all(|m| !m.learner),
        "a learner is left: {members:?}"
    );
    members.into_iter().map(|m| (m.name, m.id)).collect()
}

/// 1. Cold start, one member held back 90 s: the first two form the cluster and converge; the
///    last one, once up, converges too; nobody intervenes.
fn cold_start_with_one_member_held_back(lab: &mut Lab, names: &[String]) -> u64 {
    let (late, early) = names.split_last().unwrap();
    let first_boot = Instant::now();
    for name in early {
        lab.node_mut(name).boot().unwrap();
    }
    for name in early {
        wait_node(lab, name);
    }
    check(
        lab,
        "the early members' quorum",
        probes::wait_etcd_quorum(lab, &refs(early), Duration::from_secs(60)),
    );
    for name in early {
        let views = check(lab, "mc status", mc_status(lab.node(name)));
        let seen = healths(&views);
        for other in early {
            assert!(
                seen.contains(&(other.clone(), "ok".into())),
                "{name} sees {seen:?} with {late} not booted yet"
            );
        }
    }
    eprintln!(
        "molten-lab: figure: cold start: {} ok {:.1} s after their boot, {late} held back",
        early.join(", "),
        first_boot.elapsed().as_secs_f64()
    );
    std::thread::sleep(HELD_BACK.saturating_sub(first_boot.elapsed()));

    let late_boot = Instant::now();
    lab.node_mut(late).boot().unwrap();
    wait_node(lab, late);
    let cluster = check(
        lab,
        "three voters",
        probes::wait_voters(lab, &refs(names), CONVERGE),
    );
    everyone_sees_all_ok(lab, names, CONVERGE);
    eprintln!(
        "molten-lab: figure: cold start: {late} booted {:.0} s after the others; its boot -> \
         three voters, all ok everywhere {:.1} s",
        late_boot.duration_since(first_boot).as_secs_f64(),
        late_boot.elapsed().as_secs_f64()
    );
    member_ids(lab, &refs(names));
    enrolled_once(lab, names);
    for name in names {
        eprintln!(
            "molten-lab: cold start: mc.service on {name} restarted {} time(s)",
            check(lab, "NRestarts", restarts(lab.node(name), "mc.service"))
        );
    }
    cluster
}

/// 2. Each member rebooted in turn (its data on the persistent root): never a new cluster, the
///    same members, the same CA files and identity certificates everywhere, no new enrollment.
fn reboots_keep_the_cluster(lab: &mut Lab, names: &[String], cluster: u64) {
    let prints: BTreeMap<String, _> = names
        .iter()
        .map(|n| {
            let prints = check(lab, "fingerprints", probes::cert_fingerprints(lab.node(n)));
            (n.clone(), prints)
        })
        .collect();
    let ids = member_ids(lab, &refs(names));
    for victim in names {
        let rebooted = Instant::now();
        lab.node_mut(victim).reboot().unwrap();
        wait_node(lab, victim);
        let after = check(
            lab,
            &format!("etcd after {victim} rebooted"),
            probes::wait_voters(lab, &refs(names), CONVERGE),
        );
        assert_eq!(after, cluster, "rebooting {victim} made a new cluster");
        everyone_sees_all_ok(lab, names, CONVERGE);
        eprintln!(
            "molten-lab: figure: reboot of {victim} -> same cluster, all ok everywhere {:.1} s",
            rebooted.elapsed().as_secs_f64()
        );
        assert_eq!(
            member_ids(lab, &refs(names)),
            ids,
            "the members changed when {victim} rebooted"
        );
        for name in names {
            assert_eq!(
                check(
                    lab,
                    "fingerprints",
                    probes::cert_fingerprints(lab.node(name))
                ),
                prints[name],
                "{name}'s CA files or identity changed when {victim} rebooted"
            );
        }
        enrolled_once(lab, names);
    }
    check(lab, "one authority", probes::one_authority(lab));
    check(lab, "etcd cluster", probes::etcd_cluster(lab, &refs(names)));
}

/// 3. `mc etcd snapshot` on a member, after the operator wrote a marker key: its time and size,
///    and the file's sha256 next to it. Returns the marker's value.
fn snapshot(lab: &Lab, on: &str) -> String {
    let marker = format!("written before the snapshot at {}", now_rfc3339());
    check(
        lab,
        "put the marker",
        lab.etcdctl(&["put", MARKER_KEY, &marker]),
    );
    let node = lab.node(on);
    let started = Instant::now();
    let said = check(
        lab,
        "mc etcd snapshot",
        node.exec(&[MC, "etcd", "snapshot"]),
    );
    let took = started.elapsed();
    let dir = node.root().join(SNAPSHOTS);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "db"))
        .collect();
    files.sort();
    let newest = files.last().expect("mc etcd snapshot left no snapshot");
    let bytes = std::fs::read(newest).unwrap();
    eprintln!(
        "molten-lab: figure: mc etcd snapshot on {on}: {:.2} s, {} bytes ({})",
        took.as_secs_f64(),
        bytes.len(),
        said.trim()
    );
    assert!(
        said.contains(&format!("{} bytes", bytes.len())),
        "mc etcd snapshot said {said:?}; the file has {} bytes",
        bytes.len()
    );
    let sums = std::fs::read_to_string(newest.with_extension("db.sha256")).unwrap();
    assert!(
        sums.starts_with(&probes::sha256_hex(&bytes)),
        "{}: the .sha256 file does not match: {sums}",
        newest.display()
    );
    marker
}

fn now_rfc3339() -> String {
    OffsetDateTime::now_utc().format(&Rfc3339).unwrap()
}
