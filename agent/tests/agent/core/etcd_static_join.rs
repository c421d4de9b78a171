//! Static members (addresses from the profile) run `mc etcd-join --bootstrap-after` before
//! etcd, as their composed unit does, against real three- and four-member etcd 3.4 clusters on
//! 127.0.0.1 with mutual TLS. Each member starts the way its unit starts it: the static
//! settings (initial cluster of the profile, state `new`), overridden by the join's env file.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use mc::converge::{Stage, State};
use mc::etcd::membership::{self, Member};
use mc::etcd_join::{join, JoinOptions, JoinOutcome, StaticStart};
use mc::lock::{NodeLock, LOCK_PATH};
use molten_testkit::etcd_cluster::EtcdCluster;

use super::support::*;

/// Short, so the first-boot tests stay quick; the product's default is 10 s.
const BOOTSTRAP_AFTER: Duration = Duration::from_secs(3);
/// What a join that gets out of etcd's way may take beyond [`BOOTSTRAP_AFTER`]: one last look
/// (2 s per endpoint, all at once) and a pause.
const SLACK: Duration = Duration::from_secs(4);

/// The options a static member's unit runs `mc etcd-join` with: every member's endpoint (its
/// own included, as the node config lists them), its peer port and data dir, the fallback.
fn options(cluster: &EtcdCluster, node: &Node, name: &str) -> JoinOptions {
    let member = cluster.member(name);
    JoinOptions {
        root: node.root.path().to_path_buf(),
        config: None,
        etcd: Some(cluster.endpoints()),
        peer_port: member.peer_port,
        env_file: None,
        data_dir: Some(member.data_dir()),
        retry: MEMBERSHIP_RETRY,
        bootstrap_after: Some(BOOTSTRAP_AFTER),
    }
}

fn static_join(cluster: &EtcdCluster, node: &Node, name: &str) -> JoinOutcome {
    block_on(join(&options(cluster, node, name))).unwrap_or_else(|e| panic!("join {name}: {e:#}"))
}

/// Joins all `names` at once (each on its own thread, like nodes booting together).
fn join_together(cluster: &EtcdCluster, nodes: &[Node], names: &[&str]) -> Vec<JoinOutcome> {
    let all: Vec<JoinOptions> = names
        .iter()
        .zip(nodes)
        .map(|(name, node)| options(cluster, node, name))
        .collect();
    std::thread::scope(|s| {
        let joins: Vec<_> = all
            .iter()
            .map(|o| s.spawn(move || block_on(join(o))))
            .collect();
        joins
            .into_iter()
            .map(|j| j.join().unwrap().unwrap_or_else(|e| panic!("join: {e:#}")))
            .collect()
    })
}

fn env_file(node: &Node) -> PathBuf {
    node.path("/run/molten/etcd-join.env")
}

fn env_value(env: &str, key: &str) -> String {
    env.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key} missing in {env}"))
        .to_string()
}

/// Names, sorted, with `*` after each learner.
fn roster(members: &[Member]) -> Vec<String> {
    let mut names: Vec<String> = members
        .iter()
        .map(|m| format!("{}{}", m.label(), if m.learner { "*" } else { "" }))
        .collect();
    names.sort();
    names
}

/// The cluster ID member `name` reports about itself.
fn cluster_id(cluster: &EtcdCluster, name: &str) -> u64 {
    block_on(async {
        let etcd = session(cluster, &[name]).await;
        let status = etcd.client().unwrap().status().await.unwrap();
        status.header().expect("a response header").cluster_id()
    })
}

/// A key as member `name` holds it locally (a serializable read: its own data, no leader
/// round trip).
fn local_value(cluster: &EtcdCluster, name: &str, key: &str) -> String {
    trust()
        .etcdctl_root(
            &cluster.member(name).endpoint(),
            &["get", key, "--consistency=s", "--print-value-only"],
        )
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn a_static_first_boot_forms_one_cluster_of_three_voters() {
    let names = ["a", "b", "c"];
    let mut cluster =
        EtcdCluster::reserve_all(&names, trust().etcd_server("cluster").unwrap()).unwrap();
    let initial = cluster.static_initial(&names);
    let nodes: Vec<Node> = names.iter().map(|n| member_node(n)).collect();
    // A join left from an earlier attempt must not turn the first boot into a join.
    std::fs::create_dir_all(env_file(&nodes[0]).parent().unwrap()).unwrap();
    std::fs::write(env_file(&nodes[0]), "ETCD_INITIAL_CLUSTER_STATE=existing\n").unwrap();

    let started = Instant::now();
    let outcomes = join_together(&cluster, &nodes, &names);
    let took = started.elapsed();
    assert!(
        took >= BOOTSTRAP_AFTER && took < BOOTSTRAP_AFTER + SLACK,
        "{took:?}"
    );
    for (outcome, node) in outcomes.iter().zip(&nodes) {
        assert_eq!(
            outcome.static_start,
            Some(StaticStart::Bootstrap),
            "{outcome:?}"
        );
        assert!(!outcome.added && outcome.replaced.is_empty(), "{outcome:?}");
        assert!(
            !env_file(node).exists(),
            "no env file left for a new cluster"
        );
    }
    for (name, node) in names.iter().zip(&nodes) {
        cluster.start_unit(name, &initial, &env_file(node)).unwrap();
    }
    for name in names {
        cluster.wait_healthy(name).unwrap();
    }
    assert_eq!(roster(&members(&cluster, &["a"])), ["a", "b", "c"]);
    let id = cluster_id(&cluster, "a");
    assert_eq!(cluster_id(&cluster, "b"), id);
    assert_eq!(cluster_id(&cluster, "c"), id);

    // A reboot of a member with data: the cluster lists it, nothing to negotiate.
    let again = static_join(&cluster, &nodes[1], "b");
    assert_eq!(again.static_start, Some(StaticStart::Known), "{again:?}");
}

#[test]
fn a_member_held_back_at_first_boot_joins_the_same_cluster_as_a_voter() {
    let names = ["a", "b", "c"];
    let mut cluster =
        EtcdCluster::reserve_all(&names, trust().etcd_server("cluster").unwrap()).unwrap();
    let initial = cluster.static_initial(&names);
    let nodes: Vec<Node> = names.iter().map(|n| member_node(n)).collect();

    let outcomes = join_together(&cluster, &nodes[..2], &names[..2]);
    assert!(
        outcomes
            .iter()
            .all(|o| o.static_start == Some(StaticStart::Bootstrap)),
        "{outcomes:?}"
    );
    for (name, node) in names[..2].iter().zip(&nodes) {
        cluster.start_unit(name, &initial, &env_file(node)).unwrap();
    }
    let up = Instant::now();
    for name in ["a", "b"] {
        cluster.wait_healthy(name).unwrap();
    }
    trust()
        .etcdctl_root(&cluster.member("a").endpoint(), &["put", "/first", "boot"])
        .unwrap();
    // c boots 20 s after the others.
    std::thread::sleep(Duration::from_secs(20).saturating_sub(up.elapsed()));

    let started = Instant::now();
    let outcome = static_join(&cluster, &nodes[2], "c");
    assert!(
        started.elapsed() < BOOTSTRAP_AFTER,
        "a leader answers at once"
    );
    assert_eq!(outcome.static_start, None, "{outcome:?}");
    // Its member from the static bootstrap was waiting for it: used as it is (a voter).
    assert!(
        !outcome.added && outcome.replaced.is_empty() && outcome.env_written,
        "{outcome:?}"
    );
    let env = std::fs::read_to_string(env_file(&nodes[2])).unwrap();
    assert_eq!(env_value(&env, "ETCD_INITIAL_CLUSTER_STATE"), "existing");
    assert_eq!(env_value(&env, "ETCD_INITIAL_CLUSTER"), initial);
    cluster
        .start_unit("c", &initial, &env_file(&nodes[2]))
        .unwrap();
    cluster.wait_healthy("c").unwrap();

    assert_eq!(roster(&members(&cluster, &["c"])), ["a", "b", "c"]);
    assert_eq!(cluster_id(&cluster, "c"), cluster_id(&cluster, "a"));
    assert_eq!(local_value(&cluster, "c", "/first"), "boot");
}

#[test]
fn a_wiped_static_member_is_replaced_under_its_name_and_promoted() {
    let names = ["a", "b", "c"];
    let mut cluster = start_cluster(&names);
    let initial = cluster.static_initial(&names);
    trust()
        .etcdctl_root(&cluster.member("a").endpoint(), &["put", "/before", "kept"])
        .unwrap();
    let id = cluster_id(&cluster, "a");
    let old_c = members(&cluster, &["a"])
        .into_iter()
        .find(|m| m.name == "c")
        .unwrap()
        .id;
    cluster.stop("c").unwrap();
    cluster.wipe("c").unwrap();

    let mut node = member_node("c");
    let outcome = static_join(&cluster, &node, "c");
    assert_eq!(outcome.static_start, None, "{outcome:?}");
    assert!(outcome.added, "{outcome:?}");
    assert_eq!(
        outcome.replaced,
        ["c"],
        "the dead member of this name went first"
    );
    cluster.start_unit("c", &initial, &env_file(&node)).unwrap();
    cluster.wait_serving("c").unwrap();
    assert_eq!(
        roster(&members(&cluster, &["a"])),
        ["a", "b", "c*"],
        "re-added as a learner"
    );

    // The node's boot converge promotes it once it has caught up.
    node.config.etcd.endpoints = cluster.endpoints();
    node.write_config();
    let report = node.converge(Stage::Boot, None, &RecordingSystemd::default());
    let member_step = step(&report, "etcd-member");
    assert_eq!(member_step.state, State::Changed, "{member_step:?}");
    assert!(
        member_step.detail.contains("promoted learner c"),
        "{member_step:?}"
    );

    let after = members(&cluster, &["c"]);
    assert_eq!(roster(&after), ["a", "b", "c"], "no dead entry, no learner");
    assert_ne!(after.iter().find(|m| m.name == "c").unwrap().id, old_c);
    assert_eq!(cluster_id(&cluster, "c"), id);
    assert_eq!(local_value(&cluster, "c", "/before"), "kept");
}

#[test]
fn a_member_with_data_is_not_held_back_while_the_others_are_down() {
    let names = ["a", "b", "c"];
    let mut cluster = start_cluster(&names);
    let initial = cluster.static_initial(&names);
    trust()
        .etcdctl_root(
            &cluster.member("a").endpoint(),
            &["put", "/before", "power cut"],
        )
        .unwrap();
    let id = cluster_id(&cluster, "a");
    // The whole rack loses power.
    for name in names {
        cluster.stop(name).unwrap();
    }
    let nodes: Vec<Node> = names.iter().map(|n| member_node(n)).collect();
    std::fs::create_dir_all(env_file(&nodes[0]).parent().unwrap()).unwrap();
    std::fs::write(env_file(&nodes[0]), "ETCD_INITIAL_CLUSTER_STATE=existing\n").unwrap();

    // Nobody answers: a's join does not hold etcd back beyond the fallback.
    let started = Instant::now();
    let outcome = static_join(&cluster, &nodes[0], "a");
    let took = started.elapsed();
    assert_eq!(
        outcome.static_start,
        Some(StaticStart::FromData),
        "{outcome:?}"
    );
    assert!(took < BOOTSTRAP_AFTER + SLACK, "{took:?}");
    assert!(!env_file(&nodes[0]).exists());
    cluster
        .start_unit("a", &initial, &env_file(&nodes[0]))
        .unwrap();

    // b comes up next: a's etcd does not serve clients before it has a quorum again (etcd
    // publishes itself through raft first), so b finds nobody either and starts from its data.
    let started = Instant::now();
    let outcome = static_join(&cluster, &nodes[1], "b");
    assert_eq!(
        outcome.static_start,
        Some(StaticStart::FromData),
        "{outcome:?}"
    );
    assert!(
        started.elapsed() < BOOTSTRAP_AFTER + SLACK,
        "{:?}",
        started.elapsed()
    );
    cluster
        .start_unit("b", &initial, &env_file(&nodes[1]))
        .unwrap();
    for name in ["a", "b"] {
        cluster.wait_healthy(name).unwrap();
    }
    assert_eq!(cluster_id(&cluster, "b"), id);
    assert_eq!(local_value(&cluster, "b", "/before"), "power cut");
    assert_eq!(roster(&members(&cluster, &["a"])), ["a", "b", "c"]);

    // c, last: the cluster (with a leader now) lists it, so it starts from its data at once.
    let started = Instant::now();
    let outcome = static_join(&cluster, &nodes[2], "c");
    assert_eq!(
        outcome.static_start,
        Some(StaticStart::Known),
        "{outcome:?}"
    );
    assert!(
        started.elapsed() < BOOTSTRAP_AFTER,
        "{:?}",
        started.elapsed()
    );
    cluster
        .start_unit("c", &initial, &env_file(&nodes[2]))
        .unwrap();
    cluster.wait_healthy("c").unwrap();
}

#[test]
fn a_member_added_to_the_profile_joins_as_a_learner_and_is_promoted() {
    let mut cluster = start_cluster(&["a", "b", "c"]);
    let id = cluster_id(&cluster, "a");
    cluster.reserve("d").unwrap();
    // The profile now lists four members; d's unit says so, with state new.
    let grown = cluster.static_initial(&["a", "b", "c", "d"]);
    let node = member_node("d");

    let outcome = static_join(&cluster, &node, "d");
    assert_eq!(outcome.static_start, None, "{outcome:?}");
    assert!(outcome.added && outcome.replaced.is_empty(), "{outcome:?}");
    let env = std::fs::read_to_string(env_file(&node)).unwrap();
    assert_eq!(env_value(&env, "ETCD_INITIAL_CLUSTER_STATE"), "existing");
    assert_eq!(env_value(&env, "ETCD_INITIAL_CLUSTER"), grown);
    cluster.start_unit("d", &grown, &env_file(&node)).unwrap();
    cluster.wait_serving("d").unwrap();
    assert_eq!(roster(&members(&cluster, &["a"])), ["a", "b", "c", "d*"]);

    let promoted = block_on(async {
        let mut etcd = session(&cluster, &["a", "b", "c"]).await;
        membership::promote_by_name(&mut etcd, "d", Duration::from_secs(30)).await
    })
    .unwrap_or_else(|e| panic!("promote d: {e:#}"));
    assert!(promoted);
    assert_eq!(roster(&members(&cluster, &["d"])), ["a", "b", "c", "d"]);
    assert_eq!(cluster_id(&cluster, "d"), id);
}

#[test]
fn the_join_does_not_wait_for_a_converge_that_restarts_etcd() {
    // A converge holds the node lock while it restarts etcd (renewed certificates) and waits
    // for it; etcd's ExecStartPre join must not wait for that lock in turn.
    let node = member_node("a");
    let held =
        NodeLock::acquire(&node.path(LOCK_PATH), "mc converge (test)", Duration::ZERO).unwrap();
    let dead = format!("https://127.0.0.1:{}", molten_testkit::free_port().unwrap());
    let data = tempfile::tempdir().unwrap();
    let root = node.root.path().to_str().unwrap().to_string();
    let data_dir = data.path().to_str().unwrap().to_string();
    let started = Instant::now();
    let out = run_mc(
        &[
            "etcd-join",
            "--root",
            &root,
            "--etcd",
            &dead,
            "--data-dir",
            &data_dir,
            "--bootstrap-after",
            "1",
        ],
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let said = text(&out.stdout);
    assert!(
        said.contains("no etcd cluster with a leader answered within 1s")
            && said.contains("etcd bootstraps from its static initial cluster"),
        "{said}"
    );
    drop(held);
}

#[test]
fn a_wiped_member_never_bootstraps_while_the_cluster_has_no_leader() {
    let names = ["a", "b", "c"];
    let mut cluster = start_cluster(&names);
    // b and c go down and c's disk is wiped: a still answers its member list (etcd 3.4 serves
    // it from its local view) but has no leader, and it lists c as a member that ran.
    cluster.stop("b").unwrap();
    cluster.stop("c").unwrap();
    cluster.wipe("c").unwrap();
    // a keeps its leader for up to an election timeout after losing its peers: until then the
    // join would find "a cluster with a leader" and (rightly) refuse the removal for quorum.
    let a = cluster.member("a").endpoint();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let look = block_on(membership::list_at(&a, &root_tls(), Duration::from_secs(2)));
        match look {
            Ok((_, 0)) => break,
            _ if Instant::now() > deadline => panic!("a still has a leader or no answer: {look:?}"),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }

    let node = member_node("c");
    let mut opts = options(&cluster, &node, "c");
    opts.retry.budget = Duration::from_secs(3);
    let started = Instant::now();
    let err = block_on(join(&opts)).expect_err("a wiped member must not bootstrap");
    let took = started.elapsed();
    let text = format!("{err:#}");
    assert!(
        text.contains("etcd member c is in the cluster but this node's data dir holds no member")
            && text.contains("cannot be replaced until a quorum of the other members runs"),
        "{text}"
    );
    assert!(
        !text.contains("  "),
        "one sentence, no runs of blanks: {text}"
    );
    assert!(
        took >= BOOTSTRAP_AFTER + opts.retry.budget,
        "it kept looking for a leader for the retry budget: {took:?}"
    );
    assert!(
        !env_file(&node).exists(),
        "no negotiated environment was written"
    );
}
