//! Throwaway certificate authorities for tests (ECDSA P-256, like the real authority): a CA and
//! the server and client certificates etcd and dockerd need, written as PEM files (keys 0600).
//!
//! ```no_run
//! let dir = tempfile::tempdir()?;
//! let ca = molten_testkit::pki::TestCa::new("etcd", dir.path())?;
//! let server = ca.issue("server", &["127.0.0.1"])?;      // files server.pem / server.key
//! let node_a = ca.issue("node-a", &[])?;                 // CN = etcd user
//! # anyhow::Ok(())
//! ```

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    SanType,
};

/// A certificate and key as files and as text.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub cert_pem: String,
    pub key_pem: String,
}

/// A CA whose certificate is `<dir>/<name>-ca.pem`.
pub struct TestCa {
    name: String,
    dir: PathBuf,
    pub cert: PathBuf,
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new(name: &str, dir: &Path) -> Result<Self> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("test {name} CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert_pem = params.self_signed(&key)?.pem();
        let cert = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&cert, &cert_pem).with_context(|| format!("writing {}", cert.display()))?;
        Ok(Self {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            cert,
            cert_pem,
            issuer: Issuer::new(params, key),
        })
    }

    /// A certificate with CN `cn` and IP/DNS `sans`, for server and client use, valid 90 days
    /// (the authority's default: no renewal due, no expiry warning).
    pub fn issue(&self, cn: &str, sans: &[&str]) -> Result<Issued> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, cn);
        for san in sans {
            params.subject_alt_names.push(match san.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*san).try_into()?),
            });
        }
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::minutes(5);
        params.not_after = now + time::Duration::days(90);
        let cert_pem = params.signed_by(&key, &self.issuer)?.pem();
        let key_pem = key.serialize_pem();
        let stem = format!("{}-{}", self.name, cn.replace(['/', ' '], "_"));
        let cert = self.dir.join(format!("{stem}.pem"));
        let key_path = self.dir.join(format!("{stem}.key"));
        std::fs::write(&cert, &cert_pem)?;
        std::fs::write(&key_path, &key_pem)?;
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600))?;
        Ok(Issued {
            cert,
            key: key_path,
            cert_pem,
            key_pem,
        })
    }
}

/// A node identity as `mc enroll` leaves it: every kind the node holds, signed by `etcd` (or
/// `docker` for docker-server), stored under `<root><state_dir>/identity/`, and the node
/// config's `trust` section naming those CAs. `authority_url` is where renewal would go.
pub fn enroll_for_test(
    root: &Path,
    config: &mut molten_contract::NodeConfig,
    etcd: &TestCa,
    docker: &TestCa,
    authority: (&str, &str),
    roster: &[&str],
) -> Result<()> {
    use molten_contract::trust::{
        CertificateKind, NodeTlsIdentity, TrustSettings, DEFAULT_STATE_DIR, IDENTITY_SUBDIR,
    };
    let name = config.node.name.clone();
    let member = config.has_role(molten_contract::Role::Etcd);
    let dir = root
        .join(DEFAULT_STATE_DIR.trim_start_matches('/'))
        .join(IDENTITY_SUBDIR);
    std::fs::create_dir_all(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    for kind in CertificateKind::for_node(member) {
        let (ca, cn) = match kind {
            CertificateKind::DockerServer => (docker, name.as_str()),
            CertificateKind::EtcdAdmin => (etcd, "root"),
            _ => (etcd, name.as_str()),
        };
        let issued = ca.issue(cn, &["127.0.0.1"])?;
        std::fs::write(dir.join(format!("{kind}.pem")), &issued.cert_pem)?;
        let key = dir.join(format!("{kind}.key"));
        std::fs::write(&key, &issued.key_pem)?;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
    }
    config.trust = TrustSettings {
        authority_url: authority.0.to_string(),
        authority_ca: authority.1.to_string(),
        etcd_ca: etcd.cert_pem.clone(),
        docker_ca: docker.cert_pem.clone(),
        identity: NodeTlsIdentity {
            etcd_peer_sans: Vec::new(),
            etcd_server_sans: Vec::new(),
            etcd_client_cn: name,
            docker_server_sans: Vec::new(),
        },
        roster: roster.iter().map(|s| s.to_string()).collect(),
        state_dir: DEFAULT_STATE_DIR.to_string(),
    };
    Ok(())
}

/// A test cluster's trust, as an authority would give it: throwaway etcd, Docker and authority
/// CAs in `dir`, the etcd `root` client certificate (the operator's `issue-client --etcd-root`),
/// and what the testkit's etcd servers need.
///
/// ```no_run
/// let dir = tempfile::tempdir()?;
/// let trust = molten_testkit::pki::TestTrust::new(dir.path())?;
/// let etcd = trust.start_etcd("m0")?;                       // https, --client-cert-auth
/// let mut config = molten_testkit::fixtures::node_config("node-0", 0, [127, 0, 0, 1].into());
/// let root = tempfile::tempdir()?;
/// trust.enroll(root.path(), &mut config, &["node-0"])?;    // identity files, trust section
/// # anyhow::Ok(())
/// ```
pub struct TestTrust {
    pub etcd: TestCa,
    pub docker: TestCa,
    pub authority: TestCa,
    /// CN=root, from the etcd CA: etcd's administrator once authentication is on.
    pub root: Issued,
}

/// Where renewal would go: nothing listens there, so a test that needs the authority runs one.
pub const NO_AUTHORITY_URL: &str = "https://127.0.0.1:9";

impl TestTrust {
    pub fn new(dir: &Path) -> Result<Self> {
        let etcd = TestCa::new("etcd", dir)?;
        let root = etcd.issue(molten_contract::trust::ETCD_ROOT_USER, &[])?;
        Ok(Self {
            etcd,
            docker: TestCa::new("docker", dir)?,
            authority: TestCa::new("authority", dir)?,
            root,
        })
    }

    /// An etcd member's certificate (CN `name`, SANs 127.0.0.1 and localhost, server and
    /// client use, so it also serves as the peer certificate).
    pub fn etcd_server(&self, name: &str) -> Result<crate::etcd::ServerTls> {
        let issued = self
            .etcd
            .issue(&format!("member-{name}"), &["127.0.0.1", "localhost"])?;
        Ok(crate::etcd::ServerTls {
            ca: self.etcd.cert.clone(),
            cert: issued.cert,
            key: issued.key,
        })
    }

    /// A single-member etcd over https with `--client-cert-auth`.
    pub fn start_etcd(&self, name: &str) -> Result<crate::etcd::EtcdServer> {
        crate::etcd::EtcdServer::start_tls(name, self.etcd_server(name)?)
    }

    /// [`enroll_for_test`] with these CAs and [`NO_AUTHORITY_URL`].
    pub fn enroll(
        &self,
        root: &Path,
        config: &mut molten_contract::NodeConfig,
        roster: &[&str],
    ) -> Result<()> {
        enroll_for_test(
            root,
            config,
            &self.etcd,
            &self.docker,
            (NO_AUTHORITY_URL, &self.authority.cert_pem),
            roster,
        )
    }

    /// `etcdctl` against `endpoints` as etcd's root.
    pub fn etcdctl_root(&self, endpoints: &str, args: &[&str]) -> Result<String> {
        crate::etcd::etcdctl_tls(
            endpoints,
            &self.etcd.cert,
            &self.root.cert,
            &self.root.key,
            args,
        )
    }
}
