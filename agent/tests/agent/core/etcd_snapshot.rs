//! Snapshots and disaster recovery against a real three-member etcd 3.4 cluster (mutual TLS;
//! the node's own identity for its snapshot, the operator's root one elsewhere), through the
//! built binary: `mc etcd snapshot` with retention, then two members' data lost and the third
//! stopped, `mc etcd restore` re-forms the cluster from the newest snapshot and the others
//! re-join it. Prints the figures docs/performance.md quotes (run with --nocapture).

use std::time::{Duration, Instant};

use mc::etcd::membership;
use mc::etcd::snapshot::{self, SnapshotRecord};
use mc::etcd::Etcd;
use mc::etcd_join::{join, JoinOptions};
use molten_testkit::etcd::ETCDCTL;

use super::support::*;

const LIMIT: Duration = Duration::from_secs(120);
const KEYS: usize = 2000;
fn key_count(endpoint: &str) -> usize {
    block_on(async {
        let mut client = etcd_client(endpoint).await;
        let options = etcd_client::GetOptions::new()
            .with_prefix()
            .with_count_only();
        client.get("/data/", Some(options)).await.unwrap().count() as usize
    })
}

#[test]
fn a_cluster_that_lost_quorum_for_good_is_restored_from_the_newest_snapshot() {
    let mut cluster = start_cluster(&["a", "b", "c"]);
    let endpoints = cluster.endpoints().join(",");
    block_on(async {
        let mut client = etcd_client(&cluster.member("a").endpoint()).await;
        let value = "v".repeat(512);
        for i in 0..KEYS {
            client
                .put(format!("/data/{i:05}"), value.as_str(), None)
                .await
                .unwrap();
        }
    });
    let node_a = member_node("a");
    let root_a = node_a.root.path().to_str().unwrap().to_string();
    let dir = node_a.path("/var/lib/molten/etcd-snapshots");

    let mut last = None;
    for _ in 0..3 {
        let started = Instant::now();
        let out = run_mc(
            &[
                "etcd", "snapshot", "--root", &root_a, "--etcd", &endpoints, "--keep", "2",
            ],
            LIMIT,
        );
        let took = started.elapsed();
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(
            text(&out.stdout).starts_with("saved "),
            "{}",
            text(&out.stdout)
        );
        last = Some(took);
        std::thread::sleep(Duration::from_millis(1100)); // one file name per second
    }
    let kept = snapshot::list(&dir).unwrap();
    assert_eq!(kept.len(), 2, "retention keeps the newest two: {kept:?}");
    let newest = kept.last().unwrap().clone();
    snapshot::verify(&newest).unwrap();
    let record: SnapshotRecord = block_on(async {
        let mut client = etcd_client(&cluster.member("b").endpoint()).await;
        let entry = get(&mut client, "/molten/etcd-snapshots/a").await.unwrap();
        serde_json::from_str(&entry.value).unwrap()
    });
    assert_eq!(record.file, newest.display().to_string());
    let size = std::fs::metadata(&newest).unwrap().len();
    assert_eq!(record.bytes, size);
    // The members table shows the age of a's last snapshot, and that b and c never took one.
    let mut args = vec!["etcd", "members", "--etcd", &endpoints];
    let tls = root_tls_args();
    args.extend(tls.iter().map(String::as_str));
    let out = run_mc(&args, LIMIT);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let line = |name: &str| {
        table
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing: {table}"))
            .to_string()
    };
    assert!(line("a").contains("s ago"), "{table}");
    assert!(line("b").contains("never"), "{table}");

    // Quorum lost for good: b's and c's disks are gone, a is down.
    for name in ["b", "c", "a"] {
        cluster.stop(name).unwrap();
    }
    cluster.wipe("b").unwrap();
    cluster.wipe("c").unwrap();
    let data_a = cluster.member("a").data_dir();
    let peer_a = cluster.member("a").peer_url();
    let restore_args = [
        "etcd",
        "restore",
        "--root",
        &root_a,
        "--data-dir",
        data_a.to_str().unwrap(),
        "--name",
        "a",
        "--peer-url",
        &peer_a,
        "--etcdctl",
        ETCDCTL,
    ];
    // a's old data is never overwritten.
    let out = run_mc(&restore_args, LIMIT);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("holds a member already"),
        "{}",
        text(&out.stderr)
    );
    std::fs::rename(data_a.join("member"), data_a.join("member.old")).unwrap();

    let started = Instant::now();
    let out = run_mc(&restore_args, LIMIT);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&format!("restored {}", newest.display())));
    cluster.restart("a").unwrap();
    cluster.wait_healthy("a").unwrap();
    let restored_at = started.elapsed();
    assert_eq!(key_count(&cluster.member("a").endpoint()), KEYS);

    // b and c come back with empty disks and join the restored member.
    for name in ["b", "c"] {
        let node = member_node(name);
        let member = cluster.member(name);
        let outcome = block_on(join(&JoinOptions {
            root: node.root.path().to_path_buf(),
            config: None,
            etcd: Some(vec![cluster.member("a").endpoint()]),
            peer_port: member.peer_port,
            env_file: None,
            data_dir: Some(member.data_dir()),
            retry: MEMBERSHIP_RETRY,
            bootstrap_after: None,
        }))
        .unwrap_or_else(|e| panic!("join {name}: {e:#}"));
        assert!(outcome.added, "{outcome:?}");
        cluster
            .start_existing(name, &outcome.initial_cluster)
            .unwrap();
        block_on(async {
            let mut etcd = Etcd::connect(
                &[cluster.member("a").endpoint()],
                MEMBERSHIP_RETRY,
                root_tls(),
            )
            .await
            .unwrap();
            assert!(
                membership::promote_by_name(&mut etcd, name, Duration::from_secs(30))
                    .await
                    .unwrap()
            );
        });
    }
    let all_ok = started.elapsed();
    let members = block_on(async {
        let mut etcd = Etcd::connect(
            &[cluster.member("a").endpoint()],
            MEMBERSHIP_RETRY,
            root_tls(),
        )
        .await
        .unwrap();
        membership::list(&mut etcd).await.unwrap()
    });
    let mut names: Vec<_> = members.iter().map(|m| m.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["a", "b", "c"]);
    assert!(members.iter().all(|m| !m.learner));
    assert_eq!(key_count(&cluster.member("c").endpoint()), KEYS);

    eprintln!(
        "figures: {KEYS} keys of 512 B; snapshot {size} bytes in {:.2}s (mc etcd snapshot, \
         whole command); restore to a healthy one-member cluster {:.2}s; all three members \
         voting {:.2}s after the restore command",
        last.unwrap().as_secs_f64(),
        restored_at.as_secs_f64(),
        all_ok.as_secs_f64()
    );
}
