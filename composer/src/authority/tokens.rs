//! Enrollment tokens: derived from the authority's token key, so composing twice from one
//! authority state writes byte-identical bundles, yet no token can be guessed without the key.
//! The authority stores only a token's sha256.

use base64::Engine;
use ring::hmac;
use sha2::{Digest, Sha256};

/// Size of the random token key (`token-key`).
pub const TOKEN_KEY_BYTES: usize = 32;

pub struct TokenKey(hmac::Key);

impl TokenKey {
    pub fn from_bytes(bytes: &[u8]) -> anyhow::Result<TokenKey> {
        if bytes.len() != TOKEN_KEY_BYTES {
            anyhow::bail!(
                "the token key has {} bytes, expected {TOKEN_KEY_BYTES}",
                bytes.len()
            );
        }
        Ok(TokenKey(hmac::Key::new(hmac::HMAC_SHA256, bytes)))
    }

    /// `base64url(HMAC-SHA256(key, "<cluster>/<node>/<generation>"))`, 43 characters.
    pub fn token(&self, cluster: &str, node: &str, generation: u64) -> String {
        let tag = hmac::sign(&self.0, format!("{cluster}/{node}/{generation}").as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref())
    }
}

/// The hex sha256 the authority keeps of a token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether `token` hashes to `expected_hex`, without an early exit on the first difference.
pub fn token_matches(token: &str, expected_hex: &str) -> bool {
    let Ok(expected) = hex::decode(expected_hex) else {
        return false;
    };
    let actual = Sha256::digest(token.as_bytes());
    // Every byte is compared whatever differs first.
    expected.len() == actual.len()
        && actual
            .iter()
            .zip(&expected)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_derived_and_distinct() {
        let key = TokenKey::from_bytes(&[7u8; 32]).unwrap();
        let a = key.token("dev", "core-01", 1);
        assert_eq!(a, key.token("dev", "core-01", 1), "deterministic");
        assert_eq!(a.len(), 43);
        assert_ne!(a, key.token("dev", "core-01", 2));
        assert_ne!(a, key.token("dev", "core-02", 1));
        let other = TokenKey::from_bytes(&[8u8; 32]).unwrap();
        assert_ne!(a, other.token("dev", "core-01", 1));
        assert!(token_matches(&a, &token_hash(&a)));
        assert!(!token_matches(&a, &token_hash("x")));
        assert!(!token_matches(&a, "not hex"));
        assert!(TokenKey::from_bytes(&[0u8; 31]).is_err());
    }
}
