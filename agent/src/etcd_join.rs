//! `mc etcd-join`: before etcd starts on a member that joins an existing cluster, make the
//! cluster expect it and write the environment etcd starts with (`ETCD_INITIAL_CLUSTER` with
//! every member including this one, state `existing`).
//!
//! etcd's procedure, done here without etcdctl: a member whose data dir is empty joins as a
//! *learner* (it does not count towards quorum until `mc etcd promote` makes it a voter once it
//! has caught up). A member of our name or peer URL left from before (a wiped or replaced disk)
//! is removed first — reusing its ID with an empty data dir is what etcd refuses — unless it
//! still answers (then another machine runs under this name, and we stop). Data of a member the
//! cluster no longer knows is moved aside, never deleted.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::etcd::membership::{self, has_peer};
use crate::etcd::{quorum, Etcd, Retry};
use crate::fs::{under_root, write_if_changed, MODE_PUBLIC};

/// Where the environment file goes on a node; etcd's drop-in reads it.
pub const ENV_FILE: &str = "/run/molten/etcd-join.env";
pub const DEFAULT_PEER_PORT: u16 = 2380;
/// etcd's data dir on a node (Flatcar's etcd-member).
pub const DEFAULT_DATA_DIR: &str = "/var/lib/etcd";

#[derive(Debug, Clone)]
pub struct JoinOptions {
    pub root: PathBuf,
    pub config: Option<PathBuf>,
    pub etcd: Option<Vec<String>>,
    pub peer_port: u16,
    /// Output path; default `<root>/run/molten/etcd-join.env`.
    pub env_file: Option<PathBuf>,
    /// etcd's data dir as seen on the node; default [`DEFAULT_DATA_DIR`] under the root.
    pub data_dir: Option<PathBuf>,
    pub retry: Retry,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinOutcome {
    /// Whether this run added the member (false: it was a member already).
    pub added: bool,
    /// Members of this name or peer URL left from before, removed by this run.
    pub replaced: Vec<String>,
    /// Where data of a member the cluster no longer knows was moved.
    pub moved_aside: Option<PathBuf>,
    pub initial_cluster: String,
    pub env_file: PathBuf,
    pub env_written: bool,
}

/// A member as the join needs it: its name (empty until it first starts) and peer URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub peer_urls: Vec<String>,
}

pub async fn join(options: &JoinOptions) -> Result<JoinOutcome> {
    let config_path = options
        .config
        .clone()
        .unwrap_or_else(|| under_root(&options.root, molten_contract::NODE_CONFIG_PATH));
    let config = crate::converge::load_config(&config_path)?;
    let ip = crate::address::private_ip(&options.root, &config)?;
    let endpoints = options
        .etcd
        .clone()
        .unwrap_or(config.etcd.endpoints.clone());
    let name = config.node.name.clone();
    // Peers speak TLS, and adding a member needs the root identity (access control is on).
    let trust = crate::enroll::Settings::from_config(&config);
    let peer_url = peer_url(ip, options.peer_port);
    let data_dir = options
        .data_dir
        .clone()
        .unwrap_or_else(|| under_root(&options.root, DEFAULT_DATA_DIR));
    let tls =
        crate::converge::trust::etcd_tls(&options.root, &trust, crate::identity::Kind::EtcdAdmin)?;
    let mut etcd = Etcd::connect(&endpoints, options.retry, tls).await?;

    let members = membership::list(&mut etcd).await?;
    let has_data = member_data_present(&data_dir)?;
    let mut replaced = Vec::new();
    let mut moved_aside = None;
    let known = members
        .iter()
        .any(|m| m.name == name && has_peer(m, &peer_url));
    let added = if has_data && known {
        // A reboot: etcd starts from its own data.
        false
    } else {
        if has_data {
            moved_aside = Some(move_aside(&data_dir)?);
        }
        let ours: Vec<&membership::Member> = members
            .iter()
            .filter(|m| m.name == name || has_peer(m, &peer_url))
            .collect();
        // Added for this peer URL but never started (a join that crashed before etcd ran):
        // exactly what this member needs.
        let pending = ours
            .iter()
            .find(|m| m.name.is_empty() && has_peer(m, &peer_url))
            .map(|m| m.id);
        let stale: Vec<membership::Member> = ours
            .iter()
            .filter(|m| Some(m.id) != pending)
            .map(|m| (*m).clone())
            .collect();
        for old in &stale {
            replace_stale(&mut etcd, old, &name).await?;
            replaced.push(old.label());
        }
        if pending.is_some() {
            false
        } else {
            membership::add_learner(&mut etcd, &peer_url).await?.0
        }
    };
    let members: Vec<Member> = membership::list(&mut etcd)
        .await?
        .into_iter()
        .map(|m| Member {
            name: m.name,
            peer_urls: m.peer_urls,
        })
        .collect();
    let initial_cluster = initial_cluster(&members, &name, &peer_url)?;
    let env_file = options
        .env_file
        .clone()
        .unwrap_or_else(|| under_root(&options.root, ENV_FILE));
    let env = env_text(&name, &initial_cluster);
    let env_written = write_if_changed(&env_file, env.as_bytes(), MODE_PUBLIC)?;
    Ok(JoinOutcome {
        added,
        replaced,
        moved_aside,
        initial_cluster,
        env_file,
        env_written,
    })
}

/// Removes a member that holds this node's name or peer URL from before, unless it answers
/// (then it is not ours to remove) or removing it would lose quorum.
async fn replace_stale(etcd: &mut Etcd, old: &membership::Member, name: &str) -> Result<()> {
    let all = membership::list(etcd).await?;
    let health = membership::probe(&all, etcd.tls()).await;
    if let Some(alive) = health
        .iter()
        .find(|h| h.member.id == old.id && h.status.is_some())
    {
        bail!(
            "etcd member {} ({:x}) has this node's name or peer URL and answers at {}: another \
             machine runs as {name}, or this node's etcd already runs; refusing to replace it",
            alive.member.label(),
            alive.member.id,
            alive.member.client_urls.join(",")
        );
    }
    quorum::check_remove(&membership::votes(&health), old.id)
        .with_context(|| format!("cannot replace the old member {} of this node", old.label()))?;
    tracing::warn!(member = %old.label(), id = %format!("{:x}", old.id), "removing this node's old etcd member: its data is gone");
    membership::remove(etcd, old.id).await?;
    Ok(())
}

/// Whether etcd left a member's data in `data_dir` (a WAL file): then it restarts from it.
pub fn member_data_present(data_dir: &Path) -> Result<bool> {
    let wal = data_dir.join("member").join("wal");
    match std::fs::read_dir(&wal) {
        Ok(entries) => {
            for entry in entries {
                let entry = entry.with_context(|| format!("failed to list {}", wal.display()))?;
                if entry.file_name().to_string_lossy().ends_with(".wal") {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("failed to list {}", wal.display())),
    }
}

/// Moves `<data_dir>/member` to `<data_dir>/member.removed-<unix seconds>`.
fn move_aside(data_dir: &Path) -> Result<PathBuf> {
    let from = data_dir.join("member");
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let to = data_dir.join(format!("member.removed-{secs}"));
    std::fs::rename(&from, &to)
        .with_context(|| format!("failed to move {} to {}", from.display(), to.display()))?;
    tracing::warn!(from = %from.display(), to = %to.display(), "this node's etcd data belongs to a member the cluster no longer has: moved aside");
    Ok(to)
}

pub fn peer_url(ip: Ipv4Addr, port: u16) -> String {
    format!("https://{ip}:{port}")
}

fn is_us(member: &Member, name: &str, peer_url: &str) -> bool {
    member.name == name || member.peer_urls.iter().any(|u| u == peer_url)
}

/// `name=peer,...` for every member, this node included (it has no name until it starts).
pub fn initial_cluster(members: &[Member], name: &str, peer_url: &str) -> Result<String> {
    let mut parts = Vec::new();
    for m in members {
        let member_name = if is_us(m, name, peer_url) {
            name
        } else if m.name.is_empty() {
            bail!(
                "another member ({}) was added but has not started yet; etcd adds one member at a \
                 time: start it first, then run mc etcd-join again",
                m.peer_urls.join(",")
            );
        } else {
            &m.name
        };
        let url = m
            .peer_urls
            .first()
            .with_context(|| format!("member {member_name} has no peer URL"))?;
        parts.push(format!("{member_name}={url}"));
    }
    parts.sort();
    Ok(parts.join(","))
}

pub fn env_text(name: &str, initial_cluster: &str) -> String {
    format!(
        "# Written by mc etcd-join: this member joins an existing cluster.\n\
         ETCD_NAME={name}\n\
         ETCD_INITIAL_CLUSTER={initial_cluster}\n\
         ETCD_INITIAL_CLUSTER_STATE=existing\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, url: &str) -> Member {
        Member {
            name: name.into(),
            peer_urls: vec![url.into()],
        }
    }

    #[test]
    fn initial_cluster_names_this_unstarted_member() {
        let members = [
            m("seed", "https://10.0.0.1:2380"),
            m("", "https://10.0.0.2:2380"),
        ];
        let text = initial_cluster(&members, "node-1", "https://10.0.0.2:2380").unwrap();
        assert_eq!(
            text,
            "node-1=https://10.0.0.2:2380,seed=https://10.0.0.1:2380"
        );
    }

    #[test]
    fn another_unstarted_member_is_an_error() {
        let members = [
            m("seed", "https://10.0.0.1:2380"),
            m("", "https://10.0.0.3:2380"),
        ];
        let err = initial_cluster(&members, "node-1", "https://10.0.0.2:2380").unwrap_err();
        assert!(err.to_string().contains("10.0.0.3"), "{err}");
    }

    #[test]
    fn env_file_says_existing() {
        let text = env_text("n1", "n1=https://a:2380");
        assert!(text.contains("ETCD_INITIAL_CLUSTER_STATE=existing\n"));
        assert!(text.contains("ETCD_NAME=n1\n"));
    }
}
