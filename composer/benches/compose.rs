//! `molten compose` of a generated 1,000-node profile (5 etcd members, 995 workers), for each
//! platform: load + compose in memory, and load + compose + write the bundle to a temp dir.
//!
//! Run: `cargo bench -p molten --bench compose`. Target: ≤ 100 ms, ≤ 64 MB peak RSS (measured
//! on the release binary with `/usr/bin/time -v`, see docs/performance.md; set
//! `MOLTEN_BENCH_PROFILES=DIR` to have this bench leave the generated profiles and agent there).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use molten::compose;
use molten::digest::sha512_hex;
use molten::platform::sample::FAKE_AGENT;
use molten::platform::Platform;
use molten::profile::{load_file, LoadOptions};

const NODES: usize = 1000;
const MEMBERS: usize = 5;

/// A profile with `NODES` explicit nodes. Packet gets no addresses (the platform assigns them)
/// and an agent URL; vagrant and ipxe get addresses and MACs and ship a local agent.
fn profile_yaml(platform: Platform) -> String {
    let mut y = String::from(
        "version: 1\nname: big\n\
         ssh_authorized_keys:\n  - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBSqkpJLN/W+kUxvnG0wIhyjZlDb1wEUdapqVUrmMKOC op@example\n\
         flannel:\n  network: 10.64.0.0/10\n  subnet_len: 24\n",
    );
    if platform == Platform::Packet {
        let _ = write!(
            y,
            "agent:\n  url: https://downloads.example.org/mc\n  sha512: {}\n",
            sha512_hex(FAKE_AGENT)
        );
    }
    y.push_str("nodes:\n");
    for i in 0..NODES {
        let roles = if i < MEMBERS {
            "[etcd, worker]"
        } else {
            "[worker]"
        };
        let _ = write!(y, "  - name: n{i:04}\n    zone: {i}\n    roles: {roles}\n");
        if platform != Platform::Packet {
            let _ = write!(
                y,
                "    ip: 172.16.{}.{}\n    mac: 52:54:00:00:{:02x}:{:02x}\n",
                i / 200,
                i % 200 + 10,
                i >> 8,
                i & 0xff
            );
        }
    }
    y.push_str(
        "platforms:\n\
         \x20 packet: {project_id: 3f9c5b8e-2d41-4c7a-9b6e-8a1d2f4e6c30, metro: am, plan: c3.small.x86}\n\
         \x20 vagrant: {box: flatcar-stable, memory_mb: 2048, cpus: 2, host_ip: 172.16.255.1, serve_port: 8080}\n\
         \x20 ipxe: {base_url: 'http://172.16.255.1:8080', kernel_args: [console=ttyS0], data_disk: /dev/vdb}\n",
    );
    y
}

/// Writes the generated profiles and the fake agent into `dir`; returns the agent's path.
fn write_inputs(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for platform in Platform::ALL {
        std::fs::write(
            dir.join(format!("big-{platform}.yaml")),
            profile_yaml(platform),
        )
        .unwrap();
    }
    let agent = dir.join("mc");
    std::fs::write(&agent, FAKE_AGENT).unwrap();
    agent
}

fn load(dir: &Path, agent: &Path, platform: Platform) -> molten::model::Cluster {
    let options = LoadOptions {
        platform: Some(platform.rules()),
        agent_override: (platform != Platform::Packet).then_some(agent),
        strict: false,
    };
    load_file(&dir.join(format!("big-{platform}.yaml")), &options)
        .unwrap_or_else(|d| panic!("{d}"))
        .cluster
}

fn bench(c: &mut Criterion) {
    let kept = std::env::var_os("MOLTEN_BENCH_PROFILES").map(PathBuf::from);
    let work = tempfile::tempdir().unwrap();
    let inputs = kept.clone().unwrap_or_else(|| work.path().join("in"));
    let agent = write_inputs(&inputs);

    let mut group = c.benchmark_group("compose_1000_nodes");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    for platform in Platform::ALL {
        let cluster = load(&inputs, &agent, platform);
        assert_eq!(cluster.nodes.len(), NODES);
        // Every compose registers its nodes with an authority (a throwaway one here).
        let served = platform.target().served_base_url(&cluster).unwrap();
        let authority = molten::trust::scratch_input(&cluster, served.as_deref()).unwrap();
        // The profile stage alone, for attribution.
        group.bench_function(format!("{platform}/load_profile"), |b| {
            b.iter(|| load(&inputs, &agent, platform))
        });
        // The output stages in memory: node configs, Ignition, platform files, SHA256SUMS.
        group.bench_function(format!("{platform}/compose_in_memory"), |b| {
            b.iter(|| compose(&cluster, platform, &authority.input).unwrap())
        });
        // What `molten compose` does: load, compose, write the bundle (synced, renamed).
        let out = work.path().join(format!("out-{platform}"));
        group.bench_function(format!("{platform}/load_compose_write"), |b| {
            b.iter(|| {
                let cluster = load(&inputs, &agent, platform);
                let composed = compose(&cluster, platform, &authority.input).unwrap();
                molten::output::write_bundle(&composed.bundle, &out).unwrap();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
