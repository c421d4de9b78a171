//! Packet / Equinix Metal: per-node Ignition as device user data and Terraform JSON that creates
//! the etcd seed first and hands its private address to every other node.
//!
//! Equinix Metal shut down on 2026-06-30. This module stays complete (users asked for it) but
//! isolated: nothing else depends on it.

use minijinja::value::Serde;
use minijinja::{context, Value};
use molten_contract::{AddressSource, OsVariant, Role};
use serde::Serialize;

use super::bundle::Bundle;
use super::target::{ComposedNode, Target};
use super::templates::TemplateSet;
use crate::error::ComposeError;
use crate::model::{Cluster, Node};
use crate::plan::{
    etcd_url, no_etcd_member, BootMetadata, Delivery, EtcdPlan, InlineEncoding, NodePlan,
};
use crate::profile::{TargetCheck, TargetRules};

pub struct Packet;

static TEMPLATES: TemplateSet = TemplateSet::new(&[
    (
        "packet/main.tf.json",
        include_str!("../../../platforms/packet/main.tf.json.j2"),
    ),
    (
        "packet/README.md",
        include_str!("../../../platforms/packet/README.md.j2"),
    ),
]);

/// Flatcar's metadata agent (Afterburn) on packet and the file it writes at boot.
const METADATA: BootMetadata = BootMetadata {
    unit: "coreos-metadata.service",
    env_file: "/run/metadata/flatcar",
    private_ipv4_var: "COREOS_PACKET_IPV4_PRIVATE_0",
};

/// Stands for the seed's private IPv4 address in every non-seed node's Ignition. Only
/// URL-unreserved characters, so it survives percent-encoding inside data URLs unchanged, and
/// the Terraform output can substitute it in the whole file with one `replace`.
pub const PACKET_SEED_TOKEN: &str = "__MOLTEN_SEED_PRIVATE_IPV4__";

/// The seed: the first etcd member in profile order.
fn seed(cluster: &Cluster) -> Option<&Node> {
    cluster.etcd_members().next()
}

#[derive(Serialize)]
struct DeviceView {
    name: String,
    resource: String,
    user_data: String,
    /// The seed's resource address for everyone but the seed; empty for the seed.
    depends_on: String,
    seed: bool,
}

impl TargetRules for Packet {
    fn name(&self) -> &'static str {
        "packet"
    }

    fn assigns_addresses_at_boot(&self) -> bool {
        true
    }

    fn serves_files(&self) -> bool {
        false
    }

    fn check_profile(&self, profile: &mut TargetCheck<'_, '_>) {
        if profile.packet().is_none() {
            let at = profile.section_at("packet");
            profile.error(
                &at,
                "composing for packet needs a `platforms.packet` section (project_id, metro, plan)",
            );
        }
        if let Some(agent_at) = profile.local_agent_at().cloned() {
            let message = local_agent_refused(&agent_at.path);
            profile.error(&agent_at, message);
        }
        for ip_at in profile.written_addresses() {
            profile.error(
                &ip_at,
                "packet assigns private addresses at boot: remove the address from the profile",
            );
        }
        if let (OsVariant::Debian, Some(os_at)) = profile.os() {
            profile.error(&os_at, "platform packet supports os flatcar only");
        }
    }
}

/// Why packet refuses a local agent (named at `path`), and what to write instead.
fn local_agent_refused(path: &str) -> String {
    let instead = if path == "--agent" {
        "drop --agent and give"
    } else {
        "replace agent.path with"
    };
    format!(
        "platform packet serves no files, so its nodes cannot download a local agent binary: \
         publish mc where the nodes can reach it, then {instead} \
         `agent: {{url: <its URL>, sha512: <its sha512sum>}}` in the profile"
    )
}

impl Target for Packet {
    /// Terraform `replace()`s the seed placeholder inside every other node's config text
    /// (`node.json`, units), which only works on contents that are not compressed.
    fn inline_encoding(&self) -> InlineEncoding {
        InlineEncoding::PlainText
    }

    fn ignition_path(&self, node: &Node) -> String {
        format!("{}.ign", node.name)
    }

    fn templates(&self) -> &'static TemplateSet {
        &TEMPLATES
    }

    /// The seed design (docs/platforms.md): the seed dials its own etcd on loopback and starts
    /// alone; every other node dials the seed at [`PACKET_SEED_TOKEN`], and the other members
    /// also dial their own etcd on loopback first and join through the seed.
    fn plan_node(
        &self,
        cluster: &Cluster,
        node: &Node,
        delivery: &Delivery,
    ) -> Result<NodePlan, ComposeError> {
        let seed = seed(cluster).ok_or_else(no_etcd_member)?;
        let port = cluster.etcd.client_port;
        let loopback = etcd_url("127.0.0.1", port);
        let via_seed = etcd_url(PACKET_SEED_TOKEN, port);
        let is_seed = node.name == seed.name;
        let member = node.has_role(Role::Etcd);
        let etcd_endpoints = if is_seed {
            vec![loopback]
        } else if member {
            vec![loopback, via_seed.clone()]
        } else {
            vec![via_seed.clone()]
        };
        let etcd = if member {
            EtcdPlan::AtBoot {
                metadata: METADATA,
                join_through: (!is_seed).then_some(via_seed),
            }
        } else {
            EtcdPlan::NotMember
        };
        Ok(NodePlan {
            address: AddressSource::PacketMetadata {
                env_file: METADATA.env_file.to_string(),
            },
            etcd_endpoints,
            etcd,
            metadata: Some(METADATA),
            delivery: delivery.clone(),
            data_disk: None,
        })
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
        let seed = seed(cluster).ok_or_else(no_etcd_member)?;
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
            authority => nodes.first().map(|n| n.pinned.base_url.clone()),
        };
        let terraform = TEMPLATES.render("packet/main.tf.json", ctx.clone())?;
        serde_json::from_str::<serde_json::Value>(&terraform)
            .map_err(|e| ComposeError::Internal(format!("main.tf.json is not valid JSON: {e}")))?;
        bundle.add("main.tf.json", terraform.into_bytes(), 0o644)?;
        bundle.add(
            "README.md",
            TEMPLATES.render("packet/README.md", ctx)?.into_bytes(),
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
    use crate::platform::sample::compose;
    use crate::platform::{sample, Platform};

    #[test]
    fn resource_names_are_terraform_identifiers() {
        assert_eq!(resource_name("node-0"), "node-0");
        assert_eq!(resource_name("0a.b"), "_0a_b");
    }

    #[test]
    fn the_seed_comes_first_and_the_others_substitute_its_address() {
        let c = sample::cluster(3, 1);
        let out = compose(&c, Platform::Packet).unwrap();
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
    fn endpoints_follow_the_seed_design() {
        let c = sample::cluster(3, 1);
        let delivery = Packet.delivery(&c).unwrap();
        let plan = |i: usize| Packet.plan_node(&c, &c.nodes[i], &delivery).unwrap();
        assert_eq!(plan(0).etcd_endpoints, ["https://127.0.0.1:2379"]);
        assert_eq!(
            plan(1).etcd_endpoints,
            [
                "https://127.0.0.1:2379",
                "https://__MOLTEN_SEED_PRIVATE_IPV4__:2379"
            ]
        );
        assert_eq!(
            plan(3).etcd_endpoints,
            ["https://__MOLTEN_SEED_PRIVATE_IPV4__:2379"]
        );
        assert_eq!(
            plan(3).address,
            AddressSource::PacketMetadata {
                env_file: "/run/metadata/flatcar".into()
            }
        );
        assert_eq!(plan(3).etcd, EtcdPlan::NotMember);
        assert!(matches!(
            plan(0).etcd,
            EtcdPlan::AtBoot {
                join_through: None,
                ..
            }
        ));
        assert_eq!(
            plan(1).etcd,
            EtcdPlan::AtBoot {
                metadata: METADATA,
                join_through: Some("https://__MOLTEN_SEED_PRIVATE_IPV4__:2379".into()),
            }
        );
    }

    #[test]
    fn a_local_agent_cannot_be_shipped() {
        let c = sample::with_local_agent(sample::cluster(1, 0), "mc".into(), sample::FAKE_AGENT);
        let err = compose(&c, Platform::Packet).err().unwrap();
        assert!(err.is_invalid_input());
        assert!(err
            .to_string()
            .starts_with("$.agent: platform packet serves no files"));
    }
}
