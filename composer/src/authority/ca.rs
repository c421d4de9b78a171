//! The authority's certificate authorities (ECDSA P-256, which etcd, Docker, flanneld, Ignition and
//! rustls all accept) and what they sign: node certificates from CSRs whose public key is the only
//! part used, the HTTPS identity of `molten serve`, and operator client certificates.

use std::net::IpAddr;

use anyhow::{bail, Context, Result};
use molten_contract::trust::{CertificateKind, ResolvedSan, ETCD_ROOT_USER};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
    SanType, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use ring::rand::{SecureRandom, SystemRandom};
use time::{Duration, OffsetDateTime};

/// How far a certificate's not-before is moved into the past, for nodes whose clock lags a little.
pub const BACKDATE: Duration = Duration::minutes(5);
/// The authority's CAs are valid this long.
const CA_VALIDITY: Duration = Duration::days(3650);

/// A CA the authority holds: its certificate (public) and its key (never leaves the directory).
pub struct Ca {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A freshly made CA, for `authority init` to write.
pub struct NewCa {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Creates a self-signed CA named `common_name` that may only sign end-entity certificates.
pub fn create_ca(common_name: &str, now: OffsetDateTime) -> Result<NewCa> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).context("cannot generate a key")?;
    let mut params = CertificateParams::default();
    params.distinguished_name = name(common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now - BACKDATE;
    params.not_after = now + CA_VALIDITY;
    params.serial_number = Some(random_serial()?);
    let cert = params
        .self_signed(&key)
        .with_context(|| format!("cannot self-sign the CA {common_name}"))?;
    Ok(NewCa {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

impl Ca {
    /// Loads a CA from its PEM certificate and key.
    pub fn from_pem(label: &str, cert_pem: &str, key_pem: &str) -> Result<Ca> {
        let key = KeyPair::from_pem(key_pem).with_context(|| format!("{label}: bad key"))?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)
            .with_context(|| format!("{label}: bad certificate"))?;
        Ok(Ca {
            cert_pem: cert_pem.to_string(),
            issuer,
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Signs `public_key` for a node's certificate of `kind`: the subject and SANs are the
    /// arguments, never the request's.
    pub fn sign_node(
        &self,
        kind: CertificateKind,
        public_key: &impl PublicKeyData,
        common_name: &str,
        sans: &[ResolvedSan],
        now: OffsetDateTime,
        validity: Duration,
    ) -> Result<String> {
        let mut params = leaf_params(common_name, now, validity)?;
        params.subject_alt_names = sans.iter().map(san).collect::<Result<_>>()?;
        params.extended_key_usages = match kind {
            // etcd's own gRPC gateway dials the server with the server certificate.
            CertificateKind::EtcdPeer | CertificateKind::EtcdServer => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            CertificateKind::EtcdClient | CertificateKind::EtcdAdmin => {
                vec![ExtendedKeyUsagePurpose::ClientAuth]
            }
            CertificateKind::DockerServer => vec![ExtendedKeyUsagePurpose::ServerAuth],
        };
        let cert = params
            .signed_by(public_key, &self.issuer)
            .with_context(|| format!("cannot sign the {kind} certificate of {common_name}"))?;
        Ok(cert.pem())
    }

    /// A key pair generated here and a certificate for it: the HTTPS identity of `molten serve`
    /// (`server`) or an operator's client certificate. The caller writes the key 0600.
    pub fn issue_with_new_key(
        &self,
        common_name: &str,
        sans: &[ResolvedSan],
        server: bool,
        now: OffsetDateTime,
        validity: Duration,
    ) -> Result<(String, String)> {
        let key =
            KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).context("cannot generate a key")?;
        let mut params = leaf_params(common_name, now, validity)?;
        params.subject_alt_names = sans.iter().map(san).collect::<Result<_>>()?;
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let cert = params
            .signed_by(&key, &self.issuer)
            .with_context(|| format!("cannot sign the certificate of {common_name}"))?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// The public key of a CSR after checking its self-signature; the CSR must use ECDSA P-256.
/// Everything else in it (subject, SANs, extensions) is ignored.
pub fn csr_public_key(pem: &str) -> Result<rcgen::PublicKey> {
    let csr = CertificateSigningRequestParams::from_pem(pem)
        .map_err(|err| anyhow::anyhow!("not a valid, self-signed CSR ({err})"))?;
    if csr.public_key.algorithm() != &PKCS_ECDSA_P256_SHA256 {
        bail!("the CSR's key is not ECDSA P-256");
    }
    Ok(csr.public_key)
}

/// The common name the authority puts into a node certificate of `kind`.
pub fn common_name(kind: CertificateKind, node: &str) -> &str {
    if kind == CertificateKind::EtcdAdmin {
        ETCD_ROOT_USER
    } else {
        node
    }
}

fn leaf_params(
    common_name: &str,
    now: OffsetDateTime,
    validity: Duration,
) -> Result<CertificateParams> {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(common_name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.not_before = now - BACKDATE;
    params.not_after = now + validity;
    params.serial_number = Some(random_serial()?);
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

fn san(san: &ResolvedSan) -> Result<SanType> {
    Ok(match san {
        ResolvedSan::Ip(ip) => SanType::IpAddress(*ip),
        ResolvedSan::Dns(name) => SanType::DnsName(
            name.clone()
                .try_into()
                .map_err(|_| anyhow::anyhow!("{name:?} is not a DNS name"))?,
        ),
    })
}

/// 16 random bytes, top bit clear so the DER integer stays positive and 16 bytes long.
fn random_serial() -> Result<SerialNumber> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("the system random source failed"))?;
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

/// `127.0.0.1` and `localhost`, which every etcd server certificate carries (a member's `mc`
/// dials its own etcd on loopback).
pub fn loopback_sans() -> [ResolvedSan; 2] {
    [
        ResolvedSan::Ip(IpAddr::from([127, 0, 0, 1])),
        ResolvedSan::Dns("localhost".into()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::*;

    fn parse(pem: &str) -> Vec<u8> {
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        block.contents
    }

    #[test]
    fn signs_only_the_given_names() {
        let now = OffsetDateTime::now_utc();
        let new = create_ca("test etcd CA", now).unwrap();
        let ca = Ca::from_pem("etcd-ca", &new.cert_pem, &new.key_pem).unwrap();

        // The node asks for another name and another address.
        let node_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut asked =
            CertificateParams::new(vec!["evil.example".into(), "10.9.9.9".into()]).unwrap();
        asked.distinguished_name = name("root");
        let csr = asked.serialize_request(&node_key).unwrap().pem().unwrap();

        let key = csr_public_key(&csr).unwrap();
        let sans = [ResolvedSan::Ip("10.0.0.10".parse().unwrap())];
        let pem = ca
            .sign_node(
                CertificateKind::EtcdServer,
                &key,
                "node-0",
                &sans,
                now,
                Duration::days(90),
            )
            .unwrap();
        let der = parse(&pem);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        let cn: Vec<_> = cert.subject().iter_common_name().collect();
        assert_eq!(cn[0].as_str().unwrap(), "node-0");
        let sans = cert.subject_alternative_name().unwrap().unwrap();
        let shown: Vec<String> = sans
            .value
            .general_names
            .iter()
            .map(|n| format!("{n}"))
            .collect();
        assert_eq!(
            shown,
            ["IPAddress(0a:00:00:0a)"],
            "only 10.0.0.10, the profile's name"
        );
        assert_eq!(
            &*cert.public_key().subject_public_key.data,
            node_key.public_key_raw()
        );
        assert!(cert.validity().not_before.timestamp() <= (now - BACKDATE).unix_timestamp());
        let ca_der = parse(&new.cert_pem);
        let (_, ca_cert) = X509Certificate::from_der(&ca_der).unwrap();
        cert.verify_signature(Some(ca_cert.public_key())).unwrap();
    }

    #[test]
    fn refuses_a_tampered_csr() {
        let node_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let csr = CertificateParams::new(vec!["a".into()])
            .unwrap()
            .serialize_request(&node_key)
            .unwrap();
        let mut der = csr.der().to_vec();
        let last = der.len() - 1;
        der[last] ^= 1;
        let pem = pem_encode("CERTIFICATE REQUEST", &der);
        let err = csr_public_key(&pem).unwrap_err().to_string();
        assert!(err.contains("not a valid, self-signed CSR"), "{err}");
        assert!(csr_public_key("garbage").is_err());
    }

    #[test]
    fn refuses_other_key_algorithms() {
        let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let csr = CertificateParams::new(vec!["a".into()])
            .unwrap()
            .serialize_request(&key)
            .unwrap()
            .pem()
            .unwrap();
        let err = csr_public_key(&csr).unwrap_err().to_string();
        assert_eq!(err, "the CSR's key is not ECDSA P-256");
    }

    fn pem_encode(label: &str, der: &[u8]) -> String {
        use base64::Engine;
        let body = base64::engine::general_purpose::STANDARD.encode(der);
        let mut out = format!("-----BEGIN {label}-----\n");
        for chunk in body.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(chunk).unwrap());
            out.push('\n');
        }
        out.push_str(&format!("-----END {label}-----\n"));
        out
    }
}
