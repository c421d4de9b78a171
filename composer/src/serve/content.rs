//! The bytes `molten serve` hands out, kept as they were when checked against `SHA256SUMS`.
//!
//! Every listed file is opened once, beneath the bundle directory and without following a symlink
//! anywhere on its path, and hashed from that open descriptor. A small file's verified bytes stay
//! in memory. A large file keeps its open descriptor (so a bundle renamed over the served one does
//! not change what is served) plus the sha256 of each [`CHUNK`]; every chunk is read and checked
//! again right before it is sent, so a file rewritten in place is cut off at the first chunk that
//! no longer matches and never reaches a client.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use sha2::{Digest, Sha256};

use super::beneath::{open_beneath, open_dir};
use super::manifest::{Manifest, ManifestError, MANIFEST_NAME};

/// Files up to this size are served from memory, whatever the budget.
pub const IN_MEMORY_MAX: u64 = 4 << 20;
/// Larger files are kept in memory while their sum stays within this (a rack bundle's kernel and
/// initrd fit; re-hashing every chunk at every request costs a third of the throughput on 2 cores).
pub const DEFAULT_MEMORY_BUDGET: u64 = 1 << 30;
/// Larger files are re-checked before sending in chunks of this size.
pub const CHUNK: u64 = 1 << 20;

/// One verified file.
pub struct Verified {
    pub rel: String,
    pub sha256: String,
    pub len: u64,
    pub data: Data,
}

pub enum Data {
    Memory(Bytes),
    File(Arc<ChunkedFile>),
}

/// A large file: its checked inode, the sha256 of every chunk, and whether a chunk was ever found
/// changed (then the file is refused from then on).
pub struct ChunkedFile {
    pub file: File,
    pub chunk_sha256: Vec<[u8; 32]>,
    pub changed: AtomicBool,
}

/// The whole verified bundle, `SHA256SUMS` included.
pub struct Content {
    files: BTreeMap<String, Verified>,
    pub manifest_bytes: Bytes,
}

impl Content {
    /// Opens and hashes every file `manifest` lists; fails naming each file that is missing,
    /// changed, not a regular file or reached through a symlink.
    /// Files larger than [`IN_MEMORY_MAX`] are kept in memory while their sizes add up to at
    /// most `memory_budget` bytes.
    pub fn load(
        dir: &Path,
        manifest: &Manifest,
        manifest_bytes: Bytes,
        memory_budget: u64,
    ) -> Result<Content, ManifestError> {
        let root = open_dir(dir).map_err(|source| ManifestError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut files = BTreeMap::new();
        let mut problems = Vec::new();
        let mut budget = memory_budget;
        for entry in manifest.entries() {
            match verify_one(&root, &entry.rel, &entry.sha256, &mut budget) {
                Ok(verified) => {
                    files.insert(entry.rel.clone(), verified);
                }
                Err(problem) => problems.push(problem),
            }
        }
        if !problems.is_empty() {
            return Err(ManifestError::Mismatch { problems });
        }
        Ok(Content {
            files,
            manifest_bytes,
        })
    }

    pub fn get(&self, rel: &str) -> Option<&Verified> {
        self.files.get(rel)
    }

    pub fn entries(&self) -> impl Iterator<Item = &Verified> {
        self.files.values()
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Bytes held in memory.
    pub fn memory_bytes(&self) -> u64 {
        self.memory().map(|f| f.len).sum()
    }

    /// How many files are held in memory.
    pub fn memory_files(&self) -> usize {
        self.memory().count()
    }

    fn memory(&self) -> impl Iterator<Item = &Verified> {
        self.files
            .values()
            .filter(|f| matches!(f.data, Data::Memory(_)))
    }

    /// Total bytes of the listed files.
    pub fn total_bytes(&self) -> u64 {
        self.files.values().map(|f| f.len).sum()
    }
}

/// Verifies one file; keeps it in memory if it is small or fits what is left of `budget`
/// (which it then uses up).
fn verify_one(
    root: &File,
    rel: &str,
    expected: &str,
    budget: &mut u64,
) -> Result<Verified, String> {
    let keep_up_to = IN_MEMORY_MAX.max(*budget);
    let file = open_beneath(root, rel).map_err(|err| format!("{rel}: {err}"))?;
    let mut whole = Sha256::new();
    let mut chunk_sha256 = Vec::new();
    let mut memory = Vec::new();
    let mut buf = vec![0u8; CHUNK as usize];
    let mut len = 0u64;
    loop {
        let n = read_full_at(&file, &mut buf, len).map_err(|err| format!("{rel}: {err}"))?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        whole.update(chunk);
        chunk_sha256.push(Sha256::digest(chunk).into());
        if len + (n as u64) <= keep_up_to {
            memory.extend_from_slice(chunk);
        } else {
            memory = Vec::new();
        }
        len += n as u64;
        if (n as u64) < CHUNK {
            break;
        }
    }
    let actual = hex::encode(whole.finalize());
    if actual != expected {
        return Err(format!(
            "{rel} has sha256 {actual}, {MANIFEST_NAME} says {expected}"
        ));
    }
    let data = if len <= IN_MEMORY_MAX {
        Data::Memory(Bytes::from(memory))
    } else if len <= *budget {
        *budget -= len;
        Data::Memory(Bytes::from(memory))
    } else {
        Data::File(Arc::new(ChunkedFile {
            file,
            chunk_sha256,
            changed: AtomicBool::new(false),
        }))
    };
    Ok(Verified {
        rel: rel.to_string(),
        sha256: expected.to_string(),
        len,
        data,
    })
}

/// Reads until `buf` is full or the file ends.
fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

impl ChunkedFile {
    /// Bytes `[start, end)` of chunk `index`, after checking the whole chunk against its sha256.
    /// A mismatch marks the file changed and is an error: nothing of that chunk is returned.
    pub fn read_checked(&self, index: usize, start: u64, end: u64) -> io::Result<Bytes> {
        let expected = self.chunk_sha256.get(index).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "chunk beyond the verified file",
            )
        })?;
        let chunk_start = index as u64 * CHUNK;
        let mut buf = vec![0u8; CHUNK as usize];
        let n = read_full_at(&self.file, &mut buf, chunk_start)?;
        buf.truncate(n);
        if Sha256::digest(&buf).as_slice() != expected {
            self.changed.store(true, Ordering::Relaxed);
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "changed on disk since it was verified",
            ));
        }
        let from = (start - chunk_start) as usize;
        let to = (end - chunk_start) as usize;
        Ok(Bytes::from(buf).slice(from..to))
    }

    pub fn is_changed(&self) -> bool {
        self.changed.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    #[test]
    fn refuses_symlinks_anywhere_on_the_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        std::fs::write(dir.path().join("real/f"), "x").unwrap();
        std::os::unix::fs::symlink("real", dir.path().join("link")).unwrap();
        std::os::unix::fs::symlink("f", dir.path().join("real/g")).unwrap();
        let root = open_dir(dir.path()).unwrap();
        assert!(open_beneath(&root, "real/f").is_ok());
        let err = open_beneath(&root, "link/f").unwrap_err().to_string();
        assert!(err.contains("link is"), "{err}");
        let err = open_beneath(&root, "real/g").unwrap_err().to_string();
        assert!(err.contains("g is a symlink"), "{err}");
        let err = open_beneath(&root, "real").unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
    }

    #[test]
    fn a_large_file_rewritten_in_place_is_refused_chunk_by_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..(IN_MEMORY_MAX + 3 * CHUNK / 2))
            .map(|i| (i % 253) as u8)
            .collect();
        std::fs::write(dir.path().join("big"), &data).unwrap();
        let root = open_dir(dir.path()).unwrap();
        let verified = verify_one(&root, "big", &digest(&data), &mut 0).unwrap();
        let Data::File(file) = verified.data else {
            panic!("a large file past the budget must not be held in memory");
        };
        let last = file.chunk_sha256.len() - 1;
        let tail_start = last as u64 * CHUNK;
        let tail = file
            .read_checked(last, tail_start, data.len() as u64)
            .unwrap();
        assert_eq!(&tail[..], &data[tail_start as usize..]);

        // Same inode, one byte changed in chunk 1: chunk 0 still serves, chunk 1 is refused.
        let writer = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join("big"))
            .unwrap();
        writer.write_at(&[0xff], CHUNK + 5).unwrap();
        assert!(file.read_checked(0, 0, 10).is_ok());
        let err = file.read_checked(1, CHUNK, CHUNK + 10).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(file.is_changed());
    }

    #[test]
    fn small_files_are_kept_as_checked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s"), "hello").unwrap();
        let root = open_dir(dir.path()).unwrap();
        let verified = verify_one(&root, "s", &digest(b"hello"), &mut 0).unwrap();
        std::fs::write(dir.path().join("s"), "HELLO").unwrap();
        match verified.data {
            Data::Memory(bytes) => assert_eq!(&bytes[..], b"hello"),
            Data::File(_) => panic!("a small file must be held in memory"),
        }
        let err = verify_one(&root, "s", &digest(b"hello"), &mut 0)
            .err()
            .unwrap();
        assert!(err.contains("s has sha256"), "{err}");
    }

    #[test]
    fn large_files_within_the_budget_are_kept_as_checked_and_use_it_up() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..(IN_MEMORY_MAX + CHUNK + 7))
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(dir.path().join("a"), &data).unwrap();
        std::fs::write(dir.path().join("b"), &data).unwrap();
        let root = open_dir(dir.path()).unwrap();
        let len = data.len() as u64;
        let mut budget = len + len / 2;
        let a = verify_one(&root, "a", &digest(&data), &mut budget).unwrap();
        assert_eq!(budget, len / 2);
        // The budget left is too small for b: it is served chunk by chunk.
        let b = verify_one(&root, "b", &digest(&data), &mut budget).unwrap();
        assert!(matches!(b.data, Data::File(_)));
        assert_eq!(budget, len / 2);
        // a rewritten in place: what is served is still what was checked.
        std::fs::write(dir.path().join("a"), vec![0u8; data.len()]).unwrap();
        match a.data {
            Data::Memory(bytes) => assert!(bytes[..] == data[..]),
            Data::File(_) => panic!("a fits the budget: it must be held in memory"),
        }
    }
}
