//! Step 5 of `mc converge`: the Docker side. Connecting to dockerd (unix socket, or TCP with
//! mutual TLS), the BOSH network on this node's flannel subnet, and flannel's MTU.

mod network;
pub mod probe;
mod tls;

use std::fs;
use std::io::ErrorKind;
use std::path::Path;
use std::time::Duration;

use std::net::Ipv4Addr;

use anyhow::{bail, Context};
use bollard::Docker;
use ipnet::Ipv4Net;
use molten_contract::OsLayout;

pub use network::{ensure_bosh_network, NetworkError, NetworkOutcome};
pub use tls::ClientTls;

/// flannel's vxlan MTU on a 1500-byte network; callers use it when `subnet.env` gives none.
pub const DEFAULT_FLANNEL_MTU: u32 = 1450;

/// Seconds each Docker API request may take.
const REQUEST_TIMEOUT_SECS: u64 = 60;
/// How long connecting (version negotiation) may take before Docker counts as down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to dockerd at `host` (`unix:///path` or `tcp://host:port`; with `tls`, TCP uses
/// mutual TLS) and negotiates the API version, so an unreachable daemon or a refused
/// certificate is an error here, naming the host, not a surprise later.
pub async fn connect(host: &str, tls: Option<&ClientTls>) -> anyhow::Result<Docker> {
    let docker = match (host.split_once("://"), tls) {
        (Some(("unix", _)), None) => {
            Docker::connect_with_unix(host, REQUEST_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
                .map_err(anyhow::Error::from)
        }
        (Some(("unix", _)), Some(_)) => bail!("Docker host {host}: TLS needs a tcp:// host"),
        (Some(("tcp", _)), Some(client_tls)) => {
            tls::connect(host, client_tls, REQUEST_TIMEOUT_SECS)
        }
        (Some(("tcp", _)), None) => {
            Docker::connect_with_http(host, REQUEST_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
                .map_err(anyhow::Error::from)
        }
        _ => bail!("Docker host {host:?}: expected unix:///path or tcp://host:port"),
    }
    .with_context(|| format!("cannot set up a Docker client for {host}"))?;
    // bollard speaks the newest API; negotiating lets older daemons (Debian's 20.10) answer.
    let docker = tokio::time::timeout(CONNECT_TIMEOUT, docker.negotiate_version())
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {CONNECT_TIMEOUT:?}"))
        .and_then(|r| r.map_err(anyhow::Error::from))
        .with_context(|| format!("Docker at {host} is not answering"))?;
    Ok(docker)
}

/// What flanneld wrote in `subnet.env` once it held its lease: the node's subnet (from
/// `FLANNEL_SUBNET`, the gateway address with the prefix length) and its MTU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlannelLease {
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    /// `None` when the line is missing or not an MTU: callers use [`DEFAULT_FLANNEL_MTU`].
    pub mtu: Option<u32>,
}

/// Reads `<root>/run/flannel/subnet.env`. Missing file or no usable `FLANNEL_SUBNET`: an error
/// naming the file, since the BOSH network must sit on the subnet flannel actually routes.
pub fn flannel_lease(root: &Path, layout: &OsLayout) -> anyhow::Result<FlannelLease> {
    let path = crate::fs::under_root(root, layout.flannel_subnet_env);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == ErrorKind::NotFound => bail!(
            "{} is missing: flanneld holds no lease yet (is flanneld running?)",
            path.display()
        ),
        Err(err) => return Err(err).with_context(|| format!("cannot read {}", path.display())),
    };
    parse_subnet_env(&text).with_context(|| format!("{} is not usable", path.display()))
}

/// Parses `subnet.env` text (`KEY=value` lines, values optionally quoted).
pub fn parse_subnet_env(text: &str) -> anyhow::Result<FlannelLease> {
    let value = |key: &str| {
        text.lines().find_map(|line| {
            line.trim()
                .strip_prefix(key)
                .and_then(|rest| rest.strip_prefix('='))
                .map(|v| v.trim().trim_matches('"'))
        })
    };
    let subnet_text = value("FLANNEL_SUBNET").context("no FLANNEL_SUBNET line")?;
    let with_gateway: Ipv4Net = subnet_text.parse().map_err(|_| {
        anyhow::anyhow!(
            "FLANNEL_SUBNET={} is not an IPv4 address/prefix",
            crate::text::quote(subnet_text)
        )
    })?;
    let mtu = value("FLANNEL_MTU")
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|mtu| (68..=65535).contains(mtu));
    Ok(FlannelLease {
        subnet: with_gateway.trunc(),
        gateway: with_gateway.addr(),
        mtu,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use molten_contract::OsVariant;

    #[test]
    fn reads_the_lease_flanneld_wrote() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("run/flannel")).unwrap();
        std::fs::write(
            root.path().join("run/flannel/subnet.env"),
            "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.5.1/24\nFLANNEL_MTU=1410\nFLANNEL_IPMASQ=false\n",
        )
        .unwrap();
        let lease = flannel_lease(root.path(), &OsVariant::Debian.layout()).unwrap();
        assert_eq!(lease.subnet, "10.1.5.0/24".parse::<Ipv4Net>().unwrap());
        assert_eq!(lease.gateway, Ipv4Addr::new(10, 1, 5, 1));
        assert_eq!(lease.mtu, Some(1410));
    }

    #[test]
    fn a_missing_or_bad_lease_is_an_error_and_a_bad_mtu_is_none() {
        let layout = OsVariant::Flatcar.layout();
        let empty = tempfile::tempdir().unwrap();
        let err = flannel_lease(empty.path(), &layout).unwrap_err();
        assert!(
            format!("{err:#}").contains("flanneld holds no lease"),
            "{err:#}"
        );
        for (content, message) in [
            ("FLANNEL_MTU=1450\n", "no FLANNEL_SUBNET"),
            ("FLANNEL_SUBNET=10.1.5.1\n", "not an IPv4 address/prefix"),
            ("FLANNEL_SUBNET=\x1b[2J\n", "\\u{1b}[2J"),
        ] {
            let err = parse_subnet_env(content).unwrap_err();
            assert!(format!("{err:#}").contains(message), "{content}: {err:#}");
        }
        for content in [
            "FLANNEL_SUBNET=10.1.5.1/24\nFLANNEL_MTU=big\n",
            "FLANNEL_SUBNET=10.1.5.1/24\nFLANNEL_MTU=0\n",
        ] {
            assert_eq!(parse_subnet_env(content).unwrap().mtu, None, "{content}");
        }
    }

    #[tokio::test]
    async fn unknown_schemes_and_tls_on_unix_are_refused() {
        let err = connect("http://127.0.0.1:1", None).await.unwrap_err();
        assert!(format!("{err:#}").contains("expected unix:///path or tcp://host:port"));
        let tls = ClientTls {
            ca: "ca.pem".into(),
            cert: "cert.pem".into(),
            key: "key.pem".into(),
        };
        let err = connect("unix:///run/docker.sock", Some(&tls))
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("TLS needs a tcp:// host"));
    }

    #[tokio::test]
    async fn a_missing_socket_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let host = format!("unix://{}/docker.sock", dir.path().display());
        let err = connect(&host, None).await.unwrap_err();
        assert!(format!("{err:#}").contains(&host), "{err:#}");
    }
}
