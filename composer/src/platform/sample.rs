//! A validated cluster built in code, shaped like `profiles/dev.yaml`: for unit tests, the
//! benchmark (any node count) and integration tests that need a cluster without a profile.

use std::path::PathBuf;

use molten_contract::{BoshSettings, DockerSettings, FlannelSettings, OsVariant, Role};

use crate::model::{
    Agent, Cluster, Etcd, Flannel, IpxeSettings, MacAddr, Node, Origin, PacketSettings, Runtime,
    VagrantSettings,
};

/// A public key that belongs to nobody (a valid Ed25519 key line).
pub const SSH_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGxbm7yaL1Ju9e+m8hMOjDlP/yW9TOJdgPFq0yZfeSJK molten-sample";

/// A fixed stand-in for the `mc` binary, so composed hashes are stable.
pub const FAKE_AGENT: &[u8] = b"#!/bin/sh\n# stand-in for mc in composer tests\nexit 0\n";

pub use crate::digest::sha512_hex;

/// `members` etcd+worker nodes followed by `workers` worker nodes, addresses from 10.0.0.10
/// (wrapping into the next /24s for large clusters), zones round-robin over three, MACs
/// 52:54:00:00:xx:yy. The agent is fetched from a URL unless [`with_local_agent`] is applied.
pub fn cluster(members: usize, workers: usize) -> Cluster {
    let nodes = (0..members + workers)
        .map(|i| {
            let roles = if i < members {
                vec![Role::Etcd, Role::Worker]
            } else {
                vec![Role::Worker]
            };
            let host = 10 + i as u32;
            let ip = u32::from(std::net::Ipv4Addr::new(10, 0, 0, 0)) + host;
            Node {
                name: format!("node-{i}"),
                zone: (i % 3) as u32,
                roles,
                ip: Some(ip.into()),
                mac: Some(MacAddr([0x52, 0x54, 0, 0, (i >> 8) as u8, i as u8])),
                install_disk: None,
                data_disk: None,
                origin: Origin {
                    path: format!("$.nodes[{i}]"),
                    line: 0,
                    column: 0,
                },
            }
        })
        .collect();
    Cluster {
        name: "dev".into(),
        os: OsVariant::Flatcar,
        ssh_authorized_keys: vec![SSH_KEY.into()],
        etcd: Etcd {
            runtime: Runtime::Container {
                image: format!("quay.io/coreos/etcd@sha256:{}", "1".repeat(64)),
            },
            client_port: 2379,
            peer_port: 2380,
            snapshots: Default::default(),
        },
        flannel: Flannel {
            settings: FlannelSettings::new("10.1.0.0/16".parse().unwrap(), 24),
            runtime: Runtime::Container {
                image: format!("quay.io/flannel-io/flannel@sha256:{}", "2".repeat(64)),
            },
        },
        docker: DockerSettings {
            bridge_cidr: "10.255.240.0/20".parse().unwrap(),
            tls_port: 2376,
        },
        agent: Agent::Url {
            url: "https://example.com/molten/mc".into(),
            sha512: sha512_hex(FAKE_AGENT),
        },
        bosh: BoshSettings {
            enabled: true,
            network_name: "bosh".into(),
        },
        nodes,
        packet: Some(PacketSettings {
            project_id: "00000000-0000-0000-0000-000000000000".into(),
            metro: "am".into(),
            plan: "c3.small.x86".into(),
            operating_system: "flatcar_stable".into(),
            billing_cycle: "hourly".into(),
        }),
        vagrant: VagrantSettings {
            box_name: "flatcar-stable".into(),
            memory_mb: 2048,
            cpus: 2,
            host_ip: "192.168.56.1".parse().unwrap(),
            serve_port: 8080,
        },
        ipxe: Some(IpxeSettings {
            base_url: "http://192.168.56.1:8080".into(),
            kernel: "flatcar_production_pxe.vmlinuz".into(),
            initrd: "flatcar_production_pxe_image.cpio.gz".into(),
            kernel_args: vec!["console=ttyS0".into()],
            install_to_disk: false,
            data_disk: Some("/dev/vdb".into()),
            assets: vec![],
        }),
    }
}

/// Makes `cluster` ship the agent at `path` (which must hold [`FAKE_AGENT`]-like bytes).
pub fn with_local_agent(mut cluster: Cluster, path: PathBuf, bytes: &[u8]) -> Cluster {
    cluster.agent = Agent::Local {
        path,
        sha512: sha512_hex(bytes),
        size: bytes.len() as u64,
    };
    cluster
}

/// [`crate::compose::compose`] with a throwaway authority (tests: every compose has one; the
/// bytes differ per authority, its CAs and tokens being new).
pub fn compose(
    cluster: &Cluster,
    platform: super::Platform,
) -> Result<crate::compose::Composition, crate::error::ComposeError> {
    let served = platform.target().served_base_url(cluster)?;
    let scratch = crate::trust::scratch_input(cluster, served.as_deref())
        .map_err(|err| crate::error::ComposeError::Internal(format!("{err:#}")))?;
    crate::compose::compose(cluster, platform, &scratch.input)
}
