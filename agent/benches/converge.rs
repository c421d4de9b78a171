//! `mc converge` against a real etcd (https, `--client-cert-auth`, access control on, as molten
//! runs it) and dockerd, started by the test harness on 127.0.0.1; every node enrolled from a
//! test authority.
//!
//! - warm_tls: an etcd member that has converged before; nothing to do (the every-boot case):
//!   identity check, etcd over mutual TLS as itself, the RBAC check as root.
//! - cold: a new enrolled worker (its identity made outside the measurement, as `mc enroll`
//!   would before): its reservation, drop-ins, Docker network and record are all made.
//!
//! Run: `cargo bench -p mc --bench converge`. Targets: warm_tls ≤ 30 ms, cold ≤ 1 s.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use mc::converge::{converge, Options, Stage};
use mc::etcd::Retry;
use mc::systemd::Systemd;
use molten_contract::{keys, FlannelSettings, NodeConfig, Role};
use molten_testkit::docker::Dockerd;
use molten_testkit::fixtures;
use molten_testkit::pki::TestTrust;

/// systemd as on a booted node where nothing needs restarting: calls succeed, units are idle.
struct IdleSystemd;

impl Systemd for IdleSystemd {
    fn is_running(&self) -> bool {
        true
    }
    fn daemon_reload(&self) -> anyhow::Result<()> {
        Ok(())
    }
    fn is_active(&self, _unit: &str) -> anyhow::Result<bool> {
        Ok(false)
    }
    fn restart(&self, _unit: &str) -> anyhow::Result<()> {
        Ok(())
    }
    fn queued_start_jobs(&self) -> anyhow::Result<Vec<String>> {
        Ok(Vec::new())
    }
    fn start_no_block(&self, _units: &[String]) -> anyhow::Result<()> {
        Ok(())
    }
    fn stop(&self, _unit: &str) -> anyhow::Result<()> {
        Ok(())
    }
}

/// The fixture node config on the bench's own flannel network and BOSH network name, so a bench
/// run never shares a Docker bridge range with a test run.
fn config(name: &str, zone: u32, etcd: &str) -> NodeConfig {
    let ip = Ipv4Addr::new(10, 0, 0, 10 + zone as u8);
    let mut config = fixtures::node_config(name, zone, ip);
    config.cluster = "bench".into();
    config.etcd.endpoints = vec![etcd.into()];
    config.flannel = FlannelSettings::new("10.214.0.0/16".parse().unwrap(), 24);
    config.bosh.network_name = format!("bench-{name}");
    config
}

fn prepare_root(root: &Path, config: &NodeConfig) {
    let path = root.join("etc/molten/node.json");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, config.to_json()).unwrap();
    std::fs::create_dir_all(root.join("run/systemd/system")).unwrap();
    // The network step builds on flanneld's lease, as on a node.
    let lease = root.join("run/flannel/subnet.env");
    std::fs::create_dir_all(lease.parent().unwrap()).unwrap();
    std::fs::write(lease, fixtures::flannel_subnet_env(config)).unwrap();
}

fn options(root: &Path, docker: &Dockerd) -> Options {
    Options {
        root: root.to_path_buf(),
        config: None,
        etcd: None,
        docker_host: Some(docker.host()),
        docker_client: None,
        stage: Stage::All,
        etcd_retry: Retry::with_budget(Duration::from_secs(10)),
    }
}

fn bench(c: &mut Criterion) {
    let pki = tempfile::tempdir().unwrap();
    let trust = TestTrust::new(pki.path()).unwrap();
    let etcd = trust.start_etcd("m0").expect("etcd with TLS starts");
    let docker = Dockerd::start().expect("dockerd starts");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The member creates a user and role for both (the authority is offline: node.json's roster).
    let roster = ["warm-tls", "cold"];

    // warm_tls: an enrolled member, converged once, then runs with nothing to do.
    let tls_root = tempfile::tempdir().unwrap();
    let mut tls_config = config("warm-tls", 2, &etcd.endpoint());
    trust
        .enroll(tls_root.path(), &mut tls_config, &roster)
        .unwrap();
    prepare_root(tls_root.path(), &tls_config);
    let warm_tls = options(tls_root.path(), &docker);
    let first = rt.block_on(converge(&warm_tls, &IdleSystemd)).unwrap();
    assert!(first.ok(), "{:#?}", first.steps);
    c.bench_function("converge_warm_tls", |b| {
        b.iter(|| {
            let report = rt.block_on(converge(&warm_tls, &IdleSystemd)).unwrap();
            assert!(report.ok() && !report.changed(), "{:#?}", report.steps);
        })
    });

    // cold: a new enrolled worker each time (fresh root and identity, its etcd keys and Docker
    // network removed as etcd's root).
    let mut cold_config = config("cold", 1, &etcd.endpoint());
    cold_config.node.roles = vec![Role::Worker];
    c.bench_function("converge_cold", |b| {
        b.iter_batched(
            || {
                for prefix in [
                    keys::node_record("cold"),
                    keys::node_status("cold"),
                    cold_config.flannel.lease_key(cold_config.subnet().unwrap()),
                ] {
                    trust
                        .etcdctl_root(&etcd.endpoint(), &["del", &prefix, "--prefix"])
                        .unwrap();
                }
                let _ = docker.cli(&["network", "rm", "bench-cold"]);
                let root = tempfile::tempdir().unwrap();
                let mut config = cold_config.clone();
                trust.enroll(root.path(), &mut config, &roster).unwrap();
                prepare_root(root.path(), &config);
                root
            },
            |root| {
                let report = rt
                    .block_on(converge(&options(root.path(), &docker), &IdleSystemd))
                    .unwrap();
                assert!(report.ok(), "{:#?}", report.steps);
                root
            },
            BatchSize::PerIteration,
        )
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(10));
    targets = bench
}
criterion_main!(benches);
