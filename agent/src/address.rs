//! The node's private IPv4 address: fixed by the profile, or read at boot from the metadata file
//! Afterburn writes on Packet/Equinix Metal.

use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::{bail, Context, Result};
use molten_contract::{AddressSource, NodeConfig};

use crate::fs::under_root;

/// Afterburn's variable first; the older CoreOS name is accepted too.
const PACKET_VARS: [&str; 2] = [
    "AFTERBURN_PACKET_IPV4_PRIVATE_0",
    "COREOS_PACKET_IPV4_PRIVATE_0",
];

/// The node's private address; `root` prefixes the metadata file path.
pub fn private_ip(root: &Path, config: &NodeConfig) -> Result<Ipv4Addr> {
    match &config.node.address {
        AddressSource::Static { private_ip } => Ok(*private_ip),
        AddressSource::PacketMetadata { env_file } => {
            let path = under_root(root, env_file);
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "node.address.env_file: cannot read the metadata file {}",
                    path.display()
                )
            })?;
            parse_packet_env(&text)
                .with_context(|| format!("node.address.env_file: in {}", path.display()))
        }
    }
}

/// Parses an environment file (`KEY=value`, optional quotes, `#` comments).
pub fn parse_packet_env(text: &str) -> Result<Ipv4Addr> {
    for var in PACKET_VARS {
        let found = text.lines().find_map(|line| {
            let (key, value) = line.trim().split_once('=')?;
            (key.trim() == var).then(|| value.trim().trim_matches(['"', '\'']).to_string())
        });
        if let Some(value) = found {
            return value
                .parse()
                .with_context(|| format!("{var}={value:?} is not an IPv4 address"));
        }
    }
    bail!("neither {} is set", PACKET_VARS.join(" nor "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_afterburn_then_coreos_names() {
        let ip =
            parse_packet_env("# afterburn\nAFTERBURN_PACKET_IPV4_PRIVATE_0=10.80.1.3\n").unwrap();
        assert_eq!(ip, Ipv4Addr::new(10, 80, 1, 3));
        let ip = parse_packet_env("COREOS_PACKET_IPV4_PRIVATE_0=\"10.80.1.4\"\n").unwrap();
        assert_eq!(ip, Ipv4Addr::new(10, 80, 1, 4));
        let both =
            "COREOS_PACKET_IPV4_PRIVATE_0=10.0.0.2\nAFTERBURN_PACKET_IPV4_PRIVATE_0=10.0.0.1";
        assert_eq!(parse_packet_env(both).unwrap(), Ipv4Addr::new(10, 0, 0, 1));
    }

    #[test]
    fn names_what_is_missing_or_wrong() {
        let err = parse_packet_env("OTHER=1\n").unwrap_err().to_string();
        assert!(err.contains("AFTERBURN_PACKET_IPV4_PRIVATE_0"), "{err}");
        let err = parse_packet_env("AFTERBURN_PACKET_IPV4_PRIVATE_0=nope").unwrap_err();
        assert!(err.to_string().contains("\"nope\" is not an IPv4"), "{err}");
    }
}
