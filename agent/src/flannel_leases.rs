//! The check of flannel's leases that access control cannot make: every node may write any key
//! under `<prefix>/subnets/` (flanneld must), so a node's certificate could lease another
//! node's subnet, or a piece of it, to its own address and draw that traffic. Each node checks
//! at every converge that no lease other than its own covers any part of its subnet, and the
//! reservation step already refuses its own key naming another address.

use anyhow::Result;
use etcd_client::Client;
use ipnet::Ipv4Net;
use molten_contract::FlannelSettings;
use serde_json::Value;
use std::net::Ipv4Addr;

/// Leases that overlap `subnet` but are not this node's: one line per lease, naming the key
/// and the address it points to (text from etcd, bounded).
pub fn foreign_leases(
    leases: &[(String, String)],
    settings: &FlannelSettings,
    subnet: Ipv4Net,
    ip: Ipv4Addr,
) -> Vec<String> {
    let own_key = settings.lease_key(subnet);
    let prefix = format!("{}/subnets/", settings.prefix);
    let mut found = Vec::new();
    for (key, value) in leases {
        let Some(leased) = key
            .strip_prefix(&prefix)
            .and_then(|name| name.rsplit_once('-'))
            .and_then(|(net, len)| format!("{net}/{len}").parse::<Ipv4Net>().ok())
        else {
            continue;
        };
        let overlaps = leased.contains(&subnet.network()) || subnet.contains(&leased.network());
        if !overlaps {
            continue;
        }
        let holder = serde_json::from_str::<Value>(value)
            .ok()
            .and_then(|v| {
                v.get("PublicIP")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .unwrap_or_else(|| "an unreadable lease".to_string());
        if *key == own_key && holder == ip.to_string() {
            continue;
        }
        let holder: String = holder.chars().take(64).collect();
        found.push(format!("{key} -> {holder:?}"));
    }
    found
}

/// Reads every lease and fails, naming them, when a foreign lease covers part of `subnet`.
pub async fn check(
    client: &mut Client,
    settings: &FlannelSettings,
    subnet: Ipv4Net,
    ip: Ipv4Addr,
) -> Result<()> {
    let prefix = format!("{}/subnets/", settings.prefix);
    let leases = crate::etcd::get_prefix(client, &prefix).await?;
    let foreign = foreign_leases(&leases, settings, subnet, ip);
    anyhow::ensure!(
        foreign.is_empty(),
        "lease(s) for this node's subnet {subnet} naming another address (traffic for it \
         would go there): {}",
        foreign.join(", ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_overlapping_leases_of_others_are_reported() {
        let settings = FlannelSettings::new("10.1.0.0/16".parse().unwrap(), 24);
        let subnet: Ipv4Net = "10.1.1.0/24".parse().unwrap();
        let ip = Ipv4Addr::new(10, 0, 0, 10);
        let lease = |net: &str, holder: &str| {
            (
                format!("/coreos.com/network/subnets/{net}"),
                format!(r#"{{"PublicIP":"{holder}","BackendType":"vxlan"}}"#),
            )
        };
        let ok = vec![
            lease("10.1.1.0-24", "10.0.0.10"),
            lease("10.1.2.0-24", "10.0.0.11"),
        ];
        assert!(foreign_leases(&ok, &settings, subnet, ip).is_empty());
        let bad = vec![
            lease("10.1.1.0-24", "10.0.0.66"),
            lease("10.1.1.128-25", "10.0.0.67"),
            lease("10.1.0.0-16", "10.0.0.68"),
            (
                "/coreos.com/network/subnets/10.1.1.0-26".into(),
                "garbage".into(),
            ),
        ];
        let found = foreign_leases(&bad, &settings, subnet, ip);
        assert_eq!(found.len(), 4, "{found:?}");
        assert!(found[1].contains("10.1.1.128-25") && found[1].contains("10.0.0.67"));
        assert!(found[3].contains("unreadable"));
    }
}
