//! etcd membership without etcdctl, against real three- to five-member etcd 3.4 clusters on
//! 127.0.0.1 with mutual TLS (the operator's root identity, and each node's own): a wiped member re-joins under its name, new members join as learners and are
//! promoted, members are removed, and removals that would lose quorum are refused.

use std::time::Duration;

use mc::converge::{Stage, State};
use mc::etcd::membership::{self, Member};
use mc::etcd_join::{join, JoinOptions, JoinOutcome};
use molten_testkit::etcd_cluster::EtcdCluster;

use super::support::*;

/// `mc etcd-join` for member `name` through the running members' endpoints.
fn join_member(cluster: &EtcdCluster, node: &Node, name: &str) -> JoinOutcome {
    let member = cluster.member(name);
    let through: Vec<String> = cluster
        .endpoints()
        .into_iter()
        .filter(|e| *e != member.endpoint())
        .collect();
    let options = JoinOptions {
        root: node.root.path().to_path_buf(),
        config: None,
        etcd: Some(through),
        peer_port: member.peer_port,
        env_file: None,
        data_dir: Some(member.data_dir()),
        retry: MEMBERSHIP_RETRY,
        bootstrap_after: None,
    };
    block_on(join(&options)).unwrap_or_else(|e| panic!("join {name}: {e:#}"))
}

fn names(members: &[Member]) -> Vec<String> {
    let mut names: Vec<String> = members.iter().map(Member::label).collect();
    names.sort();
    names
}

/// Joins `name`, starts it with the environment the join wrote, promotes it.
fn join_start_promote(cluster: &mut EtcdCluster, node: &Node, name: &str, through: &[&str]) {
    let outcome = join_member(cluster, node, name);
    assert!(outcome.added, "{outcome:?}");
    cluster
        .start_existing(name, &outcome.initial_cluster)
        .unwrap();
    let learner = members(cluster, through);
    let me = learner.iter().find(|m| m.name == name).unwrap();
    assert!(me.learner, "joined as a learner: {learner:?}");
    let promoted = block_on(async {
        let mut etcd = session(cluster, through).await;
        membership::promote_by_name(&mut etcd, name, Duration::from_secs(30)).await
    })
    .unwrap_or_else(|e| panic!("promote {name}: {e:#}"));
    assert!(promoted);
}

#[test]
fn a_wiped_member_rejoins_under_its_name_with_no_dead_entry_left() {
    let mut cluster = start_cluster(&["a", "b", "c"]);
    let before = members(&cluster, &["a"]);
    let old_c = before.iter().find(|m| m.name == "c").unwrap().id;
    cluster.stop("c").unwrap();
    cluster.wipe("c").unwrap();

    let mut node = member_node("c");
    let outcome = join_member(&cluster, &node, "c");
    assert!(outcome.added, "{outcome:?}");
    assert_eq!(
        outcome.replaced,
        ["c"],
        "the old member of this name went first"
    );
    cluster
        .start_existing("c", &outcome.initial_cluster)
        .unwrap();
    // The node's boot converge promotes its learner once it has caught up.
    node.config.etcd.endpoints = vec![
        cluster.member("a").endpoint(),
        cluster.member("b").endpoint(),
    ];
    node.write_config();
    let report = node.converge(Stage::Boot, None, &RecordingSystemd::default());
    let member_step = step(&report, "etcd-member");
    assert_eq!(member_step.state, State::Changed, "{member_step:?}");
    assert!(
        member_step.detail.contains("promoted learner c"),
        "{member_step:?}"
    );

    let after = members(&cluster, &["a", "c"]);
    assert_eq!(names(&after), ["a", "b", "c"], "{after:?}");
    let new_c = after.iter().find(|m| m.name == "c").unwrap();
    assert_ne!(
        new_c.id, old_c,
        "a new member, not the old ID with empty data"
    );
    assert!(after.iter().all(|m| !m.learner), "{after:?}");
    // The re-joined member serves writes as a voter.
    trust()
        .etcdctl_root(&cluster.member("c").endpoint(), &["put", "/k", "v"])
        .unwrap();

    // A reboot of c (data kept): the join finds it and changes nothing.
    cluster.stop("c").unwrap();
    let again = join_member(&cluster, &node, "c");
    assert!(
        !again.added && again.replaced.is_empty() && !again.env_written,
        "{again:?}"
    );
    cluster.restart("c").unwrap();
    assert_eq!(names(&members(&cluster, &["a"])), ["a", "b", "c"]);
}

#[test]
fn the_cluster_grows_to_five_and_shrinks_back_to_three() {
    let mut cluster = start_cluster(&["a", "b", "c"]);
    let mut nodes = Vec::new();
    for name in ["d", "e"] {
        cluster.reserve(name).unwrap();
        let node = member_node(name);
        join_start_promote(&mut cluster, &node, name, &["a", "b", "c"]);
        nodes.push(node);
    }
    let five = members(&cluster, &["a"]);
    assert_eq!(names(&five), ["a", "b", "c", "d", "e"]);
    assert!(five.iter().all(|m| !m.learner), "{five:?}");

    for name in ["e", "d"] {
        let removed = block_on(async {
            let mut etcd = session(&cluster, &["a", "b"]).await;
            membership::remove_by_name(&mut etcd, name).await
        })
        .unwrap_or_else(|e| panic!("remove {name}: {e:#}"));
        assert_eq!(removed.name, name);
        cluster.discard(name).unwrap();
    }
    assert_eq!(names(&members(&cluster, &["a"])), ["a", "b", "c"]);
    trust()
        .etcdctl_root(&cluster.member("b").endpoint(), &["put", "/k", "v"])
        .unwrap();
}

#[test]
fn removals_that_would_lose_quorum_are_refused_saying_why() {
    let mut cluster = start_cluster(&["a", "b", "c"]);
    cluster.stop("c").unwrap();
    let endpoints = format!(
        "{},{}",
        cluster.member("a").endpoint(),
        cluster.member("b").endpoint()
    );
    let limit = Duration::from_secs(60);

    // a answers: without it, b alone is not a quorum of the two left.
    let out = run_mc_root(&["etcd", "remove", "a", "--etcd", &endpoints], limit);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("refusing to remove a"), "{err}");
    assert!(err.contains("would lose quorum"), "{err}");
    assert!(err.contains("bring back c first"), "{err}");
    assert_eq!(names(&members(&cluster, &["a"])), ["a", "b", "c"]);

    // c is dead: removing it is what an operator should do.
    let out = run_mc_root(&["etcd", "remove", "c", "--etcd", &endpoints], limit);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("removed etcd member c"));
    assert_eq!(names(&members(&cluster, &["a"])), ["a", "b"]);

    let out = run_mc_root(&["etcd", "remove", "nobody", "--etcd", &endpoints], limit);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("no etcd member is named \"nobody\"; members: "),
        "{err}"
    );

    // The members table names the leader and both voters.
    let out = run_mc_root(&["etcd", "members", "--etcd", &endpoints], limit);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert_eq!(table.lines().count(), 3, "{table}");
    assert!(table.contains("leader"), "{table}");
}

#[test]
fn a_member_of_this_name_that_still_answers_is_not_replaced() {
    let cluster = start_cluster(&["a", "b", "c"]);
    // c's disk looks empty to this join, but the member named c runs: another machine.
    let node = member_node("c");
    let member = cluster.member("c");
    let empty = tempfile::tempdir().unwrap();
    let options = JoinOptions {
        root: node.root.path().to_path_buf(),
        config: None,
        etcd: Some(vec![cluster.member("a").endpoint()]),
        peer_port: member.peer_port,
        env_file: None,
        data_dir: Some(empty.path().to_path_buf()),
        retry: MEMBERSHIP_RETRY,
        bootstrap_after: None,
    };
    let err = block_on(join(&options)).unwrap_err().to_string();
    assert!(
        err.contains("answers at") && err.contains("refusing to replace"),
        "{err}"
    );
    assert_eq!(names(&members(&cluster, &["a"])), ["a", "b", "c"]);
}

/// With auth on (as on every molten cluster), etcd 3.4 forwards a promote that reaches a
/// follower to the leader without the caller's identity, the leader refuses it ("auth: user
/// name is empty", etcd-io/etcd#20757) and the follower retries until the request times out.
/// The promote must reach the leader itself, even through a session that knows only a follower.
#[test]
fn with_auth_on_a_learner_is_promoted_through_a_session_that_knows_only_a_follower() {
    let mut cluster = start_cluster(&["a", "b", "c"]);
    block_on(async {
        let etcd = session(&cluster, &["a", "b", "c"]).await;
        let mut client = etcd.client().unwrap();
        mc::etcd::rbac::bootstrap(&mut client, &[]).await.unwrap();
    });
    cluster.reserve("d").unwrap();
    let node = member_node("d");
    let outcome = join_member(&cluster, &node, "d");
    assert!(outcome.added, "{outcome:?}");
    cluster
        .start_existing("d", &outcome.initial_cluster)
        .unwrap();
    let health = block_on(async {
        let mut etcd = session(&cluster, &["a", "b", "c"]).await;
        let members = membership::list(&mut etcd).await.unwrap();
        membership::probe(&members, etcd.tls()).await
    });
    let leader = health
        .iter()
        .find_map(|h| h.status.as_ref().map(|s| s.leader).filter(|l| *l != 0))
        .expect("a leader");
    let name_of = |id: u64| {
        health
            .iter()
            .find(|h| h.member.id == id)
            .map(|h| h.member.name.clone())
            .unwrap()
    };
    let follower = health
        .iter()
        .find(|h| h.member.id != leader && !h.member.learner && h.member.name != "d")
        .map(|h| h.member.name.clone())
        .expect("a follower");

    let promoted = block_on(async {
        let mut etcd = session(&cluster, &[follower.as_str()]).await;
        membership::promote_by_name(&mut etcd, "d", Duration::from_secs(30)).await
    })
    .unwrap_or_else(|e| panic!("promote d through {follower}: {e:#}"));
    assert!(promoted);
    let after = members(&cluster, &["a"]);
    assert!(after.iter().all(|m| !m.learner), "{after:?}");
    let log = std::fs::read_to_string(cluster.member(&name_of(leader)).log_path()).unwrap();
    assert!(
        !log.contains("error promoting member") && !log.contains("failed to promote"),
        "the leader refused a forwarded promote:\n{}",
        log.lines()
            .filter(|l| l.contains("promot"))
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
    );
}
