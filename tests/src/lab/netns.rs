//! The lab's network: a hub namespace holding a bridge with the host-side address (where the
//! bundle is served), and one namespace per node joined to the bridge by a veth pair. All
//! private addresses live inside these namespaces; nothing is configured in the host's.

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::Command;

use anyhow::{Context, Result};

use crate::process::run;

/// A named network namespace (`ip netns`), deleted on drop.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates `name` with its loopback up. An existing namespace of that name (left by a
    /// crashed run with the same id) is replaced.
    pub fn create(name: &str) -> Result<Self> {
        if std::path::Path::new("/run/netns").join(name).exists() {
            run(Command::new("ip").args(["netns", "del", name]))?;
        }
        run(Command::new("ip").args(["netns", "add", name]))
            .with_context(|| format!("failed to create network namespace {name}"))?;
        let ns = Self {
            name: name.to_string(),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n <ns> ARGS`.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// Runs `f` on a thread that has joined this namespace (sockets it opens live there), e.g.
    /// to probe a server on the lab bridge from the test process.
    pub fn run_in<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let path = std::path::Path::new("/run/netns").join(&self.name);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path)
                .with_context(|| format!("failed to open {}", path.display()))?;
            // SAFETY: setns on a descriptor we own; it changes only this thread's namespace,
            // and the thread ends after `f`.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("setns into {}", path.display()));
            }
            f()
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the thread in namespace {} panicked", self.name))?
    }

    /// A command that runs `program` inside this namespace (`ip netns exec`).
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Err(err) = run(Command::new("ip").args(["netns", "del", &self.name])) {
            eprintln!(
                "molten-lab: could not delete network namespace {}: {err:#}",
                self.name
            );
        }
    }
}

/// The hub: bridge `br0` with the host-side address.
#[derive(Debug)]
pub struct Hub {
    pub ns: NetNs,
    pub address: Ipv4Addr,
    pub prefix_len: u8,
}

impl Hub {
    pub fn create(name: &str, address: Ipv4Addr, prefix_len: u8) -> Result<Self> {
        let ns = NetNs::create(name)?;
        ns.ip(&["link", "add", "br0", "type", "bridge"])?;
        ns.ip(&[
            "addr",
            "add",
            &format!("{address}/{prefix_len}"),
            "dev",
            "br0",
        ])?;
        ns.ip(&["link", "set", "br0", "up"])?;
        Ok(Self {
            ns,
            address,
            prefix_len,
        })
    }

    /// Creates `node`'s namespace with `eth0` at `ip`, bridged to the hub, default route via the
    /// hub's address. `port` names the hub side (unique within the hub).
    pub fn attach(&self, ns_name: &str, port: &str, ip: Ipv4Addr) -> Result<NetNs> {
        let node = NetNs::create(ns_name)?;
        self.ns.ip(&[
            "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns_name,
        ])?;
        self.ns.ip(&["link", "set", port, "master", "br0", "up"])?;
        node.ip(&[
            "addr",
            "add",
            &format!("{ip}/{}", self.prefix_len),
            "dev",
            "eth0",
        ])?;
        node.ip(&["link", "set", "eth0", "up"])?;
        node.ip(&["route", "add", "default", "via", &self.address.to_string()])?;
        Ok(node)
    }

    /// Cuts `port` off the bridge (a node "unplugged") or plugs it back.
    pub fn set_port(&self, port: &str, up: bool) -> Result<()> {
        self.ns
            .ip(&["link", "set", port, if up { "up" } else { "down" }])
            .map(|_| ())
    }
}
