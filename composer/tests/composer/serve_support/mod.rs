//! Shared by the `serve_*` suites: a `molten serve` running in the test's runtime with its log
//! collected, and raw HTTP/1.1 requests (raw so paths reach the server exactly as sent).
#![allow(dead_code)] // each suite uses a different part

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use molten::serve::{self, LogSink};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

pub const TIMEOUT: Duration = Duration::from_secs(10);

pub struct Running {
    pub addr: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Running {
    /// Binds 127.0.0.1:0 for the bundle in `dir` (kept alive as long as the server) and runs it
    /// on the test's runtime, collecting log lines.
    pub async fn start_in(dir: tempfile::TempDir) -> Running {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink_lines = lines.clone();
        let sink: LogSink =
            Arc::new(move |line: &str| sink_lines.lock().unwrap().push(line.to_string()));
        let server = serve::bind(dir.path(), "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap()
            .with_log(sink);
        let addr = server.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        Running {
            addr,
            lines,
            stop: Some(stop),
            task,
            _dir: dir,
        }
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(TIMEOUT, &mut self.task)
            .await
            .expect("server did not stop after the shutdown signal")
            .unwrap()
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `METHOD target` with extra header lines, reads until the server closes.
pub async fn request(addr: SocketAddr, method: &str, target: &str, extra: &str) -> Reply {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let head =
            format!("{method} {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{extra}\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        raw
    };
    let raw = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .expect("request timed out");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.trim().to_string(), value.trim().to_string())
        })
        .collect();
    Reply {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}
