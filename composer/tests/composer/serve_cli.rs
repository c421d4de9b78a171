//! The `molten serve` command as operators run it: prints where it listens, serves, stops cleanly
//! on SIGTERM, and exits 2 naming the file when the bundle was tampered with.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

const TIMEOUT: Duration = Duration::from_secs(20);

/// Kills the server by PID if the test ends before it exited.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn write_bundle(dir: &Path) {
    let files = [
        ("boot.ipxe", "#!ipxe\nchain nodes/${mac:hexhyp}.ipxe\n"),
        ("ignition/n1.ign", r#"{"ignition":{"version":"3.3.0"}}"#),
    ];
    let mut sums = String::new();
    for (rel, data) in files {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, data).unwrap();
        sums.push_str(&format!("{}  {rel}\n", hex::encode(Sha256::digest(data))));
    }
    std::fs::write(dir.join("SHA256SUMS"), sums).unwrap();
}

fn spawn_serve(dir: &Path) -> (Guard, mpsc::Receiver<String>) {
    let child = Command::new(env!("CARGO_BIN_EXE_molten"))
        .args(["serve", dir.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("molten runs");
    let mut guard = Guard(child);
    let stderr = guard.0.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (guard, rx)
}

/// The next stderr line containing `needle`, within the timeout.
fn wait_for_line(lines: &mpsc::Receiver<String>, needle: &str) -> String {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => continue,
            Err(err) => panic!("no stderr line containing {needle:?}: {err}"),
        }
    }
}

fn get(addr: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    reply
}

fn wait_exit(guard: &mut Guard) -> std::process::ExitStatus {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(status) = guard.0.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "molten serve did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn serves_until_sigterm_then_exits_cleanly() {
    serve_until("TERM");
}

#[test]
fn serves_until_ctrl_c_then_exits_cleanly() {
    serve_until("INT");
}

/// Starts `molten serve`, fetches a config, sends SIG`signal`, expects a clean exit.
fn serve_until(signal: &str) {
    let dir = tempfile::tempdir().unwrap();
    write_bundle(dir.path());
    let (mut guard, lines) = spawn_serve(dir.path());
    let started = wait_for_line(&lines, "listening on http://");
    assert!(
        started.contains("2 files from") && started.contains("1 node config(s): n1"),
        "{started}"
    );
    let addr = started
        .rsplit("http://")
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_string();

    let reply = get(&addr, "/ignition/n1.ign");
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    assert!(
        reply.ends_with(r#"{"ignition":{"version":"3.3.0"}}"#),
        "{reply}"
    );
    let logged = wait_for_line(&lines, "GET /ignition/n1.ign");
    assert!(logged.ends_with("status=200 bytes=32 node=n1"), "{logged}");
    wait_for_line(&lines, "node n1 fetched its Ignition config");

    let pid = guard.0.id().to_string();
    let killed = Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = wait_exit(&mut guard);
    assert!(status.success(), "exit status after SIG{signal}: {status}");
    wait_for_line(&lines, "molten serve: stopped");
}

#[test]
fn exits_2_naming_the_tampered_file() {
    let dir = tempfile::tempdir().unwrap();
    write_bundle(dir.path());
    std::fs::write(dir.path().join("boot.ipxe"), "#!ipxe\nshell\n").unwrap();
    let (mut guard, lines) = spawn_serve(dir.path());
    let status = wait_exit(&mut guard);
    assert_eq!(status.code(), Some(2));
    let error = wait_for_line(&lines, "error:");
    assert!(error.contains("boot.ipxe has sha256"), "{error}");
    assert!(!error.contains("n1.ign"), "{error}");
}
