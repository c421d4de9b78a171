//! File writes the agent can repeat at every boot: atomic (a reader never sees half a file) and
//! only when the content differs (a second converge touches nothing).

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Private keys: owner read/write only.
pub const MODE_SECRET: u32 = 0o600;
/// Certificates, units, configs.
pub const MODE_PUBLIC: u32 = 0o644;

/// Writes `content` to `path` atomically with `mode`: a temp file in the same directory, given its
/// mode before any byte is written, synced, then renamed over the target. Creates parent dirs.
pub fn write_atomic(path: &Path, content: &[u8], mode: u32) -> Result<()> {
    let dir = path
        .parent()
        .with_context(|| format!("{} has no parent directory", path.display()))?;
    fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".mc-")
        .tempfile_in(dir)
        .with_context(|| format!("failed to create a temp file in {}", dir.display()))?;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))
        .with_context(|| format!("failed to set the mode of a temp file in {}", dir.display()))?;
    tmp.write_all(content)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("failed to write a temp file for {}", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("failed to rename a temp file to {}", path.display()))?;
    // The rename is durable once the directory entry is.
    sync_dir(dir)
}

/// fsyncs a directory, so a rename or removal in it survives a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("failed to sync directory {}", dir.display()))
}

/// Writes `path` only if its content or mode differs. Returns whether it wrote.
pub fn write_if_changed(path: &Path, content: &[u8], mode: u32) -> Result<bool> {
    if let Ok(meta) = fs::metadata(path) {
        let same_mode = meta.permissions().mode() & 0o7777 == mode;
        if same_mode && meta.len() == content.len() as u64 {
            let current =
                fs::read(path).with_context(|| format!("failed to read {}", path.display()))?;
            if current == content {
                return Ok(false);
            }
        }
    }
    write_atomic(path, content, mode)?;
    Ok(true)
}

/// `path` (absolute, as seen on the node) under `root` (`/` on a real node).
pub fn under_root(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn writes_with_mode_and_only_when_changed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/key.pem");
        assert!(write_if_changed(&path, b"one", MODE_SECRET).unwrap());
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let inode = meta.ino();

        assert!(!write_if_changed(&path, b"one", MODE_SECRET).unwrap());
        assert_eq!(fs::metadata(&path).unwrap().ino(), inode);

        assert!(write_if_changed(&path, b"two", MODE_SECRET).unwrap());
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_ne!(
            fs::metadata(&path).unwrap().ino(),
            inode,
            "replaced by rename"
        );
    }

    #[test]
    fn a_wrong_mode_is_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        fs::write(&path, b"k").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(write_if_changed(&path, b"k", MODE_SECRET).unwrap());
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn no_temp_files_are_left_behind() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(&dir.path().join("f"), b"x", MODE_PUBLIC).unwrap();
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("f")]);
    }

    #[test]
    fn paths_are_rooted() {
        assert_eq!(
            under_root(Path::new("/tmp/r"), "/etc/molten/tls"),
            PathBuf::from("/tmp/r/etc/molten/tls")
        );
        assert_eq!(
            under_root(Path::new("/"), "/etc/x"),
            PathBuf::from("/etc/x")
        );
    }
}
