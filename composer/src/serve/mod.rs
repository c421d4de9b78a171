//! `molten serve`: serves a composed bundle (ipxe or vagrant output directory) over HTTP.
//!
//! Only the files the bundle's `SHA256SUMS` lists are served (and `SHA256SUMS` itself), and only
//! the bytes that were checked against their recorded sha256 at start ([`content`]): a bundle
//! changed on disk afterwards is never served (see docs/platforms.md). Every connection goes
//! through the shared accept loop ([`listener`]) with the [`Limits`]; each request gets one log
//! line naming the node when the path is a node's iPXE script or Ignition config; `/healthz`
//! answers load balancers.

mod access_log;
mod beneath;
mod content;
mod handler;
pub mod limits;
pub mod listener;
mod manifest;
mod nodes;
mod response;

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
pub use content::{CHUNK, DEFAULT_MEMORY_BUDGET, IN_MEMORY_MAX};
pub use limits::Limits;
pub use manifest::{sha256_file, Entry, Manifest, ManifestError, HEALTH_PATH, MANIFEST_NAME};
pub use nodes::{NodeFile, NodeIndex};

use content::Content;
use handler::Shared;
use limits::Admission;

/// How long in-flight downloads may finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A verified bundle with a bound listener, not yet accepting requests.
pub struct Server {
    dir: PathBuf,
    listener: TcpListener,
    local_addr: SocketAddr,
    content: Arc<Content>,
    nodes: NodeIndex,
    limits: Limits,
    /// Why the connection cap is lower than asked, when it is.
    limits_note: Option<String>,
    log: LogSink,
}

/// Checks the bundle in `dir` against its `SHA256SUMS`, then binds `listen` with the default
/// [`Limits`]. Nothing listens when a file is missing, changed or a symlink; the error names each
/// such file.
pub async fn bind(dir: &Path, listen: SocketAddr) -> anyhow::Result<Server> {
    bind_with(dir, listen, Limits::default()).await
}

/// [`bind`] with the given limits.
pub async fn bind_with(
    dir: &Path,
    listen: SocketAddr,
    mut limits: Limits,
) -> anyhow::Result<Server> {
    limits.check().map_err(anyhow::Error::msg)?;
    let limits_note = limits.fit_to_descriptors();
    let owned_dir = dir.to_path_buf();
    let memory_budget = limits.memory_budget;
    let (content, nodes) = tokio::task::spawn_blocking(move || {
        let (manifest, bytes) = Manifest::load_with_bytes(&owned_dir)?;
        let content = Content::load(&owned_dir, &manifest, bytes.into(), memory_budget)?;
        let nodes = NodeIndex::build(&content);
        Ok::<_, ManifestError>((content, nodes))
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
        content: Arc::new(content),
        nodes,
        limits,
        limits_note,
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
    /// pinned to the authority CA. The same verified content is served.
    pub fn bundle_router(&self) -> Router {
        let shared = Arc::new(Shared {
            content: self.content.clone(),
            admission: Admission::new(self.limits.clone()),
            nodes: self.nodes.clone(),
            log: self.log.clone(),
            fetched: Mutex::new(BTreeSet::new()),
        });
        Router::new().fallback(handler::handle).with_state(shared)
    }

    /// The limits in force (the connection cap may be lower than asked: see [`Server::describe`]).
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The startup line: what is served, for which nodes, where, with which limits.
    pub fn describe(&self) -> String {
        let nodes = self.nodes.config_nodes();
        let limits = &self.limits;
        let note = self
            .limits_note
            .as_ref()
            .map(|note| format!(" ({note})"))
            .unwrap_or_default();
        // The address stays last: scripts and tests read it from the end of the line.
        format!(
            "molten serve: {} files from {} verified against {MANIFEST_NAME} ({} MiB served from \
             memory, {} re-checked per chunk); {} node config(s){}{}; \
             at most {} connections{note}, {} per client; timeouts: header {:?}, idle {:?}, \
             request {:?}; listening on http://{}/",
            self.content.len(),
            self.dir.display(),
            self.content.memory_bytes() >> 20,
            self.content.len() - self.content.memory_files(),
            nodes.len(),
            if nodes.is_empty() { "" } else { ": " },
            nodes.join(", "),
            limits.max_connections,
            limits.max_connections_per_client,
            limits.header_read_timeout,
            limits.idle_timeout,
            limits.request_timeout,
            self.local_addr,
        )
    }

    /// Serves until `shutdown` completes, then stops accepting, lets in-flight requests finish
    /// (at most [`DRAIN_TIMEOUT`]) and returns.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let log = self.log.clone();
        let admission = Admission::new(self.limits);
        let shared = Arc::new(Shared {
            content: self.content,
            admission: admission.clone(),
            nodes: self.nodes,
            log: self.log,
            fetched: Mutex::new(BTreeSet::new()),
        });
        let app = Router::new().fallback(handler::handle).with_state(shared);
        let drained = listener::run_until(
            self.listener,
            app,
            admission,
            shutdown,
            DRAIN_TIMEOUT,
            log.clone(),
        )
        .await;
        if !drained {
            log(&format!(
                "molten serve: in-flight requests did not finish within {DRAIN_TIMEOUT:?}; closing them"
            ));
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
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let server = bind_with(dir, listen, limits).await?;
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
pub fn run_until_signalled(dir: &Path, listen: SocketAddr, limits: Limits) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let shutdown = shutdown_signal()?;
        serve(dir, listen, limits, shutdown).await
    })
}

/// Whether `err` means the bundle itself is wrong (exit status 2) rather than the machine.
pub fn is_invalid_bundle(err: &anyhow::Error) -> bool {
    err.downcast_ref::<ManifestError>().is_some()
}
