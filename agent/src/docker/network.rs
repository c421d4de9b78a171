//! The BOSH Docker network: a bridge on this node's flannel subnet with flannel's MTU.
//!
//! The decision (keep, create, recreate, refuse) is separate from the Docker calls, behind a
//! small trait, so unit tests drive it with a fake; integration tests use a real dockerd.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use anyhow::Context;
use bollard::errors::Error as BollardError;
use bollard::models::{Ipam, IpamConfig, NetworkCreateRequest};
use bollard::Docker;
use ipnet::Ipv4Net;

/// Docker's bridge-driver option for the MTU of the network's interfaces.
const MTU_OPTION: &str = "com.docker.network.driver.mtu";
/// Marks networks `mc` created, for operators reading `docker network inspect`.
const MANAGED_LABEL: &str = "io.molten.managed-by";

/// What [`ensure_bosh_network`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkOutcome {
    /// The network already had the right subnet, gateway and MTU.
    Unchanged,
    /// The network did not exist and was created.
    Created,
    /// The network differed and nothing was attached: removed and created again.
    Recreated { old_subnet: String },
}

/// Why the network could not be made right.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// The network differs, but containers use it: replacing it would cut them off.
    #[error(
        "Docker network {name} differs from this node's ({mismatch}) but containers are \
         attached ({}): detach or stop them, or remove the network, then converge again",
        attached.join(", ")
    )]
    Conflict {
        name: String,
        /// The subnet the existing network has (`none` when it has no IPv4 IPAM config).
        existing_subnet: String,
        /// Every difference, e.g. `subnet 10.1.1.0/24, want 10.1.2.0/24`.
        mismatch: String,
        /// Names of the attached containers.
        attached: Vec<String>,
    },
    /// A Docker API call failed; the error says which, with its cause.
    #[error("{0:#}")]
    Docker(#[from] anyhow::Error),
}

/// Makes sure the bridge network `name` exists on `subnet` with `gateway` and `mtu`.
///
/// Exists and matches → [`NetworkOutcome::Unchanged`]; absent → created; differs with nothing
/// attached → removed and created ([`NetworkOutcome::Recreated`]); differs with containers
/// attached → [`NetworkError::Conflict`]. Failures are never ignored.
pub async fn ensure_bosh_network(
    docker: &Docker,
    name: &str,
    subnet: Ipv4Net,
    gateway: Ipv4Addr,
    mtu: u32,
) -> Result<NetworkOutcome, NetworkError> {
    let wanted = WantedNetwork {
        name: name.to_string(),
        subnet: subnet.trunc(),
        gateway,
        mtu,
    };
    ensure(docker, &wanted).await
}

/// The network this node needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WantedNetwork {
    pub name: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub mtu: u32,
}

/// What Docker reports about an existing network, reduced to what we compare.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ExistingNetwork {
    pub id: String,
    pub driver: Option<String>,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub mtu: Option<String>,
    /// Names of attached containers.
    pub attached: Vec<String>,
}

/// The three Docker calls the decision needs.
pub(crate) trait NetworkApi {
    /// The network named exactly `name`, or `None`.
    async fn inspect(&self, name: &str) -> anyhow::Result<Option<ExistingNetwork>>;
    async fn create(&self, wanted: &WantedNetwork) -> anyhow::Result<()>;
    async fn remove(&self, id: &str) -> anyhow::Result<()>;
}

pub(crate) async fn ensure(
    api: &impl NetworkApi,
    wanted: &WantedNetwork,
) -> Result<NetworkOutcome, NetworkError> {
    let name = &wanted.name;
    let Some(existing) = api.inspect(name).await? else {
        api.create(wanted).await?;
        tracing::info!(network = %name, subnet = %wanted.subnet, mtu = wanted.mtu, "created Docker network");
        return Ok(NetworkOutcome::Created);
    };
    let differences = differences(&existing, wanted);
    if differences.is_empty() {
        return Ok(NetworkOutcome::Unchanged);
    }
    let existing_subnet = existing.subnet.clone().unwrap_or_else(|| "none".into());
    if !existing.attached.is_empty() {
        return Err(NetworkError::Conflict {
            name: name.clone(),
            existing_subnet,
            mismatch: differences.join(", "),
            attached: existing.attached,
        });
    }
    api.remove(&existing.id).await?;
    api.create(wanted).await?;
    tracing::info!(network = %name, old = %existing_subnet, subnet = %wanted.subnet, "recreated Docker network");
    Ok(NetworkOutcome::Recreated {
        old_subnet: existing_subnet,
    })
}

/// Every way `existing` differs from `wanted`, as `what has, want wanted`.
fn differences(existing: &ExistingNetwork, wanted: &WantedNetwork) -> Vec<String> {
    let checks = [
        ("driver", existing.driver.clone(), "bridge".to_string()),
        ("subnet", existing.subnet.clone(), wanted.subnet.to_string()),
        (
            "gateway",
            existing.gateway.clone(),
            wanted.gateway.to_string(),
        ),
        ("mtu", existing.mtu.clone(), wanted.mtu.to_string()),
    ];
    checks
        .into_iter()
        .filter(|(_, has, want)| has.as_deref() != Some(want.as_str()))
        .map(|(what, has, want)| {
            format!("{what} {}, want {want}", has.as_deref().unwrap_or("none"))
        })
        .collect()
}

impl NetworkApi for Docker {
    async fn inspect(&self, name: &str) -> anyhow::Result<Option<ExistingNetwork>> {
        let network = match self.inspect_network(name, None).await {
            Ok(network) => network,
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => return Ok(None),
            Err(err) => {
                return Err(err).with_context(|| format!("cannot inspect Docker network {name}"))
            }
        };
        // Docker also matches ID prefixes; only a network with exactly this name is ours.
        if network.name.as_deref() != Some(name) {
            return Ok(None);
        }
        let ipv4 = network
            .ipam
            .and_then(|ipam| ipam.config)
            .unwrap_or_default()
            .into_iter()
            .find(|c| {
                c.subnet
                    .as_deref()
                    .is_some_and(|s| s.parse::<Ipv4Net>().is_ok())
            });
        let mut attached: Vec<String> = network
            .containers
            .unwrap_or_default()
            .into_iter()
            .map(|(id, endpoint)| endpoint.name.unwrap_or(id))
            .collect();
        attached.sort();
        Ok(Some(ExistingNetwork {
            id: network.id.unwrap_or_else(|| name.to_string()),
            driver: network.driver,
            subnet: ipv4.as_ref().and_then(|c| c.subnet.clone()),
            gateway: ipv4.and_then(|c| c.gateway),
            mtu: network.options.unwrap_or_default().remove(MTU_OPTION),
            attached,
        }))
    }

    async fn create(&self, wanted: &WantedNetwork) -> anyhow::Result<()> {
        let request = NetworkCreateRequest {
            name: wanted.name.clone(),
            driver: Some("bridge".into()),
            ipam: Some(Ipam {
                driver: Some("default".into()),
                config: Some(vec![IpamConfig {
                    subnet: Some(wanted.subnet.to_string()),
                    gateway: Some(wanted.gateway.to_string()),
                    ..Default::default()
                }]),
                options: None,
            }),
            options: Some(HashMap::from([(
                MTU_OPTION.to_string(),
                wanted.mtu.to_string(),
            )])),
            labels: Some(HashMap::from([(
                MANAGED_LABEL.to_string(),
                "mc".to_string(),
            )])),
            ..Default::default()
        };
        self.create_network(request).await.with_context(|| {
            format!(
                "cannot create Docker network {} on {} (gateway {}, mtu {})",
                wanted.name, wanted.subnet, wanted.gateway, wanted.mtu
            )
        })?;
        Ok(())
    }

    async fn remove(&self, id: &str) -> anyhow::Result<()> {
        self.remove_network(id)
            .await
            .with_context(|| format!("cannot remove Docker network {id}"))
    }
}

#[cfg(test)]
#[path = "network_tests.rs"]
mod tests;
