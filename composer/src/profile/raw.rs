//! Profile v1 as written: every value keeps its line and column ([`Sp`]), nothing is checked
//! beyond its YAML shape, no default is filled in. `docs/profile.md` describes each key.
//! These types also generate the JSON schema (`molten schema`), so their doc comments are the
//! schema's descriptions.

use std::borrow::Cow;
use std::ops::Deref;

use marked_yaml::Spanned;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::Deserialize;

/// A value with the position it was written at. A thin wrapper over [`Spanned`] so the schema
/// generator sees through it.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct Sp<T>(pub Spanned<T>);

impl<T> Sp<T> {
    /// 1-based line and column of the value; (0, 0) when unknown.
    pub fn position(&self) -> (usize, usize) {
        self.0
            .span()
            .start()
            .map_or((0, 0), |m| (m.line(), m.column()))
    }
}

impl<T> Deref for Sp<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: JsonSchema> JsonSchema for Sp<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }

    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }

    fn schema_id() -> Cow<'static, str> {
        T::schema_id()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }
}

/// A molten cluster profile, format version 1.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "molten profile v1")]
pub struct RawProfile {
    /// Format version of this file; must be 1.
    #[schemars(range(min = 1, max = 1))]
    pub version: Sp<u32>,
    /// Cluster name: a DNS label (lowercase letters, digits, `-`; at most 63).
    pub name: Sp<String>,
    /// Operating system of every node. Default `flatcar`.
    pub os: Option<Sp<RawOs>>,
    /// OpenSSH public keys (`ssh-ed25519 AAAA... comment`) authorized for user `core`.
    #[serde(default)]
    pub ssh_authorized_keys: Vec<Sp<String>>,
    pub etcd: Option<Sp<RawEtcd>>,
    pub flannel: Option<Sp<RawFlannel>>,
    pub docker: Option<Sp<RawDocker>>,
    /// Where nodes get the `mc` agent. May be left out when `molten compose --agent PATH` is used.
    pub agent: Option<Sp<RawAgent>>,
    pub bosh: Option<Sp<RawBosh>>,
    /// Nodes listed one by one. Together with `racks`, at least one node is needed.
    pub nodes: Option<Sp<Vec<Sp<RawNode>>>>,
    /// Nodes described a rack at a time; expanded after `nodes`, in order.
    pub racks: Option<Sp<Vec<Sp<RawRack>>>>,
    /// Settings per target platform; a platform's section is needed only when composing for it.
    pub platforms: Option<Sp<RawPlatforms>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(rename = "Os")]
pub enum RawOs {
    /// Flatcar Container Linux: etcd and flanneld run from container images.
    Flatcar,
    /// Debian with systemd and Ignition: etcd and flanneld are binaries on the node.
    Debian,
}

/// etcd: one member on every node with role `etcd`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Etcd")]
pub struct RawEtcd {
    /// Flatcar only: image pinned by digest (`repo[:tag]@sha256:<64 hex>`).
    pub image: Option<Sp<String>>,
    /// Debian only: absolute path of the etcd binary. Default `/usr/bin/etcd`.
    pub binary: Option<Sp<String>>,
    /// Default 2379.
    pub client_port: Option<Sp<u16>>,
    /// Default 2380.
    pub peer_port: Option<Sp<u16>>,
    /// When members save a snapshot and how many they keep. Default daily, 7.
    pub snapshots: Option<Sp<RawSnapshots>>,
}

/// etcd snapshots, saved by each member's `mc-etcd-snapshot.timer` under `/var/lib/molten`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "EtcdSnapshots")]
pub struct RawSnapshots {
    /// `hourly`, `daily`, `weekly`, `monthly` or a systemd calendar expression (`OnCalendar=`,
    /// at most 64 characters: letters, digits, single spaces and `* - : , . / ~`). Default
    /// `daily`.
    pub schedule: Option<Sp<String>>,
    /// How many of the newest snapshots each member keeps, 1 to 365. Default 7.
    pub keep: Option<Sp<u32>>,
}

/// The flannel overlay network; each zone gets one subnet of it.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Flannel")]
pub struct RawFlannel {
    /// IPv4 CIDR of the overlay. Default `10.1.0.0/16`.
    pub network: Option<Sp<String>>,
    /// Prefix length of each zone's subnet. Default 24.
    pub subnet_len: Option<Sp<u8>>,
    /// Only `vxlan` is supported (the default).
    pub backend: Option<Sp<String>>,
    /// Flatcar only: flannel ≥ v0.18 image pinned by digest.
    pub image: Option<Sp<String>>,
    /// Debian only: absolute path of flanneld. Default `/usr/local/bin/flanneld`.
    pub binary: Option<Sp<String>>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Docker")]
pub struct RawDocker {
    /// IPv4 CIDR of the default bridge `docker0`. Default `10.255.240.0/20`.
    pub bridge_cidr: Option<Sp<String>>,
    /// Port of Docker's TLS endpoint on the node's private address. Default 2376.
    pub tls_port: Option<Sp<u16>>,
}

/// The `mc` binary: a local file (`path`) or a download (`url` + `sha512`).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Agent")]
pub struct RawAgent {
    /// Local file, relative to the profile's directory unless absolute.
    pub path: Option<Sp<String>>,
    /// http(s) URL nodes download the agent from.
    pub url: Option<Sp<String>>,
    /// Lowercase hex sha512 (128 digits); required with `url`, checked against `path`.
    pub sha512: Option<Sp<String>>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Bosh")]
pub struct RawBosh {
    /// Create the Docker network BOSH uses. Default true.
    pub enabled: Option<Sp<bool>>,
    /// Name of that Docker network. Default `bosh`.
    pub network_name: Option<Sp<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(rename = "Role")]
pub enum RawRole {
    /// Runs an etcd member.
    Etcd,
    /// Runs workloads (Docker for BOSH).
    Worker,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Node")]
pub struct RawNode {
    /// Hostname and etcd member name: a DNS label.
    pub name: Sp<String>,
    /// Zone index, unique per node: picks the node's flannel subnet and its BOSH AZ `z<zone>`.
    pub zone: Sp<u32>,
    /// `etcd`, `worker` or both.
    pub roles: Sp<Vec<Sp<RawRole>>>,
    /// Private IPv4 address. Required for vagrant and ipxe, forbidden for packet.
    pub ip: Option<Sp<String>>,
    /// MAC address of the booting NIC. Required for ipxe.
    pub mac: Option<Sp<String>>,
    /// Disk to install to (ipxe with `install_to_disk`), e.g. `/dev/sda`.
    pub install_disk: Option<Sp<String>>,
    /// Data disk of this node when ipxe runs it from RAM; overrides `platforms.ipxe.data_disk`.
    pub data_disk: Option<Sp<String>>,
}

/// `count` nodes at once. Node `k` (from 0) is named `prefix` + (`start_index` + k) padded to
/// `digits`, gets zone `start_zone` + k, address `start_ip` + k and MAC `start_mac` + k.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Rack")]
pub struct RawRack {
    /// Name prefix, e.g. `rack-a-`.
    pub prefix: Sp<String>,
    /// Number of nodes, 1 to 4096.
    #[schemars(range(min = 1, max = 4096))]
    pub count: Sp<u32>,
    /// Number in the first node's name. Default 1.
    pub start_index: Option<Sp<u32>>,
    /// Zero-padded width of the number in names, 1 to 10. Default 2.
    #[schemars(range(min = 1, max = 10))]
    pub digits: Option<Sp<u8>>,
    /// Zone of the first node.
    pub start_zone: Sp<u32>,
    /// Roles of every node in the rack.
    pub roles: Sp<Vec<Sp<RawRole>>>,
    /// How many of the rack's first nodes also run an etcd member. Default 0.
    pub etcd_members: Option<Sp<u32>>,
    /// Address of the first node; the next ones count up.
    pub start_ip: Option<Sp<String>>,
    /// MAC of the first node; the next ones count up.
    pub start_mac: Option<Sp<String>>,
    /// Install disk of every node in the rack.
    pub install_disk: Option<Sp<String>>,
    /// Data disk of every node in the rack (ipxe from RAM); overrides `platforms.ipxe.data_disk`.
    pub data_disk: Option<Sp<String>>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Platforms")]
pub struct RawPlatforms {
    pub packet: Option<Sp<RawPacket>>,
    pub vagrant: Option<Sp<RawVagrant>>,
    pub ipxe: Option<Sp<RawIpxe>>,
}

/// Packet / Equinix Metal (Terraform output).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Packet")]
pub struct RawPacket {
    pub project_id: Sp<String>,
    /// Metro code, e.g. `am`.
    pub metro: Sp<String>,
    /// Server plan, e.g. `c3.small.x86`.
    pub plan: Sp<String>,
    /// Default `flatcar_stable`.
    pub operating_system: Option<Sp<String>>,
    /// `hourly` (default) or `monthly`.
    pub billing_cycle: Option<Sp<String>>,
}

/// Vagrant with VirtualBox; every key has a default.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Vagrant")]
pub struct RawVagrant {
    /// Default `flatcar-stable`.
    #[serde(rename = "box")]
    pub box_name: Option<Sp<String>>,
    /// Default 2048 (at least 1024).
    pub memory_mb: Option<Sp<u32>>,
    /// Default 2.
    pub cpus: Option<Sp<u32>>,
    /// The host's address on the private network. Default `192.168.56.1`.
    pub host_ip: Option<Sp<String>>,
    /// Port of `molten serve` on the host. Default 8080.
    pub serve_port: Option<Sp<u16>>,
}

/// Network boot with iPXE.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Ipxe")]
pub struct RawIpxe {
    /// http(s) URL the booting nodes reach the bundle at.
    pub base_url: Sp<String>,
    /// Kernel file name under `assets/`. Default `flatcar_production_pxe.vmlinuz`.
    pub kernel: Option<Sp<String>>,
    /// Initrd file name under `assets/`. Default `flatcar_production_pxe_image.cpio.gz`.
    pub initrd: Option<Sp<String>>,
    /// Extra kernel arguments, one per item.
    #[serde(default)]
    pub kernel_args: Vec<Sp<String>>,
    /// Install to each node's `install_disk` instead of running from RAM. Default false.
    pub install_to_disk: Option<Sp<bool>>,
    /// Running from RAM: the disk (e.g. `/dev/vdb`, `/dev/disk/by-id/...`) that keeps each
    /// node's `/var/lib/molten` and etcd data across reboots; a node's own `data_disk` overrides
    /// it. Required (here or on every node) unless `install_to_disk` is true.
    pub data_disk: Option<Sp<String>>,
    /// Files copied into the bundle's `assets/` under their own names, relative to the
    /// profile's directory; must include `kernel` and `initrd` when given. Default: none (put
    /// the kernel and initrd into `assets/` yourself).
    pub assets: Option<Sp<Vec<Sp<String>>>>,
}
