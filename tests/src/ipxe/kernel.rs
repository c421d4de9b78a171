//! Debian's kernel for the iPXE test, taken out of its package without installing it: installing
//! `linux-image-amd64` would run update-initramfs and change the host's boot files. The versioned
//! package `linux-image-amd64` depends on is fetched with `apt-get download`, unpacked with
//! `dpkg-deb -x` into `<cache>/<package>_<version>/`, and `depmod -b` writes the `modules.dep`
//! the package leaves to its postinst. Cached until Debian ships another version.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};

use crate::lab::image::FileLock;
use crate::packages::ensure_binary;
use crate::process::run;

/// The metapackage that names the current kernel of the host's Debian release.
const METAPACKAGE: &str = "linux-image-amd64";
const DEPMOD: &str = "/sbin/depmod";
/// Written last: an unpacked kernel without it is incomplete.
const DONE: &str = ".molten-kernel";

/// An unpacked kernel: `<root>/boot/vmlinuz-<release>` and `<root>/lib/modules/<release>`.
#[derive(Debug, Clone)]
pub struct Kernel {
    pub release: String,
    pub vmlinuz: PathBuf,
    pub modules: PathBuf,
}

/// The unpacked current Debian kernel under `cache_dir`, downloaded when not there yet.
pub fn unpacked_kernel(cache_dir: &Path) -> Result<Kernel> {
    let (package, version) = current_package()?;
    let dir = cache_dir.join(format!("{package}_{version}"));
    if !dir.join(DONE).exists() {
        std::fs::create_dir_all(cache_dir)
            .with_context(|| format!("cannot create {}", cache_dir.display()))?;
        // One download at a time; whoever waited finds it done.
        let _lock = FileLock::acquire(&cache_dir.join(".lock"))?;
        if !dir.join(DONE).exists() {
            unpack(&package, &dir)?;
        }
    }
    find_kernel(&dir)
}

/// `linux-image-<abi>-amd64` and its candidate version, from the host's apt lists (updated
/// once when they do not know the package yet).
fn current_package() -> Result<(String, String)> {
    let show = |name: &str| -> Result<Option<String>> {
        let out = Command::new("apt-cache")
            .args(["show", "--no-all-versions", name])
            .output()
            .context("cannot run apt-cache")?;
        Ok(out
            .status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
            .filter(|text| !text.trim().is_empty()))
    };
    let meta = match show(METAPACKAGE)? {
        Some(text) => text,
        None => {
            eprintln!("molten-testkit: apt does not know {METAPACKAGE}; running apt-get update");
            run(Command::new("apt-get").args(["update", "-qq"]))?;
            show(METAPACKAGE)?.ok_or_else(|| anyhow!("apt-cache knows no {METAPACKAGE}"))?
        }
    };
    let package = versioned_dependency(&meta)
        .ok_or_else(|| anyhow!("{METAPACKAGE} depends on no linux-image-* package:\n{meta}"))?;
    let text = show(&package)?.ok_or_else(|| anyhow!("apt-cache knows no {package}"))?;
    let version = field(&text, "Version").ok_or_else(|| anyhow!("{package} has no Version"))?;
    Ok((package, version))
}

/// The first `linux-image-*` package in the Depends field of `linux-image-amd64`.
fn versioned_dependency(control: &str) -> Option<String> {
    field(control, "Depends")?
        .split(',')
        .filter_map(|dep| dep.split_whitespace().next())
        .find(|name| name.starts_with("linux-image-"))
        .map(str::to_string)
}

fn field(control: &str, name: &str) -> Option<String> {
    control.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key == name).then(|| value.trim().to_string())
    })
}

fn unpack(package: &str, dir: &Path) -> Result<()> {
    ensure_binary(DEPMOD, "kmod")?;
    let parent = dir.parent().expect("cache dir has a parent");
    // Unpacked next to its place and renamed in: an interrupted run leaves no half kernel.
    let staging = tempfile::Builder::new()
        .prefix(".unpacking-")
        .tempdir_in(parent)?;
    eprintln!("molten-testkit: downloading {package} to unpack its kernel (not installing it)");
    run(Command::new("apt-get")
        .args(["download", "-qq", package])
        .current_dir(staging.path()))?;
    let deb = std::fs::read_dir(staging.path())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|ext| ext == "deb"))
        .ok_or_else(|| anyhow!("apt-get download {package} left no .deb"))?;
    let root = staging.path().join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
    std::fs::remove_file(&deb)?;
    let release = only_release(&root)?;
    run(Command::new(DEPMOD).arg("-b").arg(&root).arg(&release))?;
    std::fs::write(root.join(DONE), format!("{package}\n"))?;
    if dir.exists() {
        std::fs::remove_dir_all(dir)?; // an interrupted unpack's leftovers
    }
    std::fs::rename(&root, dir)
        .with_context(|| format!("cannot move the kernel to {}", dir.display()))
}

/// The one kernel release under `<root>/lib/modules`.
fn only_release(root: &Path) -> Result<String> {
    let modules = root.join("lib/modules");
    let releases: Vec<String> = std::fs::read_dir(&modules)
        .with_context(|| format!("the package has no {}", modules.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    match releases.as_slice() {
        [one] => Ok(one.clone()),
        _ => bail!("expected one kernel release in the package, found {releases:?}"),
    }
}

fn find_kernel(root: &Path) -> Result<Kernel> {
    let release = only_release(root)?;
    let vmlinuz = root.join(format!("boot/vmlinuz-{release}"));
    let modules = root.join(format!("lib/modules/{release}"));
    for needed in [&vmlinuz, &modules.join("modules.dep")] {
        if !needed.exists() {
            bail!("the unpacked kernel lacks {}", needed.display());
        }
    }
    Ok(Kernel {
        release,
        vmlinuz,
        modules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_versioned_kernel_package() {
        let control = "Package: linux-image-amd64\nVersion: 6.1.192-3\n\
                       Depends: linux-image-6.1.0-57-amd64 (= 6.1.192-3)\nSection: kernel\n";
        assert_eq!(
            versioned_dependency(control).as_deref(),
            Some("linux-image-6.1.0-57-amd64")
        );
        assert_eq!(field(control, "Version").as_deref(), Some("6.1.192-3"));
        assert_eq!(versioned_dependency("Depends: libc6, kmod\n"), None);
    }
}
