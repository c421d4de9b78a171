//! PKI step: the cluster CA and this node's Docker server and client certificates, stable across
//! boots (reused while valid), stored in etcd (for `mc bosh`) and on disk (for dockerd).

pub mod ca;
pub mod cert;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use etcd_client::Client;
use molten_contract::{keys, NodeConfig};
use time::OffsetDateTime;

use crate::etcd;
use crate::fs::{under_root, write_if_changed, MODE_PUBLIC, MODE_SECRET};
use crate::outcome::{Done, State};
pub use ca::Ca;
pub use cert::{Kind, Pair};
// One PEM reader for the whole agent: the identity module's (this module goes once trust is required).
pub use crate::identity::pem_to_der;

/// File names inside the TLS directory (`OsLayout::tls_dir`).
pub const CA_FILE: &str = "ca.pem";
pub const SERVER_CERT_FILE: &str = "server-cert.pem";
pub const SERVER_KEY_FILE: &str = "server-key.pem";
pub const CLIENT_CERT_FILE: &str = "client-cert.pem";
pub const CLIENT_KEY_FILE: &str = "client-key.pem";

/// etcd item names under `keys::node_tls(name, item)`.
pub const SERVER_CERT_ITEM: &str = "server-cert";
pub const SERVER_KEY_ITEM: &str = "server-key";
pub const CLIENT_CERT_ITEM: &str = "client-cert";
pub const CLIENT_KEY_ITEM: &str = "client-key";

/// What the PKI step leaves for later steps.
#[derive(Debug, Clone)]
pub struct NodeTls {
    pub ca: Ca,
    pub server: Pair,
    pub client: Pair,
    pub server_expiry: OffsetDateTime,
    /// The TLS directory as seen on the node (without `--root`).
    pub node_dir: PathBuf,
}

/// The SANs of the Docker server certificate: the private IP, loopback and the hostname.
pub fn server_kind(config: &NodeConfig, ip: Ipv4Addr) -> Kind {
    Kind::Server {
        ips: vec![IpAddr::V4(ip), IpAddr::V4(Ipv4Addr::LOCALHOST)],
        dns: vec![config.node.name.clone()],
    }
}

pub async fn ensure_node_tls(
    client: &mut Client,
    config: &NodeConfig,
    ip: Ipv4Addr,
    root: &Path,
) -> Result<(Done, NodeTls)> {
    let (ca, ca_done) = ca::ensure_ca(client, &config.cluster).await?;
    let mut changes = Vec::new();
    if ca_done.state == State::Changed {
        changes.push(ca_done.detail.clone());
    }
    let name = &config.node.name;
    let node_dir = PathBuf::from(config.os.layout().tls_dir);
    let disk_dir = under_root(root, config.os.layout().tls_dir);

    let server_kind = server_kind(config, ip);
    let server = ensure_pair(
        client,
        &ca,
        name,
        &server_kind,
        (SERVER_CERT_ITEM, SERVER_KEY_ITEM),
        (
            &disk_dir.join(SERVER_CERT_FILE),
            &disk_dir.join(SERVER_KEY_FILE),
        ),
        &mut changes,
    )
    .await?;
    let client_pair = ensure_pair(
        client,
        &ca,
        name,
        &Kind::Client,
        (CLIENT_CERT_ITEM, CLIENT_KEY_ITEM),
        (
            &disk_dir.join(CLIENT_CERT_FILE),
            &disk_dir.join(CLIENT_KEY_FILE),
        ),
        &mut changes,
    )
    .await?;

    let files = [
        (CA_FILE, ca.cert_pem.as_str(), MODE_PUBLIC),
        (SERVER_CERT_FILE, server.cert_pem.as_str(), MODE_PUBLIC),
        (SERVER_KEY_FILE, server.key_pem.as_str(), MODE_SECRET),
        (CLIENT_CERT_FILE, client_pair.cert_pem.as_str(), MODE_PUBLIC),
        (CLIENT_KEY_FILE, client_pair.key_pem.as_str(), MODE_SECRET),
    ];
    for (file, content, mode) in files {
        if write_if_changed(&disk_dir.join(file), content.as_bytes(), mode)? {
            changes.push(format!("wrote {}", node_dir.join(file).display()));
        }
    }
    let server_expiry = cert::not_after(&server.cert_pem)?;
    let done = if changes.is_empty() {
        Done::unchanged(format!(
            "certificates valid until {}",
            crate::timestamp::rfc3339(server_expiry)
        ))
    } else {
        Done::changed(changes.join("; "))
    };
    Ok((
        done,
        NodeTls {
            ca,
            server,
            client: client_pair,
            server_expiry,
            node_dir,
        },
    ))
}

/// Finds a usable certificate (etcd first: it is what `mc bosh` publishes; then the disk, e.g.
/// after etcd lost its data) or issues a new one, and makes sure etcd holds it.
async fn ensure_pair(
    client: &mut Client,
    ca: &Ca,
    name: &str,
    kind: &Kind,
    (cert_item, key_item): (&str, &str),
    (cert_file, key_file): (&Path, &Path),
    changes: &mut Vec<String>,
) -> Result<Pair> {
    let cert_key = keys::node_tls(name, cert_item);
    let key_key = keys::node_tls(name, key_item);
    let now = OffsetDateTime::now_utc();
    let stored = match (
        etcd::get(client, &cert_key).await?,
        etcd::get(client, &key_key).await?,
    ) {
        (Some(c), Some(k)) => Some(Pair {
            cert_pem: c.value,
            key_pem: k.value,
        }),
        _ => None,
    };
    let mut reason = "absent".to_string();
    if let Some(pair) = &stored {
        match cert::renewal_reason(pair, ca, kind, now) {
            None => return Ok(pair.clone()),
            Some(why) => reason = why,
        }
    }
    let on_disk = read_pair(cert_file, key_file);
    let pair = match on_disk {
        Some(pair) if cert::renewal_reason(&pair, ca, kind, now).is_none() => {
            changes.push(format!("{cert_item}: restored to etcd from disk"));
            pair
        }
        _ => {
            let pair = cert::issue(ca, name, kind, cert::VALIDITY)?;
            changes.push(format!("{cert_item}: issued ({reason})"));
            pair
        }
    };
    etcd::put_all(
        client,
        &[(&cert_key, &pair.cert_pem), (&key_key, &pair.key_pem)],
    )
    .await?;
    Ok(pair)
}

fn read_pair(cert_file: &Path, key_file: &Path) -> Option<Pair> {
    Some(Pair {
        cert_pem: std::fs::read_to_string(cert_file).ok()?,
        key_pem: std::fs::read_to_string(key_file).ok()?,
    })
}

/// Reads the node's client certificate and key from etcd (for `mc bosh`).
pub async fn load_client_pair(client: &mut Client, name: &str) -> Result<Pair> {
    let get = |item: &'static str| keys::node_tls(name, item);
    let cert = etcd::get(client, &get(CLIENT_CERT_ITEM))
        .await?
        .with_context(|| format!("{} is missing", get(CLIENT_CERT_ITEM)))?;
    let key = etcd::get(client, &get(CLIENT_KEY_ITEM))
        .await?
        .with_context(|| format!("{} is missing", get(CLIENT_KEY_ITEM)))?;
    Ok(Pair {
        cert_pem: cert.value,
        key_pem: key.value,
    })
}
