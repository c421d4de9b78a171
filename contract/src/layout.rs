//! Unit names and paths per OS variant: the composer installs these units, the agent writes
//! drop-ins for them and orders itself around them.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OsVariant {
    /// Flatcar Container Linux: etcd and flanneld run as containers (`etcd-member`, `flanneld`).
    Flatcar,
    /// A systemd Debian with Ignition (the local lab): etcd, dockerd and flanneld are binaries.
    Debian,
}

impl OsVariant {
    /// Unit names and paths for this OS.
    pub fn layout(self) -> OsLayout {
        for_os(self)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsLayout {
    /// The etcd unit: Flatcar's containerised `etcd-member.service`, Debian's `etcd.service`.
    pub etcd_unit: &'static str,
    /// The flanneld unit.
    pub flannel_unit: &'static str,
    /// Docker's service and socket units.
    pub docker_unit: &'static str,
    pub docker_socket: &'static str,
    /// Where the composer installs the agent binary (Flatcar's /usr is read-only).
    pub agent_binary: &'static str,
    /// The agent's per-boot unit (before flanneld and Docker) and its post-Docker unit.
    pub agent_unit: &'static str,
    pub agent_network_unit: &'static str,
    /// Where systemd units and drop-ins are written.
    pub unit_dir: &'static str,
    /// Where the agent keeps this node's Docker TLS files (keys 0600).
    pub tls_dir: &'static str,
    /// The file flanneld writes once it holds its lease.
    pub flannel_subnet_env: &'static str,
    /// A second copy of the etcd CA that `mc` installs, for containerised etcd and flanneld
    /// (Flatcar's wrappers mount only `/var/lib/molten` at `/etc/ssl/certs`).
    pub etcd_ca_copy: Option<&'static str>,
}

const COMMON: OsLayout = OsLayout {
    etcd_unit: "etcd-member.service",
    flannel_unit: "flanneld.service",
    docker_unit: "docker.service",
    docker_socket: "docker.socket",
    agent_binary: "/opt/bin/mc",
    agent_unit: "mc.service",
    agent_network_unit: "mc-network.service",
    unit_dir: "/etc/systemd/system",
    tls_dir: "/etc/molten/tls",
    flannel_subnet_env: "/run/flannel/subnet.env",
    etcd_ca_copy: Some("/var/lib/molten/etcd-ca.pem"),
};

pub(crate) fn for_os(os: OsVariant) -> OsLayout {
    match os {
        OsVariant::Flatcar => COMMON,
        OsVariant::Debian => OsLayout {
            etcd_unit: "etcd.service",
            etcd_ca_copy: None,
            ..COMMON
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_differ_only_where_the_os_does() {
        let flatcar = OsVariant::Flatcar.layout();
        let debian = OsVariant::Debian.layout();
        assert_eq!(flatcar.etcd_unit, "etcd-member.service");
        assert_eq!(debian.etcd_unit, "etcd.service");
        assert_eq!(flatcar.etcd_ca_copy, Some("/var/lib/molten/etcd-ca.pem"));
        assert_eq!(debian.etcd_ca_copy, None);
        assert_eq!(
            OsLayout {
                etcd_unit: flatcar.etcd_unit,
                etcd_ca_copy: flatcar.etcd_ca_copy,
                ..debian
            },
            flatcar
        );
    }
}
