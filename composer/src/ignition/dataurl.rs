//! `data:` URLs for inline file contents.
//!
//! Percent-encoding keeps the text readable in the generated JSON and leaves URL-unreserved
//! characters (letters, digits, `-._~`) untouched, which is what lets the packet Terraform
//! substitute its placeholder token inside a node's config with a plain string `replace`.
//! Characters that are safe inside an opaque URL (`:/,=@` ...) are kept too, to stay small.

/// Bytes that stay as they are: RFC 3986 unreserved characters plus the separators that carry no
/// meaning inside a `data:` URL's payload. Everything else, `%`, `#`, `?`, space, quotes, control
/// characters and non-ASCII bytes included, is percent-encoded.
fn keep(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-._~:/,;=@!$&'()*+".contains(&byte)
}

pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(6 + text.len() * 2);
    out.push_str("data:,");
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &byte in text.as_bytes() {
        if keep(byte) {
            out.push(byte as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(byte >> 4)] as char);
            out.push(HEX[usize::from(byte & 0xf)] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_what_a_url_cannot_carry() {
        assert_eq!(encode("a b\n%#?\"é"), "data:,a%20b%0A%25%23%3F%22%C3%A9");
        assert_eq!(encode("http://x:2379,y=1"), "data:,http://x:2379,y=1");
        assert_eq!(
            encode("__MOLTEN_SEED_PRIVATE_IPV4__"),
            "data:,__MOLTEN_SEED_PRIVATE_IPV4__"
        );
    }
}
