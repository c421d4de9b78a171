//! Node certificates: issue, and decide whether an existing one can be kept.

use std::collections::BTreeSet;
use std::net::IpAddr;

use anyhow::{anyhow, Context, Result};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::ca::Ca;

/// Node certificates live a year and are renewed when less than this is left.
pub const VALIDITY: Duration = Duration::days(365);
pub const RENEW_BEFORE: Duration = Duration::days(30);

/// Which certificate: Docker's server certificate (with the addresses clients dial) or the
/// client certificate BOSH's CPI presents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Server { ips: Vec<IpAddr>, dns: Vec<String> },
    Client,
}

/// A certificate and its private key, PEM.
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

/// Issues a certificate for node `name` signed by `ca`, valid from an hour ago for `validity`.
pub fn issue(ca: &Ca, name: &str, kind: &Kind, validity: Duration) -> Result<Pair> {
    let key = KeyPair::generate().context("generating a node key")?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    let (cn, eku) = match kind {
        Kind::Server { .. } => (
            format!("{name} docker"),
            ExtendedKeyUsagePurpose::ServerAuth,
        ),
        Kind::Client => (
            format!("{name} docker client"),
            ExtendedKeyUsagePurpose::ClientAuth,
        ),
    };
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "molten");
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![eku];
    params.use_authority_key_identifier_extension = true;
    if let Kind::Server { ips, dns } = kind {
        params.subject_alt_names = ips.iter().map(|ip| SanType::IpAddress(*ip)).collect();
        for d in dns {
            let name = d
                .clone()
                .try_into()
                .with_context(|| format!("{d:?} is not a valid DNS name for a certificate"))?;
            params.subject_alt_names.push(SanType::DnsName(name));
        }
    }
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + validity;
    let cert = params
        .signed_by(&key, &ca.issuer()?)
        .context("signing a node certificate")?;
    Ok(Pair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Why an existing certificate must be replaced, or `None` to keep it.
pub fn renewal_reason(pair: &Pair, ca: &Ca, kind: &Kind, now: OffsetDateTime) -> Option<String> {
    match check(pair, ca, kind, now) {
        Ok(()) => None,
        Err(reason) => Some(format!("{reason:#}")),
    }
}

fn check(pair: &Pair, ca: &Ca, kind: &Kind, now: OffsetDateTime) -> Result<()> {
    let der = crate::identity::pem_to_der(&pair.cert_pem)?;
    let (_, cert) =
        X509Certificate::from_der(&der).map_err(|e| anyhow!("certificate does not parse: {e}"))?;
    let key = KeyPair::from_pem(&pair.key_pem).context("key does not parse")?;
    anyhow::ensure!(
        cert.public_key().subject_public_key.data.as_ref() == key.public_key_raw(),
        "key does not match the certificate"
    );
    let (_, ca_cert) = X509Certificate::from_der(&ca.cert_der)
        .map_err(|e| anyhow!("CA certificate does not parse: {e}"))?;
    cert.verify_signature(Some(ca_cert.public_key()))
        .map_err(|_| anyhow!("not signed by the current cluster CA"))?;
    let left = cert.validity().not_after.to_datetime() - now;
    anyhow::ensure!(
        left >= RENEW_BEFORE,
        "expires in {} days",
        left.whole_days()
    );
    anyhow::ensure!(
        cert.validity().not_before.to_datetime() <= now,
        "not valid yet"
    );
    if let Kind::Server { ips, dns } = kind {
        let wanted: BTreeSet<String> = ips
            .iter()
            .map(ToString::to_string)
            .chain(dns.iter().cloned())
            .collect();
        let have = sans(&cert)?;
        anyhow::ensure!(
            have == wanted,
            "SANs {} differ from {}",
            join(&have),
            join(&wanted)
        );
    }
    Ok(())
}

/// The certificate's SANs as strings (IPs and DNS names).
fn sans(cert: &X509Certificate<'_>) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    let Some(ext) = cert
        .subject_alternative_name()
        .map_err(|e| anyhow!("bad SAN extension: {e}"))?
    else {
        return Ok(out);
    };
    for name in &ext.value.general_names {
        match name {
            GeneralName::DNSName(d) => {
                out.insert(d.to_string());
            }
            GeneralName::IPAddress(bytes) => {
                let ip = match bytes.len() {
                    4 => IpAddr::from(<[u8; 4]>::try_from(*bytes).expect("4 bytes")),
                    16 => IpAddr::from(<[u8; 16]>::try_from(*bytes).expect("16 bytes")),
                    _ => continue,
                };
                out.insert(ip.to_string());
            }
            _ => {}
        }
    }
    Ok(out)
}

fn join(set: &BTreeSet<String>) -> String {
    format!("[{}]", set.iter().cloned().collect::<Vec<_>>().join(", "))
}

/// The SANs of a PEM certificate as strings (IPs and DNS names).
pub fn san_strings(cert_pem: &str) -> Result<BTreeSet<String>> {
    let der = crate::identity::pem_to_der(cert_pem)?;
    let (_, cert) =
        X509Certificate::from_der(&der).map_err(|e| anyhow!("certificate does not parse: {e}"))?;
    sans(&cert)
}

/// The certificate's expiry.
pub fn not_after(cert_pem: &str) -> Result<OffsetDateTime> {
    let der = crate::identity::pem_to_der(cert_pem)?;
    let (_, cert) =
        X509Certificate::from_der(&der).map_err(|e| anyhow!("certificate does not parse: {e}"))?;
    Ok(cert.validity().not_after.to_datetime())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(ip: &str) -> Kind {
        Kind::Server {
            ips: vec![ip.parse().unwrap(), "127.0.0.1".parse().unwrap()],
            dns: vec!["node-0".into()],
        }
    }

    #[test]
    fn a_fresh_certificate_is_kept() {
        let ca = Ca::generate("t").unwrap();
        let now = OffsetDateTime::now_utc();
        for kind in [server("10.0.0.10"), Kind::Client] {
            let pair = issue(&ca, "node-0", &kind, VALIDITY).unwrap();
            assert_eq!(renewal_reason(&pair, &ca, &kind, now), None);
        }
    }

    #[test]
    fn near_expiry_is_renewed() {
        let ca = Ca::generate("t").unwrap();
        let pair = issue(&ca, "node-0", &Kind::Client, Duration::days(10)).unwrap();
        let reason = renewal_reason(&pair, &ca, &Kind::Client, OffsetDateTime::now_utc()).unwrap();
        assert!(reason.starts_with("expires in"), "{reason}");
    }

    #[test]
    fn a_changed_ip_is_renewed() {
        let ca = Ca::generate("t").unwrap();
        let pair = issue(&ca, "node-0", &server("10.0.0.10"), VALIDITY).unwrap();
        let reason =
            renewal_reason(&pair, &ca, &server("10.0.0.99"), OffsetDateTime::now_utc()).unwrap();
        assert!(reason.contains("SANs"), "{reason}");
        assert!(reason.contains("10.0.0.99"), "{reason}");
    }

    #[test]
    fn another_ca_or_key_is_renewed() {
        let ca = Ca::generate("t").unwrap();
        let other = Ca::generate("t").unwrap();
        let now = OffsetDateTime::now_utc();
        let pair = issue(&other, "node-0", &Kind::Client, VALIDITY).unwrap();
        let reason = renewal_reason(&pair, &ca, &Kind::Client, now).unwrap();
        assert!(
            reason.contains("not signed by the current cluster CA"),
            "{reason}"
        );

        let a = issue(&ca, "node-0", &Kind::Client, VALIDITY).unwrap();
        let b = issue(&ca, "node-0", &Kind::Client, VALIDITY).unwrap();
        let mixed = Pair {
            cert_pem: a.cert_pem,
            key_pem: b.key_pem,
        };
        let reason = renewal_reason(&mixed, &ca, &Kind::Client, now).unwrap();
        assert!(reason.contains("key does not match"), "{reason}");
    }

    #[test]
    fn server_certificate_has_the_right_eku_and_sans() {
        let ca = Ca::generate("t").unwrap();
        let pair = issue(&ca, "node-0", &server("10.0.0.10"), VALIDITY).unwrap();
        let der = crate::pki::pem_to_der(&pair.cert_pem).unwrap();
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && !eku.client_auth);
        let sans = sans(&cert).unwrap();
        assert_eq!(join(&sans), "[10.0.0.10, 127.0.0.1, node-0]");
        assert!(!pair.key_pem.is_empty() && !format!("{pair:?}").contains("PRIVATE"));
    }
}
