//! Per-node Ignition (spec 3.3.0, the newest spec Debian's validator, Flatcar and Matchbox all
//! accept): hostname, SSH keys for `core`, `/etc/molten/node.json`, the agent binary (fetched
//! and checked against its sha512) and the units from `docs/architecture.md`. Nothing secret:
//! the agent creates every key at boot and keeps it in etcd.

mod builder;
mod dataurl;
pub mod units;

pub use builder::{replace_config, to_json, BuildError, ConfigBuilder, UnitBody};
pub use ignition_config::v3_3::Config;

use molten_contract::{NodeConfig, OsVariant, Role, NODE_CONFIG_PATH};

use crate::model::{Cluster, Node, Platform};
use crate::nodeconfig;
use crate::platform::ComposeError;
use units::{EtcdMember, DROPIN_NAME};

/// The user whose SSH keys the profile lists (Flatcar's default user).
pub const SSH_USER: &str = "core";

/// Where nodes fetch the agent from and the sha512 (lowercase hex) it must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSource {
    pub url: String,
    pub sha512: String,
}

/// `sha512-<hex>`: Ignition's `verification.hash` form.
pub fn sha512_hash(hex: &str) -> String {
    format!("sha512-{hex}")
}

/// One node's Ignition and the node config inside it.
pub struct NodeIgnition {
    pub config: Config,
    pub node_config: NodeConfig,
}

/// Builds `node`'s Ignition for `platform`.
pub fn node_ignition(
    cluster: &Cluster,
    node: &Node,
    platform: Platform,
    agent: &AgentSource,
) -> Result<NodeIgnition, ComposeError> {
    let node_config = nodeconfig::node_config(cluster, node, platform)?;
    let layout = cluster.os.layout();
    let mut b = ConfigBuilder::new();

    b.inline_file_replacing("/etc/hostname", 0o644, &format!("{}\n", node.name))?;
    if !cluster.ssh_authorized_keys.is_empty() {
        b.user_keys(SSH_USER, &cluster.ssh_authorized_keys)?;
    }
    b.inline_file(NODE_CONFIG_PATH, 0o644, &node_config_json(&node_config))?;
    b.remote_file(
        layout.agent_binary,
        0o755,
        &agent.url,
        &sha512_hash(&agent.sha512),
    )?;

    add_etcd(&mut b, cluster, node, platform)?;
    let endpoints = &node_config.etcd.endpoints;
    match cluster.os {
        OsVariant::Flatcar => b.unit(
            layout.flannel_unit,
            true,
            UnitBody::Dropin(
                DROPIN_NAME.into(),
                units::flannel_flatcar_dropin(cluster, &layout, endpoints)?,
            ),
        )?,
        OsVariant::Debian => b.unit(
            layout.flannel_unit,
            true,
            UnitBody::Contents(units::flannel_debian_unit(cluster, &layout, endpoints)?),
        )?,
    }
    let packet = platform == Platform::Packet;
    b.unit(
        layout.agent_unit,
        true,
        UnitBody::Contents(units::mc_unit(&layout, packet)),
    )?;
    b.unit(
        layout.agent_network_unit,
        true,
        UnitBody::Contents(units::mc_network_unit(&layout)),
    )?;

    Ok(NodeIgnition {
        config: b.build(),
        node_config,
    })
}

/// The node config as compact JSON: inside a data URL every quote, brace and space of the pretty
/// form costs three bytes, and the Ignition has a size budget (see `docs/platforms.md`).
pub fn node_config_json(config: &NodeConfig) -> String {
    let mut text = serde_json::to_string(config).expect("a node config serializes");
    text.push('\n');
    text
}

/// Members get an etcd drop-in; workers leave etcd off (Debian's package enables `etcd.service`
/// on install, so there it is masked).
fn add_etcd(
    b: &mut ConfigBuilder,
    cluster: &Cluster,
    node: &Node,
    platform: Platform,
) -> Result<(), ComposeError> {
    let layout = cluster.os.layout();
    if !node.has_role(Role::Etcd) {
        if cluster.os == OsVariant::Debian {
            b.unit(layout.etcd_unit, false, UnitBody::Masked)?;
        }
        return Ok(());
    }
    let member = EtcdMember { cluster, node };
    let dropin = match (cluster.os, platform) {
        (OsVariant::Flatcar, Platform::Packet) => {
            let seed = nodeconfig::packet_seed(cluster).is_some_and(|s| s.name == node.name);
            member.flatcar_packet_dropin(seed)?
        }
        (OsVariant::Flatcar, _) => member.flatcar_static_dropin()?,
        (OsVariant::Debian, Platform::Packet) => {
            return Err(ComposeError::invalid(
                "$.os",
                "platform packet supports os flatcar only",
            ))
        }
        (OsVariant::Debian, _) => member.debian_dropin()?,
    };
    b.unit(
        layout.etcd_unit,
        true,
        UnitBody::Dropin(DROPIN_NAME.into(), dropin),
    )?;
    Ok(())
}

impl From<BuildError> for ComposeError {
    fn from(err: BuildError) -> Self {
        ComposeError::Internal(err.to_string())
    }
}
