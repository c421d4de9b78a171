//! The authority's HTTPS listener in `molten serve --authority`: rustls with a certificate minted
//! at start by the authority CA (nodes pin that CA), optional client certificates verified
//! against the etcd CA (renewal and roster need one, enrollment a token), HTTP/1 on top.
//!
//! Bounds for untrusted peers: a TLS handshake and then each request head must arrive within
//! the listener limits' header-read timeout, a connection lives at most [`CONNECTION_TIMEOUT`],
//! and the same connection caps as the plain listener apply (`--max-connections`,
//! `--max-connections-per-client`, through [`crate::serve::limits::Admission`]): one host on the
//! provisioning network cannot take every slot and stall the other nodes' enrollments. A
//! connection over a cap is closed at once. Bodies are capped at [`MAX_REQUEST_BYTES`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use molten_contract::trust::{
    EnrollRequest, Refusal, RefusalKind, RenewRequest, ResolvedSan, ENROLL_PATH, MAX_REQUEST_BYTES,
    RENEW_PATH, ROSTER_PATH,
};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::de::DeserializeOwned;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use super::enrollment::Refused;
use super::service::AuthorityService;
use super::AUTHORITY_CA;
use crate::serve::limits::Admission;
use crate::serve::Limits;

pub const CONNECTION_TIMEOUT: StdDuration = StdDuration::from_secs(60);
/// How long in-flight requests may finish after a shutdown signal.
const DRAIN_TIMEOUT: StdDuration = StdDuration::from_secs(10);
/// `molten serve`'s own certificate is minted at every start; this outlives any serve run.
const SERVE_CERT_VALIDITY: time::Duration = time::Duration::days(365);

/// Who is on the other end of a connection.
#[derive(Debug, Clone)]
struct Peer {
    addr: SocketAddr,
    /// CN of the client certificate rustls verified against the etcd CA, if one was presented.
    client_cn: Option<String>,
}

/// A bound HTTPS listener, not yet accepting.
pub struct AuthorityServer {
    /// The bundle's router, answering every path that is not the authority's.
    bundle: Option<Router>,
    listener: TcpListener,
    local_addr: SocketAddr,
    acceptor: TlsAcceptor,
    service: Arc<AuthorityService>,
    names: Vec<String>,
}

/// Mints serve's certificate (names: the authority's recorded serve names, `extra_names`, the
/// listen address when it is a specific one, and loopback) and binds `listen`.
pub async fn bind(
    service: Arc<AuthorityService>,
    listen: SocketAddr,
    extra_names: &[String],
) -> Result<AuthorityServer> {
    let authority = service.authority().clone();
    let state = authority.read_state()?;
    let mut names: Vec<String> = state.serve_names.clone();
    names.extend(extra_names.iter().cloned());
    if !listen.ip().is_unspecified() {
        names.push(listen.ip().to_string());
    }
    names.extend(["127.0.0.1".to_string(), "localhost".to_string()]);
    names.dedup();
    let mut unique = Vec::new();
    for name in names {
        if !unique.contains(&name) {
            unique.push(name);
        }
    }
    let sans: Vec<ResolvedSan> = unique
        .iter()
        .map(|name| match name.parse() {
            Ok(ip) => ResolvedSan::Ip(ip),
            Err(_) => ResolvedSan::Dns(name.clone()),
        })
        .collect();
    let now = time::OffsetDateTime::now_utc();
    let (cert_pem, key_pem) = authority.ca(AUTHORITY_CA)?.issue_with_new_key(
        &format!("molten serve {}", state.cluster),
        &sans,
        true,
        now,
        SERVE_CERT_VALIDITY,
    )?;
    let etcd_ca = authority.public_roots()?.etcd_ca;
    let config = tls_config(&cert_pem, &key_pem, &etcd_ca)?;

    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let local_addr = listener.local_addr().context("listener has no address")?;
    Ok(AuthorityServer {
        bundle: None,
        listener,
        local_addr,
        acceptor: TlsAcceptor::from(Arc::new(config)),
        service,
        names: unique,
    })
}

fn tls_config(cert_pem: &str, key_pem: &str, client_ca_pem: &str) -> Result<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(client_ca_pem.as_bytes()) {
        roots
            .add(cert.context("the etcd CA is not PEM")?)
            .context("the etcd CA is not a usable trust root")?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .context("cannot build the client certificate verifier")?;
    let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes()).context("serve certificate")?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).context("serve key")?;
    ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert], key)
        .context("cannot use serve's certificate")
}

impl AuthorityServer {
    /// Serves `bundle` (the plain-HTTP listener's files) on this listener too.
    pub fn with_bundle(mut self, bundle: Router) -> Self {
        self.bundle = Some(bundle);
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The startup line.
    pub fn describe(&self) -> String {
        format!(
            "molten serve: authority {} answering enrollments on https://{}/ (certificate names: {})",
            self.service.authority().dir().display(),
            self.local_addr,
            self.names.join(", ")
        )
    }

    /// Accepts until `shutdown` completes, then lets in-flight requests finish (at most
    /// [`DRAIN_TIMEOUT`]).
    pub async fn run(
        self,
        limits: Limits,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let app = match self.bundle {
            Some(bundle) => authority_routes(self.service.clone()).fallback_service(bundle),
            None => authority_routes(self.service.clone()).fallback(not_found),
        };
        let header_timeout = limits.header_read_timeout;
        let admission = Admission::new(limits);
        let mut connections = tokio::task::JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            while connections.try_join_next().is_some() {}
            let (stream, addr) = tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    // Out of descriptors and the like: wait a little rather than spin.
                    Err(_) => {
                        tokio::time::sleep(StdDuration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            // Over a cap: closed before the handshake costs anything.
            let Ok(ticket) = admission.admit(addr.ip()) else {
                continue;
            };
            let acceptor = self.acceptor.clone();
            let app = app.clone();
            connections.spawn(async move {
                let _ticket = ticket;
                let _ = tokio::time::timeout(
                    CONNECTION_TIMEOUT,
                    serve_connection(acceptor, stream, addr, app, header_timeout),
                )
                .await;
            });
        }
        drop(self.listener);
        let drained = async { while connections.join_next().await.is_some() {} };
        if tokio::time::timeout(DRAIN_TIMEOUT, drained).await.is_err() {
            eprintln!("molten serve: authority requests did not finish within {DRAIN_TIMEOUT:?}");
        }
        Ok(())
    }
}

async fn serve_connection(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    addr: SocketAddr,
    app: Router,
    header_timeout: StdDuration,
) {
    let Ok(Ok(tls)) = tokio::time::timeout(header_timeout, acceptor.accept(stream)).await else {
        return;
    };
    let client_cn = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|leaf| common_name(leaf));
    let app = app
        .layer(Extension(Peer { addr, client_cn }))
        .layer(Extension(axum::extract::ConnectInfo(addr)));
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
        .await;
}

fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).ok()?;
    let cn = parsed.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

fn authority_routes(service: Arc<AuthorityService>) -> Router {
    Router::new()
        .route(ENROLL_PATH, post(enroll))
        .route(RENEW_PATH, post(renew))
        .route(ROSTER_PATH, get(roster))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .with_state(service)
}

type Shared = State<Arc<AuthorityService>>;

async fn enroll(
    State(service): Shared,
    Extension(peer): Extension<Peer>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let request: EnrollRequest = match parse(&service, "enroll", &peer, body) {
        Ok(request) => request,
        Err(refused) => return refusal_response(&refused),
    };
    blocking(move || service.enroll(&request, peer.addr)).await
}

async fn renew(
    State(service): Shared,
    Extension(peer): Extension<Peer>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let request: RenewRequest = match parse(&service, "renew", &peer, body) {
        Ok(request) => request,
        Err(refused) => return refusal_response(&refused),
    };
    blocking(move || service.renew(&request, peer.client_cn.as_deref(), peer.addr)).await
}

async fn roster(State(service): Shared, Extension(peer): Extension<Peer>) -> Response {
    blocking(move || service.roster(peer.client_cn.as_deref(), peer.addr)).await
}

async fn not_found() -> Response {
    refusal_response(&Refused::new(
        RefusalKind::BadRequest,
        format!(
            "no such endpoint; the authority answers {ENROLL_PATH}, {RENEW_PATH}, {ROSTER_PATH}"
        ),
    ))
}

/// Reads a JSON body; a body that is too large or not the request type is refused and logged.
fn parse<T: DeserializeOwned>(
    service: &AuthorityService,
    what: &str,
    peer: &Peer,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, Refused> {
    let parsed = body
        .map_err(|rejection| format!("cannot read the body: {rejection}"))
        .and_then(|bytes| {
            serde_json::from_slice(&bytes).map_err(|err| format!("not a {what} request: {err}"))
        });
    parsed.map_err(|message| {
        service.refused(
            what,
            "-",
            peer.addr,
            Refused::new(RefusalKind::BadRequest, message),
        )
    })
}

/// Runs an authority call (file lock, fsync) off the async workers.
async fn blocking<T: serde::Serialize + Send + 'static>(
    call: impl FnOnce() -> Result<T, Refused> + Send + 'static,
) -> Response {
    match tokio::task::spawn_blocking(call).await {
        Ok(Ok(answer)) => Json(answer).into_response(),
        Ok(Err(refused)) => refusal_response(&refused),
        Err(_) => refusal_response(&Refused::new(RefusalKind::Internal, "the request failed")),
    }
}

/// What a client is told of an internal failure; the serve log has the cause (paths of the
/// authority directory, I/O errors), which is not the network's business.
const INTERNAL_MESSAGE: &str = "the authority failed to answer; its log names the cause";

fn refusal_response(refused: &Refused) -> Response {
    let status = StatusCode::from_u16(refused.kind.http_status())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = match refused.kind {
        RefusalKind::Internal => INTERNAL_MESSAGE.to_string(),
        _ => refused.message.clone(),
    };
    let body = Refusal {
        kind: refused.kind,
        message,
    };
    (status, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(refused: Refused) -> (u16, String) {
        let response = refusal_response(&refused);
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn internal_failures_keep_their_cause_in_the_log() {
        let (status, body) = body_of(Refused::new(
            RefusalKind::Internal,
            "cannot write /secret/authority/enrollment.json: disk full",
        ))
        .await;
        assert_eq!(status, 500);
        assert!(!body.contains("/secret"), "{body}");
        assert!(body.contains(INTERNAL_MESSAGE), "{body}");
        // Refusals the client can act on keep their reason.
        let (status, body) = body_of(Refused::new(RefusalKind::TokenExpired, "expired at T")).await;
        assert_eq!(status, 403);
        assert!(body.contains("expired at T"), "{body}");
    }
}
