//! etcd while a cluster forms or loses a member, against a real etcd: a dead first endpoint, an
//! etcd that comes up after mc started, an endpoint that dies after connecting, and an error
//! that must not be retried. The late and dying endpoints are real TCP forwarders to the real
//! etcd, opened and closed by the test.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use mc::converge::{self, Stage, State};
use mc::etcd::{Etcd, Retry};
use molten_contract::keys;
use molten_testkit::process::free_port;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use super::support::*;

/// Forwards every connection to `127.0.0.1:<port>` on to `target` (`host:port`) until aborted;
/// aborting it also cuts the connections it carries.
async fn forward(listener: TcpListener, target: String) {
    let mut connections = JoinSet::new();
    while let Ok((mut inbound, _)) = listener.accept().await {
        let target = target.clone();
        connections.spawn(async move {
            if let Ok(mut outbound) = TcpStream::connect(&target).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

fn host_port(endpoint: &str) -> String {
    endpoint.trim_start_matches("https://").to_string()
}

fn dead_endpoint() -> String {
    format!("https://127.0.0.1:{}", free_port().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn converge_succeeds_when_the_first_endpoint_is_dead() {
    let etcd = start_etcd();
    let dead = dead_endpoint();
    let mut node = numbered_node(0, &etcd.endpoint());
    node.config.etcd.endpoints = vec![dead.clone(), etcd.endpoint()];
    node.write_config();
    let systemd = RecordingSystemd::default();

    let report = converge::converge(&node.options(Stage::Boot, None), &systemd)
        .await
        .unwrap();
    assert!(
        report.ok(),
        "{:#?} {:?}",
        report.steps,
        report.publish_error
    );
    let connected = &report
        .steps
        .iter()
        .find(|s| s.name == "etcd")
        .unwrap()
        .detail;
    assert!(
        connected.starts_with(&format!("connected to {}", etcd.endpoint())),
        "{connected}"
    );
    let record = trust()
        .etcdctl_root(
            &etcd.endpoint(),
            &["get", "--print-value-only", &keys::node_record("node-0")],
        )
        .unwrap();
    assert!(record.contains("\"node-0\""), "{record}");
}

#[tokio::test(flavor = "multi_thread")]
async fn converge_waits_for_an_etcd_that_comes_up_after_it() {
    let etcd = start_etcd();
    let port = free_port().unwrap();
    let node = numbered_node(0, &format!("https://127.0.0.1:{port}"));
    let systemd = RecordingSystemd::default();

    // The endpoint starts answering 3 s after mc started (the budget is 10 s).
    let target = host_port(&etcd.endpoint());
    let late: JoinHandle<()> = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        forward(listener, target).await;
    });
    let report = converge::converge(&node.options(Stage::Boot, None), &systemd)
        .await
        .unwrap();
    late.abort();
    assert!(
        report.ok(),
        "{:#?} {:?}",
        report.steps,
        report.publish_error
    );
    let step = report.steps.iter().find(|s| s.name == "etcd").unwrap();
    assert_eq!(step.state, State::Unchanged);
    assert!(step.duration_ms >= 2_500, "it waited: {step:?}");
    let status = trust()
        .etcdctl_root(
            &etcd.endpoint(),
            &["get", "--print-value-only", &keys::node_status("node-0")],
        )
        .unwrap();
    assert!(status.contains("\"ok\":true"), "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_fails_over_when_its_endpoint_dies_after_connecting() {
    let etcd = start_etcd();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let first = format!("https://{}", listener.local_addr().unwrap());
    let proxy = tokio::spawn(forward(listener, host_port(&etcd.endpoint())));

    let endpoints = vec![first.clone(), etcd.endpoint()];
    let mut session = Etcd::connect(
        &endpoints,
        Retry::with_budget(Duration::from_secs(10)),
        root_tls(),
    )
    .await
    .unwrap();
    assert_eq!(session.endpoint(), first);
    // The member behind the first endpoint goes away, connections and all.
    proxy.abort();
    let _ = proxy.await;

    session
        .run("test put", |mut client| async move {
            mc::etcd::put(&mut client, "/molten-test/failover", "written").await
        })
        .await
        .unwrap();
    assert_eq!(session.endpoint(), etcd.endpoint());
    let value = trust()
        .etcdctl_root(
            &etcd.endpoint(),
            &["get", "--print-value-only", "/molten-test/failover"],
        )
        .unwrap();
    assert_eq!(value.trim(), "written");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_error_etcd_gives_for_the_request_itself_is_not_retried() {
    let etcd = start_etcd();
    let mut session = Etcd::connect(
        &[etcd.endpoint()],
        Retry::with_budget(Duration::from_secs(10)),
        root_tls(),
    )
    .await
    .unwrap();
    let attempts = AtomicU32::new(0);
    let attempts = &attempts;
    let err = session
        .run(
            "put on a lease that does not exist",
            |mut client| async move {
                attempts.fetch_add(1, Ordering::SeqCst);
                let options = etcd_client::PutOptions::new().with_lease(0x7e57);
                client
                    .put("/molten-test/leased", "v", Some(options))
                    .await
                    .map_err(anyhow::Error::from)
            },
        )
        .await
        .unwrap_err();
    assert_eq!(attempts.load(Ordering::SeqCst), 1, "{err:#}");
    assert!(format!("{err:#}").contains("lease not found"), "{err:#}");
}
