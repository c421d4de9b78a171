//! Stamps the git commit the binary is built from into `MOLTEN_GIT_COMMIT` (for `--version`):
//! `MOLTEN_GIT_COMMIT` from the environment when set (packagers), else `git rev-parse`, else
//! "unknown" (no git, or not a checkout). Shared by `molten` and `mc` (agent/Cargo.toml names
//! this file). It reruns only when HEAD or the branch it points to moves, so a commit rebuilds
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
