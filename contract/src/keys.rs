//! The etcd key layout molten owns (etcd v3 API). flannel's keys are in [`crate::FlannelSettings`].
//! No key holds key material: nodes keep their keys on their own disk, the CAs stay with the
//! operator's authority.

/// Everything molten writes lives under this prefix.
pub const ROOT: &str = "/molten";

/// Prefix of node records.
pub const NODES_PREFIX: &str = "/molten/nodes/";
/// Prefix of converge results.
pub const STATUS_PREFIX: &str = "/molten/status/";

/// Prefix of the last etcd snapshot each member took (`mc etcd snapshot`), see [`etcd_snapshot`].
pub const SNAPSHOTS_PREFIX: &str = "/molten/etcd-snapshots/";

/// `/molten/etcd-snapshots/<name>`: when, how big and which sha256 the member's last snapshot
/// had (the snapshot itself stays on the member's disk).
pub fn etcd_snapshot(name: &str) -> String {
    format!("{SNAPSHOTS_PREFIX}{name}")
}

/// `/molten/nodes/<name>`: the node record (addresses, zone, subnet, Docker endpoint, ...).
pub fn node_record(name: &str) -> String {
    format!("{NODES_PREFIX}{name}")
}

/// `/molten/status/<name>`: the result of the node's last converge.
pub fn node_status(name: &str) -> String {
    format!("{STATUS_PREFIX}{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_keys_live_under_the_root() {
        for key in [node_record("n0"), node_status("n0"), etcd_snapshot("n0")] {
            assert!(key.starts_with(ROOT), "{key}");
        }
        assert_eq!(node_record("n0"), "/molten/nodes/n0");
    }
}
