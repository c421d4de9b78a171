//! Mutual TLS to dockerd that trusts the cluster CA and nothing else.
//!
//! bollard's own TLS client adds the machine's public root certificates to the CA file it is
//! given, so any publicly trusted certificate for the node's address would pass for the node.
//! This transport builds the rustls configuration from the CA file alone.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use bollard::{BollardRequest, Docker};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Client side of Docker's mutual TLS: PEM files of the CA that signed the daemon's
/// certificate, and this client's certificate and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A bollard client for `tcp://host:port` over mutual TLS with `tls`.
pub(crate) fn connect(host: &str, tls: &ClientTls, timeout_secs: u64) -> anyhow::Result<Docker> {
    let addr = host
        .strip_prefix("tcp://")
        .with_context(|| format!("Docker host {host:?}: TLS needs a tcp:// host"))?;
    let config = client_config(tls)?;
    let mut http = HttpConnector::new();
    // The connector sees https:// URIs; hyper's plain connector would refuse them.
    http.enforce_http(false);
    let https = HttpsConnector::from((http, config));
    let client = Client::builder(TokioExecutor::new()).build(https);
    let transport = move |request: BollardRequest| {
        let client = client.clone();
        async move { Ok(client.request(request).await?) }
    };
    Ok(Docker::connect_with_custom_transport(
        transport,
        Some(format!("https://{addr}")),
        timeout_secs,
        bollard::API_DEFAULT_VERSION,
    )?)
}

/// rustls settings: roots = the CA file only; this client's certificate chain and key.
/// Errors name the files, never their content (one of them is a private key).
fn client_config(tls: &ClientTls) -> anyhow::Result<ClientConfig> {
    let read = |path: &std::path::Path, what: &str| {
        std::fs::read_to_string(path).with_context(|| format!("cannot read the {what} {path:?}"))
    };
    let ca = read(&tls.ca, "CA certificate")?;
    let cert = read(&tls.cert, "client certificate")?;
    let key = read(&tls.key, "client key")?;
    config_from_pem(&ca, Some((&cert, &key))).with_context(|| {
        format!(
            "Docker TLS files {:?} (CA), {:?} (certificate), {:?} (key)",
            tls.ca, tls.cert, tls.key
        )
    })
}

/// rustls settings from PEM text: `ca_pem` is the only root (no system roots); with `client`
/// (certificate chain and key PEM) the connection presents that identity. Errors never quote
/// the key.
pub(crate) fn config_from_pem(
    ca_pem: &str,
    client: Option<(&str, &str)>,
) -> anyhow::Result<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in pem_certs(ca_pem, "CA certificate")? {
        roots
            .add(cert)
            .context("the CA certificate is not a usable CA certificate")?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("no TLS protocol version available")?
        .with_root_certificates(roots);
    let Some((cert_pem, key_pem)) = client else {
        return Ok(builder.with_no_client_auth());
    };
    let chain = pem_certs(cert_pem, "client certificate")?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|_| anyhow::anyhow!("the client key is not a PEM private key"))?;
    builder
        .with_client_auth_cert(chain, key)
        .context("the client key does not fit the client certificate")
}

fn pem_certs(pem: &str, what: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| anyhow::anyhow!("the {what} is not PEM: {err}"))?;
    if certs.is_empty() {
        bail!("the {what} holds no PEM certificate");
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn files(ca: &str, cert: &str, key: &str) -> (tempfile::TempDir, ClientTls) {
        let dir = tempfile::tempdir().unwrap();
        let tls = ClientTls {
            ca: dir.path().join("ca.pem"),
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
        };
        fs::write(&tls.ca, ca).unwrap();
        fs::write(&tls.cert, cert).unwrap();
        fs::write(&tls.key, key).unwrap();
        (dir, tls)
    }

    fn self_signed() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["x".to_string()]).unwrap();
        (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
    }

    #[test]
    fn a_complete_set_of_files_makes_a_config() {
        let (cert, key) = self_signed();
        let (_dir, tls) = files(&cert, &cert, &key);
        assert!(client_config(&tls).is_ok());
    }

    #[test]
    fn errors_name_the_file_and_never_the_key() {
        let (cert, key) = self_signed();
        let (_dir, tls) = files("not a certificate\n", &cert, &key);
        let err = format!("{:#}", client_config(&tls).unwrap_err());
        assert!(
            err.contains("ca.pem") && err.contains("no PEM certificate"),
            "{err}"
        );

        let (_other_cert, other_key) = self_signed();
        let (_dir, tls) = files(&cert, &cert, &other_key);
        let err = format!("{:#}", client_config(&tls).unwrap_err());
        assert!(err.contains("does not fit"), "{err}");
        assert!(!err.contains("PRIVATE KEY"), "{err}");

        let (_dir, mut tls) = files(&cert, &cert, &key);
        tls.key = tls.key.with_file_name("missing.pem");
        let err = format!("{:#}", client_config(&tls).unwrap_err());
        assert!(err.contains("missing.pem"), "{err}");
    }
}
