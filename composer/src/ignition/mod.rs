//! Per-node Ignition (spec 3.3.0, the newest spec Debian's validator, Flatcar and Matchbox all
//! accept): hostname, SSH keys for `core`, `/etc/molten/node.json`, the agent binary (fetched
//! and checked against its sha512) and the units from `docs/architecture.md`. No key: the agent
//! creates the node's keys at boot. With an authority the node's one secret, its single-use
//! enrollment token, is in its own config only (`/etc/molten/enroll-token`, 0600).
//!
//! The Ignition stage follows the node's plan ([`crate::plan::NodePlan`]) and knows no platform:
//! inline files are gzip + base64 where that is smaller (node.json: about two thirds of its
//! percent-encoded size), unless the plan keeps them plain text.

mod builder;
mod dataurl;
pub mod lifecycle;
pub mod storage;
pub mod units;

pub use builder::{
    replace_config, replace_config_pinned, to_json, BuildError, ConfigBuilder, UnitBody,
};
pub use ignition_config::v3_3::Config;

use molten_contract::trust::ENROLL_TOKEN_PATH;
use molten_contract::{NodeConfig, OsVariant, NODE_CONFIG_PATH};

use crate::error::ComposeError;
use crate::model::{Cluster, Node};
use crate::nodeconfig;
use crate::plan::{EtcdPlan, NodePlan};
use crate::trust::NodeTrust;
use units::{EtcdMember, DROPIN_NAME};

/// The user whose SSH keys the profile lists (Flatcar's default user).
pub const SSH_USER: &str = "core";

/// `sha512-<hex>`: Ignition's `verification.hash` form.
pub fn sha512_hash(hex: &str) -> String {
    format!("sha512-{hex}")
}

/// One node's Ignition and the node config inside it.
pub struct NodeIgnition {
    pub config: Config,
    pub node_config: NodeConfig,
}

/// Builds `node`'s Ignition as its plan says.
pub fn node_ignition(
    cluster: &Cluster,
    node: &Node,
    plan: &NodePlan,
    trust: &NodeTrust<'_>,
) -> Result<NodeIgnition, ComposeError> {
    let node_config = nodeconfig::node_config(cluster, node, plan, trust.settings);
    let layout = cluster.os.layout();
    let agent = &plan.delivery.agent;
    let mut b = ConfigBuilder::with_inline_encoding(plan.delivery.inline_encoding);

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

    add_trust(&mut b, cluster, trust)?;
    add_etcd(&mut b, cluster, node, &plan.etcd)?;
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
    b.unit(
        layout.agent_unit,
        true,
        UnitBody::Contents(units::mc_unit(&layout, plan.metadata.as_ref())),
    )?;
    b.unit(
        layout.agent_network_unit,
        true,
        UnitBody::Contents(units::mc_network_unit(&layout)),
    )?;
    if let Some(disk) = &plan.data_disk {
        let member = !matches!(plan.etcd, EtcdPlan::NotMember);
        storage::add_data_disk(&mut b, &layout, disk, member)?;
    }

    Ok(NodeIgnition {
        config: b.build(),
        node_config,
    })
}

/// The node config as compact JSON: the Ignition has a size budget (see `docs/platforms.md`), and
/// where it stays percent-encoded every quote, brace and space of the pretty form costs three
/// bytes.
pub fn node_config_json(config: &NodeConfig) -> String {
    let mut text = serde_json::to_string(config).expect("a node config serializes");
    text.push('\n');
    text
}

/// The node's token (its only secret: 0600, in its own Ignition only) and the enrollment and
/// renewal units.
fn add_trust(
    b: &mut ConfigBuilder,
    cluster: &Cluster,
    trust: &NodeTrust<'_>,
) -> Result<(), ComposeError> {
    let layout = cluster.os.layout();
    b.inline_file(ENROLL_TOKEN_PATH, 0o600, &format!("{}\n", trust.token))?;
    // The CA certificates are in node.json; `mc enroll` installs them before etcd starts.
    b.unit(
        units::ENROLL_UNIT,
        true,
        UnitBody::Contents(units::mc_enroll_unit(&layout)),
    )?;
    b.unit(
        units::RENEW_UNIT,
        false,
        UnitBody::Contents(units::mc_renew_unit(&layout)),
    )?;
    b.unit(
        units::RENEW_TIMER,
        true,
        UnitBody::Contents(units::mc_renew_timer()),
    )?;
    Ok(())
}

/// Members get an etcd drop-in; workers leave etcd off (Debian's package enables `etcd.service`
/// on install, so there it is masked).
fn add_etcd(
    b: &mut ConfigBuilder,
    cluster: &Cluster,
    node: &Node,
    plan: &EtcdPlan,
) -> Result<(), ComposeError> {
    let layout = cluster.os.layout();
    let member = EtcdMember { cluster, node };
    let dropin = match (cluster.os, plan) {
        (OsVariant::Debian, EtcdPlan::NotMember) => {
            b.unit(layout.etcd_unit, false, UnitBody::Masked)?;
            return Ok(());
        }
        (OsVariant::Flatcar, EtcdPlan::NotMember) => return Ok(()),
        (
            OsVariant::Flatcar,
            EtcdPlan::Static {
                ip,
                initial_cluster,
            },
        ) => member.flatcar_static_dropin(*ip, initial_cluster)?,
        (
            OsVariant::Debian,
            EtcdPlan::Static {
                ip,
                initial_cluster,
            },
        ) => member.debian_dropin(*ip, initial_cluster)?,
        (
            OsVariant::Flatcar,
            EtcdPlan::AtBoot {
                metadata,
                join_through,
            },
        ) => member.flatcar_at_boot_dropin(metadata, join_through.as_deref())?,
        // The platform's profile check refuses this combination; this guards other callers.
        (OsVariant::Debian, EtcdPlan::AtBoot { .. }) => {
            return Err(ComposeError::invalid(
                "$.os",
                "an etcd member whose address is known only at boot needs os flatcar",
            ))
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Runtime;
    use crate::plan::{AgentSource, Delivery};
    use crate::platform::{sample, Platform};

    /// Node `index` of `c` built for `platform` as `compose` builds it.
    fn build(c: &Cluster, index: usize, platform: Platform) -> Result<NodeIgnition, ComposeError> {
        let target = platform.target();
        let delivery = Delivery {
            agent: agent(),
            inline_encoding: target.inline_encoding(),
        };
        let plan = target.plan_node(c, &c.nodes[index], &delivery)?;
        let served = target.served_base_url(c)?;
        let scratch = crate::trust::scratch_input(c, served.as_deref()).unwrap();
        let pairs = [(&c.nodes[index], &plan)];
        let trust = crate::trust::prepare(c, &pairs, &scratch.input)?;
        let node_trust = trust.node(&c.nodes[index].name).unwrap();
        node_ignition(c, &c.nodes[index], &plan, &node_trust)
    }

    fn agent() -> AgentSource {
        AgentSource {
            url: "http://h/assets/mc".into(),
            sha512: "ab".into(),
        }
    }

    /// `(unit name, enabled, mask, contents or drop-in contents)` of a built config.
    fn units(config: &Config) -> Vec<(String, Option<bool>, Option<bool>, String)> {
        let units = config.systemd.as_ref().unwrap().units.as_ref().unwrap();
        units
            .iter()
            .map(|u| {
                let text = u.contents.clone().unwrap_or_else(|| {
                    u.dropins
                        .as_ref()
                        .map(|d| d[0].contents.clone().unwrap())
                        .unwrap_or_default()
                });
                (u.name.clone(), u.enabled, u.mask, text)
            })
            .collect()
    }

    fn debian_cluster() -> Cluster {
        let mut c = sample::cluster(1, 1);
        c.os = OsVariant::Debian;
        c.etcd.runtime = Runtime::Binary {
            path: "/usr/bin/etcd".into(),
        };
        c.flannel.runtime = Runtime::Binary {
            path: "/usr/local/bin/flanneld".into(),
        };
        c
    }

    /// The unit named `name` among `units`.
    fn unit<'a>(
        units: &'a [(String, Option<bool>, Option<bool>, String)],
        name: &str,
    ) -> &'a (String, Option<bool>, Option<bool>, String) {
        units
            .iter()
            .find(|u| u.0 == name)
            .unwrap_or_else(|| panic!("no {name} in {units:?}"))
    }

    #[test]
    fn debian_members_run_the_binary_and_workers_mask_etcd() {
        let c = debian_cluster();
        let member = build(&c, 0, Platform::Ipxe).unwrap();
        let u = units(&member.config);
        let etcd = unit(&u, "etcd.service");
        assert_eq!(etcd.1, Some(true));
        assert!(
            etcd.3.starts_with(
                "[Unit]\nRequiresMountsFor=/var/lib/molten /var/lib/etcd\n\
                 After=mc-enroll.service\nWants=mc-enroll.service\n\
                 StartLimitIntervalSec=0\n\
                 [Service]\nUser=root\nUnsetEnvironment=ETCD_NAME ETCD_LISTEN_CLIENT_URLS \
                 ETCD_ADVERTISE_CLIENT_URLS ETCD_LISTEN_PEER_URLS \
                 ETCD_INITIAL_ADVERTISE_PEER_URLS ETCD_INITIAL_CLUSTER_TOKEN ETCD_CERT_FILE \
                 ETCD_KEY_FILE ETCD_TRUSTED_CA_FILE ETCD_CLIENT_CERT_AUTH ETCD_PEER_CERT_FILE \
                 ETCD_PEER_KEY_FILE ETCD_PEER_TRUSTED_CA_FILE ETCD_PEER_CLIENT_CERT_AUTH \
                 ETCD_DATA_DIR\n\
                 Environment=ETCD_INITIAL_CLUSTER=node-0=https://10.0.0.10:2380 \\\n  \
                 ETCD_INITIAL_CLUSTER_STATE=new\n\
                 EnvironmentFile=-/run/molten/etcd-join.env\n\
                 ExecStartPre=/opt/bin/mc etcd-join --peer-port 2380 \
                 --data-dir /var/lib/etcd --bootstrap-after 10\n\
                 Restart=on-failure\nRestartSec=10\n\
                 ExecStart=\nExecStart=/usr/bin/etcd \\\n  --name=node-0 \\\n  \
                 --listen-client-urls=https://10.0.0.10:2379,https://127.0.0.1:2379 \\\n"
            ),
            "{}",
            etcd.3
        );
        // The membership is no flag: mc etcd-join's env file overrides its variables.
        assert!(
            !etcd.3.contains("--initial-cluster=") && !etcd.3.contains("--initial-cluster-state"),
            "{}",
            etcd.3
        );
        assert!(
            etcd.3.contains("  --client-cert-auth=true \\\n"),
            "{}",
            etcd.3
        );
        assert!(etcd
            .3
            .contains("  --peer-cert-file=/var/lib/molten/identity/etcd-peer.pem \\\n"));
        assert!(
            etcd.3.ends_with("  --data-dir=/var/lib/etcd\n"),
            "{}",
            etcd.3
        );
        let flannel = unit(&u, "flanneld.service");
        assert!(
            flannel.3.contains(
                "ExecStart=/usr/local/bin/flanneld --etcd-endpoints=https://10.0.0.10:2379 \
                 --etcd-prefix=/coreos.com/network --etcd-cafile=/etc/molten/tls/etcd-ca.pem \
                 --etcd-certfile=/var/lib/molten/identity/etcd-client.pem \
                 --etcd-keyfile=/var/lib/molten/identity/etcd-client.key\n"
            ),
            "{}",
            flannel.3
        );
        assert!(flannel
            .3
            .contains("After=network-online.target mc.service\n"));
        assert!(unit(&u, "mc.service").3.contains(
            "After=etcd.service network-online.target time-sync.target mc-enroll.service\n"
        ));

        let worker = build(&c, 1, Platform::Ipxe).unwrap();
        let u = units(&worker.config);
        let etcd = unit(&u, "etcd.service");
        assert_eq!(etcd.2, Some(true), "masked");
        assert_eq!(etcd.1, None, "a masked unit is not enabled");
    }

    #[test]
    fn flatcar_workers_leave_etcd_alone() {
        let c = sample::cluster(1, 1);
        let worker = build(&c, 1, Platform::Vagrant).unwrap();
        let names: Vec<String> = units(&worker.config).into_iter().map(|u| u.0).collect();
        assert_eq!(
            names,
            [
                "mc-enroll.service",
                "mc-renew.service",
                "mc-renew.timer",
                "flanneld.service",
                "mc.service",
                "mc-network.service"
            ]
        );
    }

    #[test]
    fn flatcar_static_members_negotiate_membership_before_etcd_starts() {
        let c = sample::cluster(3, 0);
        let u = units(&build(&c, 1, Platform::Vagrant).unwrap().config);
        let dropin = &unit(&u, "etcd-member.service").3;
        // The static bootstrap settings first, then the join's env file that overrides them,
        // and the join itself with the first-boot fallback.
        let state = dropin.find("ETCD_INITIAL_CLUSTER_STATE=new").unwrap();
        let cluster = dropin.find("ETCD_INITIAL_CLUSTER=node-0=").unwrap();
        let env_file = dropin
            .find("\nEnvironmentFile=-/run/molten/etcd-join.env\n")
            .unwrap();
        assert!(state < env_file && cluster < env_file, "{dropin}");
        assert!(
            dropin.ends_with(
                "EnvironmentFile=-/run/molten/etcd-join.env\n\
                 ExecStartPre=/opt/bin/mc etcd-join --peer-port 2380 --data-dir /var/lib/etcd \
                 --bootstrap-after 10\n"
            ),
            "{dropin}"
        );
    }

    #[test]
    fn packet_members_take_addresses_from_metadata_and_join_through_the_seed() {
        let c = sample::cluster(2, 0);
        let seed = units(&build(&c, 0, Platform::Packet).unwrap().config);
        let joiner = units(&build(&c, 1, Platform::Packet).unwrap().config);
        let (seed, joiner) = (
            &unit(&seed, "etcd-member.service").3,
            &unit(&joiner, "etcd-member.service").3,
        );
        for dropin in [seed, joiner] {
            assert!(dropin.starts_with(
                "[Unit]\nRequires=coreos-metadata.service\nAfter=coreos-metadata.service\n\
                 After=mc-enroll.service\nWants=mc-enroll.service\n\
                 [Service]\nEnvironmentFile=/run/metadata/flatcar\n"
            ));
            assert!(dropin.contains(
                "  --advertise-client-urls=https://${COREOS_PACKET_IPV4_PRIVATE_0}:2379 \\\n"
            ));
        }
        assert!(seed.contains("ETCD_INITIAL_CLUSTER_STATE=new"));
        assert!(seed
            .contains("  --initial-cluster=node-0=https://${COREOS_PACKET_IPV4_PRIVATE_0}:2380\n"));
        assert!(!seed.contains("etcd-join"));
        assert!(joiner.contains("ETCD_INITIAL_CLUSTER_STATE=existing"));
        assert!(joiner.contains(
            "EnvironmentFile=-/run/molten/etcd-join.env\n\
             ExecStartPre=/opt/bin/mc etcd-join --peer-port 2380 \
             --etcd https://__MOLTEN_SEED_PRIVATE_IPV4__:2379\n"
        ));
        assert!(!joiner.contains("--initial-cluster="));
        // The join environment comes after the static one, so it wins.
        assert!(
            joiner.find("ETCD_INITIAL_CLUSTER_STATE").unwrap()
                < joiner.find("etcd-join.env").unwrap()
        );
    }

    #[test]
    fn addresses_known_at_boot_need_flatcar() {
        // The packet rules refuse `os: debian` at the profile stage; this is the guard behind.
        let c = debian_cluster();
        let err = build(&c, 0, Platform::Packet).err().unwrap();
        assert_eq!(
            err.to_string(),
            "$.os: an etcd member whose address is known only at boot needs os flatcar"
        );
    }
}
