//! 100 etcd-member nodes enrolling at once against one `molten serve --authority` (the release
//! binary, HTTPS on loopback): each opens its own TLS connection and asks for all five
//! certificates (peer, server, client, admin, Docker), as a member's `mc enroll` does. The node
//! side (key generation, CSRs) is done beforehand; the figure is the wall time from the first
//! connection to the last answer. Every round uses fresh tokens.
//!
//! Run: `cargo bench -p molten --bench enroll`. Figures: docs/performance.md.

#[path = "../tests/composer/authority_support/mod.rs"]
mod authority_support;

use std::io::BufRead;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use authority_support::*;
use molten::authority::register::{register_nodes, DEFAULT_TOKEN_TTL};
use molten_contract::trust::CertificateKind;

const NODES: usize = 100;
const ROUNDS: usize = 7;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let nodes: Vec<_> = (0..NODES)
        .map(|i| {
            node(
                &format!("node-{i:03}"),
                &format!("10.0.{}.{}", i / 200, 10 + i % 200),
                true,
            )
        })
        .collect();
    let fixture = Fixture::new(&nodes);
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_molten"));
    // A panic below must not leave the server running (it would hold the caller's files open).
    molten_testkit::process::die_with_parent(&mut command);
    let child = command
        .args(["serve", "--authority"])
        .arg(fixture.dir())
        .args(["--tls-listen", "127.0.0.1:0"])
        // The 100 "nodes" all come from 127.0.0.1; the per-client cap (64) is for real clients.
        .args(["--max-connections-per-client", "128"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("molten serve starts");
    let mut server = molten_testkit::ChildGuard::new("molten serve", child);
    let stderr = server.take_stderr().expect("stderr is piped");
    let mut lines = std::io::BufReader::new(stderr).lines();
    let first = lines.next().unwrap().unwrap();
    let addr: SocketAddr = first
        .split("https://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no address in {first:?}"));
    // Drain the log so the pipe never blocks the server.
    let drain = std::thread::spawn(move || lines.map_while(Result::ok).count());

    let ca = fixture.read("authority-ca.pem");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut times = Vec::new();
    let mut tokens = fixture.tokens.clone();
    for round in 0..ROUNDS {
        if round > 0 {
            // The previous round spent every token: compose again for the next generation.
            tokens = register_nodes(
                &fixture.authority,
                "test",
                &nodes,
                &[],
                time::OffsetDateTime::now_utc(),
                DEFAULT_TOKEN_TTL,
            )
            .unwrap();
        }
        let bodies: Vec<String> = nodes
            .iter()
            .map(|n| body(&n.name, Some(&tokens[&n.name]), &CertificateKind::ALL).0)
            .collect();
        let elapsed = runtime.block_on(async {
            let start = Instant::now();
            let mut tasks = tokio::task::JoinSet::new();
            for body in bodies {
                let ca = ca.clone();
                tasks.spawn(
                    async move { request(addr, &ca, None, "POST", "/v1/enroll", &body).await },
                );
            }
            while let Some(result) = tasks.join_next().await {
                let answer = result.unwrap().expect("the request completes");
                assert_eq!(answer.status, 200, "{answer:?}");
            }
            start.elapsed()
        });
        times.push(elapsed);
    }
    server.stop().expect("molten serve stops on SIGTERM");
    let logged = drain.join().unwrap();
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "enroll {NODES} members at once (5 certificates each), {ROUNDS} rounds: \
         min {:.0} ms, median {:.0} ms, max {:.0} ms ({logged} log lines)",
        ms(times[0]),
        ms(times[ROUNDS / 2]),
        ms(times[ROUNDS - 1])
    );
}
