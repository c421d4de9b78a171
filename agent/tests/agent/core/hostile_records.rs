//! Hostile node records in a real etcd: garbage, a control-character name, an endpoint that
//! disagrees with its address, a record of a future mc, a record naming another Docker CA. Each is
//! isolated: `mc status` shows it as invalid (escaped) or newer, `mc bosh` leaves it out with a
//! warning naming it, both exit "partial" (3), and the healthy nodes come out whole.

use std::time::Duration;

use mc::converge::Stage;
use serde_json::Value;
use yaml_rust2::YamlLoader;

use super::support::*;

const LIMIT: Duration = Duration::from_secs(60);
const PARTIAL: i32 = 3;

async fn put(client: &mut etcd_client::Client, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
    client.put(key.into(), value.into(), None).await.unwrap();
}

/// node-1's record with `edit` applied, as a JSON value.
fn edited(base: &Value, edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut value = base.clone();
    edit(&mut value);
    value.to_string().into_bytes()
}

#[test]
fn hostile_records_are_isolated_and_the_other_nodes_come_out_whole() {
    let etcd = start_etcd();
    let nodes = numbered_nodes(2, &etcd.endpoint());
    let sd = RecordingSystemd::default();
    for node in &nodes {
        assert!(node.converge(Stage::Boot, None, &sd).ok());
    }
    let ep = etcd.endpoint();
    block_on(async {
        let mut client = etcd_client(&ep).await;
        let base: Value = serde_json::from_str(
            &get(&mut client, "/molten/nodes/node-1")
                .await
                .unwrap()
                .value,
        )
        .unwrap();
        let status = get(&mut client, "/molten/status/node-1")
            .await
            .unwrap()
            .value;

        put(
            &mut client,
            "/molten/nodes/garbage",
            &b"\xff\xfe{not json"[..],
        )
        .await;
        let evil = "evil\n\x1b[31mnode-0 ok";
        put(
            &mut client,
            format!("/molten/nodes/{evil}"),
            edited(&base, |v| v["name"] = evil.into()),
        )
        .await;
        put(
            &mut client,
            "/molten/nodes/node-7",
            edited(&base, |v| {
                v["name"] = "node-7".into();
                v["zone"] = 7.into();
                v["subnet"] = "10.213.8.0/24".into();
                v["gateway"] = "10.213.8.1".into();
                v["docker_endpoint"] = "tcp://203.0.113.7:2376".into();
            }),
        )
        .await;
        put(
            &mut client,
            "/molten/nodes/node-8",
            r#"{"version":2,"name":"node-8","mc_version":"9.9.9","endpoints":{"docker":"x"}}"#,
        )
        .await;
        // A valid record whose dockerd trusts another Docker CA (an impostor's, or another
        // cluster's): the operator's certificate must not be sent there.
        put(
            &mut client,
            "/molten/nodes/node-9",
            edited(&base, |v| {
                v["name"] = "node-9".into();
                v["zone"] = 9.into();
                v["private_ip"] = "10.0.0.19".into();
                v["subnet"] = "10.213.10.0/24".into();
                v["gateway"] = "10.213.10.1".into();
                v["docker_endpoint"] = "tcp://10.0.0.19:2376".into();
                v["ca_fingerprint"] = "ab".repeat(32).into();
            }),
        )
        .await;
        put(
            &mut client,
            "/molten/status/node-9",
            status.replace("\"node-1\"", "\"node-9\""),
        )
        .await;
    });

    // mc status: the two real nodes whole, every hostile entry on its own line, escaped.
    let tls = root_tls_args();
    let with_tls = |args: &[&str]| -> Vec<String> {
        args.iter()
            .map(|a| a.to_string())
            .chain(tls.iter().cloned())
            .collect()
    };
    let run = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_mc(&args, LIMIT)
    };
    let out = run(with_tls(&["status", "--etcd", &ep, "--no-probe"]));
    let table = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(PARTIAL),
        "{table}{}",
        text(&out.stderr)
    );
    assert!(!table.contains('\x1b'), "{table:?}");
    let line = |needle: &str| {
        table
            .lines()
            .find(|l| l.starts_with(needle))
            .unwrap_or_else(|| panic!("no line for {needle} in\n{table}"))
            .to_string()
    };
    for (i, node) in ["node-0", "node-1"].iter().enumerate() {
        let row = line(&format!("{node} "));
        assert!(row.contains(&format!("10.213.{}.0/24", i + 1)), "{row}");
        assert!(row.contains(" ok"), "{row}");
    }
    assert!(line("garbage").contains("invalid: record is not UTF-8"));
    let evil_row = line("evil\\n\\u{1b}[31mnode-0 ok");
    assert!(evil_row.contains("invalid: name"), "{evil_row}");
    let rows = table
        .lines()
        .take_while(|l| !l.starts_with("certificates valid until"))
        .count();
    assert_eq!(rows, 1 + 7, "{table}");
    assert!(line("node-7").contains("invalid: docker_endpoint \"tcp://203.0.113.7:2376\" is not on the node's address 10.0.0.11"));
    let newer = line("node-8");
    assert!(
        newer.contains("newer") && newer.contains("record version 2 (mc 9.9.9)"),
        "{newer}"
    );
    assert!(
        line("node-9").contains(" ok"),
        "node-9's record is valid: {table}"
    );

    let out = run(with_tls(&["status", "--etcd", &ep, "--no-probe", "--json"]));
    assert_eq!(out.status.code(), Some(PARTIAL));
    let views: Value = serde_json::from_slice(&out.stdout).unwrap();
    let health: Vec<(&str, &str)> = views
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v["health"].as_str().unwrap()))
        .collect();
    assert!(health.contains(&("node-0", "ok")) && health.contains(&("node-1", "ok")));
    assert!(health.contains(&("node-7", "invalid")) && health.contains(&("node-8", "newer")));

    // mc bosh: both real nodes in both documents, each hostile one named on stderr.
    for document in ["cloud-config", "cpi-config"] {
        let mut args = vec![
            "bosh".to_string(),
            document.into(),
            "--etcd".into(),
            ep.clone(),
        ];
        args.extend(bosh_tls_args());
        let out = run(args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(PARTIAL), "{stderr}");
        assert!(!stderr.contains('\x1b'), "{stderr:?}");
        for name in [
            "garbage",
            "evil\\n\\u{1b}[31mnode-0 ok",
            "node-7",
            "node-8",
            "node-9",
        ] {
            assert!(
                stderr.contains(&format!("node {name} left out: ")),
                "{name} not named in {stderr}"
            );
        }
        assert!(
            stderr.contains(&format!(
                "node node-9 left out: invalid record: ca_fingerprint \"{}\" is not the \
                 cluster's Docker CA",
                "ab".repeat(32)
            )),
            "{stderr}"
        );
        assert!(stderr.contains("partial: 5 node(s) left out; the output covers the other 2"));
        let doc = &YamlLoader::load_from_str(&text(&out.stdout)).unwrap()[0];
        if document == "cloud-config" {
            let azs: Vec<&str> = doc["azs"]
                .as_vec()
                .unwrap()
                .iter()
                .map(|az| az["name"].as_str().unwrap())
                .collect();
            assert_eq!(azs, ["z0", "z1"]);
        } else {
            let hosts: Vec<&str> = doc["cpis"]
                .as_vec()
                .unwrap()
                .iter()
                .map(|cpi| cpi["properties"]["host"].as_str().unwrap())
                .collect();
            assert_eq!(hosts, ["tcp://10.0.0.10:2376", "tcp://10.0.0.11:2376"]);
        }
    }
}
