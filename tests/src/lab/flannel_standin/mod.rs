//! `flanneld-standin`: a TEST FIXTURE standing in for flanneld on the lab's Debian nodes
//! (Debian does not package flannel). It speaks flannel's etcd v3 subnet protocol
//! ([`lease`]), writes `/run/flannel/subnet.env` and tells systemd it is ready
//! (`Type=notify`), which is everything molten relies on flanneld for. It does NOT build the
//! VXLAN data plane: containers on different lab nodes cannot reach each other through it.
//! Differences from flanneld: a new subnet is the first free one (flanneld picks one at random).

pub mod args;
pub mod lease;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};

pub use args::Args;
use lease::{acquire, put_with_new_lease, read_config, subnet_env, LEASE_TTL_SECS};

/// Runs the stand-in until SIGTERM/SIGINT.
pub async fn run(args: Args) -> Result<()> {
    let public_ip = public_ip(&args)?;
    eprintln!(
        "flanneld-standin (test fixture): public IP {public_ip}, etcd {}, prefix {}",
        args.etcd_endpoints.join(","),
        args.etcd_prefix
    );
    let mut client = connect(&args).await;
    let config = loop {
        match read_config(&mut client, &args.etcd_prefix).await {
            Ok(Some(config)) => break config,
            Ok(None) => eprintln!(
                "flanneld-standin: {}/config is not there yet",
                args.etcd_prefix
            ),
            Err(err) => eprintln!("flanneld-standin: reading the network config: {err:#}"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let held = loop {
        match acquire(&mut client, &args.etcd_prefix, &config, public_ip).await {
            Ok(held) => break held,
            Err(err) => eprintln!("flanneld-standin: acquiring a subnet: {err:#}"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let holding = match held.lease_id {
        Some(id) => format!("under lease {id:x}"),
        None => "as reserved (no lease)".to_string(),
    };
    eprintln!(
        "flanneld-standin: holding {} {holding} ({})",
        held.subnet,
        if held.reused {
            "the subnet already recorded for this IP"
        } else {
            "a new subnet"
        }
    );
    write_atomically(&args.subnet_file, &subnet_env(&config, held.subnet))?;
    notify_ready()?;

    let ttl = Duration::from_secs(u64::try_from(LEASE_TTL_SECS).expect("positive"));
    let every = ttl
        .saturating_sub(args.renew_margin)
        .max(Duration::from_secs(1));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let renews = held.lease_id.is_some();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every), if renews => {
                match put_with_new_lease(&mut client, &args.etcd_prefix, &config, public_ip, held.subnet).await {
                    Ok(id) => eprintln!("flanneld-standin: renewed {} under lease {id:x}", held.subnet),
                    Err(err) => eprintln!("flanneld-standin: renewing {}: {err:#}", held.subnet),
                }
            }
            _ = term.recv() => return Ok(()),
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

/// Logs the first failure and then every 30th, so a long wait for etcd does not flood the
/// journal.
#[derive(Default)]
struct Retries {
    count: u64,
}

impl Retries {
    fn note(&mut self, what: &str) {
        if self.count % 30 == 0 {
            eprintln!(
                "flanneld-standin: {what} (retrying every second; attempt {})",
                self.count + 1
            );
        }
        self.count += 1;
    }
}

/// Parses the process's arguments and `FLANNELD_*` environment.
pub fn args_from_env() -> Result<Args> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let env: BTreeMap<String, String> = std::env::vars().collect();
    Args::parse(&argv, &env)
}

async fn connect(args: &Args) -> Client {
    let mut retries = Retries::default();
    loop {
        let options = match tls_options(args) {
            Ok(options) => options,
            Err(err) => {
                retries.note(&format!("reading the etcd TLS files: {err:#}"));
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        match Client::connect(&args.etcd_endpoints, Some(options)).await {
            Ok(client) => return client,
            Err(err) => retries.note(&format!("connecting to etcd: {err}")),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn tls_options(args: &Args) -> Result<ConnectOptions> {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(3))
        .with_timeout(Duration::from_secs(5));
    let Some(files) = &args.etcd_tls else {
        return Ok(options);
    };
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
    };
    Ok(options.with_tls(
        TlsOptions::new()
            .ca_certificate(Certificate::from_pem(read(&files.ca)?))
            .identity(Identity::from_pem(read(&files.cert)?, read(&files.key)?)),
    ))
}

/// `--public-ip`, else `--iface` as an address or the IPv4 of that interface, else the IPv4 of
/// the interface holding the default route.
fn public_ip(args: &Args) -> Result<Ipv4Addr> {
    if let Some(ip) = args.public_ip {
        return Ok(ip);
    }
    let iface = match &args.iface {
        Some(iface) => {
            if let Ok(ip) = iface.parse() {
                return Ok(ip);
            }
            iface.clone()
        }
        None => default_route_iface()?,
    };
    let out = ip_cmd(&["-4", "-o", "addr", "show", "dev", &iface])?;
    out.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next())
        .and_then(|a| a.parse().ok())
        .with_context(|| format!("interface {iface} has no IPv4 address"))
}

fn default_route_iface() -> Result<String> {
    let out = ip_cmd(&["-4", "route", "show", "default"])?;
    out.split_whitespace()
        .skip_while(|w| *w != "dev")
        .nth(1)
        .map(str::to_string)
        .context("no --iface or --public-ip given and no default route to pick an interface")
}

fn ip_cmd(args: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("failed to run ip")?;
    if !out.status.success() {
        bail!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Temp file in the same dir, fsync, rename: readers never see half a file.
fn write_atomically(path: &Path, content: &str) -> Result<()> {
    let dir = path.parent().context("subnet file has no directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(content.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("failed to write {}", path.display()))?;
    Ok(())
}

/// sd_notify(READY=1) when started by systemd with `Type=notify`.
fn notify_ready() -> Result<()> {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(());
    };
    let sock = UnixDatagram::unbound()?;
    let bytes = socket.as_encoded_bytes();
    if let Some(abstract_name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(abstract_name)?;
        sock.send_to_addr(b"READY=1", &addr)?;
    } else {
        sock.send_to(b"READY=1", &socket)?;
    }
    Ok(())
}
