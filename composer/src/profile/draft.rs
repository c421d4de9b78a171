//! A node being built from the profile, with the places its values came from; shared by the
//! explicit node list (`nodes`) and the rack form (`racks`), so neither imports the other.

use molten_contract::Role;

use super::raw::{RawRole, Sp};
use super::report::{At, Report};
use crate::model::Node;

/// A node with the places its values came from, so later checks can point at them.
pub(crate) struct Draft {
    pub node: Node,
    /// How messages name this node: `nodes[0]` or `racks[1] (rack-b-03)`.
    pub label: String,
    /// Appended to messages reported at a rack's shared key: ` (for rack-b-03)`.
    pub suffix: String,
    pub entry: At,
    pub name_at: At,
    pub zone_at: At,
    pub roles_at: At,
    /// Where the address was written (the rack's `start_ip` for rack nodes), if it was.
    pub ip_at: Option<At>,
    pub mac_at: Option<At>,
    pub disk_at: Option<At>,
    /// Where the node's own data disk was written (the rack's `data_disk`), if it was.
    pub data_disk_at: Option<At>,
}

pub(crate) fn roles(raw: &Sp<Vec<Sp<RawRole>>>, at: &At, report: &mut Report) -> Vec<Role> {
    let mut roles: Vec<Role> = raw
        .iter()
        .map(|r| match **r {
            RawRole::Etcd => Role::Etcd,
            RawRole::Worker => Role::Worker,
        })
        .collect();
    roles.sort();
    roles.dedup();
    if roles.is_empty() {
        report.error(at, "a node needs at least one role: etcd, worker or both");
    }
    roles
}

/// A block device path (`install_disk`, `data_disk`): `/dev/` and more, no blanks.
pub(crate) fn disk_path(raw: Option<&Sp<String>>, at: &At, report: &mut Report) -> Option<String> {
    let disk = raw?;
    let ok = disk.len() > "/dev/".len()
        && disk.starts_with("/dev/")
        && !disk.chars().any(|c| c.is_whitespace() || c.is_control());
    if !ok {
        report.error(
            at,
            format!("`{}` is not a device path like /dev/sda", disk.as_str()),
        );
        return None;
    }
    Some(disk.to_string())
}
