//! `molten serve` against a hand-made bundle, over real TCP: what is served, what is refused, what
//! is logged. Requests are written raw so paths reach the server exactly as sent (HTTP clients
//! would normalize `../` away).

use crate::serve_support;

use std::path::Path;

use molten::serve;
use serve_support::{request, Running};
use sha2::{Digest, Sha256};

const MAC1: &str = "52-54-00-12-34-56";

/// A small ipxe-like bundle: two nodes, a 100 KiB "kernel", and a file that exists on disk but is
/// not listed in SHA256SUMS.
fn write_bundle(dir: &Path) {
    let files: Vec<(&str, Vec<u8>)> = vec![
        (
            "boot.ipxe",
            b"#!ipxe\nchain nodes/${mac:hexhyp}.ipxe\n".to_vec(),
        ),
        (
            "nodes/52-54-00-12-34-56.ipxe",
            b"#!ipxe\nkernel http://10.0.2.2:8080/assets/kernel console=ttyS0 \
              ignition.config.url=http://10.0.2.2:8080/ignition/n1.ign\nboot\n"
                .to_vec(),
        ),
        (
            "ignition/n1.ign",
            br#"{"ignition":{"version":"3.3.0"}}"#.to_vec(),
        ),
        (
            "ignition/n2.ign",
            br#"{"ignition":{"version":"3.3.0"},"n":2}"#.to_vec(),
        ),
        ("assets/kernel", kernel_bytes()),
    ];
    let mut sums = String::new();
    for (rel, data) in &files {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, data).unwrap();
        sums.push_str(&format!("{}  {rel}\n", hex::encode(Sha256::digest(data))));
    }
    std::fs::write(dir.join("SHA256SUMS"), sums).unwrap();
    std::fs::write(dir.join("secret.txt"), "not listed\n").unwrap();
}

fn bundle_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_bundle(dir.path());
    dir
}

fn kernel_bytes() -> Vec<u8> {
    (0..100 * 1024u32).map(|i| (i * 7 % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn serves_listed_files_with_their_types() {
    let server = Running::start_in(bundle_dir()).await;
    let boot = request(server.addr, "GET", "/boot.ipxe", "").await;
    assert_eq!(boot.status, 200);
    assert_eq!(boot.body, b"#!ipxe\nchain nodes/${mac:hexhyp}.ipxe\n");
    assert_eq!(
        boot.header("content-type"),
        Some("text/plain; charset=utf-8")
    );

    let config = request(server.addr, "GET", "/ignition/n1.ign", "").await;
    assert_eq!(config.status, 200);
    assert_eq!(config.body, br#"{"ignition":{"version":"3.3.0"}}"#);
    assert_eq!(
        config.header("content-type"),
        Some("application/vnd.coreos.ignition+json")
    );

    let kernel = request(server.addr, "GET", "/assets/kernel", "").await;
    assert_eq!(kernel.status, 200);
    assert_eq!(kernel.body, kernel_bytes());
    assert_eq!(
        kernel.header("content-type"),
        Some("application/octet-stream")
    );

    let sums = request(server.addr, "GET", "/SHA256SUMS", "").await;
    assert_eq!(sums.status, 200);
    assert!(String::from_utf8(sums.body)
        .unwrap()
        .contains("  assets/kernel\n"));
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn unlisted_paths_are_not_found_and_directories_are_not_listed() {
    let server = Running::start_in(bundle_dir()).await;
    for target in ["/secret.txt", "/", "/nodes/", "/nodes", "/ignition/n3.ign"] {
        let reply = request(server.addr, "GET", target, "").await;
        assert_eq!(reply.status, 404, "{target}");
        assert!(
            !String::from_utf8_lossy(&reply.body).contains("n1.ign"),
            "{target} listed files"
        );
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn path_traversal_is_refused() {
    let server = Running::start_in(bundle_dir()).await;
    for target in [
        "/../secret.txt",
        "/nodes/../secret.txt",
        "/nodes/../boot.ipxe",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/../../../../etc/passwd",
        "/nodes%2f..%2fsecret.txt",
    ] {
        let reply = request(server.addr, "GET", target, "").await;
        assert_eq!(reply.status, 400, "{target}");
        let body = String::from_utf8_lossy(&reply.body);
        assert!(body.contains("path traversal refused"), "{target}: {body}");
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn head_sends_the_length_without_a_body() {
    let server = Running::start_in(bundle_dir()).await;
    let reply = request(server.addr, "HEAD", "/assets/kernel", "").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-length"), Some("102400"));
    assert!(reply.body.is_empty());
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn range_requests_get_partial_content() {
    let server = Running::start_in(bundle_dir()).await;
    let kernel = kernel_bytes();
    let reply = request(
        server.addr,
        "GET",
        "/assets/kernel",
        "Range: bytes=1000-1999\r\n",
    )
    .await;
    assert_eq!(reply.status, 206);
    assert_eq!(
        reply.header("content-range"),
        Some("bytes 1000-1999/102400")
    );
    assert_eq!(reply.body, &kernel[1000..2000]);

    let tail = request(server.addr, "GET", "/assets/kernel", "Range: bytes=-10\r\n").await;
    assert_eq!(tail.status, 206);
    assert_eq!(tail.body, &kernel[kernel.len() - 10..]);

    let beyond = request(
        server.addr,
        "GET",
        "/assets/kernel",
        "Range: bytes=200000-\r\n",
    )
    .await;
    assert_eq!(beyond.status, 416);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_one_line_per_request_with_the_node() {
    let server = Running::start_in(bundle_dir()).await;
    let script = format!("/nodes/{MAC1}.ipxe");
    let unknown = "/nodes/52-54-00-ff-ff-ff.ipxe";
    let script_reply = request(server.addr, "GET", &script, "").await;
    let config_reply = request(server.addr, "GET", "/ignition/n1.ign", "").await;
    let head_reply = request(server.addr, "HEAD", "/ignition/n2.ign", "").await;
    let unknown_reply = request(server.addr, "GET", unknown, "").await;
    assert_eq!(
        [
            script_reply.status,
            config_reply.status,
            head_reply.status,
            unknown_reply.status
        ],
        [200, 200, 200, 404]
    );
    let lines = server.lines();
    let requests: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains(" client=127.0.0.1:"))
        .collect();
    assert_eq!(requests.len(), 4, "{lines:#?}");
    let expected = [
        format!(
            "GET {script} status=200 bytes={} node=n1 mac={MAC1}",
            script_reply.body.len()
        ),
        format!(
            "GET /ignition/n1.ign status=200 bytes={} node=n1",
            config_reply.body.len()
        ),
        "HEAD /ignition/n2.ign status=200 bytes=0 node=n2".to_string(),
        format!(
            "GET {unknown} status=404 bytes={}",
            unknown_reply.body.len()
        ),
    ];
    for (line, expected) in requests.iter().zip(&expected) {
        assert!(
            line.ends_with(expected.as_str()),
            "{line:?} should end with {expected:?}"
        );
    }
    // Each line starts with an RFC 3339 UTC time.
    for line in &requests {
        let time = line.split(' ').next().unwrap();
        assert!(
            time.len() == 20 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
            "{line}"
        );
    }
    // Exactly one summary: n1 fetched its config (a HEAD is not a fetch).
    let n1_sha = hex::encode(Sha256::digest(br#"{"ignition":{"version":"3.3.0"}}"#));
    let summaries: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("fetched its Ignition"))
        .collect();
    assert_eq!(summaries.len(), 1, "{lines:#?}");
    assert!(summaries[0].contains(&format!(
        "node n1 fetched its Ignition config ignition/n1.ign (32 bytes, sha256 {n1_sha}); 1 of 2 nodes"
    )), "{}", summaries[0]);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn refuses_to_start_when_a_file_changed_or_vanished() {
    let dir = tempfile::tempdir().unwrap();
    write_bundle(dir.path());
    std::fs::write(dir.path().join("ignition/n2.ign"), "tampered").unwrap();
    std::fs::remove_file(dir.path().join("assets/kernel")).unwrap();
    let err = serve::bind(dir.path(), "127.0.0.1:0".parse().unwrap())
        .await
        .err()
        .expect("a tampered bundle must not be served");
    let message = format!("{err:#}");
    assert!(
        message.contains("2 file(s) no longer match SHA256SUMS"),
        "{message}"
    );
    assert!(message.contains("ignition/n2.ign has sha256 "), "{message}");
    assert!(message.contains("assets/kernel: "), "{message}");
    assert!(!message.contains("n1.ign"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn refuses_a_bundle_without_a_valid_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let err = serve::bind(dir.path(), "127.0.0.1:0".parse().unwrap())
        .await
        .err()
        .unwrap();
    assert!(format!("{err:#}").contains("SHA256SUMS"), "{err:#}");

    write_bundle(dir.path());
    let sums = std::fs::read_to_string(dir.path().join("SHA256SUMS")).unwrap();
    let escaping = format!("{sums}{}  ../secret.txt\n", "0".repeat(64));
    std::fs::write(dir.path().join("SHA256SUMS"), escaping).unwrap();
    let err = serve::bind(dir.path(), "127.0.0.1:0".parse().unwrap())
        .await
        .err()
        .unwrap();
    let message = format!("{err:#}");
    assert!(
        message.contains("SHA256SUMS:6: path \"../secret.txt\""),
        "{message}"
    );
}
