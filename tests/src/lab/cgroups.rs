//! A cgroup subtree per node. Without one, every node's systemd would manage the host's own
//! `/system.slice/...` cgroups and the nodes would trip over each other (one node's systemd
//! removing a cgroup another node's unit is being started in). Each node gets
//! `<hierarchy>/molten-lab/<id>` in every mounted hierarchy (v1 controllers, the named systemd
//! one, cgroup2) and boots inside a cgroup namespace rooted there, as systemd-nspawn does.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The node's cgroup directories, one per mounted hierarchy; removed on drop.
#[derive(Debug)]
pub struct NodeCgroups {
    dirs: Vec<PathBuf>,
}

impl NodeCgroups {
    pub fn create(id: &str) -> Result<Self> {
        let mut dirs = Vec::new();
        for mount in hierarchies()? {
            let parent = mount.join("molten-lab");
            let dir = parent.join(id);
            for level in [&parent, &dir] {
                if !level.exists() {
                    std::fs::create_dir(level)
                        .with_context(|| format!("failed to create cgroup {}", level.display()))?;
                }
                inherit_cpuset(level)?;
            }
            dirs.push(dir);
        }
        Ok(Self { dirs })
    }

    /// The `cgroup.procs` files a process writes its PID to, to join the node's cgroups.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// Removes the node's cgroups (all must be empty: call after the node is gone).
    /// Processes of a node that was just killed may take a moment to leave, so busy cgroups
    /// are retried for a few seconds.
    pub fn remove(&mut self) -> Result<()> {
        for dir in self.dirs.drain(..) {
            crate::process::wait_until(
                &format!("cgroup {} to empty", dir.display()),
                std::time::Duration::from_secs(10),
                std::time::Duration::from_millis(100),
                || match remove_tree(&dir) {
                    Ok(()) => Ok(Some(())),
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Ok(None),
                    Err(e) => Err(e).with_context(|| format!("failed to remove {}", dir.display())),
                },
            )?;
        }
        Ok(())
    }
}

impl Drop for NodeCgroups {
    fn drop(&mut self) {
        if let Err(err) = self.remove() {
            eprintln!("molten-lab: {err:#}");
        }
    }
}

/// Mount points of every cgroup hierarchy (v1 and v2) this process sees.
fn hierarchies() -> Result<Vec<PathBuf>> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mut found = Vec::new();
    for line in info.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let fstype = right.split_whitespace().next().unwrap_or_default();
        if fstype == "cgroup" || fstype == "cgroup2" {
            if let Some(mount) = left.split_whitespace().nth(4) {
                found.push(PathBuf::from(mount));
            }
        }
    }
    Ok(found)
}

/// cgroup v1 cpuset children start with no CPUs or memory nodes, and a process cannot join
/// such a cgroup: copy the parent's.
fn inherit_cpuset(dir: &Path) -> Result<()> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let own = dir.join(file);
        let Some(parent) = dir.parent() else { continue };
        if !own.exists() || !std::fs::read_to_string(&own)?.trim().is_empty() {
            continue;
        }
        let value = std::fs::read_to_string(parent.join(file))?;
        std::fs::write(&own, value.trim())
            .with_context(|| format!("failed to set {}", own.display()))?;
    }
    Ok(())
}

/// Every node cgroup of every lab (`<hierarchy>/molten-lab/<id>`).
pub fn lab_cgroup_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for mount in hierarchies().unwrap_or_default() {
        if let Ok(entries) = std::fs::read_dir(mount.join("molten-lab")) {
            dirs.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
    dirs
}

/// `rmdir` a cgroup and everything the node's systemd created below it, deepest first.
pub fn remove_tree(dir: &Path) -> std::io::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_tree(&entry.path())?;
        }
    }
    std::fs::remove_dir(dir)
}
