//! What a platform is: the [`Target`] trait. Its defaults cover what platforms share, so each
//! platform overrides only what differs.

use crate::error::ComposeError;
use crate::model::{Agent, Cluster, Node, AGENT_ASSET};
use crate::plan::{self, AgentSource, Delivery, InlineEncoding, NodePlan};
use crate::profile::TargetRules;

use super::bundle::Bundle;
use super::templates::TemplateSet;

/// A node with its composed Ignition.
pub struct ComposedNode<'a> {
    pub node: &'a Node,
    /// Compact Ignition JSON, newline-terminated.
    pub ignition: String,
    /// Where a pointer config fetches the full config over HTTPS, pinning the authority CA.
    pub pinned: Pinned,
}

/// `molten serve --authority`'s HTTPS listener (which also serves the bundle) and its CA.
#[derive(Debug, Clone)]
pub struct Pinned {
    pub base_url: String,
    pub ca_pem: String,
}

/// One platform: its profile rules ([`TargetRules`], checked at the profile stage with
/// positions), its planning hooks (run per node before the Ignition is built) and the files it
/// renders around the nodes' Ignition.
pub trait Target: TargetRules {
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
                        self.name()
                    ),
                )),
            },
        }
    }

    /// What every node gets alike: the agent's source and the inline encoding.
    fn delivery(&self, cluster: &Cluster) -> Result<Delivery, ComposeError> {
        Ok(Delivery {
            agent: self.agent_source(cluster)?,
            inline_encoding: self.inline_encoding(),
        })
    }

    /// The node's plan: by default its profile address, a static etcd cluster.
    fn plan_node(
        &self,
        cluster: &Cluster,
        node: &Node,
        delivery: &Delivery,
    ) -> Result<NodePlan, ComposeError> {
        plan::static_plan(cluster, node, self.name(), delivery)
    }

    /// The platform's templates (`platforms/<name>/`).
    fn templates(&self) -> &'static TemplateSet;

    /// Adds the platform's own files (the nodes' Ignition is already in the bundle).
    fn render(
        &self,
        cluster: &Cluster,
        nodes: &[ComposedNode],
        bundle: &mut Bundle,
    ) -> Result<(), ComposeError>;
}
