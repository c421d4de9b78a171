//! YAML text → [`RawProfile`]. Syntax errors stop here; shape errors (unknown keys, wrong types,
//! missing keys) are collected section by section and list item by list item, so one load
//! reports all of them.

use std::num::IntErrorKind;

use marked_yaml::{from_node, FromNodeError, LoaderOptions, Node};
use serde::de::DeserializeOwned;

use super::raw::{
    RawAgent, RawBosh, RawDocker, RawEtcd, RawFlannel, RawIpxe, RawNode, RawOs, RawPacket,
    RawProfile, RawRack, RawVagrant, Sp,
};
use super::report::{At, Report};
use super::values::edit_distance;

/// The profile format version this molten reads.
pub const PROFILE_VERSION: u32 = 1;

const TOP_KEYS: &[&str] = &[
    "version",
    "name",
    "os",
    "ssh_authorized_keys",
    "etcd",
    "flannel",
    "docker",
    "agent",
    "bosh",
    "nodes",
    "racks",
    "platforms",
];
const REQUIRED_TOP_KEYS: &[&str] = &["version", "name"];
const PLATFORM_KEYS: &[&str] = &["packet", "vagrant", "ipxe"];

pub(crate) fn parse(text: &str, report: &mut Report) -> Option<RawProfile> {
    if let Some(line) = second_document(text) {
        report.error(
            &At::new("$", (line, 1)),
            "a profile is a single YAML document; remove this document marker and what follows",
        );
        return None;
    }
    let options = LoaderOptions::default().error_on_duplicate_keys(true);
    let root = match marked_yaml::parse_yaml_with_options(0, text, options) {
        Ok(root) => root,
        Err(err) => {
            report_load_error(text, err, report);
            return None;
        }
    };
    check_version(&root, report)?;
    match from_node::<RawProfile>(&root) {
        Ok(profile) => Some(profile),
        Err(whole) => {
            let before = report.error_count();
            check_sections(&root, report);
            if report.error_count() == before {
                // The section pass should always find the problem; never lose it if it did not.
                report_shape_error(&root, "$", whole, report);
            }
            None
        }
    }
}

/// The line where a second YAML document starts (the loader would silently read only the
/// first): a `---` after content, or content after a `...` end marker.
fn second_document(text: &str) -> Option<usize> {
    let mut seen_content = false;
    let mut ended_at = None;
    for (i, line) in text.lines().enumerate() {
        let is_marker = |m: &str| {
            line.strip_prefix(m)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
        };
        if is_marker("---") && seen_content {
            return Some(i + 1);
        }
        if is_marker("...") {
            ended_at.get_or_insert(i + 1);
            continue;
        }
        let trimmed = line.trim();
        if !is_marker("---") && !trimmed.is_empty() && !trimmed.starts_with('#') {
            if ended_at.is_some() {
                return ended_at;
            }
            seen_content = true;
        }
    }
    None
}

/// `version: 1` is checked before anything else: another version means another format.
fn check_version(root: &Node, report: &mut Report) -> Option<()> {
    let map = root.as_mapping()?;
    let Some(node) = map.get_node("version") else {
        report.error(
            &At::new("$", start_of(root)),
            format!("missing key `version`; this molten reads profiles with `version: {PROFILE_VERSION}`"),
        );
        return None;
    };
    let at = At::new("$.version", position(node));
    match node.as_scalar().map(|s| s.as_str()) {
        Some("1") => Some(()),
        Some(other) => {
            report.error(
                &at,
                format!(
                    "unsupported profile version `{}`; this molten reads version {PROFILE_VERSION}",
                    super::values::shorten(other, 20)
                ),
            );
            None
        }
        None => {
            report.error(
                &at,
                format!("`version` must be the number {PROFILE_VERSION}"),
            );
            None
        }
    }
}

fn check_sections(root: &Node, report: &mut Report) {
    let Some(map) = root.as_mapping() else {
        return;
    };
    for (key, value) in map.iter() {
        let path = format!("$.{}", key.as_str());
        match key.as_str() {
            "version" => {}
            "name" => try_as::<Sp<String>>(value, &path, report),
            "os" => try_as::<Sp<RawOs>>(value, &path, report),
            "ssh_authorized_keys" => try_items::<Sp<String>>(value, &path, report),
            "etcd" => try_as::<RawEtcd>(value, &path, report),
            "flannel" => try_as::<RawFlannel>(value, &path, report),
            "docker" => try_as::<RawDocker>(value, &path, report),
            "agent" => try_as::<RawAgent>(value, &path, report),
            "bosh" => try_as::<RawBosh>(value, &path, report),
            "nodes" => try_items::<RawNode>(value, &path, report),
            "racks" => try_items::<RawRack>(value, &path, report),
            "platforms" => check_platforms(value, &path, report),
            other => unknown_key(
                other,
                TOP_KEYS,
                At::new(path.clone(), key_position(key)),
                report,
            ),
        }
    }
    for required in REQUIRED_TOP_KEYS {
        if map.get_node(required).is_none() {
            report.error(
                &At::new("$", position(root)),
                format!("missing key `{required}`"),
            );
        }
    }
}

fn check_platforms(node: &Node, path: &str, report: &mut Report) {
    let Some(map) = node.as_mapping() else {
        return try_as::<super::raw::RawPlatforms>(node, path, report);
    };
    for (key, value) in map.iter() {
        let sub = format!("{path}.{}", key.as_str());
        match key.as_str() {
            "packet" => try_as::<RawPacket>(value, &sub, report),
            "vagrant" => try_as::<RawVagrant>(value, &sub, report),
            "ipxe" => try_as::<RawIpxe>(value, &sub, report),
            other => unknown_key(
                other,
                PLATFORM_KEYS,
                At::new(sub.clone(), key_position(key)),
                report,
            ),
        }
    }
}

fn try_as<T: DeserializeOwned>(node: &Node, path: &str, report: &mut Report) {
    if let Err(err) = from_node::<T>(node) {
        report_shape_error(node, path, err, report);
    }
}

/// A list is checked item by item, so every bad item is reported.
fn try_items<T: DeserializeOwned>(node: &Node, path: &str, report: &mut Report) {
    match node.as_sequence() {
        Some(items) => {
            for (i, item) in items.iter().enumerate() {
                try_as::<T>(item, &format!("{path}[{i}]"), report);
            }
        }
        None => try_as::<Vec<T>>(node, path, report),
    }
}

fn report_shape_error(node: &Node, path: &str, err: FromNodeError, report: &mut Report) {
    let rel = err.path().unwrap_or("").to_string();
    let full_path = match rel.as_str() {
        "" => path.to_string(),
        rel if rel.starts_with('[') => format!("{path}{rel}"),
        rel => format!("{path}.{rel}"),
    };
    // serde-path stops at the first `Spanned` wrapper; walking the path ourselves gets closer.
    let target = walk(node, &rel);
    let pos = target
        .map(start_of)
        .or_else(|| err.start_mark().map(|m| (m.line(), m.column())));
    let at = At::new(full_path, pos.unwrap_or_else(|| position(node)));
    match err.into_inner() {
        marked_yaml::Error::UnknownFieldError(field, expected, _) => {
            // The path may or may not end at the unknown key already; point at the key itself.
            let suffix = format!(".{field}");
            let (mapping_rel, key_path) = match rel.strip_suffix(&suffix) {
                Some(parent) => (parent.to_string(), at.path.clone()),
                None if rel == field => (String::new(), at.path.clone()),
                None => (rel.clone(), format!("{}{suffix}", at.path)),
            };
            let key_pos = walk(node, &mapping_rel)
                .and_then(Node::as_mapping)
                .and_then(|map| map.keys().find(|k| k.as_str() == field))
                .map(key_position)
                .unwrap_or((at.line, at.column));
            unknown_key(&field, expected, At::new(key_path, key_pos), report);
        }
        marked_yaml::Error::NotBoolean(_) => report.error(&at, "expected true or false"),
        marked_yaml::Error::IntegerParseFailure(e, _) => {
            let message = match e.kind() {
                IntErrorKind::PosOverflow => "number is too large for this key",
                IntErrorKind::NegOverflow => "number is too small for this key",
                _ => "expected a whole number (0 or more)",
            };
            report.error(&at, message);
        }
        marked_yaml::Error::FloatParseFailure(e, _) => {
            report.error(&at, format!("expected a number: {e}"))
        }
        marked_yaml::Error::Other(message, _) => report.error(&at, tidy_serde_message(&message)),
    }
}

/// The node at a serde path like `nodes[2].roles[1]`, relative to `node`.
fn walk<'n>(node: &'n Node, rel: &str) -> Option<&'n Node> {
    let mut current = node;
    if rel.is_empty() {
        return Some(current);
    }
    for part in rel.split('.') {
        let (key, indexes) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            current = current.as_mapping()?.get_node(key)?;
        }
        for index in indexes.split('[').filter(|s| !s.is_empty()) {
            let i: usize = index.trim_end_matches(']').parse().ok()?;
            current = current.as_sequence()?.get(i)?;
        }
    }
    Some(current)
}

fn unknown_key(key: &str, expected: &[&str], at: At, report: &mut Report) {
    let closest = expected
        .iter()
        .map(|candidate| (edit_distance(key, candidate), candidate))
        .min();
    let message = match closest {
        Some((distance, candidate)) if distance <= 2 && distance < key.len() => {
            format!("unknown key `{key}`; did you mean `{candidate}`?")
        }
        _ if expected.is_empty() => format!("unknown key `{key}`; this mapping takes no keys"),
        _ => {
            let list: Vec<String> = expected.iter().map(|k| format!("`{k}`")).collect();
            format!("unknown key `{key}`; expected one of {}", list.join(", "))
        }
    };
    report.error(&at, message);
}

/// serde speaks of fields, variants and Rust types; a profile has keys, values and YAML types.
fn tidy_serde_message(message: &str) -> String {
    let mut tidy = message
        .replace("missing field", "missing key")
        .replace("unknown variant", "unknown value")
        .replace("invalid type: ", "wrong type: found ")
        .replace("found sequence", "found a list")
        .replace("found map", "found a mapping")
        .replace("expected a sequence", "expected a list")
        .replace("expected a borrowed string", "expected a string")
        .replace("expected u8", "expected a whole number (0 to 255)")
        .replace("expected u16", "expected a whole number (0 to 65535)")
        .replace("expected u32", "expected a whole number")
        .replace("expected a boolean", "expected true or false");
    if tidy.starts_with("invalid length") {
        tidy = "wrong type: found a list, expected a mapping".to_string();
    }
    // `expected struct RawNode` names a Rust type the user never sees.
    if let Some(i) = tidy.find("expected struct ") {
        tidy.truncate(i);
        tidy.push_str("expected a mapping");
    }
    tidy
}

fn report_load_error(text: &str, err: marked_yaml::LoadError, report: &mut Report) {
    use marked_yaml::LoadError as E;
    let at = |m: &marked_yaml::Marker| At::new("$", (m.line(), m.column()));
    match err {
        E::TopLevelMustBeMapping(m) => report.error(
            &at(&m),
            "a profile must be a YAML mapping (`key: value` lines) at the top level",
        ),
        E::TopLevelMustBeSequence(m) => report.error(&at(&m), "unexpected top-level sequence"),
        E::UnexpectedAnchor(m) => report.error(
            &at(&m),
            "YAML anchors and aliases (&name, *name) are not supported in profiles",
        ),
        E::MappingKeyMustBeScalar(m) => report.error(&at(&m), "mapping keys must be plain strings"),
        E::UnexpectedTag(m) => report.error(
            &at(&m),
            "YAML tags (like !!str) are not supported in profiles",
        ),
        E::ScanError(m, e) => report.error(&at(&m), format!("YAML syntax error: {}", e.info())),
        E::DuplicateKey(inner) => {
            let first = key_position(&inner.prev_key);
            let pos = key_position(&inner.key);
            // Re-loaded with duplicates allowed, the mapping keeps one of the two keys.
            let path = duplicate_key_path(text, pos)
                .or_else(|| duplicate_key_path(text, first))
                .unwrap_or_else(|| "$".to_string());
            report.error(
                &At::new(path, pos),
                format!(
                    "duplicate key `{}` (first given on line {})",
                    inner.key.as_str(),
                    first.0
                ),
            );
        }
    }
}

/// The path of a duplicated key: load again allowing duplicates, then find the key's mapping.
fn duplicate_key_path(text: &str, pos: (usize, usize)) -> Option<String> {
    let root = marked_yaml::parse_yaml_with_options(0, text, LoaderOptions::default()).ok()?;
    path_of_key_at(&root, "$", pos)
}

fn path_of_key_at(node: &Node, path: &str, pos: (usize, usize)) -> Option<String> {
    match node {
        Node::Scalar(_) => None,
        Node::Sequence(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| path_of_key_at(item, &format!("{path}[{i}]"), pos)),
        Node::Mapping(map) => map.iter().find_map(|(key, value)| {
            let sub = format!("{path}.{}", key.as_str());
            if key_position(key) == pos {
                Some(sub)
            } else {
                path_of_key_at(value, &sub, pos)
            }
        }),
    }
}

/// Where to point for a node: a mapping's first key (its own mark is not where the eye looks).
fn start_of(node: &Node) -> (usize, usize) {
    match node.as_mapping().and_then(|map| map.keys().next()) {
        Some(first) => key_position(first),
        None => position(node),
    }
}

fn position(node: &Node) -> (usize, usize) {
    node.span()
        .start()
        .map_or((0, 0), |m| (m.line(), m.column()))
}

fn key_position(key: &marked_yaml::types::MarkedScalarNode) -> (usize, usize) {
    key.span()
        .start()
        .map_or((0, 0), |m| (m.line(), m.column()))
}
