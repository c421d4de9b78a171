//! A whole lab: the profile composed by the real `molten compose` for the vagrant platform,
//! the bundle served by the real `molten serve` on the lab bridge, and one node per profile
//! node whose root got the node's **pointer** config applied by the real Ignition engine —
//! which fetches the full config from the server and checks its sha512, then fetches `mc` and
//! checks its sha512 — exactly what a Vagrant VM's Ignition does, minus VirtualBox.
//!
//! Teardown (drop): every node's PID 1 is killed, the server stopped, the namespaces deleted
//! and the work dir removed (kept when `MOLTEN_LAB_KEEP=1`, for debugging).

use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tempfile::TempDir;

use super::binaries::Binaries;
use super::image::ensure_image;
use super::netns::Hub;
use super::node::{copy_image, LabNode};
use super::{image_cache, nodes_dir, unique_id};
use crate::ignition;
use crate::process::{die_with_parent, log_tail, wait_until, ChildGuard};

/// Where the lab installs the flanneld stand-in in each node (the lab profile's
/// `flannel.binary`).
pub const STANDIN_PATH: &str = "usr/local/bin/flanneld-standin";

/// The lab bridge's prefix length (the profile's addresses share one /24).
const BRIDGE_PREFIX: u8 = 24;

#[derive(Debug, Clone)]
pub struct LabOptions {
    pub profile: PathBuf,
    pub binaries: Binaries,
    /// The flanneld stand-in binary to install on every node.
    pub standin: PathBuf,
}

/// What the composed bundle says about the lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabSpec {
    /// Node names, from the bundle's pointer configs (sorted).
    pub names: Vec<String>,
    /// Names and addresses, filled in as nodes are provisioned.
    pub nodes: Vec<(String, Ipv4Addr)>,
    pub host_ip: Ipv4Addr,
    pub serve_port: u16,
}

#[derive(Debug)]
pub struct Lab {
    // Drop order matters: nodes, then the server, then the hub, then the files.
    pub nodes: Vec<LabNode>,
    server: ChildGuard,
    pub hub: Hub,
    pub spec: LabSpec,
    pub bundle: PathBuf,
    pub binaries: Binaries,
    work: Option<TempDir>,
}

impl Lab {
    /// Composes, serves and provisions every node (not booted yet).
    pub fn provision(options: &LabOptions) -> Result<Self> {
        let image = ensure_image(&image_cache())?;
        std::fs::create_dir_all(nodes_dir())?;
        let work = tempfile::Builder::new()
            .prefix("lab-")
            .tempdir_in(nodes_dir())?;
        // Snapshot the binaries: a concurrent cargo build may replace them in target/ while
        // the lab runs (and the Ignition pins mc's hash).
        let binaries = snapshot_binaries(&options.binaries, &work.path().join("bin"))?;
        let options = &LabOptions {
            binaries,
            ..options.clone()
        };
        let bundle = work.path().join("bundle");
        compose(options, &bundle)?;
        let spec = read_bundle(&bundle)?;
        let id = unique_id();
        let hub = Hub::create(&format!("{id}-hub"), spec.host_ip, BRIDGE_PREFIX)?;
        let server = serve(&hub, &options.binaries.molten, &bundle, &spec, work.path())?;
        let mut nodes = Vec::new();
        let mut spec = spec;
        for (i, name) in spec.names.iter().enumerate() {
            let dir = work.path().join(name);
            let root = copy_image(&image, &dir)?;
            install_standin(&options.standin, &root)?;
            // The engine fetches over the lab bridge (from the hub), like the node's initramfs.
            let pointer = bundle.join(format!("pointer/{name}.ign"));
            let log = ignition::apply_files_in_netns(&pointer, &root, hub.ns.name())
                .with_context(|| format!("Ignition failed for {name}"))?;
            std::fs::write(dir.join("ignition.log"), log)?;
            // The address the agent will use: from the node config Ignition wrote.
            let ip = static_ip(&root).with_context(|| format!("node {name}"))?;
            let netns = hub.attach(&format!("{id}-n{i}"), &format!("p{i}"), ip)?;
            spec.nodes.push((name.clone(), ip));
            nodes.push(LabNode::from_prepared(name, ip, &dir, netns));
        }
        let keep = std::env::var_os("MOLTEN_LAB_KEEP").is_some_and(|v| v == "1");
        let work = if keep {
            eprintln!("molten-lab: keeping {}", work.path().display());
            let _ = work.keep();
            None
        } else {
            Some(work)
        };
        Ok(Self {
            nodes,
            server,
            hub,
            spec,
            bundle,
            binaries: options.binaries.clone(),
            work,
        })
    }

    /// Boots every node; returns when each has a PID 1 (not when they converged).
    pub fn boot_all(&mut self) -> Result<Instant> {
        let started = Instant::now();
        for node in &mut self.nodes {
            node.boot()?;
        }
        Ok(started)
    }

    pub fn node(&self, name: &str) -> &LabNode {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no lab node {name}"))
    }

    pub fn node_mut(&mut self, name: &str) -> &mut LabNode {
        self.nodes
            .iter_mut()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no lab node {name}"))
    }

    /// etcd client URLs of every node, comma separated.
    pub fn etcd_endpoints(&self) -> String {
        self.spec
            .nodes
            .iter()
            .map(|(_, ip)| format!("http://{ip}:2379"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// etcd client URLs of the named nodes, comma separated.
    pub fn etcd_endpoints_of(&self, names: &[&str]) -> String {
        self.spec
            .nodes
            .iter()
            .filter(|(name, _)| names.contains(&name.as_str()))
            .map(|(_, ip)| format!("http://{ip}:2379"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Runs the host's `etcdctl` inside the hub namespace (it reaches every node there).
    pub fn etcdctl(&self, args: &[&str]) -> Result<String> {
        self.etcdctl_at(&self.etcd_endpoints(), args)
    }

    /// [`Lab::etcdctl`] against the given endpoints only.
    pub fn etcdctl_at(&self, endpoints: &str, args: &[&str]) -> Result<String> {
        let out = self
            .hub
            .ns
            .command(crate::etcd::ETCDCTL)
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoints}"))
            .arg("--command-timeout=10s")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("failed to run etcdctl in the hub")?;
        if !out.status.success() {
            bail!(
                "etcdctl {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Every node's [`LabNode::diagnose`] for the units molten touches.
    pub fn diagnose(&self) -> String {
        let units = [
            "etcd.service",
            "mc.service",
            "flanneld.service",
            "docker.service",
            "mc-network.service",
        ];
        self.nodes
            .iter()
            .filter(|n| n.pid1().is_some())
            .map(|n| n.diagnose(&units))
            .collect()
    }

    /// The PID of `molten serve` (0 once stopped).
    pub fn server_pid(&self) -> u32 {
        self.server.pid()
    }

    /// The server's request log so far.
    pub fn serve_log(&self) -> String {
        match &self.work {
            Some(w) => log_tail(&w.path().join("serve.log"), 20_000),
            None => String::from("<work dir kept; see serve.log there>"),
        }
    }
}

fn snapshot_binaries(binaries: &Binaries, dir: &Path) -> Result<Binaries> {
    std::fs::create_dir_all(dir)?;
    let copy = |from: &Path, name: &str| -> Result<PathBuf> {
        let to = dir.join(name);
        std::fs::copy(from, &to).with_context(|| format!("failed to copy {}", from.display()))?;
        Ok(to)
    };
    Ok(Binaries {
        molten: copy(&binaries.molten, "molten")?,
        mc: copy(&binaries.mc, "mc")?,
    })
}

fn compose(options: &LabOptions, bundle: &Path) -> Result<()> {
    let out = Command::new(&options.binaries.molten)
        .args(["compose", "--platform", "vagrant", "--profile"])
        .arg(&options.profile)
        .arg("--agent")
        .arg(&options.binaries.mc)
        .arg("--out")
        .arg(bundle)
        .stdin(Stdio::null())
        .output()
        .context("failed to run molten compose")?;
    if !out.status.success() {
        bail!(
            "molten compose failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Starts `molten serve` on the hub's address and waits until it accepts connections.
fn serve(
    hub: &Hub,
    molten: &Path,
    bundle: &Path,
    spec: &LabSpec,
    work: &Path,
) -> Result<ChildGuard> {
    let listen = format!("{}:{}", spec.host_ip, spec.serve_port);
    let log = std::fs::File::create(work.join("serve.log"))?;
    let mut cmd = hub.ns.command(&molten.display().to_string());
    die_with_parent(&mut cmd);
    let child = cmd
        .arg("serve")
        .arg(bundle)
        .arg("--listen")
        .arg(&listen)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("failed to start molten serve")?;
    let mut server = ChildGuard::new("molten serve", child);
    let addr = (spec.host_ip, spec.serve_port);
    wait_until(
        "molten serve to listen",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            server.ensure_running().with_context(|| {
                format!("serve.log:\n{}", log_tail(&work.join("serve.log"), 3000))
            })?;
            let up = hub
                .ns
                .run_in(move || Ok(TcpStream::connect(addr).is_ok()))?;
            Ok(up.then_some(()))
        },
    )?;
    Ok(server)
}

fn install_standin(standin: &Path, root: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dest = root.join(STANDIN_PATH);
    std::fs::create_dir_all(dest.parent().expect("has a parent"))?;
    std::fs::copy(standin, &dest)
        .with_context(|| format!("failed to install the flanneld stand-in from {standin:?}"))?;
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// Node names from the pointer configs, the server's address from their replace URL.
pub fn read_bundle(bundle: &Path) -> Result<LabSpec> {
    let mut pointers: Vec<PathBuf> = std::fs::read_dir(bundle.join("pointer"))
        .context("the bundle has no pointer/ directory (not a vagrant bundle?)")?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    pointers.sort();
    let mut names = Vec::new();
    let mut server = None;
    for pointer in &pointers {
        let name = pointer
            .file_stem()
            .and_then(|s| s.to_str())
            .context("bad pointer file name")?
            .to_string();
        let text = std::fs::read_to_string(pointer)?;
        let v: serde_json::Value = serde_json::from_str(&text)?;
        let source = v["ignition"]["config"]["replace"]["source"]
            .as_str()
            .with_context(|| format!("{} has no replace source", pointer.display()))?;
        server = Some(parse_http_authority(source)?);
        names.push(name);
    }
    let (host_ip, serve_port) = server.context("the bundle has no nodes")?;
    Ok(LabSpec {
        names,
        nodes: Vec::new(),
        host_ip,
        serve_port,
    })
}

fn parse_http_authority(url: &str) -> Result<(Ipv4Addr, u16)> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url} is not an http URL"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = authority.split_once(':').unwrap_or((authority, "80"));
    Ok((
        host.parse()
            .with_context(|| format!("{url}: host is not an IPv4 address"))?,
        port.parse().with_context(|| format!("{url}: bad port"))?,
    ))
}

/// The node's static private address from the node config Ignition wrote into `root`.
fn static_ip(root: &Path) -> Result<Ipv4Addr> {
    let path = root.join(molten_contract::NODE_CONFIG_PATH.trim_start_matches('/'));
    let config = molten_contract::NodeConfig::load(&path)?;
    match config.node.address {
        molten_contract::AddressSource::Static { private_ip } => Ok(private_ip),
        other => bail!("the lab needs static addresses, found {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_server_authority() {
        assert_eq!(
            parse_http_authority("http://10.88.0.1:8080/ignition/x.ign").unwrap(),
            ("10.88.0.1".parse().unwrap(), 8080)
        );
        assert_eq!(
            parse_http_authority("http://10.88.0.1/x").unwrap(),
            ("10.88.0.1".parse().unwrap(), 80)
        );
        assert!(parse_http_authority("https://h/x").is_err());
    }
}
