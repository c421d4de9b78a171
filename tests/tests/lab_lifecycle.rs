//! Issue 12's proofs in the lab (docs/lab.md): etcd's lifecycle on real Debian members under
//! systemd — a cold start with one member held back 90 s, a reboot of every member in turn, a
//! snapshot, a wiped member, quorum lost for good and restored from the snapshot, growing to
//! five members and shrinking back. Nobody logs in to a node except where docs/operations.md
//! tells the operator to. One lab, provisioned once; the cases run in order, each from the
//! healthy three-member cluster the one before left. The figures it prints
//! (`molten-lab: figure:`) are in docs/performance.md ("lab: etcd lifecycle").
//!
//! Needs root, like `--test lab` (tests/tests/lab.rs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use molten_testkit::lab::checks::{
    all_ok, check, healths, mc_status, restarts, wait_node, wait_status, CONVERGE, MC,
};
use molten_testkit::lab::cluster::{lab_profile, Lab, LabOptions};
use molten_testkit::lab::node::LabNode;
use molten_testkit::lab::{intruder, probes};
use molten_testkit::process::wait_until;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// How long the last member is held back at the cold start (issue 12's figure).
const HELD_BACK: Duration = Duration::from_secs(90);

/// A key the operator writes before the snapshot; the restored cluster must hold it.
const MARKER_KEY: &str = "/lab/lifecycle/marker";

/// etcd's data dir on a member (the composer's `--data-dir`, docs/operations.md).
const ETCD_DATA: &str = "var/lib/etcd";

/// Where `mc etcd snapshot` keeps snapshots on a member.
const SNAPSHOTS: &str = "var/lib/molten/etcd-snapshots";

/// The two nodes the grow case adds (addresses on the lab bridge, zones of their own).
const GROWN: [(&str, &str, u32); 2] = [("lab-4", "10.88.0.14", 3), ("lab-5", "10.88.0.15", 4)];

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
    let marker = snapshot(&lab, &names[0]);
    wiped_member_rejoins(&mut lab, &names, cluster);
    quorum_lost_and_restored(&mut lab, &names, &marker);
    grow_to_five_and_shrink_back(&mut lab, &names);
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

/// The node's etcd data dir holds a member (seen from the host).
fn has_member_data(node: &LabNode) -> bool {
    node.root().join(ETCD_DATA).join("member/wal").is_dir()
}

/// Deletes the node's etcd data (the node must be down): its disk was wiped.
fn wipe_etcd_data(node: &LabNode) {
    assert!(node.pid1().is_none(), "{} is running", node.name);
    let member = node.root().join(ETCD_DATA).join("member");
    assert!(
        member.join("wal").is_dir(),
        "{} kept no etcd data in /{ETCD_DATA}/member",
        node.name
    );
    std::fs::remove_dir_all(&member).unwrap();
}

/// How often the node's boot converge said it promoted the node's learner to a voter (its
/// mc.service journal, every boot of the node).
fn promotions(lab: &Lab, name: &str) -> usize {
    let journal = check(
        lab,
        "mc.service journal",
        lab.node(name)
            .exec(&["journalctl", "--no-pager", "-o", "cat", "-u", "mc.service"]),
    );
    let said = format!("promoted learner {name} to a voting member");
    journal.lines().filter(|l| l.contains(&said)).count()
}

/// How often systemd restarted `mc.service` on `name` after a failure since its last boot (it
/// retries every 10 s, docs/operations.md): explains a slow join.
fn mc_restarts(lab: &Lab, name: &str) -> u32 {
    check(lab, "NRestarts", restarts(lab.node(name), "mc.service"))
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
            mc_restarts(lab, name)
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

/// 4. A member's etcd data wiped: booted again, it re-joins under its name (a new member id,
///    learner then voter) with nobody intervening; no dead entry is left, same cluster.
fn wiped_member_rejoins(lab: &mut Lab, names: &[String], cluster: u64) {
    let victim = &names[2];
    let survivors = refs(&names[..2]);
    let before = member_ids(lab, &refs(names));
    let promoted_before = promotions(lab, victim);
    lab.node_mut(victim).kill().unwrap();
    check(
        lab,
        "quorum of the survivors",
        probes::wait_etcd_quorum(lab, &survivors, Duration::from_secs(30)),
    );
    wipe_etcd_data(lab.node(victim));

    let booted = Instant::now();
    lab.node_mut(victim).boot().unwrap();
    wait_node(lab, victim);
    let after = check(
        lab,
        &format!("{victim} re-joined"),
        probes::wait_voters(lab, &refs(names), CONVERGE),
    );
    everyone_sees_all_ok(lab, names, CONVERGE);
    eprintln!(
        "molten-lab: figure: wiped {victim}: boot -> voter, all ok everywhere {:.1} s (mc.service \
         restarted {} time(s))",
        booted.elapsed().as_secs_f64(),
        mc_restarts(lab, victim)
    );
    assert_eq!(after, cluster, "the wiped member made a new cluster");
    let ids = member_ids(lab, &refs(names));
    assert_ne!(
        ids[victim], before[victim],
        "{victim} came back under its old member id with empty data"
    );
    for name in &survivors {
        assert_eq!(ids[*name], before[*name], "{name}'s member id changed");
    }
    assert!(has_member_data(lab.node(victim)));
    assert!(
        promotions(lab, victim) > promoted_before,
        "{victim} re-joined without its converge promoting a learner"
    );
    enrolled_once(lab, names);
}

/// 5. Quorum lost for good (two members' data gone): docs/operations.md "Quorum lost for good",
///    step by step, on the survivor; the two others, booted one at a time, re-join. The marker
///    written before the snapshot is there.
fn quorum_lost_and_restored(lab: &mut Lab, names: &[String], marker: &str) {
    let survivor = &names[0];
    let lost = &names[1..];
    let promoted_before: Vec<usize> = lost.iter().map(|n| promotions(lab, n)).collect();
    for name in lost {
        lab.node_mut(name).kill().unwrap();
        wipe_etcd_data(lab.node(name));
    }
    let node = lab.node(survivor);
    // 1. Stop etcd on every member (the others are gone).
    check(
        lab,
        "stop etcd",
        node.exec(&["systemctl", "stop", "etcd.service"]),
    );
    // 2. Move its data aside.
    check(
        lab,
        "move the data aside",
        node.exec(&[
            "sh",
            "-c",
            "mv /var/lib/etcd/member /var/lib/etcd/member.lost-$(date +%s)",
        ]),
    );
    // 3. Restore.
    let restored_at = OffsetDateTime::now_utc();
    let started = Instant::now();
    let said = check(lab, "mc etcd restore", node.exec(&[MC, "etcd", "restore"]));
    eprintln!("molten-lab: mc etcd restore: {}", said.trim());
    // 4. Start etcd on this member.
    check(
        lab,
        "start etcd",
        node.exec(&["systemctl", "start", "etcd.service"]),
    );
    check(
        lab,
        "the restored member",
        probes::wait_voters(lab, &[survivor.as_str()], Duration::from_secs(60)),
    );
    // 5. Every other member: its data dir is empty (wiped); start it, one at a time.
    let mut up = vec![survivor.as_str()];
    for name in lost {
        let booted = Instant::now();
        lab.node_mut(name).boot().unwrap();
        wait_node(lab, name);
        up.push(name);
        check(
            lab,
            &format!("{name} joined the restored cluster"),
            probes::wait_voters(lab, &up, CONVERGE),
        );
        eprintln!(
            "molten-lab: figure: restore: {name} boot -> voter of the restored cluster {:.1} s \
             (mc.service restarted {} time(s))",
            booted.elapsed().as_secs_f64(),
            mc_restarts(lab, name)
        );
        let members = check(
            lab,
            "mc etcd members",
            lab.node(survivor).exec(&[MC, "etcd", "members"]),
        );
        eprintln!("molten-lab: after {name} joined:\n{members}");
    }
    let voting = started.elapsed();
    everyone_sees_all_ok(lab, names, CONVERGE);
    eprintln!(
        "molten-lab: figure: restore: mc etcd restore -> three voters {:.1} s, -> all ok \
         everywhere {:.1} s",
        voting.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    member_ids(lab, &refs(names));
    let got = check(
        lab,
        "the marker",
        lab.etcdctl(&["get", MARKER_KEY, "--print-value-only"]),
    );
    assert_eq!(got.trim(), marker, "the restored cluster lost the marker");
    for (name, before) in lost.iter().zip(promoted_before) {
        assert!(
            promotions(lab, name) > before,
            "{name} re-joined the restored cluster without its converge promoting a learner"
        );
    }
    // The re-joined members converged after the restore (not old records from the snapshot).
    for name in lost {
        let published = check(lab, "status", probes::published_status(lab, name));
        let finished = OffsetDateTime::parse(&published.finished, &Rfc3339).unwrap();
        assert!(
            published.ok && finished > restored_at,
            "{name}'s status is not a converge after the restore: {published:?}"
        );
    }
    check(lab, "etcd cluster", probes::etcd_cluster(lab, &refs(names)));
    enrolled_once(lab, names);
}

/// The lab profile with the nodes of [`GROWN`] added.
fn five_node_profile(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(lab_profile()).unwrap();
    let extra: String = GROWN
        .iter()
        .map(|(name, ip, zone)| {
            format!("  - name: {name}\n    zone: {zone}\n    roles: [etcd, worker]\n    ip: {ip}\n")
        })
        .collect();
    let (nodes, platforms) = text
        .split_once("\nplatforms:")
        .expect("the lab profile has a platforms section after its nodes");
    let path = dir.join("lab-five.yaml");
    std::fs::write(
        &path,
        format!("{}\n{extra}\nplatforms:{platforms}", nodes.trim_end()),
    )
    .unwrap();
    path
}

/// 6. Grow 3 → 5 (each new node joins as a learner and its converge promotes it), then shrink
///    back with `mc etcd remove`; a remove that would lose quorum is refused, saying why.
fn grow_to_five_and_shrink_back(lab: &mut Lab, names: &[String]) {
    let profile = five_node_profile(&lab.dir);
    let bundle = lab.dir.join("bundle-five");
    check(lab, "recompose", lab.recompose(&profile, &bundle, &[]));
    let served = lab.serve_bundle(&bundle);
    check(lab, "serve the new bundle", served);
    let mut all: Vec<String> = names.to_vec();
    for (name, ip, _) in GROWN {
        let provisioned = lab.provision_node(name);
        check(lab, "provision", provisioned);
        assert_eq!(lab.node(name).ip.to_string(), ip);
        let booted = Instant::now();
        lab.node_mut(name).boot().unwrap();
        wait_node(lab, name);
        all.push(name.to_string());
        check(
            lab,
            &format!("{name} is a voter"),
            probes::wait_voters(lab, &refs(&all), CONVERGE),
        );
        everyone_sees_all_ok(lab, &all, CONVERGE);
        eprintln!(
            "molten-lab: figure: grow: {name} boot -> voter, all ok everywhere {:.1} s \
             (mc.service restarted {} time(s))",
            booted.elapsed().as_secs_f64(),
            mc_restarts(lab, name)
        );
        assert!(
            promotions(lab, name) > 0,
            "{name} joined without its converge promoting a learner"
        );
        enrolled_once(lab, &all);
    }
    member_ids(lab, &refs(&all));

    // Shrink: shut a node down, remove its member (docs/operations.md "A member is dead for
    // good"), one at a time; each removal keeps the quorum of the smaller cluster.
    let mut left: Vec<String> = all.clone();
    for (gone, _, _) in GROWN.iter().rev() {
        lab.node_mut(gone).kill().unwrap();
        left.retain(|n| n != gone);
        check(
            lab,
            &format!("quorum without {gone}"),
            probes::wait_etcd_quorum(lab, &refs(&left), Duration::from_secs(30)),
        );
        let removing = Instant::now();
        let said = check(
            lab,
            &format!("remove {gone}"),
            lab.node(&names[0]).exec(&[MC, "etcd", "remove", gone]),
        );
        let command = removing.elapsed();
        assert!(
            said.contains(&format!("removed etcd member {gone}")),
            "{said}"
        );
        let retired = lab.retire_node(gone);
        check(lab, &format!("retire {gone}"), retired);
        check(
            lab,
            &format!("voters after removing {gone}"),
            probes::wait_voters(lab, &refs(&left), CONVERGE),
        );
        eprintln!(
            "molten-lab: figure: shrink: mc etcd remove {gone} {:.2} s, -> {} voters, all \
             healthy {:.1} s",
            command.as_secs_f64(),
            left.len(),
            removing.elapsed().as_secs_f64()
        );
    }
    member_ids(lab, &refs(names));

    // With lab-3 down, removing the live lab-2 would leave 2 voters of which 1 answers.
    lab.node_mut(&names[2]).kill().unwrap();
    check(
        lab,
        "quorum without lab-3",
        probes::wait_etcd_quorum(lab, &refs(&names[..2]), Duration::from_secs(30)),
    );
    let refused = lab
        .node(&names[0])
        .exec_output(&[MC, "etcd", "remove", &names[1]])
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("would lose") && stderr.contains("quorum"),
        "a remove that loses quorum was not refused ({}): {stderr}",
        refused.status
    );
    eprintln!("molten-lab: refused: {}", stderr.trim());
    let booted = Instant::now();
    lab.node_mut(&names[2]).boot().unwrap();
    wait_node(lab, &names[2]);
    check(
        lab,
        "three voters again",
        probes::wait_voters(lab, &refs(names), CONVERGE),
    );
    member_ids(lab, &refs(names));
    // On every member, `mc status` shows the three members ok and no retired node ok.
    for on in names {
        let mut last = Vec::new();
        let seen = wait_until(
            &format!("mc status on {on}: the members ok, the retired nodes not"),
            CONVERGE,
            Duration::from_millis(500),
            || {
                last = healths(&mc_status(lab.node(on))?);
                let members_ok = names
                    .iter()
                    .all(|n| last.contains(&(n.clone(), "ok".to_string())));
                let retired_not = last
                    .iter()
                    .all(|(name, health)| names.contains(name) || health != "ok");
                Ok((members_ok && retired_not).then(|| last.clone()))
            },
        );
        let seen = check(
            lab,
            "the three members ok",
            seen.map_err(|err| err.context(format!("last seen: {last:?}"))),
        );
        eprintln!("molten-lab: after the shrink, mc status on {on}: {seen:?}");
    }
    eprintln!(
        "molten-lab: figure: shrink: {} boot (after the refused remove) -> three voters, the \
         members ok everywhere {:.1} s",
        names[2],
        booted.elapsed().as_secs_f64()
    );
}

fn now_rfc3339() -> String {
    OffsetDateTime::now_utc().format(&Rfc3339).unwrap()
}
