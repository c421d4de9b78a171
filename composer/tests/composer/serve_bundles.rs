//! `molten serve` on bundles the composer really writes (the shipped dev profile): the vagrant
//! pointer configs' full configs are served with the hash the pointers demand, and every ipxe
//! script and config request is logged with the node the composer made it for.

use crate::serve_support;

use std::path::{Path, PathBuf};

use molten::output::write_bundle;
use molten::platform::sample::FAKE_AGENT;
use molten::platform::Platform;
use molten::profile::{load_file, LoadOptions};
use serde_json::Value;
use serve_support::{request, Running};
use sha2::{Digest, Sha512};

fn shipped_profile(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../profiles/{name}.yaml"))
}

/// Composes the dev profile for `platform` into a temp dir, as `molten compose` does.
fn composed(platform: Platform) -> (tempfile::TempDir, Vec<String>) {
    composed_profile("dev", platform)
}

fn composed_profile(profile: &str, platform: Platform) -> (tempfile::TempDir, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let agent = dir.path().join("mc");
    std::fs::write(&agent, FAKE_AGENT).unwrap();
    let options = LoadOptions {
        platform: Some(platform.rules()),
        agent_override: Some(&agent),
        strict: false,
    };
    let loaded =
        load_file(&shipped_profile(profile), &options).expect("shipped profiles are valid");
    let nodes = loaded
        .cluster
        .nodes
        .iter()
        .map(|n| n.name.clone())
        .collect();
    let composition = molten::platform::sample::compose(&loaded.cluster, platform).unwrap();
    write_bundle(&composition.bundle, &dir.path().join("bundle")).unwrap();
    (dir, nodes)
}

/// Moves the bundle to its own temp dir root, which the server keeps alive.
fn bundle_root(dir: tempfile::TempDir) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(dir.path().join("bundle")).unwrap() {
        let entry = entry.unwrap();
        std::fs::rename(entry.path(), root.path().join(entry.file_name())).unwrap();
    }
    root
}

#[tokio::test(flavor = "multi_thread")]
async fn vagrant_pointers_fetch_their_full_configs_from_serve() {
    let (dir, nodes) = composed(Platform::Vagrant);
    let root = bundle_root(dir);
    let pointers: Vec<(String, Value)> = nodes
        .iter()
        .map(|node| {
            let path = root.path().join(format!("pointer/{node}.ign"));
            let text = std::fs::read_to_string(&path).unwrap();
            (node.clone(), serde_json::from_str(&text).unwrap())
        })
        .collect();
    let server = Running::start_in(root).await;
    for (node, pointer) in &pointers {
        let replace = &pointer["ignition"]["config"]["replace"];
        let source = replace["source"].as_str().unwrap();
        let path = &source[source.find("/ignition/").expect("served under /ignition/")..];
        let reply = request(server.addr, "GET", path, "").await;
        assert_eq!(reply.status, 200, "{node}: {source}");
        let sha512 = hex::encode(Sha512::digest(&reply.body));
        assert_eq!(
            replace["verification"]["hash"].as_str().unwrap(),
            format!("sha512-{sha512}"),
            "{node}: the served config is not the one its pointer demands"
        );
    }
    let lines = server.lines();
    for node in &nodes {
        let expected = format!("GET /ignition/{node}.ign status=200 ");
        let line = lines
            .iter()
            .find(|l| l.contains(&expected))
            .expect(&expected);
        assert!(line.ends_with(&format!(" node={node}")), "{line}");
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("node {node} fetched its Ignition config"))),
            "{lines:#?}"
        );
    }
    let last = lines.last().unwrap();
    assert!(
        last.contains(&format!(
            "{n} of {n} nodes have fetched theirs",
            n = nodes.len()
        )),
        "{last}"
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn ipxe_scripts_are_logged_with_the_node_they_boot() {
    let (dir, nodes) = composed(Platform::Ipxe);
    let root = bundle_root(dir);
    let scripts: Vec<String> = std::fs::read_dir(root.path().join("nodes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(scripts.len(), nodes.len());
    let server = Running::start_in(root).await;
    assert_eq!(
        request(server.addr, "GET", "/boot.ipxe", "").await.status,
        200
    );
    for script in &scripts {
        let reply = request(server.addr, "GET", &format!("/nodes/{script}"), "").await;
        assert_eq!(reply.status, 200);
        let text = String::from_utf8(reply.body).unwrap();
        let node = nodes
            .iter()
            .find(|n| text.contains(&format!("/ignition/{n}.ign ")))
            .expect("the script boots one node's config");
        let mac = script.trim_end_matches(".ipxe");
        let lines = server.lines();
        let logged = lines
            .iter()
            .find(|l| l.contains(&format!("/nodes/{script} ")))
            .unwrap();
        assert!(
            logged.ends_with(&format!(" node={node} mac={mac}")),
            "{logged}"
        );
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn install_to_disk_configs_are_told_apart_from_full_configs() {
    let (dir, nodes) = composed_profile("rack", Platform::Ipxe);
    let root = bundle_root(dir);
    let server = Running::start_in(root).await;
    let script = "/nodes/52-54-00-0a-01-11.ipxe";
    for path in [
        script,
        "/ignition/rack-a-01-install.ign",
        "/ignition/rack-a-01.ign",
    ] {
        assert_eq!(
            request(server.addr, "GET", path, "").await.status,
            200,
            "{path}"
        );
    }
    let lines = server.lines();
    let logged = |needle: &str| {
        lines
            .iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in {lines:#?}"))
            .clone()
    };
    assert!(logged(script).ends_with(" node=rack-a-01 mac=52-54-00-0a-01-11"));
    assert!(logged("GET /ignition/rack-a-01-install.ign").ends_with(" node=rack-a-01"));
    logged("node rack-a-01 fetched its install-to-disk config ignition/rack-a-01-install.ign");
    let summary = logged("node rack-a-01 fetched its Ignition config ignition/rack-a-01.ign");
    assert!(
        summary.ends_with(&format!("; 1 of {} nodes have fetched theirs", nodes.len())),
        "{summary}"
    );
    server.stop().await.unwrap();
}
