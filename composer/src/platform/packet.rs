//! Packet / Equinix Metal: per-node Ignition as device user data and Terraform JSON that creates
//! the etcd seed first and hands its private address to every other node.
//!
//! Equinix Metal shut down on 2026-06-30. This module stays complete (users asked for it) but
//! isolated: nothing else depends on it.

use minijinja::value::Serde;
use minijinja::{context, Value};
use serde::Serialize;

use super::{render, Bundle, ComposeError, ComposedNode, Platform};
use crate::ignition::InlineEncoding;
use crate::model::{self, Cluster, Node};
use crate::nodeconfig::{packet_seed, PACKET_SEED_TOKEN};

pub struct Packet;

#[derive(Serialize)]
struct DeviceView {
    name: String,
    resource: String,
    user_data: String,
    /// The seed's resource address for everyone but the seed; empty for the seed.
    depends_on: String,
    seed: bool,
}

impl Platform for Packet {
    fn id(&self) -> model::Platform {
        model::Platform::Packet
    }

    /// Terraform `replace()`s the seed placeholder inside every other node's config text
    /// (`node.json`, units), which only works on contents that are not compressed.
    fn inline_encoding(&self) -> InlineEncoding {
        InlineEncoding::PlainText
    }

    fn ignition_path(&self, node: &Node) -> String {
        format!("{}.ign", node.name)
    }

    fn render(
        &self,
        cluster: &Cluster,
        nodes: &[ComposedNode],
        bundle: &mut Bundle,
    ) -> Result<(), ComposeError> {
        let settings = cluster.packet.as_ref().ok_or_else(|| {
            ComposeError::invalid(
                "$.platforms.packet",
                "platform packet needs a `platforms.packet` section",
            )
        })?;
        let seed = packet_seed(cluster)
            .ok_or_else(|| ComposeError::invalid("$.nodes", "no node has the etcd role"))?;
        let seed_resource = format!("equinix_metal_device.{}", resource_name(&seed.name));
        let devices: Vec<DeviceView> = nodes
            .iter()
            .map(|n| {
                let is_seed = n.node.name == seed.name;
                let file = format!("file(\"${{path.module}}/{}\")", self.ignition_path(n.node));
                let user_data = if is_seed {
                    format!("${{{file}}}")
                } else {
                    format!(
                        "${{replace({file}, \"{PACKET_SEED_TOKEN}\", {seed_resource}.access_private_ipv4)}}"
                    )
                };
                DeviceView {
                    name: n.node.name.clone(),
                    resource: resource_name(&n.node.name),
                    user_data,
                    depends_on: if is_seed {
                        String::new()
                    } else {
                        seed_resource.clone()
                    },
                    seed: is_seed,
                }
            })
            .collect();
        let ctx = context! {
            cluster => &cluster.name,
            packet => context! {
                project_id => &settings.project_id,
                metro => &settings.metro,
                plan => &settings.plan,
                operating_system => &settings.operating_system,
                billing_cycle => &settings.billing_cycle,
            },
            nodes => Value::from(Serde(&devices)),
            seed => &seed.name,
            token => PACKET_SEED_TOKEN,
        };
        let terraform = render("packet/main.tf.json", ctx.clone())?;
        serde_json::from_str::<serde_json::Value>(&terraform)
            .map_err(|e| ComposeError::Internal(format!("main.tf.json is not valid JSON: {e}")))?;
        bundle.add("main.tf.json", terraform.into_bytes(), 0o644)?;
        bundle.add(
            "README.md",
            render("packet/README.md", ctx)?.into_bytes(),
            0o644,
        )?;
        Ok(())
    }
}

/// A Terraform resource name for a node: letters, digits, `_` and `-`, not starting with a digit.
fn resource_name(node: &str) -> String {
    let mut name: String = node
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        name.insert(0, '_');
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::{compose, sample};

    #[test]
    fn resource_names_are_terraform_identifiers() {
        assert_eq!(resource_name("node-0"), "node-0");
        assert_eq!(resource_name("0a.b"), "_0a_b");
    }

    #[test]
    fn the_seed_comes_first_and_the_others_substitute_its_address() {
        let c = sample::cluster(3, 1);
        let out = compose(&c, model::Platform::Packet).unwrap();
        let tf: serde_json::Value =
            serde_json::from_slice(&out.bundle.get("main.tf.json").unwrap().contents).unwrap();
        let devices = &tf["resource"]["equinix_metal_device"];
        assert_eq!(
            devices["node-0"]["user_data"],
            "${file(\"${path.module}/node-0.ign\")}"
        );
        assert!(devices["node-0"].get("depends_on").is_none());
        assert_eq!(
            devices["node-3"]["user_data"],
            "${replace(file(\"${path.module}/node-3.ign\"), \"__MOLTEN_SEED_PRIVATE_IPV4__\", \
             equinix_metal_device.node-0.access_private_ipv4)}"
        );
        assert_eq!(
            devices["node-3"]["depends_on"],
            serde_json::json!(["equinix_metal_device.node-0"])
        );
        let seed_ign = &out.bundle.get("node-0.ign").unwrap().contents;
        let joiner_ign =
            String::from_utf8(out.bundle.get("node-1.ign").unwrap().contents.clone()).unwrap();
        assert!(!String::from_utf8_lossy(seed_ign).contains(PACKET_SEED_TOKEN));
        assert!(joiner_ign.contains(PACKET_SEED_TOKEN));
        assert!(joiner_ign.contains("etcd-join"));
    }

    #[test]
    fn a_local_agent_cannot_be_shipped() {
        let c = sample::with_local_agent(sample::cluster(1, 0), "mc".into(), sample::FAKE_AGENT);
        let err = compose(&c, model::Platform::Packet).err().unwrap();
        assert!(err.is_invalid_input());
        assert!(err
            .to_string()
            .starts_with("$.agent: platform packet serves no files"));
    }
}
