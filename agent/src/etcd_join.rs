//! `mc etcd-join`: before etcd starts on a non-seed member (packet), add this node to the
//! existing cluster through the configured endpoints and write the environment etcd starts with
//! (`ETCD_INITIAL_CLUSTER` with every member including this one, state `existing`).

use std::net::Ipv4Addr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use etcd_client::Client;

use crate::etcd::{self, Retry};
use crate::fs::{under_root, write_if_changed, MODE_PUBLIC};

/// Where the environment file goes on a node; etcd's drop-in reads it.
pub const ENV_FILE: &str = "/run/molten/etcd-join.env";
pub const DEFAULT_PEER_PORT: u16 = 2380;

#[derive(Debug, Clone)]
pub struct JoinOptions {
    pub root: PathBuf,
    pub config: Option<PathBuf>,
    pub etcd: Option<Vec<String>>,
    pub peer_port: u16,
    /// Output path; default `<root>/run/molten/etcd-join.env`.
    pub env_file: Option<PathBuf>,
    pub retry: Retry,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinOutcome {
    /// Whether this run added the member (false: it was a member already).
    pub added: bool,
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
    let peer_url = peer_url(ip, options.peer_port);
    let mut client = etcd::connect(&endpoints, options.retry).await?;

    let members = list(&mut client).await?;
    let (added, members) = if members.iter().any(|m| is_us(m, &name, &peer_url)) {
        (false, members)
    } else {
        let resp = client
            .member_add([peer_url.as_str()], None)
            .await
            .with_context(|| {
                format!(
                    "etcd member add {name} {peer_url} via {}",
                    endpoints.join(",")
                )
            })?;
        let members = resp.member_list().iter().map(to_member).collect();
        (true, members)
    };
    let initial_cluster = initial_cluster(&members, &name, &peer_url)?;
    let env_file = options
        .env_file
        .clone()
        .unwrap_or_else(|| under_root(&options.root, ENV_FILE));
    let env = env_text(&name, &initial_cluster);
    let env_written = write_if_changed(&env_file, env.as_bytes(), MODE_PUBLIC)?;
    Ok(JoinOutcome {
        added,
        initial_cluster,
        env_file,
        env_written,
    })
}

pub fn peer_url(ip: Ipv4Addr, port: u16) -> String {
    format!("http://{ip}:{port}")
}

async fn list(client: &mut Client) -> Result<Vec<Member>> {
    let resp = client.member_list().await.context("etcd member list")?;
    Ok(resp.members().iter().map(to_member).collect())
}

fn to_member(m: &etcd_client::Member) -> Member {
    Member {
        name: m.name().to_string(),
        peer_urls: m.peer_urls().to_vec(),
    }
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
            m("seed", "http://10.0.0.1:2380"),
            m("", "http://10.0.0.2:2380"),
        ];
        let text = initial_cluster(&members, "node-1", "http://10.0.0.2:2380").unwrap();
        assert_eq!(
            text,
            "node-1=http://10.0.0.2:2380,seed=http://10.0.0.1:2380"
        );
    }

    #[test]
    fn another_unstarted_member_is_an_error() {
        let members = [
            m("seed", "http://10.0.0.1:2380"),
            m("", "http://10.0.0.3:2380"),
        ];
        let err = initial_cluster(&members, "node-1", "http://10.0.0.2:2380").unwrap_err();
        assert!(err.to_string().contains("10.0.0.3"), "{err}");
    }

    #[test]
    fn env_file_says_existing() {
        let text = env_text("n1", "n1=http://a:2380");
        assert!(text.contains("ETCD_INITIAL_CLUSTER_STATE=existing\n"));
        assert!(text.contains("ETCD_NAME=n1\n"));
    }
}
