//! Where and how a converge runs.

use std::path::PathBuf;

use crate::etcd::Retry;

/// A Docker client certificate and its key (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerClient {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Stage {
    /// Before flanneld and Docker start: identity, etcd, flannel, systemd drop-ins, node record.
    Boot,
    /// After Docker and flanneld: the BOSH Docker network.
    Network,
    /// Everything, in order (operators, tests).
    All,
}

impl Stage {
    /// The stage names this run executes (as recorded on each step).
    pub fn names(self) -> &'static [&'static str] {
        match self {
            Stage::Boot => &["boot"],
            Stage::Network => &["network"],
            Stage::All => &["boot", "network"],
        }
    }
}

/// Where and how to converge.
#[derive(Debug, Clone)]
pub struct Options {
    /// Every file read or written is under this directory (`/` on a node).
    pub root: PathBuf,
    /// The node config; default `<root>/etc/molten/node.json`.
    pub config: Option<PathBuf>,
    /// Overrides the node config's etcd endpoints.
    pub etcd: Option<Vec<String>>,
    /// Docker API address, e.g. `unix:///var/run/docker.sock` or `tcp://10.0.0.10:2376`.
    pub docker_host: Option<String>,
    /// The Docker client certificate and key a `tcp://` host needs (the node has none of its
    /// own: an operator's, from `molten authority issue-client`); the CA is the node's Docker CA.
    pub docker_client: Option<DockerClient>,
    pub stage: Stage,
    pub etcd_retry: Retry,
}

impl Options {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            config: None,
            etcd: None,
            docker_host: None,
            docker_client: None,
            stage: Stage::All,
            etcd_retry: Retry::default(),
        }
    }

    pub fn config_path(&self) -> PathBuf {
        self.config
            .clone()
            .unwrap_or_else(|| crate::fs::under_root(&self.root, molten_contract::NODE_CONFIG_PATH))
    }
}
