use super::*;
use molten_contract::Role;

fn rules() -> Rules {
    Rules {
        flannel: Some(FlannelSettings::new("10.1.0.0/16".parse().unwrap(), 24)),
        docker_port: Some(2376),
        docker_ca_fingerprint: Some("ab".repeat(32)),
    }
}

fn record() -> NodeRecord {
    let subnet: Ipv4Net = "10.1.3.0/24".parse().unwrap();
    NodeRecord {
        version: RECORD_VERSION,
        name: "node-2".into(),
        cluster: "dev".into(),
        zone: 2,
        roles: vec![Role::Etcd, Role::Worker],
        private_ip: "192.168.56.13".parse().unwrap(),
        subnet,
        gateway: molten_contract::gateway(subnet),
        docker_endpoint: "tcp://192.168.56.13:2376".into(),
        ca_fingerprint: "ab".repeat(32),
        server_cert_expiry: "2027-01-01T00:00:00Z".into(),
        certificates: vec![],
        bosh_network: Some("bosh".into()),
        mc_version: "0.1.0".into(),
    }
}

fn checked(record: &NodeRecord) -> Checked {
    check_record(
        "node-2",
        serde_json::to_string(record).unwrap().as_bytes(),
        &rules(),
    )
}

fn reason(checked: Checked) -> String {
    match checked {
        Checked::Invalid(reason) => reason,
        other => panic!("expected an invalid record, got {other:?}"),
    }
}

#[test]
fn a_consistent_record_is_valid() {
    assert_eq!(checked(&record()), Checked::Valid(Box::new(record())));
    // A record of mc before the version field is version 1.
    let mut json: Value = serde_json::to_value(record()).unwrap();
    json.as_object_mut().unwrap().remove("version");
    let old = check_record("node-2", json.to_string().as_bytes(), &rules());
    assert_eq!(old, Checked::Valid(Box::new(record())));
}

#[test]
fn garbage_is_invalid_with_a_bounded_reason() {
    for value in [
        &b"\xff\xfe"[..],
        b"not json",
        b"[1,2]",
        b"{}",
        b"{\"version\":\"x\"}",
    ] {
        let why = reason(check_record("node-2", value, &rules()));
        assert!(why.len() <= MAX_ERROR_BYTES + 32, "{why}");
    }
    let huge = vec![b' '; MAX_RECORD_BYTES + 1];
    assert!(reason(check_record("node-2", &huge, &rules())).contains("more than 16384"));
}

#[test]
fn the_name_must_be_the_keys_and_a_node_name() {
    let mut other = record();
    other.name = "node-3".into();
    assert!(reason(checked(&other)).contains("differs from its key's \"node-2\""));
    let mut hostile = record();
    hostile.name = "node-2\n\x1b[2Jok".into();
    let why = reason(check_record(
        "node-2\n\x1b[2Jok",
        serde_json::to_string(&hostile).unwrap().as_bytes(),
        &rules(),
    ));
    assert!(why.contains("\\n\\u{1b}[2Jok"), "{why}");
    assert!(!why.contains('\x1b') && !why.contains('\n'), "{why}");
}

#[test]
fn the_endpoint_must_be_on_the_nodes_address_and_port() {
    let mut elsewhere = record();
    elsewhere.docker_endpoint = "tcp://203.0.113.9:2376".into();
    assert!(reason(checked(&elsewhere)).contains("not on the node's address 192.168.56.13"));
    let mut port = record();
    port.docker_endpoint = "tcp://192.168.56.13:2375".into();
    assert!(reason(checked(&port)).contains("Docker port 2376"));
    let mut scheme = record();
    scheme.docker_endpoint = "unix:///var/run/docker.sock".into();
    assert!(reason(checked(&scheme)).contains("not tcp://"));
}

#[test]
fn the_subnet_must_be_the_zones() {
    let mut wrong = record();
    wrong.subnet = "10.1.9.0/24".parse().unwrap();
    wrong.gateway = molten_contract::gateway(wrong.subnet);
    assert!(reason(checked(&wrong)).contains("not zone 2's subnet 10.1.3.0/24"));
    let mut gateway = record();
    gateway.gateway = "10.1.3.7".parse().unwrap();
    assert!(reason(checked(&gateway)).contains("gateway 10.1.3.7"));
    let mut zone = record();
    zone.zone = 100_000;
    assert!(reason(checked(&zone)).contains("zone 100000"));
}

#[test]
fn text_fields_are_bounded_and_free_of_control_characters() {
    let mut long = record();
    long.mc_version = "1".repeat(500);
    assert!(reason(checked(&long)).contains("mc_version is 500 bytes"));
    let mut control = record();
    control.cluster = "dev\x07".into();
    assert!(reason(checked(&control)).contains("cluster \"dev\\u{7}\""));
    let mut network = record();
    network.bosh_network = Some("-x y".into());
    assert!(reason(checked(&network)).contains("bosh_network"));
    let mut unknown: Value = serde_json::to_value(record()).unwrap();
    unknown["docker_tls_key"] = "PEM".into();
    let why = reason(check_record(
        "node-2",
        unknown.to_string().as_bytes(),
        &rules(),
    ));
    assert!(why.contains("unknown field"), "{why}");
}

#[test]
fn a_newer_record_is_shown_as_newer() {
    let future = br#"{"version":7,"name":"node-2","mc_version":"9.0.0\u001b[31m","shape":"new"}"#;
    assert_eq!(
        check_record("node-2", future, &rules()),
        Checked::Newer {
            version: 7,
            mc_version: Some("9.0.0\\u{1b}[31m".into())
        }
    );
    assert!(reason(check_record("node-2", br#"{"version":0}"#, &rules())).contains("version 0"));
}

#[test]
fn without_cluster_rules_the_record_is_still_checked_on_its_own() {
    let lenient = Rules::default();
    let mut port = record();
    port.docker_endpoint = "tcp://192.168.56.13:2375".into();
    let value = serde_json::to_string(&port).unwrap();
    assert!(matches!(
        check_record("node-2", value.as_bytes(), &lenient),
        Checked::Valid(_)
    ));
    let mut gateway = record();
    gateway.gateway = "10.1.3.9".parse().unwrap();
    let value = serde_json::to_string(&gateway).unwrap();
    assert!(matches!(
        check_record("node-2", value.as_bytes(), &lenient),
        Checked::Invalid(_)
    ));
    assert_eq!(
        Rules::from_flannel_config(r#"{"Network":"10.1.0.0/16","SubnetLen":24}"#),
        Some(FlannelSettings::new("10.1.0.0/16".parse().unwrap(), 24))
    );
    assert_eq!(Rules::from_flannel_config("garbage"), None);
}

#[test]
fn the_record_must_name_the_clusters_docker_ca() {
    let mut foreign = record();
    foreign.ca_fingerprint = "cd".repeat(32);
    let why = reason(checked(&foreign));
    assert!(
        why.contains(&format!("ca_fingerprint \"{}\"", "cd".repeat(32)))
            && why.contains(&format!(
                "not the cluster's Docker CA ({})",
                "ab".repeat(32)
            )),
        "{why}"
    );
    // Hex case does not matter; an unknown CA (a reader without one) is not checked.
    let mut upper = record();
    upper.ca_fingerprint = "AB".repeat(32);
    assert!(matches!(checked(&upper), Checked::Valid(_)));
    let unknown = Rules {
        docker_ca_fingerprint: None,
        ..rules()
    };
    let value = serde_json::to_string(&foreign).unwrap();
    assert!(matches!(
        check_record("node-2", value.as_bytes(), &unknown),
        Checked::Valid(_)
    ));
}
