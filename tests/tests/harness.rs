//! Proves each harness piece drives the real component.

use std::path::Path;

use molten_testkit::docker::Dockerd;
use molten_testkit::etcd::EtcdServer;
use molten_testkit::ignition;

#[test]
fn etcd_stores_and_returns_a_key() {
    let etcd = EtcdServer::start_named("harness").unwrap();
    assert!(etcd.endpoint().starts_with("http://127.0.0.1:"));
    assert!(Path::new(&format!("/proc/{}", etcd.pid())).exists());
    etcd.etcdctl(&["put", "/molten/test", "hello"]).unwrap();
    let got = etcd
        .etcdctl(&["get", "/molten/test", "--print-value-only"])
        .unwrap();
    assert_eq!(got.trim(), "hello");
    let members = etcd.etcdctl(&["member", "list"]).unwrap();
    assert!(members.contains("harness"), "{members}");
}

#[test]
fn etcd_stop_kills_the_process_and_drop_removes_its_dir() {
    let etcd = EtcdServer::start().unwrap();
    let pid = etcd.pid();
    let dir = etcd.dir().to_path_buf();
    etcd.stop().unwrap();
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "etcd {pid} still runs"
    );
    assert!(!dir.exists(), "{dir:?} left behind");
}

#[test]
fn two_etcds_run_side_by_side() {
    let a = EtcdServer::start().unwrap();
    let b = EtcdServer::start().unwrap();
    assert_ne!(a.endpoint(), b.endpoint());
    a.etcdctl(&["put", "k", "a"]).unwrap();
    let in_b = b.etcdctl(&["get", "k", "--print-value-only"]).unwrap();
    assert_eq!(in_b.trim(), "", "the servers share data");
}

#[test]
fn dockerd_answers_and_runs_the_busybox_image() {
    let docker = Dockerd::start().unwrap();
    assert!(docker.host().starts_with("unix:///"));
    let ping = molten_testkit::http::get_unix(docker.socket_path(), "/_ping").unwrap();
    assert_eq!((ping.status, ping.body.as_str()), (200, "OK"));
    docker.import_busybox_image("busybox").unwrap();
    let out = docker
        .cli(&[
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "echo hello from $(uname -s)",
        ])
        .unwrap();
    assert_eq!(out.trim(), "hello from Linux");
}

#[test]
fn dockerd_bridge_networks_work_and_their_bridges_are_removed() {
    let docker = Dockerd::start().unwrap();
    docker.import_busybox_image("busybox").unwrap();
    let id = docker
        .cli(&[
            "network",
            "create",
            "--subnet",
            "10.199.7.0/24",
            "harness-net",
        ])
        .unwrap();
    let bridge = format!("br-{}", &id.trim()[..12]);
    assert!(Path::new("/sys/class/net").join(&bridge).exists());
    let addr = docker
        .cli(&[
            "run",
            "--rm",
            "--network",
            "harness-net",
            "busybox",
            "ip",
            "-4",
            "-o",
            "addr",
            "show",
            "eth0",
        ])
        .unwrap();
    assert!(addr.contains("inet 10.199.7.2/24"), "{addr}");
    let pid = docker.pid();
    docker.stop().unwrap();
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "dockerd {pid} still runs"
    );
    assert!(
        !Path::new("/sys/class/net").join(&bridge).exists(),
        "{bridge} left behind"
    );
}

#[test]
fn dockerd_takes_extra_flags() {
    let port = molten_testkit::free_port().unwrap();
    let docker = Dockerd::builder()
        .arg(format!("--host=tcp://127.0.0.1:{port}"))
        .start()
        .unwrap();
    let r = molten_testkit::http::get_tcp(&format!("127.0.0.1:{port}"), "/_ping").unwrap();
    assert_eq!(r.status, 200);
    drop(docker);
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

const MINIMAL: &str = r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/etc/molten/hello","mode":420,"contents":{"source":"data:,hello%0A"}}]},"systemd":{"units":[{"name":"hello.service","enabled":true,"contents":"[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"}]}}"#;

#[test]
fn ignition_validate_accepts_a_minimal_config_and_rejects_a_broken_one() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.ign");
    std::fs::write(&good, MINIMAL).unwrap();
    ignition::validate(&good).unwrap();

    let bad = dir.path().join("bad.ign");
    std::fs::write(
        &bad,
        MINIMAL.replace("\"path\":\"/etc/molten/hello\"", "\"path\":\"relative\""),
    )
    .unwrap();
    let err = ignition::validate(&bad).unwrap_err().to_string();
    assert!(err.contains("bad.ign"), "{err}");
    assert!(err.contains("absolute"), "{err}");

    let unsupported = dir.path().join("v9.ign");
    std::fs::write(&unsupported, MINIMAL.replace("3.3.0", "9.9.0")).unwrap();
    assert!(ignition::validate(&unsupported).is_err());
}

#[test]
fn ignition_engine_writes_files_and_enables_units() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.ign");
    std::fs::write(&config, MINIMAL).unwrap();
    let root = dir.path().join("root");
    let log = ignition::apply_files(&config, &root).unwrap();
    assert!(log.contains("files passed"), "{log}");
    assert_eq!(
        std::fs::read_to_string(root.join("etc/molten/hello")).unwrap(),
        "hello\n"
    );
    let wants = root.join("etc/systemd/system/multi-user.target.wants/hello.service");
    let preset = root.join("etc/systemd/system-preset/20-ignition.preset");
    let preset = std::fs::read_to_string(preset).unwrap_or_default();
    assert!(
        wants.is_symlink() || preset.contains("enable hello.service"),
        "hello.service is not enabled (preset: {preset:?})"
    );
    assert!(root.join("etc/systemd/system/hello.service").exists());
}

#[test]
fn ignition_engine_fetches_remote_files_and_checks_their_hash() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Serves the same body to every request until the test process ends.
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut buf = [0u8; 2048];
            let _ = stream.read(&mut buf).unwrap();
            stream
                .write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nagent\n",
                )
                .unwrap();
        }
    });
    // sha512 of "agent\n"
    let hash = sha512_hex(b"agent\n");
    let dir = tempfile::tempdir().unwrap();
    let good = format!(
        r#"{{"ignition":{{"version":"3.3.0"}},"storage":{{"files":[{{"path":"/opt/bin/mc","mode":493,"contents":{{"source":"http://127.0.0.1:{port}/mc","verification":{{"hash":"sha512-{hash}"}}}}}}]}}}}"#
    );
    let config = dir.path().join("remote.ign");
    std::fs::write(&config, &good).unwrap();
    let root = dir.path().join("root");
    ignition::apply_files(&config, &root).unwrap();
    assert_eq!(std::fs::read(root.join("opt/bin/mc")).unwrap(), b"agent\n");

    let wrong = good.replace(&hash, &"0".repeat(128));
    std::fs::write(&config, wrong).unwrap();
    let err = ignition::apply_files(&config, &dir.path().join("root2")).unwrap_err();
    assert!(format!("{err:#}").contains("hash"), "{err:#}");
}

fn sha512_hex(data: &[u8]) -> String {
    let out = std::process::Command::new("sha512sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(data)?;
            child.wait_with_output()
        })
        .unwrap();
    String::from_utf8(out.stdout).unwrap()[..128].to_string()
}
