//! The fuzzers' minimized corpora (fuzz/corpus, docs/fuzzing.md) replayed on every test run, so
//! CI exercises the node-config, node-record and status parsers with the inputs cargo-fuzz found
//! interesting, under the same checks as the fuzz targets: no panic, bounded reasons, a valid
//! value renders without terminal escapes.

use std::path::{Path, PathBuf};

use mc::records::{check_record, parse_status, Checked, Rules};
use mc::status::{table, view, StatusOptions};
use mc::text::MAX_ERROR_BYTES;
use molten_contract::NodeConfig;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    files.sort();
    assert!(files.len() >= 2, "{} holds no corpus", dir.display());
    files
}

/// The fuzz targets' key/value split: the first line is the etcd key's name.
fn split(data: &[u8]) -> (String, &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(i) => (
            String::from_utf8_lossy(&data[..i]).into_owned(),
            &data[i + 1..],
        ),
        None => ("node-0".to_string(), data),
    }
}

fn renders_clean(
    key: &str,
    record: Option<&mc::records::NodeRecord>,
    status: Option<&Result<mc::records::Status, String>>,
) {
    let now = time::OffsetDateTime::now_utc();
    let line = view(key, record, status, None, now, &StatusOptions::default());
    let text = table(&[line]);
    assert!(!text.contains('\x1b'), "{text:?}");
}

#[test]
fn node_config_corpus() {
    let mut parsed = 0;
    for (path, data) in corpus("node_config") {
        let Ok(text) = std::str::from_utf8(&data) else {
            continue;
        };
        // The corpus was found at node-config version 1: a later version still replays it.
        let current = text.replacen(
            "\"version\":1",
            &format!("\"version\":{}", molten_contract::NODE_CONFIG_VERSION),
            1,
        );
        for text in [text, current.as_str()] {
            let Ok(config) = NodeConfig::from_json("corpus", text) else {
                continue;
            };
            parsed += 1;
            let _ = Rules::from_config(&config);
            let _ = mc::config::Config::new(config.clone());
            let again = NodeConfig::from_json("again", &config.to_json())
                .unwrap_or_else(|e| panic!("{}: own JSON does not parse: {e}", path.display()));
            assert_eq!(again, config, "{}", path.display());
        }
    }
    assert!(parsed > 0, "no corpus config parses: the seeds are stale");
}

#[test]
fn node_record_corpus() {
    let rules = Rules {
        flannel: Some(molten_contract::FlannelSettings::new(
            "10.1.0.0/16".parse().unwrap(),
            24,
        )),
        docker_port: Some(2376),
        docker_ca_fingerprint: Some("ab".repeat(32)),
    };
    let mut valid = 0;
    for (path, data) in corpus("node_record") {
        let (key, value) = split(&data);
        for rules in [rules.clone(), Rules::default()] {
            match check_record(&key, value, &rules) {
                Checked::Invalid(reason) => {
                    assert!(reason.len() <= MAX_ERROR_BYTES + 64, "{}", path.display())
                }
                Checked::Valid(record) => {
                    valid += 1;
                    renders_clean(&key, Some(&record), None);
                }
                Checked::Newer { .. } => {}
            }
        }
    }
    assert!(valid > 0, "no corpus record is valid: the seeds are stale");
}

#[test]
fn status_corpus() {
    let mut parsed = 0;
    for (path, data) in corpus("status") {
        let (key, value) = split(&data);
        let status = parse_status(&key, value);
        match &status {
            Ok(_) => parsed += 1,
            Err(reason) => assert!(reason.len() <= MAX_ERROR_BYTES + 64, "{}", path.display()),
        }
        renders_clean(&key, None, Some(&status));
    }
    assert!(parsed > 0, "no corpus status parses: the seeds are stale");
}
