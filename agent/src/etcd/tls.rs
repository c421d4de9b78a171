//! The client side of etcd's mutual TLS: the etcd CA from node.json and the node's etcd-client
//! certificate, whose CN is its etcd user once authentication is on.

use std::path::Path;

use anyhow::{Context, Result};
use etcd_client::{Certificate, Identity, TlsOptions};

use crate::identity::{IdentityDir, Kind};

#[derive(Clone)]
pub struct EtcdTls {
    pub ca_pem: String,
    pub cert_pem: String,
    key_pem: String,
}

impl std::fmt::Debug for EtcdTls {
    // Never print the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdTls").finish_non_exhaustive()
    }
}

impl EtcdTls {
    pub fn new(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Self {
        Self {
            ca_pem: ca_pem.to_string(),
            cert_pem: cert_pem.to_string(),
            key_pem: key_pem.to_string(),
        }
    }

    /// The node's own identity of `kind` (etcd-client, or etcd-admin on members).
    pub fn from_identity(dir: &IdentityDir, kind: Kind, ca_pem: &str) -> Result<Self> {
        let pair = dir.load(kind)?.with_context(|| {
            format!(
                "no {kind} certificate in {}: run mc enroll",
                dir.path().display()
            )
        })?;
        // Never present (or trust a CA) outside its validity window or on an unset clock.
        let now = crate::timestamp::now();
        crate::identity::check_ca("trust.etcd_ca (the etcd CA)", ca_pem, now)?;
        crate::identity::verify(kind, &pair, ca_pem, now)
            .with_context(|| format!("the {kind} certificate in {}", dir.path().display()))?;
        Ok(Self::new(ca_pem, &pair.cert_pem, &pair.key_pem))
    }

    /// From PEM files (operators: `--etcd-cacert --etcd-cert --etcd-key`). Errors name the
    /// file, never quote it.
    pub fn from_files(ca: &Path, cert: &Path, key: &Path) -> Result<Self> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
        };
        let (ca_pem, cert_pem) = (read(ca)?, read(cert)?);
        let now = crate::timestamp::now();
        crate::identity::check_ca(&format!("--etcd-ca {}", ca.display()), &ca_pem, now)?;
        crate::identity::check_presented(
            &format!("--etcd-cert {}", cert.display()),
            &cert_pem,
            Some(&ca_pem),
            now,
        )?;
        Ok(Self::new(&ca_pem, &cert_pem, &read(key)?))
    }

    pub(super) fn options(&self) -> TlsOptions {
        TlsOptions::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
    }
}
