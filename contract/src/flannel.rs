//! Flannel settings and the one rule both sides must agree on: which subnet a zone gets.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// flannel's default etcd prefix (v3 API).
pub const DEFAULT_PREFIX: &str = "/coreos.com/network";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlannelSettings {
    /// etcd prefix; the network config is at `<prefix>/config`, leases at `<prefix>/subnets/`.
    pub prefix: String,
    /// The overlay network, e.g. `10.1.0.0/16`.
    pub network: Ipv4Net,
    /// Prefix length of each node's subnet, e.g. 24.
    pub subnet_len: u8,
    /// flannel backend type; molten supports `vxlan`.
    pub backend: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubnetError {
    #[error("subnet length /{subnet_len} does not fit inside network {network}")]
    BadLength { network: Ipv4Net, subnet_len: u8 },
    #[error("zone {zone} has no subnet: network {network} holds zones 0..={max} at /{subnet_len}")]
    ZoneOutOfRange {
        zone: u32,
        network: Ipv4Net,
        subnet_len: u8,
        max: u64,
    },
}

impl FlannelSettings {
    pub fn new(network: Ipv4Net, subnet_len: u8) -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_string(),
            network,
            subnet_len,
            backend: "vxlan".to_string(),
        }
    }

    /// How many zones the network can hold. Like flanneld's default `SubnetMin`, the first subnet
    /// of the network is never handed out, so zone `z` gets subnet number `z + 1`.
    pub fn zone_capacity(&self) -> Result<u64, SubnetError> {
        let net_len = self.network.prefix_len();
        if self.subnet_len < net_len || self.subnet_len > 30 {
            return Err(SubnetError::BadLength {
                network: self.network,
                subnet_len: self.subnet_len,
            });
        }
        Ok((1u64 << (self.subnet_len - net_len)) - 1)
    }

    /// The subnet of `zone`: the `(zone + 1)`-th subnet of length `subnet_len` in the network.
    pub fn subnet_for_zone(&self, zone: u32) -> Result<Ipv4Net, SubnetError> {
        let capacity = self.zone_capacity()?;
        if u64::from(zone) >= capacity {
            return Err(SubnetError::ZoneOutOfRange {
                zone,
                network: self.network,
                subnet_len: self.subnet_len,
                max: capacity.saturating_sub(1),
            });
        }
        let size = 1u64 << (32 - self.subnet_len);
        let base = u64::from(u32::from(self.network.network()));
        let start = base + (u64::from(zone) + 1) * size;
        let start = Ipv4Addr::from(u32::try_from(start).expect("inside the network"));
        Ok(Ipv4Net::new(start, self.subnet_len).expect("length checked above"))
    }

    /// The value flanneld expects at `<prefix>/config`.
    pub fn network_config_json(&self) -> String {
        serde_json::json!({
            "Network": self.network.to_string(),
            "SubnetLen": self.subnet_len,
            "Backend": { "Type": self.backend },
        })
        .to_string()
    }

    /// The etcd key of the network config.
    pub fn config_key(&self) -> String {
        format!("{}/config", self.prefix)
    }

    /// The etcd key flannel uses for `subnet`, e.g. `/coreos.com/network/subnets/10.1.5.0-24`.
    pub fn lease_key(&self, subnet: Ipv4Net) -> String {
        format!(
            "{}/subnets/{}-{}",
            self.prefix,
            subnet.network(),
            subnet.prefix_len()
        )
    }
}

/// The gateway (first host address) of a subnet, as flannel writes it in `FLANNEL_SUBNET`.
pub fn gateway(subnet: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()) + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(network: &str, len: u8) -> FlannelSettings {
        FlannelSettings::new(network.parse().unwrap(), len)
    }

    #[test]
    fn zone_zero_skips_the_first_subnet() {
        let s = settings("10.1.0.0/16", 24);
        assert_eq!(s.subnet_for_zone(0).unwrap().to_string(), "10.1.1.0/24");
        assert_eq!(s.subnet_for_zone(4).unwrap().to_string(), "10.1.5.0/24");
        assert_eq!(s.subnet_for_zone(254).unwrap().to_string(), "10.1.255.0/24");
    }

    #[test]
    fn zones_past_the_network_are_refused() {
        let s = settings("10.1.0.0/16", 24);
        assert_eq!(s.zone_capacity().unwrap(), 255);
        let err = s.subnet_for_zone(255).unwrap_err();
        assert_eq!(
            err.to_string(),
            "zone 255 has no subnet: network 10.1.0.0/16 holds zones 0..=254 at /24"
        );
    }

    #[test]
    fn subnet_length_must_fit() {
        assert!(matches!(
            settings("10.1.0.0/16", 8).zone_capacity(),
            Err(SubnetError::BadLength { .. })
        ));
        assert!(matches!(
            settings("10.1.0.0/16", 31).zone_capacity(),
            Err(SubnetError::BadLength { .. })
        ));
    }

    #[test]
    fn keys_and_config_match_flannel() {
        let s = settings("10.1.0.0/16", 24);
        let subnet = s.subnet_for_zone(4).unwrap();
        assert_eq!(
            s.lease_key(subnet),
            "/coreos.com/network/subnets/10.1.5.0-24"
        );
        assert_eq!(s.config_key(), "/coreos.com/network/config");
        assert_eq!(
            s.network_config_json(),
            r#"{"Backend":{"Type":"vxlan"},"Network":"10.1.0.0/16","SubnetLen":24}"#
        );
        assert_eq!(gateway(subnet).to_string(), "10.1.5.1");
    }
}
