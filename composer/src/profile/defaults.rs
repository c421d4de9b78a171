//! Every default a profile may leave out, in one place (docs/profile.md lists the same values).

/// etcd v3.5.17, pinned by the digest of its multi-arch image index.
pub const ETCD_IMAGE: &str = "quay.io/coreos/etcd:v3.5.17@sha256:a055da833a7c013b836ed0822e8ec1f99b059658be255ad8d0fcd31b635ae3d6";
/// flannel v0.23.0 (etcd v3 API), pinned by the digest of its multi-arch image index.
pub const FLANNEL_IMAGE: &str = "docker.io/flannel/flannel:v0.23.0@sha256:c951947891d7811a4da6bf6f2f4dcd09e33c6e1eb6a95022f3f621d00ed4615e";
/// The oldest flannel that speaks the etcd v3 API (etcd ≥ 3.4 disables v2).
pub const FLANNEL_MIN_VERSION: (u64, u64) = (0, 18);

pub const ETCD_BINARY: &str = "/usr/bin/etcd";
pub const FLANNEL_BINARY: &str = "/usr/local/bin/flanneld";
pub const ETCD_CLIENT_PORT: u16 = 2379;
pub const ETCD_PEER_PORT: u16 = 2380;

pub const FLANNEL_NETWORK: &str = "10.1.0.0/16";
pub const FLANNEL_SUBNET_LEN: u8 = 24;
pub const FLANNEL_BACKEND: &str = "vxlan";

pub const DOCKER_BRIDGE_CIDR: &str = "10.255.240.0/20";
pub const DOCKER_TLS_PORT: u16 = 2376;

pub const BOSH_ENABLED: bool = true;
pub const BOSH_NETWORK_NAME: &str = "bosh";

pub const RACK_START_INDEX: u32 = 1;
pub const RACK_DIGITS: u8 = 2;
/// Upper bound on one rack, far above what a flannel network can give zones to.
pub const RACK_MAX_COUNT: u32 = 4096;

pub const PACKET_OPERATING_SYSTEM: &str = "flatcar_stable";
pub const PACKET_BILLING_CYCLE: &str = "hourly";
pub const PACKET_BILLING_CYCLES: [&str; 2] = ["hourly", "monthly"];

pub const VAGRANT_BOX: &str = "flatcar-stable";
pub const VAGRANT_MEMORY_MB: u32 = 2048;
pub const VAGRANT_MIN_MEMORY_MB: u32 = 1024;
pub const VAGRANT_CPUS: u32 = 2;
/// VirtualBox's default host-only network puts the host at .1 of 192.168.56.0/21.
pub const VAGRANT_HOST_IP: &str = "192.168.56.1";
pub const VAGRANT_SERVE_PORT: u16 = 8080;

pub const IPXE_KERNEL: &str = "flatcar_production_pxe.vmlinuz";
pub const IPXE_INITRD: &str = "flatcar_production_pxe_image.cpio.gz";
