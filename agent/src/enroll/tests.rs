//! Enrollment against a stand-in authority: a TLS listener on 127.0.0.1 that signs CSRs with
//! test CAs and single-use tokens, like the real one (which has its own tests on the composer
//! side, and the lab runs both together).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use rcgen::{CertificateParams, CertificateSigningRequestParams, Issuer, KeyPair};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use time::{Duration, OffsetDateTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::*;
use crate::identity::tests::TestCa;
use molten_contract::trust::RefusalKind;

/// Test CAs with their issuers, as the authority holds them.
struct Cas {
    authority: TestCa,
    etcd: (String, Issuer<'static, KeyPair>),
    docker: (String, Issuer<'static, KeyPair>),
}

fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let key = identity::generate_key().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let pem = params.self_signed(&key).unwrap().pem();
    (pem, Issuer::new(params, key))
}

/// What the stand-in saw and how it answers.
#[derive(Default)]
struct State {
    used: bool,
    requests: Vec<(String, Option<String>)>,
    validity: Option<Duration>,
}

struct FakeAuthority {
    url: String,
    state: Arc<Mutex<State>>,
    cas: Arc<Cas>,
    _task: tokio::task::JoinHandle<()>,
}

const TOKEN: &str = "tok-123";

impl FakeAuthority {
    async fn start() -> Self {
        let cas = Arc::new(Cas {
            authority: TestCa::new("authority"),
            etcd: ca("etcd"),
            docker: ca("docker"),
        });
        let serve_key = identity::generate_key().unwrap();
        let now = OffsetDateTime::now_utc();
        let serve_cert = cas.authority.sign(
            "serve",
            &serve_key,
            now - Duration::hours(1),
            now + Duration::days(1),
        );
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(cas.etcd.0.as_bytes()).unwrap())
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .allow_unauthenticated()
                .build()
                .unwrap();
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![CertificateDer::from_pem_slice(serve_cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(serve_key.serialize_pem().as_bytes()).unwrap(),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let (task_state, task_cas) = (state.clone(), cas.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    continue;
                };
                let peer_cn = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first().cloned())
                    .map(|der| {
                        let (_, cert) = X509Certificate::from_der(&der).unwrap();
                        let cn = cert.subject().iter_common_name().next().unwrap();
                        cn.as_str().unwrap().to_string()
                    });
                let (path, body) = read_request(&mut tls).await;
                let (status, answer) = answer(&task_state, &task_cas, &path, &body, peer_cn);
                let response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            }
        });
        Self {
            url,
            state,
            cas,
            _task: task,
        }
    }

    fn settings(&self, node: &str, member: bool, state_dir: &str) -> Settings {
        Settings {
            node: node.into(),
            member,
            authority_url: self.url.clone(),
            authority_ca: self.cas.authority.pem.clone(),
            roots: Roots {
                etcd_ca: self.cas.etcd.0.clone(),
                docker_ca: self.cas.docker.0.clone(),
            },
            state_dir: state_dir.into(),
            private_ip: None,
        }
    }
}

async fn read_request<S: AsyncReadExt + Unpin>(stream: &mut S) -> (String, String) {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        data.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&data).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if data.len() >= end + 4 + length || n == 0 {
                let path = text.split_whitespace().nth(1).unwrap().to_string();
                return (path, text[end + 4..].to_string());
            }
        }
        if n == 0 {
            return (String::new(), String::new());
        }
    }
}

fn answer(
    state: &Mutex<State>,
    cas: &Cas,
    path: &str,
    body: &str,
    peer_cn: Option<String>,
) -> (u16, String) {
    let mut state = state.lock().unwrap();
    state.requests.push((path.to_string(), peer_cn.clone()));
    let refuse = |kind: RefusalKind| {
        serde_json::to_string(&Refusal {
            kind,
            message: format!("{kind} for this node"),
        })
        .unwrap()
    };
    let (node, requests) = match path {
        "/v1/enroll" => {
            let req: EnrollRequest = serde_json::from_str(body).unwrap();
            if req.token != TOKEN {
                return (403, refuse(RefusalKind::TokenInvalid));
            }
            if state.used {
                return (409, refuse(RefusalKind::TokenReused));
            }
            state.used = true;
            (req.node, req.requests)
        }
        "/v1/renew" => {
            let req: RenewRequest = serde_json::from_str(body).unwrap();
            if peer_cn.as_deref() != Some(req.node.as_str()) {
                return (403, refuse(RefusalKind::NotAuthenticated));
            }
            (req.node, req.requests)
        }
        _ => return (404, refuse(RefusalKind::BadRequest)),
    };
    let validity = state.validity.unwrap_or(Duration::days(90));
    let now = OffsetDateTime::now_utc();
    let mut certificates = BTreeMap::new();
    for (kind, csr) in requests {
        let mut csr = CertificateSigningRequestParams::from_pem(&csr).unwrap();
        let cn = match kind {
            Kind::EtcdAdmin => "root".to_string(),
            _ => node.clone(),
        };
        csr.params.distinguished_name = rcgen::DistinguishedName::new();
        csr.params.distinguished_name.push(DnType::CommonName, cn);
        // Back-dated like the real authority, unless a short test validity is configured.
        csr.params.not_before = if validity < Duration::minutes(5) {
            now
        } else {
            now - Duration::minutes(5)
        };
        csr.params.not_after = now + validity;
        let issuer = if kind == Kind::DockerServer {
            &cas.docker.1
        } else {
            &cas.etcd.1
        };
        certificates.insert(kind, csr.signed_by(issuer).unwrap().pem());
    }
    let issued = EnrollAnswer {
        certificates,
        not_after: crate::timestamp::rfc3339(now + validity),
    };
    (200, serde_json::to_string(&issued).unwrap())
}

fn token_file(dir: &Path) -> PathBuf {
    let path = dir.join("enroll-token");
    std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
    path
}

#[tokio::test]
async fn enrolls_once_and_a_valid_identity_means_nothing_to_do() {
    let authority = FakeAuthority::start().await;
    let root = tempfile::tempdir().unwrap();
    let settings = authority.settings("node-a", true, "/var/lib/molten");
    let token = token_file(root.path());

    let Enrolled::New(infos) = enroll(root.path(), &settings, &token).await.unwrap() else {
        panic!("expected a new enrollment")
    };
    assert_eq!(infos.len(), 5);
    let dir = settings.identity(root.path());
    for kind in Kind::ALL {
        let key = std::fs::read_to_string(dir.key_path(kind)).unwrap();
        assert!(key.contains("PRIVATE KEY"));
        let mode = std::fs::metadata(dir.key_path(kind)).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
    }
    assert_eq!(
        common_name(&dir.load(Kind::EtcdAdmin).unwrap().unwrap().cert_pem).unwrap(),
        "root"
    );

    // A reboot: the identity is valid, the token is not sent again.
    let Enrolled::Already(_) = enroll(root.path(), &settings, &token).await.unwrap() else {
        panic!("re-enrolled although the identity was valid")
    };
    assert_eq!(authority.state.lock().unwrap().requests.len(), 1);
    assert_eq!(last_failure(root.path(), "/var/lib/molten"), None);
}

#[tokio::test]
async fn a_refusal_is_recorded_for_status_and_nothing_is_stored() {
    let authority = FakeAuthority::start().await;
    authority.state.lock().unwrap().used = true;
    let root = tempfile::tempdir().unwrap();
    let settings = authority.settings("node-b", false, "/var/lib/molten");
    let err = enroll(root.path(), &settings, &token_file(root.path()))
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("refused (token-reused)"),
        "{err:#}"
    );
    let failure = last_failure(root.path(), "/var/lib/molten").unwrap();
    let text = failure.to_string();
    assert!(
        text.starts_with("could not enroll: refused (token-reused)"),
        "{text}"
    );
    assert!(!settings
        .identity(root.path())
        .key_path(Kind::EtcdClient)
        .exists());
}

#[tokio::test]
async fn an_authority_with_another_certificate_is_not_trusted() {
    let authority = FakeAuthority::start().await;
    let root = tempfile::tempdir().unwrap();
    let mut settings = authority.settings("node-a", false, "/var/lib/molten");
    settings.authority_ca = TestCa::new("impostor").pem;
    let err = enroll(root.path(), &settings, &token_file(root.path()))
        .await
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("UnknownIssuer") || text.contains("certificate"),
        "{text}"
    );
    assert!(
        authority.state.lock().unwrap().requests.is_empty(),
        "the token was sent"
    );
    assert!(last_failure(root.path(), "/var/lib/molten").is_some());
}

#[tokio::test]
async fn certificates_from_the_wrong_ca_are_refused() {
    let authority = FakeAuthority::start().await;
    let root = tempfile::tempdir().unwrap();
    let mut settings = authority.settings("node-a", false, "/var/lib/molten");
    // The node expects its Docker certificate from another CA than the one that signs it.
    settings.roots.docker_ca = settings.roots.etcd_ca.clone();
    let err = enroll(root.path(), &settings, &token_file(root.path()))
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("not signed by the Docker CA"),
        "{err:#}"
    );
    assert!(!settings
        .identity(root.path())
        .cert_path(Kind::EtcdClient)
        .exists());
}

#[tokio::test]
async fn renewal_waits_for_the_last_third_and_authenticates_with_the_client_certificate() {
    let authority = FakeAuthority::start().await;
    let root = tempfile::tempdir().unwrap();
    let settings = authority.settings("node-a", false, "/var/lib/molten");
    enroll(root.path(), &settings, &token_file(root.path()))
        .await
        .unwrap();
    let renewed = renew(root.path(), &settings, false).await.unwrap();
    assert!(renewed.kinds.is_empty(), "nothing was due");

    // Short certificates: 6 s validity, renewal due after 4 s.
    authority.state.lock().unwrap().validity = Some(Duration::seconds(6));
    let before = renew(root.path(), &settings, true).await.unwrap();
    assert_eq!(before.kinds, vec![Kind::EtcdClient, Kind::DockerServer]);
    let early = renew(root.path(), &settings, false).await.unwrap();
    assert!(early.kinds.is_empty(), "renewed before the last third");
    tokio::time::sleep(std::time::Duration::from_millis(4300)).await;
    authority.state.lock().unwrap().validity = Some(Duration::days(90));
    let after = renew(root.path(), &settings, false).await.unwrap();
    assert_eq!(after.kinds.len(), 2, "due in the last third");
    assert!(after.infos[0].not_after > before.infos[0].not_after);
    let requests = &authority.state.lock().unwrap().requests;
    assert_eq!(
        requests.last().unwrap(),
        &("/v1/renew".to_string(), Some("node-a".to_string()))
    );
}

#[tokio::test]
async fn no_identity_means_no_renewal() {
    let authority = FakeAuthority::start().await;
    let root = tempfile::tempdir().unwrap();
    let settings = authority.settings("node-a", false, "/var/lib/molten");
    let err = renew(root.path(), &settings, false).await.unwrap_err();
    assert!(format!("{err}").contains("no valid identity"), "{err}");
    let failure = last_failure(root.path(), "/var/lib/molten").unwrap();
    assert!(
        failure.to_string().starts_with("could not renew"),
        "{failure}"
    );
}

#[test]
fn a_missing_token_is_named() {
    let err = read_token(Path::new("/nonexistent/enroll-token")).unwrap_err();
    assert!(
        format!("{err}").contains("/nonexistent/enroll-token"),
        "{err}"
    );
}

#[test]
fn network_text_is_bounded_and_printable() {
    assert_eq!(sanitize("a\nb\x1b[31m", 100), "a b [31m");
    assert_eq!(sanitize(&"x".repeat(1000), 10).len(), 10);
}

#[tokio::test]
async fn a_ca_outside_its_window_stops_enrollment_before_any_request() {
    let authority = FakeAuthority::start().await;
    let root = tempfile::tempdir().unwrap();
    let now = time::OffsetDateTime::now_utc();
    let expired = TestCa::valid(
        "old",
        now - time::Duration::days(30),
        now - time::Duration::days(1),
    );
    let mut settings = authority.settings("node-a", false, "/var/lib/molten");
    settings.authority_ca = expired.pem.clone();
    let err = format!(
        "{:#}",
        enroll(root.path(), &settings, &token_file(root.path()))
            .await
            .unwrap_err()
    );
    assert!(
        err.contains("trust.authority_ca (the authority's CA): the CA certificate expired"),
        "{err}"
    );
    let mut settings = authority.settings("node-a", false, "/var/lib/molten");
    settings.roots.docker_ca = expired.pem;
    let err = format!(
        "{:#}",
        enroll(root.path(), &settings, &token_file(root.path()))
            .await
            .unwrap_err()
    );
    assert!(
        err.contains("trust.docker_ca (the Docker CA): the CA certificate expired"),
        "{err}"
    );
    assert!(authority.state.lock().unwrap().requests.is_empty());
    assert!(!settings
        .identity(root.path())
        .key_path(Kind::EtcdClient)
        .exists());
}
