//! A small blocking HTTPS client for probes that must see the TLS layer itself: which
//! certificate a server presents, and whether it accepts a given client certificate (or none).
//! It trusts only the CA it is given (no system roots). Enough for probes; not a client for
//! real work.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

const TIMEOUT: Duration = Duration::from_secs(10);
/// Answers of the endpoints probed (Docker `/_ping`, the authority) are small.
const MAX_ANSWER: u64 = 1 << 20;

/// A client certificate and its key, as PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl ClientIdentity {
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        Self {
            cert: cert.into(),
            key: key.into(),
        }
    }
}

/// An HTTP answer, and the DER of the certificate the server presented.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub server_cert: Vec<u8>,
}

/// One request over a new TLS connection to `addr`, whose certificate must name `addr`'s IP and
/// chain to `ca`. Fails when the handshake fails or the server drops the connection (e.g. a
/// refused client certificate: with TLS 1.3 that surfaces only after the handshake).
pub fn request(
    addr: SocketAddr,
    ca: &Path,
    client: Option<&ClientIdentity>,
    method: &str,
    path: &str,
    body: &str,
) -> Result<Answer> {
    let config = client_config(ca, client)?;
    let name = ServerName::IpAddress(addr.ip().into());
    let conn = ClientConnection::new(Arc::new(config), name)?;
    let tcp =
        TcpStream::connect_timeout(&addr, TIMEOUT).with_context(|| format!("connect {addr}"))?;
    tcp.set_read_timeout(Some(TIMEOUT))?;
    tcp.set_write_timeout(Some(TIMEOUT))?;
    let mut tls = StreamOwned::new(conn, tcp);
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        addr.ip(),
        body.len()
    );
    tls.write_all(head.as_bytes())
        .and_then(|()| tls.write_all(body.as_bytes()))
        .and_then(|()| tls.flush())
        .with_context(|| format!("TLS to {addr}"))?;
    let mut raw = Vec::new();
    let read = (&mut tls).take(MAX_ANSWER).read_to_end(&mut raw);
    // A server that closes without close_notify after a full answer is fine; an error before
    // any answer is the refusal this client exists to see.
    if let Err(err) = read {
        if raw.is_empty() {
            return Err(err).with_context(|| format!("TLS to {addr}"));
        }
    }
    let server_cert = tls
        .conn
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|c| c.as_ref().to_vec())
        .context("the server presented no certificate")?;
    let (status, body) = parse_answer(&raw).with_context(|| format!("answer from {addr}"))?;
    Ok(Answer {
        status,
        body,
        server_cert,
    })
}

fn client_config(ca: &Path, client: Option<&ClientIdentity>) -> Result<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).with_context(|| format!("{}", ca.display()))? {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    Ok(match client {
        None => builder.with_no_client_auth(),
        Some(id) => {
            let chain = CertificateDer::pem_file_iter(&id.cert)
                .with_context(|| format!("{}", id.cert.display()))?
                .collect::<Result<Vec<_>, _>>()?;
            let key = PrivateKeyDer::from_pem_file(&id.key)
                .map_err(|err| anyhow!("{}: {err}", id.key.display()))?;
            builder.with_client_auth_cert(chain, key)?
        }
    })
}

fn parse_answer(raw: &[u8]) -> Result<(u16, String)> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").context("no header end")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .context("no status")?
        .parse()
        .context("bad status")?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut rest: &str) -> Result<String> {
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").context("bad chunk")?;
        let size = usize::from_str_radix(size.trim(), 16).context("bad chunk size")?;
        if size == 0 {
            return Ok(out);
        }
        if after.len() < size {
            bail!("truncated chunk");
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_plain_and_chunked_answers() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK";
        assert_eq!(parse_answer(plain).unwrap(), (200, "OK".to_string()));
        let chunked =
            b"HTTP/1.1 409 Conflict\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_answer(chunked).unwrap(), (409, "abcde".to_string()));
        assert!(parse_answer(b"garbage").is_err());
    }
}
