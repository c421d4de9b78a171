//! `molten serve`: how long the start-up check of a bundle takes (every file hashed against
//! SHA256SUMS), and how fast it answers over loopback: a node's Ignition config (small, one new
//! connection per request, as Ignition and iPXE do) and a 64 MiB initrd-sized asset.
//!
//! Run: `cargo bench -p molten --bench serve`. Figures: docs/performance.md.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use molten::serve::{self, LogSink};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const NODES: usize = 24;
const CONFIG_BYTES: usize = 2_500;
const ASSET_BYTES: usize = 64 << 20;

/// A rack-sized ipxe bundle: 24 node scripts and configs plus one 64 MiB asset.
fn write_bundle(dir: &Path) {
    let mut files: Vec<(String, Vec<u8>)> = vec![("boot.ipxe".into(), b"#!ipxe\n".to_vec())];
    for i in 0..NODES {
        let node = format!("rack-{i:02}");
        let script = format!(
            "#!ipxe\nkernel http://10.0.0.2:8080/assets/vmlinuz \
             ignition.config.url=http://10.0.0.2:8080/ignition/{node}.ign\nboot\n"
        );
        files.push((
            format!("nodes/52-54-00-00-00-{i:02x}.ipxe"),
            script.into_bytes(),
        ));
        files.push((format!("ignition/{node}.ign"), vec![b'x'; CONFIG_BYTES]));
    }
    files.push((
        "assets/initrd".into(),
        (0..ASSET_BYTES).map(|i| (i % 251) as u8).collect(),
    ));
    let mut sums = String::new();
    for (rel, data) in &files {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, data).unwrap();
        sums.push_str(&format!("{}  {rel}\n", hex::encode(Sha256::digest(data))));
    }
    std::fs::write(dir.join("SHA256SUMS"), sums).unwrap();
}

/// GET over a fresh connection; returns the body length.
async fn get(addr: SocketAddr, path: &str) -> usize {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!("GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::with_capacity(1 << 16);
    stream.read_to_end(&mut raw).await.unwrap();
    assert!(raw.starts_with(b"HTTP/1.1 200 "), "{path} failed");
    raw.len()
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    write_bundle(dir.path());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let quiet: LogSink = Arc::new(|_: &str| {});

    let mut startup = c.benchmark_group("serve_startup");
    startup
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    startup.throughput(Throughput::Bytes(
        (ASSET_BYTES + NODES * CONFIG_BYTES) as u64,
    ));
    startup.bench_function("verify_64MiB_bundle_and_bind", |b| {
        b.iter(|| runtime.block_on(serve::bind(dir.path(), listen)).unwrap())
    });
    startup.finish();

    let server = runtime
        .block_on(serve::bind(dir.path(), listen))
        .unwrap()
        .with_log(quiet);
    let addr = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = runtime.spawn(server.run(async move {
        let _ = stopped.await;
    }));

    let mut requests = c.benchmark_group("serve_request");
    requests.throughput(Throughput::Elements(1));
    requests.bench_function("get_ignition_config_new_connection", |b| {
        b.iter(|| runtime.block_on(get(addr, "/ignition/rack-07.ign")))
    });
    requests
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    requests.throughput(Throughput::Bytes(ASSET_BYTES as u64));
    requests.bench_function("get_64MiB_asset", |b| {
        b.iter(|| runtime.block_on(get(addr, "/assets/initrd")))
    });
    requests.finish();

    stop.send(()).unwrap();
    runtime.block_on(task).unwrap().unwrap();
}

criterion_group!(serve_benches, benches);
criterion_main!(serve_benches);
