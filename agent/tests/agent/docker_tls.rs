//! The TLS proof: a real dockerd started with exactly the TLS flags the agent's drop-in renders
//! accepts a client certificate from the cluster's Docker CA and refuses everyone else (the
//! enrolled identities themselves: `trust_docker.rs`).

use std::fs;
use std::net::Ipv4Addr;
use std::path::Path;

use mc::docker::{self, ClientTls};
use mc::systemd::{tls_listen_args, TlsPaths};
use molten_testkit::docker::Dockerd;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

struct TestCa {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str) -> TestCa {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert_pem = params.self_signed(&key).unwrap().pem();
    TestCa {
        cert_pem,
        issuer: Issuer::new(params, key),
    }
}

/// A leaf certificate and key (PEM) signed by `ca`.
fn leaf(ca: &TestCa, sans: &[&str], eku: ExtendedKeyUsagePurpose) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "molten test");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![eku];
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn write(dir: &Path, name: &str, pem: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    fs::write(&path, pem).unwrap();
    path
}

fn client(dir: &Path, prefix: &str, ca_pem: &str, pair: Option<&(String, String)>) -> ClientTls {
    let ca = write(dir, &format!("{prefix}-ca.pem"), ca_pem);
    let (cert, key) = (
        dir.join(format!("{prefix}-cert.pem")),
        dir.join(format!("{prefix}-key.pem")),
    );
    if let Some((cert_pem, key_pem)) = pair {
        fs::write(&cert, cert_pem).unwrap();
        fs::write(&key, key_pem).unwrap();
    }
    ClientTls { ca, cert, key }
}

#[tokio::test(flavor = "multi_thread")]
async fn dockerd_with_the_agents_tls_flags_accepts_only_cluster_clients() {
    let files = tempfile::tempdir().unwrap();
    let dir = files.path();
    let cluster = ca("molten cluster CA test");
    let (server_cert, server_key) = leaf(
        &cluster,
        &["127.0.0.1", "localhost"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let tls = TlsPaths {
        ca: write(dir, "ca.pem", &cluster.cert_pem),
        server_cert: write(dir, "server-cert.pem", &server_cert),
        server_key: write(dir, "server-key.pem", &server_key),
    };
    let port = molten_testkit::free_port().unwrap();
    // The very flags the systemd drop-in puts on dockerd's command line.
    let flags = tls_listen_args(Ipv4Addr::LOCALHOST, port, &tls);
    assert!(flags.contains(&"--tlsverify".to_string()), "{flags:?}");
    let dockerd = Dockerd::builder().args(flags).start().unwrap();
    let host = format!("tcp://127.0.0.1:{port}");

    // The cluster's client certificate: accepted.
    let good = leaf(&cluster, &[], ExtendedKeyUsagePurpose::ClientAuth);
    let good = client(dir, "good", &cluster.cert_pem, Some(&good));
    let docker = docker::connect(&host, Some(&good)).await.unwrap();
    assert_eq!(docker.ping().await.unwrap(), "OK");

    // TLS without a client certificate: refused. mc's own client always presents one, so this
    // uses bollard's TLS client, which sends none when the certificate files are missing.
    let anonymous = client(dir, "anonymous", &cluster.cert_pem, None);
    let bare = bollard::Docker::connect_with_ssl(
        &host,
        &anonymous.key,
        &anonymous.cert,
        &anonymous.ca,
        10,
        bollard::API_DEFAULT_VERSION,
    )
    .unwrap();
    let err = anyhow::Error::from(bare.version().await.unwrap_err());
    assert_refused_by_tls(&err);
    let err = docker::connect(&host, Some(&anonymous)).await.unwrap_err();
    assert!(
        format!("{err:#}").contains("anonymous-cert.pem"),
        "mc refuses to connect without its certificate: {err:#}"
    );

    // A client certificate from another CA: refused.
    let other = ca("someone else's CA");
    let stranger = leaf(&other, &[], ExtendedKeyUsagePurpose::ClientAuth);
    let stranger = client(dir, "stranger", &cluster.cert_pem, Some(&stranger));
    let err = docker::connect(&host, Some(&stranger)).await.unwrap_err();
    assert_refused_by_tls(&err);

    // The daemon's own certificate (serverAuth only, as the authority issues docker-server) is
    // not a client certificate.
    let server_as_client = client(
        dir,
        "server-as-client",
        &cluster.cert_pem,
        Some(&(server_cert.clone(), server_key.clone())),
    );
    let err = docker::connect(&host, Some(&server_as_client))
        .await
        .unwrap_err();
    assert_refused_by_tls(&err);

    // Plain HTTP to the TLS port: refused.
    let err = docker::connect(&host, None).await.unwrap_err();
    assert!(
        format!("{err:#}").contains("HTTP request to an HTTPS server"),
        "{err:#}"
    );

    // The accepted client still works after the refusals (the daemon is fine, not wedged).
    assert_eq!(docker.ping().await.unwrap(), "OK");
    drop(dockerd);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_certificate_from_another_ca_is_refused_by_the_client() {
    let files = tempfile::tempdir().unwrap();
    let dir = files.path();
    let impostor = ca("impostor CA");
    let (server_cert, server_key) = leaf(
        &impostor,
        &["127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let tls = TlsPaths {
        ca: write(dir, "ca.pem", &impostor.cert_pem),
        server_cert: write(dir, "server-cert.pem", &server_cert),
        server_key: write(dir, "server-key.pem", &server_key),
    };
    let port = molten_testkit::free_port().unwrap();
    let dockerd = Dockerd::builder()
        .args(tls_listen_args(Ipv4Addr::LOCALHOST, port, &tls))
        .start()
        .unwrap();

    // Our client trusts only the cluster CA, so it must not talk to this daemon.
    let cluster = ca("molten cluster CA test");
    let pair = leaf(&cluster, &[], ExtendedKeyUsagePurpose::ClientAuth);
    let ours = client(dir, "ours", &cluster.cert_pem, Some(&pair));
    let err = docker::connect(&format!("tcp://127.0.0.1:{port}"), Some(&ours))
        .await
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("not answering") && text.contains("UnknownIssuer"),
        "{text}"
    );
    drop(dockerd);
}

/// The server refused the client during TLS. With TLS 1.3 the client's handshake finishes before
/// the server has checked the client certificate, so the refusal reaches the client either as the
/// server's alert or as the connection closing under its first request; both are refusals.
fn assert_refused_by_tls(err: &anyhow::Error) {
    let text = format!("{err:#}");
    assert!(
        [
            "fatal alert",
            "connection was not ready",
            "connection closed"
        ]
        .iter()
        .any(|sign| text.contains(sign)),
        "expected a TLS refusal, got: {text}"
    );
}
