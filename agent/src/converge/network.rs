//! The `docker-network` step: the BOSH Docker network on this node's flannel subnet.

use anyhow::{bail, Result};
use ipnet::Ipv4Net;
use molten_contract::{gateway, NodeConfig};

use super::options::Options;
use crate::docker::{self, NetworkOutcome, DEFAULT_FLANNEL_MTU};
use crate::outcome::Done;

/// Docker's socket on a node, relative to the root.
pub const DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// `--docker-host`, or the node's Docker socket under the root.
pub fn docker_host(options: &Options) -> String {
    options.docker_host.clone().unwrap_or_else(|| {
        format!(
            "unix://{}",
            crate::fs::under_root(&options.root, DOCKER_SOCKET).display()
        )
    })
}

/// Creates or checks the BOSH network on the subnet flannel actually leased to this node
/// (`subnet.env`), which must be the zone's subnet `subnet`: containers on any other range
/// would overlap another node's.
pub async fn ensure(options: &Options, config: &NodeConfig, subnet: Ipv4Net) -> Result<Done> {
    let host = docker_host(options);
    let layout = config.os.layout();
    let lease = docker::flannel_lease(&options.root, &layout)?;
    if lease.subnet != subnet || lease.gateway != gateway(subnet) {
        bail!(
            "flannel leased {} (gateway {}) but zone {}'s subnet is {subnet}; not building the \
             BOSH network on either (check the flannel step and the subnet reservation)",
            lease.subnet,
            lease.gateway,
            config.node.zone
        );
    }
    let (mtu, mtu_source) = match lease.mtu {
        Some(mtu) => (mtu, "flannel"),
        None => (DEFAULT_FLANNEL_MTU, "default"),
    };
    // Over TCP, Docker only speaks mutual TLS: a client certificate from the Docker CA (the
    // node holds only its server identity) and the node's installed Docker CA.
    let tls = if host.starts_with("tcp://") {
        let Some(client) = &options.docker_client else {
            bail!(
                "{host}: Docker over TCP needs a Docker client certificate (--docker-cert, \
                 --docker-key; `molten authority issue-client`)"
            );
        };
        let ca = super::trust::ca_paths(config).1;
        Some(docker::ClientTls {
            ca: crate::fs::under_root(&options.root, &ca.to_string_lossy()),
            cert: client.cert.clone(),
            key: client.key.clone(),
        })
    } else {
        None
    };
    let client = docker::connect(&host, tls.as_ref()).await?;
    let name = &config.bosh.network_name;
    let gw = gateway(subnet);
    let what = format!("{name} on {subnet} (gateway {gw}, MTU {mtu} from {mtu_source})");
    Ok(
        match docker::ensure_bosh_network(&client, name, subnet, gw, mtu).await? {
            NetworkOutcome::Unchanged => Done::unchanged(what),
            NetworkOutcome::Created => Done::changed(format!("created {what}")),
            NetworkOutcome::Recreated { old_subnet } => {
                Done::changed(format!("recreated {what}, was {old_subnet}"))
            }
        },
    )
}
