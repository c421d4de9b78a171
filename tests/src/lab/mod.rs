//! The local lab: three systemd nodes booted from a cached Debian image with the Ignition that
//! `molten compose` wrote, each in its own network namespace on a lab bridge. See docs/lab.md.

pub mod binaries;
pub mod cgroups;
pub mod checks;
pub mod cluster;
pub mod flannel_standin;
pub mod image;
pub mod intruder;
pub mod mirror;
pub mod netns;
pub mod node;
pub mod probes;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

/// The workspace's target directory (`CARGO_TARGET_DIR` or `<workspace>/target`).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the testkit lives inside the workspace")
            .join("target"),
    }
}

/// Where node images are cached: `<target>/lab-image`.
pub fn image_cache() -> PathBuf {
    target_dir().join("lab-image")
}

/// Where running labs keep their node roots: `<target>/lab-nodes` (same filesystem as the
/// image cache, so `cp --reflink=auto` can share blocks).
pub fn nodes_dir() -> PathBuf {
    target_dir().join("lab-nodes")
}

/// A short id unique to this process and call, for namespace names (`mlab<pid>x<n>`). The first
/// call also removes what labs of dead processes left behind (see [`sweep_stale`]).
pub fn unique_id() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    static SWEEP: std::sync::Once = std::sync::Once::new();
    SWEEP.call_once(sweep_stale);
    format!(
        "mlab{}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The PID in a lab name `mlab<pid>x...`, if it is one.
fn owner_pid(name: &str) -> Option<u32> {
    name.strip_prefix("mlab")?.split('x').next()?.parse().ok()
}

/// Deletes network namespaces and cgroups named after a lab whose process no longer exists (a
/// test killed before its destructors ran; its nodes died with it, see `die_with_parent`).
pub fn sweep_stale() {
    let dead = |name: &str| {
        owner_pid(name).is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
    };
    if let Ok(entries) = std::fs::read_dir("/run/netns") {
        for name in entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
        {
            if dead(&name) {
                let status = std::process::Command::new("ip")
                    .args(["netns", "del", &name])
                    .status();
                if !status.is_ok_and(|s| s.success()) {
                    eprintln!("molten-lab: could not delete the stale namespace {name}");
                }
            }
        }
    }
    for dir in cgroups::lab_cgroup_dirs() {
        let name = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if dead(&name) {
            if let Err(err) = cgroups::remove_tree(&dir) {
                eprintln!(
                    "molten-lab: could not remove the stale cgroup {}: {err}",
                    dir.display()
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn lab_names_carry_their_owner() {
        assert_eq!(super::owner_pid("mlab123x4-hub"), Some(123));
        assert_eq!(super::owner_pid("other"), None);
        assert!(super::unique_id().starts_with(&format!("mlab{}x", std::process::id())));
    }
}
