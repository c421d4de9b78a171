//! `mc converge` against a real etcd and dockerd (started by the test harness on 127.0.0.1).
//!
//! - warm: a node that has converged before; nothing to do (the every-boot case).
//! - cold: the cluster CA exists, but the node is new: its reservation, certificates (two
//!   key pairs), drop-ins, Docker network and record are all made.
//!
//! - warm_tls: a warm enrolled etcd member against etcd with `--client-cert-auth` and access
//!   control on: identity check, etcd over mutual TLS as itself, the RBAC check as root.
//!
//! Run: `cargo bench -p mc --bench converge`. Targets: warm ≤ 150 ms, cold ≤ 1 s, warm_tls ≤ 30 ms.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use mc::converge::{converge, Options, Stage};
use mc::etcd::Retry;
use mc::systemd::Systemd;
use molten_contract::{keys, FlannelSettings, NodeConfig};
use molten_testkit::docker::Dockerd;
use molten_testkit::etcd::{EtcdServer, ServerTls};
use molten_testkit::fixtures;
use molten_testkit::pki::{enroll_for_test, TestCa};

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
        stage: Stage::All,
        etcd_retry: Retry::with_budget(Duration::from_secs(10)),
    }
}

fn bench(c: &mut Criterion) {
    let etcd = EtcdServer::start().expect("etcd starts");
    let docker = Dockerd::start().expect("dockerd starts");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    // warm: converge once, then measure runs with nothing to do.
    let warm_root = tempfile::tempdir().unwrap();
    prepare_root(warm_root.path(), &config("warm", 0, &etcd.endpoint()));
    let warm = options(warm_root.path(), &docker);
    let first = rt.block_on(converge(&warm, &IdleSystemd)).unwrap();
    assert!(first.ok(), "{:#?}", first.steps);
    c.bench_function("converge_warm", |b| {
        b.iter(|| {
            let report = rt.block_on(converge(&warm, &IdleSystemd)).unwrap();
            assert!(report.ok() && !report.changed(), "{:#?}", report.steps);
        })
    });

    // warm_tls: an enrolled member, etcd with mutual TLS and access control.
    let pki = tempfile::tempdir().unwrap();
    let etcd_ca = TestCa::new("etcd", pki.path()).unwrap();
    let docker_ca = TestCa::new("docker", pki.path()).unwrap();
    let authority_ca = TestCa::new("authority", pki.path()).unwrap();
    let member = etcd_ca.issue("m0", &["127.0.0.1"]).unwrap();
    let tls_etcd = EtcdServer::start_tls(
        "m0",
        ServerTls {
            ca: etcd_ca.cert.clone(),
            cert: member.cert,
            key: member.key,
        },
    )
    .expect("etcd with TLS starts");
    let tls_root = tempfile::tempdir().unwrap();
    let mut tls_config = config("warm-tls", 2, &tls_etcd.endpoint());
    // The authority is offline (nothing listens): the roster comes from node.json.
    let authority = ("https://127.0.0.1:9", authority_ca.cert_pem.as_str());
    enroll_for_test(
        tls_root.path(),
        &mut tls_config,
        &etcd_ca,
        &docker_ca,
        authority,
        &["warm-tls"],
    )
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

    // cold: a new node each time (fresh root, its etcd keys and Docker network removed); the
    // CA exists from the warm node.
    let cold_config = config("cold", 1, &etcd.endpoint());
    c.bench_function("converge_cold", |b| {
        b.iter_batched(
            || {
                for prefix in [
                    keys::node_tls("cold", ""),
                    keys::node_record("cold"),
                    keys::node_status("cold"),
                    cold_config.flannel.lease_key(cold_config.subnet().unwrap()),
                ] {
                    etcd.etcdctl(&["del", &prefix, "--prefix"]).unwrap();
                }
                let _ = docker.cli(&["network", "rm", "bench-cold"]);
                let root = tempfile::tempdir().unwrap();
                prepare_root(root.path(), &cold_config);
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
