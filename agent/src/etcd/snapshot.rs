//! etcd snapshots without etcdctl, and the restore that re-forms a cluster from one.
//!
//! A snapshot is etcd's maintenance stream (the member's whole bolt database) written to the
//! state dir. etcd ends the stream with the sha256 of everything before it; the file is kept only
//! when that hash matches, and is checked again before a restore. The newest `keep` snapshots
//! are kept. The restore itself is etcd's own (`etcdctl snapshot restore`, in Debian's
//! etcd-client 3.4 and in the etcd container image): it writes a new data dir holding only this
//! member; the other members then join it as learners (`mc etcd-join`).

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Etcd;

/// Where snapshots go on a node (the persistent state dir).
pub const SNAPSHOT_DIR: &str = "/var/lib/molten/etcd-snapshots";
/// How many snapshots are kept by default.
pub const DEFAULT_KEEP: usize = molten_contract::snapshots::DEFAULT_KEEP as usize;
const PREFIX: &str = "snapshot-";
const SUFFIX: &str = ".db";
/// The length of the sha256 etcd appends to the stream.
const HASH_LEN: usize = 32;

/// What a snapshot run produced; also published in etcd for `mc status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    pub node: String,
    /// RFC 3339, when the snapshot finished.
    pub taken: String,
    /// The file on the member's disk.
    pub file: String,
    pub bytes: u64,
    /// sha256 of the whole file (etcd's own hash included), hex.
    pub sha256: String,
    pub duration_ms: u64,
}

/// Streams a snapshot from the member the session talks to into `dir`, checks etcd's hash,
/// then removes all but the newest `keep` snapshots. Retried as a whole on transient failures.
pub async fn take(etcd: &mut Etcd, node: &str, dir: &Path, keep: usize) -> Result<SnapshotRecord> {
    anyhow::ensure!(keep >= 1, "--keep must be at least 1");
    fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
    let started = Instant::now();
    let dir_owned = dir.to_path_buf();
    let (tmp, bytes, sha256) = etcd
        .run("etcd snapshot", |mut client| {
            let dir = dir_owned.clone();
            async move {
                let mut stream = client.snapshot().await.context("etcd snapshot")?;
                let mut tmp = tempfile::Builder::new()
                    .prefix(".snapshot-")
                    .tempfile_in(&dir)
                    .with_context(|| {
                        format!("failed to create a temp file in {}", dir.display())
                    })?;
                let mut whole = Sha256::new();
                let mut bytes = 0u64;
                while let Some(message) = stream.message().await.context("etcd snapshot stream")? {
                    let blob = message.blob();
                    whole.update(blob);
                    bytes += blob.len() as u64;
                    tmp.write_all(blob)
                        .context("failed to write the snapshot")?;
                }
                tmp.as_file()
                    .sync_all()
                    .context("failed to sync the snapshot")?;
                Ok((tmp, bytes, hex::encode(whole.finalize())))
            }
        })
        .await?;
    verify(tmp.path()).context("the snapshot etcd sent is damaged")?;
    let now = crate::timestamp::now();
    let stamp = crate::timestamp::rfc3339(now).replace([':', '-'], "");
    let path = dir.join(format!("{PREFIX}{stamp}{SUFFIX}"));
    tmp.persist(&path)
        .with_context(|| format!("failed to rename the snapshot to {}", path.display()))?;
    fs::write(
        path.with_extension("db.sha256"),
        format!("{sha256}  {}\n", file_name(&path)),
    )
    .context("failed to write the snapshot's sha256 file")?;
    prune(dir, keep)?;
    Ok(SnapshotRecord {
        node: node.to_string(),
        taken: crate::timestamp::rfc3339(now),
        file: path.display().to_string(),
        bytes,
        sha256,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

/// Checks etcd's own hash: the last 32 bytes are the sha256 of everything before them.
pub fn verify(path: &Path) -> Result<()> {
    let mut file =
        fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let len = file.metadata()?.len();
    if len <= HASH_LEN as u64 {
        bail!(
            "{} is too short to be an etcd snapshot ({len} bytes)",
            path.display()
        );
    }
    let mut body = (&mut file).take(len - HASH_LEN as u64);
    let mut hasher = Sha256::new();
    std::io::copy(&mut body, &mut hasher)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut expected = [0u8; HASH_LEN];
    file.read_exact(&mut expected)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if hasher.finalize().as_slice() != expected {
        bail!(
            "{}: the sha256 etcd appended does not match the content (truncated or corrupted)",
            path.display()
        );
    }
    Ok(())
}

/// The snapshots in `dir`, oldest first (the names sort by time).
pub fn list(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("failed to list {}", dir.display())),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("failed to list {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with(PREFIX) && name.ends_with(SUFFIX) {
            found.push(entry.path());
        }
    }
    found.sort();
    Ok(found)
}

fn prune(dir: &Path, keep: usize) -> Result<()> {
    let all = list(dir)?;
    for old in all.iter().take(all.len().saturating_sub(keep)) {
        fs::remove_file(old).with_context(|| format!("failed to remove {}", old.display()))?;
        let _ = fs::remove_file(old.with_extension("db.sha256"));
        tracing::info!(file = %old.display(), "removed an old snapshot (retention)");
    }
    Ok(())
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default()
}

/// What a restore needs to know about the member it makes.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub snapshot: PathBuf,
    /// etcd's data dir for the restored member; must not hold a member yet.
    pub data_dir: PathBuf,
    pub name: String,
    pub peer_url: String,
    /// The `etcdctl` to run (3.4's `snapshot restore`).
    pub etcdctl: PathBuf,
}

/// Checks the snapshot, then lets etcd write a data dir holding it as a one-member cluster of
/// `name` at `peer_url`, with a new cluster token (the old cluster's members cannot talk to it by
/// mistake). Refuses a data dir that holds a member: move it aside first.
pub fn restore(options: &RestoreOptions) -> Result<Duration> {
    let started = Instant::now();
    verify(&options.snapshot)?;
    if options.data_dir.join("member").exists() {
        bail!(
            "{} holds a member already; stop etcd and move it aside first (its data may be the \
             last copy of something)",
            options.data_dir.join("member").display()
        );
    }
    let token = format!(
        "molten-restore-{}",
        crate::timestamp::now().unix_timestamp()
    );
    // etcdctl refuses an existing data dir (even one holding only moved-aside data): it writes
    // a fresh one next to it, whose member dir is then moved in.
    fs::create_dir_all(&options.data_dir)
        .with_context(|| format!("failed to create {}", options.data_dir.display()))?;
    let parent = options
        .data_dir
        .parent()
        .with_context(|| format!("{} has no parent", options.data_dir.display()))?;
    let scratch = tempfile::Builder::new()
        .prefix(".etcd-restore-")
        .tempdir_in(parent)
        .with_context(|| format!("failed to create a temp dir in {}", parent.display()))?;
    let fresh = scratch.path().join("data");
    let output = Command::new(&options.etcdctl)
        .env("ETCDCTL_API", "3")
        .arg("snapshot")
        .arg("restore")
        .arg(&options.snapshot)
        .arg(format!("--name={}", options.name))
        .arg(format!(
            "--initial-cluster={}={}",
            options.name, options.peer_url
        ))
        .arg(format!(
            "--initial-advertise-peer-urls={}",
            options.peer_url
        ))
        .arg(format!("--initial-cluster-token={token}"))
        .arg(format!("--data-dir={}", fresh.display()))
        .output()
        .with_context(|| format!("failed to run {}", options.etcdctl.display()))?;
    if !output.status.success() {
        bail!(
            "{} snapshot restore failed ({}): {}",
            options.etcdctl.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let member = options.data_dir.join("member");
    fs::rename(fresh.join("member"), &member)
        .with_context(|| format!("failed to move the restored member to {}", member.display()))?;
    if let Ok(dir) = fs::File::open(&options.data_dir) {
        let _ = dir.sync_all();
    }
    Ok(started.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_snapshot(dir: &Path, name: &str, body: &[u8]) -> PathBuf {
        let path = dir.join(name);
        let mut content = body.to_vec();
        content.extend_from_slice(&Sha256::digest(body));
        fs::write(&path, content).unwrap();
        path
    }

    #[test]
    fn the_appended_hash_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let good = fake_snapshot(dir.path(), "good.db", b"bolt database bytes");
        verify(&good).unwrap();
        let mut bytes = fs::read(&good).unwrap();
        bytes[3] ^= 1;
        fs::write(&good, &bytes).unwrap();
        let err = verify(&good).unwrap_err().to_string();
        assert!(err.contains("does not match"), "{err}");
        fs::write(&good, b"short").unwrap();
        assert!(verify(&good).unwrap_err().to_string().contains("too short"));
    }

    #[test]
    fn retention_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        for stamp in ["20261101T000000Z", "20261103T000000Z", "20261102T000000Z"] {
            fake_snapshot(dir.path(), &format!("snapshot-{stamp}.db"), b"x");
        }
        fs::write(dir.path().join("other.db"), b"not ours").unwrap();
        prune(dir.path(), 2).unwrap();
        let left: Vec<String> = list(dir.path())
            .unwrap()
            .iter()
            .map(|p| file_name(p))
            .collect();
        assert_eq!(
            left,
            [
                "snapshot-20261102T000000Z.db",
                "snapshot-20261103T000000Z.db"
            ]
        );
        assert!(dir.path().join("other.db").exists());
    }

    #[test]
    fn a_data_dir_with_a_member_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let snap = fake_snapshot(dir.path(), "s.db", b"x");
        fs::create_dir_all(dir.path().join("data/member")).unwrap();
        let err = restore(&RestoreOptions {
            snapshot: snap,
            data_dir: dir.path().join("data"),
            name: "a".into(),
            peer_url: "http://127.0.0.1:2380".into(),
            etcdctl: "/nonexistent/etcdctl".into(),
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("holds a member already"), "{err}");
    }
}
