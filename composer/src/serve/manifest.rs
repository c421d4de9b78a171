//! The bundle's `SHA256SUMS`: which files `molten serve` may serve, and the check that they are
//! still the files the composer wrote.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The manifest's file name, at the bundle's root.
pub const MANIFEST_NAME: &str = "SHA256SUMS";
/// The health check's path (without the leading `/`); a bundle cannot list a file there.
pub const HEALTH_PATH: &str = "healthz";

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {reason}")]
    Syntax {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{path} lists no files")]
    Empty { path: PathBuf },
    #[error("refusing to serve: {} file(s) no longer match {MANIFEST_NAME}: {}", .problems.len(), .problems.join("; "))]
    Mismatch { problems: Vec<String> },
}

/// One listed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path relative to the bundle, `/`-separated, as listed (and as requested, after the `/`).
    pub rel: String,
    /// Lowercase hex sha256 the manifest records.
    pub sha256: String,
    /// Where the file is on disk.
    pub path: PathBuf,
}

/// The parsed manifest of one bundle directory.
#[derive(Debug, Clone)]
pub struct Manifest {
    entries: BTreeMap<String, Entry>,
}

impl Manifest {
    /// Reads `<dir>/SHA256SUMS` (lines `<sha256 hex>  <relative path>`, as `sha256sum` writes
    /// them). Every path must stay inside `dir`.
    pub fn load(dir: &Path) -> Result<Manifest, ManifestError> {
        Self::load_with_bytes(dir).map(|(manifest, _)| manifest)
    }

    /// [`Manifest::load`], also returning the manifest's bytes as read (served as they were
    /// parsed). The manifest itself must not be a symlink either.
    pub fn load_with_bytes(dir: &Path) -> Result<(Manifest, Vec<u8>), ManifestError> {
        let path = dir.join(MANIFEST_NAME);
        let read_error = |source| ManifestError::Read {
            path: path.clone(),
            source,
        };
        let bytes = super::beneath::read_beneath(dir, MANIFEST_NAME).map_err(read_error)?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|err| read_error(std::io::Error::new(std::io::ErrorKind::InvalidData, err)))?;
        let mut entries = BTreeMap::new();
        for (index, line) in text.lines().enumerate() {
            let syntax = |reason: String| ManifestError::Syntax {
                path: path.clone(),
                line: index + 1,
                reason,
            };
            if line.trim().is_empty() {
                continue;
            }
            let (sha256, rel) = parse_line(line).map_err(syntax)?;
            if rel == MANIFEST_NAME {
                return Err(syntax(format!("{MANIFEST_NAME} cannot list itself")));
            }
            if rel == HEALTH_PATH {
                return Err(syntax(format!(
                    "{HEALTH_PATH} is reserved for the health check"
                )));
            }
            let entry = Entry {
                path: dir.join(&rel),
                rel: rel.clone(),
                sha256,
            };
            if entries.insert(rel.clone(), entry).is_some() {
                return Err(syntax(format!("{rel:?} is listed twice")));
            }
        }
        if entries.is_empty() {
            return Err(ManifestError::Empty { path });
        }
        Ok((Manifest { entries }, bytes))
    }

    pub fn get(&self, rel: &str) -> Option<&Entry> {
        self.entries.get(rel)
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Splits `<64 hex><two spaces or " *"><path>` and checks the path.
fn parse_line(line: &str) -> Result<(String, String), String> {
    let (hash, rest) = line
        .split_at_checked(64)
        .ok_or_else(|| format!("expected `<sha256 hex>  <path>`, found {line:?}"))?;
    if !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{hash:?} is not a sha256 hex digest"));
    }
    let rel = rest
        .strip_prefix("  ")
        .or_else(|| rest.strip_prefix(" *"))
        .ok_or_else(|| format!("expected two spaces after the digest in {line:?}"))?;
    check_relative_path(rel)?;
    Ok((hash.to_ascii_lowercase(), rel.to_string()))
}

/// A listed path must be plain: relative, no `.`/`..`/empty components, and only characters that
/// need no escaping in a URL, so a request path can be compared with it byte for byte.
fn check_relative_path(rel: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._-+~@,=:".contains(c);
    if let Some(bad) = rel.chars().find(|&c| c != '/' && !allowed(c)) {
        return Err(format!(
            "path {rel:?} contains {bad:?} (allowed: letters, digits, ._-+~@,=: and /)"
        ));
    }
    for component in rel.split('/') {
        if component.is_empty() || component == "." || component == ".." {
            return Err(format!(
                "path {rel:?} must be relative, without empty, `.` or `..` components"
            ));
        }
    }
    Ok(())
}

/// Lowercase hex sha256 of a file's contents, streamed.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    crate::digest::sha256_file(path).map(|(sum, _)| sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn accepts_sha256sum_lines() {
        assert_eq!(
            parse_line(&format!("{HASH}  nodes/52-54-00-12-34-56.ipxe")).unwrap(),
            (HASH.to_string(), "nodes/52-54-00-12-34-56.ipxe".to_string())
        );
        assert_eq!(
            parse_line(&format!("{}  boot.ipxe", HASH.to_uppercase()))
                .unwrap()
                .0,
            HASH
        );
        assert_eq!(
            parse_line(&format!("{HASH} *assets/mc")).unwrap().1,
            "assets/mc"
        );
    }

    #[test]
    fn rejects_paths_leaving_the_bundle() {
        for bad in [
            "../etc/passwd",
            "/etc/passwd",
            "a/../../b",
            "a//b",
            "./a",
            "a b",
            "a\\b",
            "a%2e",
        ] {
            let err = parse_line(&format!("{HASH}  {bad}")).unwrap_err();
            assert!(err.contains("path"), "{bad}: {err}");
        }
    }

    #[test]
    fn rejects_malformed_lines() {
        for bad in [
            "boot.ipxe",
            &format!("{HASH} boot.ipxe"),
            &format!("{}  boot.ipxe", &HASH[..63]),
        ] {
            assert!(parse_line(bad).is_err(), "{bad}");
        }
        let not_hex = format!("{}g  boot.ipxe", &HASH[..63]);
        assert!(parse_line(&not_hex).unwrap_err().contains("not a sha256"));
    }
}
