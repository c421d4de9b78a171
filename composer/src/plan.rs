//! The per-node plan: everything a platform decides for each node before any Ignition is built —
//! where the node learns its private address, which etcd endpoints it dials, how its etcd member
//! bootstraps, where it fetches the agent and how inline files may be encoded. The platform
//! makes the plan (`platform::Target::plan_node`); the Ignition stage only follows it, so it
//! knows no platform and re-checks nothing.

use std::net::Ipv4Addr;

use molten_contract::{AddressSource, Role};

use crate::error::ComposeError;
use crate::model::{Cluster, Node};

/// Where nodes fetch the agent from and the sha512 (lowercase hex) it must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSource {
    pub url: String,
    pub sha512: String,
}

/// How inline contents may be encoded: a property of the platform, never guessed from the
/// contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InlineEncoding {
    /// The smaller of percent-encoded text and gzip + base64.
    #[default]
    Smallest,
    /// Always percent-encoded text: the platform edits the config text after composing
    /// (packet's Terraform `replace()`s a placeholder inside node configs).
    PlainText,
}

/// What every node of a bundle gets alike: the agent's source and the inline encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub agent: AgentSource,
    pub inline_encoding: InlineEncoding,
}

/// A metadata agent that writes the node's addresses into an environment file at boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootMetadata {
    /// The unit that writes the file (units that read it order after it).
    pub unit: &'static str,
    pub env_file: &'static str,
    /// The variable in `env_file` holding the node's private IPv4 address.
    pub private_ipv4_var: &'static str,
}

/// How this node's etcd member starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EtcdPlan {
    /// Not an etcd member.
    NotMember,
    /// Every member's address is in the profile: a static initial cluster of all members.
    Static {
        ip: Ipv4Addr,
        /// `name=http://ip:peer,...`, every member in profile order.
        initial_cluster: String,
    },
    /// The address exists only at boot (read from `metadata`): the first member starts a
    /// one-member cluster, every other one joins through it before its etcd starts.
    AtBoot {
        metadata: BootMetadata,
        /// The client URL of the member to join through; `None` for the one that starts alone.
        join_through: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePlan {
    pub address: AddressSource,
    /// The etcd client URLs this node's agent and flanneld dial.
    pub etcd_endpoints: Vec<String>,
    pub etcd: EtcdPlan,
    /// The metadata agent the boot converge must wait for, when addresses come from one.
    pub metadata: Option<BootMetadata>,
    pub delivery: Delivery,
    /// The disk that keeps `/var/lib/molten` and etcd's data when the root does not persist
    /// (ipxe from RAM); `None` where the root persists.
    pub data_disk: Option<String>,
}

/// `https://<host>:<port>`: an etcd client or peer URL (etcd takes only mutual TLS).
pub fn etcd_url(host: impl std::fmt::Display, port: u16) -> String {
    format!("https://{host}:{port}")
}

/// The plan of a node whose address is the profile's (every platform but those that assign
/// addresses at boot): every etcd member at `https://<ip>:<client port>`, a static initial cluster.
pub fn static_plan(
    cluster: &Cluster,
    node: &Node,
    platform: &str,
    delivery: &Delivery,
) -> Result<NodePlan, ComposeError> {
    let ip = node.ip.ok_or_else(|| {
        ComposeError::invalid_at(
            &node.origin,
            format!(
                "node {} has no ip; platform {platform} needs one for every node",
                node.name
            ),
        )
    })?;
    let members = member_addresses(cluster)?;
    let etcd_endpoints = members
        .iter()
        .map(|(_, ip)| etcd_url(ip, cluster.etcd.client_port))
        .collect();
    let etcd = if node.has_role(Role::Etcd) {
        let initial_cluster = members
            .iter()
            .map(|(name, ip)| format!("{name}={}", etcd_url(ip, cluster.etcd.peer_port)))
            .collect::<Vec<_>>()
            .join(",");
        EtcdPlan::Static {
            ip,
            initial_cluster,
        }
    } else {
        EtcdPlan::NotMember
    };
    Ok(NodePlan {
        address: AddressSource::Static { private_ip: ip },
        etcd_endpoints,
        etcd,
        metadata: None,
        delivery: delivery.clone(),
        data_disk: None,
    })
}

/// `(name, ip)` of every etcd member in profile order; at least one.
fn member_addresses(cluster: &Cluster) -> Result<Vec<(&str, Ipv4Addr)>, ComposeError> {
    let mut members = Vec::new();
    for member in cluster.etcd_members() {
        let ip = member.ip.ok_or_else(|| {
            ComposeError::invalid_at(
                &member.origin,
                format!("etcd member {} has no ip", member.name),
            )
        })?;
        members.push((member.name.as_str(), ip));
    }
    if members.is_empty() {
        return Err(no_etcd_member());
    }
    Ok(members)
}

/// A cluster without an etcd member (the profile stage refuses one; this guards other callers).
pub fn no_etcd_member() -> ComposeError {
    ComposeError::invalid("$.nodes", "no node has the etcd role")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::sample::cluster;

    fn delivery() -> Delivery {
        Delivery {
            agent: AgentSource {
                url: "http://h/assets/mc".into(),
                sha512: "ab".into(),
            },
            inline_encoding: InlineEncoding::Smallest,
        }
    }

    #[test]
    fn static_endpoints_list_every_member() {
        let c = cluster(3, 1);
        let worker = static_plan(&c, &c.nodes[3], "vagrant", &delivery()).unwrap();
        assert_eq!(
            worker.etcd_endpoints,
            [
                "https://10.0.0.10:2379",
                "https://10.0.0.11:2379",
                "https://10.0.0.12:2379"
            ]
        );
        assert_eq!(
            worker.address,
            AddressSource::Static {
                private_ip: "10.0.0.13".parse().unwrap()
            }
        );
        assert_eq!(worker.etcd, EtcdPlan::NotMember);
        let member = static_plan(&c, &c.nodes[1], "vagrant", &delivery()).unwrap();
        assert_eq!(
            member.etcd,
            EtcdPlan::Static {
                ip: "10.0.0.11".parse().unwrap(),
                initial_cluster: "node-0=https://10.0.0.10:2380,node-1=https://10.0.0.11:2380,\
                                  node-2=https://10.0.0.12:2380"
                    .into(),
            }
        );
    }

    #[test]
    fn a_static_platform_needs_every_ip() {
        let mut c = cluster(1, 1);
        c.nodes[1].ip = None;
        let err = static_plan(&c, &c.nodes[1], "ipxe", &delivery()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "$.nodes[1]: node node-1 has no ip; platform ipxe needs one for every node"
        );
        c.nodes[1].ip = "10.0.0.11".parse().ok();
        c.nodes[0].ip = None;
        let err = static_plan(&c, &c.nodes[1], "ipxe", &delivery()).unwrap_err();
        assert_eq!(err.to_string(), "$.nodes[0]: etcd member node-0 has no ip");
    }
}
