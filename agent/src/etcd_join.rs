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
//!
//! Members whose addresses come from the profile ("static" members) run it too, with
//! `--bootstrap-after SECS`: when no cluster with a leader answers within SECS, it gets out of
//! etcd's way instead of failing — an empty data dir bootstraps from the static settings (a new
//! cluster's first boot), a data dir with data restarts from it (a whole rack powered on at once).
//! See [`StaticStart`].

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::etcd::membership::{self, has_peer};
use crate::etcd::{quorum, Etcd, EtcdTls, Retry};
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
    /// Static members only: how long to look for a cluster with a leader before leaving etcd to
    /// its static settings or its data ([`StaticStart`]). None (packet joiners): the cluster
    /// must answer within the retry budget, or the join fails.
    pub bootstrap_after: Option<Duration>,
}

/// Why a static member's etcd starts without a negotiated environment (the env file is removed,
/// so the unit's static `ETCD_INITIAL_CLUSTER` and state `new` apply, or etcd's own data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaticStart {
    /// Data dir empty and no cluster with a leader answered in time: a new cluster's first boot;
    /// etcd bootstraps from the static initial cluster (state `new`).
    Bootstrap,
    /// The data dir has a member and the cluster lists it: etcd restarts from its data.
    Known,
    /// The data dir has a member and no cluster with a leader answered in time (every member
    /// restarting at once): etcd restarts from its data rather than wait.
    FromData,
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
    /// Set when the join left etcd to its static settings or data; nothing else was done then.
    pub static_start: Option<StaticStart>,
}

/// A member as the join needs it: its name (empty until it first starts) and peer URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
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
    let env_file = options
        .env_file
        .clone()
        .unwrap_or_else(|| under_root(&options.root, ENV_FILE));
    let has_data = member_data_present(&data_dir)?;
    if let Some(after) = options.bootstrap_after {
        let me = Me {
            name: &name,
            peer_url: &peer_url,
            has_data,
        };
        if let Some(start) = look_for_cluster(&endpoints, &tls, &me, after, options.retry).await? {
            remove_env_file(&env_file)?;
            return Ok(JoinOutcome {
                added: false,
                replaced: Vec::new(),
                moved_aside: None,
                initial_cluster: String::new(),
                env_file,
                env_written: false,
                static_start: Some(start),
            });
        }
    }
    let mut etcd = Etcd::connect(&endpoints, options.retry, tls).await?;

    let members = membership::list(&mut etcd).await?;
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
        // Added for this peer URL but never started (a join that crashed before etcd ran, or
        // a member of a static first boot held back): exactly what this member needs. A
        // member that never started has published no client URL.
        let pending = ours
            .iter()
            .find(|m| m.client_urls.is_empty() && has_peer(m, &peer_url))
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
            id: m.id,
            name: m.name,
            peer_urls: m.peer_urls,
        })
        .collect();
    let initial_cluster = initial_cluster(&members, &name, &peer_url)?;
    let env = env_text(&name, &initial_cluster);
    let env_written = write_if_changed(&env_file, env.as_bytes(), MODE_PUBLIC)?;
    Ok(JoinOutcome {
        added,
        replaced,
        moved_aside,
        initial_cluster,
        env_file,
        env_written,
        static_start: None,
    })
}

/// This member as the look for a cluster needs it.
struct Me<'a> {
    name: &'a str,
    peer_url: &'a str,
    has_data: bool,
}

/// How long one endpoint may take to answer a look.
const LOOK_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between two looks.
const LOOK_PAUSE: Duration = Duration::from_millis(500);

/// What one endpoint answered: the members as it sees them and the leader it knows (0: none).
/// etcd 3.4 lists members from its local view even without a leader; 3.5 may not answer then.
struct Look {
    members: Vec<membership::Member>,
    leader: u64,
}

/// A static member's look for its cluster before etcd starts. Ok(None): a cluster with a leader
/// answers, negotiate with it. Ok(Some(start)): leave etcd to its static settings or its data.
///
/// - Data kept and any member lists this one (same name and peer URL): [`StaticStart::Known`]
///   at once, leader or not (a reboot needs nothing from the cluster).
/// - No leader anywhere within `after`: [`StaticStart::FromData`] with data, else
///   [`StaticStart::Bootstrap`] — unless a member list names this node as a member that has
///   started before: its data is gone, and bootstrapping again with the same member ID and an
///   empty log is what etcd refuses. Then it keeps looking for a leader for the retry budget
///   and fails saying why (the unit's restart tries again).
async fn look_for_cluster(
    endpoints: &[String],
    tls: &EtcdTls,
    me: &Me<'_>,
    after: Duration,
    retry: Retry,
) -> Result<Option<StaticStart>> {
    crate::etcd::check_endpoints(endpoints)?;
    let started = Instant::now();
    let mut lost_member = false;
    loop {
        let looks = look_all(endpoints, tls).await;
        for look in &looks {
            let listed = look
                .members
                .iter()
                .any(|m| m.name == me.name && has_peer(m, me.peer_url));
            if me.has_data && listed {
                return Ok(Some(StaticStart::Known));
            }
            if !me.has_data
                && look
                    .members
                    .iter()
                    .any(|m| m.name == me.name && !m.client_urls.is_empty())
            {
                lost_member = true;
            }
        }
        if looks.iter().any(|l| l.leader != 0) {
            return Ok(None);
        }
        let waited = started.elapsed();
        if waited >= after && !lost_member {
            let start = if me.has_data {
                StaticStart::FromData
            } else {
                StaticStart::Bootstrap
            };
            tracing::warn!(
                answered = looks.len(),
                "no etcd cluster with a leader answered within {}s: {}",
                after.as_secs(),
                match start {
                    StaticStart::FromData => "etcd restarts from its data",
                    _ => "etcd bootstraps from the static initial cluster",
                }
            );
            return Ok(Some(start));
        }
        if lost_member && waited >= after + retry.budget {
            bail!(
                "etcd member {} is in the cluster but this node's data dir holds no member (its \
                 data is gone), and no member of the cluster has a leader after {}s: it cannot \
                 be replaced until a quorum of the other members runs",
                me.name,
                waited.as_secs()
            );
        }
        tokio::time::sleep(LOOK_PAUSE).await;
    }
}

/// Asks every endpoint at once for its member list and leader; the ones that answered.
async fn look_all(endpoints: &[String], tls: &EtcdTls) -> Vec<Look> {
    let mut looks = tokio::task::JoinSet::new();
    for endpoint in endpoints {
        let endpoint = endpoint.clone();
        let tls = tls.clone();
        looks.spawn(async move {
            let result = tokio::time::timeout(LOOK_TIMEOUT, look_one(&endpoint, &tls)).await;
            match result {
                Ok(Ok(look)) => Some(look),
                Ok(Err(err)) => {
                    tracing::debug!(%endpoint, error = %format!("{err:#}"), "etcd: no member list");
                    None
                }
                Err(_) => None,
            }
        });
    }
    let mut answered = Vec::new();
    while let Some(joined) = looks.join_next().await {
        if let Ok(Some(look)) = joined {
            answered.push(look);
        }
    }
    answered
}

async fn look_one(endpoint: &str, tls: &EtcdTls) -> Result<Look> {
    let (members, leader) = membership::list_at(endpoint, tls, LOOK_TIMEOUT).await?;
    Ok(Look { members, leader })
}

/// Removes a join's environment left from before, so etcd starts from the static settings.
fn remove_env_file(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("failed to remove {}", path.display())),
    }
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
/// Other members that have not started yet appear as `unstarted-<id>`.
pub fn initial_cluster(members: &[Member], name: &str, peer_url: &str) -> Result<String> {
    let mut parts = Vec::new();
    let mut placeholder;
    for m in members {
        let member_name = if is_us(m, name, peer_url) {
            name
        } else if m.name.is_empty() {
            // Another member that has not started yet (of a static first boot, or a join in
            // progress). etcd matches an existing cluster's members by peer URL, not by name,
            // so any name unique in the list will do.
            placeholder = format!("unstarted-{:x}", m.id);
            &placeholder
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
            id: url.len() as u64,
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
    fn another_unstarted_member_gets_a_placeholder_name() {
        // A static first boot with two members held back: the other one has no name yet.
        let mut other = m("", "https://10.0.0.3:2380");
        other.id = 0xabc;
        let members = [
            m("seed", "https://10.0.0.1:2380"),
            m("", "https://10.0.0.2:2380"),
            other,
        ];
        let text = initial_cluster(&members, "node-1", "https://10.0.0.2:2380").unwrap();
        assert_eq!(
            text,
            "node-1=https://10.0.0.2:2380,seed=https://10.0.0.1:2380,\
             unstarted-abc=https://10.0.0.3:2380"
        );
    }

    #[test]
    fn env_file_says_existing() {
        let text = env_text("n1", "n1=https://a:2380");
        assert!(text.contains("ETCD_INITIAL_CLUSTER_STATE=existing\n"));
        assert!(text.contains("ETCD_NAME=n1\n"));
    }
}
