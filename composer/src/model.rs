//! The validated cluster: what a profile means once every default is filled in and every rule is
//! checked. The profile stage (`profile`) produces it; the output stages (`ignition`, `platform`)
//! consume it and never see raw YAML.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::str::FromStr;

use molten_contract::{BoshSettings, DockerSettings, FlannelSettings, OsVariant, Role};

/// Where served bundles (vagrant, ipxe) put the agent binary.
pub const AGENT_ASSET: &str = "assets/mc";

/// Where a value came from in the profile, so later stages can still point at the user's file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Origin {
    /// JSON-path-like location, e.g. `$.nodes[2].ip`.
    pub path: String,
    /// 1-based line and column in the profile; 0 when unknown (e.g. a default).
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    pub name: String,
    pub os: OsVariant,
    /// SSH authorized keys for user `core` (validated OpenSSH public-key lines).
    pub ssh_authorized_keys: Vec<String>,
    pub etcd: Etcd,
    pub flannel: Flannel,
    pub docker: DockerSettings,
    pub agent: Agent,
    pub bosh: BoshSettings,
    /// Every node, the compact rack form already expanded, in profile order.
    pub nodes: Vec<Node>,
    pub packet: Option<PacketSettings>,
    pub vagrant: VagrantSettings,
    pub ipxe: Option<IpxeSettings>,
}

/// How a component runs: a container image pinned by digest (Flatcar) or a binary (Debian).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runtime {
    /// Full image reference including `@sha256:<64 hex>`.
    Container { image: String },
    /// Absolute path of the binary on the node.
    Binary { path: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Etcd {
    pub runtime: Runtime,
    pub client_port: u16,
    pub peer_port: u16,
    /// The members' snapshot schedule and retention, checked; carried to the agent as is.
    pub snapshots: molten_contract::SnapshotSettings,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flannel {
    pub settings: FlannelSettings,
    pub runtime: Runtime,
}

/// Where nodes get the `mc` binary from. Either way the composer knows its sha512.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Agent {
    /// A local file the composer hashed (and ships, where the platform serves files).
    Local {
        path: PathBuf,
        /// Lowercase hex sha512 of the file.
        sha512: String,
        size: u64,
    },
    /// A URL nodes fetch from; the profile gave its sha512.
    Url { url: String, sha512: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub zone: u32,
    /// Sorted, deduplicated.
    pub roles: Vec<Role>,
    /// The private IPv4 address; `None` only where the platform assigns it at boot (packet).
    pub ip: Option<Ipv4Addr>,
    pub mac: Option<MacAddr>,
    /// Disk to install to (ipxe install-to-disk), e.g. `/dev/sda`.
    pub install_disk: Option<String>,
    /// The node's own data disk (ipxe from RAM), overriding [`IpxeSettings::data_disk`].
    pub data_disk: Option<String>,
    pub origin: Origin,
}

impl Node {
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

impl Cluster {
    /// The nodes that run an etcd member, in profile order.
    pub fn etcd_members(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.has_role(Role::Etcd))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketSettings {
    pub project_id: String,
    /// Metro code (e.g. `am`); Terraform's `metro`.
    pub metro: String,
    /// Server plan, e.g. `c3.small.x86`.
    pub plan: String,
    /// Operating system slug, e.g. `flatcar_stable`.
    pub operating_system: String,
    pub billing_cycle: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VagrantSettings {
    pub box_name: String,
    pub memory_mb: u32,
    pub cpus: u32,
    /// The host's address on the private network; VMs fetch their full configs from it.
    pub host_ip: Ipv4Addr,
    /// Port of `molten serve` on the host.
    pub serve_port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpxeSettings {
    /// Base URL the booting nodes reach the bundle at, without a trailing slash.
    pub base_url: String,
    /// Kernel and initrd file names under `assets/`.
    pub kernel: String,
    pub initrd: String,
    /// Extra kernel arguments appended after molten's own.
    pub kernel_args: Vec<String>,
    pub install_to_disk: bool,
    /// The data disk of every node without its own (running from RAM), e.g. `/dev/vdb`.
    pub data_disk: Option<String>,
    /// Files copied into the bundle's `assets/` (kernel and initrd among them when any).
    pub assets: Vec<IpxeAsset>,
}

/// An operator file the ipxe bundle serves as `assets/<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpxeAsset {
    /// The file's name, unique among the assets.
    pub name: String,
    /// Where it is read from (resolved against the profile's directory).
    pub path: PathBuf,
}

/// An Ethernet MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// iPXE's `${mac:hexhyp}` form: `52-54-00-12-34-56`.
    pub fn hexhyp(&self) -> String {
        self.join('-')
    }

    fn join(&self, sep: char) -> String {
        let parts: Vec<String> = self.0.iter().map(|b| format!("{b:02x}")).collect();
        parts.join(&sep.to_string())
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.join(':'))
    }
}

impl FromStr for MacAddr {
    type Err = String;

    /// Accepts `52:54:00:12:34:56` or `52-54-00-12-34-56`, any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || {
            format!("{s:?} is not a MAC address (expected six hex pairs like 52:54:00:12:34:56)")
        };
        let parts: Vec<&str> = s.split([':', '-']).collect();
        if parts.len() != 6 {
            return Err(invalid());
        }
        let mut bytes = [0u8; 6];
        for (byte, part) in bytes.iter_mut().zip(parts) {
            if part.len() != 2 {
                return Err(invalid());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| invalid())?;
        }
        Ok(MacAddr(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_forms() {
        let mac: MacAddr = "52:54:00:AB:cd:0f".parse().unwrap();
        assert_eq!(mac.to_string(), "52:54:00:ab:cd:0f");
        assert_eq!(mac.hexhyp(), "52-54-00-ab-cd-0f");
        assert_eq!("52-54-00-ab-cd-0f".parse::<MacAddr>().unwrap(), mac);
        for bad in [
            "52:54:00:ab:cd",
            "52:54:00:ab:cd:0g",
            "525400abcd0f",
            "52:54:00:ab:cd:0ff",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }
}
