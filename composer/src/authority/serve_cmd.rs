//! `molten serve --authority DIR`: the plain-HTTP bundle listener (iPXE has no HTTPS) and the
//! authority's HTTPS listener in one process, stopped together by SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use super::secure_fs::is_within;
use super::service::AuthorityService;
use super::{https, Authority};
use crate::serve::{self, stderr_sink};

/// What `--authority` and its companion flags ask for.
#[derive(Debug, Clone)]
pub struct AuthorityOptions {
    pub dir: PathBuf,
    pub tls_listen: SocketAddr,
    pub extra_names: Vec<String>,
    pub cert_validity: time::Duration,
}

/// An authority inside the bundle it serves would be one wrong manifest line from the network.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AuthorityInBundle(String);

pub fn run_until_signalled(
    bundle: Option<&Path>,
    listen: SocketAddr,
    limits: serve::Limits,
    options: &AuthorityOptions,
) -> Result<()> {
    if let Some(bundle) = bundle {
        if is_within(&options.dir, bundle) || is_within(bundle, &options.dir) {
            return Err(AuthorityInBundle(format!(
                "the authority {} and the bundle {} overlap: keep the authority outside every \
                 bundle",
                options.dir.display(),
                bundle.display()
            ))
            .into());
        }
    }
    let authority = Authority::open(&options.dir)?;
    let service = Arc::new(AuthorityService::load(
        authority,
        options.cert_validity,
        stderr_sink(),
    )?);
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let signal = serve::shutdown_signal()?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            signal.await;
            let _ = stop_tx.send(true);
        });
        let stopped = move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|stop| *stop).await;
            }
        };
        let mut https = https::bind(service, options.tls_listen, &options.extra_names).await?;
        let bundle_server = match bundle {
            Some(dir) => {
                let server = serve::bind_with(dir, listen, limits.clone()).await?;
                eprintln!("{}", server.describe());
                https = https.with_bundle(server.bundle_router());
                Some(server)
            }
            None => None,
        };
        eprintln!("{}", https.describe());
        let https_task = tokio::spawn(https.run(limits, stopped()));
        if let Some(server) = bundle_server {
            server.run(stopped()).await?;
        }
        match https_task.await {
            Ok(result) => result,
            Err(err) => bail!("the HTTPS listener failed: {err}"),
        }
    })
}

/// `90d`, `12h`, `30m`, `600s` (tests use seconds) → a positive duration.
pub fn parse_validity(text: &str) -> Result<time::Duration, String> {
    let split = text.len().saturating_sub(1);
    let (number, unit) = text.split_at(split);
    let value: i64 =
        number.parse().ok().filter(|v| *v > 0).ok_or_else(|| {
            format!("{text:?} is not a positive duration like 90d, 12h, 30m or 600s")
        })?;
    let duration = match unit {
        "d" => time::Duration::days(value),
        "h" => time::Duration::hours(value),
        "m" => time::Duration::minutes(value),
        "s" => time::Duration::seconds(value),
        _ => return Err(format!("{text:?} has no unit: use d, h, m or s (e.g. 90d)")),
    };
    if duration > time::Duration::days(3650) {
        return Err(format!("{text:?} is longer than the CAs live (10 years)"));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validities() {
        assert_eq!(parse_validity("90d"), Ok(time::Duration::days(90)));
        assert_eq!(parse_validity("600s"), Ok(time::Duration::seconds(600)));
        for bad in ["", "d", "0d", "-1d", "90", "5y", "99999d"] {
            assert!(parse_validity(bad).is_err(), "{bad}");
        }
    }
}
