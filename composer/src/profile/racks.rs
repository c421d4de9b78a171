//! The compact rack form: `count` nodes from one entry, numbered names, consecutive zones,
//! addresses and MACs. Settings are checked once per rack, then expanded into [`Draft`]s.

use std::net::Ipv4Addr;

use molten_contract::Role;

use super::defaults as d;
use super::draft::{disk_path, roles, Draft};
use super::raw::{RawRack, Sp};
use super::report::{At, Report};
use super::values;
use crate::model::{MacAddr, Node, Origin};

/// The rack's settings, checked once; `None` when one of them is unusable.
struct RackPlan {
    names: Vec<String>,
    start_zone: u32,
    roles: Vec<Role>,
    etcd_members: u32,
    start_ip: Option<u32>,
    start_mac: Option<u64>,
    disk: Option<String>,
    data_disk: Option<String>,
}

fn rack_plan(base: &str, raw: &RawRack, report: &mut Report) -> Option<RackPlan> {
    let mut ok = true;
    let mut fail = |report: &mut Report, at: At, message: String| {
        report.error(&at, message);
        ok = false;
    };
    let count = *raw.count;
    let count_at = At::of(format!("{base}.count"), &raw.count);
    if count == 0 || count > d::RACK_MAX_COUNT {
        fail(
            report,
            count_at.clone(),
            format!("a rack holds 1 to {} nodes", d::RACK_MAX_COUNT),
        );
    }
    let digits = raw.digits.as_ref().map_or(d::RACK_DIGITS, |v| **v);
    if !(1..=10).contains(&digits) {
        let at = At::of(
            format!("{base}.digits"),
            raw.digits
                .as_ref()
                .expect("only a written value can be out of range"),
        );
        fail(report, at, "digits must be between 1 and 10".into());
    }
    let start_index = raw
        .start_index
        .as_ref()
        .map_or(d::RACK_START_INDEX, |v| **v);
    let index_at = raw.start_index.as_ref().map_or_else(
        || count_at.clone(),
        |v| At::of(format!("{base}.start_index"), v),
    );
    if start_index.checked_add(count).is_none() {
        fail(report, index_at, "node numbers run past 4294967295".into());
    }
    let start_zone = *raw.start_zone;
    if start_zone.checked_add(count).is_none() {
        let at = At::of(format!("{base}.start_zone"), &raw.start_zone);
        fail(report, at, "zones run past 4294967295".into());
    }
    let roles_at = At::of(format!("{base}.roles"), &raw.roles);
    let roles = roles(&raw.roles, &roles_at, report);
    let etcd_members = raw.etcd_members.as_ref().map_or(0, |v| **v);
    if etcd_members > count {
        let at = At::of(
            format!("{base}.etcd_members"),
            raw.etcd_members.as_ref().expect("nonzero means written"),
        );
        fail(
            report,
            at,
            format!("etcd_members {etcd_members} is more than the rack's {count} nodes"),
        );
    }
    let start_ip = raw.start_ip.as_ref().and_then(|ip| {
        let at = At::of(format!("{base}.start_ip"), ip);
        match values::ipv4(ip) {
            Ok(addr)
                if u64::from(u32::from(addr)) + u64::from(count.max(1)) - 1
                    > u64::from(u32::MAX) =>
            {
                fail(
                    report,
                    at,
                    format!("{count} addresses from {addr} run past 255.255.255.255"),
                );
                None
            }
            Ok(addr) => Some(u32::from(addr)),
            Err(m) => {
                fail(report, at, m);
                None
            }
        }
    });
    let start_mac = raw.start_mac.as_ref().and_then(|mac| {
        let at = At::of(format!("{base}.start_mac"), mac);
        match values::mac(mac) {
            Ok(m) if mac_number(m) + u64::from(count.max(1)) - 1 > 0xffff_ffff_ffff => {
                fail(
                    report,
                    at,
                    format!("{count} MACs from {m} run past ff:ff:ff:ff:ff:ff"),
                );
                None
            }
            Ok(m) => Some(mac_number(m)),
            Err(message) => {
                fail(report, at, message);
                None
            }
        }
    });
    let disk = raw.install_disk.as_ref().and_then(|disk| {
        let at = At::of(format!("{base}.install_disk"), disk);
        let checked = disk_path(Some(disk), &at, report);
        ok &= checked.is_some();
        checked
    });
    let data_disk = raw.data_disk.as_ref().and_then(|disk| {
        let at = At::of(format!("{base}.data_disk"), disk);
        let checked = disk_path(Some(disk), &at, report);
        ok &= checked.is_some();
        checked
    });
    if !ok || count == 0 || count > d::RACK_MAX_COUNT {
        return None;
    }
    let width = usize::from(digits);
    let names: Vec<String> = (0..count)
        .map(|k| format!("{}{:0width$}", raw.prefix.as_str(), start_index + k))
        .collect();
    // Report the first bad name only: the others share its prefix.
    if let Some(message) = names.iter().find_map(|n| values::dns_label(n).err()) {
        let at = At::of(format!("{base}.prefix"), &raw.prefix);
        report.error(&at, format!("generated node name {message}"));
        return None;
    }
    Some(RackPlan {
        names,
        start_zone,
        roles,
        etcd_members,
        start_ip,
        start_mac,
        disk,
        data_disk,
    })
}

fn mac_number(mac: MacAddr) -> u64 {
    mac.0.iter().fold(0, |acc, b| (acc << 8) | u64::from(*b))
}

fn mac_from_number(n: u64) -> MacAddr {
    let bytes = n.to_be_bytes();
    MacAddr([bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7]])
}

pub(super) fn rack_nodes(i: usize, raw: &Sp<RawRack>, report: &mut Report) -> Option<Vec<Draft>> {
    let base = format!("$.racks[{i}]");
    let plan = rack_plan(&base, raw, report)?;
    let entry = report.item_at(At::of(base.clone(), raw));
    let at = |key: &str, value: (usize, usize)| At::new(format!("{base}.{key}"), value);
    let mut drafts = Vec::new();
    for (k, name) in (0u32..).zip(&plan.names) {
        let mut roles = plan.roles.clone();
        if k < plan.etcd_members && !roles.contains(&Role::Etcd) {
            roles.push(Role::Etcd);
            roles.sort();
        }
        let roles_at = match (&raw.etcd_members, k < plan.etcd_members) {
            (Some(v), true) => at("etcd_members", v.position()),
            _ => at("roles", raw.roles.position()),
        };
        drafts.push(Draft {
            node: Node {
                name: name.clone(),
                zone: plan.start_zone + k,
                roles,
                ip: plan.start_ip.map(|ip| Ipv4Addr::from(ip + k)),
                mac: plan.start_mac.map(|m| mac_from_number(m + u64::from(k))),
                install_disk: plan.disk.clone(),
                data_disk: plan.data_disk.clone(),
                origin: Origin {
                    path: base.clone(),
                    line: entry.line,
                    column: entry.column,
                },
            },
            label: format!("racks[{i}] ({name})"),
            suffix: format!(" (for {name})"),
            entry: entry.clone(),
            name_at: at("prefix", raw.prefix.position()),
            zone_at: at("start_zone", raw.start_zone.position()),
            roles_at,
            ip_at: raw.start_ip.as_ref().map(|v| at("start_ip", v.position())),
            mac_at: raw
                .start_mac
                .as_ref()
                .map(|v| at("start_mac", v.position())),
            disk_at: raw
                .install_disk
                .as_ref()
                .map(|v| at("install_disk", v.position())),
            data_disk_at: raw
                .data_disk
                .as_ref()
                .map(|v| at("data_disk", v.position())),
        });
    }
    Some(drafts)
}
