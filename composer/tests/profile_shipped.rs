//! Every shipped profile loads for every platform it has a section for.

use std::path::{Path, PathBuf};

use molten::model::Platform;
use molten::profile::{load_file, LoadOptions};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn fake_agent() -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), b"#!/bin/sh\necho mc\n").unwrap();
    file
}

fn platforms_in(text: &str) -> Vec<Platform> {
    Platform::ALL
        .into_iter()
        .filter(|p| text.contains(&format!("\n  {}:", p.name())))
        .collect()
}

#[test]
fn shipped_profiles_load_for_their_platforms() {
    let agent = fake_agent();
    let mut checked = 0;
    for name in ["dev", "packet", "rack"] {
        let path = repo_root().join("profiles").join(format!("{name}.yaml"));
        let text = std::fs::read_to_string(&path).unwrap();
        let platforms = platforms_in(&text);
        assert!(!platforms.is_empty(), "{name} has no platform section");
        for platform in platforms {
            let opts = LoadOptions {
                platform: Some(platform),
                agent_override: Some(agent.path()),
                strict: true,
            };
            let loaded =
                load_file(&path, &opts).unwrap_or_else(|e| panic!("{name} for {platform}:\n{e}"));
            assert!(loaded.warnings.is_empty(), "{name}: {}", loaded.warnings);
            assert!(loaded.cluster.etcd_members().count() % 2 == 1);
            checked += 1;
        }
    }
    assert!(checked >= 4);
}
