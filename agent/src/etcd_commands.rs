//! `mc etcd ...`: membership (and, later, snapshots) for operators, without etcdctl.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::cli::{EtcdCommand, NodeArgs};
use crate::commands::{exit, session};
use crate::etcd::membership::{self, MemberHealth};

pub async fn run(command: EtcdCommand) -> Result<ExitCode> {
    match command {
        EtcdCommand::Members { node, json } => {
            let mut etcd = session(&node).await?;
            let members = membership::list(&mut etcd).await?;
            let health = membership::probe(&members, etcd.tls()).await;
            if json {
                println!("{}", serde_json::to_string_pretty(&health)?);
            } else {
                print!("{}", table(&health));
            }
            Ok(exit(health.iter().all(|h| h.status.is_some())))
        }
        EtcdCommand::Remove { node, name } => {
            let mut etcd = session(&node).await?;
            let removed = membership::remove_by_name(&mut etcd, &name).await?;
            println!(
                "removed etcd member {} ({:x}); the cluster no longer waits for it",
                removed.label(),
                removed.id
            );
            Ok(ExitCode::SUCCESS)
        }
        EtcdCommand::Promote { node, name, wait } => {
            let name = match name {
                Some(name) => name,
                None => node_name(&node)?,
            };
            let mut etcd = session(&node).await?;
            let promoted =
                membership::promote_by_name(&mut etcd, &name, Duration::from_secs(wait)).await?;
            if promoted {
                println!("promoted {name} to a voting member");
            } else {
                println!("{name} is a voting member already");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn node_name(node: &NodeArgs) -> Result<String> {
    let path = node
        .config
        .clone()
        .unwrap_or_else(|| crate::fs::under_root(&node.root, molten_contract::NODE_CONFIG_PATH));
    Ok(crate::converge::load_config(&path)
        .context("no member name given, so it comes from the node config")?
        .node
        .name)
}

/// One line per member: name, id, role, raft index and lag behind the leader, db size, or why
/// it did not answer. Names and errors come from the network: control characters are replaced.
pub fn table(health: &[MemberHealth]) -> String {
    let leader = health
        .iter()
        .filter_map(|h| h.status.as_ref().map(|s| s.leader))
        .find(|l| *l != 0);
    let leader_index = health
        .iter()
        .find(|h| Some(h.member.id) == leader)
        .and_then(|h| h.status.as_ref().map(|s| s.raft_index));
    let mut out = format!(
        "{:<16} {:<16} {:<8} {:>10} {:>6} {:>10}  {}\n",
        "MEMBER", "ID", "ROLE", "RAFT-INDEX", "LAG", "DB-SIZE", "CLIENT-URL / ERROR"
    );
    for h in health {
        let role = if Some(h.member.id) == leader {
            "leader"
        } else if h.member.learner {
            "learner"
        } else {
            "voter"
        };
        let url = h
            .member
            .client_urls
            .first()
            .map(String::as_str)
            .unwrap_or("-");
        let (index, lag, size, note) = match &h.status {
            Some(s) => (
                s.raft_index.to_string(),
                leader_index
                    .map(|l| l.saturating_sub(s.raft_index).to_string())
                    .unwrap_or_else(|| "?".into()),
                human_bytes(s.db_size),
                url.to_string(),
            ),
            None => (
                "-".into(),
                "-".into(),
                "-".into(),
                format!("DOWN: {}", h.error.as_deref().unwrap_or("no answer")),
            ),
        };
        out.push_str(&format!(
            "{:<16} {:<16x} {:<8} {:>10} {:>6} {:>10}  {}\n",
            clean(&h.member.label(), 40),
            h.member.id,
            role,
            index,
            lag,
            size,
            clean(&note, 200)
        ));
    }
    if leader.is_none() {
        out.push_str("no member knows a leader: the cluster has no quorum\n");
    }
    out
}

fn human_bytes(bytes: i64) -> String {
    let b = bytes.max(0) as f64;
    if b >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / 1024.0 / 1024.0)
    } else if b >= 1024.0 {
        format!("{:.0} KiB", b / 1024.0)
    } else {
        format!("{bytes} B")
    }
}

/// At most `max` characters, control characters shown as `?`.
pub fn clean(text: &str, max: usize) -> String {
    text.chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::etcd::membership::{Member, MemberStatus};

    fn health(id: u64, name: &str, index: Option<u64>) -> MemberHealth {
        MemberHealth {
            member: Member {
                id,
                name: name.into(),
                peer_urls: vec![],
                client_urls: vec![format!("http://10.0.0.{id}:2379")],
                learner: false,
            },
            status: index.map(|raft_index| MemberStatus {
                leader: 1,
                raft_index,
                raft_term: 2,
                db_size: 20480,
                learner: false,
                version: "3.4.23".into(),
            }),
            error: index.is_none().then(|| "connection refused".to_string()),
        }
    }

    #[test]
    fn the_table_shows_leader_lag_and_dead_members_with_names_escaped() {
        let text = table(&[
            health(1, "a", Some(100)),
            health(2, "b\u{1b}[2J", Some(97)),
            health(3, "c", None),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[1].starts_with("a ") && lines[1].contains("leader"),
            "{text}"
        );
        assert!(
            lines[2].contains("b?[2J") && lines[2].contains("     3 "),
            "{text}"
        );
        assert!(lines[2].contains("20 KiB"), "{text}");
        assert!(lines[3].contains("DOWN: connection refused"), "{text}");
        assert!(!text.contains('\u{1b}'));
    }
}
