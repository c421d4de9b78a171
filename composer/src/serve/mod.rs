//! `molten serve`: serves a composed bundle (ipxe or vagrant output directory) over HTTP.
//!
//! Only the files the bundle's `SHA256SUMS` lists are served (and `SHA256SUMS` itself), and only
//! after every one of them was checked against its recorded sha256. Requests are answered by
//! axum + tower-http (`ServeFile`: HEAD, Range, conditional requests); each gets one log line
//! naming the node when the path is a node's iPXE script or Ignition config.

mod access_log;
mod handler;
mod manifest;
mod nodes;

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use tokio::net::TcpListener;

pub use access_log::{stderr_sink, utc_timestamp, LogSink};
pub use manifest::{sha256_file, Entry, Manifest, ManifestError, MANIFEST_NAME};
pub use nodes::{NodeFile, NodeIndex};

use handler::Shared;

/// How long in-flight downloads may finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A verified bundle with a bound listener, not yet accepting requests.
pub struct Server {
    dir: PathBuf,
    listener: TcpListener,
    local_addr: SocketAddr,
    manifest: Manifest,
    nodes: NodeIndex,
    log: LogSink,
}

/// Checks the bundle in `dir` against its `SHA256SUMS`, then binds `listen`. Nothing listens when
/// a file is missing or changed; the error names each such file.
pub async fn bind(dir: &Path, listen: SocketAddr) -> anyhow::Result<Server> {
    let owned_dir = dir.to_path_buf();
    let (manifest, nodes) = tokio::task::spawn_blocking(move || {
        let manifest = Manifest::load(&owned_dir)?;
        manifest.verify()?;
        let nodes = NodeIndex::build(&manifest);
        Ok::<_, ManifestError>((manifest, nodes))
    })
    .await
    .context("bundle check panicked")?
    .with_context(|| format!("cannot serve {}", dir.display()))?;

    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let local_addr = listener
        .local_addr()
        .context("listener has no local address")?;
    Ok(Server {
        dir: dir.to_path_buf(),
        listener,
        local_addr,
        manifest,
        nodes,
        log: stderr_sink(),
    })
}

impl Server {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Sends log lines to `log` instead of stderr.
    pub fn with_log(mut self, log: LogSink) -> Self {
        self.log = log;
        self
    }

    /// The same bundle as a router for another listener: `molten serve --authority` serves it
    /// over HTTPS too, so a pointer config can fetch a full config (which holds the node's token)
    /// pinned to the authority CA.
    pub fn bundle_router(&self) -> Router {
        let shared = Arc::new(Shared {
            manifest_path: self.dir.join(MANIFEST_NAME),
            manifest: self.manifest.clone(),
            nodes: self.nodes.clone(),
            log: self.log.clone(),
            fetched: Mutex::new(BTreeSet::new()),
        });
        Router::new().fallback(handler::handle).with_state(shared)
    }

    /// The startup line: what is served, for which nodes, where.
    pub fn describe(&self) -> String {
        let nodes = self.nodes.config_nodes();
        format!(
            "molten serve: {} files from {} verified against {MANIFEST_NAME}; {} node config(s){}{}; \
             listening on http://{}/",
            self.manifest.len(),
            self.dir.display(),
            nodes.len(),
            if nodes.is_empty() { "" } else { ": " },
            nodes.join(", "),
            self.local_addr
        )
    }

    /// Serves until `shutdown` completes, then stops accepting, lets in-flight requests finish
    /// (at most [`DRAIN_TIMEOUT`]) and returns.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let log = self.log.clone();
        let shared = Arc::new(Shared {
            manifest_path: self.dir.join(MANIFEST_NAME),
            manifest: self.manifest,
            nodes: self.nodes,
            log: self.log,
            fetched: Mutex::new(BTreeSet::new()),
        });
        let app = Router::new().fallback(handler::handle).with_state(shared);

        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        let signal = async move {
            shutdown.await;
            let _ = stopping_tx.send(());
        };
        let server = axum::serve(
            self.listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(signal);
        let drain_deadline = async move {
            match stopping_rx.await {
                Ok(()) => tokio::time::sleep(DRAIN_TIMEOUT).await,
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            result = server => result.context("HTTP server failed")?,
            () = drain_deadline => log(&format!(
                "molten serve: in-flight requests did not finish within {DRAIN_TIMEOUT:?}; closing them"
            )),
        }
        log("molten serve: stopped");
        Ok(())
    }
}

/// Checks and serves the bundle in `dir` on `listen` until `shutdown` completes, logging to
/// stderr.
pub async fn serve(
    dir: &Path,
    listen: SocketAddr,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let server = bind(dir, listen).await?;
    eprintln!("{}", server.describe());
    server.run(shutdown).await
}

/// Completes on the first SIGINT (Ctrl-C) or SIGTERM. The handlers are installed now, so a signal
/// that arrives before the future is polled is not lost.
pub fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}

/// The `molten serve` command: a runtime, the signal handlers, then [`serve`] until Ctrl-C or
/// SIGTERM.
pub fn run_until_signalled(dir: &Path, listen: SocketAddr) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let shutdown = shutdown_signal()?;
        serve(dir, listen, shutdown).await
    })
}

/// Whether `err` means the bundle itself is wrong (exit status 2) rather than the machine.
pub fn is_invalid_bundle(err: &anyhow::Error) -> bool {
    err.downcast_ref::<ManifestError>().is_some()
}
