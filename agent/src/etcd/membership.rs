//! etcd membership without etcdctl: list and probe members, add a learner, promote it once it
//! has caught up, remove a member — each call retried through the session, and each written so
//! that repeating it after a lost answer does no harm (an add first looks for the peer URL, a
//! remove for the member, a promote for the learner flag).

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use etcd_client::{Client, ConnectOptions, MemberAddOptions};
use serde::Serialize;

use super::quorum::{self, Vote};
use super::{Etcd, EtcdTls};

/// A member as the cluster lists it. Names and URLs come from etcd: shown escaped, never trusted
/// as anything but text (a client URL is only dialled after [`dialable`] accepts it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    pub id: u64,
    /// Empty until the member first starts.
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub learner: bool,
}

impl Member {
    /// Its name, or its id in hex when it has not started yet.
    pub fn label(&self) -> String {
        if self.name.is_empty() {
            format!("{:x}", self.id)
        } else {
            self.name.clone()
        }
    }
}

/// What a member says about itself (etcd's Status call).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberStatus {
    /// The leader's member id as this member knows it (0: no leader).
    pub leader: u64,
    pub raft_index: u64,
    pub raft_term: u64,
    pub db_size: i64,
    pub learner: bool,
    pub version: String,
}

/// A member and whether it answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberHealth {
    pub member: Member,
    pub status: Option<MemberStatus>,
    pub error: Option<String>,
}

/// How long one member may take to answer a status probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest URL we dial or print.
const MAX_URL: usize = 256;
/// What etcd 3.4 answers while a learner is still behind the leader.
const NOT_IN_SYNC: &str = "in sync with leader";

pub async fn list(etcd: &mut Etcd) -> Result<Vec<Member>> {
    etcd.run("etcd member list", |mut client| async move {
        members_of(&mut client).await
    })
    .await
}

/// One endpoint's member list and the leader it knows (0: none), asked once with no retry.
/// etcd 3.4 lists members from its local view even without a leader; 3.5 may not answer then.
pub async fn list_at(
    endpoint: &str,
    tls: &EtcdTls,
    timeout: Duration,
) -> Result<(Vec<Member>, u64)> {
    let mut client = client_at(endpoint, tls, timeout).await?;
    let members = members_of(&mut client).await?;
    let leader = client.status().await.context("etcd status")?.leader();
    Ok((members, leader))
}

/// A client of the one member at `url`, every call bounded by `timeout`. For the looks and
/// probes that must reach one member in particular, never another (the session fails over).
async fn client_at(
    url: &str,
    tls: &EtcdTls,
    timeout: Duration,
) -> Result<Client, etcd_client::Error> {
    let options = ConnectOptions::new()
        .with_connect_timeout(timeout)
        .with_timeout(timeout)
        .with_tls(tls.options());
    Client::connect([url], Some(options)).await
}

/// The member list as the member `client` talks to sees it.
async fn members_of(client: &mut Client) -> Result<Vec<Member>> {
    let resp = client.member_list().await.context("etcd member list")?;
    Ok(resp.members().iter().map(to_member).collect())
}

fn to_member(m: &etcd_client::Member) -> Member {
    Member {
        id: m.id(),
        name: m.name().to_string(),
        peer_urls: m.peer_urls().to_vec(),
        client_urls: m.client_urls().to_vec(),
        learner: m.is_learner(),
    }
}

/// Asks every member for its status, each on its own client URL within [`PROBE_TIMEOUT`].
/// The probes run concurrently, so dead members cost one timeout in all, not one each.
pub async fn probe(members: &[Member], tls: &EtcdTls) -> Vec<MemberHealth> {
    let mut probes = tokio::task::JoinSet::new();
    for (index, member) in members.iter().cloned().enumerate() {
        let tls = tls.clone();
        probes.spawn(async move {
            let (status, error) = match probe_one(&member, &tls).await {
                Ok(status) => (Some(status), None),
                Err(err) => (None, Some(format!("{err:#}"))),
            };
            let health = MemberHealth {
                member,
                status,
                error,
            };
            (index, health)
        });
    }
    let mut done: Vec<Option<MemberHealth>> = vec![None; members.len()];
    while let Some(joined) = probes.join_next().await {
        if let Ok((index, health)) = joined {
            done[index] = Some(health);
        }
    }
    members
        .iter()
        .zip(done)
        .map(|(member, health)| {
            health.unwrap_or_else(|| MemberHealth {
                member: member.clone(),
                status: None,
                error: Some("the probe itself failed".into()),
            })
        })
        .collect()
}

async fn probe_one(member: &Member, tls: &EtcdTls) -> Result<MemberStatus> {
    let url = member
        .client_urls
        .iter()
        .find(|u| dialable(u))
        .with_context(|| {
            if member.client_urls.is_empty() {
                "no client URL (not started)".to_string()
            } else {
                "no usable client URL".to_string()
            }
        })?;
    let attempt = async {
        let mut client = client_at(url, tls, PROBE_TIMEOUT).await?;
        client.status().await
    };
    let resp = tokio::time::timeout(PROBE_TIMEOUT, attempt)
        .await
        .map_err(|_| anyhow::anyhow!("no answer from {url} within {PROBE_TIMEOUT:?}"))?
        .with_context(|| format!("status from {url}"))?;
    Ok(MemberStatus {
        leader: resp.leader(),
        raft_index: resp.raft_index(),
        raft_term: resp.raft_term(),
        db_size: resp.db_size(),
        learner: resp.is_learner(),
        version: resp.version().chars().take(32).collect(),
    })
}

/// An https URL (molten's etcd takes only mutual TLS) of sane length without whitespace or
/// control characters.
pub fn dialable(url: &str) -> bool {
    url.len() <= MAX_URL
        && url.starts_with("https://")
        && !url.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// The quorum rules' view of probed members.
pub fn votes(health: &[MemberHealth]) -> Vec<Vote> {
    health
        .iter()
        .map(|h| Vote {
            id: h.member.id,
            name: h.member.name.clone(),
            learner: h.member.learner,
            answers: h.status.is_some(),
        })
        .collect()
}

/// Adds `peer_url` as a learner unless a member already has it. Returns whether this call added
/// it, the new member, and every member after the change.
pub async fn add_learner(etcd: &mut Etcd, peer_url: &str) -> Result<(bool, Member, Vec<Member>)> {
    let what = format!("etcd member add --learner {peer_url}");
    etcd.run(&what, |mut client| async move {
        let members = members_of(&mut client).await?;
        if let Some(existing) = members.iter().find(|m| has_peer(m, peer_url)) {
            // An earlier attempt got through but its answer was lost, or a join before a crash.
            return Ok((false, existing.clone(), members));
        }
        let resp = client
            .member_add([peer_url], Some(MemberAddOptions::new().with_is_learner()))
            .await
            .with_context(|| format!("etcd member add --learner {peer_url}"))?;
        let added = resp
            .member()
            .map(to_member)
            .context("etcd member add answered without the member")?;
        Ok((
            true,
            added,
            resp.member_list().iter().map(to_member).collect(),
        ))
    })
    .await
}

/// Removes member `id`; Ok(false) when it was gone already.
pub async fn remove(etcd: &mut Etcd, id: u64) -> Result<bool> {
    let what = format!("etcd member remove {id:x}");
    etcd.run(&what, |mut client| async move {
        let resp = client.member_list().await.context("etcd member list")?;
        if !resp.members().iter().any(|m| m.id() == id) {
            return Ok(false);
        }
        client
            .member_remove(id)
            .await
            .with_context(|| format!("etcd member remove {id:x}"))?;
        Ok(true)
    })
    .await
}

/// Promotes learner `id`, waiting (up to `wait`) while etcd says it has not caught up yet.
/// Ok(false) when it is a voter already.
///
/// The promote goes to the leader's own client URL. etcd 3.4 forwards a promote that reaches a
/// follower to the leader without the caller's identity; with auth on, the leader refuses it
/// ("auth: user name is empty", etcd-io/etcd#20757, fixed only in later releases) and the
/// follower keeps forwarding until the request times out, while the leader logs every refusal.
pub async fn promote(etcd: &mut Etcd, id: u64, wait: Duration) -> Result<bool> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(250);
    let tls = etcd.tls().clone();
    loop {
        let what = format!("etcd member promote {id:x}");
        let result = etcd
            .run(&what, |mut client| {
                let tls = tls.clone();
                async move {
                    let members = members_of(&mut client).await?;
                    match members.iter().find(|m| m.id == id) {
                        None => bail!("member {id:x} is not in the cluster"),
                        Some(m) if !m.learner => return Ok(false),
                        Some(_) => {}
                    }
                    let leader = client.status().await.context("etcd status")?.leader();
                    let mut at_leader = leader_client(&members, leader, &tls).await?;
                    at_leader
                        .as_mut()
                        .unwrap_or(&mut client)
                        .member_promote(id)
                        .await
                        .with_context(|| format!("etcd member promote {id:x}"))?;
                    Ok(true)
                }
            })
            .await;
        match result {
            Err(err) if format!("{err:#}").contains(NOT_IN_SYNC) && started.elapsed() < wait => {
                tracing::debug!(member = %format!("{id:x}"), "learner not caught up yet");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            Err(err) if format!("{err:#}").contains(NOT_IN_SYNC) => {
                return Err(err).with_context(|| {
                    format!(
                        "the learner did not catch up with the leader within {:.0}s",
                        wait.as_secs_f64()
                    )
                })
            }
            other => return other,
        }
    }
}

/// How long connecting to the leader and its answer to a promote may take.
const LEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// A client of the leader `leader` alone, on its client URL; None when the cluster has no leader
/// now or the leader lists no usable URL (the caller's own client then takes the request).
async fn leader_client(members: &[Member], leader: u64, tls: &EtcdTls) -> Result<Option<Client>> {
    let Some(url) = members
        .iter()
        .find(|m| m.id == leader && leader != 0)
        .and_then(|m| m.client_urls.iter().find(|u| dialable(u)))
    else {
        return Ok(None);
    };
    let client = client_at(url, tls, LEADER_TIMEOUT)
        .await
        .with_context(|| format!("connecting to the etcd leader at {url}"))?;
    Ok(Some(client))
}

/// Removes the member called `name` after checking that the cluster keeps its quorum.
pub async fn remove_by_name(etcd: &mut Etcd, name: &str) -> Result<Member> {
    let members = list(etcd).await?;
    let target = find_named(&members, name)?.clone();
    let health = probe(&members, etcd.tls()).await;
    quorum::check_remove(&votes(&health), target.id)
        .with_context(|| format!("refusing to remove {name}"))?;
    remove(etcd, target.id).await?;
    Ok(target)
}

/// Promotes the learner called `name` once it has caught up, after checking quorum.
pub async fn promote_by_name(etcd: &mut Etcd, name: &str, wait: Duration) -> Result<bool> {
    let members = list(etcd).await?;
    let target = find_named(&members, name)?.clone();
    if !target.learner {
        return Ok(false);
    }
    let health = probe(&members, etcd.tls()).await;
    quorum::check_promote(&votes(&health), target.id)
        .with_context(|| format!("refusing to promote {name}"))?;
    promote(etcd, target.id, wait).await
}

/// For a converge on a member: promotes this node's learner once it has caught up (waiting up
/// to `wait`). Ok(None) when there is nothing to do: it is a voter, or not a member yet (that is
/// `mc etcd-join`'s business, before etcd starts).
pub async fn promote_self(etcd: &mut Etcd, name: &str, wait: Duration) -> Result<Option<String>> {
    let members = list(etcd).await?;
    match members.iter().find(|m| m.name == name) {
        Some(me) if me.learner => {}
        _ => return Ok(None),
    }
    let promoted = promote_by_name(etcd, name, wait).await?;
    Ok(promoted.then(|| format!("promoted learner {name} to a voting member")))
}

/// The member named `name`; an error listing the names there are otherwise.
pub fn find_named<'a>(members: &'a [Member], name: &str) -> Result<&'a Member> {
    members.iter().find(|m| m.name == name).with_context(|| {
        format!(
            "no etcd member is named {name:?}; members: {}",
            members
                .iter()
                .map(Member::label)
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

pub fn has_peer(member: &Member, peer_url: &str) -> bool {
    member.peer_urls.iter().any(|u| u == peer_url)
}
