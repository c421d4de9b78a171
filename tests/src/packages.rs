//! Makes sure a Debian package's binary is present: installs it with apt-get when running as
//! root (and says so on stderr), otherwise fails with a message naming the package.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Ensures `binary` exists, installing Debian `package` if it does not.
pub fn ensure_binary(binary: &str, package: &str) -> Result<()> {
    if Path::new(binary).exists() {
        return Ok(());
    }
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        bail!("{binary} is missing: install the Debian package `{package}` (or run as root so the test installs it)");
    }
    // Tests of one binary run in parallel: one apt-get at a time (apt's list lock is not waited for).
    static APT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _apt = APT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if Path::new(binary).exists() {
        return Ok(()); // installed by the test we waited for
    }
    eprintln!("molten-testkit: {binary} is missing; installing Debian package {package}");
    run_apt(&["update", "-qq"])?;
    run_apt(&["install", "-y", "-qq", "--no-install-recommends", package])?;
    if !Path::new(binary).exists() {
        bail!("installed {package} but {binary} is still missing");
    }
    Ok(())
}

fn run_apt(args: &[&str]) -> Result<()> {
    // Other tests may install at the same time: wait for dpkg's lock instead of failing.
    let status = Command::new("apt-get")
        .args(["-o", "DPkg::Lock::Timeout=300"])
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("failed to run apt-get")?;
    if !status.success() {
        bail!("apt-get {} failed with {status}", args.join(" "));
    }
    Ok(())
}
