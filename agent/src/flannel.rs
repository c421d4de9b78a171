//! flannel in etcd: the network config (created once, never overwritten) and this node's subnet
//! reservation (re-put without a lease at every boot, before flanneld starts).

use std::net::Ipv4Addr;

use anyhow::{bail, Context, Result};
use etcd_client::Client;
use ipnet::Ipv4Net;
use molten_contract::FlannelSettings;
use serde_json::{json, Value};

use crate::etcd::{self, Created, Entry};
use crate::outcome::Done;

/// Makes sure `<prefix>/config` holds the network this node expects.
pub async fn ensure_network_config(
    client: &mut Client,
    settings: &FlannelSettings,
) -> Result<Done> {
    let key = settings.config_key();
    let wanted = settings.network_config_json();
    // Read first: with etcd access control a node may read the config but not write it, and
    // etcd checks a transaction's writes even when its comparison sends it to the read branch.
    if let Some(existing) = etcd::get(client, &key).await? {
        check_network_config(&existing.value, settings).with_context(|| key.clone())?;
        return Ok(Done::unchanged(format!("{key} matches")));
    }
    match etcd::create_if_absent(client, &[(&key, &wanted)]).await? {
        Created::Ours => Ok(Done::changed(format!("created {key}"))),
        Created::Theirs(values) => {
            check_network_config(&values[0], settings).with_context(|| key.clone())?;
            Ok(Done::unchanged(format!("{key} matches")))
        }
    }
}

/// Compares an existing network config with ours by meaning (field order and extra fields such
/// as `SubnetMin` set by an operator do not matter; the network, length and backend do).
pub fn check_network_config(existing: &str, settings: &FlannelSettings) -> Result<()> {
    let value: Value = serde_json::from_str(existing)
        .with_context(|| format!("existing flannel network config is not JSON: {existing}"))?;
    let network = value.get("Network").and_then(Value::as_str);
    let len = value.get("SubnetLen").and_then(Value::as_u64);
    let backend = value.pointer("/Backend/Type").and_then(Value::as_str);
    let same = network.and_then(|n| n.parse::<Ipv4Net>().ok()) == Some(settings.network)
        && len.unwrap_or(24) == u64::from(settings.subnet_len)
        && backend.unwrap_or("udp") == settings.backend;
    if !same {
        bail!(
            "conflict: etcd holds {existing} but this node expects {}; not overwriting (fix the \
             profile or the key by hand)",
            settings.network_config_json()
        );
    }
    Ok(())
}

/// What to do with the reservation key, given what is there now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// Ours, without a lease: nothing to do.
    Unchanged,
    /// Put this value (no lease). `why` says what was there.
    Put { value: String, why: &'static str },
}

/// Decides the reservation for `ip` given the current key. A key held by another address is an
/// error: never take another node's subnet. The one exception is `previous_ip`, this node's own
/// address before it changed (from its node record): that subnet is already ours.
pub fn plan_reservation(
    existing: Option<&Entry>,
    ip: Ipv4Addr,
    previous_ip: Option<Ipv4Addr>,
    backend: &str,
) -> Result<Reservation> {
    let Some(entry) = existing else {
        let value = json!({ "PublicIP": ip.to_string(), "BackendType": backend });
        return Ok(Reservation::Put {
            value: value.to_string(),
            why: "absent",
        });
    };
    let mut value: Value = serde_json::from_str(&entry.value)
        .with_context(|| format!("the existing lease is not JSON: {}", entry.value))?;
    let holder = value.get("PublicIP").and_then(Value::as_str).unwrap_or("");
    if previous_ip.is_some_and(|old| old != ip && holder == old.to_string()) {
        let value = json!({ "PublicIP": ip.to_string(), "BackendType": backend });
        return Ok(Reservation::Put {
            value: value.to_string(),
            why: "this node's address changed",
        });
    }
    if holder != ip.to_string() {
        bail!("subnet is held by {holder:?}, not this node ({ip}); not taking it");
    }
    let backend_ok = value.get("BackendType").and_then(Value::as_str) == Some(backend);
    if entry.lease == 0 && backend_ok {
        return Ok(Reservation::Unchanged);
    }
    // Keep flanneld's BackendData (its VTEP MAC): peers use it until flanneld renews.
    value["BackendType"] = json!(backend);
    Ok(Reservation::Put {
        value: value.to_string(),
        why: if entry.lease != 0 {
            "was a lease"
        } else {
            "backend type differed"
        },
    })
}

/// Puts this node's reservation for `subnet`, retrying if the key changed under us.
/// `node` is this node's name: its published record tells its previous address.
pub async fn ensure_reservation(
    client: &mut Client,
    settings: &FlannelSettings,
    node: &str,
    subnet: Ipv4Net,
    ip: Ipv4Addr,
) -> Result<Done> {
    let key = settings.lease_key(subnet);
    let previous_ip = previous_ip(client, node, subnet).await?;
    for _ in 0..3 {
        let existing = etcd::get(client, &key).await?;
        let plan = plan_reservation(existing.as_ref(), ip, previous_ip, &settings.backend)
            .with_context(|| key.clone())?;
        match plan {
            Reservation::Unchanged => {
                return Ok(Done::unchanged(format!("{key} reserved for {ip}")));
            }
            Reservation::Put { value, why } => {
                if etcd::put_if_unchanged(client, &key, &value, existing.as_ref()).await? {
                    return Ok(Done::changed(format!("{key} reserved for {ip} ({why})")));
                }
            }
        }
    }
    bail!("{key} kept changing while reserving it; another writer is active")
}

/// This node's address as its record says, if the record is for the same subnet.
async fn previous_ip(client: &mut Client, node: &str, subnet: Ipv4Net) -> Result<Option<Ipv4Addr>> {
    let Some(entry) = etcd::get(client, &molten_contract::keys::node_record(node)).await? else {
        return Ok(None);
    };
    Ok(
        serde_json::from_str::<crate::records::NodeRecord>(&entry.value)
            .ok()
            .filter(|r| r.subnet == subnet)
            .map(|r| r.private_ip),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(value: &str, lease: i64) -> Entry {
        Entry {
            value: value.to_string(),
            lease,
            mod_revision: 7,
        }
    }

    const IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);

    #[test]
    fn absent_key_is_reserved() {
        let plan = plan_reservation(None, IP, None, "vxlan").unwrap();
        let Reservation::Put { value, why } = plan else {
            panic!("{plan:?}")
        };
        assert_eq!(why, "absent");
        let v: Value = serde_json::from_str(&value).unwrap();
        assert_eq!(v, json!({"PublicIP": "10.0.0.10", "BackendType": "vxlan"}));
    }

    #[test]
    fn our_reservation_is_left_alone() {
        let e = entry(r#"{"PublicIP":"10.0.0.10","BackendType":"vxlan"}"#, 0);
        assert_eq!(
            plan_reservation(Some(&e), IP, None, "vxlan").unwrap(),
            Reservation::Unchanged
        );
    }

    #[test]
    fn our_lease_becomes_a_reservation_again_keeping_backend_data() {
        let e = entry(
            r#"{"PublicIP":"10.0.0.10","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"aa:bb"}}"#,
            42,
        );
        let Reservation::Put { value, why } =
            plan_reservation(Some(&e), IP, None, "vxlan").unwrap()
        else {
            panic!()
        };
        assert_eq!(why, "was a lease");
        let v: Value = serde_json::from_str(&value).unwrap();
        assert_eq!(v["BackendData"]["VtepMAC"], "aa:bb");
        assert_eq!(v["PublicIP"], "10.0.0.10");
    }

    #[test]
    fn another_nodes_subnet_is_never_taken() {
        for lease in [0, 99] {
            let e = entry(r#"{"PublicIP":"10.0.0.11","BackendType":"vxlan"}"#, lease);
            let err = plan_reservation(Some(&e), IP, None, "vxlan")
                .unwrap_err()
                .to_string();
            assert!(err.contains("held by \"10.0.0.11\""), "{err}");
        }
        let err = plan_reservation(Some(&entry("garbage", 0)), IP, None, "vxlan").unwrap_err();
        assert!(err.to_string().contains("not JSON"), "{err}");
    }

    #[test]
    fn this_nodes_previous_address_is_replaced() {
        let old = Ipv4Addr::new(10, 0, 0, 9);
        let e = entry(r#"{"PublicIP":"10.0.0.9","BackendType":"vxlan"}"#, 0);
        let plan = plan_reservation(Some(&e), IP, Some(old), "vxlan").unwrap();
        assert!(matches!(
            plan,
            Reservation::Put {
                why: "this node's address changed",
                ..
            }
        ));
        // A record saying we had another address does not let us take a third node's subnet.
        let e = entry(r#"{"PublicIP":"10.0.0.11","BackendType":"vxlan"}"#, 0);
        assert!(plan_reservation(Some(&e), IP, Some(old), "vxlan").is_err());
    }

    #[test]
    fn network_config_is_compared_by_meaning() {
        let s = FlannelSettings::new("10.1.0.0/16".parse().unwrap(), 24);
        check_network_config(&s.network_config_json(), &s).unwrap();
        check_network_config(
            r#"{"SubnetLen":24,"Network":"10.1.0.0/16","SubnetMin":"10.1.1.0","Backend":{"Type":"vxlan","VNI":1}}"#,
            &s,
        )
        .unwrap();
        let err = check_network_config(
            r#"{"Network":"10.2.0.0/16","SubnetLen":24,"Backend":{"Type":"vxlan"}}"#,
            &s,
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("conflict: etcd holds"), "{err}");
        assert!(check_network_config("{", &s).is_err());
    }
}
