//! The cluster CA: created once for the whole cluster by whichever agent wins an etcd
//! create-if-absent transaction; every other agent uses the winner's.

use anyhow::{Context, Result};
use etcd_client::Client;
use molten_contract::keys;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use crate::etcd::{self, Created};
use crate::outcome::Done;

/// The CA lives ten years; node certificates are renewed well within that.
const CA_VALIDITY: Duration = Duration::days(3650);

/// The cluster CA as stored in etcd (PEM), with its DER for fingerprints and checks.
#[derive(Clone)]
pub struct Ca {
    pub cert_pem: String,
    key_pem: String,
    pub cert_der: Vec<u8>,
}

impl std::fmt::Debug for Ca {
    // Never print the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// A new self-signed CA (ECDSA P-256) for `cluster`.
    pub fn generate(cluster: &str) -> Result<Self> {
        let key = KeyPair::generate().context("generating the CA key")?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("molten cluster CA {cluster}"));
        dn.push(DnType::OrganizationName, "molten");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + CA_VALIDITY;
        let cert = params.self_signed(&key).context("self-signing the CA")?;
        Self::from_pem(&cert.pem(), &key.serialize_pem())
    }

    /// Loads a CA from PEM, checking that the key belongs to the certificate.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self> {
        let cert_der = crate::identity::pem_to_der(cert_pem).context("the CA certificate")?;
        let key = KeyPair::from_pem(key_pem).context("the CA key is not a valid PEM key")?;
        let (_, cert) = x509_parser::parse_x509_certificate(&cert_der)
            .map_err(|e| anyhow::anyhow!("the CA certificate does not parse: {e}"))?;
        anyhow::ensure!(
            cert.public_key().subject_public_key.data.as_ref() == key.public_key_raw(),
            "the CA key does not belong to the CA certificate"
        );
        Ok(Self {
            cert_pem: cert_pem.to_string(),
            key_pem: key_pem.to_string(),
            cert_der,
        })
    }

    /// SHA-256 of the certificate's DER, lowercase hex: how the node record names the CA.
    pub fn fingerprint(&self) -> String {
        hex::encode(Sha256::digest(&self.cert_der))
    }

    /// An issuer for signing node certificates.
    pub fn issuer(&self) -> Result<Issuer<'static, KeyPair>> {
        let key = KeyPair::from_pem(&self.key_pem).context("the CA key")?;
        Issuer::from_ca_cert_der(&self.cert_der.clone().into(), key)
            .context("the CA certificate cannot issue")
    }
}

/// Returns the cluster CA, creating it if no agent has yet.
pub async fn ensure_ca(client: &mut Client, cluster: &str) -> Result<(Ca, Done)> {
    if let (Some(cert), Some(key)) = (
        etcd::get(client, keys::CA_CERT).await?,
        etcd::get(client, keys::CA_KEY).await?,
    ) {
        let ca = Ca::from_pem(&cert.value, &key.value).context(keys::CA_CERT)?;
        let detail = format!("cluster CA {}", short(&ca.fingerprint()));
        return Ok((ca, Done::unchanged(detail)));
    }
    let ours = Ca::generate(cluster)?;
    let created = etcd::create_if_absent(
        client,
        &[
            (keys::CA_CERT, &ours.cert_pem),
            (keys::CA_KEY, &ours.key_pem),
        ],
    )
    .await?;
    match created {
        Created::Ours => {
            let detail = format!("created cluster CA {}", short(&ours.fingerprint()));
            Ok((ours, Done::changed(detail)))
        }
        Created::Theirs(values) => {
            let ca = Ca::from_pem(&values[0], &values[1]).context(keys::CA_CERT)?;
            let detail = format!(
                "cluster CA {} (created by another node)",
                short(&ca.fingerprint())
            );
            Ok((ca, Done::unchanged(detail)))
        }
    }
}

fn short(fingerprint: &str) -> &str {
    &fingerprint[..16.min(fingerprint.len())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ca_round_trips_and_hides_its_key() {
        let ca = Ca::generate("dev").unwrap();
        let again = Ca::from_pem(&ca.cert_pem, &ca.key_pem).unwrap();
        assert_eq!(again.fingerprint(), ca.fingerprint());
        assert_eq!(ca.fingerprint().len(), 64);
        let debug = format!("{ca:?}");
        assert!(!debug.contains("PRIVATE"), "{debug}");
        ca.issuer().unwrap();
    }

    #[test]
    fn a_key_from_another_ca_is_refused() {
        let a = Ca::generate("a").unwrap();
        let b = Ca::generate("b").unwrap();
        let err = Ca::from_pem(&a.cert_pem, &b.key_pem).unwrap_err();
        assert!(err.to_string().contains("does not belong"), "{err}");
    }
}
