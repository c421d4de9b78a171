//! flannel's etcd v3 subnet protocol, as the stand-in speaks it: read `<prefix>/config`, take
//! the subnet whose key already names this node's public IP (a reservation or an earlier lease),
//! else the first free one. A reservation (a key with no etcd lease) stays one, as flanneld keeps
//! it (it updates a reservation with TTL 0); an earlier or new subnet goes under a fresh 24 h
//! etcd lease, renewed by putting it again with a new lease.

use std::net::Ipv4Addr;

use anyhow::{bail, Context, Result};
use etcd_client::{Client, Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp};
use ipnet::Ipv4Net;
use serde_json::{json, Value};

/// flannel's subnet lease time to live.
pub const LEASE_TTL_SECS: i64 = 24 * 60 * 60;

/// The network config flanneld reads from `<prefix>/config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    pub network: Ipv4Net,
    pub subnet_len: u8,
    pub subnet_min: Ipv4Addr,
    pub subnet_max: Ipv4Addr,
    pub backend_type: String,
}

impl NetworkConfig {
    /// Parses flannel's JSON (`Network`, `SubnetLen` default 24, `SubnetMin` default the second
    /// subnet, `SubnetMax` default the last, `Backend.Type` default `udp` as in flannel).
    pub fn parse(text: &str) -> Result<Self> {
        let v: Value = serde_json::from_str(text).context("network config is not JSON")?;
        let network: Ipv4Net = v["Network"]
            .as_str()
            .context("network config has no Network")?
            .parse()
            .context("network config: Network is not an IPv4 CIDR")?;
        let subnet_len = match &v["SubnetLen"] {
            Value::Null => 24,
            n => u8::try_from(n.as_u64().context("SubnetLen is not a number")?)
                .context("SubnetLen is out of range")?,
        };
        if subnet_len < network.prefix_len() || subnet_len > 30 {
            bail!("SubnetLen {subnet_len} does not fit in {network}");
        }
        let size = 1u32 << (32 - subnet_len);
        let base = u32::from(network.network());
        let last = u32::from(network.broadcast()) - (size - 1);
        let addr = |key: &str, default: u32| -> Result<Ipv4Addr> {
            match v[key].as_str() {
                Some(s) => s
                    .parse()
                    .with_context(|| format!("{key} is not an IPv4 address")),
                None => Ok(Ipv4Addr::from(default)),
            }
        };
        Ok(Self {
            network,
            subnet_len,
            subnet_min: addr("SubnetMin", base + size)?,
            subnet_max: addr("SubnetMax", last)?,
            backend_type: v["Backend"]["Type"].as_str().unwrap_or("udp").to_string(),
        })
    }

    /// Every subnet flannel may hand out, in address order.
    pub fn candidates(&self) -> impl Iterator<Item = Ipv4Net> + '_ {
        let size = 1u32 << (32 - self.subnet_len);
        let (min, max) = (u32::from(self.subnet_min), u32::from(self.subnet_max));
        (min..=max)
            .step_by(size as usize)
            .filter_map(move |a| Ipv4Net::new(Ipv4Addr::from(a), self.subnet_len).ok())
    }
}

/// `<prefix>/subnets/10.1.5.0-24`.
pub fn subnet_key(prefix: &str, subnet: Ipv4Net) -> String {
    format!(
        "{prefix}/subnets/{}-{}",
        subnet.network(),
        subnet.prefix_len()
    )
}

/// The subnet a key names, if it is a subnet key.
pub fn subnet_of_key(prefix: &str, key: &str) -> Option<Ipv4Net> {
    let name = key.strip_prefix(&format!("{prefix}/subnets/"))?;
    let (addr, len) = name.split_once('-')?;
    Ipv4Net::new(addr.parse().ok()?, len.parse().ok()?).ok()
}

/// The lease value: flannel's JSON with the node's public IP. The stand-in creates no VXLAN
/// device, so its `VtepMAC` is derived from the IP (locally administered), not a real device's.
pub fn lease_value(public_ip: Ipv4Addr, backend_type: &str) -> String {
    let o = public_ip.octets();
    json!({
        "PublicIP": public_ip.to_string(),
        "BackendType": backend_type,
        "BackendData": {
            "VNI": 1,
            "VtepMAC": format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3]),
        },
    })
    .to_string()
}

/// `/run/flannel/subnet.env` for `subnet`.
pub fn subnet_env(config: &NetworkConfig, subnet: Ipv4Net) -> String {
    format!(
        "FLANNEL_NETWORK={}\nFLANNEL_SUBNET={}/{}\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n",
        config.network,
        molten_contract::gateway(subnet),
        subnet.prefix_len()
    )
}

/// A subnet held under an etcd lease, or reserved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub subnet: Ipv4Net,
    /// `None` for a reservation: no lease, nothing to renew.
    pub lease_id: Option<i64>,
    /// True if the key existed for this IP before (reservation or earlier lease).
    pub reused: bool,
}

/// Reads and parses `<prefix>/config`; `Ok(None)` if it is not there yet.
pub async fn read_config(client: &mut Client, prefix: &str) -> Result<Option<NetworkConfig>> {
    let key = format!("{prefix}/config");
    let resp = client.get(key.as_str(), None).await?;
    match resp.kvs().first() {
        Some(kv) => Ok(Some(
            NetworkConfig::parse(kv.value_str()?).with_context(|| format!("bad {key}"))?,
        )),
        None => Ok(None),
    }
}

/// Takes this node's subnet: the one already recorded for `public_ip`, else the first free one.
pub async fn acquire(
    client: &mut Client,
    prefix: &str,
    config: &NetworkConfig,
    public_ip: Ipv4Addr,
) -> Result<Held> {
    let subnets = format!("{prefix}/subnets/");
    let resp = client
        .get(subnets.as_str(), Some(GetOptions::new().with_prefix()))
        .await?;
    let mut taken = Vec::new();
    for kv in resp.kvs() {
        let Some(subnet) = subnet_of_key(prefix, kv.key_str()?) else {
            continue;
        };
        let owner = serde_json::from_str::<Value>(kv.value_str()?)
            .ok()
            .and_then(|v| v["PublicIP"].as_str().map(str::to_string));
        if owner.as_deref() == Some(public_ip.to_string().as_str()) {
            let lease_id = if kv.lease() == 0 {
                // A reservation: refresh its value, keep it without a lease.
                let value = lease_value(public_ip, &config.backend_type);
                client.put(kv.key(), value, None).await?;
                None
            } else {
                Some(put_with_new_lease(client, prefix, config, public_ip, subnet).await?)
            };
            return Ok(Held {
                subnet,
                lease_id,
                reused: true,
            });
        }
        taken.push(subnet);
    }
    for subnet in config.candidates().filter(|s| !taken.contains(s)) {
        let lease = client.lease_grant(LEASE_TTL_SECS, None).await?.id();
        let key = subnet_key(prefix, subnet);
        // Create only if nobody took it since we listed (flannel does the same).
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.as_str(),
                lease_value(public_ip, &config.backend_type),
                Some(PutOptions::new().with_lease(lease)),
            )]);
        if client.txn(txn).await?.succeeded() {
            return Ok(Held {
                subnet,
                lease_id: Some(lease),
                reused: false,
            });
        }
        client.lease_revoke(lease).await?;
    }
    bail!(
        "no free subnet left in {} ({}..{})",
        config.network,
        config.subnet_min,
        config.subnet_max
    )
}

/// Puts the subnet key again under a fresh 24 h lease (an earlier lease, or a renewal).
pub async fn put_with_new_lease(
    client: &mut Client,
    prefix: &str,
    config: &NetworkConfig,
    public_ip: Ipv4Addr,
    subnet: Ipv4Net,
) -> Result<i64> {
    let lease = client.lease_grant(LEASE_TTL_SECS, None).await?.id();
    client
        .put(
            subnet_key(prefix, subnet),
            lease_value(public_ip, &config.backend_type),
            Some(PutOptions::new().with_lease(lease)),
        )
        .await?;
    Ok(lease)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_config_with_flannel_defaults() {
        let c = NetworkConfig::parse(r#"{"Network":"10.1.0.0/16","Backend":{"Type":"vxlan"}}"#)
            .unwrap();
        assert_eq!(c.subnet_len, 24);
        assert_eq!(c.subnet_min.to_string(), "10.1.1.0");
        assert_eq!(c.subnet_max.to_string(), "10.1.255.0");
        assert_eq!(c.backend_type, "vxlan");
        let first: Vec<String> = c.candidates().take(2).map(|s| s.to_string()).collect();
        assert_eq!(first, ["10.1.1.0/24", "10.1.2.0/24"]);
        assert_eq!(c.candidates().count(), 255);
        assert!(NetworkConfig::parse(r#"{"Network":"10.1.0.0/16","SubnetLen":8}"#).is_err());
        assert!(NetworkConfig::parse(r#"{"SubnetLen":24}"#).is_err());
    }

    #[test]
    fn keys_round_trip_and_env_uses_the_gateway() {
        let subnet: Ipv4Net = "10.1.5.0/24".parse().unwrap();
        let key = subnet_key("/coreos.com/network", subnet);
        assert_eq!(key, "/coreos.com/network/subnets/10.1.5.0-24");
        assert_eq!(subnet_of_key("/coreos.com/network", &key), Some(subnet));
        assert_eq!(
            subnet_of_key("/coreos.com/network", "/coreos.com/network/config"),
            None
        );
        let c = NetworkConfig::parse(r#"{"Network":"10.1.0.0/16"}"#).unwrap();
        assert_eq!(
            subnet_env(&c, subnet),
            "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.5.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n"
        );
        let v: Value =
            serde_json::from_str(&lease_value("10.88.0.11".parse().unwrap(), "vxlan")).unwrap();
        assert_eq!(v["PublicIP"], "10.88.0.11");
        assert_eq!(v["BackendType"], "vxlan");
    }
}
