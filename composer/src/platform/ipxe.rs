//! iPXE: a bundle served over HTTP. `boot.ipxe` chains the booting NIC's per-MAC script, which
//! boots the Flatcar PXE kernel with `ignition.config.url` pointing at the node's config.
//!
//! Install to disk: the PXE-booted (in-memory) system gets `ignition/<node>-install.ign`, whose
//! only job is a oneshot unit that runs `flatcar-install` with the node's full config (fetched
//! and checked by hash) and reboots; the installed system then applies the full config on its
//! first boot from disk. Firmware must try the disk before the network (an empty disk falls
//! through to PXE), or the machine installs again.

use minijinja::context;

use molten_contract::OsVariant;

use super::bundle::Bundle;
use super::target::{ComposedNode, Target};
use super::templates::TemplateSet;
use crate::digest::sha512_hex;
use crate::error::ComposeError;
use crate::ignition::{sha512_hash, to_json, ConfigBuilder, UnitBody, SSH_USER};
use crate::model::{Cluster, IpxeSettings, Node};
use crate::plan::{self, Delivery, NodePlan};
use crate::profile::{NodeValue, TargetCheck, TargetRules};

pub struct Ipxe;

static TEMPLATES: TemplateSet = TemplateSet::new(&[
    (
        "ipxe/boot.ipxe",
        include_str!("../../../platforms/ipxe/boot.ipxe.j2"),
    ),
    (
        "ipxe/node.ipxe",
        include_str!("../../../platforms/ipxe/node.ipxe.j2"),
    ),
]);

/// Where the install-time config leaves the node's full config for `flatcar-install`.
const INSTALL_CONFIG_PATH: &str = "/var/lib/molten/install.ign";
const INSTALL_UNIT: &str = "molten-install.service";

fn settings(cluster: &Cluster) -> Result<&IpxeSettings, ComposeError> {
    cluster.ipxe.as_ref().ok_or_else(|| {
        ComposeError::invalid(
            "$.platforms.ipxe",
            "platform ipxe needs a `platforms.ipxe` section",
        )
    })
}

impl TargetRules for Ipxe {
    fn name(&self) -> &'static str {
        "ipxe"
    }

    fn check_profile(&self, profile: &mut TargetCheck<'_, '_>) {
        if profile.ipxe().is_none() {
            let at = profile.section_at("ipxe");
            profile.error(
                &at,
                "composing for ipxe needs a `platforms.ipxe` section (at least base_url)",
            );
        }
        profile.require(
            NodeValue::Ip,
            "the ipxe platform needs a fixed private address for every node",
        );
        profile.require(
            NodeValue::Mac,
            "iPXE finds each node's config by the MAC of its booting NIC",
        );
        data_disk_rules(profile);
        if profile.ipxe().is_some_and(|i| i.install_to_disk) {
            profile.require(
                NodeValue::InstallDisk,
                "platforms.ipxe.install_to_disk is true",
            );
            if let (OsVariant::Debian, Some(at)) =
                (profile.os().0, profile.ipxe_install_to_disk_at())
            {
                profile.error(&at, INSTALL_NEEDS_FLATCAR);
            }
        }
    }
}

/// Nodes that run from RAM need a data disk (every one: a worker's identity is lost too);
/// installed nodes keep their state on the installed root and take none.
fn data_disk_rules(profile: &mut TargetCheck<'_, '_>) {
    let Some(ipxe) = profile.ipxe() else {
        return;
    };
    let (install_to_disk, default) = (ipxe.install_to_disk, ipxe.data_disk.is_some());
    let (missing, written) = profile.node_data_disks();
    if install_to_disk {
        for at in profile.ipxe_data_disk_at().into_iter().chain(written) {
            profile.error(&at, DATA_DISK_NOT_INSTALLED);
        }
        return;
    }
    if default || missing.is_empty() {
        return;
    }
    if written.is_empty() {
        let at = profile.section_at("ipxe");
        profile.error(
            &at,
            format!(
                "no node has a data disk, and these nodes run from RAM (install_to_disk is \
                 false): {RAM_LOSES}; add `data_disk: /dev/vdb` (a disk each node has, kept \
                 across reboots) here, or `data_disk` on every node, or set install_to_disk: true"
            ),
        );
        return;
    }
    for (at, whose) in missing {
        profile.error(
            &at,
            format!(
                "{whose} has no data_disk and platforms.ipxe names none; running from RAM \
                 (install_to_disk is false), {RAM_LOSES}; add `data_disk` to it or \
                 `platforms.ipxe.data_disk` for every node"
            ),
        );
    }
}

/// What a node running from RAM without a data disk would lose.
const RAM_LOSES: &str = "etcd's data and the node's identity under /var/lib/molten would be \
     lost at every reboot, and the node could not enroll again (enrollment tokens are single-use)";

const DATA_DISK_NOT_INSTALLED: &str = "data_disk is for nodes that run from RAM; with \
     install_to_disk true the installed root keeps /var/lib/molten and etcd's data: remove it";

/// Install to disk runs `flatcar-install`.
const INSTALL_NEEDS_FLATCAR: &str = "install to disk uses flatcar-install: it needs os flatcar";

impl Target for Ipxe {
    fn templates(&self) -> &'static TemplateSet {
        &TEMPLATES
    }

    /// The static plan; a node that runs from RAM keeps its state on its data disk.
    fn plan_node(
        &self,
        cluster: &Cluster,
        node: &Node,
        delivery: &Delivery,
    ) -> Result<NodePlan, ComposeError> {
        let mut plan = plan::static_plan(cluster, node, self.name(), delivery)?;
        let ipxe = settings(cluster)?;
        if !ipxe.install_to_disk {
            let disk = node.data_disk.as_ref().or(ipxe.data_disk.as_ref());
            // The profile stage reports this at the field; this guards other callers.
            let disk = disk.ok_or_else(|| {
                ComposeError::invalid_at(
                    &node.origin,
                    format!(
                        "node {} has no data_disk; a node that runs from RAM needs one",
                        node.name
                    ),
                )
            })?;
            plan.data_disk = Some(disk.clone());
        }
        Ok(plan)
    }

    fn served_base_url(&self, cluster: &Cluster) -> Result<Option<String>, ComposeError> {
        Ok(Some(
            settings(cluster)?
                .base_url
                .trim_end_matches('/')
                .to_string(),
        ))
    }

    fn render(
        &self,
        cluster: &Cluster,
        nodes: &[ComposedNode],
        bundle: &mut Bundle,
    ) -> Result<(), ComposeError> {
        let ipxe = settings(cluster)?;
        let base = self.served_base_url(cluster)?.expect("ipxe always serves");
        if ipxe.install_to_disk && cluster.os != OsVariant::Flatcar {
            // The profile stage reports this at the field; this guards other callers.
            return Err(ComposeError::invalid(
                "$.platforms.ipxe.install_to_disk",
                INSTALL_NEEDS_FLATCAR,
            ));
        }
        for asset in &ipxe.assets {
            bundle.add_copy(&format!("assets/{}", asset.name), &asset.path, 0o644)?;
        }
        bundle.add(
            "boot.ipxe",
            TEMPLATES
                .render("ipxe/boot.ipxe", context! { cluster => &cluster.name })?
                .into_bytes(),
            0o644,
        )?;
        for n in nodes {
            let mac = n.node.mac.ok_or_else(|| {
                ComposeError::invalid_at(
                    &n.node.origin,
                    format!(
                        "node {} has no mac; platform ipxe boots nodes by MAC",
                        n.node.name
                    ),
                )
            })?;
            let full_path = self.ignition_path(n.node);
            let (boot_config, purpose) = if ipxe.install_to_disk {
                let install = install_config(cluster, n, &format!("{base}/{full_path}"))?;
                let path = format!("ignition/{}-install.ign", n.node.name);
                bundle.add(&path, install.into_bytes(), 0o644)?;
                (path, "installs to disk")
            } else {
                (full_path, "runs from memory")
            };
            let mut kernel_args = vec![first_boot_arg(cluster.os).to_string()];
            kernel_args.push(format!("ignition.config.url={base}/{boot_config}"));
            kernel_args.extend(ipxe.kernel_args.iter().cloned());
            let script = TEMPLATES.render(
                "ipxe/node.ipxe",
                context! {
                    cluster => &cluster.name,
                    node => &n.node.name,
                    purpose,
                    base_url => &base,
                    kernel => &ipxe.kernel,
                    initrd => &ipxe.initrd,
                    kernel_args,
                },
            )?;
            bundle.add(
                &format!("nodes/{}.ipxe", mac.hexhyp()),
                script.into_bytes(),
                0o644,
            )?;
        }
        Ok(())
    }
}

/// Flatcar's first-boot flag; other OSes take Ignition's generic one.
fn first_boot_arg(os: OsVariant) -> &'static str {
    match os {
        OsVariant::Flatcar => "flatcar.first_boot=1",
        OsVariant::Debian => "ignition.firstboot=1",
    }
}

/// The config of the in-memory system that installs the node to its disk.
fn install_config(
    cluster: &Cluster,
    n: &ComposedNode,
    full_url: &str,
) -> Result<String, ComposeError> {
    let disk = install_disk(n.node)?;
    let mut b = ConfigBuilder::new();
    if !cluster.ssh_authorized_keys.is_empty() {
        b.user_keys(SSH_USER, &cluster.ssh_authorized_keys)?;
    }
    let hash = sha512_hash(&sha512_hex(n.ignition.as_bytes()));
    b.remote_file(INSTALL_CONFIG_PATH, 0o600, full_url, &hash)?;
    let unit = format!(
        "[Unit]\n\
         Description=molten: install Flatcar to {disk} with this node's config, then reboot\n\
         After=network-online.target\n\
         Wants=network-online.target\n\
         [Service]\n\
         Type=oneshot\n\
         ExecStart=/usr/bin/flatcar-install -d {disk} -i {INSTALL_CONFIG_PATH}\n\
         ExecStartPost=/usr/bin/systemctl --no-block reboot\n\
         [Install]\n\
         WantedBy=multi-user.target\n"
    );
    b.unit(INSTALL_UNIT, true, UnitBody::Contents(unit))?;
    Ok(to_json(&b.build()))
}

fn install_disk(node: &Node) -> Result<&str, ComposeError> {
    node.install_disk.as_deref().ok_or_else(|| {
        ComposeError::invalid_at(
            &node.origin,
            format!(
                "node {} has no install_disk; ipxe.install_to_disk needs one per node",
                node.name
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::sample::compose;
    use crate::platform::{sample, Platform};

    fn text(out: &crate::compose::Composition, path: &str) -> String {
        String::from_utf8(out.bundle.get(path).unwrap().contents.clone()).unwrap()
    }

    #[test]
    fn each_mac_gets_a_script_that_boots_its_config() {
        let out = compose(&sample::cluster(1, 1), Platform::Ipxe).unwrap();
        let script = text(&out, "nodes/52-54-00-00-00-01.ipxe");
        assert!(
            script.contains(
                "kernel http://192.168.56.1:8080/assets/flatcar_production_pxe.vmlinuz \
                 initrd=flatcar_production_pxe_image.cpio.gz flatcar.first_boot=1 \
                 ignition.config.url=http://192.168.56.1:8080/ignition/node-1.ign console=ttyS0\n"
            ),
            "{script}"
        );
        assert!(text(&out, "boot.ipxe").contains("chain nodes/${mac:hexhyp}.ipxe || goto unknown"));
    }

    #[test]
    fn a_node_from_ram_keeps_its_state_on_its_data_disk() {
        let mut c = sample::cluster(1, 1);
        c.nodes[1].data_disk = Some("/dev/disk/by-id/virtio-data".into());
        let out = compose(&c, Platform::Ipxe).unwrap();
        // The platform's disk for node-0, its own for node-1.
        assert!(text(&out, "ignition/node-0.ign").contains(r#""device":"/dev/vdb""#));
        let worker = text(&out, "ignition/node-1.ign");
        assert!(worker.contains(r#""device":"/dev/disk/by-id/virtio-data""#));
        assert!(worker.contains(r#""wipeFilesystem":false"#));
        assert!(
            !worker.contains("var-lib-etcd.mount"),
            "a worker has no etcd data"
        );
        c.ipxe.as_mut().unwrap().data_disk = None;
        let err = compose(&c, Platform::Ipxe).err().unwrap();
        assert_eq!(
            err.to_string(),
            "$.nodes[0]: node node-0 has no data_disk; a node that runs from RAM needs one"
        );
        // Installed nodes keep their state on the installed root: no data disk.
        c.ipxe.as_mut().unwrap().install_to_disk = true;
        c.nodes[0].install_disk = Some("/dev/sda".into());
        c.nodes[1].install_disk = Some("/dev/sda".into());
        let out = compose(&c, Platform::Ipxe).unwrap();
        assert!(!text(&out, "ignition/node-1.ign").contains("filesystems"));
    }

    #[test]
    fn install_to_disk_boots_an_installer_config() {
        let mut c = sample::cluster(1, 0);
        c.ipxe.as_mut().unwrap().install_to_disk = true;
        let err = compose(&c, Platform::Ipxe).err().unwrap();
        assert_eq!(
            err.to_string(),
            "$.nodes[0]: node node-0 has no install_disk; ipxe.install_to_disk needs one per node"
        );
        c.nodes[0].install_disk = Some("/dev/sda".into());
        let out = compose(&c, Platform::Ipxe).unwrap();
        let script = text(&out, "nodes/52-54-00-00-00-00.ipxe");
        assert!(script
            .contains("ignition.config.url=http://192.168.56.1:8080/ignition/node-0-install.ign"));
        let install = text(&out, "ignition/node-0-install.ign");
        let full = &out.bundle.get("ignition/node-0.ign").unwrap().contents;
        assert!(install.contains(&format!("sha512-{}", sha512_hex(full))));
        assert!(install.contains("flatcar-install -d /dev/sda -i /var/lib/molten/install.ign"));
    }
}
