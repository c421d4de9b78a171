//! The node config as the agent uses it: read and checked once, with the values derived from it
//! (the node's flannel subnet), so no step re-derives or re-checks them.

use std::ops::Deref;
use std::path::Path;

use anyhow::{Context, Result};
use ipnet::Ipv4Net;
use molten_contract::NodeConfig;

/// A node config that loaded and whose derived values exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    node: NodeConfig,
    /// This node's flannel subnet (`node.zone` within `flannel.network`).
    pub subnet: Ipv4Net,
}

impl Config {
    /// Reads `path`; errors name the file (a missing or malformed config stops a run before
    /// anything is written).
    pub fn load(path: &Path) -> Result<Self> {
        let node = NodeConfig::load(path)?;
        Self::new(node).with_context(|| format!("{}: node.zone / flannel", path.display()))
    }

    /// Checks a config built in memory (tests, benchmarks).
    pub fn new(node: NodeConfig) -> Result<Self> {
        let subnet = node.subnet()?;
        Ok(Self { node, subnet })
    }

    /// The config as read.
    pub fn node_config(&self) -> &NodeConfig {
        &self.node
    }

    pub fn into_node_config(self) -> NodeConfig {
        self.node
    }
}

impl Deref for Config {
    type Target = NodeConfig;

    fn deref(&self) -> &NodeConfig {
        &self.node
    }
}
