//! The composed output in memory: relative path → bytes and mode, sorted by path, so writing
//! it is deterministic.

use std::collections::BTreeMap;

use sha2::Digest;

use super::ComposeError;

/// The checksum list of served bundles: `<sha256 hex>  <path>` per file, sorted by path.
pub const SHA256SUMS: &str = "SHA256SUMS";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleFile {
    pub contents: Vec<u8>,
    /// Unix permission bits, e.g. `0o644`.
    pub mode: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bundle {
    files: BTreeMap<String, BundleFile>,
}

impl Bundle {
    /// Adds a file at a relative, `/`-separated path; the same path twice is a bug.
    pub fn add(&mut self, path: &str, contents: Vec<u8>, mode: u32) -> Result<(), ComposeError> {
        let safe = !path.is_empty()
            && !path.starts_with('/')
            && path
                .split('/')
                .all(|part| !part.is_empty() && part != "." && part != "..");
        if !safe {
            return Err(ComposeError::Internal(format!(
                "output path {path:?} is not a plain relative path"
            )));
        }
        if self.files.contains_key(path) {
            return Err(ComposeError::Internal(format!(
                "two outputs claim the path {path}"
            )));
        }
        // A file cannot also be a directory of another file ("a" and "a/b").
        let as_dir = format!("{path}/");
        let below = self
            .files
            .range(as_dir.clone()..)
            .next()
            .map(|(other, _)| other)
            .filter(|other| other.starts_with(&as_dir));
        let above = path
            .match_indices('/')
            .map(|(i, _)| &path[..i])
            .find(|dir| self.files.contains_key(*dir));
        let clash = below.map(String::as_str).or(above);
        if let Some(other) = clash {
            return Err(ComposeError::Internal(format!(
                "output paths {other} and {path} cannot both exist"
            )));
        }
        self.files
            .insert(path.to_string(), BundleFile { contents, mode });
        Ok(())
    }

    pub fn get(&self, path: &str) -> Option<&BundleFile> {
        self.files.get(path)
    }

    /// Files in path order.
    pub fn files(&self) -> impl Iterator<Item = (&str, &BundleFile)> {
        self.files.iter().map(|(path, file)| (path.as_str(), file))
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    pub fn total_bytes(&self) -> u64 {
        self.files.values().map(|f| f.contents.len() as u64).sum()
    }

    /// Adds [`SHA256SUMS`]: the sha256 of every other file, in path order.
    pub fn add_sha256sums(&mut self) -> Result<(), ComposeError> {
        let mut text = String::new();
        for (path, file) in &self.files {
            text.push_str(&sha256_hex(&file.contents));
            text.push_str("  ");
            text.push_str(path);
            text.push('\n');
        }
        self.add(SHA256SUMS, text.into_bytes(), 0o644)
    }
}

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Lowercase hex sha512 of `bytes`.
pub fn sha512_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha512::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_cover_every_file_in_order() {
        let mut b = Bundle::default();
        b.add("b/x", b"x".to_vec(), 0o644).unwrap();
        b.add("a", b"".to_vec(), 0o755).unwrap();
        b.add_sha256sums().unwrap();
        let sums = String::from_utf8(b.get(SHA256SUMS).unwrap().contents.clone()).unwrap();
        assert_eq!(
            sums,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  a\n\
             2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881  b/x\n"
        );
    }

    #[test]
    fn refuses_duplicates_and_escaping_paths() {
        let mut b = Bundle::default();
        b.add("a", vec![], 0o644).unwrap();
        assert!(b.add("a", vec![], 0o644).is_err());
        assert!(b.add("a/b", vec![], 0o644).is_err(), "a is a file");
        b.add("c/d", vec![], 0o644).unwrap();
        assert!(b.add("c", vec![], 0o644).is_err(), "c is a directory");
        for bad in ["", "/etc/x", "../x", "a//b", "a/./b"] {
            assert!(b.add(bad, vec![], 0o644).is_err(), "{bad}");
        }
    }
}
