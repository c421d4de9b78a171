//! `mc status`'s health probe of a node's Docker endpoint: a TLS handshake that checks the
//! daemon's certificate against the cluster's Docker CA and the node's address (its IP SAN),
//! then `GET /_ping` when mc has a Docker client certificate. Something that merely accepts TCP
//! connections, or a daemon of another cluster, does not read "ok".
//!
//! Everything a probe does fits in one bounded time; what the peer says is escaped and bounded.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{CertificateError, ClientConfig};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::text::{bound, escape};

/// A `/_ping` answer is a few headers and `OK`; more is not read.
const MAX_PING_ANSWER: u64 = 4096;
/// Longest peer-derived text kept in an outcome.
const MAX_DETAIL: usize = 256;

/// What one probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The certificate checked out; `pinged`: `/_ping` answered `OK` too (else no client
    /// certificate was given, so only the handshake was done).
    Ok { pinged: bool },
    /// No Docker CA is known: only a TCP connection was tried, and it was accepted.
    Connected,
    /// The connection was refused (nothing listens: Docker down).
    Refused,
    /// No answer (connect, handshake or ping) within the probe's time.
    TimedOut,
    /// The daemon presented a certificate that is not the cluster's for this address.
    WrongCertificate(String),
    /// Not reachable for another reason (no route, reset, not TLS).
    Unreachable(String),
    /// The handshake worked but `/_ping` did not answer `OK` (e.g. our certificate refused).
    PingFailed(String),
}

impl Outcome {
    /// The node counts as reachable.
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok { .. } | Outcome::Connected)
    }

    /// Short, stable name (JSON `probe.result`).
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Ok { .. } => "ok",
            Outcome::Connected => "connected",
            Outcome::Refused => "refused",
            Outcome::TimedOut => "timed-out",
            Outcome::WrongCertificate(_) => "wrong-certificate",
            Outcome::Unreachable(_) => "unreachable",
            Outcome::PingFailed(_) => "ping-failed",
        }
    }
}

impl Outcome {
    /// A few words for `mc status`'s PROBE column (the full text goes to DETAIL on failure).
    pub fn summary(&self) -> &'static str {
        match self {
            Outcome::Ok { pinged: true } => "ok (tls+ping)",
            Outcome::Ok { pinged: false } => "ok (tls only)",
            Outcome::Connected => "tcp only",
            Outcome::Refused => "refused",
            Outcome::TimedOut => "timed out",
            Outcome::WrongCertificate(_) => "wrong certificate",
            Outcome::Unreachable(_) => "unreachable",
            Outcome::PingFailed(_) => "ping failed",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Ok { pinged: true } => write!(f, "ok (TLS handshake and /_ping)"),
            Outcome::Ok { pinged: false } => {
                write!(
                    f,
                    "ok (TLS handshake only: no client certificate for /_ping)"
                )
            }
            Outcome::Connected => write!(
                f,
                "connects (certificate not checked: no Docker CA; pass --docker-ca)"
            ),
            Outcome::Refused => write!(f, "refused"),
            Outcome::TimedOut => write!(f, "timed out"),
            Outcome::WrongCertificate(why) => write!(f, "wrong certificate: {why}"),
            Outcome::Unreachable(why) => write!(f, "unreachable: {why}"),
            Outcome::PingFailed(why) => write!(f, "ping failed: {why}"),
        }
    }
}

/// A probe outcome as `mc status --json` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeView {
    pub result: &'static str,
    pub summary: &'static str,
    pub detail: String,
}

impl From<&Outcome> for ProbeView {
    fn from(outcome: &Outcome) -> Self {
        ProbeView {
            result: outcome.kind(),
            summary: outcome.summary(),
            detail: outcome.to_string(),
        }
    }
}

/// Probes endpoints with one TLS configuration; cheap to share between concurrent probes.
#[derive(Clone)]
pub struct Prober {
    /// `None`: no Docker CA known, TCP connect only (said so in the outcome).
    tls: Option<Arc<ClientConfig>>,
    ping: bool,
    timeout: Duration,
}

impl std::fmt::Debug for Prober {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prober")
            .field("tls", &self.tls.is_some())
            .field("ping", &self.ping)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Prober {
    /// Trusts `docker_ca_pem` only; with `client` (certificate and key PEM) it also pings.
    pub fn new(
        docker_ca_pem: Option<&str>,
        client: Option<(&str, &str)>,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let tls = match docker_ca_pem {
            Some(ca) => Some(Arc::new(super::tls::config_from_pem(ca, client)?)),
            None => None,
        };
        Ok(Self {
            ping: tls.is_some() && client.is_some(),
            tls,
            timeout,
        })
    }

    /// Probes `tcp://<ip>:<port>` within the prober's time.
    pub async fn probe(&self, endpoint: &str) -> Outcome {
        let Some(addr) = endpoint
            .strip_prefix("tcp://")
            .and_then(|a| a.parse::<SocketAddr>().ok())
        else {
            return Outcome::Unreachable(format!(
                "{} is not tcp://<ip>:<port>",
                bound(&escape(endpoint), MAX_DETAIL)
            ));
        };
        match tokio::time::timeout(self.timeout, self.exchange(addr)).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::TimedOut,
        }
    }

    async fn exchange(&self, addr: SocketAddr) -> Outcome {
        let tcp = match TcpStream::connect(addr).await {
            Ok(tcp) => tcp,
            Err(err) => return classify_connect(&err),
        };
        let Some(config) = &self.tls else {
            return Outcome::Connected;
        };
        let name = ServerName::IpAddress(addr.ip().into());
        let mut stream = match TlsConnector::from(config.clone()).connect(name, tcp).await {
            Ok(stream) => stream,
            Err(err) => return classify_handshake(&err, addr),
        };
        if !self.ping {
            return Outcome::Ok { pinged: false };
        }
        let request = format!("GET /_ping HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        if let Err(err) = stream.write_all(request.as_bytes()).await {
            return Outcome::PingFailed(io_detail(&err));
        }
        let mut answer = Vec::new();
        let read = (&mut stream)
            .take(MAX_PING_ANSWER)
            .read_to_end(&mut answer)
            .await;
        match (read, answer.is_empty()) {
            // A daemon that refuses our certificate says so with an alert after the handshake.
            (Err(err), true) => Outcome::PingFailed(io_detail(&err)),
            // Some peers close without TLS close_notify; the answer is complete anyway.
            _ => classify_ping(&answer),
        }
    }
}

/// A failed TCP connect.
pub fn classify_connect(err: &io::Error) -> Outcome {
    match err.kind() {
        io::ErrorKind::ConnectionRefused => Outcome::Refused,
        io::ErrorKind::TimedOut => Outcome::TimedOut,
        _ => Outcome::Unreachable(io_detail(err)),
    }
}

/// A failed TLS handshake: the certificate's faults apart from the rest.
pub fn classify_handshake(err: &io::Error, addr: SocketAddr) -> Outcome {
    let tls_error = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match tls_error {
        Some(rustls::Error::InvalidCertificate(cert)) => {
            Outcome::WrongCertificate(certificate_fault(cert, addr))
        }
        Some(other) => Outcome::Unreachable(format!(
            "TLS handshake failed: {}",
            bound(&escape(&other.to_string()), MAX_DETAIL)
        )),
        None => Outcome::Unreachable(format!("TLS handshake failed: {}", io_detail(err))),
    }
}

fn certificate_fault(err: &CertificateError, addr: SocketAddr) -> String {
    let rustls_says = bound(&escape(&err.to_string()), MAX_DETAIL);
    match err {
        CertificateError::UnknownIssuer => "not issued by the cluster's Docker CA".to_string(),
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            format!(
                "not issued for the node's address {} ({rustls_says})",
                addr.ip()
            )
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            format!("expired ({rustls_says})")
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            format!("not valid yet ({rustls_says})")
        }
        _ => rustls_says,
    }
}

/// The daemon's answer to `GET /_ping`: `HTTP/1.x 200` with body `OK`.
pub fn classify_ping(answer: &[u8]) -> Outcome {
    let text = String::from_utf8_lossy(answer);
    let status_line = text.lines().next().unwrap_or_default();
    let body = text.split_once("\r\n\r\n").map(|(_, body)| body.trim());
    let status_ok =
        status_line.starts_with("HTTP/1.") && status_line.split(' ').nth(1) == Some("200");
    if status_ok && body == Some("OK") {
        Outcome::Ok { pinged: true }
    } else if answer.is_empty() {
        Outcome::PingFailed("no answer to /_ping".to_string())
    } else {
        Outcome::PingFailed(format!(
            "/_ping answered {}",
            bound(&escape(status_line), MAX_DETAIL)
        ))
    }
}

fn io_detail(err: &io::Error) -> String {
    bound(&escape(&err.to_string()), MAX_DETAIL)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        "10.0.0.10:2376".parse().unwrap()
    }

    fn tls_error(err: rustls::Error) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, err)
    }

    #[test]
    fn connect_errors_are_refused_timed_out_or_unreachable() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(classify_connect(&refused), Outcome::Refused);
        let slow = io::Error::from(io::ErrorKind::TimedOut);
        assert_eq!(classify_connect(&slow), Outcome::TimedOut);
        let other = io::Error::other("no route to host");
        assert_eq!(
            classify_connect(&other),
            Outcome::Unreachable("no route to host".into())
        );
    }

    #[test]
    fn certificate_faults_are_wrong_certificate_and_escaped() {
        let unknown = tls_error(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ));
        assert_eq!(
            classify_handshake(&unknown, addr()),
            Outcome::WrongCertificate("not issued by the cluster's Docker CA".into())
        );
        let name = tls_error(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName,
        ));
        let Outcome::WrongCertificate(why) = classify_handshake(&name, addr()) else {
            panic!()
        };
        assert!(
            why.starts_with("not issued for the node's address 10.0.0.10"),
            "{why}"
        );
        let hostile = tls_error(rustls::Error::InvalidCertificate(CertificateError::Other(
            rustls::OtherError(Arc::new(io::Error::other("evil\n\x1b[2J".repeat(200)))),
        )));
        let Outcome::WrongCertificate(why) = classify_handshake(&hostile, addr()) else {
            panic!()
        };
        assert!(!why.contains('\x1b') && !why.contains('\n'), "{why:?}");
        assert!(why.len() < MAX_DETAIL + 64, "{}", why.len());
        let alert = tls_error(rustls::Error::AlertReceived(
            rustls::AlertDescription::HandshakeFailure,
        ));
        assert!(matches!(
            classify_handshake(&alert, addr()),
            Outcome::Unreachable(why) if why.starts_with("TLS handshake failed")
        ));
        let eof = io::Error::from(io::ErrorKind::UnexpectedEof);
        assert!(matches!(
            classify_handshake(&eof, addr()),
            Outcome::Unreachable(_)
        ));
    }

    #[test]
    fn only_200_ok_is_a_ping() {
        let good = b"HTTP/1.0 200 OK\r\nApi-Version: 1.41\r\nContent-Length: 2\r\n\r\nOK";
        assert_eq!(classify_ping(good), Outcome::Ok { pinged: true });
        let denied = b"HTTP/1.0 403 Forbidden\r\n\r\nno";
        assert_eq!(
            classify_ping(denied),
            Outcome::PingFailed("/_ping answered HTTP/1.0 403 Forbidden".into())
        );
        assert!(matches!(classify_ping(b""), Outcome::PingFailed(_)));
        let not_docker = b"HTTP/1.0 200 OK\r\n\r\n<html>";
        assert!(matches!(classify_ping(not_docker), Outcome::PingFailed(_)));
        assert_eq!(
            Outcome::Ok { pinged: false }.to_string(),
            "ok (TLS handshake only: no client certificate for /_ping)"
        );
    }
}
