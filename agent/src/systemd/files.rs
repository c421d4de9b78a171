//! Writing drop-ins without ever leaving a half-written unit, and finding the ones we own.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::render::{is_owned, DROPIN_NAME};

/// Unit files are world-readable configuration, not secrets.
const UNIT_MODE: u32 = 0o644;

/// Writes `content` to `path` unless it already holds exactly that. Returns whether the file
/// changed. The write is atomic: temp file in the same directory, mode, fsync, rename, then
/// fsync of the directory so the rename itself survives a crash.
pub fn write_if_changed(path: &Path, content: &str) -> anyhow::Result<bool> {
    match fs::read(path) {
        Ok(existing) if existing == content.as_bytes() => {
            fix_mode(path)?;
            return Ok(false);
        }
        Ok(_) => {}
        Err(err) if err.kind() == ErrorKind::NotFound => {}
        Err(err) => return Err(err).with_context(|| format!("failed to read {path:?}")),
    }
    crate::fs::write_atomic(path, content.as_bytes(), UNIT_MODE)?;
    Ok(true)
}

/// An operator's chmod should not count as a configuration change, but the mode is ours.
fn fix_mode(path: &Path) -> anyhow::Result<()> {
    let meta = fs::metadata(path).with_context(|| format!("failed to stat {path:?}"))?;
    if meta.permissions().mode() & 0o7777 != UNIT_MODE {
        fs::set_permissions(path, fs::Permissions::from_mode(UNIT_MODE))
            .with_context(|| format!("failed to set the mode of {path:?}"))?;
    }
    Ok(())
}

/// Every drop-in under `unit_dir` that this agent wrote: `<unit>.d/50-mc.conf` starting with
/// our header. A file of that name without the header belongs to someone else.
pub fn owned_dropins(unit_dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(unit_dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err).with_context(|| format!("failed to list {unit_dir:?}")),
    };
    let mut owned = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("failed to list {unit_dir:?}"))?;
        if !entry.file_name().to_string_lossy().ends_with(".d") {
            continue;
        }
        let candidate = entry.path().join(DROPIN_NAME);
        match fs::read_to_string(&candidate) {
            Ok(content) if is_owned(&content) => owned.push(candidate),
            Ok(_) => {}
            Err(err) if matches!(err.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {}
            Err(err) => {
                return Err(err).with_context(|| format!("failed to read {candidate:?}"));
            }
        }
    }
    owned.sort();
    Ok(owned)
}

/// Removes a drop-in we own, and its directory when that leaves it empty.
pub fn remove_dropin(path: &Path) -> anyhow::Result<()> {
    fs::remove_file(path).with_context(|| format!("failed to remove {path:?}"))?;
    if let Some(dir) = path.parent() {
        // Only succeeds when empty; a directory with other drop-ins stays.
        if fs::remove_dir(dir).is_ok() {
            if let Some(parent) = dir.parent() {
                crate::fs::sync_dir(parent)?;
            }
        } else {
            crate::fs::sync_dir(dir)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::systemd::render::HEADER;

    #[test]
    fn writes_once_then_leaves_the_file_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.service.d").join(DROPIN_NAME);
        assert!(write_if_changed(&path, "x\n").unwrap());
        let inode = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&path).unwrap());
        assert!(!write_if_changed(&path, "x\n").unwrap());
        let again = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&path).unwrap());
        assert_eq!(inode, again, "an unchanged file must not be replaced");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o644
        );
        assert!(write_if_changed(&path, "y\n").unwrap());
        assert_eq!(fs::read_to_string(&path).unwrap(), "y\n");
        // No temporary files left behind.
        let names: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn a_wrong_mode_is_fixed_without_counting_as_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DROPIN_NAME);
        write_if_changed(&path, "x\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(!write_if_changed(&path, "x\n").unwrap());
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o644
        );
    }

    #[test]
    fn only_headed_dropins_are_ours() {
        let dir = tempfile::tempdir().unwrap();
        let ours = dir.path().join("docker.socket.d").join(DROPIN_NAME);
        let theirs = dir.path().join("etcd.service.d").join(DROPIN_NAME);
        let other_name = dir.path().join("flanneld.service.d").join("10-molten.conf");
        write_if_changed(&ours, &format!("{HEADER}\n[Socket]\n")).unwrap();
        write_if_changed(&theirs, "[Service]\n").unwrap();
        write_if_changed(&other_name, &format!("{HEADER}\n")).unwrap();
        fs::write(dir.path().join("plain.service"), "[Unit]\n").unwrap();
        assert_eq!(owned_dropins(dir.path()).unwrap(), vec![ours.clone()]);

        remove_dropin(&ours).unwrap();
        assert!(
            !ours.parent().unwrap().exists(),
            "empty drop-in dir is removed"
        );
        assert!(owned_dropins(dir.path()).unwrap().is_empty());
        assert!(owned_dropins(&dir.path().join("missing"))
            .unwrap()
            .is_empty());
    }
}
