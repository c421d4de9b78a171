//! The accept loop every `molten serve` listener shares: admission against the connection caps,
//! HTTP/1.1 with a header-read timeout, an idle timeout on every connection, a request timeout on
//! the handler, and graceful shutdown. A listener that wraps the stream (TLS) calls
//! [`serve_connection`] with its own stream type and gets the same limits.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower_service::Service;

use super::access_log::LogSink;
use super::limits::{Admission, Refusal};

/// Largest request head accepted (hyper's minimum buffer is 8 KiB); iPXE and Ignition send a few
/// hundred bytes.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Refusals are logged at most this often (with a count), so a flood cannot flood the log.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// Accepts on `listener` until `stopping` turns true, serving each admitted connection with `app`
/// (connections see `stopping` too and finish their current request). Returns the connections
/// still running.
pub async fn accept_loop(
    listener: TcpListener,
    app: Router,
    admission: Arc<Admission>,
    mut stopping: watch::Receiver<bool>,
    log: LogSink,
) -> JoinSet<()> {
    let refusals = RefusalLog::default();
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopping.wait_for(|stop| *stop) => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(err) => {
                // Out of descriptors or a connection reset before accept: wait, do not exit.
                log(&format!("molten serve: accept failed: {err}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match admission.admit(peer.ip()) {
            Ok(ticket) => {
                let app = app.clone();
                let admission = admission.clone();
                let stopping = stopping.clone();
                connections.spawn(async move {
                    let _ticket = ticket;
                    let _ = stream.set_nodelay(true);
                    serve_connection(stream, peer, app, admission.limits(), stopping).await;
                });
            }
            Err(refusal) => {
                refuse(&stream, refusal);
                refusals.record(&log, refusal, peer);
            }
        }
    }
    connections
}

/// Answers a connection over a cap with a 503 (best effort, never waiting) and closes it.
fn refuse(stream: &TcpStream, refusal: Refusal) {
    let reason = match refusal {
        Refusal::Full => "too many connections\n",
        Refusal::ClientFull => "too many connections from this client\n",
    };
    let reply = format!(
        "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\n\
         Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n{reason}",
        reason.len()
    );
    let _ = stream.try_write(reply.as_bytes());
}

#[derive(Default)]
struct RefusalLog {
    state: Mutex<(Option<Instant>, u64)>,
}

impl RefusalLog {
    fn record(&self, log: &LogSink, refusal: Refusal, peer: SocketAddr) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.1 += 1;
        let due = state
            .0
            .is_none_or(|last| last.elapsed() >= REFUSAL_LOG_EVERY);
        if due {
            let what = match refusal {
                Refusal::Full => "the connection cap is reached",
                Refusal::ClientFull => "the per-client cap is reached",
            };
            log(&format!(
                "molten serve: refused {} connection(s) since the last note; latest from {peer}: {what}",
                state.1
            ));
            *state = (Some(Instant::now()), 0);
        }
    }
}

/// Serves one connection with the listener's limits until the client is done, a limit ends it,
/// or shutdown lets its current request finish.
pub async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    app: Router,
    limits: &super::limits::Limits,
    mut stopping: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let request_timeout = limits.request_timeout;
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let mut app = app.clone();
        async move {
            let answer = app.call(request.map(Body::new));
            match tokio::time::timeout(request_timeout, answer).await {
                Ok(Ok(response)) => Ok::<Response<Body>, std::convert::Infallible>(response),
                Ok(Err(never)) => match never {},
                Err(_) => {
                    Ok((StatusCode::SERVICE_UNAVAILABLE, "request timed out\n").into_response())
                }
            }
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);

    let idle = limits.idle_timeout;
    let mut draining = false;
    loop {
        let quiet_for = activity.quiet_for();
        let check_in = idle
            .saturating_sub(quiet_for)
            .max(Duration::from_millis(50));
        tokio::select! {
            _ = connection.as_mut() => return,
            _ = stopping.wait_for(|stop| *stop), if !draining => {
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
            () = tokio::time::sleep(check_in) => {
                if activity.quiet_for() >= idle {
                    return; // dropping the connection closes the socket
                }
            }
        }
    }
}

/// When the connection last moved a byte, as milliseconds since it opened.
struct Activity {
    opened: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            opened: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let now = self.opened.elapsed().as_millis() as u64;
        self.last_ms.store(now, Ordering::Relaxed);
    }

    fn quiet_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.opened.elapsed().saturating_sub(last)
    }
}

/// A stream that records every read or write that moved bytes.
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Runs `accept_loop` until `shutdown` completes, then waits at most `drain` for connections to
/// finish. Returns false when some were still open at the deadline (they are dropped).
pub async fn run_until(
    listener: TcpListener,
    app: Router,
    admission: Arc<Admission>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
    log: LogSink,
) -> bool {
    let (stop_tx, stop_rx) = watch::channel(false);
    let accepting = tokio::spawn(accept_loop(listener, app, admission.clone(), stop_rx, log));
    shutdown.await;
    let _ = stop_tx.send(true);
    let Ok(mut connections) = accepting.await else {
        return false;
    };
    let drained = tokio::time::timeout(drain, async {
        while connections.join_next().await.is_some() {}
    })
    .await
    .is_ok();
    connections.abort_all();
    drained
}
