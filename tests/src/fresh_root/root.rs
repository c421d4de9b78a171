//! The pristine Debian root: `debootstrap --variant=minbase bookworm` from the host's Debian
//! mirror, plus `ca-certificates` (whoever installed Rust with rustup fetched it over HTTPS, so
//! a machine with Rust has them). Nothing else: no compiler, no protoc, no git. Built once and
//! cached under `<target>/fresh-root/<key>/rootfs`, where the key hashes this recipe; runs never
//! write to it (each gets an overlay, see [`super`]).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::lab::image::FileLock;
use crate::lab::mirror::debian_mirror;
use crate::packages::ensure_binary;

pub const SUITE: &str = "bookworm";
const INCLUDE: &[&str] = &["ca-certificates"];
/// Bump when the recipe below changes, so cached roots are rebuilt.
const RECIPE_VERSION: u32 = 1;
const DONE: &str = ".molten-fresh-root";

/// `<suite>-<first 16 hex of sha256(recipe)>`.
pub fn root_key() -> String {
    let digest = Sha256::digest(format!(
        "{SUITE}\nminbase\n{}\n{RECIPE_VERSION}\n",
        INCLUDE.join(",")
    ));
    format!("{SUITE}-{}", hex16(&digest))
}

pub(crate) fn hex16(digest: &[u8]) -> String {
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The cached root under `cache`, built when missing. Returns it and whether it was built now.
pub fn ensure_root(cache: &Path) -> Result<(PathBuf, bool)> {
    let key = root_key();
    let dir = cache.join(&key);
    let rootfs = dir.join("rootfs");
    if rootfs.join(DONE).exists() {
        return Ok((rootfs, false));
    }
    std::fs::create_dir_all(cache).with_context(|| format!("cannot create {}", cache.display()))?;
    let _lock = FileLock::acquire(&cache.join(".root.lock"))?;
    if rootfs.join(DONE).exists() {
        return Ok((rootfs, false));
    }
    ensure_binary("/usr/sbin/debootstrap", "debootstrap")?;
    let mirror = debian_mirror()?;
    let started = Instant::now();
    eprintln!(
        "fresh-root: building the pristine root {key} (debootstrap {SUITE} from {mirror}; once)"
    );
    let staging = tempfile::Builder::new()
        .prefix(&format!("{key}.building-"))
        .tempdir_in(cache)?;
    let staged = staging.path().join("rootfs");
    let output = Command::new("/usr/sbin/debootstrap")
        .arg("--variant=minbase")
        .arg(format!("--include={}", INCLUDE.join(",")))
        .arg(SUITE)
        .arg(&staged)
        .arg(&mirror)
        .output()
        .context("cannot run debootstrap")?;
    if !output.status.success() {
        let log =
            std::fs::read_to_string(staged.join("debootstrap/debootstrap.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        bail!(
            "debootstrap {SUITE} from {mirror} failed ({}): {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    // debootstrap copies the build host's resolv.conf and hosts; a run brings its own.
    std::fs::write(staged.join("etc/resolv.conf"), "")?;
    std::fs::write(
        staged.join("etc/hosts"),
        "127.0.0.1\tlocalhost\n::1\tlocalhost\n",
    )?;
    crate::process::run(
        Command::new("find")
            .arg(staged.join("var/cache/apt/archives"))
            .args(["-name", "*.deb", "-delete"]),
    )?;
    std::fs::write(staged.join(DONE), format!("{key}\n"))?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?; // an interrupted build's leftovers
    }
    std::fs::rename(staging.path(), &dir)
        .with_context(|| format!("cannot move the root into {}", dir.display()))?;
    let _ = staging.keep();
    remove_others(cache, &key, &format!("{SUITE}-"));
    eprintln!("fresh-root: root ready in {:.0?}", started.elapsed());
    Ok((rootfs, true))
}

/// Removes the cache entries starting with `prefix` other than `current`: an old recipe's root
/// or an old key's cargo target is never used again.
pub(crate) fn remove_others(cache: &Path, current: &str, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(cache) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(prefix) && name != current && !name.contains(".building-") {
            if let Err(err) = std::fs::remove_dir_all(entry.path()) {
                eprintln!("fresh-root: could not remove the old {name}: {err}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_key_names_the_suite_and_is_stable() {
        let key = root_key();
        assert!(key.starts_with("bookworm-"), "{key}");
        assert_eq!(key.len(), "bookworm-".len() + 16);
        assert_eq!(key, root_key());
    }
}
