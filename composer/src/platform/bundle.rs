//! The composed output: relative path → bytes and mode, sorted by path, so writing it is
//! deterministic. Large operator files (iPXE kernel and initrd) are not held in memory: the
//! bundle records their source path, size and sha256 ([`CopiedFile`]) and the writer streams them.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use crate::digest;
use crate::error::ComposeError;

/// The checksum list of served bundles: `<sha256 hex>  <path>` per file, sorted by path.
pub const SHA256SUMS: &str = "SHA256SUMS";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleFile {
    pub contents: Vec<u8>,
    /// Unix permission bits, e.g. `0o644`.
    pub mode: u32,
}

/// A file copied from the operator's disk when the bundle is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopiedFile {
    pub source: PathBuf,
    pub size: u64,
    /// Lowercase hex sha256 when composed; the writer checks the copy against it.
    pub sha256: String,
    pub mode: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    InMemory(BundleFile),
    Copied(CopiedFile),
}

impl Entry {
    fn size(&self) -> u64 {
        match self {
            Entry::InMemory(f) => f.contents.len() as u64,
            Entry::Copied(f) => f.size,
        }
    }

    fn sha256(&self) -> String {
        match self {
            Entry::InMemory(f) => digest::sha256_hex(&f.contents),
            Entry::Copied(f) => f.sha256.clone(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bundle {
    files: BTreeMap<String, Entry>,
}

impl Bundle {
    /// Adds a file at a relative, `/`-separated path; the same path twice is a bug.
    pub fn add(&mut self, path: &str, contents: Vec<u8>, mode: u32) -> Result<(), ComposeError> {
        self.insert(path, Entry::InMemory(BundleFile { contents, mode }))
    }

    /// Adds the file at `source` under `path`, hashing it by streaming (it may be hundreds of
    /// MB); its bytes are read again only when the bundle is written.
    pub fn add_copy(&mut self, path: &str, source: &Path, mode: u32) -> Result<(), ComposeError> {
        let read_error = |err: io::Error| ComposeError::AssetRead {
            path: source.display().to_string(),
            source: err,
        };
        let (sha256, size) = digest::sha256_file(source).map_err(read_error)?;
        let copied = CopiedFile {
            source: source.to_path_buf(),
            size,
            sha256,
            mode,
        };
        self.insert(path, Entry::Copied(copied))
    }

    fn insert(&mut self, path: &str, entry: Entry) -> Result<(), ComposeError> {
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
        self.files.insert(path.to_string(), entry);
        Ok(())
    }

    /// An in-memory file.
    pub fn get(&self, path: &str) -> Option<&BundleFile> {
        match self.files.get(path)? {
            Entry::InMemory(file) => Some(file),
            Entry::Copied(_) => None,
        }
    }

    /// A file copied from disk.
    pub fn get_copy(&self, path: &str) -> Option<&CopiedFile> {
        match self.files.get(path)? {
            Entry::Copied(file) => Some(file),
            Entry::InMemory(_) => None,
        }
    }

    /// In-memory files in path order.
    pub fn files(&self) -> impl Iterator<Item = (&str, &BundleFile)> {
        self.files.iter().filter_map(|(path, entry)| match entry {
            Entry::InMemory(file) => Some((path.as_str(), file)),
            Entry::Copied(_) => None,
        })
    }

    /// Files copied from disk, in path order.
    pub fn copies(&self) -> impl Iterator<Item = (&str, &CopiedFile)> {
        self.files.iter().filter_map(|(path, entry)| match entry {
            Entry::Copied(file) => Some((path.as_str(), file)),
            Entry::InMemory(_) => None,
        })
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Bytes of every file, copied ones included.
    pub fn total_bytes(&self) -> u64 {
        self.files.values().map(Entry::size).sum()
    }

    /// Adds [`SHA256SUMS`]: the sha256 of every other file, in path order.
    pub fn add_sha256sums(&mut self) -> Result<(), ComposeError> {
        let mut text = String::new();
        for (path, entry) in &self.files {
            text.push_str(&entry.sha256());
            text.push_str("  ");
            text.push_str(path);
            text.push('\n');
        }
        self.add(SHA256SUMS, text.into_bytes(), 0o644)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::sha256_hex;

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
    fn copies_are_hashed_by_streaming_and_listed_in_the_sums() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("kernel");
        // Larger than io::copy's buffer, so the hash spans several reads.
        let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&source, &bytes).unwrap();
        let mut b = Bundle::default();
        b.add_copy("assets/kernel", &source, 0o644).unwrap();
        b.add("a", b"x".to_vec(), 0o644).unwrap();
        let copy = b.get_copy("assets/kernel").unwrap();
        assert_eq!(
            (copy.size, copy.sha256.as_str()),
            (100_000, sha256_hex(&bytes).as_str())
        );
        assert!(b.get("assets/kernel").is_none(), "not held in memory");
        assert_eq!(b.total_bytes(), 100_001);
        assert!(b.add_copy("assets/kernel", &source, 0o644).is_err());
        b.add_sha256sums().unwrap();
        let sums = String::from_utf8(b.get(SHA256SUMS).unwrap().contents.clone()).unwrap();
        let expected = format!(
            "{}  a\n{}  assets/kernel\n",
            sha256_hex(b"x"),
            sha256_hex(&bytes)
        );
        assert_eq!(sums, expected);
    }

    #[test]
    fn a_missing_copy_source_is_an_error_naming_it() {
        let mut b = Bundle::default();
        let err = b
            .add_copy("assets/x", Path::new("/nonexistent/molten-asset"), 0o644)
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot read /nonexistent/molten-asset: "),
            "{err}"
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
