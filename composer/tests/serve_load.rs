//! The real `molten serve` binary under hostile load, on loopback only: a thousand idle
//! connections and two hundred slowloris clients from many addresses of 127.0.0.0/8, a client
//! over its cap, a client that stops reading a download, and a bundle changed under the server.
//! A node's config fetch and a 64 MiB asset fetch must still succeed in their normal time, and no
//! byte that fails its hash may ever be served.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const ASSET_BYTES: usize = 64 << 20;
const KERNEL_BYTES: usize = 8 << 20;
const CONFIG: &[u8] = br#"{"ignition":{"version":"3.3.0"},"storage":{}}"#;

struct Serve {
    child: Child,
    addr: SocketAddr,
    lines: mpsc::Receiver<String>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    fn start(dir: &Path, extra: &[&str]) -> Serve {
        let mut child = Command::new(env!("CARGO_BIN_EXE_molten"))
            .args(["serve", dir.to_str().unwrap(), "--listen", "127.0.0.1:0"])
            // Every large file re-checked per chunk: the path a bundle past the budget takes.
            .args(["--memory-budget", "0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("molten runs");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut serve = Serve {
            child,
            addr: "127.0.0.1:1".parse().unwrap(),
            lines,
        };
        let started = serve.wait_for("listening on http://");
        serve.addr = started
            .rsplit("http://")
            .next()
            .unwrap()
            .trim_end_matches('/')
            .parse()
            .unwrap();
        serve
    }

    fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(err) => panic!("molten serve never logged {needle:?}: {err}"),
            }
        }
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i % 251) as u8).wrapping_add(seed))
        .collect()
}

fn write_bundle(dir: &Path) {
    let files: Vec<(String, Vec<u8>)> = vec![
        ("ignition/n1.ign".into(), CONFIG.to_vec()),
        (
            "nodes/52-54-00-00-00-01.ipxe".into(),
            b"#!ipxe\nboot\n".to_vec(),
        ),
        ("assets/initrd".into(), pattern(ASSET_BYTES, 0)),
        ("assets/kernel".into(), pattern(KERNEL_BYTES, 7)),
    ];
    let mut sums = String::new();
    for (rel, data) in &files {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, data).unwrap();
        sums.push_str(&format!("{}  {rel}\n", hex::encode(Sha256::digest(data))));
    }
    std::fs::write(dir.join("SHA256SUMS"), sums).unwrap();
}

/// A response as received: status, announced length, and the body bytes that arrived before the
/// server closed (fewer than announced when a download was cut off).
struct Got {
    status: u16,
    announced: usize,
    body: Vec<u8>,
}

async fn get_from(source: IpAddr, addr: SocketAddr, path: &str) -> std::io::Result<Got> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    let mut stream = socket.connect(addr).await?;
    let head = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await?;
    let mut raw = Vec::new();
    // A cut-off download may end in a reset: keep what arrived.
    let _ = stream.read_to_end(&mut raw).await;
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no response head"))?;
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let status = head[9..12].parse().unwrap();
    let announced = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    Ok(Got {
        status,
        announced,
        body: raw[end + 4..].to_vec(),
    })
}

const NODE: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// The i-th address of a /16 of loopback, e.g. 127.1.0.1.
fn loopback(net: u8, i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        127,
        net,
        (i / 250) as u8,
        (i % 250 + 1) as u8,
    ))
}

async fn open_from(source: IpAddr, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Times a config fetch and a 64 MiB fetch from the node's address, checking the bytes.
async fn timed_fetches(addr: SocketAddr) -> (Duration, Duration) {
    let started = Instant::now();
    let config = get_from(NODE, addr, "/ignition/n1.ign").await.unwrap();
    let config_time = started.elapsed();
    assert_eq!((config.status, config.body.as_slice()), (200, CONFIG));
    let started = Instant::now();
    let asset = get_from(NODE, addr, "/assets/initrd").await.unwrap();
    let asset_time = started.elapsed();
    assert_eq!(asset.status, 200);
    assert!(asset.body == pattern(ASSET_BYTES, 0), "asset bytes differ");
    (config_time, asset_time)
}

/// Reads until the server closes; returns what arrived and when it closed.
async fn until_closed(mut stream: TcpStream, deadline: Duration) -> (Vec<u8>, Instant) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(deadline, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server kept a hostile connection open");
    (got, Instant::now())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slowloris_clients_do_not_stop_a_node_from_booting() {
    let dir = tempfile::tempdir().unwrap();
    write_bundle(dir.path());
    // The default header timeout.
    let header_timeout = 10;
    let serve = Serve::start(dir.path(), &[]);
    let (base_config, base_asset) = timed_fetches(serve.addr).await;

    // 1,000 idle connections from 50 addresses and 200 slowloris clients from 10 more: within
    // the per-client cap (64), so the server holds all of them.
    let opened = Instant::now();
    let mut idle = Vec::new();
    for i in 0..1000 {
        idle.push(open_from(loopback(1, i / 20), serve.addr).await);
    }
    let mut slow = Vec::new();
    for i in 0..200 {
        let mut stream = open_from(loopback(2, i / 20), serve.addr).await;
        stream
            .write_all(b"GET /ignition/n1.ign HTTP/1.1\r\n")
            .await
            .unwrap();
        slow.push(stream);
    }
    let trickle = tokio::spawn(async move {
        // One header byte every 500 ms per client until the server cuts them off.
        for round in 0.. {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let mut alive = 0;
            for stream in &mut slow {
                let byte = [b'a' + (round % 26) as u8];
                if stream.write_all(&byte).await.is_ok() {
                    alive += 1;
                }
            }
            if alive == 0 || round > 40 {
                break;
            }
        }
        slow
    });
    let open_time = opened.elapsed();

    let (load_config, load_asset) = timed_fetches(serve.addr).await;
    assert!(
        opened.elapsed() < Duration::from_secs(header_timeout),
        "the fetches must run while the hostile connections are open ({:?})",
        opened.elapsed()
    );
    let health = get_from(NODE, serve.addr, "/healthz").await.unwrap();
    let health = String::from_utf8(health.body).unwrap();
    assert!(health.contains("\"status\":\"ok\""), "{health}");
    let connections: usize = health
        .split("\"connections\":")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(connections >= 1200, "server holds {connections}: {health}");
    eprintln!(
        "opened 1200 hostile connections in {open_time:?}; config {base_config:?} -> \
         {load_config:?} under load, 64 MiB asset {base_asset:?} -> {load_asset:?} under load"
    );
    // Normal time: within a few times the unloaded figure (or 1 s for the tiny config).
    assert!(
        load_config < base_config * 5 + Duration::from_secs(1),
        "{load_config:?}"
    );
    assert!(
        load_asset < base_asset * 3 + Duration::from_secs(2),
        "{load_asset:?}"
    );

    // Every hostile connection is cut by the header timeout, none served, none refused.
    let limit = Duration::from_secs(header_timeout + 5);
    let slow = trickle.await.unwrap();
    for stream in idle.into_iter().chain(slow) {
        let (got, closed) = until_closed(stream, limit).await;
        assert!(
            got.is_empty() || String::from_utf8_lossy(&got).contains(" 408 "),
            "a hostile connection got {:?}",
            String::from_utf8_lossy(&got)
        );
        assert!(closed.duration_since(opened) >= Duration::from_secs(header_timeout - 1));
    }
    eprintln!(
        "all 1200 hostile connections closed {:?} after opening",
        opened.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_caps_refuse_the_excess_with_503() {
    let dir = tempfile::tempdir().unwrap();
    write_bundle(dir.path());
    let serve = Serve::start(
        dir.path(),
        &[
            "--max-connections",
            "40",
            "--max-connections-per-client",
            "10",
        ],
    );
    let greedy = loopback(3, 0);
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(open_from(greedy, serve.addr).await);
    }
    // Give the server time to admit the ten before the eleventh arrives.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let over = get_from(greedy, serve.addr, "/ignition/n1.ign")
        .await
        .unwrap();
    assert_eq!(over.status, 503);
    assert!(String::from_utf8_lossy(&over.body).contains("from this client"));
    // Another client is unaffected.
    let other = get_from(loopback(3, 1), serve.addr, "/ignition/n1.ign")
        .await
        .unwrap();
    assert_eq!(other.status, 200);

    for i in 0..30 {
        held.push(open_from(loopback(4, i), serve.addr).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let full = get_from(NODE, serve.addr, "/ignition/n1.ign")
        .await
        .unwrap();
    assert_eq!(full.status, 503);
    assert!(String::from_utf8_lossy(&full.body).contains("too many connections"));
    serve.wait_for("refused");
    drop(held);
    // Slots come back when the connections close.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let again = get_from(NODE, serve.addr, "/ignition/n1.ign")
            .await
            .unwrap();
        if again.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "slots were not freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_off_by_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    write_bundle(dir.path());
    let serve = Serve::start(dir.path(), &["--idle-timeout", "2"]);
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(serve.addr).await.unwrap();
    stream
        .write_all(b"GET /assets/initrd HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (got, _) = until_closed(stream, Duration::from_secs(10)).await;
    assert!(
        got.len() < ASSET_BYTES / 2,
        "a stalled reader received {} bytes before the cut",
        got.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_byte_failing_its_hash_is_served_while_the_bundle_changes() {
    let dir = tempfile::tempdir().unwrap();
    write_bundle(dir.path());
    let serve = Serve::start(dir.path(), &[]);
    let addr = serve.addr;
    let originals = [
        ("/assets/initrd", pattern(ASSET_BYTES, 0)),
        ("/assets/kernel", pattern(KERNEL_BYTES, 7)),
        ("/ignition/n1.ign", CONFIG.to_vec()),
    ];

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut fetchers = Vec::new();
    for (path, original) in originals.clone() {
        let stop = stop.clone();
        fetchers.push(tokio::spawn(async move {
            let (mut complete, mut cut, mut refused) = (0, 0, 0);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let got = get_from(NODE, addr, path).await.unwrap();
                match got.status {
                    200 => {
                        assert!(
                            original.starts_with(&got.body),
                            "{path}: served bytes that are not the verified ones"
                        );
                        if got.body.len() == got.announced {
                            complete += 1;
                        } else {
                            cut += 1;
                        }
                    }
                    503 => refused += 1,
                    other => panic!("{path}: status {other}"),
                }
            }
            (path, complete, cut, refused)
        }));
    }

    tokio::time::sleep(Duration::from_millis(300)).await;
    // A new kernel renamed over the old (a new inode), the config rewritten in place, the
    // script replaced by a symlink to the config.
    let kernel = dir.path().join("assets/kernel");
    std::fs::write(
        dir.path().join("assets/kernel.new"),
        pattern(KERNEL_BYTES, 99),
    )
    .unwrap();
    std::fs::rename(dir.path().join("assets/kernel.new"), &kernel).unwrap();
    std::fs::write(dir.path().join("ignition/n1.ign"), b"{\"evil\":true}").unwrap();
    let script = dir.path().join("nodes/52-54-00-00-00-01.ipxe");
    std::fs::remove_file(&script).unwrap();
    std::os::unix::fs::symlink("../ignition/n1.ign", &script).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The initrd's own inode rewritten in place at 40 MiB.
    let initrd = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("assets/initrd"))
        .unwrap();
    std::os::unix::fs::FileExt::write_at(&initrd, &[0xEE; 4096], 40 << 20).unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);

    let mut report = Vec::new();
    for fetcher in fetchers {
        report.push(fetcher.await.unwrap());
    }
    eprintln!("(path, complete, cut off, refused): {report:?}");
    for (path, complete, cut, refused) in &report {
        assert!(*complete > 0, "{path} was never served whole");
        if *path == "/assets/initrd" {
            assert!(cut + refused > 0, "the changed initrd was still served");
        } else {
            assert_eq!((*cut, *refused), (0, 0), "{path}");
        }
    }
    serve.wait_for("changed on disk since it was verified");
    let after = get_from(NODE, addr, "/assets/initrd").await.unwrap();
    assert_eq!(after.status, 503);
    let script = get_from(NODE, addr, "/nodes/52-54-00-00-00-01.ipxe")
        .await
        .unwrap();
    assert_eq!(script.body, b"#!ipxe\nboot\n");
}
