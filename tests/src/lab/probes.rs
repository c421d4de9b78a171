//! Checks of the converged cluster, each run the way an operator would: etcdctl from the lab
//! bridge, the Docker CLI inside a node, `mc` inside a node. Error messages never include
//! private keys (the cpi-config carries some: only names and hosts are ever printed).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use ipnet::Ipv4Net;
use serde_json::Value;
use sha2::{Digest, Sha256};
use yaml_rust2::{Yaml, YamlLoader};

use super::checks::MC;
use super::cluster::Lab;
use super::node::LabNode;
use crate::process::wait_until;

/// Where the agent keeps a node's Docker TLS files (the contract's layout).
pub const TLS_DIR: &str = "/etc/molten/tls";

/// Certificate files whose fingerprints must survive a reboot (never the keys).
pub const CERT_FILES: [&str; 3] = ["ca.pem", "server-cert.pem", "client-cert.pem"];

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

/// sha256 fingerprints of a node's certificate files.
pub fn cert_fingerprints(node: &LabNode) -> Result<BTreeMap<String, String>> {
    let mut prints = BTreeMap::new();
    for file in CERT_FILES {
        let path = node.root().join(TLS_DIR.trim_start_matches('/')).join(file);
        let pem = std::fs::read(&path).with_context(|| format!("{}: {file}", node.name))?;
        let digest = Sha256::digest(&pem);
        prints.insert(
            file.to_string(),
            digest.iter().map(|b| format!("{b:02x}")).collect(),
        );
    }
    Ok(prints)
}

/// 3. Exactly one CA: etcd holds one, and every node's `ca.pem` is that one.
pub fn one_ca(lab: &Lab) -> Result<()> {
    let keys = lab.etcdctl(&["get", "/molten/ca/", "--prefix", "--keys-only"])?;
    let keys: Vec<&str> = keys.lines().filter(|l| !l.is_empty()).collect();
    ensure!(
        keys == ["/molten/ca/cert", "/molten/ca/key"],
        "CA keys in etcd: {keys:?}"
    );
    let ca = lab.etcdctl(&["get", "/molten/ca/cert", "--print-value-only"])?;
    for node in &lab.nodes {
        let path = node
            .root()
            .join(TLS_DIR.trim_start_matches('/'))
            .join("ca.pem");
        let own = std::fs::read_to_string(&path).with_context(|| node.name.clone())?;
        ensure!(
            own.trim() == ca.trim(),
            "{}'s ca.pem differs from the cluster CA in etcd",
            node.name
        );
    }
    Ok(())
}

/// 3. From `client`, Docker on `server` answers with the agent's client certificate and
///    refuses a client without one. Returns the server's Docker version.
pub fn docker_tls_between(client: &LabNode, server: &LabNode, port: u16) -> Result<String> {
    let host = format!("tcp://{}:{port}", server.ip);
    let tls = |f: &str| format!("{TLS_DIR}/{f}");
    let version = client
        .exec(&[
            "docker",
            "--tlsverify",
            &format!("--tlscacert={}", tls("ca.pem")),
            &format!("--tlscert={}", tls("client-cert.pem")),
            &format!("--tlskey={}", tls("client-key.pem")),
            "-H",
            &host,
            "version",
            "--format",
            "{{.Server.Version}}",
        ])
        .with_context(|| format!("{} → {host} with the client certificate", client.name))?;
    let refused = client.exec_output(&[
        "docker",
        "--tlsverify",
        &format!("--tlscacert={}", tls("ca.pem")),
        "-H",
        &host,
        "version",
        "--format",
        "{{.Server.Version}}",
    ])?;
    let err = String::from_utf8_lossy(&refused.stderr);
    ensure!(
        !refused.status.success() && !String::from_utf8_lossy(&refused.stdout).contains('.'),
        "{} reached Docker on {host} WITHOUT a client certificate",
        client.name
    );
    ensure!(
        err.contains("certificate") || err.contains("tls") || err.contains("remote error"),
        "{} → {host} without a certificate failed, but not at TLS: {err}",
        client.name
    );
    Ok(version.trim().to_string())
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

/// `mc bosh cpi-config` on `node`: the raw text (holds private keys: never print it) and CPIs.
pub fn cpi_config(node: &LabNode) -> Result<(String, Vec<Cpi>)> {
    let text = node.exec(&[MC, "bosh", "cpi-config"])?;
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
///    key (written to a 0600 scratch dir in `node`, then removed).
pub fn cpi_hosts_answer(node: &LabNode, cpi_text: &str) -> Result<()> {
    let docs = YamlLoader::load_from_str(cpi_text).context("cpi-config is not YAML")?;
    let cpis = docs[0]["cpis"].as_vec().context("no cpis")?;
    let scratch = "var/lib/molten-lab-check";
    let dir = node.root().join(scratch);
    std::fs::create_dir_all(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    let result = (|| {
        for cpi in cpis {
            let name = cpi["name"].as_str().unwrap_or("?");
            let props = &cpi["properties"];
            let host = props["host"].as_str().context("no host")?;
            for (file, key) in [
                ("ca", "ca"),
                ("cert", "certificate"),
                ("key", "private_key"),
            ] {
                let pem = props["tls"][key]
                    .as_str()
                    .with_context(|| format!("CPI {name} has no tls.{key}"))?;
                let path = dir.join(format!("{name}-{file}.pem"));
                std::fs::write(&path, pem)?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
            }
            let in_node = |file: &str| format!("/{scratch}/{name}-{file}.pem");
            let version = node
                .exec(&[
                    "docker",
                    "--tlsverify",
                    &format!("--tlscacert={}", in_node("ca")),
                    &format!("--tlscert={}", in_node("cert")),
                    &format!("--tlskey={}", in_node("key")),
                    "-H",
                    host,
                    "version",
                    "--format",
                    "{{.Server.APIVersion}}",
                ])
                .with_context(|| format!("CPI {name}: {host} over TLS"))?;
            if version.trim().is_empty() {
                bail!("CPI {name}: {host} gave no API version");
            }
        }
        Ok(())
    })();
    std::fs::remove_dir_all(&dir)?;
    result
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
