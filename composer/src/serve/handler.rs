//! One request: refuse traversal, look the path up in the manifest, let tower-http's `ServeFile`
//! answer (it does HEAD, Range and conditional requests), then log.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::body::{Body, HttpBody};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use tower_http::services::ServeFile;

use super::access_log::{fetched_line, install_fetched_line, request_line, LogSink, RequestRecord};
use super::manifest::{Manifest, MANIFEST_NAME};
use super::nodes::{NodeFile, NodeIndex};

/// Everything the handler reads, shared by all connections.
pub struct Shared {
    pub manifest: Manifest,
    pub manifest_path: PathBuf,
    pub nodes: NodeIndex,
    pub log: LogSink,
    /// Nodes that have fetched their Ignition config since the server started.
    pub fetched: Mutex<BTreeSet<String>>,
}

pub async fn handle(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let rel = path.strip_prefix('/').unwrap_or(&path).to_string();
    let response = respond(&shared, &rel, request).await;

    let status = response.status();
    let bytes = if method == Method::HEAD {
        0
    } else {
        content_length(&response)
    };
    let node_file = shared.nodes.get(&rel);
    let now = SystemTime::now();
    (shared.log)(&request_line(
        now,
        &RequestRecord {
            client,
            method: method.as_str(),
            path: &path,
            status: status.as_u16(),
            bytes,
            node_file,
        },
    ));
    if method == Method::GET && status == StatusCode::OK {
        match node_file {
            Some(NodeFile::Config { node }) => log_fetched(&shared, now, node, &rel, bytes),
            Some(NodeFile::InstallConfig { node }) => {
                let sha256 = shared.manifest.get(&rel).map_or("?", |e| e.sha256.as_str());
                (shared.log)(&install_fetched_line(now, node, &rel, bytes, sha256));
            }
            _ => {}
        }
    }
    response
}

async fn respond(shared: &Shared, rel: &str, request: Request) -> Response {
    if is_traversal(rel) {
        return (StatusCode::BAD_REQUEST, "path traversal refused\n").into_response();
    }
    let file = if rel == MANIFEST_NAME {
        shared.manifest_path.clone()
    } else if let Some(entry) = shared.manifest.get(rel) {
        entry.path.clone()
    } else {
        let message = format!("not found: /{rel} is not listed in this bundle's {MANIFEST_NAME}\n");
        return (StatusCode::NOT_FOUND, message).into_response();
    };
    match ServeFile::new(&file).try_call(request).await {
        Ok(response) => {
            let mut response = response.map(Body::new);
            if response.status().is_success() {
                if let Some(content_type) = content_type(rel) {
                    response
                        .headers_mut()
                        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
                }
            }
            response
        }
        Err(err) => {
            let message = format!("cannot read /{rel}: {err}\n");
            (StatusCode::INTERNAL_SERVER_ERROR, message).into_response()
        }
    }
}

/// A `.` or `..` segment (also percent-encoded) or an encoded separator. Listed paths never
/// contain one, so such a request could only be an attempt to leave the bundle.
fn is_traversal(rel: &str) -> bool {
    let lower = rel.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") || lower.contains('\\') {
        return true;
    }
    lower.split('/').any(|segment| {
        let decoded = segment.replace("%2e", ".");
        decoded == "." || decoded == ".."
    })
}

/// Types tower-http cannot guess from the extension; everything else keeps its guess
/// (`application/octet-stream` for kernels, initrds and `mc`).
fn content_type(rel: &str) -> Option<&'static str> {
    if rel.ends_with(".ipxe") || rel == MANIFEST_NAME {
        Some("text/plain; charset=utf-8")
    } else if rel.ends_with(".ign") {
        Some("application/vnd.coreos.ignition+json")
    } else {
        None
    }
}

/// The body length the response announces: its `Content-Length`, or the exact size of a body
/// hyper will measure itself (error messages).
fn content_length(response: &Response) -> u64 {
    response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .or_else(|| response.body().size_hint().exact())
        .unwrap_or(0)
}

fn log_fetched(shared: &Shared, now: SystemTime, node: &str, rel: &str, bytes: u64) {
    let fetched = {
        let mut fetched = shared
            .fetched
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        fetched.insert(node.to_string());
        fetched.len()
    };
    let sha256 = shared
        .manifest
        .get(rel)
        .map_or("?", |entry| entry.sha256.as_str());
    let total = shared.nodes.config_nodes().len();
    (shared.log)(&fetched_line(now, node, rel, bytes, sha256, fetched, total));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spots_traversal() {
        for bad in [
            "../etc/passwd",
            "a/../../b",
            "%2e%2e/x",
            "a/%2E./b",
            ".",
            "a%2fb",
            "a\\b",
        ] {
            assert!(is_traversal(bad), "{bad}");
        }
        for good in [
            "boot.ipxe",
            "nodes/52-54-00-12-34-56.ipxe",
            "assets/a..b",
            ".hidden-not",
        ] {
            assert!(!is_traversal(good), "{good}");
        }
    }
}
