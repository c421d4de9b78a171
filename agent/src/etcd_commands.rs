//! `mc etcd ...`: membership (and, later, snapshots) for operators, without etcdctl.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::cli::{EtcdCommand, NodeArgs, RestoreArgs, SnapshotArgs};
use crate::etcd::membership::{self, MemberHealth};
use crate::etcd::snapshot::{self, RestoreOptions, SnapshotRecord};
use crate::etcd::Etcd;
use crate::node_access::{admin_session, exit, session};

pub async fn run(command: EtcdCommand) -> Result<ExitCode> {
    match command {
        EtcdCommand::Members { node, json } => {
            let mut etcd = session(&node).await?;
            let members = member_reports(&mut etcd).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&members)?);
            } else {
                print!("{}", table(&members));
            }
            Ok(exit(members.iter().all(|m| m.health.status.is_some())))
        }
        EtcdCommand::Remove { node, name } => {
            let mut etcd = admin_session(&node).await?;
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
            let mut etcd = admin_session(&node).await?;
            let promoted =
                membership::promote_by_name(&mut etcd, &name, Duration::from_secs(wait)).await?;
            if promoted {
                println!("promoted {name} to a voting member");
            } else {
                println!("{name} is a voting member already");
            }
            Ok(ExitCode::SUCCESS)
        }
        EtcdCommand::Snapshot(args) => take_snapshot(args).await,
        EtcdCommand::Restore(args) => restore(args),
    }
}

async fn take_snapshot(args: SnapshotArgs) -> Result<ExitCode> {
    let name = node_name(&args.node)?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| crate::fs::under_root(&args.node.root, snapshot::SNAPSHOT_DIR));
    let mut etcd = admin_session(&args.node).await?;
    let record = snapshot::take(&mut etcd, &name, &dir, args.keep).await?;
    println!(
        "saved {} ({} bytes, sha256 {}) in {:.1}s",
        record.file,
        record.bytes,
        record.sha256,
        record.duration_ms as f64 / 1000.0
    );
    // Published for mc status; the snapshot is good even when this fails.
    let key = molten_contract::keys::etcd_snapshot(&name);
    let value = serde_json::to_string(&record)?;
    let published = etcd
        .run("publishing the snapshot record", |mut client| {
            let (key, value) = (key.clone(), value.clone());
            async move { crate::etcd::put(&mut client, &key, &value).await }
        })
        .await;
    if let Err(err) = published {
        eprintln!("mc: warning: the snapshot is saved but {key} was not updated: {err:#}");
    }
    Ok(ExitCode::SUCCESS)
}

fn restore(args: RestoreArgs) -> Result<ExitCode> {
    let config_path = args
        .config
        .clone()
        .unwrap_or_else(|| crate::fs::under_root(&args.root, molten_contract::NODE_CONFIG_PATH));
    let config = match (&args.name, &args.peer_url) {
        (Some(_), Some(_)) => None,
        _ => Some(
            crate::converge::load_config(&config_path)
                .context("no --name/--peer-url given, so they come from the node config")?,
        ),
    };
    let name = match (&args.name, &config) {
        (Some(name), _) => name.clone(),
        (None, Some(config)) => config.node.name.clone(),
        (None, None) => unreachable!("the config is loaded when --name is missing"),
    };
    let peer_url = match (&args.peer_url, &config) {
        (Some(url), _) => url.clone(),
        (None, Some(config)) => crate::etcd_join::peer_url(
            crate::address::private_ip(&args.root, config)?,
            crate::etcd_join::DEFAULT_PEER_PORT,
        ),
        (None, None) => unreachable!("the config is loaded when --peer-url is missing"),
    };
    let snapshot = match args.snapshot.clone() {
        Some(path) => path,
        None => {
            let dir = crate::fs::under_root(&args.root, snapshot::SNAPSHOT_DIR);
            snapshot::list(&dir)?.pop().with_context(|| {
                format!("no --snapshot given and no snapshot in {}", dir.display())
            })?
        }
    };
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| crate::fs::under_root(&args.root, crate::etcd_join::DEFAULT_DATA_DIR));
    let took = snapshot::restore(&RestoreOptions {
        snapshot: snapshot.clone(),
        data_dir: data_dir.clone(),
        name: name.clone(),
        peer_url: peer_url.clone(),
        etcdctl: args.etcdctl,
    })?;
    println!(
        "restored {} into {} as the one-member cluster {name}={peer_url} in {:.1}s.\n\
         Next: start etcd here; on every other member stop etcd, move its data dir aside and \
         start it again (mc etcd-join adds it as a learner, its converge promotes it).",
        snapshot.display(),
        data_dir.display(),
        took.as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

fn node_name(node: &NodeArgs) -> Result<String> {
    let path = node
        .config
        .clone()
        .unwrap_or_else(|| crate::fs::under_root(&node.root, molten_contract::NODE_CONFIG_PATH));
    Ok(crate::converge::load_config(&path)
        .context("no member name given, so it comes from the node config")?
        .node
        .name
        .clone())
}

/// A member's health and the last snapshot it recorded.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MemberReport {
    #[serde(flatten)]
    pub health: MemberHealth,
    pub last_snapshot: Option<SnapshotRecord>,
}

/// The largest snapshot record read from etcd; anything bigger is not ours.
const MAX_RECORD: usize = 4096;

/// Every member, probed, with the last snapshot record published under its name.
pub async fn member_reports(etcd: &mut Etcd) -> Result<Vec<MemberReport>> {
    let members = membership::list(etcd).await?;
    let health = membership::probe(&members, etcd.tls()).await;
    let records = etcd
        .run("reading snapshot records", |mut client| async move {
            crate::etcd::get_prefix(&mut client, molten_contract::keys::SNAPSHOTS_PREFIX).await
        })
        .await?;
    Ok(health
        .into_iter()
        .map(|health| {
            let key = molten_contract::keys::etcd_snapshot(&health.member.name);
            // A record that does not parse is shown as no snapshot: it affects only its member.
            let last_snapshot = records
                .iter()
                .find(|(k, v)| *k == key && v.len() <= MAX_RECORD)
                .and_then(|(_, v)| serde_json::from_str::<SnapshotRecord>(v).ok());
            MemberReport {
                health,
                last_snapshot,
            }
        })
        .collect())
}

/// One line per member: name, id, role, raft index and lag behind the leader, db size, the age of
/// its last snapshot, or why it did not answer. Names and errors come from the network: control
/// characters are replaced.
pub fn table(members: &[MemberReport]) -> String {
    table_at(members, crate::timestamp::now())
}

fn table_at(members: &[MemberReport], now: time::OffsetDateTime) -> String {
    let health: Vec<&MemberHealth> = members.iter().map(|m| &m.health).collect();
    let leader = health
        .iter()
        .filter_map(|h| h.status.as_ref().map(|s| s.leader))
        .find(|l| *l != 0);
    let leader_index = health
        .iter()
        .find(|h| Some(h.member.id) == leader)
        .and_then(|h| h.status.as_ref().map(|s| s.raft_index));
    let mut out = format!(
        "{:<16} {:<16} {:<8} {:>10} {:>6} {:>10} {:>9}  {}\n",
        "MEMBER", "ID", "ROLE", "RAFT-INDEX", "LAG", "DB-SIZE", "SNAPSHOT", "CLIENT-URL / ERROR"
    );
    for (h, report) in health.iter().zip(members) {
        let snapshot = report
            .last_snapshot
            .as_ref()
            .map(|r| age(&r.taken, now))
            .unwrap_or_else(|| "never".into());
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
            "{:<16} {:<16x} {:<8} {:>10} {:>6} {:>10} {:>9}  {}\n",
            clean(&h.member.label(), 40),
            h.member.id,
            role,
            index,
            lag,
            size,
            snapshot,
            clean(&note, 200)
        ));
    }
    if leader.is_none() {
        out.push_str("no member knows a leader: the cluster has no quorum\n");
    }
    out
}

/// "42s ago", "3h ago", "2d ago"; "?" when the time does not parse.
fn age(taken: &str, now: time::OffsetDateTime) -> String {
    let Some(taken) = crate::timestamp::parse_rfc3339(taken) else {
        return "?".into();
    };
    let secs = (now - taken).whole_seconds().max(0);
    match secs {
        0..60 => format!("{secs}s ago"),
        60..3600 => format!("{}m ago", secs / 60),
        3600..86400 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86400),
    }
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

    fn health(id: u64, name: &str, index: Option<u64>) -> MemberReport {
        let health = MemberHealth {
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
        };
        let last_snapshot = (id == 1).then(|| SnapshotRecord {
            node: name.into(),
            taken: "2026-11-30T10:00:00Z".into(),
            file: "/var/lib/molten/etcd-snapshots/snapshot-20261130T100000Z.db".into(),
            bytes: 1,
            sha256: "00".into(),
            duration_ms: 1,
        });
        MemberReport {
            health,
            last_snapshot,
        }
    }

    #[test]
    fn the_table_shows_leader_lag_and_dead_members_with_names_escaped() {
        let now = crate::timestamp::parse_rfc3339("2026-11-30T13:30:00Z").unwrap();
        let text = table_at(
            &[
                health(1, "a", Some(100)),
                health(2, "b\u{1b}[2J", Some(97)),
                health(3, "c", None),
            ],
            now,
        );
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
