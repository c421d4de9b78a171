//! The test node's initramfs: busybox (static), Debian's Ignition engine with the libraries `ldd`
//! names, and the virtio-net driver with its dependencies from Debian's kernel package (unpacked, not installed:
//! see [`super::kernel`]). Its
//! `/init` brings eth0 up with DHCP, runs Ignition's `fetch` stage for the `metal` platform
//! (which reads `ignition.config.url` from the kernel command line), prints a marker line with
//! the sha512 Ignition logged for the config it fetched, and powers off.
//!
//! The archive is cached under `<target>/ipxe-e2e/` keyed by the sha256 of its contents.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};

use super::cpio::Cpio;
use super::kernel::unpacked_kernel;
use crate::packages::ensure_binary;

pub const BUSYBOX: &str = "/bin/busybox";
pub const IGNITION: &str = "/usr/lib/dracut/modules.d/30ignition/ignition";

/// The marker `/init` prints once Ignition is done:
/// `MOLTEN-IGNITION-FETCHED rc=<exit code> sha512=<hex of the config Ignition fetched>`.
pub const MARKER: &str = "MOLTEN-IGNITION-FETCHED";

/// The modules `/init` needs for the NIC qemu gives the node (virtio-net on PCI).
const MODULES: [&str; 2] = ["virtio_pci", "virtio_net"];

const INIT: &str = r#"#!/bin/sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /run
echo "molten-initramfs: kernel $(uname -r) is up"
while read -r module; do
    insmod "/lib/modules/$module" || echo "molten-initramfs: insmod $module failed"
done < /etc/molten-modules
ip link set lo up
udhcpc -i eth0 -s /etc/udhcpc.script -n -q -t 20 -T 1 || echo "molten-initramfs: DHCP on eth0 failed"
ignition -platform metal -stage fetch -root /sysroot -config-cache /run/ignition.json \
    -state-file /run/ignition.state -log-to-stdout > /run/ignition.log 2>&1
rc=$?
cat /run/ignition.log
sha=$(sed -n 's/.*parsing config with SHA512: \([0-9a-f]*\).*/\1/p' /run/ignition.log | head -n 1)
echo "MOLTEN-IGNITION-FETCHED rc=$rc sha512=$sha"
poweroff -f
"#;

/// busybox udhcpc calls this with `deconfig`, `bound` or `renew` and the lease in the environment.
const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
case "$1" in
    deconfig)
        ip addr flush dev "$interface"
        ip link set "$interface" up
        ;;
    bound|renew)
        ip addr flush dev "$interface"
        ip addr add "$ip/$mask" dev "$interface"
        for gateway in $router; do
            ip route add default via "$gateway" dev "$interface"
            break
        done
        ;;
esac
"#;

/// The kernel to boot and the built initramfs (gzip-compressed cpio).
#[derive(Debug, Clone)]
pub struct BootFiles {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    pub kernel_release: String,
}

/// Builds (or reuses from `cache_dir`) the initramfs for Debian's current kernel, unpacked (not
/// installed) under `cache_dir/kernel`.
pub fn build_cached(cache_dir: &Path) -> Result<BootFiles> {
    ensure_binary(BUSYBOX, "busybox-static")?;
    ensure_binary(IGNITION, "ignition")?;
    let kernel = unpacked_kernel(&cache_dir.join("kernel"))?;
    let archive = archive(&kernel.modules)?;
    let key = hex(&Sha256::digest(&archive));
    std::fs::create_dir_all(cache_dir)
        .with_context(|| format!("cannot create {}", cache_dir.display()))?;
    let initramfs = cache_dir.join(format!("initramfs-{}.cpio.gz", &key[..16]));
    if !initramfs.exists() {
        let compressed = gzip(&archive)?;
        let tmp = tempfile::NamedTempFile::new_in(cache_dir)?;
        std::fs::write(tmp.path(), compressed)?;
        tmp.persist(&initramfs)
            .with_context(|| format!("cannot write {}", initramfs.display()))?;
    }
    Ok(BootFiles {
        kernel: kernel.vmlinuz,
        initramfs,
        kernel_release: kernel.release,
    })
}

/// The uncompressed archive: deterministic, so its hash is the cache key.
fn archive(modules_dir: &Path) -> Result<Vec<u8>> {
    let mut files: BTreeMap<String, (u32, Vec<u8>)> = BTreeMap::new();
    for binary in [BUSYBOX, IGNITION] {
        let name = Path::new(binary).file_name().unwrap().to_string_lossy();
        files.insert(format!("bin/{name}"), (0o755, read(binary)?));
        for lib in shared_libraries(binary)? {
            let rel = lib.trim_start_matches('/').to_string();
            files.insert(rel, (0o755, read(&lib)?));
        }
    }
    let modules = module_closure(modules_dir, &MODULES)?;
    let mut load_order = String::new();
    for module in &modules {
        let name = module_file_name(module);
        files.insert(
            format!("lib/modules/{name}"),
            (0o644, read_module(modules_dir, module)?),
        );
        load_order.push_str(&format!("{name}\n"));
    }
    files.insert(
        "etc/molten-modules".into(),
        (0o644, load_order.into_bytes()),
    );
    files.insert("etc/udhcpc.script".into(), (0o755, UDHCPC_SCRIPT.into()));
    files.insert("init".into(), (0o755, INIT.into()));

    let mut cpio = Cpio::new();
    let mut dirs: BTreeSet<String> = ["dev", "proc", "sys", "run", "tmp", "sysroot", "etc"]
        .into_iter()
        .map(String::from)
        .collect();
    for path in files.keys() {
        let mut parent = Path::new(path).parent();
        while let Some(dir) = parent.filter(|d| !d.as_os_str().is_empty()) {
            dirs.insert(dir.to_string_lossy().into_owned());
            parent = dir.parent();
        }
    }
    // BTreeSet order puts every parent before its children.
    for dir in &dirs {
        cpio.dir(dir);
    }
    cpio.char_device("dev/console", 0o600, 5, 1);
    cpio.symlink("bin/sh", "busybox");
    for (path, (mode, data)) in &files {
        cpio.file(path, *mode, data);
    }
    Ok(cpio.finish())
}

fn read(path: &str) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {path}"))
}

/// Absolute paths of the shared libraries (and loader) `ldd` names; none for a static binary.
fn shared_libraries(binary: &str) -> Result<Vec<String>> {
    let output = Command::new("ldd")
        .arg(binary)
        .output()
        .context("cannot run ldd")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        if text.contains("not a dynamic executable") || stderr.contains("not a dynamic executable")
        {
            return Ok(Vec::new());
        }
        bail!("ldd {binary} failed: {stderr}");
    }
    Ok(parse_ldd(&text))
}

fn parse_ldd(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| path.to_string())
        })
        .collect()
}

/// `modules.dep` paths of `wanted` and everything they depend on, dependencies first.
fn module_closure(modules_dir: &Path, wanted: &[&str]) -> Result<Vec<String>> {
    let dep_file = modules_dir.join("modules.dep");
    let text = std::fs::read_to_string(&dep_file)
        .with_context(|| format!("cannot read {}", dep_file.display()))?;
    let deps = parse_modules_dep(&text);
    let mut order = Vec::new();
    for name in wanted {
        let path = deps
            .keys()
            .find(|path| module_name(path) == *name)
            .ok_or_else(|| anyhow!("no module {name} in {}", dep_file.display()))?;
        visit(path, &deps, &mut order)?;
    }
    Ok(order)
}

fn visit(path: &str, deps: &BTreeMap<String, Vec<String>>, order: &mut Vec<String>) -> Result<()> {
    if order.iter().any(|done| done == path) {
        return Ok(());
    }
    let needs = deps
        .get(path)
        .ok_or_else(|| anyhow!("modules.dep does not list {path}"))?;
    for need in needs {
        visit(need, deps, order)?;
    }
    order.push(path.to_string());
    Ok(())
}

fn parse_modules_dep(text: &str) -> BTreeMap<String, Vec<String>> {
    text.lines()
        .filter_map(|line| {
            let (module, needs) = line.split_once(':')?;
            let needs = needs.split_whitespace().map(String::from).collect();
            Some((module.trim().to_string(), needs))
        })
        .collect()
}

/// `kernel/drivers/net/virtio_net.ko.xz` → `virtio_net`.
fn module_name(path: &str) -> &str {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.split(".ko").next().unwrap_or(file)
}

fn module_file_name(path: &str) -> String {
    format!("{}.ko", module_name(path))
}

/// A module file, decompressed when the kernel package ships it compressed (busybox's insmod
/// takes plain `.ko` only).
fn read_module(modules_dir: &Path, rel: &str) -> Result<Vec<u8>> {
    let path = modules_dir.join(rel).to_string_lossy().into_owned();
    let tool = match Path::new(rel).extension().and_then(|e| e.to_str()) {
        Some("ko") => return read(&path),
        Some("xz") => "xz",
        Some("zst") => "zstd",
        Some("gz") => "gzip",
        _ => bail!("unknown module format: {path}"),
    };
    let output = Command::new(tool)
        .args(["-d", "-c", &path])
        .output()
        .with_context(|| format!("cannot run {tool} to decompress {path}"))?;
    if !output.status.success() {
        bail!(
            "{tool} -d {path} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(output.stdout)
}

fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new("gzip")
        .args(["-n", "-6", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run gzip")?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let data = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let output = child.wait_with_output().context("gzip failed")?;
    writer
        .join()
        .map_err(|_| anyhow!("gzip writer panicked"))?
        .context("cannot feed gzip")?;
    if !output.status.success() {
        bail!("gzip failed with {}", output.status);
    }
    Ok(output.stdout)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ldd_output() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibblkid.so.1 => /lib/x86_64-linux-gnu/libblkid.so.1 (0x00007f04)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f04)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f04)\n";
        assert_eq!(
            parse_ldd(text),
            [
                "/lib/x86_64-linux-gnu/libblkid.so.1",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
        );
    }

    #[test]
    fn orders_modules_after_their_dependencies() {
        let deps = parse_modules_dep(
            "kernel/drivers/virtio/virtio.ko.xz: kernel/drivers/virtio/virtio_ring.ko.xz\n\
             kernel/drivers/virtio/virtio_ring.ko.xz:\n\
             kernel/drivers/net/virtio_net.ko.xz: kernel/drivers/net/net_failover.ko.xz \
             kernel/net/core/failover.ko.xz kernel/drivers/virtio/virtio.ko.xz \
             kernel/drivers/virtio/virtio_ring.ko.xz\n\
             kernel/drivers/net/net_failover.ko.xz: kernel/net/core/failover.ko.xz\n\
             kernel/net/core/failover.ko.xz:\n",
        );
        let mut order = Vec::new();
        visit("kernel/drivers/net/virtio_net.ko.xz", &deps, &mut order).unwrap();
        let names: Vec<&str> = order.iter().map(|p| module_name(p)).collect();
        assert_eq!(
            names,
            [
                "failover",
                "net_failover",
                "virtio_ring",
                "virtio",
                "virtio_net"
            ]
        );
        assert_eq!(
            module_file_name("kernel/net/core/failover.ko.zst"),
            "failover.ko"
        );
    }
}
