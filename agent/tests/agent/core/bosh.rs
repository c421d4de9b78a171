//! `mc bosh` from real node records: the shapes BOSH expects, the operator's Docker client
//! certificate in every CPI (no key from etcd), and a cpi-config that survives a reboot of every
//! node.

use std::time::Duration;

use mc::converge::Stage;
use yaml_rust2::YamlLoader;

use super::support::*;

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn bosh_configs_match_the_nodes_and_survive_reboots() {
    let etcd = start_etcd();
    let nodes = numbered_nodes(2, &etcd.endpoint());
    let sd = RecordingSystemd::default();
    for n in &nodes {
        assert!(n.converge(Stage::Boot, None, &sd).ok());
    }
    let ep = etcd.endpoint();
    let bosh = |args: &[&str]| {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend(bosh_tls_args());
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        run_mc(&all, LIMIT)
    };

    // Without the operator's certificate there is no cpi-config: node keys are not in etcd.
    let mut args = vec!["bosh", "cpi-config", "--etcd", &ep];
    let root = root_tls_args();
    args.extend(root.iter().map(String::as_str));
    let out = run_mc(&args, LIMIT);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("pass --client-cert and --client-key"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "no partial output");

    let out = bosh(&["bosh", "cpi-config", "--etcd", &ep]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc = &YamlLoader::load_from_str(&text(&out.stdout)).unwrap()[0];
    let cpis = doc["cpis"].as_vec().unwrap();
    assert_eq!(cpis.len(), 2);
    let operator = operator_docker();
    for (i, (cpi, node)) in cpis.iter().zip(&nodes).enumerate() {
        assert_eq!(cpi["name"].as_str().unwrap(), format!("docker-z{i}"));
        assert_eq!(cpi["type"].as_str(), Some("docker"));
        let p = &cpi["properties"];
        assert_eq!(
            p["host"].as_str().unwrap(),
            format!("tcp://10.0.0.1{i}:2376")
        );
        assert_eq!(p["api_version"].as_str(), Some("1.38"));
        // The Docker CA the node's dockerd trusts, and the operator's certificate.
        assert_eq!(p["tls"]["ca"].as_str().unwrap(), node.tls("docker-ca.pem"));
        assert_eq!(p["tls"]["certificate"].as_str().unwrap(), operator.cert_pem);
        assert_eq!(p["tls"]["private_key"].as_str().unwrap(), operator.key_pem);
    }

    let out = bosh(&["bosh", "cloud-config", "--etcd", &ep, "--dns", "10.0.0.2"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc = &YamlLoader::load_from_str(&text(&out.stdout)).unwrap()[0];
    assert_eq!(doc["azs"][1]["name"].as_str(), Some("z1"));
    assert_eq!(doc["azs"][1]["cpi"].as_str(), Some("docker-z1"));
    let subnet = &doc["networks"][0]["subnets"][1];
    assert_eq!(subnet["range"].as_str(), Some("10.213.2.0/24"));
    assert_eq!(subnet["gateway"].as_str(), Some("10.213.2.1"));
    assert_eq!(
        subnet["reserved"][0].as_str(),
        Some("10.213.2.1-10.213.2.20")
    );
    assert_eq!(subnet["dns"][0].as_str(), Some("10.0.0.2"));
    assert_eq!(
        subnet["cloud_properties"]["name"].as_str(),
        Some("bosh-node-1")
    );
    assert_eq!(doc["disk_types"][0]["disk_size"].as_i64(), Some(10_240));
    assert_eq!(doc["compilation"]["az"].as_str(), Some("z0"));

    let dir = tempfile::tempdir().unwrap();
    let dir_arg = dir.path().to_str().unwrap();
    let out = bosh(&["bosh", "write", "--etcd", &ep, "--dir", dir_arg]);
    assert!(text(&out.stdout).contains("wrote cloud-config.yml, cpi-config.yml"));
    let before = snapshot(dir.path());

    // Every node reboots: identities are kept, so nothing BOSH sees changes.
    for n in &nodes {
        assert!(n.converge(Stage::Boot, None, &sd).ok());
    }
    let out = bosh(&["bosh", "write", "--etcd", &ep, "--dir", dir_arg]);
    assert!(out.status.success());
    assert!(
        text(&out.stdout).starts_with("unchanged"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(snapshot(dir.path()), before);
}
