//! PEM helpers shared by the CA and certificate code.

use anyhow::{anyhow, Result};

/// The DER of the first certificate in a PEM text.
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
