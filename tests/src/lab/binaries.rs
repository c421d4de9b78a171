//! The product binaries the lab runs: `molten` (composes and serves the bundle) and `mc` (the
//! agent the nodes fetch). Built with cargo from this workspace, in the profile the test itself
//! was built in; `MOLTEN_LAB_MOLTEN` / `MOLTEN_LAB_MC` point at prebuilt ones instead.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::target_dir;

#[derive(Debug, Clone)]
pub struct Binaries {
    pub molten: PathBuf,
    pub mc: PathBuf,
}

/// Builds (or finds) `molten` and `mc`.
pub fn product_binaries() -> Result<Binaries> {
    if let (Some(molten), Some(mc)) = (
        std::env::var_os("MOLTEN_LAB_MOLTEN"),
        std::env::var_os("MOLTEN_LAB_MC"),
    ) {
        return Ok(Binaries {
            molten: molten.into(),
            mc: mc.into(),
        });
    }
    let release = !cfg!(debug_assertions);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the testkit lives inside the workspace")
        .to_path_buf();
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&workspace)
        .args(["build", "--locked", "-p", "molten", "-p", "mc", "--bins"]);
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().context("failed to run cargo")?;
    if !status.success() {
        bail!("cargo build -p molten -p mc failed with {status}");
    }
    let dir = target_dir().join(if release { "release" } else { "debug" });
    let binaries = Binaries {
        molten: dir.join("molten"),
        mc: dir.join("mc"),
    };
    for path in [&binaries.molten, &binaries.mc] {
        if !path.exists() {
            bail!("cargo built but {} is missing", path.display());
        }
    }
    Ok(binaries)
}
