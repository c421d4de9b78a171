//! Nodes: the explicit list and the compact rack form, expanded into one list, then the checks
//! across nodes (unique names, zones, addresses and MACs; usable addresses; zone capacity; etcd
//! members).

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use molten_contract::{DockerSettings, Role, SubnetError};

use super::draft::{disk_path, roles, Draft};
use super::racks;
use super::raw::{RawNode, RawProfile, Sp};
use super::report::{At, Report};
use super::values;
use crate::model::{Flannel, MacAddr, Node, Origin};

/// Every node in profile order, and whether every rack could be expanded (checks that count
/// nodes, like "no etcd member", are skipped when one could not).
pub(crate) fn expand(raw: &RawProfile, report: &mut Report) -> (Vec<Draft>, bool) {
    let mut drafts = Vec::new();
    let mut complete = true;
    if let Some(nodes) = &raw.nodes {
        for (i, node) in nodes.iter().enumerate() {
            drafts.push(explicit(i, node, report));
        }
    }
    if let Some(racks) = &raw.racks {
        for (i, rack) in racks.iter().enumerate() {
            match racks::rack_nodes(i, rack, report) {
                Some(nodes) => drafts.extend(nodes),
                None => complete = false,
            }
        }
    }
    (drafts, complete)
}

fn explicit(i: usize, raw: &Sp<RawNode>, report: &mut Report) -> Draft {
    let base = format!("$.nodes[{i}]");
    let entry = report.item_at(At::of(base.clone(), raw));
    let name_at = At::of(format!("{base}.name"), &raw.name);
    if let Err(m) = values::dns_label(&raw.name) {
        report.error(&name_at, format!("node name {m}"));
    }
    let roles_at = At::of(format!("{base}.roles"), &raw.roles);
    let roles = roles(&raw.roles, &roles_at, report);
    let ip_at = raw.ip.as_ref().map(|ip| At::of(format!("{base}.ip"), ip));
    let ip = raw.ip.as_ref().and_then(|ip| {
        values::ipv4(ip)
            .map_err(|m| report.error(ip_at.as_ref().expect("set with ip"), m))
            .ok()
    });
    let mac_at = raw
        .mac
        .as_ref()
        .map(|mac| At::of(format!("{base}.mac"), mac));
    let mac = raw.mac.as_ref().and_then(|mac| {
        values::mac(mac)
            .map_err(|m| report.error(mac_at.as_ref().expect("set with mac"), m))
            .ok()
    });
    let disk_at = raw
        .install_disk
        .as_ref()
        .map(|disk| At::of(format!("{base}.install_disk"), disk));
    let disk = disk_at
        .as_ref()
        .and_then(|at| disk_path(raw.install_disk.as_ref(), at, report));
    let data_disk_at = raw
        .data_disk
        .as_ref()
        .map(|disk| At::of(format!("{base}.data_disk"), disk));
    let data_disk = data_disk_at
        .as_ref()
        .and_then(|at| disk_path(raw.data_disk.as_ref(), at, report));
    Draft {
        node: Node {
            name: raw.name.to_string(),
            zone: *raw.zone,
            roles,
            ip,
            mac,
            install_disk: disk,
            data_disk,
            origin: Origin {
                path: base.clone(),
                line: entry.line,
                column: entry.column,
            },
        },
        label: format!("nodes[{i}]"),
        suffix: String::new(),
        entry,
        name_at,
        zone_at: At::of(format!("{base}.zone"), &raw.zone),
        roles_at,
        ip_at,
        mac_at,
        disk_at,
        data_disk_at,
    }
}

/// Reports each problem once per place: a rack repeats its places for every node it expands to.
struct Once<'r, 'a> {
    report: &'r mut Report<'a>,
    seen: HashSet<(String, &'static str)>,
}

impl<'a> Once<'_, 'a> {
    fn error(&mut self, kind: &'static str, at: &At, message: String) {
        if self.seen.insert((at.path.clone(), kind)) {
            self.report.error(at, message);
        }
    }
}

pub(crate) fn check_all(
    raw: &RawProfile,
    (drafts, complete): (&[Draft], bool),
    flannel: Option<&Flannel>,
    docker: Option<&DockerSettings>,
    report: &mut Report,
) {
    if drafts.is_empty() && complete {
        report.error(
            &At::new("$", (0, 0)),
            "no nodes: list at least one under `nodes` or `racks`",
        );
        return;
    }
    let mut once = Once {
        report,
        seen: HashSet::new(),
    };
    unique(drafts, &mut once);
    addresses(drafts, flannel, docker, &mut once);
    if let Some(flannel) = flannel {
        zones_fit(drafts, flannel, &mut once);
    }
    if complete {
        etcd_members(raw, drafts, once.report);
    }
}

fn unique(drafts: &[Draft], once: &mut Once) {
    let mut names: HashMap<&str, &Draft> = HashMap::new();
    let mut zones: HashMap<u32, &Draft> = HashMap::new();
    let mut ips: HashMap<Ipv4Addr, &Draft> = HashMap::new();
    let mut macs: HashMap<MacAddr, &Draft> = HashMap::new();
    for draft in drafts {
        let node = &draft.node;
        if let Some(first) = names.insert(&node.name, draft) {
            names.insert(&node.name, first);
            let message = format!(
                "node name `{}` is already used by {}{}",
                node.name, first.label, draft.suffix
            );
            once.error("name", &draft.name_at, message);
        }
        if let Some(first) = zones.insert(node.zone, draft) {
            zones.insert(node.zone, first);
            let message = format!(
                "zone {} is already used by {}{}; each node needs its own zone (it picks the flannel subnet)",
                node.zone, first.label, draft.suffix
            );
            once.error("zone", &draft.zone_at, message);
        }
        if let (Some(ip), Some(at)) = (node.ip, &draft.ip_at) {
            if let Some(first) = ips.insert(ip, draft) {
                ips.insert(ip, first);
                once.error(
                    "ip",
                    at,
                    format!("{ip} is already used by {}{}", first.label, draft.suffix),
                );
            }
        }
        if let (Some(mac), Some(at)) = (node.mac, &draft.mac_at) {
            if let Some(first) = macs.insert(mac, draft) {
                macs.insert(mac, first);
                once.error(
                    "mac",
                    at,
                    format!(
                        "MAC {mac} is already used by {}{}",
                        first.label, draft.suffix
                    ),
                );
            }
        }
    }
}

fn addresses(
    drafts: &[Draft],
    flannel: Option<&Flannel>,
    docker: Option<&DockerSettings>,
    once: &mut Once,
) {
    for draft in drafts {
        let (Some(ip), Some(at)) = (draft.node.ip, &draft.ip_at) else {
            continue;
        };
        if let Some(message) = address_problem(ip, flannel, docker) {
            once.error("usable", at, format!("{message}{}", draft.suffix));
        }
    }
}

/// Why `ip` cannot be a node's (or the Vagrant host's) private address, if it cannot.
pub(crate) fn address_problem(
    ip: Ipv4Addr,
    flannel: Option<&Flannel>,
    docker: Option<&DockerSettings>,
) -> Option<String> {
    if let Some(reason) = values::unusable_reason(ip) {
        return Some(format!("{ip} is {reason}; it cannot be a node's address"));
    }
    if let Some(net) = flannel
        .map(|f| f.settings.network)
        .filter(|n| n.contains(&ip))
    {
        return Some(format!(
            "{ip} is inside flannel.network {net}; node addresses must be outside the overlay"
        ));
    }
    if let Some(net) = docker.map(|dk| dk.bridge_cidr).filter(|n| n.contains(&ip)) {
        return Some(format!(
            "{ip} is inside docker.bridge_cidr {net}; node addresses must be outside docker0's range"
        ));
    }
    None
}

fn zones_fit(drafts: &[Draft], flannel: &Flannel, once: &mut Once) {
    for draft in drafts {
        if let Err(err @ SubnetError::ZoneOutOfRange { .. }) =
            flannel.settings.subnet_for_zone(draft.node.zone)
        {
            let message = format!(
                "{err} (widen flannel.network or lengthen flannel.subnet_len){}",
                draft.suffix
            );
            once.error("capacity", &draft.zone_at, message);
        }
    }
}

fn etcd_members(raw: &RawProfile, drafts: &[Draft], report: &mut Report) {
    let members: Vec<&Draft> = drafts
        .iter()
        .filter(|d| d.node.has_role(Role::Etcd))
        .collect();
    match members.len() {
        0 => {
            let at = match &raw.nodes {
                Some(nodes) => At::of("$.nodes", nodes),
                None => At::new("$", (0, 0)),
            };
            report.error(
                &at,
                "no etcd member: give at least one node the role `etcd`",
            );
        }
        n if n % 2 == 0 => {
            let last = members[n - 1];
            report.warn(
                &last.roles_at,
                format!(
                    "{n} etcd members: an even number tolerates no more failures than {}; use an odd number{}",
                    n - 1,
                    last.suffix
                ),
            );
        }
        _ => {}
    }
}
