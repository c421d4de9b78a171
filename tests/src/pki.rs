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

    /// A certificate with CN `cn` and IP/DNS `sans`, for server and client use, valid a day.
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
        params.not_after = now + time::Duration::days(1);
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
