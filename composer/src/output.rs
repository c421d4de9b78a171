//! Writes a composed [`Bundle`] to disk all or nothing: into a temporary directory next to the
//! destination (same filesystem), made durable with one `syncfs` (a thousand per-file fsyncs
//! took seconds), then renamed into place. An
//! existing output is renamed away first and deleted only once the new one is in place, so a
//! reader sees the old bundle or the new one, never a mix, and a failure leaves the old one.
//! Files copied from disk (iPXE assets) are streamed and checked against the sha256 that
//! `SHA256SUMS` already lists, so a file changed since composing fails the write.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::compose::Composition;
use crate::platform::{Bundle, CopiedFile, SHA256SUMS};

/// A temporary directory in `parent`, so renames into and out of the destination stay on one
/// filesystem (and so are atomic).
fn sibling_tempdir(parent: &Path, prefix: &str) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(parent)
        .with_context(|| {
            format!(
                "failed to create a temporary directory in {}",
                parent.display()
            )
        })
}

/// Writes `bundle` to `dest`, replacing a previous molten output there.
pub fn write_bundle(bundle: &Bundle, dest: &Path) -> Result<()> {
    let name = dest
        .file_name()
        .with_context(|| format!("output path {} has no directory name", dest.display()))?
        .to_string_lossy()
        .into_owned();
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    check_replaceable(dest)?;
    fs::create_dir_all(&parent)
        .with_context(|| format!("failed to create {}", parent.display()))?;

    let staging = sibling_tempdir(&parent, &format!(".{name}.new-"))?;
    write_tree(bundle, staging.path())?;
    fs::set_permissions(staging.path(), fs::Permissions::from_mode(0o755))
        .with_context(|| format!("failed to set the mode of {}", staging.path().display()))?;
    sync_filesystem(staging.path())?;

    let old = if dest.exists() {
        let holder = sibling_tempdir(&parent, &format!(".{name}.old-"))?;
        let old = holder.path().join(&name);
        fs::rename(dest, &old).with_context(|| {
            format!(
                "failed to move the previous output {} aside",
                dest.display()
            )
        })?;
        Some((holder, old))
    } else {
        None
    };
    if let Err(err) = fs::rename(staging.path(), dest) {
        if let Some((_, old)) = &old {
            // Put the previous output back; the error below is what the user needs to see.
            let _ = fs::rename(old, dest);
        }
        return Err(err)
            .with_context(|| format!("failed to move the output into {}", dest.display()));
    }
    // The staging directory now is `dest`: nothing left to clean up there.
    let _ = staging.keep();
    sync_dir(&parent)?;
    if let Some((holder, _)) = old {
        let path = holder.path().to_path_buf();
        holder.close().with_context(|| {
            format!("failed to delete the previous output in {}", path.display())
        })?;
    }
    Ok(())
}

/// Refuses to replace anything that is not a directory molten wrote (it has `SHA256SUMS`) or an
/// empty directory: `--out ~` must never delete a home directory.
fn check_replaceable(dest: &Path) -> Result<()> {
    let meta = match fs::symlink_metadata(dest) {
        Ok(meta) => meta,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err).with_context(|| format!("cannot inspect {}", dest.display())),
    };
    if !meta.is_dir() {
        bail!("{} exists and is not a directory", dest.display());
    }
    let empty = fs::read_dir(dest)
        .with_context(|| format!("cannot read {}", dest.display()))?
        .next()
        .is_none();
    if !empty && !dest.join(SHA256SUMS).is_file() {
        bail!(
            "refusing to replace {}: it is not empty and has no {SHA256SUMS}, so molten did not \
             write it",
            dest.display()
        );
    }
    Ok(())
}

fn write_tree(bundle: &Bundle, root: &Path) -> Result<()> {
    let mut dirs = std::collections::BTreeSet::new();
    let mut create = |rel: &str| -> Result<(PathBuf, fs::File)> {
        let path = root.join(rel);
        let dir = path
            .parent()
            .expect("bundle paths are relative")
            .to_path_buf();
        if dirs.insert(dir.clone()) {
            fs::create_dir_all(&dir)
                .with_context(|| format!("failed to create {}", dir.display()))?;
        }
        let out = fs::File::create(&path)
            .with_context(|| format!("failed to create {}", path.display()))?;
        Ok((path, out))
    };
    for (rel, file) in bundle.files() {
        let (path, mut out) = create(rel)?;
        out.write_all(&file.contents)
            .with_context(|| format!("failed to write {}", path.display()))?;
        set_mode(&out, &path, file.mode)?;
    }
    for (rel, file) in bundle.copies() {
        let (path, mut out) = create(rel)?;
        copy_checked(file, &mut out, &path)?;
        set_mode(&out, &path, file.mode)?;
    }
    Ok(())
}

fn set_mode(file: &fs::File, path: &Path, mode: u32) -> Result<()> {
    file.set_permissions(fs::Permissions::from_mode(mode))
        .with_context(|| format!("failed to set the mode of {}", path.display()))
}

/// Streams `file.source` into `out` (never whole in memory, whatever its size) and checks that it
/// still has the sha256 the bundle's `SHA256SUMS` lists.
fn copy_checked(file: &CopiedFile, out: &mut fs::File, dest: &Path) -> Result<()> {
    let mut source = fs::File::open(&file.source)
        .with_context(|| format!("cannot read {}", file.source.display()))?;
    let (found, _) = crate::digest::copy_sha256(&mut source, out).with_context(|| {
        format!(
            "cannot copy {} to {}",
            file.source.display(),
            dest.display()
        )
    })?;
    if found != file.sha256 {
        bail!(
            "{} changed while composing (sha256 {found}, {SHA256SUMS} lists {}): compose again",
            file.source.display(),
            file.sha256
        );
    }
    Ok(())
}

/// Flushes every file and directory written under `dir` (the whole filesystem, in one call),
/// so the rename that follows never exposes a bundle whose contents are not on disk.
fn sync_filesystem(dir: &Path) -> Result<()> {
    let handle =
        fs::File::open(dir).with_context(|| format!("failed to open {}", dir.display()))?;
    rustix::fs::syncfs(&handle)
        .with_context(|| format!("failed to sync the filesystem of {}", dir.display()))
}

fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("failed to sync directory {}", dir.display()))
}

/// What `molten compose` reports after writing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub nodes: usize,
    pub files: usize,
    pub bytes: u64,
    /// Bytes of the nodes' full Ignition: smallest, largest, mean (rounded down).
    pub ignition_min: usize,
    pub ignition_max: usize,
    pub ignition_avg: usize,
}

impl Summary {
    pub fn of(composition: &Composition) -> Self {
        let sizes: Vec<usize> = composition.ignition_sizes.iter().map(|(_, s)| *s).collect();
        let total: usize = sizes.iter().sum();
        Summary {
            nodes: sizes.len(),
            files: composition.bundle.len(),
            bytes: composition.bundle.total_bytes(),
            ignition_min: sizes.iter().copied().min().unwrap_or(0),
            ignition_max: sizes.iter().copied().max().unwrap_or(0),
            ignition_avg: total.checked_div(sizes.len()).unwrap_or(0),
        }
    }

    /// The lines printed after a successful compose.
    pub fn render(&self, platform: &str, dest: &Path) -> String {
        format!(
            "composed {nodes} nodes for {platform}: {files} files, {bytes} bytes in {dest}\n\
             Ignition per node: min {min} B, max {max} B, avg {avg} B\n",
            nodes = self.nodes,
            files = self.files,
            bytes = self.bytes,
            dest = dest.display(),
            min = self.ignition_min,
            max = self.ignition_max,
            avg = self.ignition_avg,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(text: &str) -> Bundle {
        let mut b = Bundle::default();
        b.add("a/b.txt", text.as_bytes().to_vec(), 0o644).unwrap();
        b.add("run", b"x".to_vec(), 0o755).unwrap();
        b.add_sha256sums().unwrap();
        b
    }

    #[test]
    fn writes_then_replaces_a_previous_output() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out/vagrant");
        write_bundle(&bundle("one"), &dest).unwrap();
        assert_eq!(fs::read_to_string(dest.join("a/b.txt")).unwrap(), "one");
        let mode = fs::metadata(dest.join("run")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        fs::write(dest.join("stale"), "left over").unwrap();

        write_bundle(&bundle("two"), &dest).unwrap();
        assert_eq!(fs::read_to_string(dest.join("a/b.txt")).unwrap(), "two");
        assert!(!dest.join("stale").exists());
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("out"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, ["vagrant"]);
    }

    #[test]
    fn copies_are_streamed_and_a_changed_source_leaves_no_output() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("initrd");
        let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        fs::write(&source, &bytes).unwrap();
        let mut b = Bundle::default();
        b.add_copy("assets/initrd", &source, 0o644).unwrap();
        b.add_sha256sums().unwrap();
        let dest = dir.path().join("out");
        write_bundle(&b, &dest).unwrap();
        assert!(fs::read(dest.join("assets/initrd")).unwrap() == bytes);
        let mode = fs::metadata(dest.join("assets/initrd"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);

        fs::write(&source, b"rebuilt since").unwrap();
        let other = dir.path().join("other");
        let err = write_bundle(&b, &other).unwrap_err();
        assert!(
            err.to_string().contains("changed while composing"),
            "{err:#}"
        );
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(!names.iter().any(|n| n.contains("other")), "{names:?}");
    }

    #[test]
    fn refuses_to_replace_a_directory_molten_did_not_write() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("precious"), "keep me").unwrap();
        let err = write_bundle(&bundle("x"), dir.path()).unwrap_err();
        assert!(err.to_string().contains("refusing to replace"), "{err}");
        assert_eq!(
            fs::read_to_string(dir.path().join("precious")).unwrap(),
            "keep me"
        );
    }
}
