//! The local lab: three systemd nodes booted from a cached Debian image with the Ignition that
//! `molten compose` wrote, each in its own network namespace on a lab bridge. See docs/lab.md.

pub mod binaries;
pub mod cgroups;
pub mod checks;
pub mod cluster;
pub mod flannel_standin;
pub mod image;
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

/// A short id unique to this process and call, for namespace names (`mlab<pid>x<n>`).
pub fn unique_id() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "mlab{}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
