//! Vagrant (VirtualBox): one VM per node on a private network with the profile's addresses.
//! VirtualBox refuses guest properties over 1 KiB, so each VM gets a pointer config that replaces
//! itself with the node's full config, fetched from the host (`molten serve`) and checked by hash.

use minijinja::value::Serde;
use minijinja::{context, Value};
use serde::Serialize;

use super::bundle::Bundle;
use super::target::{ComposedNode, Target};
use super::templates::TemplateSet;
use crate::digest::sha512_hex;
use crate::error::ComposeError;
use crate::ignition::{replace_config_pinned, sha512_hash, to_json};
use crate::model::{Cluster, Node};
use crate::profile::{NodeValue, TargetCheck, TargetRules};

pub struct Vagrant;

static TEMPLATES: TemplateSet = TemplateSet::new(&[(
    "vagrant/Vagrantfile",
    include_str!("../../../platforms/vagrant/Vagrantfile.j2"),
)]);

/// VirtualBox's limit for a guest property value (coreos/ignition#2226).
pub const POINTER_LIMIT: usize = 1024;

#[derive(Serialize)]
struct VmView {
    name: String,
    ip: String,
    pointer: String,
}

fn pointer_path(node: &Node) -> String {
    format!("pointer/{}.ign", node.name)
}

impl TargetRules for Vagrant {
    fn name(&self) -> &'static str {
        "vagrant"
    }

    fn check_profile(&self, profile: &mut TargetCheck<'_, '_>) {
        profile.require(
            NodeValue::Ip,
            "the vagrant platform needs a fixed private address for every node",
        );
        if let Some(host_at) = profile.vagrant_host_at().cloned() {
            let host_ip = profile.vagrant().host_ip;
            if let Some(node) = profile.node_with_ip(host_ip) {
                let message = format!("host_ip {host_ip} is also {node}'s address");
                profile.error(&host_at, message);
            }
        }
    }
}

impl Target for Vagrant {
    fn templates(&self) -> &'static TemplateSet {
        &TEMPLATES
    }

    fn served_base_url(&self, cluster: &Cluster) -> Result<Option<String>, ComposeError> {
        let v = &cluster.vagrant;
        Ok(Some(format!("http://{}:{}", v.host_ip, v.serve_port)))
    }

    fn render(
        &self,
        cluster: &Cluster,
        nodes: &[ComposedNode],
        bundle: &mut Bundle,
    ) -> Result<(), ComposeError> {
        let base = self
            .served_base_url(cluster)?
            .expect("vagrant always serves");
        let mut vms = Vec::with_capacity(nodes.len());
        for n in nodes {
            let hash = sha512_hash(&sha512_hex(n.ignition.as_bytes()));
            // The full config (it holds the node's token) comes over HTTPS from `molten serve
            // --authority`, pinned to the authority CA.
            let full_url = format!("{}/{}", n.pinned.base_url, self.ignition_path(n.node));
            let pointer = to_json(&replace_config_pinned(&full_url, &hash, &n.pinned.ca_pem));
            if pointer.len() > POINTER_LIMIT {
                return Err(ComposeError::invalid_at(
                    &n.node.origin,
                    format!(
                        "the pointer config of node {} is {} bytes; VirtualBox accepts at most \
                         {POINTER_LIMIT}: shorten the node name or the host address",
                        n.node.name,
                        pointer.len()
                    ),
                ));
            }
            bundle.add(&pointer_path(n.node), pointer.into_bytes(), 0o644)?;
            let ip = n.node.ip.ok_or_else(|| {
                ComposeError::invalid_at(&n.node.origin, "vagrant needs an ip for every node")
            })?;
            vms.push(VmView {
                name: n.node.name.clone(),
                ip: ip.to_string(),
                pointer: pointer_path(n.node),
            });
        }
        let v = &cluster.vagrant;
        let ctx = context! {
            cluster => &cluster.name,
            base_url => base,
            box_name => &v.box_name,
            memory_mb => v.memory_mb,
            cpus => v.cpus,
            nodes => Value::from(Serde(&vms)),
        };
        bundle.add(
            "Vagrantfile",
            TEMPLATES.render("vagrant/Vagrantfile", ctx)?.into_bytes(),
            0o644,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AGENT_ASSET;
    use crate::platform::sample::compose;
    use crate::platform::{sample, Platform};

    #[test]
    fn pointers_replace_themselves_with_the_hashed_full_config() {
        let c = sample::with_local_agent(sample::cluster(1, 1), "mc".into(), sample::FAKE_AGENT);
        let dir = tempfile::tempdir().unwrap();
        let agent = dir.path().join("mc");
        std::fs::write(&agent, sample::FAKE_AGENT).unwrap();
        let c = sample::with_local_agent(c, agent, sample::FAKE_AGENT);
        let out = compose(&c, Platform::Vagrant).unwrap();
        let full = &out.bundle.get("ignition/node-1.ign").unwrap().contents;
        let pointer: serde_json::Value =
            serde_json::from_slice(&out.bundle.get("pointer/node-1.ign").unwrap().contents)
                .unwrap();
        let replace = &pointer["ignition"]["config"]["replace"];
        // Over HTTPS from `molten serve --authority`, pinned to the authority CA only.
        assert_eq!(
            replace["source"],
            "https://192.168.56.1:8443/ignition/node-1.ign"
        );
        let cas = pointer["ignition"]["security"]["tls"]["certificateAuthorities"]
            .as_array()
            .unwrap();
        assert_eq!(cas.len(), 1, "{pointer}");
        assert_eq!(
            replace["verification"]["hash"],
            format!("sha512-{}", sha512_hex(full))
        );
        assert_eq!(
            out.bundle.get(AGENT_ASSET).unwrap().contents,
            sample::FAKE_AGENT
        );
        assert!(String::from_utf8_lossy(full).contains("http://192.168.56.1:8080/assets/mc"));
    }
}
