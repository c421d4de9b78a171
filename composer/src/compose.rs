//! The compose driver: a validated cluster → every node's plan → its Ignition → the platform's
//! files → `SHA256SUMS`, all in memory (`output` writes it).

use crate::digest;
use crate::error::ComposeError;
use crate::ignition;
use crate::model::{Agent, Cluster, AGENT_ASSET};
use crate::platform::{Bundle, ComposedNode, Pinned, Platform};
use crate::trust::TrustInput;

/// Everything `molten compose` writes, in memory.
pub struct Composition {
    pub platform: Platform,
    pub bundle: Bundle,
    /// `(node, bytes of its full Ignition)`, in profile order.
    pub ignition_sizes: Vec<(String, usize)>,
}

/// Composes `cluster` for `platform` with its authority: every node is registered with it and
/// gets its `trust` section and its own token; etcd, flanneld and the pointer configs use TLS.
/// Then the platform's files, the agent binary where the bundle serves it, and `SHA256SUMS`.
pub fn compose(
    cluster: &Cluster,
    platform: Platform,
    trust: &TrustInput,
) -> Result<Composition, ComposeError> {
    let target = platform.target();
    let delivery = target.delivery(cluster)?;
    let mut bundle = Bundle::default();
    let mut plans = Vec::with_capacity(cluster.nodes.len());
    for node in &cluster.nodes {
        plans.push(target.plan_node(cluster, node, &delivery)?);
    }
    let pairs: Vec<_> = cluster.nodes.iter().zip(plans.iter()).collect();
    let composed_trust = crate::trust::prepare(cluster, &pairs, trust)?;
    let mut nodes = Vec::with_capacity(cluster.nodes.len());
    for (node, plan) in cluster.nodes.iter().zip(&plans) {
        let node_trust = composed_trust.node(&node.name).ok_or_else(|| {
            ComposeError::Internal(format!("node {} was not registered", node.name))
        })?;
        let built = ignition::node_ignition(cluster, node, plan, &node_trust)?;
        let json = ignition::to_json(&built.config);
        bundle.add(
            &target.ignition_path(node),
            json.clone().into_bytes(),
            0o644,
        )?;
        nodes.push(ComposedNode {
            node,
            ignition: json,
            pinned: Pinned {
                base_url: composed_trust.authority_url.clone(),
                ca_pem: composed_trust.authority_ca.clone(),
            },
        });
    }
    target.render(cluster, &nodes, &mut bundle)?;
    if let Agent::Local { path, sha512, .. } = &cluster.agent {
        bundle.add(AGENT_ASSET, read_agent(path, sha512)?, 0o755)?;
    }
    bundle.add_sha256sums()?;
    let ignition_sizes = nodes
        .iter()
        .map(|n| (n.node.name.clone(), n.ignition.len()))
        .collect();
    Ok(Composition {
        platform,
        bundle,
        ignition_sizes,
    })
}

/// The local agent, checked against the hash the profile stage computed (the Ignition carries
/// that hash, so a binary rebuilt in between would fail on every node).
fn read_agent(path: &std::path::Path, expected: &str) -> Result<Vec<u8>, ComposeError> {
    let bytes = std::fs::read(path).map_err(|source| ComposeError::AgentRead {
        path: path.display().to_string(),
        source,
    })?;
    let found = digest::sha512_hex(&bytes);
    if found != expected {
        return Err(ComposeError::AgentChanged {
            path: path.display().to_string(),
            found,
            expected: expected.to_string(),
        });
    }
    Ok(bytes)
}
