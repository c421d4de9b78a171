//! A minimal HTTP/1.0 GET for health checks (etcd `/health`, Docker `/_ping` on a unix socket).
//! Enough for probes; not a client for real work.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};

/// A response: status code and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

/// GET `path` from `addr` ("127.0.0.1:2379").
pub fn get_tcp(addr: &str, path: &str) -> Result<Response> {
    let stream = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    exchange(stream, path).with_context(|| format!("GET http://{addr}{path}"))
}

/// GET `path` over the unix socket at `socket`.
pub fn get_unix(socket: &Path, path: &str) -> Result<Response> {
    let stream = UnixStream::connect(socket)
        .with_context(|| format!("connect unix socket {}", socket.display()))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    exchange(stream, path).with_context(|| format!("GET {path} on {}", socket.display()))
}

fn exchange(mut stream: impl Read + Write, path: &str) -> Result<Response> {
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse(&String::from_utf8_lossy(&raw))
}

fn parse(raw: &str) -> Result<Response> {
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("incomplete HTTP response: {raw:?}"))?;
    let status = head
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| anyhow!("bad HTTP status line in {head:?}"))?;
    Ok(Response {
        status,
        body: body.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_body() {
        let r = parse("HTTP/1.1 200 OK\r\nA: b\r\n\r\nOK").unwrap();
        assert_eq!(
            r,
            Response {
                status: 200,
                body: "OK".into()
            }
        );
        assert!(parse("garbage").is_err());
    }
}
