//! A real authority (`molten authority` files, `molten serve`'s HTTPS listener on 127.0.0.1)
//! and a minimal HTTPS client that pins the authority CA and can present a client certificate.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use molten::authority::https;
use molten::authority::register::{register_nodes, NodeEnrollment, DEFAULT_TOKEN_TTL};
use molten::authority::service::AuthorityService;
use molten::authority::Authority;
use molten_contract::trust::{CertificateKind, NodeTlsIdentity, SubjectAltName};
use rcgen::{CertificateParams, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub fn ip_san(ip: &str) -> SubjectAltName {
    SubjectAltName::Ip(ip.parse().unwrap())
}

/// Node `name` at `ip`: a member gets peer/server names, every node a Docker name.
pub fn node(name: &str, ip: &str, member: bool) -> NodeEnrollment {
    let sans = if member { vec![ip_san(ip)] } else { vec![] };
    NodeEnrollment {
        name: name.into(),
        member,
        identity: NodeTlsIdentity {
            etcd_peer_sans: sans.clone(),
            etcd_server_sans: sans,
            etcd_client_cn: name.into(),
            docker_server_sans: vec![ip_san(ip)],
        },
    }
}

/// An authority directory with `nodes` registered; their tokens.
pub struct Fixture {
    pub work: tempfile::TempDir,
    pub authority: Authority,
    pub tokens: BTreeMap<String, String>,
}

impl Fixture {
    pub fn new(nodes: &[NodeEnrollment]) -> Fixture {
        Self::registered_at(nodes, time::OffsetDateTime::now_utc(), DEFAULT_TOKEN_TTL)
    }

    pub fn registered_at(
        nodes: &[NodeEnrollment],
        now: time::OffsetDateTime,
        ttl: time::Duration,
    ) -> Fixture {
        let work = tempfile::tempdir().unwrap();
        let dir = work.path().join("test.authority");
        let authority = Authority::init(&dir, "test", now).unwrap();
        let tokens = register_nodes(&authority, "test", nodes, &[], now, ttl).unwrap();
        Fixture {
            work,
            authority,
            tokens,
        }
    }

    pub fn dir(&self) -> PathBuf {
        self.authority.dir().to_path_buf()
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.authority.dir().join(name)).unwrap()
    }
}

/// Log lines the server wrote.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<String>>>);

impl Logs {
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    pub fn containing(&self, needle: &str) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|l| l.contains(needle))
            .collect()
    }
}

/// The HTTPS listener of `molten serve --authority`, in this process, on 127.0.0.1.
pub struct Server {
    pub addr: SocketAddr,
    pub logs: Logs,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Server {
    pub async fn start(authority: &Authority, validity: time::Duration) -> Server {
        Self::start_with(authority, validity, molten::serve::Limits::default()).await
    }

    pub async fn start_with(
        authority: &Authority,
        validity: time::Duration,
        limits: molten::serve::Limits,
    ) -> Server {
        let logs = Logs::default();
        let sink_logs = logs.clone();
        let sink: molten::serve::LogSink =
            Arc::new(move |line: &str| sink_logs.0.lock().unwrap().push(line.to_string()));
        let service = Arc::new(AuthorityService::load(authority.clone(), validity, sink).unwrap());
        let server = https::bind(service, "127.0.0.1:0".parse().unwrap(), &[])
            .await
            .unwrap();
        let addr = server.local_addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(limits, async move {
            let _ = stopped.await;
        }));
        Server {
            addr,
            logs,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
    }
}

/// A key pair made "on the node" and a CSR for it that asks for `names` and CN `cn`: the
/// authority must ignore both.
pub fn csr(cn: &str, names: &[&str]) -> (KeyPair, String) {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    let pem = params.serialize_request(&key).unwrap().pem().unwrap();
    (key, pem)
}

/// A client certificate (PEM) and its key (PEM) to present.
pub struct ClientCert {
    pub cert: String,
    pub key: String,
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// One HTTPS request to `addr`, trusting only `ca_pem`, presenting `client` if given.
pub async fn request(
    addr: SocketAddr,
    ca_pem: &str,
    client: Option<&ClientCert>,
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<Answer> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some(client) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(client.cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(client.key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector.connect(name, tcp).await?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await?;
    tls.write_all(body.as_bytes()).await?;
    let mut raw = Vec::new();
    tls.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no HTTP status in {head:?}")))?;
    Ok(Answer {
        status,
        body: body.to_string(),
    })
}

/// An enroll (or renew, without `token`) body with one CSR per kind.
pub fn body(node: &str, token: Option<&str>, kinds: &[CertificateKind]) -> (String, Vec<KeyPair>) {
    let mut requests = serde_json::Map::new();
    let mut keys = Vec::new();
    for kind in kinds {
        let (key, pem) = csr("root", &["evil.example", "10.66.66.66"]);
        requests.insert(kind.name().to_string(), pem.into());
        keys.push(key);
    }
    let mut body = serde_json::json!({ "node": node, "requests": requests });
    if let Some(token) = token {
        body["token"] = token.into();
    }
    (body.to_string(), keys)
}

pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}
