//! The etcd key layout molten owns (etcd v3 API). flannel's keys are in [`crate::FlannelSettings`].

/// Everything molten writes lives under this prefix.
pub const ROOT: &str = "/molten";

/// The cluster CA: certificate (PEM). Created once, by whichever agent wins the transaction.
pub const CA_CERT: &str = "/molten/ca/cert";
/// The cluster CA's private key (PEM). Readable by anyone with etcd access: protect etcd.
pub const CA_KEY: &str = "/molten/ca/key";

/// Prefix of node records.
pub const NODES_PREFIX: &str = "/molten/nodes/";
/// Prefix of converge results.
pub const STATUS_PREFIX: &str = "/molten/status/";
/// Prefix of per-node Docker TLS material (certificates and keys), see [`node_tls`].
pub const TLS_PREFIX: &str = "/molten/tls/";

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

/// `/molten/tls/<name>/<item>`: a node's Docker TLS material, e.g. `server-cert`, `client-key`.
pub fn node_tls(name: &str, item: &str) -> String {
    format!("{TLS_PREFIX}{name}/{item}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_keys_live_under_the_root() {
        for key in [
            node_record("n0"),
            node_status("n0"),
            node_tls("n0", "server-cert"),
            CA_CERT.to_string(),
            CA_KEY.to_string(),
        ] {
            assert!(key.starts_with(ROOT), "{key}");
        }
        assert_eq!(node_record("n0"), "/molten/nodes/n0");
        assert_eq!(node_tls("n0", "client-key"), "/molten/tls/n0/client-key");
    }
}
