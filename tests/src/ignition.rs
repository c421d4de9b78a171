//! The real Ignition (Debian's `ignition` 2.14): the validator and the engine's `files` stage
//! applied to a directory that stands for a node's root.
//!
//! ```no_run
//! use std::path::Path;
//! molten_testkit::ignition::validate(Path::new("node.ign"))?;
//! let root = tempfile::tempdir()?;
//! let log = molten_testkit::ignition::apply_files(Path::new("node.ign"), root.path())?;
//! # anyhow::Ok(())
//! ```
//!
//! The engine runs as in an initramfs with `-platform file`: `fetch-offline`, then `fetch` if
//! fetch-offline flagged that the config needs the network (remote file sources such as
//! `http://127.0.0.1:PORT/mc`, fetched and checked against their hash by the engine), then
//! `files`. [`prepare_root`] gives the root what the `files` stage needs: account databases for
//! `useradd --root` and an SELinux config. The Debian build always relabels what it wrote with
//! `setfiles` (package `policycoreutils`); our nodes do not use SELinux, so the root gets
//! `SELINUX=disabled` and an empty file-context list (policy `molten-lab`): setfiles runs for
//! real and labels nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::packages::ensure_binary;

pub const VALIDATE: &str = "/usr/bin/ignition-validate";
pub const ENGINE: &str = "/usr/lib/dracut/modules.d/30ignition/ignition";
const SETFILES: &str = "/usr/sbin/setfiles";

/// The SELinux policy name [`prepare_root`] writes (an empty file-context list).
pub const LAB_SELINUX_POLICY: &str = "molten-lab";

/// Runs `ignition-validate` on `path`; the error carries the validator's output.
pub fn validate(path: &Path) -> Result<()> {
    ensure_binary(VALIDATE, "ignition")?;
    let output = Command::new(VALIDATE)
        .arg(path)
        .output()
        .with_context(|| format!("failed to run {VALIDATE}"))?;
    if !output.status.success() {
        bail!(
            "ignition-validate rejected {} ({}): {}{}",
            path.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout).trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Applies `config` to `root` like an initramfs would: `fetch-offline`, `fetch` if the config
/// needs the network, then `files`. Returns the engine's combined log.
pub fn apply_files(config: &Path, root: &Path) -> Result<String> {
    apply(config, root, false)
}

/// Like [`apply_files`] but always runs the online `fetch` stage (no `fetch-offline`).
pub fn apply_files_online(config: &Path, root: &Path) -> Result<String> {
    apply(config, root, true)
}

/// Like [`apply_files`], with the engine running inside network namespace `netns` (as on the
/// node itself: remote sources are fetched over the node's own network).
pub fn apply_files_in_netns(config: &Path, root: &Path, netns: &str) -> Result<String> {
    apply_with(config, root, false, Some(netns))
}

fn apply(config: &Path, root: &Path, online: bool) -> Result<String> {
    apply_with(config, root, online, None)
}

fn apply_with(config: &Path, root: &Path, online: bool, netns: Option<&str>) -> Result<String> {
    ensure_binary(ENGINE, "ignition")?;
    ensure_binary(SETFILES, "policycoreutils")?;
    // useradd --root refuses relative roots.
    let root = std::path::absolute(root).context("cannot resolve the root path")?;
    let config = std::path::absolute(config).context("cannot resolve the config path")?;
    prepare_root(&root)?;
    let work = tempfile::Builder::new()
        .prefix("molten-ignition-")
        .tempdir()?;
    let engine = Engine {
        config,
        root,
        cache: work.path().join("config.json"),
        state: work.path().join("state"),
        neednet: work.path().join("neednet"),
        netns: netns.map(str::to_string),
    };
    let mut log = String::new();
    if online {
        log += &engine.stage("fetch")?;
    } else {
        log += &engine.stage("fetch-offline")?;
        if engine.neednet.exists() {
            log += &engine.stage("fetch")?;
        }
    }
    log += &engine.stage("files")?;
    Ok(log)
}

struct Engine {
    config: PathBuf,
    root: PathBuf,
    cache: PathBuf,
    state: PathBuf,
    neednet: PathBuf,
    netns: Option<String>,
}

impl Engine {
    fn stage(&self, stage: &str) -> Result<String> {
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns, ENGINE]);
                cmd
            }
            None => Command::new(ENGINE),
        };
        let output = cmd
            .env("IGNITION_CONFIG_FILE", &self.config)
            .args(["-platform", "file", "-stage", stage, "-log-to-stdout"])
            .arg("-root")
            .arg(&self.root)
            .arg("-config-cache")
            .arg(&self.cache)
            .arg("-state-file")
            .arg(&self.state)
            .arg("-neednet")
            .arg(&self.neednet)
            .output()
            .with_context(|| format!("failed to run the Ignition engine {ENGINE}"))?;
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if !output.status.success() {
            let critical: Vec<&str> = log.lines().filter(|l| l.starts_with("CRITICAL")).collect();
            bail!(
                "Ignition stage {stage} failed for {} ({}): {}\nfull log:\n{log}",
                self.config.display(),
                output.status,
                critical.join("\n")
            );
        }
        Ok(log)
    }
}

/// Gives `root` what the engine's `files` stage needs, without touching files that exist:
/// `/etc/passwd`, `group`, `shadow`, `gshadow` (root, and the groups a `core` user joins), and
/// `/etc/selinux/config` with an empty policy (see the module docs).
pub fn prepare_root(root: &Path) -> Result<()> {
    let etc = root.join("etc");
    let files: [(&str, &str, u32); 4] = [
        ("passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644),
        (
            "group",
            "root:x:0:\nadm:x:4:\nwheel:x:10:\nsudo:x:27:\nusers:x:100:\nsystemd-journal:x:101:\ndocker:x:102:\n",
            0o644,
        ),
        ("shadow", "root:*:19000:0:99999:7:::\n", 0o640),
        (
            "gshadow",
            "root:*::\nadm:*::\nwheel:*::\nsudo:*::\nusers:*::\nsystemd-journal:*::\ndocker:*::\n",
            0o640,
        ),
    ];
    for (name, content, mode) in files {
        write_if_absent(&etc.join(name), content, mode)?;
    }
    write_if_absent(
        &etc.join("selinux/config"),
        &format!("SELINUX=disabled\nSELINUXTYPE={LAB_SELINUX_POLICY}\n"),
        0o644,
    )?;
    let contexts = etc.join(format!(
        "selinux/{LAB_SELINUX_POLICY}/contexts/files/file_contexts"
    ));
    if etc.join("selinux/config").exists() && !contexts.exists() {
        let config = std::fs::read_to_string(etc.join("selinux/config"))?;
        if config.contains(&format!("SELINUXTYPE={LAB_SELINUX_POLICY}")) {
            write_if_absent(&contexts, "", 0o644)?;
        }
    }
    Ok(())
}

fn write_if_absent(path: &Path, content: &str, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if path.exists() {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("failed to create {dir:?}"))?;
    }
    std::fs::write(path, content).with_context(|| format!("failed to write {path:?}"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("failed to set mode of {path:?}"))
}
