//! Cluster + node (+ platform) → the node config the agent reads (`/etc/molten/node.json`).
//!
//! Where the platform fixes addresses (vagrant, ipxe) every etcd endpoint is
//! `http://<member ip>:<client port>`, one per member, in profile order.
//!
//! On packet the addresses exist only at boot, so the endpoints follow the seed design in
//! `docs/architecture.md`: the seed (first etcd member) dials its own etcd on loopback, every
//! other node dials the seed at [`PACKET_SEED_TOKEN`], a placeholder that the Terraform output
//! replaces with the seed's private address (`replace(file(...), TOKEN, ip)`), and the other
//! members also dial their own etcd on loopback first.

use molten_contract::{
    AddressSource, EtcdSettings, NodeConfig, NodeIdentity, Role, NODE_CONFIG_VERSION,
};

use crate::model::{Cluster, Node, Platform};
use crate::platform::ComposeError;

/// Afterburn's (Flatcar's `coreos-metadata.service`) metadata environment file on packet.
pub const PACKET_METADATA_ENV: &str = "/run/metadata/flatcar";

/// The variable in [`PACKET_METADATA_ENV`] holding the node's private IPv4 address.
pub const PACKET_PRIVATE_IPV4_VAR: &str = "COREOS_PACKET_IPV4_PRIVATE_0";

/// Stands for the packet seed's private IPv4 address in every non-seed node's Ignition. Only
/// URL-unreserved characters, so it survives percent-encoding inside data URLs unchanged, and
/// the Terraform output can substitute it in the whole file with one `replace`.
pub const PACKET_SEED_TOKEN: &str = "__MOLTEN_SEED_PRIVATE_IPV4__";

/// `http://<host>:<port>`: an etcd client or peer URL.
pub fn etcd_url(host: impl std::fmt::Display, port: u16) -> String {
    format!("http://{host}:{port}")
}

/// The packet seed: the first etcd member in profile order.
pub fn packet_seed(cluster: &Cluster) -> Option<&Node> {
    cluster.etcd_members().next()
}

/// The node's private address; only packet leaves it to the platform.
pub fn address_source(node: &Node, platform: Platform) -> Result<AddressSource, ComposeError> {
    if platform == Platform::Packet {
        return Ok(AddressSource::PacketMetadata {
            env_file: PACKET_METADATA_ENV.to_string(),
        });
    }
    let ip = node.ip.ok_or_else(|| {
        ComposeError::invalid_at(
            &node.origin,
            format!(
                "node {} has no ip; platform {platform} needs one for every node",
                node.name
            ),
        )
    })?;
    Ok(AddressSource::Static { private_ip: ip })
}

/// The etcd client URLs this node's agent and flanneld dial.
pub fn etcd_endpoints(
    cluster: &Cluster,
    node: &Node,
    platform: Platform,
) -> Result<Vec<String>, ComposeError> {
    let port = cluster.etcd.client_port;
    if platform == Platform::Packet {
        let seed = packet_seed(cluster).ok_or_else(no_etcd_member)?;
        let loopback = etcd_url("127.0.0.1", port);
        let via_seed = etcd_url(PACKET_SEED_TOKEN, port);
        return Ok(if node.name == seed.name {
            vec![loopback]
        } else if node.has_role(Role::Etcd) {
            vec![loopback, via_seed]
        } else {
            vec![via_seed]
        });
    }
    let mut endpoints = Vec::new();
    for member in cluster.etcd_members() {
        let ip = member.ip.ok_or_else(|| {
            ComposeError::invalid_at(
                &member.origin,
                format!("etcd member {} has no ip", member.name),
            )
        })?;
        endpoints.push(etcd_url(ip, port));
    }
    if endpoints.is_empty() {
        return Err(no_etcd_member());
    }
    Ok(endpoints)
}

fn no_etcd_member() -> ComposeError {
    ComposeError::invalid("$.nodes", "no node has the etcd role")
}

/// The complete node config for `node`.
pub fn node_config(
    cluster: &Cluster,
    node: &Node,
    platform: Platform,
) -> Result<NodeConfig, ComposeError> {
    Ok(NodeConfig {
        version: NODE_CONFIG_VERSION,
        cluster: cluster.name.clone(),
        os: cluster.os,
        node: NodeIdentity {
            name: node.name.clone(),
            zone: node.zone,
            roles: node.roles.clone(),
            address: address_source(node, platform)?,
        },
        etcd: EtcdSettings {
            endpoints: etcd_endpoints(cluster, node, platform)?,
        },
        flannel: cluster.flannel.settings.clone(),
        docker: cluster.docker.clone(),
        bosh: cluster.bosh.clone(),
        trust: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::sample::cluster;

    #[test]
    fn static_endpoints_list_every_member() {
        let c = cluster(3, 1);
        let worker = &c.nodes[3];
        let config = node_config(&c, worker, Platform::Vagrant).unwrap();
        assert_eq!(
            config.etcd.endpoints,
            [
                "http://10.0.0.10:2379",
                "http://10.0.0.11:2379",
                "http://10.0.0.12:2379"
            ]
        );
        assert_eq!(
            config.node.address,
            AddressSource::Static {
                private_ip: "10.0.0.13".parse().unwrap()
            }
        );
        assert_eq!(config.cluster, "dev");
    }

    #[test]
    fn packet_endpoints_follow_the_seed_design() {
        let c = cluster(3, 1);
        let endpoints = |i: usize| node_config(&c, &c.nodes[i], Platform::Packet).unwrap();
        assert_eq!(endpoints(0).etcd.endpoints, ["http://127.0.0.1:2379"]);
        assert_eq!(
            endpoints(1).etcd.endpoints,
            [
                "http://127.0.0.1:2379",
                "http://__MOLTEN_SEED_PRIVATE_IPV4__:2379"
            ]
        );
        assert_eq!(
            endpoints(3).etcd.endpoints,
            ["http://__MOLTEN_SEED_PRIVATE_IPV4__:2379"]
        );
        assert_eq!(
            endpoints(3).node.address,
            AddressSource::PacketMetadata {
                env_file: "/run/metadata/flatcar".into()
            }
        );
    }

    #[test]
    fn a_static_platform_needs_every_ip() {
        let mut c = cluster(1, 1);
        c.nodes[1].ip = None;
        let err = node_config(&c, &c.nodes[1], Platform::Ipxe).unwrap_err();
        assert_eq!(
            err.to_string(),
            "$.nodes[1]: node node-1 has no ip; platform ipxe needs one for every node"
        );
    }
}
