//! Every shipped profile loads for every platform it has a section for.

use std::path::{Path, PathBuf};

use molten::platform::Platform;
use molten::profile::{check_file, load_file, placeholder_agent, LoadOptions};

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

/// The commented-out agent line `profiles/packet.yaml` shows.
const PACKET_AGENT_LINE: &str =
    "# agent: {url: https://downloads.example.org/mc-0.1.0, sha512: <128 hex digits>}";

/// A copy of `packet.yaml` with its agent line uncommented and given a real sha512, as a user
/// would edit it: packet refuses a local agent, so this is how the profile is composed.
fn packet_with_agent_url(text: &str, dir: &Path, agent: &Path) -> PathBuf {
    assert!(
        text.lines().any(|l| l == PACKET_AGENT_LINE),
        "packet.yaml no longer shows the agent line the docs describe"
    );
    let sha512 = molten::profile::sha512_of(agent).unwrap();
    let uncommented = PACKET_AGENT_LINE
        .trim_start_matches("# ")
        .replace("<128 hex digits>", &sha512);
    let copy = dir.join("packet.yaml");
    std::fs::write(&copy, text.replace(PACKET_AGENT_LINE, &uncommented)).unwrap();
    copy
}

#[test]
fn shipped_profiles_load_for_their_platforms() {
    let agent = fake_agent();
    let work = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for name in ["dev", "packet", "rack"] {
        let shipped = repo_root().join("profiles").join(format!("{name}.yaml"));
        let text = std::fs::read_to_string(&shipped).unwrap();
        let platforms = platforms_in(&text);
        assert!(!platforms.is_empty(), "{name} has no platform section");
        for platform in platforms {
            let (path, agent_override) = if platform == Platform::Packet {
                (
                    packet_with_agent_url(&text, work.path(), agent.path()),
                    None,
                )
            } else {
                (shipped.clone(), Some(agent.path()))
            };
            let opts = LoadOptions {
                platform: Some(platform.rules()),
                agent_override,
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

/// As shipped, packet.yaml names no agent, and a local one is refused with what to do instead.
#[test]
fn packet_refuses_a_local_agent_naming_the_field() {
    let agent = fake_agent();
    let path = repo_root().join("profiles/packet.yaml");
    let load = |agent_override| {
        let opts = LoadOptions {
            platform: Some(Platform::Packet.rules()),
            agent_override,
            strict: false,
        };
        load_file(&path, &opts).unwrap_err().to_string()
    };
    let without = load(None);
    assert!(
        without.contains(
            "error[$.agent]: no agent: packet nodes download it, so set agent.url + agent.sha512"
        ),
        "{without}"
    );
    let with_flag = load(Some(agent.path()));
    assert!(
        with_flag.contains(
            "error[--agent]: platform packet serves no files, so its nodes cannot download a \
             local agent binary: publish mc where the nodes can reach it, then drop --agent and \
             give `agent: {url: <its URL>, sha512: <its sha512sum>}` in the profile"
        ),
        "{with_flag}"
    );
}

/// `check` (validate) accepts a profile that names no agent and marks it, with the placeholder
/// agent standing in; `load` (compose) still refuses it; a named agent is no placeholder.
#[test]
fn check_accepts_an_unset_agent_and_load_does_not() {
    let path = repo_root().join("profiles/packet.yaml");
    let opts = LoadOptions {
        platform: Some(Platform::Packet.rules()),
        agent_override: None,
        strict: true,
    };
    let checked = check_file(&path, &opts).unwrap_or_else(|e| panic!("{e}"));
    assert!(checked.agent_unset);
    assert_eq!(checked.loaded.cluster.agent, placeholder_agent());
    assert!(checked.loaded.warnings.is_empty());
    assert!(load_file(&path, &opts).is_err());

    let agent = fake_agent();
    let work = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let with_url = packet_with_agent_url(&text, work.path(), agent.path());
    let checked = check_file(&with_url, &opts).unwrap_or_else(|e| panic!("{e}"));
    assert!(!checked.agent_unset);
    assert_ne!(checked.loaded.cluster.agent, placeholder_agent());
    assert_eq!(
        checked.loaded.cluster.agent,
        load_file(&with_url, &opts).unwrap().cluster.agent
    );
}
