//! The authority directory on disk: its permission rules, atomic writes of secret files, and the
//! lock that serialises every read-modify-write of `enrollment.json`.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Mode bits for group and others: none may be set on the directory or anything in it.
const GROUP_OR_WORLD: u32 = 0o077;

/// Refuses a directory (and every entry in it) that group or others can access, that is not a
/// directory, or that the current user does not own.
pub fn check_private_dir(dir: &Path) -> Result<()> {
    let meta = fs::symlink_metadata(dir)
        .with_context(|| format!("cannot read the authority directory {}", dir.display()))?;
    if !meta.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    check_owner_and_mode(dir, &meta)?;
    for entry in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let path = entry.path();
        let meta = fs::symlink_metadata(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        check_owner_and_mode(&path, &meta)?;
    }
    Ok(())
}

fn check_owner_and_mode(path: &Path, meta: &fs::Metadata) -> Result<()> {
    let mode = meta.mode() & 0o7777;
    if mode & GROUP_OR_WORLD != 0 {
        bail!(
            "{} has mode {mode:04o}: the authority holds CA keys, so group and others must have \
             no access (chmod -R go= {})",
            path.display(),
            path.display()
        );
    }
    let uid = rustix::process::geteuid().as_raw();
    if meta.uid() != uid {
        bail!(
            "{} belongs to uid {}, not to the user running molten (uid {uid})",
            path.display(),
            meta.uid()
        );
    }
    Ok(())
}

/// Creates `dir` with mode 0700; refuses an existing non-empty one (never overwrite an authority).
pub fn create_private_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        let mut entries =
            fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
        if entries.next().is_some() {
            bail!(
                "{} already exists and is not empty: refusing to overwrite an authority",
                dir.display()
            );
        }
    } else {
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true).mode(0o700);
        builder
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot set the mode of {}", dir.display()))
}

/// Writes `contents` to `path` with mode 0600 so that a reader sees the old file or the new one:
/// a temporary file in the same directory, fsynced, renamed over `path`, the directory fsynced.
pub fn write_private_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let dir = parent_of(path);
    let mut temp = tempfile::Builder::new()
        .prefix(".molten-")
        .permissions(fs::Permissions::from_mode(0o600))
        .tempfile_in(&dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    temp.write_all(contents)
        .and_then(|()| temp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    temp.persist(path)
        .map_err(|err| err.error)
        .with_context(|| format!("cannot move the new {} into place", path.display()))?;
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync {}", dir.display()))
}

/// Creates a new file with mode 0600 and `contents`; refuses to replace an existing one.
pub fn create_private_file(path: &Path, contents: &[u8]) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// An exclusive `flock` on a lock file, released when dropped. Every process that changes
/// `enrollment.json` (compose, every `molten serve` on this authority) holds it for the whole
/// read-modify-write, so a token is marked used exactly once.
pub struct DirLock {
    _file: File,
}

impl DirLock {
    pub fn acquire(path: &Path) -> Result<DirLock> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("cannot open the lock {}", path.display()))?;
        loop {
            let Err(errno) = rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            else {
                return Ok(DirLock { _file: file });
            };
            let err = std::io::Error::from(errno);
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(err).with_context(|| format!("cannot lock {}", path.display()));
            }
        }
    }
}

/// Whether `inner` is `outer` or lies below it, comparing canonical paths (so `..` and symlinks
/// cannot hide it). A path that does not exist yet is compared through its nearest existing
/// ancestor.
pub fn is_within(inner: &Path, outer: &Path) -> bool {
    match (canonical_or_nearest(inner), canonical_or_nearest(outer)) {
        (Some(inner), Some(outer)) => inner.starts_with(outer),
        _ => false,
    }
}

fn canonical_or_nearest(path: &Path) -> Option<PathBuf> {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().ok()?.join(path)
    };
    // `..` is resolved by name first: a missing directory before it cannot be canonicalized.
    let mut absolute = PathBuf::new();
    for part in joined.components() {
        match part {
            std::path::Component::ParentDir => {
                absolute.pop();
            }
            std::path::Component::CurDir => {}
            other => absolute.push(other),
        }
    }
    let mut missing = Vec::new();
    let mut cursor = absolute.as_path();
    loop {
        if let Ok(found) = cursor.canonicalize() {
            let mut result = found;
            for part in missing.iter().rev() {
                result.push(part);
            }
            return Some(result);
        }
        missing.push(cursor.file_name()?.to_os_string());
        cursor = cursor.parent()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_dir_rules() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a.authority");
        create_private_dir(&dir).unwrap();
        check_private_dir(&dir).unwrap();
        write_private_atomic(&dir.join("k"), b"secret").unwrap();
        let mode = fs::metadata(dir.join("k")).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        check_private_dir(&dir).unwrap();

        fs::set_permissions(dir.join("k"), fs::Permissions::from_mode(0o640)).unwrap();
        let err = check_private_dir(&dir).unwrap_err().to_string();
        assert!(err.contains("has mode 0640"), "{err}");
        fs::set_permissions(dir.join("k"), fs::Permissions::from_mode(0o600)).unwrap();

        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let err = check_private_dir(&dir).unwrap_err().to_string();
        assert!(err.contains("has mode 0755"), "{err}");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();

        let err = create_private_dir(&dir).unwrap_err().to_string();
        assert!(err.contains("refusing to overwrite"), "{err}");
        let err = create_private_file(&dir.join("k"), b"x").unwrap_err();
        assert!(format!("{err:#}").contains("File exists"), "{err:#}");
    }

    #[test]
    fn atomic_write_replaces_whole_files() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("state.json");
        write_private_atomic(&path, b"one").unwrap();
        write_private_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let leftovers: Vec<_> = fs::read_dir(tmp.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
    }

    #[test]
    fn within_sees_through_dots_and_missing_tails() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        fs::create_dir(&out).unwrap();
        assert!(is_within(&out.join("x.authority"), &out));
        assert!(is_within(&out.join("a/../b"), &out));
        assert!(!is_within(&tmp.path().join("x.authority"), &out));
        assert!(is_within(&out, &out));
    }
}
