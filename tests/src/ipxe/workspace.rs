//! The workspace's own binaries (`molten`, `mc`) for end-to-end tests in this crate. Cargo only
//! builds a package's own binaries for its tests, so this runs `cargo build` for the wanted ones
//! (a no-op when they are fresh, so a stale binary is never used) in the same profile as the test,
//! then finds them next to the test executable's directory.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};

/// Builds `bins` (package, binary) and returns the directory holding them
/// (`<target>/debug` or `<target>/release`).
pub fn build_binaries(bins: &[(&str, &str)]) -> Result<PathBuf> {
    let profile_dir = profile_dir()?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--locked", "--quiet", "--manifest-path"])
        .arg(&manifest);
    if profile_dir
        .file_name()
        .is_some_and(|name| name == "release")
    {
        cmd.arg("--release");
    }
    // Whole packages (`--bins`), like the lab's build, so both ask cargo for the same thing and
    // neither invalidates the other's binaries.
    for (package, _) in bins {
        cmd.args(["-p", package]);
    }
    cmd.arg("--bins");
    // The target dir is the one this test was built into, whatever CARGO_TARGET_DIR says.
    let target = profile_dir
        .parent()
        .ok_or_else(|| anyhow!("no target dir above {}", profile_dir.display()))?;
    cmd.env("CARGO_TARGET_DIR", target);
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    for (_, bin) in bins {
        let path = profile_dir.join(bin);
        if !path.exists() {
            bail!("cargo built {bin} but {} is missing", path.display());
        }
    }
    Ok(profile_dir)
}

/// `<target>/<profile>`: the test executable lives in its `deps/`.
pub fn profile_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the test executable")?;
    let deps = exe
        .parent()
        .ok_or_else(|| anyhow!("{} has no parent", exe.display()))?;
    if deps.file_name().is_none_or(|name| name != "deps") {
        bail!(
            "expected the test executable in a cargo `deps` directory, found {}",
            exe.display()
        );
    }
    Ok(deps.parent().expect("deps has a parent").to_path_buf())
}
