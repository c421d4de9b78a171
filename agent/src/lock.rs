//! One `mc` at a time changes a node: `mc.service`, the converge timer and an operator's run
//! would otherwise write the same drop-ins and reload systemd concurrently. The lock is an
//! `flock` on a file under `/run/molten` (gone at reboot, like any process that held it); the
//! kernel drops it when the holder exits, even on a crash, so a lock is never left stale.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// Where the lock file is on a node.
pub const LOCK_PATH: &str = "/run/molten/mc.lock";

/// `mc etcd-join`'s own lock: one join at a time. Not [`LOCK_PATH`]: the join runs before etcd
/// starts, and a converge holding the node lock restarts etcd (renewed certificates) and waits
/// for it, so a join waiting for the node lock would hold that restart until the wait ran out.
pub const JOIN_LOCK_PATH: &str = "/run/molten/etcd-join.lock";

/// How often a waiting `mc` tries the lock again.
const POLL: Duration = Duration::from_millis(100);

/// Another `mc` holds the lock for longer than we were willing to wait.
#[derive(Debug, thiserror::Error)]
#[error(
    "another mc ({holder}) is changing this node and holds {path}; waited {waited:.1}s. \
     Wait for it to finish (journalctl -u mc.service) or pass a longer --lock-wait"
)]
pub struct Busy {
    pub path: PathBuf,
    /// What the holder wrote into the lock file ("pid 123: mc converge"), or "unknown".
    pub holder: String,
    pub waited: f64,
}

/// The held lock; released when dropped (or when the process exits).
#[derive(Debug)]
pub struct NodeLock {
    _file: File,
    path: PathBuf,
}

impl NodeLock {
    /// Takes the exclusive lock at `path`, waiting up to `wait` for a holder to finish. `what`
    /// (e.g. "mc converge") is recorded with our PID so a waiting run can name the holder.
    pub fn acquire(path: &Path, what: &str, wait: Duration) -> Result<Self> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)
                .with_context(|| format!("failed to create {}", dir.display()))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(path)
            .with_context(|| format!("failed to open the lock file {}", path.display()))?;
        let started = Instant::now();
        loop {
            match try_flock(&file) {
                Ok(true) => break,
                Ok(false) => {}
                Err(err) => {
                    return Err(err).with_context(|| format!("failed to lock {}", path.display()))
                }
            }
            if started.elapsed() >= wait {
                return Err(Busy {
                    path: path.to_path_buf(),
                    holder: holder(&mut file),
                    waited: started.elapsed().as_secs_f64(),
                }
                .into());
            }
            std::thread::sleep(POLL.min(wait.saturating_sub(started.elapsed())));
        }
        // Ours now: say who holds it, for the next one that waits.
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "pid {}: {what}", std::process::id()))
            .with_context(|| format!("failed to write {}", path.display()))?;
        Ok(Self {
            _file: file,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// `flock(LOCK_EX | LOCK_NB)`: Ok(false) when someone else holds it.
fn try_flock(file: &File) -> std::io::Result<bool> {
    let Err(errno) = rustix::fs::flock(file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
    else {
        return Ok(true);
    };
    let err = std::io::Error::from(errno);
    match err.kind() {
        ErrorKind::WouldBlock => Ok(false),
        ErrorKind::Interrupted => Ok(false),
        _ => Err(err),
    }
}

/// The holder's note, bounded and on one line (the file is ours, but keep a message sane).
fn holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.rewind();
    let _ = file.take(200).read_to_string(&mut text);
    let line = text.lines().next().unwrap_or("").trim();
    if line.is_empty() || line.chars().any(char::is_control) {
        "unknown".to_string()
    } else {
        line.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_waits_then_gives_up_naming_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/molten/mc.lock");
        let first = NodeLock::acquire(&path, "mc converge", Duration::ZERO).unwrap();
        assert_eq!(first.path(), path);
        let started = Instant::now();
        let err = NodeLock::acquire(&path, "mc converge", Duration::from_millis(300)).unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(300));
        let busy = err.downcast_ref::<Busy>().expect("a Busy error");
        let pid = format!("pid {}: mc converge", std::process::id());
        assert_eq!(busy.holder, pid);
        assert!(err.to_string().contains("another mc"), "{err}");
        drop(first);
        // Released on drop: the next one gets it at once.
        NodeLock::acquire(&path, "mc etcd snapshot", Duration::ZERO).unwrap();
    }

    #[test]
    fn a_waiter_gets_the_lock_when_the_holder_finishes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mc.lock");
        let first = NodeLock::acquire(&path, "first", Duration::ZERO).unwrap();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(first);
        });
        NodeLock::acquire(&path, "second", Duration::from_secs(5)).unwrap();
        releaser.join().unwrap();
        let note = fs::read_to_string(&path).unwrap();
        assert!(note.ends_with(": second\n"), "{note}");
    }
}
