//! `load` never panics, whatever it is given, and every failure explains itself.

use std::path::Path;

use molten::profile::{load, LoadOptions};
use proptest::prelude::*;

const DEV: &str = include_str!("../../../profiles/dev.yaml");
const RACK: &str = include_str!("../../../profiles/rack.yaml");

fn check(text: &str) {
    let agent = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/agent-fixture.bin");
    let lines = text.lines().count();
    for platform in [None, Some(molten::platform::Platform::Ipxe.rules())] {
        let opts = LoadOptions {
            platform,
            agent_override: Some(&agent),
            strict: false,
        };
        if let Err(diagnostics) = load("fuzz.yaml", text, Path::new("."), &opts) {
            assert!(!diagnostics.is_empty(), "failed without a diagnostic");
            for d in diagnostics.iter() {
                // A position is inside the text (a syntax error may point just past its end).
                assert!(d.line <= lines + 1, "line {} of {lines}: {d}", d.line);
            }
            // Display must not panic either.
            let _ = diagnostics.to_string();
        }
    }
}

/// One edit of the text: replace, insert or delete at a byte position (clamped to a char boundary).
#[derive(Debug, Clone)]
enum Edit {
    Replace(usize, String),
    Insert(usize, String),
    Delete(usize, usize),
    DuplicateLine(usize),
}

fn boundary(text: &str, at: usize) -> usize {
    let mut at = at % (text.len() + 1);
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn apply(text: &mut String, edit: &Edit) {
    match edit {
        Edit::Replace(at, with) => {
            let start = boundary(text, *at);
            let end = boundary(text, start + with.len().max(1));
            text.replace_range(start..end.max(start), with);
        }
        Edit::Insert(at, with) => {
            let at = boundary(text, *at);
            text.insert_str(at, with);
        }
        Edit::Delete(at, len) => {
            let start = boundary(text, *at);
            let end = boundary(text, start + len);
            text.replace_range(start..end.max(start), "");
        }
        Edit::DuplicateLine(n) => {
            let lines: Vec<&str> = text.lines().collect();
            if !lines.is_empty() {
                let line = lines[n % lines.len()].to_string();
                text.push('\n');
                text.push_str(&line);
            }
        }
    }
}

fn yamlish() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ a-z0-9:_.,/#@\\-\\[\\]{}\"'&*!|>\n]{0,12}",
        Just("\n  - ".to_string()),
        Just(": ".to_string()),
        Just("99999999999".to_string()),
        Just("0".to_string()),
        Just("0.0.0.0".to_string()),
        Just("ff:ff:ff:ff:ff:ff".to_string()),
        Just("4096".to_string()),
        Just("- [".to_string()),
        Just("&a ".to_string()),
        Just("*a".to_string()),
        Just("!!str ".to_string()),
        Just("\t".to_string()),
        Just("~".to_string()),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), yamlish()).prop_map(|(a, s)| Edit::Replace(a, s)),
        (any::<usize>(), yamlish()).prop_map(|(a, s)| Edit::Insert(a, s)),
        (any::<usize>(), 0usize..40).prop_map(|(a, n)| Edit::Delete(a, n)),
        any::<usize>().prop_map(Edit::DuplicateLine),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        check(&text);
    }

    #[test]
    fn yaml_like_text_never_panics(text in "(version: 1\n)?([a-z_]{1,12}: ?[ -~]{0,20}\n|  - [ -~]{0,20}\n){0,12}") {
        check(&text);
    }

    #[test]
    fn mutated_shipped_profiles_never_panic(
        rack in any::<bool>(),
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        let mut text = if rack { RACK } else { DEV }.to_string();
        for e in &edits {
            apply(&mut text, e);
        }
        check(&text);
    }
}
