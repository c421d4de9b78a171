//! End to end with a real iPXE client: `molten compose --platform ipxe` writes the bundle,
//! `molten serve` serves it on 127.0.0.1, and qemu (TCG, Debian's iPXE ROM) network-boots one
//! machine per MAC. iPXE must chain that MAC's script and load the kernel and initrd; the initrd's
//! real Ignition engine (`fetch` stage, `metal` platform) must fetch exactly that node's config,
//! whose sha512 it logs. A MAC that is not in the profile must get boot.ipxe's message.
//!
//! Test artifacts: Debian's kernel and an initramfs built by `molten_testkit::ipxe::initramfs`,
//! added to the composed bundle under `assets/` with their lines appended to `SHA256SUMS`
//! (`sha256sum assets/<file> >> SHA256SUMS`, as docs/platforms.md tells operators to do with
//! Flatcar's PXE files).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use molten_testkit::ipxe::initramfs::{self, MARKER};
use molten_testkit::ipxe::qemu::PxeMachine;
use molten_testkit::ipxe::workspace::build_binaries;
use molten_testkit::process::{log_tail, run, wait_until};
use molten_testkit::{free_port, ChildGuard};

/// One boot under TCG: firmware, iPXE, kernel, DHCP and Ignition took ~20 s here.
const BOOT_TIMEOUT: Duration = Duration::from_secs(240);
const CLUSTER: &str = "ipxe-e2e";
const NODES: [(&str, &str); 2] = [
    ("node-a", "52:54:00:4d:00:0a"),
    ("node-b", "52:54:00:4d:00:0b"),
];
const UNKNOWN_MAC: &str = "52:54:00:4d:00:99";
const KERNEL_ASSET: &str = "vmlinuz";
const INITRD_ASSET: &str = "initramfs.cpio.gz";

#[test]
fn ipxe_boots_each_node_into_its_own_ignition_config() -> Result<()> {
    let started = Instant::now();
    let progress = |what: &str| eprintln!("ipxe e2e: {what} after {:.1?}", started.elapsed());
    let bin_dir = build_binaries(&[("molten", "molten"), ("mc", "mc")])?;
    progress("molten and mc built");
    let cache = bin_dir.parent().expect("target dir").join("ipxe-e2e");
    let boot_files = initramfs::build_cached(&cache)?;
    progress("initramfs ready");
    let work = tempfile::tempdir()?;
    let port = free_port()?;
    let base_url = format!("http://10.0.2.2:{port}");

    let bundle = work.path().join("bundle");
    compose(&bin_dir, work.path(), &base_url, &bundle)?;
    add_asset(&bundle, KERNEL_ASSET, &boot_files.kernel)?;
    add_asset(&bundle, INITRD_ASSET, &boot_files.initramfs)?;
    let sums = read_sums(&bundle)?;

    let server_log = work.path().join("serve.log");
    let mut server = start_serve(&bin_dir, &bundle, port, &server_log)?;
    progress("bundle composed and served");

    for (node, mac) in NODES {
        let serial = work.path().join(format!("{node}.serial"));
        let mut machine = PxeMachine::boot(&format!("{base_url}/boot.ipxe"), mac, &serial)?;
        let console = machine
            .wait_for_console(MARKER, BOOT_TIMEOUT)
            .with_context(|| format!("booting {node} ({mac})"))?;
        check_boot(node, mac, &console, &bundle, &sums, port)
            .with_context(|| format!("{node}: console:\n{console}"))?;
        let status = machine.wait_exit(Duration::from_secs(60))?;
        ensure!(status.success(), "qemu for {node} exited with {status}");
        server.ensure_running()?;
        check_server_log(node, mac, &server_log, &bundle)?;
        progress(&format!("{node} booted and fetched its config"));
    }

    let serial = work.path().join("unknown.serial");
    let mut stranger = PxeMachine::boot(&format!("{base_url}/boot.ipxe"), UNKNOWN_MAC, &serial)?;
    let message = format!("molten: no node of cluster {CLUSTER} has MAC address {UNKNOWN_MAC}.");
    stranger.wait_for_console(&message, BOOT_TIMEOUT)?;
    stranger.kill()?;
    progress("unknown MAC turned away");
    let log = std::fs::read_to_string(&server_log)?;
    let missing = format!("GET /nodes/{}.ipxe status=404", hexhyp(UNKNOWN_MAC));
    ensure!(
        log.contains(&missing),
        "server log lacks {missing:?}:\n{log}"
    );

    let status = server.stop()?.context("molten serve was already gone")?;
    ensure!(
        status.success(),
        "molten serve exited with {status} after SIGTERM"
    );
    Ok(())
}

/// Composes the test profile; the agent is the workspace's own `mc`.
fn compose(bin_dir: &Path, work: &Path, base_url: &str, bundle: &Path) -> Result<()> {
    let nodes: String = NODES
        .iter()
        .enumerate()
        .map(|(zone, (name, mac))| {
            let roles = if zone == 0 { "[etcd, worker]" } else { "[worker]" };
            format!(
                "  - {{name: {name}, zone: {zone}, roles: {roles}, ip: 10.0.2.{}, mac: \"{mac}\"}}\n",
                15 + zone
            )
        })
        .collect();
    let profile = format!(
        "version: 1\n\
         name: {CLUSTER}\n\
         ssh_authorized_keys:\n\
         \x20 - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBSqkpJLN/W+kUxvnG0wIhyjZlDb1wEUdapqVUrmMKOC test@molten\n\
         nodes:\n{nodes}\
         platforms:\n\
         \x20 ipxe:\n\
         \x20   base_url: {base_url}\n\
         \x20   kernel: {KERNEL_ASSET}\n\
         \x20   initrd: {INITRD_ASSET}\n\
         \x20   kernel_args: [console=ttyS0, panic=-1]\n"
    );
    // A private copy: another cargo build may replace target/*/mc while the test runs.
    let agent = work.join("mc");
    std::fs::copy(bin_dir.join("mc"), &agent).context("cannot copy mc")?;
    let path = work.join("profile.yaml");
    std::fs::write(&path, profile)?;
    run(Command::new(bin_dir.join("molten"))
        .args(["compose", "--platform", "ipxe", "--profile"])
        .arg(&path)
        .arg("--out")
        .arg(bundle)
        .arg("--agent")
        .arg(&agent))?;
    Ok(())
}

/// Copies `source` to `assets/<name>` and appends its `sha256sum` line to SHA256SUMS.
fn add_asset(bundle: &Path, name: &str, source: &Path) -> Result<()> {
    let rel = format!("assets/{name}");
    std::fs::copy(source, bundle.join(&rel))
        .with_context(|| format!("cannot copy {} into the bundle", source.display()))?;
    let line = run(Command::new("sha256sum").arg(&rel).current_dir(bundle))?;
    let mut sums = std::fs::read_to_string(bundle.join("SHA256SUMS"))?;
    sums.push_str(&line);
    std::fs::write(bundle.join("SHA256SUMS"), sums)?;
    Ok(())
}

/// SHA256SUMS as path → sha256.
fn read_sums(bundle: &Path) -> Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(bundle.join("SHA256SUMS"))?;
    text.lines()
        .map(|line| {
            let (hash, path) = line.split_once("  ").context("malformed SHA256SUMS line")?;
            Ok((path.to_string(), hash.to_string()))
        })
        .collect()
}

fn start_serve(bin_dir: &Path, bundle: &Path, port: u16, log: &Path) -> Result<ChildGuard> {
    let out = File::create(log)?;
    let child = Command::new(bin_dir.join("molten"))
        .arg("serve")
        .arg(bundle)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .context("cannot start molten serve")?;
    let mut guard = ChildGuard::new("molten serve", child);
    wait_until(
        "molten serve to listen",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            guard
                .ensure_running()
                .with_context(|| log_tail(log, 2000))?;
            Ok(std::fs::read_to_string(log)?
                .contains("listening on http://")
                .then_some(()))
        },
    )?;
    Ok(guard)
}

/// What the console must show for `node`: iPXE chained its script and loaded kernel and initrd
/// from the server, and Ignition fetched its config, whose sha512 matches the bundle's file
/// (and that file matches SHA256SUMS).
fn check_boot(
    node: &str,
    mac: &str,
    console: &str,
    bundle: &Path,
    sums: &BTreeMap<String, String>,
    port: u16,
) -> Result<()> {
    let base = format!("http://10.0.2.2:{port}");
    for loaded in [
        format!("{base}/boot.ipxe... ok"),
        format!("nodes/{}.ipxe... ok", hexhyp(mac)),
        format!("{base}/assets/{KERNEL_ASSET}... ok"),
        format!("{base}/assets/{INITRD_ASSET}... ok"),
        format!("ignition.config.url={base}/ignition/{node}.ign"),
        format!("GET {base}/ignition/{node}.ign: attempt #1"),
        "Ignition finished successfully".to_string(),
    ] {
        ensure!(console.contains(&loaded), "console lacks {loaded:?}");
    }
    let marker = console
        .lines()
        .find(|line| line.starts_with(MARKER))
        .context("no marker line")?;
    let config = format!("ignition/{node}.ign");
    let file = bundle.join(&config);
    let sha512 = digest("sha512sum", &file)?;
    ensure!(
        marker == format!("{MARKER} rc=0 sha512={sha512}"),
        "Ignition fetched something else than {config} (sha512 {sha512}): {marker:?}"
    );
    let sha256 = digest("sha256sum", &file)?;
    ensure!(
        sums.get(&config) == Some(&sha256),
        "{config} does not match SHA256SUMS"
    );
    for (other, _) in NODES.iter().filter(|(other, _)| *other != node) {
        let other_sha512 = digest("sha512sum", &bundle.join(format!("ignition/{other}.ign")))?;
        ensure!(
            other_sha512 != sha512,
            "{node} and {other} have the same config"
        );
    }
    Ok(())
}

/// The server's log names the node on its script and config requests and summarizes the fetch.
fn check_server_log(node: &str, mac: &str, log: &Path, bundle: &Path) -> Result<()> {
    let text = std::fs::read_to_string(log)?;
    let size = std::fs::metadata(bundle.join(format!("ignition/{node}.ign")))?.len();
    let mac = hexhyp(mac);
    let wanted = [
        format!("GET /nodes/{mac}.ipxe status=200 "),
        format!("node={node} mac={mac}"),
        format!("GET /assets/{KERNEL_ASSET} status=200 "),
        format!("GET /assets/{INITRD_ASSET} status=200 "),
        format!("GET /ignition/{node}.ign status=200 bytes={size} node={node}"),
        format!("node {node} fetched its Ignition config ignition/{node}.ign ({size} bytes"),
    ];
    for line in wanted {
        if !text.contains(&line) {
            bail!("server log lacks {line:?}:\n{text}");
        }
    }
    Ok(())
}

fn digest(tool: &str, file: &Path) -> Result<String> {
    let out = run(Command::new(tool).arg(file))?;
    Ok(out
        .split_whitespace()
        .next()
        .context("empty digest")?
        .to_string())
}

fn hexhyp(mac: &str) -> String {
    mac.replace(':', "-")
}
