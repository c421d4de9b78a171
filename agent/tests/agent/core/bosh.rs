//! `mc bosh` from real node records: the shapes BOSH expects, and a cpi-config that survives a
//! reboot of every node.

use std::time::Duration;

use mc::converge::Stage;
use molten_testkit::etcd::EtcdServer;
use yaml_rust2::YamlLoader;

use super::support::*;

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn bosh_configs_match_the_nodes_and_survive_reboots() {
    let etcd = EtcdServer::start().unwrap();
    let nodes = numbered_nodes(2, &etcd.endpoint());
    let sd = RecordingSystemd::default();
    for n in &nodes {
        assert!(n.converge(Stage::Boot, None, &sd).ok());
    }
    let ep = etcd.endpoint();

    let out = run_mc(&["bosh", "cpi-config", "--etcd", &ep], LIMIT);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc = &YamlLoader::load_from_str(&text(&out.stdout)).unwrap()[0];
    let cpis = doc["cpis"].as_vec().unwrap();
    assert_eq!(cpis.len(), 2);
    for (i, (cpi, node)) in cpis.iter().zip(&nodes).enumerate() {
        assert_eq!(cpi["name"].as_str().unwrap(), format!("docker-z{i}"));
        assert_eq!(cpi["type"].as_str(), Some("docker"));
        let p = &cpi["properties"];
        assert_eq!(
            p["host"].as_str().unwrap(),
            format!("tcp://10.0.0.1{i}:2376")
        );
        assert_eq!(p["api_version"].as_str(), Some("1.38"));
        assert_eq!(p["tls"]["ca"].as_str().unwrap(), node.tls("ca.pem"));
        assert_eq!(
            p["tls"]["certificate"].as_str().unwrap(),
            node.tls("client-cert.pem")
        );
        assert_eq!(
            p["tls"]["private_key"].as_str().unwrap(),
            node.tls("client-key.pem")
        );
    }

    let out = run_mc(
        &["bosh", "cloud-config", "--etcd", &ep, "--dns", "10.0.0.2"],
        LIMIT,
    );
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
    let out = run_mc(&["bosh", "write", "--etcd", &ep, "--dir", dir_arg], LIMIT);
    assert!(text(&out.stdout).contains("wrote cloud-config.yml, cpi-config.yml"));
    let before = snapshot(dir.path());

    // Every node reboots: certificates are stable, so nothing BOSH sees changes.
    for n in &nodes {
        assert!(n.converge(Stage::Boot, None, &sd).ok());
    }
    let out = run_mc(&["bosh", "write", "--etcd", &ep, "--dir", dir_arg], LIMIT);
    assert!(out.status.success());
    assert!(
        text(&out.stdout).starts_with("unchanged"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(snapshot(dir.path()), before);
}
