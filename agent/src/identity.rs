//! This node's enrolled identity on its persistent state filesystem: one key pair per
//! certificate kind, generated here and never sent anywhere, and the certificates the authority
//! signed for them.
//!
//! Layout (`<state_dir>/identity/`, mode 0700): `<kind>.key` (0600) and `<kind>.pem` (0644),
//! written atomically. A certificate is usable when it parses, fits its key, was signed by the
//! trust root the node config names for its kind, and is valid now.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use rcgen::KeyPair;
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::fs::{write_atomic, MODE_PUBLIC, MODE_SECRET};

pub use molten_contract::trust::IDENTITY_SUBDIR as IDENTITY_DIR;
/// Owner only: the directory holds private keys.
pub const MODE_DIR: u32 = 0o700;

/// A lower bound of this `mc`'s build time, seconds since the epoch: its commit's time (the
/// build script). A clock before it is certainly wrong: the node neither asks for nor trusts
/// certificates then.
pub const BUILD_EPOCH: &str = env!("MOLTEN_BUILD_EPOCH");

/// Which certificate (the protocol's request kinds; also the file names).
pub use molten_contract::trust::CertificateKind as Kind;

/// Which trust root issued a kind.
pub fn root_of(kind: Kind) -> Root {
    if kind.is_docker() {
        Root::Docker
    } else {
        Root::Etcd
    }
}

/// The two issuing CAs a node trusts (from node.json).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    Etcd,
    Docker,
}

/// What the node learns from a certificate it holds (public: goes into the node record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub kind: Kind,
    /// SHA-256 of the certificate's DER, hex.
    pub fingerprint: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl CertInfo {
    /// Renewal is due when less than a third of the validity is left.
    pub fn renewal_due(&self, now: OffsetDateTime) -> bool {
        let validity = self.not_after - self.not_before;
        self.not_after - now < validity / 3
    }
}

/// A certificate and its key, PEM. Debug never prints the key.
#[derive(Clone, PartialEq, Eq)]
pub struct Pair {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Pair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pair").finish_non_exhaustive()
    }
}

/// `<state_dir>/identity` on a node (under `root`).
#[derive(Debug, Clone)]
pub struct IdentityDir {
    dir: PathBuf,
}

impl IdentityDir {
    /// The identity dir under `root` for a node whose state dir is `state_dir` (absolute).
    pub fn new(root: &Path, state_dir: &str) -> Self {
        Self {
            dir: crate::fs::under_root(root, state_dir).join(IDENTITY_DIR),
        }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn cert_path(&self, kind: Kind) -> PathBuf {
        self.dir.join(format!("{}.pem", kind.name()))
    }

    pub fn key_path(&self, kind: Kind) -> PathBuf {
        self.dir.join(format!("{}.key", kind.name()))
    }

    /// Creates the directory (0700) or repairs its mode.
    pub fn ensure(&self) -> Result<()> {
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("failed to create {}", self.dir.display()))?;
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(MODE_DIR))
            .with_context(|| format!("failed to set the mode of {}", self.dir.display()))
    }

    /// Reads a kind's pair, `None` when either file is missing.
    pub fn load(&self, kind: Kind) -> Result<Option<Pair>> {
        let read = |path: PathBuf| match fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(anyhow!(e).context(format!("cannot read {}", path.display()))),
        };
        let (Some(cert_pem), Some(key_pem)) =
            (read(self.cert_path(kind))?, read(self.key_path(kind))?)
        else {
            return Ok(None);
        };
        Ok(Some(Pair { cert_pem, key_pem }))
    }

    /// Stores a key (0600) and its certificate, key first: a certificate on disk always has its
    /// key beside it.
    pub fn store(&self, kind: Kind, pair: &Pair) -> Result<()> {
        self.ensure()?;
        write_atomic(&self.key_path(kind), pair.key_pem.as_bytes(), MODE_SECRET)?;
        write_atomic(&self.cert_path(kind), pair.cert_pem.as_bytes(), MODE_PUBLIC)
    }
}

/// A new ECDSA P-256 key (the algorithm etcd, Docker, flannel and Ignition all accept).
pub fn generate_key() -> Result<KeyPair> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).context("generating a node key")
}

/// The time `mc` was built.
pub fn build_time() -> OffsetDateTime {
    BUILD_EPOCH
        .parse::<i64>()
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Refuses a clock that runs before this build: certificates would look not yet valid (or an
/// expired one valid), so nothing is requested or trusted until time is synchronised.
pub fn check_clock(now: OffsetDateTime) -> Result<()> {
    let built = build_time();
    anyhow::ensure!(
        now >= built,
        "the clock says {} but this mc was built at {}: waiting for time synchronisation \
         before requesting or trusting certificates",
        crate::timestamp::rfc3339(now),
        crate::timestamp::rfc3339(built)
    );
    Ok(())
}

/// Checks a trust root from node.json (or an operator's file) is within its validity window now:
/// an expired or not-yet-valid CA would make every certificate it signed fail (or be refused) for
/// a reason that names the leaf, not the root. `name` says which CA (`trust.docker_ca`, …).
pub fn check_ca(name: &str, ca_pem: &str, now: OffsetDateTime) -> Result<()> {
    check_clock(now)?;
    let der = pem_to_der(ca_pem).with_context(|| name.to_string())?;
    let (_, ca) = X509Certificate::from_der(&der)
        .map_err(|e| anyhow!("{name}: the CA certificate does not parse: {e}"))?;
    let (from, until) = (
        ca.validity().not_before.to_datetime(),
        ca.validity().not_after.to_datetime(),
    );
    let window = format!(
        "valid from {} until {}",
        crate::timestamp::rfc3339(from),
        crate::timestamp::rfc3339(until)
    );
    anyhow::ensure!(
        until > now,
        "{name}: the CA certificate expired ({window}; now {})",
        crate::timestamp::rfc3339(now)
    );
    anyhow::ensure!(
        from <= now + Duration::minutes(5),
        "{name}: the CA certificate is not valid yet ({window}; now {})",
        crate::timestamp::rfc3339(now)
    );
    Ok(())
}

/// Checks a certificate mc presents for an operator (`--etcd-cert`, `--client-cert`): the clock,
/// the certificate's validity window and, with `ca_pem`, that the CA signed it. `what` names it.
pub fn check_presented(
    what: &str,
    cert_pem: &str,
    ca_pem: Option<&str>,
    now: OffsetDateTime,
) -> Result<()> {
    check_clock(now)?;
    let der = pem_to_der(cert_pem).with_context(|| what.to_string())?;
    let (_, cert) = X509Certificate::from_der(&der)
        .map_err(|e| anyhow!("{what}: the certificate does not parse: {e}"))?;
    let (from, until) = (
        cert.validity().not_before.to_datetime(),
        cert.validity().not_after.to_datetime(),
    );
    anyhow::ensure!(
        until > now && from <= now + Duration::minutes(5),
        "{what}: the certificate is not valid now (valid from {} until {}; now {})",
        crate::timestamp::rfc3339(from),
        crate::timestamp::rfc3339(until),
        crate::timestamp::rfc3339(now)
    );
    if let Some(ca_pem) = ca_pem {
        let ca_der = pem_to_der(ca_pem).context("the CA certificate")?;
        let (_, ca) = X509Certificate::from_der(&ca_der)
            .map_err(|e| anyhow!("the CA certificate does not parse: {e}"))?;
        cert.verify_signature(Some(ca.public_key()))
            .map_err(|_| anyhow!("{what}: not signed by the given CA"))?;
    }
    Ok(())
}

/// The first certificate of a PEM text, as DER.
pub fn pem_to_der(pem: &str) -> Result<Vec<u8>> {
    let (_, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| anyhow!("not a PEM certificate: {e}"))?;
    anyhow::ensure!(
        parsed.label == "CERTIFICATE",
        "PEM block is {:?}, not CERTIFICATE",
        parsed.label
    );
    Ok(parsed.contents)
}

/// SHA-256 of a PEM certificate's DER, hex.
pub fn fingerprint(cert_pem: &str) -> Result<String> {
    Ok(hex::encode(Sha256::digest(pem_to_der(cert_pem)?)))
}

/// Parses a certificate's facts without judging it.
pub fn inspect(kind: Kind, cert_pem: &str) -> Result<CertInfo> {
    let der = pem_to_der(cert_pem)?;
    let (_, cert) =
        X509Certificate::from_der(&der).map_err(|e| anyhow!("certificate does not parse: {e}"))?;
    Ok(CertInfo {
        kind,
        fingerprint: hex::encode(Sha256::digest(&der)),
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
    })
}

/// Checks that `pair` is usable now: it parses, the key fits, `ca_pem` signed it and it is
/// within its validity. Errors say why, never print the key.
pub fn verify(kind: Kind, pair: &Pair, ca_pem: &str, now: OffsetDateTime) -> Result<CertInfo> {
    check_clock(now)?;
    let key = KeyPair::from_pem(&pair.key_pem).map_err(|_| anyhow!("the key does not parse"))?;
    verify_cert(kind, &pair.cert_pem, key.public_key_raw(), ca_pem, now)
}

/// Checks a certificate (no key): it carries `public_key`, `ca_pem` signed it, valid now.
pub fn verify_cert(
    kind: Kind,
    cert_pem: &str,
    public_key: &[u8],
    ca_pem: &str,
    now: OffsetDateTime,
) -> Result<CertInfo> {
    let der = pem_to_der(cert_pem)?;
    let (_, cert) =
        X509Certificate::from_der(&der).map_err(|e| anyhow!("certificate does not parse: {e}"))?;
    anyhow::ensure!(
        cert.public_key().subject_public_key.data.as_ref() == public_key,
        "the certificate is not for this node's {kind} key"
    );
    let ca_der = pem_to_der(ca_pem).context("the CA certificate")?;
    let (_, ca) = X509Certificate::from_der(&ca_der)
        .map_err(|e| anyhow!("the CA certificate does not parse: {e}"))?;
    cert.verify_signature(Some(ca.public_key()))
        .map_err(|_| anyhow!("not signed by the {} CA", root_name(root_of(kind))))?;
    let info = inspect(kind, cert_pem)?;
    anyhow::ensure!(
        info.not_after > now,
        "expired at {}",
        crate::timestamp::rfc3339(info.not_after)
    );
    // The authority back-dates by at most a few minutes; allow that much skew.
    anyhow::ensure!(
        info.not_before <= now + Duration::minutes(5),
        "not valid before {}",
        crate::timestamp::rfc3339(info.not_before)
    );
    Ok(info)
}

fn root_name(root: Root) -> &'static str {
    match root {
        Root::Etcd => "etcd",
        Root::Docker => "Docker",
    }
}

/// The trust roots a node holds (PEM), from node.json.
#[derive(Debug, Clone)]
pub struct Roots {
    pub etcd_ca: String,
    pub docker_ca: String,
}

impl Roots {
    /// Both roots are within their validity windows now.
    pub fn check(&self, now: OffsetDateTime) -> Result<()> {
        check_ca("trust.etcd_ca (the etcd CA)", &self.etcd_ca, now)?;
        check_ca("trust.docker_ca (the Docker CA)", &self.docker_ca, now)
    }

    pub fn pem(&self, root: Root) -> &str {
        match root {
            Root::Etcd => &self.etcd_ca,
            Root::Docker => &self.docker_ca,
        }
    }
}

/// The state of the identity on disk for the kinds a node needs.
#[derive(Debug, Clone)]
pub enum Held {
    /// Every kind is present and usable.
    Valid(Vec<CertInfo>),
    /// At least one kind is missing or unusable (the first reason).
    Unusable { kind: Kind, reason: String },
}

/// Looks at the identity on disk: every kind of `kinds` must be usable now.
pub fn held(dir: &IdentityDir, kinds: &[Kind], roots: &Roots, now: OffsetDateTime) -> Result<Held> {
    check_clock(now)?;
    roots.check(now)?;
    let mut infos = Vec::new();
    for &kind in kinds {
        let Some(pair) = dir.load(kind)? else {
            return Ok(Held::Unusable {
                kind,
                reason: "absent".into(),
            });
        };
        match verify(kind, &pair, roots.pem(root_of(kind)), now) {
            Ok(info) => infos.push(info),
            Err(e) => {
                return Ok(Held::Unusable {
                    kind,
                    reason: format!("{e:#}"),
                })
            }
        }
    }
    Ok(Held::Valid(infos))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer};

    /// A test CA: certificate PEM and its issuer.
    pub(crate) struct TestCa {
        pub pem: String,
        issuer: Issuer<'static, KeyPair>,
    }

    impl TestCa {
        pub(crate) fn new(name: &str) -> Self {
            let now = OffsetDateTime::now_utc();
            Self::valid(name, now - Duration::days(1), now + Duration::days(3650))
        }

        /// A CA valid from `from` until `until`.
        pub(crate) fn valid(name: &str, from: OffsetDateTime, until: OffsetDateTime) -> Self {
            let key = generate_key().unwrap();
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.not_before = from;
            params.not_after = until;
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, name);
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let pem = params.self_signed(&key).unwrap().pem();
            Self {
                pem,
                issuer: Issuer::new(params, key),
            }
        }

        /// Signs `key`'s public key for `cn`, valid from `from` to `until`.
        pub(crate) fn sign(
            &self,
            cn: &str,
            key: &KeyPair,
            from: OffsetDateTime,
            until: OffsetDateTime,
        ) -> String {
            let mut params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
            params.not_before = from;
            params.not_after = until;
            params.signed_by(key, &self.issuer).unwrap().pem()
        }

        pub(crate) fn pair(&self, cn: &str, from: OffsetDateTime, until: OffsetDateTime) -> Pair {
            let key = generate_key().unwrap();
            Pair {
                cert_pem: self.sign(cn, &key, from, until),
                key_pem: key.serialize_pem(),
            }
        }
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    #[test]
    fn a_fresh_pair_is_valid_and_renewal_is_due_in_the_last_third() {
        let ca = TestCa::new("etcd");
        let pair = ca.pair("n0", now() - Duration::days(1), now() + Duration::days(89));
        let info = verify(Kind::EtcdClient, &pair, &ca.pem, now()).unwrap();
        assert!(!info.renewal_due(now()));
        assert!(info.renewal_due(now() + Duration::days(60)));
        assert_eq!(info.fingerprint.len(), 64);
    }

    #[test]
    fn wrong_ca_wrong_key_expired_are_refused() {
        let etcd = TestCa::new("etcd");
        let docker = TestCa::new("docker");
        let pair = docker.pair("n0", now() - Duration::days(1), now() + Duration::days(1));
        let err = verify(Kind::EtcdClient, &pair, &etcd.pem, now()).unwrap_err();
        assert!(
            format!("{err}").contains("not signed by the etcd CA"),
            "{err}"
        );

        let other = etcd.pair("n0", now() - Duration::days(1), now() + Duration::days(1));
        let mixed = Pair {
            cert_pem: other.cert_pem,
            key_pem: pair.key_pem.clone(),
        };
        let err = verify(Kind::EtcdClient, &mixed, &etcd.pem, now()).unwrap_err();
        assert!(format!("{err}").contains("not for this node's"), "{err}");
        assert!(!format!("{err:#}").contains("PRIVATE"), "{err:#}");

        let old = etcd.pair("n0", now() - Duration::days(2), now() - Duration::days(1));
        let err = verify(Kind::EtcdClient, &old, &etcd.pem, now()).unwrap_err();
        assert!(format!("{err}").contains("expired"), "{err}");
    }

    #[test]
    fn a_clock_before_the_build_is_refused() {
        let err = check_clock(build_time() - Duration::days(1)).unwrap_err();
        assert!(format!("{err}").contains("time synchronisation"), "{err}");
        check_clock(now()).unwrap();
        let ca = TestCa::new("etcd");
        let pair = ca.pair("n0", now() - Duration::days(400), now() + Duration::days(1));
        let err = verify(Kind::EtcdClient, &pair, &ca.pem, OffsetDateTime::UNIX_EPOCH).unwrap_err();
        assert!(format!("{err}").contains("time synchronisation"), "{err}");
    }

    #[test]
    fn stored_keys_are_0600_in_a_0700_dir_and_held_checks_every_kind() {
        let root = tempfile::tempdir().unwrap();
        let dir = IdentityDir::new(root.path(), "/var/lib/molten");
        let roots = Roots {
            etcd_ca: TestCa::new("etcd").pem,
            docker_ca: TestCa::new("docker").pem,
        };
        let kinds = [Kind::EtcdClient];
        assert!(matches!(
            held(&dir, &kinds, &roots, now()).unwrap(),
            Held::Unusable { kind: Kind::EtcdClient, ref reason } if reason == "absent"
        ));
        let ca = TestCa::new("etcd");
        let roots = Roots {
            etcd_ca: ca.pem.clone(),
            ..roots
        };
        let pair = ca.pair("n0", now() - Duration::days(1), now() + Duration::days(1));
        dir.store(Kind::EtcdClient, &pair).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(dir.path()), 0o700);
        assert_eq!(mode(&dir.key_path(Kind::EtcdClient)), 0o600);
        assert_eq!(mode(&dir.cert_path(Kind::EtcdClient)), 0o644);
        assert!(dir.path().ends_with("var/lib/molten/identity"));
        assert!(matches!(
            held(&dir, &kinds, &roots, now()).unwrap(),
            Held::Valid(ref infos) if infos.len() == 1
        ));
        assert!(matches!(
            held(&dir, &[Kind::EtcdClient, Kind::DockerServer], &roots, now()).unwrap(),
            Held::Unusable {
                kind: Kind::DockerServer,
                ..
            }
        ));
    }

    #[test]
    fn a_ca_outside_its_window_is_named_with_its_window() {
        let expired = TestCa::valid("x", now() - Duration::days(20), now() - Duration::days(10));
        let err = format!(
            "{:#}",
            check_ca("trust.docker_ca", &expired.pem, now()).unwrap_err()
        );
        assert!(
            err.starts_with("trust.docker_ca: the CA certificate expired (valid from ")
                && err.contains(" until ")
                && err.contains("; now "),
            "{err}"
        );
        let future = TestCa::valid("x", now() + Duration::days(10), now() + Duration::days(20));
        let err = format!(
            "{:#}",
            check_ca("trust.etcd_ca", &future.pem, now()).unwrap_err()
        );
        assert!(
            err.starts_with("trust.etcd_ca: the CA certificate is not valid yet"),
            "{err}"
        );
        check_ca("trust.etcd_ca", &TestCa::new("x").pem, now()).unwrap();
        let err = check_ca("trust.etcd_ca", "junk", now()).unwrap_err();
        assert!(format!("{err:#}").starts_with("trust.etcd_ca: "), "{err:#}");

        // held() refuses to judge the identity against an expired root, naming the root.
        let root = tempfile::tempdir().unwrap();
        let dir = IdentityDir::new(root.path(), "/var/lib/molten");
        let roots = Roots {
            etcd_ca: TestCa::new("etcd").pem,
            docker_ca: expired.pem.clone(),
        };
        let err = format!(
            "{:#}",
            held(&dir, &[Kind::EtcdClient], &roots, now()).unwrap_err()
        );
        assert!(
            err.contains("trust.docker_ca (the Docker CA): the CA certificate expired"),
            "{err}"
        );
    }

    #[test]
    fn a_presented_certificate_is_checked_for_window_and_issuer() {
        let ca = TestCa::new("docker");
        let good = ca.pair("bosh", now() - Duration::days(1), now() + Duration::days(1));
        check_presented("--client-cert c.pem", &good.cert_pem, Some(&ca.pem), now()).unwrap();
        let old = ca.pair("bosh", now() - Duration::days(3), now() - Duration::days(1));
        let err = check_presented("--client-cert c.pem", &old.cert_pem, None, now()).unwrap_err();
        assert!(
            format!("{err}").starts_with("--client-cert c.pem: the certificate is not valid now"),
            "{err}"
        );
        let other = TestCa::new("other");
        let err = check_presented(
            "--client-cert c.pem",
            &good.cert_pem,
            Some(&other.pem),
            now(),
        )
        .unwrap_err();
        assert!(
            format!("{err}").contains("not signed by the given CA"),
            "{err}"
        );
        let err = check_presented("x", &good.cert_pem, None, build_time() - Duration::days(1))
            .unwrap_err();
        assert!(format!("{err}").contains("time synchronisation"), "{err}");
    }

    #[test]
    fn only_docker_server_comes_from_the_docker_ca() {
        for kind in Kind::ALL {
            let expected = if kind == Kind::DockerServer {
                Root::Docker
            } else {
                Root::Etcd
            };
            assert_eq!(root_of(kind), expected, "{kind}");
        }
    }
}
