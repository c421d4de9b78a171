//! `data:` URLs for inline file contents, in one of two forms:
//!
//! - **Percent-encoded text** (`data:,...`): readable in the generated JSON, and it leaves
//!   URL-unreserved characters (letters, digits, `-._~`) untouched, so a platform can substitute
//!   a placeholder token inside the contents with a plain string `replace` on the config text.
//!   Characters that are safe inside an opaque URL (`:/,=@` ...) are kept too, to stay small.
//! - **gzip + base64** (`data:;base64,...` with Ignition's `compression: "gzip"`, spec ≥ 3.1):
//!   JSON's quotes and braces cost three bytes each when percent-encoded, so a node config
//!   compresses to about two thirds. Used only when the JSON gets smaller (the `compression`
//!   field counted) and the platform allows it ([`InlineEncoding`]), as Butane does. The gzip
//!   stream is reproducible: fixed level, mtime 0, no file name, OS byte "unknown".

use std::io::Write;

use base64::Engine;
use flate2::{Compression, GzBuilder};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::plan::InlineEncoding;

/// An encoded inline resource: the `source` URL and Ignition's `compression` for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inline {
    pub source: String,
    pub compression: Option<&'static str>,
}

const GZIP_PREFIX: &str = "data:;base64,";
/// What the `compression` field adds to the JSON: `"compression":"gzip",`.
const COMPRESSION_FIELD_BYTES: usize = 21;
/// gzip header and trailer (crc32, length) around the deflate stream.
const GZIP_FRAMING_BYTES: usize = 18;
/// gzip level: the highest, as the output is small and composed once per node.
const GZIP_LEVEL: u32 = 9;
/// The gzip header's OS byte: 255, "unknown".
const GZIP_OS_UNKNOWN: u8 = 255;

pub fn encode(text: &str, encoding: InlineEncoding) -> Inline {
    let plain = Inline {
        source: percent_encode(text),
        compression: None,
    };
    // Even an empty deflate stream with its framing cannot beat a short text: skip the work.
    let smallest_gzip =
        COMPRESSION_FIELD_BYTES + GZIP_PREFIX.len() + (GZIP_FRAMING_BYTES + 2) * 4 / 3;
    if encoding == InlineEncoding::PlainText || plain.source.len() <= smallest_gzip {
        return plain;
    }
    let compressed = Inline {
        source: format!(
            "{GZIP_PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(gzip(text.as_bytes()))
        ),
        compression: Some("gzip"),
    };
    if compressed.source.len() + COMPRESSION_FIELD_BYTES < plain.source.len() {
        compressed
    } else {
        plain
    }
}

/// A gzip member (RFC 1952) of `bytes` with a fixed header: no file name, mtime 0, OS 255
/// ("unknown", so the output does not depend on the build host).
fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzBuilder::new()
        .mtime(0)
        .operating_system(GZIP_OS_UNKNOWN)
        .write(
            Vec::with_capacity(bytes.len() / 2 + 64),
            Compression::new(GZIP_LEVEL),
        );
    encoder
        .write_all(bytes)
        .and_then(|()| encoder.finish())
        .expect("gzip into a Vec cannot fail")
}

/// Bytes that are percent-encoded: everything but RFC 3986 unreserved characters and the
/// separators that carry no meaning inside a `data:` URL's payload (`%`, `#`, `?`, space,
/// quotes, control characters and non-ASCII bytes are encoded).
const ENCODED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b':')
    .remove(b'/')
    .remove(b',')
    .remove(b';')
    .remove(b'=')
    .remove(b'@')
    .remove(b'!')
    .remove(b'$')
    .remove(b'&')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b'+');

fn percent_encode(text: &str) -> String {
    format!("data:,{}", utf8_percent_encode(text, ENCODED))
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn plain(text: &str) -> String {
        let inline = encode(text, InlineEncoding::PlainText);
        assert_eq!(inline.compression, None);
        inline.source
    }

    fn gunzip(source: &str) -> String {
        let b64 = source.strip_prefix("data:;base64,").expect(source);
        let gz = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        let mut text = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut text)
            .unwrap();
        text
    }

    #[test]
    fn encodes_what_a_url_cannot_carry() {
        assert_eq!(plain("a b\n%#?\"é"), "data:,a%20b%0A%25%23%3F%22%C3%A9");
        assert_eq!(plain("http://x:2379,y=1"), "data:,http://x:2379,y=1");
        assert_eq!(
            plain("__MOLTEN_SEED_PRIVATE_IPV4__"),
            "data:,__MOLTEN_SEED_PRIVATE_IPV4__"
        );
    }

    #[test]
    fn short_text_stays_percent_encoded() {
        // A gzip header alone is 20 bytes: a hostname never compresses.
        let inline = encode("node-0\n", InlineEncoding::Smallest);
        assert_eq!(inline.source, "data:,node-0%0A");
        assert_eq!(inline.compression, None);
    }

    #[test]
    fn json_is_compressed_when_smaller_and_round_trips() {
        let json = r#"{"cluster":"dev","etcd":{"endpoints":["http://10.0.0.10:2379","http://10.0.0.11:2379"]},"flannel":{"network":"10.1.0.0/16"}}"#.repeat(3);
        let inline = encode(&json, InlineEncoding::Smallest);
        assert_eq!(inline.compression, Some("gzip"));
        assert!(inline.source.len() < plain(&json).len());
        assert_eq!(gunzip(&inline.source), json);
    }

    #[test]
    fn compressed_output_is_reproducible() {
        let json = r#"{"a":"b","c":["d","e"],"f":{"g":"h"}}"#.repeat(4);
        let inline = encode(&json, InlineEncoding::Smallest);
        assert_eq!(inline, encode(&json, InlineEncoding::Smallest));
        let b64 = inline.source.strip_prefix("data:;base64,").unwrap();
        let gz = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        // Magic, deflate, no flags, mtime 0, XFL 2 (maximum compression), OS unknown.
        assert_eq!(gz[..10], [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 255]);
    }

    #[test]
    fn long_contents_round_trip_through_the_reused_compressor() {
        // Larger than any one output reservation, and poorly compressible, twice in a row.
        let text: String = (0..20_000u32)
            .map(|i| char::from(b'a' + (i.wrapping_mul(2_654_435_761) >> 27) as u8 % 26))
            .collect();
        for _ in 0..2 {
            let inline = encode(&text, InlineEncoding::Smallest);
            assert_eq!(inline.compression, Some("gzip"));
            assert_eq!(gunzip(&inline.source), text);
        }
    }

    #[test]
    fn plain_text_platforms_never_get_gzip() {
        let json = r#"{"endpoint":"http://__MOLTEN_SEED_PRIVATE_IPV4__:2379"}"#.repeat(5);
        let inline = encode(&json, InlineEncoding::PlainText);
        assert!(inline.source.contains("__MOLTEN_SEED_PRIVATE_IPV4__"));
        assert_eq!(inline.compression, None);
    }
}
