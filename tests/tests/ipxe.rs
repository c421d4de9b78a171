//! End to end with a real iPXE client: `molten compose --platform ipxe` writes the bundle,
//! `molten serve` serves it on 127.0.0.1, and qemu (TCG, Debian's iPXE ROM) network-boots one
//! machine per MAC. iPXE must chain that MAC's script and load the kernel and initrd; the initrd's
//! real Ignition engine (`fetch` stage, `metal` platform) must fetch exactly that node's config,
//! whose sha512 it logs. A MAC that is not in the profile must get boot.ipxe's message.
//! A second test runs the same boot with DHCP from dnsmasq using docs/platforms.md's example
//! configuration, in a network namespace of its own.
//!
//! Test artifacts: Debian's kernel and an initramfs built by `molten_testkit::ipxe::initramfs`,
//! listed in the profile's `platforms.ipxe.assets` (as docs/platforms.md tells operators to list
//! Flatcar's PXE files), so `molten compose` copies them into `assets/` and `SHA256SUMS`.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use molten_testkit::ipxe::initramfs::{self, BootFiles, MARKER};
use molten_testkit::ipxe::qemu::{PxeMachine, QEMU};
use molten_testkit::ipxe::workspace::build_binaries;
use molten_testkit::lab::netns::NetNs;
use molten_testkit::lab::unique_id;
use molten_testkit::packages::ensure_binary;
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
const DNSMASQ: &str = "/usr/sbin/dnsmasq";

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
    let assets = compose(&bin_dir, work.path(), &base_url, &bundle, &boot_files)?;
    let sums = read_sums(&bundle)?;

    let server_log = work.path().join("serve.log");
    let molten = Command::new(bin_dir.join("molten"));
    let listen = format!("127.0.0.1:{port}");
    let mut server = start_serve(molten, &bundle, &listen, &server_log)?;
    progress("bundle composed and served");

    for (node, mac) in NODES {
        let serial = work.path().join(format!("{node}.serial"));
        let mut machine = PxeMachine::boot(&format!("{base_url}/boot.ipxe"), mac, &serial)?;
        let console = machine
            .wait_for_console(MARKER, BOOT_TIMEOUT)
            .with_context(|| format!("booting {node} ({mac})"))?;
        check_boot(node, mac, &console, &bundle, &sums, &base_url, &assets)
            .with_context(|| format!("{node}: console:\n{console}"))?;
        let status = machine.wait_exit(Duration::from_secs(60))?;
        ensure!(status.success(), "qemu for {node} exited with {status}");
        server.ensure_running()?;
        check_server_log(node, mac, &server_log, &bundle, &assets)?;
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

/// The boot host of docs/platforms.md in a network namespace: dnsmasq runs the docs' config
/// snippet verbatim (only the TFTP root is moved) on a bridge with a tap device for qemu, and
/// `molten serve` listens on the bridge. iPXE gets `boot.ipxe`'s URL from dnsmasq (it sends
/// user class `iPXE`), not from qemu, and the node fetches its own config as before.
#[test]
fn dnsmasq_from_the_docs_hands_ipxe_the_bundle() -> Result<()> {
    ensure_binary(DNSMASQ, "dnsmasq-base")?;
    let bin_dir = build_binaries(&[("molten", "molten"), ("mc", "mc")])?;
    let cache = bin_dir.parent().expect("target dir").join("ipxe-e2e");
    let boot_files = initramfs::build_cached(&cache)?;
    let work = tempfile::tempdir()?;
    // The docs' boot host and port; they exist only inside the namespace.
    let base_url = "http://10.0.0.2:8080";
    let bundle = work.path().join("bundle");
    let assets = compose(&bin_dir, work.path(), base_url, &bundle, &boot_files)?;
    let sums = read_sums(&bundle)?;

    let ns = NetNs::create(&format!("{}-dhcp", unique_id()))?;
    ns.ip(&["link", "add", "br0", "type", "bridge"])?;
    ns.ip(&["tuntap", "add", "tap0", "mode", "tap"])?;
    ns.ip(&["link", "set", "tap0", "master", "br0"])?;
    ns.ip(&["addr", "add", "10.0.0.2/24", "dev", "br0"])?;
    ns.ip(&["link", "set", "br0", "up"])?;
    ns.ip(&["link", "set", "tap0", "up"])?;

    let tftp = work.path().join("tftp");
    std::fs::create_dir(&tftp)?;
    let config = work.path().join("dnsmasq.conf");
    std::fs::write(&config, docs_dnsmasq_config(&tftp)?)?;
    let dnsmasq_log = work.path().join("dnsmasq.log");
    let mut dnsmasq = ns.command(DNSMASQ);
    dnsmasq
        .args([
            "--no-daemon",
            "--log-dhcp",
            "--port=0",
            "--interface=br0",
            "--bind-interfaces",
        ])
        .arg(format!("--conf-file={}", config.display()))
        .arg(format!(
            "--dhcp-leasefile={}",
            work.path().join("leases").display()
        ))
        .stdin(Stdio::null())
        .stdout(File::create(&dnsmasq_log)?)
        .stderr(File::create(work.path().join("dnsmasq.err"))?);
    let mut dnsmasq = ChildGuard::new("dnsmasq", dnsmasq.spawn().context("cannot start dnsmasq")?);

    let server_log = work.path().join("serve.log");
    let molten = ns.command(bin_dir.join("molten").to_str().context("non-UTF-8 path")?);
    let mut server = start_serve(molten, &bundle, "10.0.0.2:8080", &server_log)?;

    let (node, mac) = NODES[0];
    let serial = work.path().join(format!("{node}.serial"));
    let mut machine = PxeMachine::boot_on_tap(ns.command(QEMU), "tap0", mac, &serial)?;
    let console = machine
        .wait_for_console(MARKER, BOOT_TIMEOUT)
        .with_context(|| format!("booting {node} ({mac}) with DHCP from dnsmasq"))?;
    ensure!(
        console.contains(&format!("Filename: {base_url}/boot.ipxe")),
        "iPXE did not get boot.ipxe's URL from dnsmasq:\n{console}"
    );
    check_boot(node, mac, &console, &bundle, &sums, base_url, &assets)
        .with_context(|| format!("{node}: console:\n{console}"))?;
    let status = machine.wait_exit(Duration::from_secs(60))?;
    ensure!(status.success(), "qemu for {node} exited with {status}");
    check_server_log(node, mac, &server_log, &bundle, &assets)?;
    dnsmasq.ensure_running()?;
    let log = std::fs::read_to_string(&dnsmasq_log)?
        + &std::fs::read_to_string(work.path().join("dnsmasq.err"))?;
    for line in [
        "tags: ipxe, br0",
        &format!("bootfile-name  {base_url}/boot.ipxe"),
    ] {
        ensure!(log.contains(line), "dnsmasq's log lacks {line:?}:\n{log}");
    }
    let status = server.stop()?.context("molten serve was already gone")?;
    ensure!(
        status.success(),
        "molten serve exited with {status} after SIGTERM"
    );
    Ok(())
}

/// The dnsmasq configuration block of docs/platforms.md, with `tftp-root` pointed at `tftp`.
fn docs_dnsmasq_config(tftp: &Path) -> Result<String> {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/platforms.md");
    let text = std::fs::read_to_string(&docs).context("cannot read docs/platforms.md")?;
    let after = text
        .split_once("`/etc/dnsmasq.d/molten.conf`")
        .context("docs/platforms.md has no dnsmasq example")?
        .1;
    let block = after
        .split_once("```ini\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .context("the dnsmasq example is not an ```ini block")?
        .0;
    ensure!(
        block.contains("dhcp-boot=tag:ipxe,"),
        "unexpected dnsmasq example:\n{block}"
    );
    Ok(block
        .lines()
        .map(|line| match line.strip_prefix("tftp-root=") {
            Some(_) => format!("tftp-root={}\n", tftp.display()),
            None => format!("{line}\n"),
        })
        .collect())
}

/// The boot files' names under `assets/`: their own file names, as `platforms.ipxe.assets`
/// serves them.
struct AssetNames {
    kernel: String,
    initrd: String,
}

/// Composes the test profile, whose `platforms.ipxe.assets` lists the boot files; the agent is
/// the workspace's own `mc`. Checks that the bundle holds the boot files and `SHA256SUMS` lists
/// them with their sha256.
fn compose(
    bin_dir: &Path,
    work: &Path,
    base_url: &str,
    bundle: &Path,
    boot_files: &BootFiles,
) -> Result<AssetNames> {
    let name = |path: &Path| -> Result<String> {
        Ok(path
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{} has no UTF-8 file name", path.display()))?
            .to_string())
    };
    let assets = AssetNames {
        kernel: name(&boot_files.kernel)?,
        initrd: name(&boot_files.initramfs)?,
    };
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
         \x20   kernel: {kernel}\n\
         \x20   initrd: {initrd}\n\
         \x20   kernel_args: [console=ttyS0, panic=-1]\n\
         \x20   data_disk: /dev/vdb\n\
         \x20   assets:\n\
         \x20     - \"{kernel_path}\"\n\
         \x20     - \"{initrd_path}\"\n",
        kernel = assets.kernel,
        initrd = assets.initrd,
        kernel_path = boot_files.kernel.display(),
        initrd_path = boot_files.initramfs.display(),
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

    let sums = read_sums(bundle)?;
    for (asset, source) in [
        (&assets.kernel, &boot_files.kernel),
        (&assets.initrd, &boot_files.initramfs),
    ] {
        let rel = format!("assets/{asset}");
        let copied = std::fs::read(bundle.join(&rel)).with_context(|| format!("{rel} missing"))?;
        ensure!(
            copied == std::fs::read(source)?,
            "{rel} differs from {}",
            source.display()
        );
        let sha256 = digest("sha256sum", source)?;
        ensure!(
            sums.get(&rel) == Some(&sha256),
            "SHA256SUMS does not list {rel} with sha256 {sha256}: {sums:?}"
        );
    }
    Ok(assets)
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

/// Runs `molten serve` (`molten` is the command that starts the binary, possibly inside a
/// namespace) and waits until it listens.
fn start_serve(mut molten: Command, bundle: &Path, listen: &str, log: &Path) -> Result<ChildGuard> {
    let out = File::create(log)?;
    let child = molten
        .arg("serve")
        .arg(bundle)
        .args(["--listen", listen])
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
    base: &str,
    assets: &AssetNames,
) -> Result<()> {
    for loaded in [
        format!("{base}/boot.ipxe... ok"),
        format!("nodes/{}.ipxe... ok", hexhyp(mac)),
        format!("{base}/assets/{}... ok", assets.kernel),
        format!("{base}/assets/{}... ok", assets.initrd),
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
    // Running from RAM, the node keeps its state on its data disk (the initramfs runs only the
    // fetch stage, so the disk itself is not exercised here; compose_ignition.rs applies the
    // files stage).
    let text = std::fs::read_to_string(&file)?;
    for wanted in [
        r#""filesystems":[{"device":"/dev/vdb","format":"ext4","label":"molten-data","#,
        r#""wipeFilesystem":false"#,
        "var-lib-molten.mount",
    ] {
        ensure!(text.contains(wanted), "{config} lacks {wanted:?}");
    }
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
fn check_server_log(
    node: &str,
    mac: &str,
    log: &Path,
    bundle: &Path,
    assets: &AssetNames,
) -> Result<()> {
    let text = std::fs::read_to_string(log)?;
    let size = std::fs::metadata(bundle.join(format!("ignition/{node}.ign")))?.len();
    let mac = hexhyp(mac);
    let wanted = [
        format!("GET /nodes/{mac}.ipxe status=200 "),
        format!("node={node} mac={mac}"),
        format!("GET /assets/{} status=200 ", assets.kernel),
        format!("GET /assets/{} status=200 ", assets.initrd),
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
