//! Stamps the git commit the binary is built from into `MOLTEN_GIT_COMMIT` (for `--version`):
//! `MOLTEN_GIT_COMMIT` from the environment when set (packagers), else `git rev-parse`, else
//! "unknown" (no git, or not a checkout). Shared by `molten` and `mc` (agent/Cargo.toml names
//! this file). `MOLTEN_BUILD_EPOCH` is the commit's time (mc's clock check). It reruns only when HEAD or the branch it points to moves, so a commit rebuilds
//! these two crates and nothing else, and editing a file rebuilds nothing extra.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=MOLTEN_GIT_COMMIT");
    let commit = match std::env::var("MOLTEN_GIT_COMMIT") {
        Ok(commit) if !commit.is_empty() => commit,
        _ => git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into()),
    };
    for path in watched_git_files() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    println!("cargo:rustc-env=MOLTEN_GIT_COMMIT={commit}");
    // A lower bound of the build time, reproducible: `mc` refuses certificates while the clock
    // is earlier (it cannot be right then). SOURCE_DATE_EPOCH, else the commit's time, else 0.
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .filter(|s| s.trim().parse::<u64>().is_ok())
        .or_else(|| git(&["log", "-1", "--format=%ct", "HEAD"]))
        .unwrap_or_else(|| "0".into());
    println!("cargo:rustc-env=MOLTEN_BUILD_EPOCH={}", epoch.trim());
}

/// HEAD, and the file that holds the commit of the branch it names: the loose ref when there
/// is one, else packed-refs. Only existing files: cargo reruns on every build for a missing one.
fn watched_git_files() -> Vec<PathBuf> {
    let git_path =
        |name: &str| git(&["rev-parse", "--git-path", name]).map(|path| crate_dir().join(path));
    let mut files: Vec<PathBuf> = git_path("HEAD").into_iter().collect();
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        match git_path(&branch).filter(|loose| loose.exists()) {
            Some(loose) => files.push(loose),
            None => files.extend(git_path("packed-refs")),
        }
    }
    files.retain(|path| path.exists());
    files
}

fn crate_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
}

/// `git <args>` run in this crate's directory; its trimmed stdout, or None when it fails.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(crate_dir())
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    (output.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}
