//! The fresh-machine test's harness: README's first command, run exactly as written on a
//! pristine Debian with only Rust, as a new user would.
//!
//! 1. [`root::ensure_root`]: the cached minbase bookworm root (no package of the host's).
//! 2. A fresh `git clone` of the committed working tree into a new overlay over that root (the
//!    cached root is never written; each run's changes go to an upper dir, deleted afterwards).
//! 3. Of the host, only what a fresh machine on this network has too: its CA trust
//!    (`/usr/local/share/ca-certificates`, then `update-ca-certificates` inside), its proxy
//!    settings (`*_proxy` variables, apt's `Acquire::` settings) and its DNS resolver. The
//!    rustup toolchain and cargo's binaries are bind-mounted read-only, cargo's registry cache
//!    read-write (downloads only).
//! 4. `cd molten && scripts/compose` as root in a chroot, in a mount namespace of its own
//!    (`unshare --mount`), so every mount vanishes with it.
//!
//! The clone's `target/` is a cargo target dir kept for the fresh root alone, keyed by the root's
//! recipe, `scripts/packages/compose` and `Cargo.lock`: when any of them changes every build
//! script (etcd-client's protoc run, ring's C compiler) runs again inside the root, which is what
//! catches a missing package; while the key holds, a run rebuilds only the workspace crates.

pub mod root;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::lab::image::FileLock;
use crate::lab::target_dir;
use crate::packages::ensure_binary;
use crate::process::{die_with_parent, run};

/// README's first command, as written there.
pub const FIRST_COMMAND: &str = "scripts/compose";
/// Where the clone lives inside the root (a new user's home).
const CLONE: &str = "root/molten";
/// What one run did.
#[derive(Debug)]
pub struct FreshRun {
    /// Everything the command printed (stdout and stderr).
    pub log: String,
    /// `out/vagrant`, copied out of the run before it was deleted (`<bundle>/vagrant`).
    pub bundle: tempfile::TempDir,
    /// Wall time of the command itself (apt-get, the release build, compose).
    pub command_time: Duration,
    /// Whether the root was built by this run (debootstrap), and whether the cargo target dir
    /// was new (every crate and build script built inside the root).
    pub built_root: bool,
    pub cold_target: bool,
}

/// `<target>/fresh-root`.
pub fn cache_dir() -> PathBuf {
    target_dir().join("fresh-root")
}

/// Clones the committed tree of the repository at `source` into a fresh root and runs
/// [`FIRST_COMMAND`] there. Fails with the command's last lines when it fails.
pub fn run_first_command(source: &Path) -> Result<FreshRun> {
    require_root()?;
    ensure_binary("/usr/bin/git", "git")?;
    let cache = cache_dir();
    let (rootfs, built_root) = root::ensure_root(&cache)?;
    let runs = cache.join("runs");
    std::fs::create_dir_all(&runs)?;
    let run_dir = tempfile::Builder::new().prefix("run-").tempdir_in(&runs)?;
    for dir in ["upper", "work", "merged"] {
        std::fs::create_dir(run_dir.path().join(dir))?;
    }
    // The clone goes straight into the overlay's upper dir: the root sees it at /root/molten.
    let upper = run_dir.path().join("upper");
    let clone = upper.join(CLONE);
    run(Command::new("git")
        .args(["clone", "--quiet", "--no-hardlinks"])
        .arg(source)
        .arg(&clone))
    .with_context(|| format!("cannot clone {}", source.display()))?;

    let key = target_key(&clone)?;
    let target = cache.join(format!("cargo-{key}"));
    let cold_target = !target.exists();
    {
        let _lock = FileLock::acquire(&cache.join(".cargo.lock"))?;
        std::fs::create_dir_all(&target)?;
        root::remove_others(&cache, &format!("cargo-{key}"), "cargo-");
    }
    eprintln!(
        "fresh-root: running `{FIRST_COMMAND}` in a fresh {} root ({} cargo target {key})",
        root::SUITE,
        if cold_target { "new" } else { "cached" }
    );

    let log_path = run_dir.path().join("command.log");
    let log_file = std::fs::File::create(&log_path)?;
    let (rustup, cargo_home) = rust_homes()?;
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "--fork",
        "--kill-child",
        "--",
    ])
    .args(["bash", "-c", IN_NAMESPACE, "fresh-root"])
    .arg(&rootfs)
    .arg(run_dir.path())
    .arg(&target)
    .arg(&rustup)
    .arg(&cargo_home)
    .arg(FIRST_COMMAND)
    .stdin(Stdio::null())
    .stdout(log_file.try_clone()?)
    .stderr(log_file);
    die_with_parent(&mut cmd);
    let started = Instant::now();
    let status = cmd.status().context("cannot run unshare")?;
    let command_time = started.elapsed();
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    if !status.success() {
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        bail!(
            "`{FIRST_COMMAND}` failed in the fresh root ({status}) after {command_time:.0?}; its last lines:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    let out = clone.join("out/vagrant");
    if !out.is_dir() {
        bail!("`{FIRST_COMMAND}` succeeded but wrote no {}", out.display());
    }
    let bundle = tempfile::tempdir()?;
    run(Command::new("cp").arg("-a").arg(&out).arg(bundle.path()))?;
    check_installed(&upper, &clone)?;
    Ok(FreshRun {
        log,
        bundle,
        command_time,
        built_root,
        cold_target,
    })
}

/// sha256 of the root's recipe, the clone's `scripts/packages/compose` and `Cargo.lock`.
pub fn target_key(clone: &Path) -> Result<String> {
    let mut hash = Sha256::new();
    hash.update(root::root_key());
    for file in ["scripts/packages/compose", "Cargo.lock"] {
        let path = clone.join(file);
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        hash.update(file);
        hash.update(Sha256::digest(&bytes));
    }
    Ok(root::hex16(&hash.finalize()))
}

/// The packages of `scripts/packages/compose` (comments and blank lines dropped).
pub fn compose_packages(clone: &Path) -> Result<Vec<String>> {
    let path = clone.join("scripts/packages/compose");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default())
        .flat_map(str::split_whitespace)
        .map(str::to_string)
        .collect())
}

/// Every package of the clone's compose list is installed in the run's root (dpkg's status
/// file in the overlay's upper dir: the run changed it).
fn check_installed(upper: &Path, clone: &Path) -> Result<()> {
    let status_file = upper.join("var/lib/dpkg/status");
    let status = std::fs::read_to_string(&status_file)
        .context("the run installed no package (dpkg's status file is unchanged)")?;
    for package in compose_packages(clone)? {
        let installed = status.split("\n\n").any(|stanza| {
            stanza.lines().any(|l| l == format!("Package: {package}"))
                && stanza.lines().any(|l| l == "Status: install ok installed")
        });
        if !installed {
            bail!("{package} is not installed in the fresh root after the run");
        }
    }
    Ok(())
}

/// `RUSTUP_HOME` and `CARGO_HOME` (rustup's defaults under `$HOME` when unset).
fn rust_homes() -> Result<(PathBuf, PathBuf)> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let pick = |var: &str, default: &str| -> Result<PathBuf> {
        std::env::var_os(var)
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(default)))
            .filter(|p| p.is_dir())
            .with_context(|| {
                format!("no {var} (nor $HOME/{default}): is Rust installed with rustup?")
            })
    };
    Ok((
        pick("RUSTUP_HOME", ".rustup")?,
        pick("CARGO_HOME", ".cargo")?,
    ))
}

fn require_root() -> Result<()> {
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the fresh-machine test needs root (debootstrap, overlay mounts, chroot)");
    }
    Ok(())
}

/// Runs inside `unshare --mount`: $1 root, $2 run dir, $3 cargo target, $4 RUSTUP_HOME,
/// $5 CARGO_HOME, $6 the command. Mounts the overlay and what the root borrows, copies in the
/// host's network settings, and runs the command as root in the chroot with a clean environment.
const IN_NAMESPACE: &str = r#"
set -euo pipefail
root=$1 run=$2 target=$3 rustup=$4 cargo_home=$5 command=$6
m=$run/merged
mount -t overlay overlay -o "lowerdir=$root,upperdir=$run/upper,workdir=$run/work" "$m"
mount -t proc proc "$m/proc"
mount --rbind /sys "$m/sys"
mount --rbind /dev "$m/dev"
ro_bind() {
    mkdir -p "$2"
    mount --bind "$1" "$2"
    mount -o remount,bind,ro "$2"
}
ro_bind "$rustup" "$m/root/.rustup"
ro_bind "$cargo_home/bin" "$m/root/.cargo/bin"
mkdir -p "$cargo_home/registry" "$m/root/.cargo/registry" "$m/root/molten/target"
mount --bind "$cargo_home/registry" "$m/root/.cargo/registry"
mount --bind "$target" "$m/root/molten/target"

# The host's network settings, nothing else: CA trust, apt's Acquire:: (proxy) settings, DNS.
shopt -s nullglob
for cert in /usr/local/share/ca-certificates/*; do
    cp -a "$cert" "$m/usr/local/share/ca-certificates/"
done
chroot "$m" update-ca-certificates >/dev/null
for conf in /etc/apt/apt.conf.d/*; do
    if grep -q '^[[:space:]]*Acquire::' "$conf"; then cp "$conf" "$m/etc/apt/apt.conf.d/"; fi
done
cp -L /etc/resolv.conf "$m/etc/resolv.conf"
env=(HOME=/root USER=root LOGNAME=root LANG=C.UTF-8 TERM=dumb
     PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)
for var in http_proxy https_proxy no_proxy all_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY ALL_PROXY; do
    if [ -n "${!var:-}" ]; then env+=("$var=${!var}"); fi
done

echo "fresh-root: \$ cd molten && $command"
exec chroot "$m" /usr/bin/env -i "${env[@]}" /bin/bash -c "cd /root/molten && $command"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_key_follows_the_package_list_and_the_lock_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("scripts")).unwrap();
        std::fs::create_dir(dir.path().join("scripts/packages")).unwrap();
        let list = dir.path().join("scripts/packages/compose");
        std::fs::write(&list, "gcc   # the linker\nprotobuf-compiler\n\n# note\n").unwrap();
        std::fs::write(dir.path().join("Cargo.lock"), "version = 4\n").unwrap();
        let first = target_key(dir.path()).unwrap();
        assert_eq!(first, target_key(dir.path()).unwrap());
        assert_eq!(
            compose_packages(dir.path()).unwrap(),
            ["gcc", "protobuf-compiler"]
        );
        std::fs::write(&list, "gcc\nprotobuf-compiler\nlibprotobuf-dev\n").unwrap();
        let second = target_key(dir.path()).unwrap();
        assert_ne!(first, second);
        std::fs::write(dir.path().join("Cargo.lock"), "version = 4\n# changed\n").unwrap();
        assert_ne!(second, target_key(dir.path()).unwrap());
    }
}
