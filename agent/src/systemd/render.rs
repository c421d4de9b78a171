//! What the drop-ins say: pure functions from the node config to file contents, so the same
//! flags can be reused (tests start a real dockerd with exactly these TLS flags).

use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::{bail, Context};
use ipnet::Ipv4Net;
use molten_contract::{NodeConfig, OsLayout, OsVariant};

use super::manager::TlsPaths;

/// File name of every drop-in `mc` owns. Sorted after the composer's drop-ins (`10-`, `20-`),
/// so where two set the same single-valued key, the agent's boot-time value wins.
pub const DROPIN_NAME: &str = "50-mc.conf";

/// First line of every drop-in `mc` owns; a `50-mc.conf` without it is left alone.
pub const HEADER: &str = "# Managed by mc (molten) at every boot: local edits are overwritten.";

/// Debian's `docker.io` starts dockerd like this (`/lib/systemd/system/docker.service`); our
/// drop-in replaces its `ExecStart` with the same start plus our flags.
const DEBIAN_DOCKERD: &str =
    "/usr/sbin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock";

/// One drop-in file: `<unit_dir>/<unit>.d/50-mc.conf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropIn {
    pub unit: String,
    pub content: String,
}

impl DropIn {
    /// Path of the drop-in relative to the unit directory, e.g. `docker.service.d/50-mc.conf`.
    pub fn relative_path(&self) -> String {
        format!("{}.d/{DROPIN_NAME}", self.unit)
    }
}

/// dockerd flags that make it listen with mutual TLS on `tcp://<ip>:<port>`: clients must
/// present a certificate signed by the cluster CA (`--tlsverify`).
pub fn tls_listen_args(ip: Ipv4Addr, port: u16, tls: &TlsPaths) -> Vec<String> {
    vec![
        "-H".to_string(),
        format!("tcp://{ip}:{port}"),
        "--tlsverify".to_string(),
        format!("--tlscacert={}", tls.ca.display()),
        format!("--tlscert={}", tls.server_cert.display()),
        format!("--tlskey={}", tls.server_key.display()),
    ]
}

/// The dockerd flag that puts the default bridge (`docker0`) on `bridge`: the gateway is the
/// first host address, so docker0 never takes an address from the flannel network.
pub fn bridge_arg(bridge: Ipv4Net) -> String {
    let first_host = Ipv4Addr::from(u32::from(bridge.network()).saturating_add(1));
    format!("--bip={first_host}/{}", bridge.prefix_len())
}

/// Every dockerd flag the agent adds: TLS listener plus the default bridge.
pub fn dockerd_args(config: &NodeConfig, ip: Ipv4Addr, tls: &TlsPaths) -> Vec<String> {
    let mut args = tls_listen_args(ip, config.docker.tls_port, tls);
    args.push(bridge_arg(config.docker.bridge_cidr));
    args
}

/// The drop-ins this node needs, in a stable order.
pub fn dropins(
    config: &NodeConfig,
    layout: &OsLayout,
    ip: Ipv4Addr,
    tls: &TlsPaths,
) -> anyhow::Result<Vec<DropIn>> {
    check_bridge(config)?;
    let args = dockerd_args(config, ip, tls);
    for arg in &args {
        check_unit_safe(arg)
            .with_context(|| format!("cannot put dockerd flag {arg:?} in a unit"))?;
    }
    Ok(vec![
        DropIn {
            unit: layout.docker_unit.to_string(),
            content: docker_dropin(config.os, layout, &args.join(" ")),
        },
        DropIn {
            unit: layout.flannel_unit.to_string(),
            content: flannel_dropin(ip),
        },
    ])
}

/// The Docker drop-in. dockerd refuses `hosts` given both as a flag and in daemon.json, so
/// everything stays on the command line and daemon.json is left to the operator.
fn docker_dropin(os: OsVariant, layout: &OsLayout, args: &str) -> String {
    let service = match os {
        // Flatcar's docker.service appends $DOCKER_OPTS to its own dockerd command line, and
        // reads /run/flannel/flannel_docker_opts.env, where flannel's helper writes a --bip on
        // the flannel subnet. Resetting EnvironmentFile keeps docker0 off the flannel network.
        OsVariant::Flatcar => format!(
            "# flannel_docker_opts.env would move docker0 onto the flannel subnet.\n\
             EnvironmentFile=\n\
             Environment=\"DOCKER_OPTS={args}\"\n"
        ),
        // Debian's docker.service starts dockerd directly; replace the command with the same
        // one plus our flags. $DOCKER_OPTS (/etc/default/docker) stays for the operator.
        OsVariant::Debian => {
            format!("ExecStart=\nExecStart={DEBIAN_DOCKERD} {args} $DOCKER_OPTS\n")
        }
    };
    format!(
        "{HEADER}\n[Unit]\nAfter={flannel}\n{NO_START_LIMIT}\n[Service]\n{service}",
        flannel = layout.flannel_unit
    )
}

/// mc restarts dockerd and flanneld whenever their certificates are renewed; Debian's
/// docker.service allows 3 starts a minute, after which a restart fails and leaves dockerd
/// stopped until someone runs `reset-failed`. Both units restart on failure by themselves.
const NO_START_LIMIT: &str =
    "# mc restarts this unit when its certificates are renewed: no start limit.\n\
                              StartLimitIntervalSec=0\n";

/// The flanneld drop-in. flanneld reads every flag from a `FLANNELD_<FLAG>` variable too, so
/// this works whatever command line the composer's unit uses, without touching its
/// `FLANNEL_OPTS` (where the composer keeps the etcd endpoints).
fn flannel_dropin(ip: Ipv4Addr) -> String {
    format!(
        "{HEADER}\n[Unit]\n{NO_START_LIMIT}\n[Service]\n\
         # Route the overlay over the private network and announce that address.\n\
         Environment=FLANNELD_IFACE={ip}\n\
         Environment=FLANNELD_PUBLIC_IP={ip}\n"
    )
}

/// The default bridge must hold a gateway and containers, and must stay off the flannel
/// network: that is the point of moving it.
fn check_bridge(config: &NodeConfig) -> anyhow::Result<()> {
    let (bridge, flannel) = (config.docker.bridge_cidr, config.flannel.network);
    if bridge.prefix_len() > 30 {
        bail!("docker.bridge_cidr {bridge} is too small for a bridge (at most /30)");
    }
    if bridge.contains(&flannel.network()) || flannel.contains(&bridge.network()) {
        bail!("docker.bridge_cidr {bridge} overlaps flannel.network {flannel}");
    }
    Ok(())
}

/// Unit files split on whitespace and expand `$`, `%` and quotes: refuse values that would
/// not survive that unchanged rather than write a unit that means something else.
fn check_unit_safe(value: &str) -> anyhow::Result<()> {
    if let Some(bad) = value
        .chars()
        .find(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | '$' | '%' | ';'))
    {
        bail!("it contains {bad:?}, which systemd would reinterpret");
    }
    Ok(())
}

/// Whether `path` holds a drop-in this agent wrote (its first line is [`HEADER`]).
pub fn is_owned(content: &str) -> bool {
    content.lines().next() == Some(HEADER)
}

/// The unit a drop-in directory belongs to: `docker.service.d` → `docker.service`.
pub fn unit_of_dropin_dir(dir: &Path) -> Option<String> {
    let name = dir.file_name()?.to_str()?;
    name.strip_suffix(".d")
        .filter(|unit| !unit.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn tls() -> TlsPaths {
        TlsPaths {
            ca: PathBuf::from("/etc/molten/tls/ca.pem"),
            server_cert: PathBuf::from("/etc/molten/tls/server-cert.pem"),
            server_key: PathBuf::from("/etc/molten/tls/server-key.pem"),
        }
    }

    #[test]
    fn bridge_gateway_is_the_first_host() {
        assert_eq!(
            bridge_arg("10.255.240.0/20".parse().unwrap()),
            "--bip=10.255.240.1/20"
        );
        // A CIDR written with host bits still yields the network's first host.
        assert_eq!(
            bridge_arg("172.18.5.9/16".parse().unwrap()),
            "--bip=172.18.0.1/16"
        );
    }

    #[test]
    fn tls_flags_listen_on_the_private_ip() {
        let args = tls_listen_args("10.0.0.10".parse().unwrap(), 2376, &tls());
        assert_eq!(
            args.join(" "),
            "-H tcp://10.0.0.10:2376 --tlsverify --tlscacert=/etc/molten/tls/ca.pem \
             --tlscert=/etc/molten/tls/server-cert.pem --tlskey=/etc/molten/tls/server-key.pem"
        );
    }

    #[test]
    fn a_bridge_on_the_flannel_network_is_refused() {
        let mut config = crate::systemd::tests::config(OsVariant::Debian);
        assert!(check_bridge(&config).is_ok());
        config.docker.bridge_cidr = "10.1.200.0/24".parse().unwrap();
        let err = check_bridge(&config).unwrap_err().to_string();
        assert_eq!(
            err,
            "docker.bridge_cidr 10.1.200.0/24 overlaps flannel.network 10.1.0.0/16"
        );
        config.docker.bridge_cidr = "10.0.0.0/8".parse().unwrap();
        assert!(
            check_bridge(&config).is_err(),
            "a bridge around the network overlaps too"
        );
        config.docker.bridge_cidr = "172.30.0.0/31".parse().unwrap();
        assert!(check_bridge(&config)
            .unwrap_err()
            .to_string()
            .contains("too small"));
    }

    #[test]
    fn unsafe_values_are_refused() {
        for bad in ["/a b", "/a$b", "/a%i", "/a\"b", "/a\\b", "/a;b"] {
            assert!(check_unit_safe(bad).is_err(), "{bad}");
        }
        assert!(check_unit_safe("--tlscert=/etc/molten/tls/server-cert.pem").is_ok());
    }

    #[test]
    fn dropin_dirs_name_their_unit() {
        assert_eq!(
            unit_of_dropin_dir(Path::new("/etc/systemd/system/docker.socket.d")).as_deref(),
            Some("docker.socket")
        );
        assert_eq!(unit_of_dropin_dir(Path::new("/x/.d")), None);
        assert_eq!(unit_of_dropin_dir(Path::new("/x/wants")), None);
    }
}
