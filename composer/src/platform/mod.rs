//! Per-platform output. One module per platform behind [`Platform`], whose defaults cover what
//! platforms share, so each overrides only what differs; [`for_platform`] maps a name to one.
//! Templates live in `platforms/<name>/` and are compiled into the binary.

mod bundle;
mod ipxe;
mod packet;
#[doc(hidden)]
pub mod sample;
mod templates;
mod vagrant;

pub use bundle::{sha256_hex, sha512_hex, Bundle, BundleFile, CopiedFile, SHA256SUMS};
pub use templates::{render, template_names};

use crate::ignition::{self, AgentSource, InlineEncoding};
use crate::model::{self, Agent, Cluster, Node};

/// Where served bundles (vagrant, ipxe) put the agent binary.
pub const AGENT_ASSET: &str = "assets/mc";

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    /// The profile asks for something this platform cannot do: the user's to fix (exit 2).
    /// `line`/`column` point into the profile (0 when unknown).
    #[error("{path}: {message}")]
    Invalid {
        path: String,
        message: String,
        line: usize,
        column: usize,
    },
    #[error("cannot read the agent binary {path}: {source}")]
    AgentRead {
        path: String,
        source: std::io::Error,
    },
    /// A file the profile lists for the bundle (e.g. `platforms.ipxe.assets`) cannot be read.
    #[error("cannot read {path}: {source}")]
    AssetRead {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "the agent binary {path} changed after it was hashed (sha512 {found}, expected {expected})"
    )]
    AgentChanged {
        path: String,
        found: String,
        expected: String,
    },
    #[error("template {name}: {source:#}")]
    Template {
        name: String,
        source: minijinja::Error,
    },
    /// A bug in molten (e.g. two parts claiming one output path).
    #[error("internal error: {0}")]
    Internal(String),
}

impl ComposeError {
    pub fn invalid(path: &str, message: impl Into<String>) -> Self {
        ComposeError::Invalid {
            path: path.to_string(),
            message: message.into(),
            line: 0,
            column: 0,
        }
    }

    /// Invalid input at a value whose place in the profile is known (e.g. a node).
    pub fn invalid_at(origin: &model::Origin, message: impl Into<String>) -> Self {
        ComposeError::Invalid {
            path: origin.path.clone(),
            message: message.into(),
            line: origin.line,
            column: origin.column,
        }
    }

    /// True when the input is at fault (the CLI exits 2), false for other failures.
    pub fn is_invalid_input(&self) -> bool {
        matches!(self, ComposeError::Invalid { .. })
    }
}

/// A node with its composed Ignition.
pub struct ComposedNode<'a> {
    pub node: &'a Node,
    /// Compact Ignition JSON, newline-terminated.
    pub ignition: String,
}

pub trait Platform {
    fn id(&self) -> model::Platform;

    /// The URL the bundle is served at (no trailing slash), for platforms whose nodes fetch
    /// files from the operator's machine; `None` when nothing is served.
    fn served_base_url(&self, _cluster: &Cluster) -> Result<Option<String>, ComposeError> {
        Ok(None)
    }

    /// How the nodes' inline files may be encoded. The default lets the composer gzip them when
    /// that is smaller; a platform that edits the config text after composing (a placeholder it
    /// substitutes) must keep them [`InlineEncoding::PlainText`].
    fn inline_encoding(&self) -> InlineEncoding {
        InlineEncoding::Smallest
    }

    /// Where a node's full Ignition goes in the bundle.
    fn ignition_path(&self, node: &Node) -> String {
        format!("ignition/{}.ign", node.name)
    }

    /// Where nodes fetch the agent: the profile's URL, or the served copy of a local binary.
    fn agent_source(&self, cluster: &Cluster) -> Result<AgentSource, ComposeError> {
        match &cluster.agent {
            Agent::Url { url, sha512 } => Ok(AgentSource {
                url: url.clone(),
                sha512: sha512.clone(),
            }),
            Agent::Local { sha512, .. } => match self.served_base_url(cluster)? {
                Some(base) => Ok(AgentSource {
                    url: format!("{base}/{AGENT_ASSET}"),
                    sha512: sha512.clone(),
                }),
                // The profile stage reports this at the field; this guards other callers.
                None => Err(ComposeError::invalid(
                    "$.agent",
                    format!(
                        "platform {} serves no files, so its nodes cannot download a local agent \
                         binary: publish mc where the nodes can reach it and give \
                         `agent: {{url: <its URL>, sha512: <its sha512sum>}}` in the profile",
                        self.id()
                    ),
                )),
            },
        }
    }

    /// Adds the platform's own files (the nodes' Ignition is already in the bundle).
    fn render(
        &self,
        cluster: &Cluster,
        nodes: &[ComposedNode],
        bundle: &mut Bundle,
    ) -> Result<(), ComposeError>;
}

/// The implementation of `platform`.
pub fn for_platform(platform: model::Platform) -> Box<dyn Platform> {
    match platform {
        model::Platform::Packet => Box::new(packet::Packet),
        model::Platform::Vagrant => Box::new(vagrant::Vagrant),
        model::Platform::Ipxe => Box::new(ipxe::Ipxe),
    }
}

/// Everything `molten compose` writes, in memory.
pub struct Composition {
    pub platform: model::Platform,
    pub bundle: Bundle,
    /// `(node, bytes of its full Ignition)`, in profile order.
    pub ignition_sizes: Vec<(String, usize)>,
}

/// Composes `cluster` for `platform`: per-node Ignition, the platform's files, the agent binary
/// where the bundle serves it, and `SHA256SUMS`.
pub fn compose(cluster: &Cluster, platform: model::Platform) -> Result<Composition, ComposeError> {
    let target = for_platform(platform);
    let agent = target.agent_source(cluster)?;
    let mut bundle = Bundle::default();
    let mut nodes = Vec::with_capacity(cluster.nodes.len());
    for node in &cluster.nodes {
        let built =
            ignition::node_ignition(cluster, node, platform, &agent, target.inline_encoding())?;
        let json = ignition::to_json(&built.config);
        bundle.add(
            &target.ignition_path(node),
            json.clone().into_bytes(),
            0o644,
        )?;
        nodes.push(ComposedNode {
            node,
            ignition: json,
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
    let found = bundle::sha512_hex(&bytes);
    if found != expected {
        return Err(ComposeError::AgentChanged {
            path: path.display().to_string(),
            found,
            expected: expected.to_string(),
        });
    }
    Ok(bytes)
}
