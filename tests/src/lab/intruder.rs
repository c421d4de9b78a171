//! The trust proofs (issue 10): what an attacker on the rack network — the lab's hub namespace,
//! which reaches every node's etcd and Docker port and `molten serve` — can and cannot do.
//! Every probe here is expected to be *refused*; each also runs a control that must succeed
//! (with the right credential, the same call works), so a refusal is never an artefact of a
//! broken probe.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use molten_contract::trust::{CertificateKind, EnrollRequest, ENROLL_PATH, ENROLL_TOKEN_PATH};
use serde_json::Value;

use super::cluster::Lab;
use super::node::LabNode;
use super::probes::{etcd_client_of, identity_file};
use crate::http;
use crate::tls::{self, ClientIdentity};

/// The Docker TLS port of the lab profile.
pub const DOCKER_TLS_PORT: u16 = 2376;

/// How many etcd reads and Docker API calls succeeded without a client certificate, over
/// every node (both must be 0): etcd over TLS without a certificate, etcd over plain HTTP,
/// Docker over TLS without a certificate, Docker over plain HTTP.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Anonymous {
    pub etcd_reads: usize,
    pub docker_calls: usize,
    pub attempts: usize,
}

pub fn anonymous_access(lab: &Lab) -> Result<Anonymous> {
    let mut seen = Anonymous::default();
    for node in &lab.nodes {
        let https = format!("https://{}:2379", node.ip);
        let plain = format!("http://{}:2379", node.ip);
        for endpoint in [&https, &plain] {
            seen.attempts += 1;
            if lab
                .etcdctl_as(None, endpoint, &["get", "", "--prefix", "--keys-only"])
                .is_ok()
            {
                seen.etcd_reads += 1;
            }
        }
        let addr = SocketAddr::from((node.ip, DOCKER_TLS_PORT));
        let ca = lab.operator.docker_ca();
        let (over_tls, over_http) = lab.hub.ns.run_in(move || {
            let over_tls = tls::request(addr, &ca, None, "GET", "/containers/json", "");
            let over_http = http::get_tcp(&addr.to_string(), "/containers/json");
            Ok((over_tls.map(|a| a.status), over_http.map(|r| r.status)))
        })?;
        seen.attempts += 2;
        seen.docker_calls += usize::from(matches!(over_tls, Ok(200)));
        seen.docker_calls += usize::from(matches!(over_http, Ok(200)));
        // Control: the operator's certificates work on the same endpoints.
        lab.etcdctl_at(&https, &["get", "", "--prefix", "--keys-only"])
            .with_context(|| format!("control: the operator reads etcd on {}", node.name))?;
    }
    Ok(seen)
}

/// With `a`'s etcd client certificate (files stolen from the node), writing or deleting `b`'s
/// record and status is refused with etcd's "permission denied"; reading `b`'s record (the
/// control) works.
pub fn cross_node_writes(lab: &Lab, a: &LabNode, b: &LabNode) -> Result<()> {
    let stolen = etcd_client_of(a);
    let endpoints = lab.etcd_endpoints();
    let record = molten_contract::keys::node_record(&b.name);
    let status = molten_contract::keys::node_status(&b.name);
    lab.etcdctl_as(Some(&stolen), &endpoints, &["get", &record])
        .with_context(|| format!("control: {} reads {record}", a.name))?;
    for args in [
        vec!["put", record.as_str(), "{}"],
        vec!["put", status.as_str(), "{}"],
        vec!["del", record.as_str()],
    ] {
        match lab.etcdctl_as(Some(&stolen), &endpoints, &args) {
            Ok(out) => bail!(
                "{} with {}'s certificate: etcdctl {} succeeded: {out}",
                a.name,
                a.name,
                args.join(" ")
            ),
            Err(err) => ensure!(
                format!("{err:#}").contains("permission denied"),
                "etcdctl {} as {} failed, but not by access control: {err:#}",
                args.join(" "),
                a.name
            ),
        }
    }
    Ok(())
}

/// Every key in etcd (read as root), and how many there were: none may hold key material —
/// a PEM private key, any node's actual key bytes, or an enrollment token.
pub fn scan_for_secrets(lab: &Lab, tokens: &[String]) -> Result<usize> {
    let dump: Value = serde_json::from_str(&lab.etcdctl(&["get", "", "--prefix", "-w", "json"])?)
        .context("etcdctl get -w json")?;
    let kvs = dump["kvs"].as_array().context("no kvs")?;
    let mut secrets: Vec<(String, String)> = tokens
        .iter()
        .map(|t| ("an enrollment token".to_string(), t.clone()))
        .collect();
    for node in &lab.nodes {
        for file in std::fs::read_dir(identity_file(node, ""))? {
            let path = file?.path();
            if path.extension().is_some_and(|e| e == "key") {
                secrets.push((
                    format!("{}'s {}", node.name, path.display()),
                    pem_body(&std::fs::read_to_string(&path)?),
                ));
            }
        }
    }
    ensure!(
        secrets.len() > tokens.len(),
        "no node key files found to scan for"
    );
    for kv in kvs {
        let decode = |field: &str| -> Result<String> {
            use base64::Engine as _;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(kv[field].as_str().unwrap_or_default())
                .with_context(|| format!("etcd {field} is not base64"))?;
            Ok(String::from_utf8_lossy(&raw).into_owned())
        };
        let (key, value) = (decode("key")?, decode("value")?);
        let flat: String = value.split_whitespace().collect();
        ensure!(
            !value.contains("PRIVATE KEY"),
            "etcd key {key} holds a PEM private key"
        );
        for (what, secret) in &secrets {
            ensure!(
                !flat.contains(secret.as_str()),
                "etcd key {key} holds {what}"
            );
        }
    }
    Ok(kvs.len())
}

/// The base64 body of a PEM text, on one line.
fn pem_body(pem: &str) -> String {
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}

/// `node`'s enrollment token as its full Ignition config carries it, fetched the way an
/// attacker on the network would: from `molten serve`'s HTTPS listener (or from `bundle`).
pub fn token_in_served_config(lab: &Lab, node: &str) -> Result<String> {
    let addr = SocketAddr::from((lab.spec.host_ip, lab.spec.tls_port));
    let ca = lab.authority.join("authority-ca.pem");
    let path = format!("/ignition/{node}.ign");
    let answer = lab
        .hub
        .ns
        .run_in(move || tls::request(addr, &ca, None, "GET", &path, ""))?;
    ensure!(answer.status == 200, "GET {node}.ign: {}", answer.status);
    token_in_config(&answer.body)
}

/// `node`'s token in the bundle at `bundle` (a second compose's).
pub fn token_in_bundle(bundle: &Path, node: &str) -> Result<String> {
    token_in_config(&std::fs::read_to_string(
        bundle.join(format!("ignition/{node}.ign")),
    )?)
}

fn token_in_config(text: &str) -> Result<String> {
    let config: Value = serde_json::from_str(text).context("the config is not JSON")?;
    let source = config["storage"]["files"]
        .as_array()
        .and_then(|files| files.iter().find(|f| f["path"] == ENROLL_TOKEN_PATH))
        .and_then(|f| f["contents"]["source"].as_str())
        .context("the config has no enrollment token")?;
    let encoded = source
        .strip_prefix("data:,")
        .context("the token is not an inline data URL")?;
    Ok(percent_decode(encoded)?.trim().to_string())
}

fn percent_decode(text: &str) -> Result<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3).context("truncated escape")?;
            out.push(u8::from_str_radix(hex, 16).context("bad escape")?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(String::from_utf8(out)?)
}

/// POSTs an enrollment for `node` with `token` and fresh CSRs (keys made here, as an attacker
/// would) to the authority; returns the HTTP status and the refusal kind, if any.
pub fn enroll_with(lab: &Lab, node: &str, token: &str) -> Result<(u16, String)> {
    let mut requests = BTreeMap::new();
    for kind in CertificateKind::for_node(true) {
        let key = rcgen::KeyPair::generate()?;
        let csr = rcgen::CertificateParams::new(vec![format!("{node}.attacker")])?
            .serialize_request(&key)?
            .pem()?;
        requests.insert(kind, csr);
    }
    let body = serde_json::to_string(&EnrollRequest {
        node: node.to_string(),
        token: token.to_string(),
        requests,
        private_ip: None,
    })?;
    let addr = SocketAddr::from((lab.spec.host_ip, lab.spec.tls_port));
    let ca = lab.authority.join("authority-ca.pem");
    let answer = lab
        .hub
        .ns
        .run_in(move || tls::request(addr, &ca, None, "POST", ENROLL_PATH, &body))?;
    let kind = serde_json::from_str::<Value>(&answer.body)
        .ok()
        .and_then(|v| v["kind"].as_str().map(str::to_string))
        .unwrap_or_default();
    Ok((answer.status, kind))
}

/// The `enrolled node=<node>` lines of the serve log.
pub fn enrollments(log: &str, node: &str) -> usize {
    let needle = format!("authority: enrolled node={node} ");
    log.lines().filter(|l| l.contains(&needle)).count()
}

/// Presents `client` to `server`'s dockerd; Ok(()) when it is refused at TLS.
pub fn docker_refuses(lab: &Lab, server: &LabNode, client: ClientIdentity) -> Result<()> {
    let addr = SocketAddr::from((server.ip, DOCKER_TLS_PORT));
    let ca = lab.operator.docker_ca();
    let shown = client.cert.display().to_string();
    let result = lab
        .hub
        .ns
        .run_in(move || tls::request(addr, &ca, Some(&client), "GET", "/_ping", ""));
    match result {
        Ok(answer) => bail!(
            "dockerd on {} accepted {shown}: {} {}",
            server.name,
            answer.status,
            answer.body
        ),
        Err(_) => Ok(()),
    }
}

/// Presents `client` to etcd; Ok(()) when every read is refused.
pub fn etcd_refuses(lab: &Lab, client: &ClientIdentity) -> Result<()> {
    for node in &lab.nodes {
        let endpoint = format!("https://{}:2379", node.ip);
        if let Ok(out) = lab.etcdctl_as(Some(client), &endpoint, &["get", "", "--prefix"]) {
            bail!(
                "etcd on {} accepted {}: read {} bytes",
                node.name,
                client.cert.display(),
                out.len()
            );
        }
    }
    Ok(())
}
