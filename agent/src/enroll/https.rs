//! The HTTPS client to the authority: trusts the authority CA from node.json and nothing else
//! (no system roots), optionally presents the node's etcd-client certificate (renewal), bounds
//! the time and the size of the answer.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use http_body_util::{BodyExt, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::identity::Pair;

/// The whole exchange (connect, request, answer) must fit in this by default.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Answers are a few certificates; anything larger is refused unread.
const MAX_ANSWER: usize = 1 << 20;

/// An answer: HTTP status and body text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// A client for `base_url` (`https://host:port`) pinned to `ca_pem`.
pub struct Authority {
    base_url: String,
    timeout: Duration,
    client: Client<HttpsConnector<HttpConnector>, String>,
}

impl Authority {
    pub fn new(base_url: &str, ca_pem: &str, client_identity: Option<&Pair>) -> Result<Self> {
        anyhow::ensure!(
            base_url.starts_with("https://"),
            "authority_url {base_url:?}: only https:// is accepted"
        );
        let config = tls_config(ca_pem, client_identity)?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(TIMEOUT));
        let https = HttpsConnector::from((http, config));
        Ok(Self {
            timeout: TIMEOUT,
            base_url: base_url.trim_end_matches('/').to_string(),
            client: Client::builder(TokioExecutor::new()).build(https),
        })
    }

    /// A shorter bound, for calls a converge should not wait long for.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// `POST <base><path>` with a JSON body.
    pub async fn post_json(&self, path: &str, body: String) -> Result<Answer> {
        let request = http::Request::post(format!("{}{path}", self.base_url))
            .header("content-type", "application/json")
            .body(body)
            .context("building the request")?;
        self.send(request, path).await
    }

    /// `GET <base><path>`.
    pub async fn get(&self, path: &str) -> Result<Answer> {
        let request = http::Request::get(format!("{}{path}", self.base_url))
            .body(String::new())
            .context("building the request")?;
        self.send(request, path).await
    }

    async fn send(&self, request: http::Request<String>, path: &str) -> Result<Answer> {
        let url = format!("{}{path}", self.base_url);
        let exchange = async {
            let response = self.client.request(request).await?;
            let status = response.status().as_u16();
            let bytes = Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| anyhow!("reading the answer: {e}"))?
                .to_bytes();
            let body = String::from_utf8(bytes.to_vec()).context("the answer is not UTF-8")?;
            Ok::<_, anyhow::Error>(Answer { status, body })
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result
                .map_err(|e| anyhow!("{e:#}"))
                .with_context(|| url.clone()),
            Err(_) => Err(anyhow!("{url}: no answer within {:?}", self.timeout)),
        }
    }
}

/// Roots: the authority CA only. Errors never quote the key.
fn tls_config(ca_pem: &str, client_identity: Option<&Pair>) -> Result<ClientConfig> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_slice_iter(ca_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("trust.authority_ca is not PEM: {e}"))?;
    anyhow::ensure!(!certs.is_empty(), "trust.authority_ca holds no certificate");
    for cert in certs {
        roots
            .add(cert)
            .context("trust.authority_ca is not a usable CA certificate")?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("no TLS protocol version available")?
        .with_root_certificates(roots);
    let mut config = match client_identity {
        None => builder.with_no_client_auth(),
        Some(pair) => {
            let chain = CertificateDer::pem_slice_iter(pair.cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow!("the client certificate is not PEM: {e}"))?;
            let key = PrivateKeyDer::from_pem_slice(pair.key_pem.as_bytes())
                .map_err(|_| anyhow!("the client key does not parse"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|_| anyhow!("the client key does not fit its certificate"))?
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shorter bound (the roster's) is the one applied: an authority that accepts and never
    /// answers must not hold a converge for the default 30 s.
    #[tokio::test]
    async fn the_shorter_timeout_is_the_one_applied() {
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = silent.local_addr().unwrap().port();
        let _held = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = silent.accept().await {
                held.push(stream);
            }
        });
        let ca = crate::identity::tests::TestCa::new("authority");
        let authority = Authority::new(&format!("https://127.0.0.1:{port}"), &ca.pem, None)
            .unwrap()
            .with_timeout(Duration::from_millis(300));
        let started = std::time::Instant::now();
        let err = authority.get("/v1/roster").await.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert!(
            format!("{err:#}").contains("no answer within 300ms"),
            "{err:#}"
        );
    }
}
