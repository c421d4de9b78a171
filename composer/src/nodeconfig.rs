//! Cluster + node + the node's plan → the node config the agent reads (`/etc/molten/node.json`).

use molten_contract::{EtcdSettings, NodeConfig, NodeIdentity, TrustSettings, NODE_CONFIG_VERSION};

use crate::model::{Cluster, Node};
use crate::plan::NodePlan;

/// The complete node config for `node`.
pub fn node_config(
    cluster: &Cluster,
    node: &Node,
    plan: &NodePlan,
    trust: &TrustSettings,
) -> NodeConfig {
    NodeConfig {
        version: NODE_CONFIG_VERSION,
        cluster: cluster.name.clone(),
        os: cluster.os,
        node: NodeIdentity {
            name: node.name.clone(),
            zone: node.zone,
            roles: node.roles.clone(),
            address: plan.address.clone(),
        },
        etcd: EtcdSettings {
            endpoints: plan.etcd_endpoints.clone(),
            snapshots: cluster.etcd.snapshots.clone(),
        },
        flannel: cluster.flannel.settings.clone(),
        docker: cluster.docker.clone(),
        bosh: cluster.bosh.clone(),
        trust: trust.clone(),
    }
}
