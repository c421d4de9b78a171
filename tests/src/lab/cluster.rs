//! A whole lab: the profile composed by the real `molten compose` for the vagrant platform
//! with a cluster authority (`molten authority init`), the bundle served by the real `molten
//! serve --authority` on the lab bridge (plain HTTP for `mc`, HTTPS for the configs and for
//! enrollment), and one node per profile node whose root got the node's **pointer** config
//! applied by the real Ignition engine — which fetches the full config over HTTPS pinned to the
//! authority CA and checks its sha512, then fetches `mc` and checks its sha512 — exactly what a
//! Vagrant VM's Ignition does, minus VirtualBox. The operator's own credentials (etcd `root`,
//! a Docker client) come from `molten authority issue-client`, as an operator's would.
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
use crate::tls::ClientIdentity;

/// Where the lab installs the flanneld stand-in in each node (the lab profile's
/// `flannel.binary`).
pub const STANDIN_PATH: &str = "usr/local/bin/flanneld-standin";

/// The lab bridge's prefix length (the profile's addresses share one /24).
const BRIDGE_PREFIX: u8 = 24;

/// How long the certificates the authority signs stay valid in the lab, unless a test asks
/// for less ([`Lab::restart_serve`]).
pub const CERT_VALIDITY: &str = "1d";

/// The operator's client name in the authority (`molten authority issue-client --name`).
pub const OPERATOR: &str = "operator";

/// The operator's credentials, as `molten authority issue-client --name operator --etcd-root`
/// writes them.
#[derive(Debug, Clone)]
pub struct Operator {
    pub dir: PathBuf,
}

impl Operator {
    pub fn etcd_ca(&self) -> PathBuf {
        self.dir.join("etcd-ca.pem")
    }
    pub fn docker_ca(&self) -> PathBuf {
        self.dir.join("docker-ca.pem")
    }
    /// etcd `root`.
    pub fn etcd_root(&self) -> ClientIdentity {
        ClientIdentity::new(
            self.dir.join("etcd-root.pem"),
            self.dir.join("etcd-root.key"),
        )
    }
    /// A Docker client (what BOSH gets).
    pub fn docker_client(&self) -> ClientIdentity {
        ClientIdentity::new(
            self.dir.join(format!("{OPERATOR}.pem")),
            self.dir.join(format!("{OPERATOR}.key")),
        )
    }
}

#[derive(Debug, Clone)]
pub struct LabOptions {
    pub profile: PathBuf,
    pub binaries: Binaries,
    /// The flanneld stand-in binary to install on every node.
    pub standin: PathBuf,
}

impl LabOptions {
    /// The lab's three-node profile (`tests/lab/lab.yaml`) with `molten` and `mc` built from
    /// this workspace ([`super::binaries::product_binaries`]). `standin` is the
    /// `flanneld-standin` binary (an integration test's `CARGO_BIN_EXE_flanneld-standin`).
    pub fn lab_profile(standin: &Path) -> Result<Self> {
        Ok(Self {
            profile: lab_profile(),
            binaries: super::binaries::product_binaries()?,
            standin: standin.to_path_buf(),
        })
    }
}

/// The lab's profile: three Debian members, `tests/lab/lab.yaml`.
pub fn lab_profile() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("lab/lab.yaml")
}

/// What the composed bundle says about the lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabSpec {
    /// Node names, from the bundle's pointer configs (sorted).
    pub names: Vec<String>,
    /// Names and addresses, filled in as nodes are provisioned.
    pub nodes: Vec<(String, Ipv4Addr)>,
    pub host_ip: Ipv4Addr,
    /// `molten serve`'s plain HTTP port (`mc`, checked by its hash).
    pub serve_port: u16,
    /// The HTTPS port (configs, enrollment, renewal) the pointer configs name.
    pub tls_port: u16,
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
    /// The node image every node's root is copied from.
    image: PathBuf,
    /// The flanneld stand-in installed on every node.
    standin: PathBuf,
    /// This lab's namespace and cgroup prefix ([`unique_id`]).
    id: String,
    /// Bridge ports handed out so far (never reused, also after [`Lab::retire_node`]).
    ports: usize,
    /// The cluster authority's directory (CA keys: stays on the "operator's machine").
    pub authority: PathBuf,
    pub operator: Operator,
    /// The lab's work dir (kept on disk with `MOLTEN_LAB_KEEP=1`).
    pub dir: PathBuf,
    /// Removed on drop (None when kept).
    _work: Option<TempDir>,
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
        let authority = work.path().join("authority");
        molten(
            &options.binaries.molten,
            &authority_args("init", &options.profile, &authority),
        )?;
        compose(options, &authority, &bundle, &[])?;
        let operator = Operator {
            dir: work.path().join(OPERATOR),
        };
        let mut issue = authority_args("issue-client", &options.profile, &authority);
        issue.extend(["--name", OPERATOR, "--etcd-root", "--out"].map(String::from));
        issue.push(operator.dir.display().to_string());
        molten(&options.binaries.molten, &issue)?;
        let spec = read_bundle(&bundle)?;
        let id = unique_id();
        let hub = Hub::create(&format!("{id}-hub"), spec.host_ip, BRIDGE_PREFIX)?;
        let server = serve(
            &hub,
            &options.binaries.molten,
            &Served {
                bundle: &bundle,
                authority: &authority,
                cert_validity: CERT_VALIDITY,
            },
            &spec,
            work.path(),
        )?;
        let dir = work.path().to_path_buf();
        let keep = std::env::var_os("MOLTEN_LAB_KEEP").is_some_and(|v| v == "1");
        let work = if keep {
            eprintln!("molten-lab: keeping {}", work.path().display());
            let _ = work.keep();
            None
        } else {
            Some(work)
        };
        let names = spec.names.clone();
        let mut lab = Self {
            nodes: Vec::new(),
            server,
            hub,
            spec,
            bundle,
            binaries: options.binaries.clone(),
            image,
            standin: options.standin.clone(),
            id,
            ports: 0,
            authority,
            operator,
            dir,
            _work: work,
        };
        for name in &names {
            lab.provision_node(name)?;
        }
        Ok(lab)
    }

    /// Provisions one more node (not booted) from the bundle being served: a copy of the image
    /// whose pointer config the real Ignition engine applies over the lab bridge, on a new
    /// port of the bridge at the address from its node config. `name` must have a pointer
    /// config in [`Lab::bundle`] (see [`Lab::serve_bundle`] to serve a re-composed one).
    pub fn provision_node(&mut self, name: &str) -> Result<()> {
        if self.nodes.iter().any(|n| n.name == name) {
            bail!("the lab already has a node {name}");
        }
        let i = self.ports;
        self.ports += 1;
        let dir = self.dir.join(name);
        let root = copy_image(&self.image, &dir)?;
        install_standin(&self.standin, &root)?;
        // The engine fetches over the lab bridge (from the hub), like the node's initramfs.
        let pointer = self.bundle.join(format!("pointer/{name}.ign"));
        let log = ignition::apply_files_in_netns(&pointer, &root, self.hub.ns.name())
            .with_context(|| format!("Ignition failed for {name}"))?;
        std::fs::write(dir.join("ignition.log"), log)?;
        // The address the agent will use: from the node config Ignition wrote.
        let ip = static_ip(&root).with_context(|| format!("node {name}"))?;
        let netns = self
            .hub
            .attach(&format!("{}-n{i}", self.id), &format!("p{i}"), ip)?;
        if !self.spec.names.iter().any(|n| n == name) {
            self.spec.names.push(name.to_string());
            self.spec.names.sort();
        }
        self.spec.nodes.push((name.to_string(), ip));
        self.nodes
            .push(LabNode::from_prepared(name, ip, &dir, netns));
        Ok(())
    }

    /// Takes a node out of the lab for good, as a decommissioned machine: PID 1 killed, its
    /// network namespace deleted; it is no longer one of [`Lab::nodes`] or the lab's etcd
    /// endpoints. (Its files stay in the work dir.)
    pub fn retire_node(&mut self, name: &str) -> Result<()> {
        let at = self
            .nodes
            .iter()
            .position(|n| n.name == name)
            .with_context(|| format!("no lab node {name}"))?;
        let mut node = self.nodes.remove(at);
        node.kill()?;
        drop(node);
        self.spec.nodes.retain(|(n, _)| n != name);
        self.spec.names.retain(|n| n != name);
        Ok(())
    }

    /// Serves `bundle` (a re-composition of the lab's profile with the same authority, see
    /// [`Lab::recompose`]) from now on: `molten serve` is restarted on it, with the lab's
    /// certificate validity.
    pub fn serve_bundle(&mut self, bundle: &Path) -> Result<()> {
        let spec = read_bundle(bundle)?;
        if (spec.host_ip, spec.serve_port, spec.tls_port)
            != (self.spec.host_ip, self.spec.serve_port, self.spec.tls_port)
        {
            bail!(
                "{} is served elsewhere than the lab's bundle",
                bundle.display()
            );
        }
        self.bundle = bundle.to_path_buf();
        self.restart_serve(CERT_VALIDITY)
    }

    /// Stops `molten serve` and starts it again on the same bundle and authority, signing
    /// certificates valid for `cert_validity` ("90s", "1d") from now on. Its log continues.
    pub fn restart_serve(&mut self, cert_validity: &str) -> Result<()> {
        self.server.stop()?;
        self.server = serve(
            &self.hub,
            &self.binaries.molten,
            &Served {
                bundle: &self.bundle,
                authority: &self.authority,
                cert_validity,
            },
            &self.spec,
            &self.dir,
        )?;
        Ok(())
    }

    /// Composes the lab's profile again with its authority into `out`, as an operator
    /// re-provisioning would (every node gets a new enrollment token); `extra` adds flags.
    pub fn recompose(&self, profile: &Path, out: &Path, extra: &[&str]) -> Result<()> {
        let options = LabOptions {
            profile: profile.to_path_buf(),
            binaries: self.binaries.clone(),
            standin: PathBuf::new(),
        };
        compose(&options, &self.authority, out, extra)
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
            .map(|(_, ip)| format!("https://{ip}:2379"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// etcd client URLs of the named nodes, comma separated.
    pub fn etcd_endpoints_of(&self, names: &[&str]) -> String {
        self.spec
            .nodes
            .iter()
            .filter(|(name, _)| names.contains(&name.as_str()))
            .map(|(_, ip)| format!("https://{ip}:2379"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Runs the host's `etcdctl` inside the hub namespace (it reaches every node there), as
    /// the operator's etcd `root`.
    pub fn etcdctl(&self, args: &[&str]) -> Result<String> {
        self.etcdctl_at(&self.etcd_endpoints(), args)
    }

    /// [`Lab::etcdctl`] against the given endpoints only.
    pub fn etcdctl_at(&self, endpoints: &str, args: &[&str]) -> Result<String> {
        self.etcdctl_as(Some(&self.operator.etcd_root()), endpoints, args)
    }

    /// `etcdctl` from the hub presenting `client` (or no certificate), trusting the etcd CA.
    pub fn etcdctl_as(
        &self,
        client: Option<&ClientIdentity>,
        endpoints: &str,
        args: &[&str],
    ) -> Result<String> {
        let mut command = self.hub.ns.command(crate::etcd::ETCDCTL);
        command
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoints}"))
            .arg(format!("--cacert={}", self.operator.etcd_ca().display()))
            .arg("--command-timeout=10s")
            .arg("--dial-timeout=5s");
        if let Some(client) = client {
            command
                .arg(format!("--cert={}", client.cert.display()))
                .arg(format!("--key={}", client.key.display()));
        }
        let out = command
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
            "mc-enroll.service",
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

    /// The server's log so far (requests, enrollments, refusals), its last 200 kB.
    pub fn serve_log(&self) -> String {
        log_tail(&self.dir.join("serve.log"), 200_000)
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

fn authority_args(command: &str, profile: &Path, dir: &Path) -> Vec<String> {
    vec![
        "authority".into(),
        command.into(),
        "--profile".into(),
        profile.display().to_string(),
        "--dir".into(),
        dir.display().to_string(),
    ]
}

fn compose(options: &LabOptions, authority: &Path, bundle: &Path, extra: &[&str]) -> Result<()> {
    let mut args: Vec<String> = ["compose", "--platform", "vagrant", "--profile"]
        .map(String::from)
        .to_vec();
    args.push(options.profile.display().to_string());
    args.extend(["--agent".into(), options.binaries.mc.display().to_string()]);
    args.extend(["--out".into(), bundle.display().to_string()]);
    args.extend(["--authority".into(), authority.display().to_string()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    molten(&options.binaries.molten, &args)
}

/// Runs `molten` with `args`; fails with its stderr.
fn molten(binary: &Path, args: &[String]) -> Result<()> {
    let out = Command::new(binary)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("failed to run molten {}", args[0]))?;
    if !out.status.success() {
        bail!(
            "molten {} failed ({}): {}",
            args.iter().take(2).cloned().collect::<Vec<_>>().join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// What `molten serve` serves.
struct Served<'a> {
    bundle: &'a Path,
    authority: &'a Path,
    cert_validity: &'a str,
}

/// Starts `molten serve` on the hub's address (HTTP and HTTPS) and waits until both accept
/// connections. The log is appended to, across restarts.
fn serve(
    hub: &Hub,
    molten: &Path,
    served: &Served,
    spec: &LabSpec,
    work: &Path,
) -> Result<ChildGuard> {
    let listen = format!("{}:{}", spec.host_ip, spec.serve_port);
    let tls_listen = format!("{}:{}", spec.host_ip, spec.tls_port);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(work.join("serve.log"))?;
    let mut cmd = hub.ns.command(&molten.display().to_string());
    die_with_parent(&mut cmd);
    let child = cmd
        .arg("serve")
        .arg(served.bundle)
        .arg("--listen")
        .arg(&listen)
        .arg("--authority")
        .arg(served.authority)
        .arg("--tls-listen")
        .arg(&tls_listen)
        .arg("--cert-validity")
        .arg(served.cert_validity)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("failed to start molten serve")?;
    let mut server = ChildGuard::new("molten serve", child);
    let addrs = [
        (spec.host_ip, spec.serve_port),
        (spec.host_ip, spec.tls_port),
    ];
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
                .run_in(move || Ok(addrs.iter().all(|addr| TcpStream::connect(addr).is_ok())))?;
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

/// Node names from the pointer configs; the server's address and HTTPS port from their
/// replace URL, its plain HTTP port from the URL `mc` is fetched from in the full configs.
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
        server = Some(parse_url_authority("https", source)?);
        names.push(name);
    }
    let (host_ip, tls_port) = server.context("the bundle has no nodes")?;
    let full = bundle.join(format!("ignition/{}.ign", names[0]));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&full)?)?;
    let agent = v["storage"]["files"]
        .as_array()
        .and_then(|files| files.iter().find(|f| f["path"] == super::checks::MC))
        .and_then(|f| f["contents"]["source"].as_str())
        .with_context(|| format!("{} does not fetch the agent", full.display()))?;
    let (_, serve_port) = parse_url_authority("http", agent)?;
    Ok(LabSpec {
        names,
        nodes: Vec::new(),
        host_ip,
        serve_port,
        tls_port,
    })
}

fn parse_url_authority(scheme: &str, url: &str) -> Result<(Ipv4Addr, u16)> {
    let rest = url
        .strip_prefix(scheme)
        .and_then(|r| r.strip_prefix("://"))
        .with_context(|| format!("{url} is not an {scheme} URL"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let default_port = if scheme == "https" { "443" } else { "80" };
    let (host, port) = authority
        .split_once(':')
        .unwrap_or((authority, default_port));
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
            parse_url_authority("http", "http://10.88.0.1:8080/assets/mc").unwrap(),
            ("10.88.0.1".parse().unwrap(), 8080)
        );
        assert_eq!(
            parse_url_authority("https", "https://10.88.0.1:8443/ignition/x.ign").unwrap(),
            ("10.88.0.1".parse().unwrap(), 8443)
        );
        assert_eq!(
            parse_url_authority("http", "http://10.88.0.1/x").unwrap(),
            ("10.88.0.1".parse().unwrap(), 80)
        );
        assert!(parse_url_authority("http", "https://h/x").is_err());
        assert!(parse_url_authority("https", "http://10.88.0.1/x").is_err());
    }
}
