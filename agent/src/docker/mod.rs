//! Step 5 of `mc converge`: the Docker side. Connecting to dockerd (unix socket, or TCP with
//! mutual TLS), the BOSH network on this node's flannel subnet, and flannel's MTU.

mod network;
mod tls;

use std::fs;
use std::io::ErrorKind;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use bollard::Docker;
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

/// flannel's MTU from `<root>/run/flannel/subnet.env` (`FLANNEL_MTU=1450`), which flanneld
/// writes once it holds its lease. `None` when the file or the line is missing or malformed;
/// callers then use [`DEFAULT_FLANNEL_MTU`].
pub fn flannel_mtu(root: &Path, layout: &OsLayout) -> Option<u32> {
    let path = crate::fs::under_root(root, layout.flannel_subnet_env);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) => {
            if err.kind() != ErrorKind::NotFound {
                tracing::warn!(path = %path.display(), error = %err, "cannot read flannel's subnet.env");
            }
            return None;
        }
    };
    let value = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("FLANNEL_MTU="))?;
    match value.trim().trim_matches('"').parse::<u32>() {
        Ok(mtu) if (68..=65535).contains(&mtu) => Some(mtu),
        _ => {
            tracing::warn!(path = %path.display(), value, "FLANNEL_MTU is not a usable MTU");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use molten_contract::OsVariant;

    fn root_with_subnet_env(content: &str) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("run/flannel");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("subnet.env"), content).unwrap();
        root
    }

    #[test]
    fn mtu_is_read_from_subnet_env() {
        let root = root_with_subnet_env(
            "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.5.1/24\nFLANNEL_MTU=1410\nFLANNEL_IPMASQ=false\n",
        );
        let layout = OsVariant::Debian.layout();
        assert_eq!(flannel_mtu(root.path(), &layout), Some(1410));
    }

    #[test]
    fn missing_or_bad_mtu_is_none() {
        let layout = OsVariant::Flatcar.layout();
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(flannel_mtu(empty.path(), &layout), None);
        for content in [
            "FLANNEL_SUBNET=10.1.5.1/24\n",
            "FLANNEL_MTU=big\n",
            "FLANNEL_MTU=0\n",
        ] {
            let root = root_with_subnet_env(content);
            assert_eq!(flannel_mtu(root.path(), &layout), None, "{content}");
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
