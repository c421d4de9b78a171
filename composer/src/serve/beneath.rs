//! Opening a bundle's files without following a symlink anywhere on the path: shared by the
//! manifest reader and the content check, so both read the bundle the same way.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::fs::{openat, Mode, OFlags};
use rustix::io::Errno;

/// Opens `dir`, which must be a directory.
pub fn open_dir(dir: &Path) -> io::Result<File> {
    let file = File::open(dir)?;
    if !file.metadata()?.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a directory",
        ));
    }
    Ok(file)
}

/// Opens `rel` (`/`-separated, already checked to have no `.`/`..`/empty component) beneath
/// `root`, one component at a time with `O_NOFOLLOW`, so no symlink on the way is followed even if
/// the tree changes meanwhile. The result must be a regular file (a FIFO is opened non-blocking so
/// it cannot hang the check).
pub fn open_beneath(root: &File, rel: &str) -> io::Result<File> {
    let components: Vec<&str> = rel.split('/').collect();
    let mut current: Option<OwnedFd> = None;
    for (index, component) in components.iter().enumerate() {
        let last = index + 1 == components.len();
        let flags = OFlags::RDONLY
            | OFlags::NOFOLLOW
            | OFlags::CLOEXEC
            | if last {
                OFlags::NONBLOCK
            } else {
                OFlags::DIRECTORY
            };
        let opened = match &current {
            Some(dir) => openat(dir.as_fd(), *component, flags, Mode::empty()),
            None => openat(root.as_fd(), *component, flags, Mode::empty()),
        };
        current = Some(opened.map_err(|errno| match errno {
            Errno::LOOP => io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{component} is a symlink (refused)"),
            ),
            Errno::NOTDIR if !last => io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{component} is not a directory (a symlink is refused)"),
            ),
            other => io::Error::from(other),
        })?);
    }
    let file = File::from(
        current.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty path"))?,
    );
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(file)
}

/// Reads `<dir>/<name>` the same way the bundle's files are read: no symlink, a regular file.
pub fn read_beneath(dir: &Path, name: &str) -> io::Result<Vec<u8>> {
    let root = open_dir(dir)?;
    let file = open_beneath(&root, name)?;
    let mut bytes = Vec::new();
    io::Read::read_to_end(&mut &file, &mut bytes)?;
    Ok(bytes)
}
