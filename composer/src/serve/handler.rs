//! One request: only GET and HEAD, refuse traversal, answer `/healthz`, look the path up in the
//! verified content and answer from it (HEAD, Range, If-None-Match), then log.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::body::{Body, HttpBody};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use super::access_log::{fetched_line, install_fetched_line, request_line, LogSink, RequestRecord};
use super::content::Content;
use super::limits::Admission;
use super::manifest::{HEALTH_PATH, MANIFEST_NAME};
use super::nodes::{NodeFile, NodeIndex};
use super::response::file_response;

/// Everything the handler reads, shared by all connections.
pub struct Shared {
    pub content: Arc<Content>,
    pub admission: Arc<Admission>,
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
                let sha256 = shared.content.get(&rel).map_or("?", |e| e.sha256.as_str());
                (shared.log)(&install_fetched_line(now, node, &rel, bytes, sha256));
            }
            _ => {}
        }
    }
    response
}

async fn respond(shared: &Shared, rel: &str, request: Request) -> Response {
    let method = request.method();
    if method != Method::GET && method != Method::HEAD {
        let mut response = (
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD are served\n",
        )
            .into_response();
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    if is_traversal(rel) {
        return (StatusCode::BAD_REQUEST, "path traversal refused\n").into_response();
    }
    if rel == HEALTH_PATH {
        return health(shared);
    }
    if rel == MANIFEST_NAME {
        let body = if method == Method::HEAD {
            Body::empty()
        } else {
            Body::from(shared.content.manifest_bytes.clone())
        };
        let mut response = body.into_response();
        response.headers_mut().insert(
            header::CONTENT_LENGTH,
            HeaderValue::from(shared.content.manifest_bytes.len()),
        );
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(content_type(rel)),
        );
        return response;
    }
    match shared.content.get(rel) {
        Some(file) => file_response(
            file,
            method,
            request.headers(),
            content_type(rel),
            &shared.log,
        ),
        None => {
            let message =
                format!("not found: /{rel} is not listed in this bundle's {MANIFEST_NAME}\n");
            (StatusCode::NOT_FOUND, message).into_response()
        }
    }
}

/// `/healthz`: the bundle is verified and the listener accepts. Load balancers need nothing more;
/// the counts help an operator.
fn health(shared: &Shared) -> Response {
    let body = format!(
        "{{\"status\":\"ok\",\"files\":{},\"connections\":{},\"max_connections\":{}}}\n",
        shared.content.len(),
        shared.admission.open(),
        shared.admission.limits().max_connections
    );
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
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

/// The type of a served file, from its name: iPXE scripts and text as text, Ignition configs as
/// Ignition, JSON as JSON, everything else (kernels, initrds, `mc`) as bytes.
fn content_type(rel: &str) -> &'static str {
    if rel.ends_with(".ipxe")
        || rel.ends_with(".txt")
        || rel == MANIFEST_NAME
        || rel == "Vagrantfile"
    {
        "text/plain; charset=utf-8"
    } else if rel.ends_with(".ign") {
        "application/vnd.coreos.ignition+json"
    } else if rel.ends_with(".json") {
        "application/json"
    } else {
        "application/octet-stream"
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
        .content
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
