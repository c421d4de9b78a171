//! Hashing, one way for the whole crate: whole buffers, or files streamed in fixed-size chunks
//! (kernels, initrds and the agent are hundreds of MB and are never loaded into memory).

use std::fs::File;
use std::io;
use std::path::Path;

use sha2::{Digest, Sha256, Sha512};

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Lowercase hex sha512 of `bytes`.
pub fn sha512_hex(bytes: &[u8]) -> String {
    hex::encode(Sha512::digest(bytes))
}

/// `(lowercase hex digest, bytes read)` of everything `reader` yields.
pub fn hash_reader<D: Digest + io::Write>(reader: &mut impl io::Read) -> io::Result<(String, u64)> {
    let mut hasher = D::new();
    let size = io::copy(reader, &mut hasher)?;
    Ok((hex::encode(hasher.finalize()), size))
}

/// Copies everything `reader` yields into `writer`, returning `(sha256 hex, bytes copied)` of
/// what was copied: one pass for a copy that must be checked.
pub fn copy_sha256(
    reader: &mut impl io::Read,
    writer: &mut impl io::Write,
) -> io::Result<(String, u64)> {
    struct Tee<'a, W> {
        hasher: Sha256,
        out: &'a mut W,
    }
    impl<W: io::Write> io::Write for Tee<'_, W> {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            let n = self.out.write(bytes)?;
            self.hasher.update(&bytes[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            self.out.flush()
        }
    }
    let mut tee = Tee {
        hasher: Sha256::new(),
        out: writer,
    };
    let size = io::copy(reader, &mut tee)?;
    Ok((hex::encode(tee.hasher.finalize()), size))
}

/// `(sha256 hex, size)` of the file at `path`, streamed.
pub fn sha256_file(path: &Path) -> io::Result<(String, u64)> {
    hash_file::<Sha256>(path)
}

/// `(sha512 hex, size)` of the file at `path`, streamed.
pub fn sha512_file(path: &Path) -> io::Result<(String, u64)> {
    hash_file::<Sha512>(path)
}

fn hash_file<D: Digest + io::Write>(path: &Path) -> io::Result<(String, u64)> {
    hash_reader::<D>(&mut File::open(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_and_whole_agree() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(sha256_file(&path).unwrap(), (sha256_hex(&bytes), 200_000));
        assert_eq!(sha512_file(&path).unwrap(), (sha512_hex(&bytes), 200_000));
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(sha256_file(&dir.path().join("missing")).is_err());
        let mut copy = Vec::new();
        let copied = copy_sha256(&mut bytes.as_slice(), &mut copy).unwrap();
        assert_eq!(copied, (sha256_hex(&bytes), 200_000));
        assert_eq!(copy, bytes);
    }
}
