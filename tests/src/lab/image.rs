//! The Debian node image: `debootstrap --variant=minbase` of bookworm with the packages a
//! `debian` node runs, built once and cached under `<target>/lab-image/<key>/rootfs`. The key
//! hashes the suite, package list and recipe version, so the image is rebuilt only when one of
//! them changes. It is built in a temp dir next to the cache and renamed into place, under a
//! file lock, so concurrent test processes never see half an image.
//!
//! After debootstrap the recipe makes the image look like a fresh OS whose Ignition has not run:
//! - no unit of etcd, Docker or containerd is enabled, and `99-default.preset` says
//!   `disable *` (like Flatcar): only the presets Ignition writes decide what starts;
//! - systemd-networkd, -resolved and -timesyncd stay off (the lab configures the node's address
//!   from outside, as a hypervisor's network would);
//! - `/etc/machine-id` says `uninitialized`, so the first boot is a first boot (systemd applies
//!   the presets); no `/etc/hostname` (Ignition writes it);
//! - `/etc/selinux/config` for the Ignition engine's relabel step (see [`crate::ignition`]).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use super::mirror::debian_mirror;
use crate::packages::ensure_binary;
use crate::process::run;

pub const SUITE: &str = "bookworm";

/// What a `debian` node runs (the profile's OS variant), plus what the image itself needs.
pub const PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "dbus",
    "iproute2",
    "docker.io",
    "etcd-server",
    // etcdctl: `mc etcd restore` runs its `snapshot restore` (docs/operations.md).
    "etcd-client",
    "iptables",
    "ca-certificates",
];

/// Bump when the post-debootstrap recipe changes, so cached images are rebuilt.
const RECIPE_VERSION: u32 = 4;

/// Units the packages enable on install; the node's Ignition decides instead. (The
/// `etcd2.service` alias stays: if the first boot's presets had to create it, systemd would merge
/// the two names while loading the boot transaction, and the etcd start job was seen to vanish.)
const PACKAGE_ENABLED_UNITS: &[&str] = &[
    "multi-user.target.wants/docker.service",
    "sockets.target.wants/docker.socket",
    "multi-user.target.wants/containerd.service",
    "multi-user.target.wants/etcd.service",
    "multi-user.target.wants/e2scrub_reap.service",
    // a container has no tty1
    "getty.target.wants/getty@tty1.service",
];

const LAB_PRESET: &str = "\
# molten lab image: the lab configures addresses from outside, like a hypervisor's network.
disable systemd-networkd.service
disable systemd-networkd.socket
disable systemd-networkd-wait-online.service
disable systemd-resolved.service
disable systemd-timesyncd.service
# a node is a container here: no ttys, and its console is a log file
disable getty@.service
disable console-getty.service
";

/// The cached image, built if missing. Returns the rootfs directory (read-only by convention:
/// nodes copy it).
pub fn ensure_image(cache_root: &Path) -> Result<PathBuf> {
    let key = image_key();
    let dir = cache_root.join(&key);
    let rootfs = dir.join("rootfs");
    if rootfs.join(".molten-lab-image").exists() {
        return Ok(rootfs);
    }
    std::fs::create_dir_all(cache_root)
        .with_context(|| format!("failed to create {}", cache_root.display()))?;
    let _lock = FileLock::acquire(&cache_root.join(".lock"))?;
    if rootfs.join(".molten-lab-image").exists() {
        return Ok(rootfs); // another process built it while we waited
    }
    ensure_binary("/usr/sbin/debootstrap", "debootstrap")?;
    let mirror = debian_mirror()?;
    let staging = tempfile::Builder::new()
        .prefix(&format!("{key}.building-"))
        .tempdir_in(cache_root)?;
    let started = Instant::now();
    eprintln!(
        "molten-lab: building the node image {key} from {mirror} (debootstrap {SUITE}; once)"
    );
    let staged_root = staging.path().join("rootfs");
    debootstrap(&staged_root, &mirror)?;
    apply_recipe(&staged_root)?;
    std::fs::write(
        staged_root.join(".molten-lab-image"),
        format!(
            "suite={SUITE}\npackages={}\nrecipe={RECIPE_VERSION}\n",
            PACKAGES.join(",")
        ),
    )?;
    if dir.exists() {
        // a stale, incomplete image from an interrupted run
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::rename(staging.path(), &dir)
        .with_context(|| format!("failed to move the image into {}", dir.display()))?;
    // The staging dir was renamed; keep TempDir from deleting the new location.
    let _ = staging.keep();
    remove_stale_images(cache_root, &key);
    eprintln!(
        "molten-lab: node image ready in {:.0?} at {}",
        started.elapsed(),
        rootfs.display()
    );
    Ok(rootfs)
}

/// Images of older package lists or recipes are never used again: free their space.
fn remove_stale_images(cache_root: &Path, current: &str) {
    let Ok(entries) = std::fs::read_dir(cache_root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&format!("{SUITE}-")) && name != current && !name.contains(".building-")
        {
            if let Err(err) = std::fs::remove_dir_all(entry.path()) {
                eprintln!("molten-lab: could not remove the old image {name}: {err}");
            }
        }
    }
}

/// `<suite>-<first 16 hex of sha256(suite, packages, recipe version)>`.
pub fn image_key() -> String {
    let mut hash = Sha256::new();
    hash.update(format!(
        "{SUITE}\n{}\n{RECIPE_VERSION}\n",
        PACKAGES.join(",")
    ));
    let digest = hash.finalize();
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("{SUITE}-{hex}")
}

fn debootstrap(root: &Path, mirror: &str) -> Result<()> {
    let output = Command::new("/usr/sbin/debootstrap")
        .arg("--variant=minbase")
        .arg(format!("--include={}", PACKAGES.join(",")))
        .arg(SUITE)
        .arg(root)
        .arg(mirror)
        .output()
        .context("failed to run debootstrap")?;
    if !output.status.success() {
        let log =
            std::fs::read_to_string(root.join("debootstrap/debootstrap.log")).unwrap_or_default();
        let tail: String = log
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        bail!(
            "debootstrap {SUITE} from {mirror} failed ({}): {}\n{tail}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

fn apply_recipe(root: &Path) -> Result<()> {
    let units = root.join("etc/systemd/system");
    for link in PACKAGE_ENABLED_UNITS {
        let path = units.join(link);
        if path.symlink_metadata().is_ok() {
            std::fs::remove_file(&path).with_context(|| format!("failed to remove {link}"))?;
        }
    }
    let presets = root.join("lib/systemd/system-preset");
    std::fs::create_dir_all(&presets)?;
    std::fs::write(presets.join("80-molten-lab.preset"), LAB_PRESET)?;
    std::fs::write(
        presets.join("99-default.preset"),
        "# molten lab image: units start only when a preset (Ignition's) enables them.\ndisable *\n",
    )?;
    // The getty generator adds a console getty in containers; the lab's console is a log file.
    let console_getty = units.join("console-getty.service");
    if console_getty.symlink_metadata().is_err() {
        std::os::unix::fs::symlink("/dev/null", &console_getty)?;
    }
    std::fs::write(root.join("etc/machine-id"), "uninitialized\n")?;
    for leftover in ["var/lib/dbus/machine-id", "etc/hostname"] {
        let path = root.join(leftover);
        if path.symlink_metadata().is_ok() {
            std::fs::remove_file(&path)?;
        }
    }
    // Nothing of the build host's network configuration goes into the image.
    std::fs::write(root.join("etc/resolv.conf"), "")?;
    std::fs::write(
        root.join("etc/hosts"),
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    )?;
    let archives = root.join("var/cache/apt/archives");
    if archives.exists() {
        run(Command::new("find")
            .arg(&archives)
            .args(["-name", "*.deb", "-delete"]))?;
    }
    crate::ignition::prepare_root(root)
}

/// An exclusive `flock` held until dropped.
pub(crate) struct FileLock {
    _file: File,
}

impl FileLock {
    pub(crate) fn acquire(path: &Path) -> Result<Self> {
        let file =
            File::create(path).with_context(|| format!("failed to open {}", path.display()))?;
        // SAFETY: flock on a descriptor we own; blocks until the lock is ours.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("failed to lock {}", path.display()));
        }
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_names_the_suite_and_is_stable() {
        let key = image_key();
        assert!(key.starts_with("bookworm-"), "{key}");
        assert_eq!(key.len(), "bookworm-".len() + 16);
        assert_eq!(key, image_key());
    }
}
