use yaml_rust2::{Yaml, YamlLoader};

use super::*;

fn zone(name: &str, zone: u32, ip: &str) -> Zone {
    let subnet: ipnet::Ipv4Net = format!("10.1.{}.0/24", zone + 1).parse().unwrap();
    Zone {
        record: NodeRecord {
            version: crate::records::RECORD_VERSION,
            name: name.into(),
            cluster: "dev".into(),
            zone,
            roles: vec![Role::Worker],
            private_ip: ip.parse().unwrap(),
            subnet,
            gateway: molten_contract::gateway(subnet),
            docker_endpoint: format!("tcp://{ip}:2376"),
            ca_fingerprint: "ab".into(),
            server_cert_expiry: "2027-01-01T00:00:00Z".into(),
            certificates: Vec::new(),
            bosh_network: Some("bosh".into()),
            mc_version: "0.1.0".into(),
        },
        network: "bosh".into(),
    }
}

fn inputs() -> Inputs {
    Inputs {
        ca_pem: "-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n".into(),
        zones: vec![
            zone("node-0", 0, "10.0.0.10"),
            zone("node-1", 1, "10.0.0.11"),
        ],
        left_out: vec![],
    }
}

/// The operator's Docker client certificate.
fn client() -> Pair {
    Pair {
        cert_pem: "-----BEGIN CERTIFICATE-----\nboshcert\n-----END CERTIFICATE-----\n".into(),
        key_pem: "-----BEGIN PRIVATE KEY-----\nboshkey\n-----END PRIVATE KEY-----\n".into(),
    }
}

fn parse(text: &str) -> Yaml {
    YamlLoader::load_from_str(text).unwrap().remove(0)
}

#[test]
fn cpi_config_has_one_docker_cpi_per_zone_with_tls() {
    let inputs = inputs();
    let doc = parse(&cpi_config(&inputs, &client()));
    let cpis = doc["cpis"].as_vec().unwrap();
    assert_eq!(cpis.len(), 2);
    let c = &cpis[1];
    assert_eq!(c["name"].as_str(), Some("docker-z1"));
    assert_eq!(c["type"].as_str(), Some("docker"));
    let p = &c["properties"];
    assert_eq!(p["host"].as_str(), Some("tcp://10.0.0.11:2376"));
    assert_eq!(
        p["api_version"].as_str(),
        Some("1.38"),
        "a string, not a float"
    );
    assert_eq!(p["tls"]["ca"].as_str(), Some(inputs.ca_pem.as_str()));
    assert_eq!(
        p["tls"]["certificate"].as_str(),
        Some(client().cert_pem.as_str())
    );
    assert_eq!(
        p["tls"]["private_key"].as_str(),
        Some(client().key_pem.as_str())
    );
}

#[test]
fn cloud_config_matches_the_bosh_shapes() {
    let doc = parse(&cloud_config(&inputs(), &CloudOptions::default()));
    let azs = doc["azs"].as_vec().unwrap();
    assert_eq!(azs[0]["name"].as_str(), Some("z0"));
    assert_eq!(azs[0]["cpi"].as_str(), Some("docker-z0"));
    let net = &doc["networks"][0];
    assert_eq!(net["type"].as_str(), Some("manual"));
    let s = &net["subnets"][1];
    assert_eq!(s["az"].as_str(), Some("z1"));
    assert_eq!(s["range"].as_str(), Some("10.1.2.0/24"));
    assert_eq!(s["gateway"].as_str(), Some("10.1.2.1"));
    assert_eq!(s["reserved"][0].as_str(), Some("10.1.2.1-10.1.2.20"));
    assert_eq!(s["dns"][0].as_str(), Some("8.8.8.8"));
    assert_eq!(s["cloud_properties"]["name"].as_str(), Some("bosh"));
    assert_eq!(doc["vm_types"][0]["name"].as_str(), Some("default"));
    assert_eq!(doc["disk_types"][0]["disk_size"].as_i64(), Some(10_240));
    let c = &doc["compilation"];
    assert_eq!(c["az"].as_str(), Some("z0"));
    assert_eq!(c["network"].as_str(), Some(NETWORK_NAME));
    assert_eq!(c["vm_type"].as_str(), Some("default"));
    assert_eq!(c["workers"].as_i64(), Some(4));
    assert_eq!(c["reuse_compilation_vms"].as_bool(), Some(true));
}

#[test]
fn output_is_stable() {
    let a = inputs();
    assert_eq!(cpi_config(&a, &client()), cpi_config(&a.clone(), &client()));
    assert!(cpi_config(&a, &client()).ends_with('\n'));
}

#[test]
fn write_only_writes_changes_and_protects_keys() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let options = CloudOptions::default();
    let written = write(dir.path(), &inputs(), &client(), &options).unwrap();
    assert_eq!(written, vec![CLOUD_CONFIG_FILE, CPI_CONFIG_FILE]);
    let cpi = dir.path().join(CPI_CONFIG_FILE);
    let meta = std::fs::metadata(&cpi).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert!(write(dir.path(), &inputs(), &client(), &options)
        .unwrap()
        .is_empty());
    assert_eq!(std::fs::metadata(&cpi).unwrap().ino(), meta.ino());
}
