//! How the node commands reach the node: its config path, the one-mc-at-a-time lock, etcd
//! (endpoints and client TLS from the arguments or the node config) and the exit status.
//! Shared by `commands` and `etcd_commands`, so neither imports the other.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::cli::NodeArgs;
use crate::converge;
use crate::etcd::{self, Retry};
use crate::lock::NodeLock;

/// Exit code when another mc holds the node lock (sysexits' EX_TEMPFAIL: try again later).
pub const EXIT_BUSY: u8 = 75;

/// The node lock under `--root`, or the exit code to return when another mc holds it.
pub fn lock(node: &NodeArgs, what: &str, wait_secs: u64) -> Result<NodeLock, ExitCode> {
    lock_at(node, crate::lock::LOCK_PATH, what, wait_secs)
}

/// The lock at `path` (on the node, under `--root`), or the exit code when another mc holds it.
pub fn lock_at(
    node: &NodeArgs,
    path: &str,
    what: &str,
    wait_secs: u64,
) -> Result<NodeLock, ExitCode> {
    let path = crate::fs::under_root(&node.root, path);
    match NodeLock::acquire(&path, what, Duration::from_secs(wait_secs)) {
        Ok(lock) => Ok(lock),
        Err(err) => {
            eprintln!("mc: {err:#}");
            Err(if err.is::<crate::lock::Busy>() {
                ExitCode::from(EXIT_BUSY)
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

pub fn retry(node: &NodeArgs) -> Retry {
    Retry::with_budget(Duration::from_secs(node.etcd_timeout))
}

pub fn config_path(
    root: &std::path::Path,
    config: &Option<std::path::PathBuf>,
) -> std::path::PathBuf {
    config
        .clone()
        .unwrap_or_else(|| crate::fs::under_root(root, molten_contract::NODE_CONFIG_PATH))
}

/// A retrying session to etcd from `--etcd`, else from the node config; over mutual TLS with
/// `--etcd-cert`, else with the node's enrolled etcd-client identity.
pub async fn session(node: &NodeArgs) -> Result<etcd::Etcd> {
    let (endpoints, tls) = etcd_target(node)?;
    etcd::Etcd::connect(&endpoints, retry(node), tls).await
}

/// A session for what etcd reserves to `root` once access control is on (membership changes,
/// snapshots): on a member, as its enrolled etcd-admin identity; elsewhere as [`session`] (an
/// operator passes a root certificate with `--etcd-cert`).
pub async fn admin_session(node: &NodeArgs) -> Result<etcd::Etcd> {
    let (endpoints, tls) = etcd_target_as(node, crate::identity::Kind::EtcdAdmin)?;
    etcd::Etcd::connect(&endpoints, retry(node), tls).await
}

/// The endpoints and client TLS for `node`'s arguments.
pub fn etcd_target(node: &NodeArgs) -> Result<(Vec<String>, etcd::EtcdTls)> {
    etcd_target_as(node, crate::identity::Kind::EtcdClient)
}

/// [`etcd_target`], preferring the node's `preferred` identity when the node holds that kind
/// (members hold etcd-admin, workers do not).
fn etcd_target_as(
    node: &NodeArgs,
    preferred: crate::identity::Kind,
) -> Result<(Vec<String>, etcd::EtcdTls)> {
    let path = config_path(&node.root, &node.config);
    // With --etcd, the node config is read only for the node's identity, when there is one.
    let needs_config = node.etcd.is_none()
        || (node.etcd_cert.is_none() && (node.config.is_some() || path.exists()));
    let config = if needs_config {
        Some(
            converge::load_config(&path)
                .context("the etcd endpoints and identity come from the node config")?,
        )
    } else {
        None
    };
    let endpoints = match (&node.etcd, &config) {
        (Some(e), _) => e.clone(),
        (None, Some(config)) => config.etcd.endpoints.clone(),
        (None, None) => anyhow::bail!("no --etcd and no node config"),
    };
    etcd::check_endpoints(&endpoints)?;
    let tls = match (&node.etcd_cert, &node.etcd_key, &node.etcd_ca, &config) {
        (Some(cert), Some(key), Some(ca), _) => etcd::EtcdTls::from_files(ca, cert, key)?,
        (_, _, _, Some(config)) => {
            let settings = crate::enroll::Settings::from_config(config);
            let kind = if settings.kinds().contains(&preferred) {
                preferred
            } else {
                crate::identity::Kind::EtcdClient
            };
            crate::converge::trust::etcd_tls(&node.root, &settings, kind)?
        }
        (_, _, _, None) => anyhow::bail!(
            "etcd takes only mutual TLS: give --etcd-cert, --etcd-key and --etcd-ca (e.g. from \
             `molten authority issue-client --etcd-root`), or run on a node"
        ),
    };
    Ok((endpoints, tls))
}

pub fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
