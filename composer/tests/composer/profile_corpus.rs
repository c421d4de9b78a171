//! Invalid profiles and the exact diagnostics they must produce.
//!
//! Each `corpus/NN-name.yaml` is loaded and its diagnostics compared, byte for byte, with
//! `corpus/NN-name.err`. `MOLTEN_BLESS=1 cargo test -p molten --test profile_corpus` rewrites the
//! `.err` files from the current output; review the diff before committing.
//!
//! A first line `# corpus: platform=<name> strict` sets the load options. Unless the profile has
//! its own `agent:` section, a temporary file stands in for `--agent`.

use std::path::{Path, PathBuf};

use molten::platform::Platform;
use molten::profile::{load, LoadOptions};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

fn options_from(text: &str) -> (Option<Platform>, bool) {
    let Some(directive) = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("# corpus:"))
    else {
        return (None, false);
    };
    let mut platform = None;
    let mut strict = false;
    for word in directive.split_whitespace() {
        match word.split_once('=') {
            Some(("platform", name)) => {
                platform = Some(
                    Platform::ALL
                        .into_iter()
                        .find(|p| p.name() == name)
                        .unwrap_or_else(|| panic!("unknown platform {name}")),
                )
            }
            None if word == "strict" => strict = true,
            _ => panic!("unknown corpus directive {word:?}"),
        }
    }
    (platform, strict)
}

#[test]
fn every_invalid_profile_reports_exactly_its_errors() {
    let bless = std::env::var_os("MOLTEN_BLESS").is_some_and(|v| v == "1");
    let agent = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(agent.path(), b"mc stand-in\n").unwrap();

    let mut cases: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 30, "only {} corpus cases", cases.len());

    let mut mismatches = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(case).unwrap();
        let (platform, strict) = options_from(&text);
        let own_agent = text.lines().any(|l| l.starts_with("agent:"));
        let opts = LoadOptions {
            platform: platform.map(Platform::rules),
            agent_override: (!own_agent).then_some(agent.path()),
            strict,
        };
        let diagnostics = match load(&name, &text, &corpus_dir(), &opts) {
            Ok(_) => {
                mismatches.push(format!("{name}: loaded, but it is in the invalid corpus"));
                continue;
            }
            Err(diagnostics) => diagnostics,
        };
        assert!(
            !diagnostics.is_empty(),
            "{name}: failed without a diagnostic"
        );
        let actual = format!("{diagnostics}\n");
        let expected_path = case.with_extension("err");
        if bless {
            std::fs::write(&expected_path, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_else(|_| {
            panic!(
                "{} is missing; run with MOLTEN_BLESS=1",
                expected_path.display()
            )
        });
        if actual != expected {
            mismatches.push(format!(
                "{name}:\n--- expected\n{expected}--- actual\n{actual}"
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}
