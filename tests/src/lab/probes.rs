//! Checks of the converged cluster, each run the way an operator would: etcdctl and HTTPS from
//! the lab bridge with the operator's credentials, `mc` inside a node or, for BOSH, on the
//! operator's side. Error messages never include private keys (the cpi-config carries the
//! operator's: only names and hosts are ever printed).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use ipnet::Ipv4Net;
use serde_json::Value;
use sha2::{Digest, Sha256};
use yaml_rust2::{Yaml, YamlLoader};

use super::cluster::Lab;
use super::node::LabNode;
use crate::process::wait_until;
use crate::tls::{self, ClientIdentity};

/// Where a node keeps the CA certificates it trusts (the contract's layout).
pub const TLS_DIR: &str = "/etc/molten/tls";

/// Where a node keeps its enrolled identity (keys 0600, generated on the node).
pub const IDENTITY_DIR: &str = "/var/lib/molten/identity";

/// A member's certificates, whose fingerprints must survive a reboot (never the keys).
pub const IDENTITY_CERTS: [&str; 5] = [
    "etcd-peer.pem",
    "etcd-server.pem",
    "etcd-client.pem",
    "etcd-admin.pem",
    "docker-server.pem",
];

/// The path of `file` of a node's identity, seen from the host.
pub fn identity_file(node: &LabNode, file: &str) -> std::path::PathBuf {
    node.root()
        .join(IDENTITY_DIR.trim_start_matches('/'))
        .join(file)
}

/// A node's etcd client identity (CN = its name), as an attacker holding its files would use it.
pub fn etcd_client_of(node: &LabNode) -> ClientIdentity {
    ClientIdentity::new(
        identity_file(node, "etcd-client.pem"),
        identity_file(node, "etcd-client.key"),
    )
}

/// 1. Every member healthy, one cluster: the members are exactly `names`, every endpoint
///    reports the same cluster id.
pub fn etcd_cluster(lab: &Lab, names: &[&str]) -> Result<()> {
    lab.etcdctl(&["endpoint", "health"])?;
    let members: Value = serde_json::from_str(&lab.etcdctl(&["member", "list", "-w", "json"])?)?;
    let mut found: Vec<&str> = members["members"]
        .as_array()
        .context("member list has no members")?
        .iter()
        .map(|m| m["name"].as_str().unwrap_or(""))
        .collect();
    found.sort_unstable();
    ensure!(
        found == names,
        "etcd members are {found:?}, expected {names:?}"
    );
    let status: Value = serde_json::from_str(&lab.etcdctl(&["endpoint", "status", "-w", "json"])?)?;
    let ids: Vec<u64> = status
        .as_array()
        .context("endpoint status is not a list")?
        .iter()
        .map(|s| s["Status"]["header"]["cluster_id"].as_u64().unwrap_or(0))
        .collect();
    ensure!(
        ids.len() == names.len() && ids.iter().all(|id| *id == ids[0] && *id != 0),
        "endpoints report cluster ids {ids:?}"
    );
    Ok(())
}

/// One etcd member as `etcdctl member list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Empty for a member that was added but has not started yet.
    pub name: String,
    pub id: u64,
    pub learner: bool,
    pub peer_urls: Vec<String>,
}

/// The cluster id and members, as the operator's `etcdctl member list` at `endpoints` sees
/// them.
pub fn etcd_members(lab: &Lab, endpoints: &str) -> Result<(u64, Vec<Member>)> {
    let text = lab.etcdctl_at(endpoints, &["member", "list", "-w", "json"])?;
    let v: Value = serde_json::from_str(&text).context("member list is not JSON")?;
    let cluster = v["header"]["cluster_id"]
        .as_u64()
        .with_context(|| format!("member list has no cluster id: {text}"))?;
    let members = v["members"]
        .as_array()
        .context("member list has no members")?
        .iter()
        .map(|m| Member {
            name: m["name"].as_str().unwrap_or_default().to_string(),
            id: m["ID"].as_u64().unwrap_or_default(),
            learner: m["isLearner"].as_bool().unwrap_or(false),
            peer_urls: m["peerURLs"]
                .as_array()
                .map(|urls| {
                    urls.iter()
                        .filter_map(|u| u.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect();
    Ok((cluster, members))
}

/// The cluster id every one of `endpoints` reports (`endpoint status`); fails unless they
/// agree.
pub fn etcd_cluster_id(lab: &Lab, endpoints: &str) -> Result<u64> {
    let status: Value =
        serde_json::from_str(&lab.etcdctl_at(endpoints, &["endpoint", "status", "-w", "json"])?)?;
    let ids: Vec<u64> = status
        .as_array()
        .context("endpoint status is not a list")?
        .iter()
        .map(|s| s["Status"]["header"]["cluster_id"].as_u64().unwrap_or(0))
        .collect();
    ensure!(
        !ids.is_empty() && ids.iter().all(|id| *id == ids[0] && *id != 0),
        "endpoints report cluster ids {ids:?}"
    );
    Ok(ids[0])
}

/// Waits until the members are exactly `names`, every one a voter that answers `endpoint
/// health`, and returns the cluster id they all report.
pub fn wait_voters(lab: &Lab, names: &[&str], timeout: Duration) -> Result<u64> {
    let endpoints = lab.etcd_endpoints_of(names);
    let mut want: Vec<&str> = names.to_vec();
    want.sort_unstable();
    let mut last = String::new();
    let found = wait_until(
        &format!("etcd members {} all voting and healthy", names.join(", ")),
        timeout,
        Duration::from_millis(500),
        || {
            let (_, members) = match etcd_members(lab, &endpoints) {
                Ok(m) => m,
                Err(err) => {
                    last = format!("{err:#}");
                    return Ok(None);
                }
            };
            let mut seen: Vec<(&str, bool)> = members
                .iter()
                .map(|m| (m.name.as_str(), m.learner))
                .collect();
            seen.sort_unstable();
            last = format!("{seen:?}");
            let voters = seen.iter().all(|(_, learner)| !learner);
            let named: Vec<&str> = seen.iter().map(|(n, _)| *n).collect();
            if !(voters && named == want) {
                return Ok(None);
            }
            if let Err(err) = lab.etcdctl_at(&endpoints, &["endpoint", "health"]) {
                last = format!("{err:#}");
                return Ok(None);
            }
            Ok(etcd_cluster_id(lab, &endpoints).ok())
        },
    );
    found.with_context(|| format!("last seen: {last}"))
}

/// Waits until etcd on the `survivors` answers a quorum read (`endpoint health`), i.e. the
/// members still up have elected a leader after one went away. A write sent during that election
/// times out on the server (etcd drops proposals while it has no leader).
pub fn wait_etcd_quorum(lab: &Lab, survivors: &[&str], timeout: Duration) -> Result<()> {
    let endpoints = lab.etcd_endpoints_of(survivors);
    wait_until(
        &format!("etcd on {} to have a leader", survivors.join(", ")),
        timeout,
        Duration::from_millis(500),
        || Ok(lab.etcdctl_at(&endpoints, &["endpoint", "health"]).ok()),
    )
    .map(|_| ())
}

/// sha256 fingerprints of a node's identity certificates and CA files.
pub fn cert_fingerprints(node: &LabNode) -> Result<BTreeMap<String, String>> {
    let mut prints = BTreeMap::new();
    let tls = node.root().join(TLS_DIR.trim_start_matches('/'));
    let files = IDENTITY_CERTS
        .iter()
        .map(|f| (f.to_string(), identity_file(node, f)))
        .chain(["etcd-ca.pem", "docker-ca.pem"].map(|f| (f.to_string(), tls.join(f))));
    for (name, path) in files {
        let pem = std::fs::read(&path).with_context(|| format!("{}: {name}", node.name))?;
        prints.insert(name, sha256_hex(&pem));
    }
    Ok(prints)
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// 3. One authority: every node trusts exactly the authority's etcd CA and Docker CA, and etcd
///    holds no CA or TLS keys at all (the old layout kept the CA key there).
pub fn one_authority(lab: &Lab) -> Result<()> {
    let keys = lab.etcdctl(&["get", "/molten/ca/", "--prefix", "--keys-only"])?
        + &lab.etcdctl(&["get", "/molten/tls/", "--prefix", "--keys-only"])?;
    ensure!(keys.trim().is_empty(), "CA/TLS keys in etcd: {keys}");
    for ca in ["etcd-ca.pem", "docker-ca.pem"] {
        let authority = std::fs::read_to_string(lab.authority.join(ca))?;
        for node in &lab.nodes {
            let path = node.root().join(TLS_DIR.trim_start_matches('/')).join(ca);
            let own = std::fs::read_to_string(&path).with_context(|| node.name.clone())?;
            ensure!(
                own.trim() == authority.trim(),
                "{}'s {ca} is not the authority's",
                node.name
            );
        }
    }
    Ok(())
}

/// 3. From the operator's side of the bridge, dockerd on `server` answers the operator's Docker
///    client certificate and presents its enrolled docker-server certificate; it refuses a
///    client without a certificate. Returns the server's Docker version.
pub fn docker_tls(lab: &Lab, server: &LabNode, port: u16) -> Result<String> {
    let addr = std::net::SocketAddr::from((server.ip, port));
    let ca = lab.operator.docker_ca();
    let client = lab.operator.docker_client();
    let (answer, refused) = lab.hub.ns.run_in(move || {
        let answer = tls::request(addr, &ca, Some(&client), "GET", "/version", "");
        let refused = tls::request(addr, &ca, None, "GET", "/version", "");
        Ok((answer, refused.map(|a| a.status)))
    })?;
    let answer = answer.with_context(|| format!("{addr} with the operator's certificate"))?;
    ensure!(
        answer.status == 200,
        "{addr}/version answered {}",
        answer.status
    );
    let served = sha256_hex(&pem_to_der(&std::fs::read_to_string(identity_file(
        server,
        "docker-server.pem",
    ))?)?);
    ensure!(
        sha256_hex(&answer.server_cert) == served,
        "{addr} does not present {}'s enrolled docker-server certificate",
        server.name
    );
    ensure!(
        refused.is_err(),
        "{addr} answered a client WITHOUT a certificate: {refused:?}"
    );
    let v: Value = serde_json::from_str(&answer.body).context("/version is not JSON")?;
    Ok(v["Version"].as_str().unwrap_or_default().to_string())
}

/// The DER of the first certificate of a PEM text.
pub fn pem_to_der(pem: &str) -> Result<Vec<u8>> {
    use rustls_pki_types::pem::PemObject;
    Ok(
        rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
            .map_err(|err| anyhow::anyhow!("not a PEM certificate: {err}"))?
            .as_ref()
            .to_vec(),
    )
}

/// 4. The BOSH Docker network's subnet on `node` (it must be the node's flannel subnet).
pub fn bosh_network_subnet(node: &LabNode, network: &str) -> Result<Ipv4Net> {
    let out = node.exec(&[
        "docker",
        "network",
        "inspect",
        network,
        "--format",
        "{{range .IPAM.Config}}{{.Subnet}} {{end}}",
    ])?;
    let subnets: Vec<&str> = out.split_whitespace().collect();
    ensure!(
        subnets.len() == 1,
        "{}: network {network} has subnets {subnets:?}",
        node.name
    );
    subnets[0]
        .parse()
        .with_context(|| format!("{}: bad subnet {}", node.name, subnets[0]))
}

/// The subnet flanneld (the stand-in) wrote to `/run/flannel/subnet.env` on `node`.
pub fn flannel_subnet(node: &LabNode) -> Result<Ipv4Net> {
    let env = node.exec(&["cat", "/run/flannel/subnet.env"])?;
    let value = env
        .lines()
        .find_map(|l| l.strip_prefix("FLANNEL_SUBNET="))
        .with_context(|| format!("{}: no FLANNEL_SUBNET in subnet.env", node.name))?;
    let gateway: Ipv4Net = value.parse()?;
    Ok(gateway.trunc())
}

/// One CPI of a cpi-config: its name and host (no keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cpi {
    pub name: String,
    pub host: String,
}

/// `mc bosh cpi-config` as the operator runs it (from the hub, with the etcd root and Docker
/// client certificates `molten authority issue-client` gave them), reading `node`'s node config
/// for the cluster's settings: the raw text (holds the operator's private key: never print it)
/// and the CPIs.
pub fn cpi_config(lab: &Lab, node: &LabNode) -> Result<(String, Vec<Cpi>)> {
    let op = &lab.operator;
    let (root, docker) = (op.etcd_root(), op.docker_client());
    let config = node
        .root()
        .join(molten_contract::NODE_CONFIG_PATH.trim_start_matches('/'));
    let out = lab
        .hub
        .ns
        .command(&lab.binaries.mc.display().to_string())
        .args(["bosh", "cpi-config", "--etcd", &lab.etcd_endpoints()])
        .arg("--config")
        .arg(&config)
        .arg("--etcd-ca")
        .arg(op.etcd_ca())
        .arg("--etcd-cert")
        .arg(&root.cert)
        .arg("--etcd-key")
        .arg(&root.key)
        .arg("--client-cert")
        .arg(&docker.cert)
        .arg("--client-key")
        .arg(&docker.key)
        .arg("--docker-ca")
        .arg(op.docker_ca())
        .stdin(std::process::Stdio::null())
        .output()
        .context("failed to run mc bosh cpi-config")?;
    ensure!(
        out.status.success(),
        "mc bosh cpi-config ({}) failed: {}",
        node.name,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let text = String::from_utf8(out.stdout).context("cpi-config is not UTF-8")?;
    let docs = YamlLoader::load_from_str(&text).context("cpi-config is not YAML")?;
    let cpis = docs
        .first()
        .and_then(|d| d["cpis"].as_vec())
        .context("cpi-config has no cpis list")?;
    let mut found = Vec::new();
    for cpi in cpis {
        let field = |y: &Yaml, what: &str| -> Result<String> {
            y.as_str()
                .map(str::to_string)
                .with_context(|| format!("a CPI has no {what}"))
        };
        ensure!(
            cpi["type"].as_str() == Some("docker"),
            "a CPI is not of type docker"
        );
        found.push(Cpi {
            name: field(&cpi["name"], "name")?,
            host: field(&cpi["properties"]["host"], "properties.host")?,
        });
    }
    Ok((text, found))
}

/// 5. Every CPI's host answers the Docker API over TLS with the CPI's own CA, certificate and
///    key (written to a 0700 scratch dir of the lab, then removed), as BOSH's Docker CPI would.
pub fn cpi_hosts_answer(lab: &Lab, cpi_text: &str) -> Result<()> {
    let docs = YamlLoader::load_from_str(cpi_text).context("cpi-config is not YAML")?;
    let cpis = docs[0]["cpis"].as_vec().context("no cpis")?;
    let dir = tempfile::Builder::new()
        .prefix("cpi-check-")
        .tempdir_in(&lab.dir)?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
    for cpi in cpis {
        let name = cpi["name"].as_str().unwrap_or("?");
        let props = &cpi["properties"];
        let host = props["host"].as_str().context("no host")?;
        let mut files = BTreeMap::new();
        for (file, key) in [
            ("ca", "ca"),
            ("cert", "certificate"),
            ("key", "private_key"),
        ] {
            let pem = props["tls"][key]
                .as_str()
                .with_context(|| format!("CPI {name} has no tls.{key}"))?;
            let path = dir.path().join(format!("{name}-{file}.pem"));
            std::fs::write(&path, pem)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
            files.insert(file, path);
        }
        let addr: std::net::SocketAddr =
            host.strip_prefix("tcp://")
                .and_then(|a| a.parse().ok())
                .with_context(|| format!("CPI {name}: host {host} is not tcp://<ip>:<port>"))?;
        let client = ClientIdentity::new(&files["cert"], &files["key"]);
        let ca = files["ca"].clone();
        let answer = lab
            .hub
            .ns
            .run_in(move || tls::request(addr, &ca, Some(&client), "GET", "/_ping", ""))
            .with_context(|| format!("CPI {name}: {host} over TLS"))?;
        ensure!(
            answer.status == 200 && answer.body.trim() == "OK",
            "CPI {name}: {host}/_ping answered {} {:?}",
            answer.status,
            answer.body
        );
    }
    Ok(())
}

/// A node's last converge as published in etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub finished: String,
    pub ok: bool,
    /// `(step, state, detail)`; details name files and keys, never their contents.
    pub steps: Vec<(String, String, String)>,
}

pub fn published_status(lab: &Lab, node: &str) -> Result<Published> {
    let key = molten_contract::keys::node_status(node);
    let text = lab.etcdctl(&["get", &key, "--print-value-only"])?;
    let v: Value = serde_json::from_str(text.trim()).with_context(|| format!("{key}: {text}"))?;
    let steps = v["steps"]
        .as_array()
        .context("status has no steps")?
        .iter()
        .map(|s| {
            let f = |k: &str| s[k].as_str().unwrap_or("").to_string();
            (f("name"), f("state"), f("detail"))
        })
        .collect();
    Ok(Published {
        finished: v["finished"].as_str().unwrap_or("").to_string(),
        ok: v["ok"].as_bool().unwrap_or(false),
        steps,
    })
}
