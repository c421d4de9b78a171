//! The module graph of a crate, read from its sources: which module's code names which other
//! module (`crate::a::b`, `super::x`, a child `x::y`), test-only code left out. Used to prove that
//! no two modules import each other, directly or round a loop (docs/architecture.md, layers).
//!
//! A path is resolved to the longest prefix that is a module, so `crate::platform::Bundle`
//! (an item of `platform/mod.rs`) is an edge to `platform`, and `super::sibling::X` one to the
//! sibling. A `mod x;` declaration alone is no edge; a parent that *uses* a child is.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`""` for the crate root, `"platform::packet"`) → the modules its code names.
pub type Graph = BTreeMap<String, BTreeSet<String>>;

/// Reads every module of the library whose root is `<src>/lib.rs`.
pub fn crate_graph(src: &Path) -> std::io::Result<Graph> {
    let mut files = Vec::new();
    collect(src, src, &mut files)?;
    // Modules declared `#[cfg(test)] mod x;` are test code: left out with everything below them.
    let mut texts = BTreeMap::new();
    for (module, path) in files {
        texts.insert(
            module,
            strip_tests(&strip_comments(&std::fs::read_to_string(path)?)),
        );
    }
    let test_only: BTreeSet<String> = texts
        .iter()
        .flat_map(|(module, text)| {
            test_children(text)
                .into_iter()
                .map(move |child| join(module, &child))
        })
        .collect();
    texts.retain(|module, _| {
        !test_only
            .iter()
            .any(|t| module == t || module.starts_with(&format!("{t}::")))
    });
    let modules: BTreeSet<String> = texts.keys().cloned().collect();
    let mut graph = Graph::new();
    for (module, text) in &texts {
        let edges = references(module, text, &modules)
            .into_iter()
            .filter(|target| target != module)
            .collect();
        graph.insert(module.clone(), edges);
    }
    Ok(graph)
}

/// Every set of two or more modules that reach each other (strongly connected components).
pub fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    let names: Vec<&String> = graph.keys().collect();
    let index_of: BTreeMap<&String, usize> =
        names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let adjacency: Vec<Vec<usize>> = names
        .iter()
        .map(|n| {
            graph[*n]
                .iter()
                .filter_map(|t| index_of.get(t).copied())
                .collect()
        })
        .collect();
    // Reachability by repeated search: the graphs are small (tens of modules).
    let reach: Vec<BTreeSet<usize>> = (0..names.len())
        .map(|start| {
            let mut seen = BTreeSet::new();
            let mut stack = vec![start];
            while let Some(at) = stack.pop() {
                for &next in &adjacency[at] {
                    if seen.insert(next) {
                        stack.push(next);
                    }
                }
            }
            seen
        })
        .collect();
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for a in 0..names.len() {
        if done.contains(&a) || !reach[a].contains(&a) {
            continue;
        }
        let component: Vec<usize> = (0..names.len())
            .filter(|&b| reach[a].contains(&b) && reach[b].contains(&a))
            .collect();
        done.extend(component.iter().copied());
        out.push(component.iter().map(|&i| display(names[i])).collect());
    }
    out
}

/// `crate` for the root, the module path otherwise.
pub fn display(module: &str) -> String {
    if module.is_empty() {
        "crate".to_string()
    } else {
        module.to_string()
    }
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let relative = path.strip_prefix(root).expect("under root");
        if path.is_dir() {
            if relative != Path::new("bin") {
                collect(root, &path, out)?;
            }
            continue;
        }
        if path.extension().and_then(|e| e.to_str()) != Some("rs")
            || relative == Path::new("main.rs")
        {
            continue;
        }
        let mut parts: Vec<String> = relative
            .with_extension("")
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
            parts.pop();
        }
        out.push((parts.join("::"), path));
    }
    Ok(())
}

fn join(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_string()
    } else {
        format!("{parent}::{child}")
    }
}

fn parent_of(module: &str) -> String {
    module
        .rsplit_once("::")
        .map_or(String::new(), |(p, _)| p.to_string())
}

/// Drops `//` comments (doc comments name modules in prose) but not `//` inside strings.
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut in_string = false;
        let mut previous = ' ';
        let mut cut = line.len();
        for (i, c) in line.char_indices() {
            if c == '"' && previous != '\\' {
                in_string = !in_string;
            }
            if !in_string && c == '/' && line[i + 1..].starts_with('/') {
                cut = i;
                break;
            }
            previous = c;
        }
        out.push_str(&line[..cut]);
        out.push('\n');
    }
    out
}

/// Removes `#[cfg(test)] mod x { ... }` blocks.
fn strip_tests(text: &str) -> String {
    let mut out = text.to_string();
    while let Some(at) = find_test_block(&out) {
        let open = out[at..].find('{').map(|i| at + i).expect("a block");
        let mut depth = 0;
        let mut end = out.len();
        for (i, c) in out[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.replace_range(at..end, "");
    }
    out
}

fn find_test_block(text: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = text[from..].find("#[cfg(test)]") {
        let at = from + i;
        let rest = text[at + "#[cfg(test)]".len()..].trim_start();
        let rest = rest
            .strip_prefix("pub(crate) ")
            .or_else(|| rest.strip_prefix("pub "))
            .unwrap_or(rest);
        if let Some(decl) = rest.strip_prefix("mod ") {
            let name_end = decl
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(decl.len());
            if decl[name_end..].trim_start().starts_with('{') {
                return Some(at);
            }
        }
        from = at + 1;
    }
    None
}

/// Children declared `#[cfg(test)] mod x;` (the block form is already stripped).
fn test_children(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = text[from..].find("#[cfg(test)]") {
        let at = from + i + "#[cfg(test)]".len();
        let rest = text[at..].trim_start();
        let rest = rest
            .strip_prefix("pub(crate) ")
            .or_else(|| rest.strip_prefix("pub "))
            .unwrap_or(rest);
        if let Some(decl) = rest.strip_prefix("mod ") {
            if let Some(name) = decl.split(';').next().filter(|n| is_ident(n.trim())) {
                out.push(name.trim().to_string());
            }
        }
        from = at;
    }
    out
}

fn is_ident(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_')
}

/// Children declared with `mod x;` (any visibility).
fn declared_children(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let rest = line
                .strip_prefix("pub(crate) mod ")
                .or_else(|| line.strip_prefix("pub mod "))
                .or_else(|| line.strip_prefix("mod "))?;
            let name = rest.strip_suffix(';')?;
            is_ident(name).then(|| name.to_string())
        })
        .collect()
}

/// The modules named by the paths in `text` (code of `module`).
fn references(module: &str, text: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let children = declared_children(text);
    let bytes = text.as_bytes();
    let mut out = BTreeSet::new();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0
            || !(bytes[i - 1].is_ascii_alphanumeric()
                || bytes[i - 1] == b'_'
                || bytes[i - 1] == b'$'
                || bytes[i - 1] == b':');
        if !starts_word || !(bytes[i].is_ascii_alphabetic() || bytes[i] == b'_') {
            i += 1;
            continue;
        }
        let word_end = text[i..]
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .map_or(text.len(), |e| i + e);
        let word = &text[i..word_end];
        if !text[word_end..].starts_with("::") {
            i = word_end;
            continue;
        }
        let base: Option<Vec<String>> = match word {
            "crate" => Some(Vec::new()),
            "super" => Some(split(&parent_of(module))),
            "self" => Some(split(module)),
            child if children.contains(child) => Some(split(&join(module, child))),
            _ => None,
        };
        let Some(mut base) = base else {
            i = word_end;
            continue;
        };
        if word != "crate" && word != "super" && word != "self" {
            // The child itself is the first segment; `split(join(..))` already holds it.
        }
        let (paths, end) = read_paths(text, word_end + 2);
        for path in paths {
            let mut full = base.clone();
            full.extend(path);
            out.insert(resolve(&full, modules));
        }
        base.clear();
        i = end;
    }
    out
}

fn split(module: &str) -> Vec<String> {
    if module.is_empty() {
        Vec::new()
    } else {
        module.split("::").map(str::to_string).collect()
    }
}

/// The longest prefix of `segments` that is a module (the root when none is).
fn resolve(segments: &[String], modules: &BTreeSet<String>) -> String {
    (0..=segments.len())
        .rev()
        .map(|n| segments[..n].join("::"))
        .find(|m| m.is_empty() || modules.contains(m))
        .unwrap_or_default()
}

/// The paths after a `prefix::` at `at`: one `a::b::C`, or each member of a `{a, b::{c, d}}`
/// group. Returns them (segments) and where reading stopped.
fn read_paths(text: &str, at: usize) -> (Vec<Vec<String>>, usize) {
    let rest = &text[at..];
    if let Some(group) = rest.strip_prefix('{') {
        let mut depth = 1;
        let mut close = group.len();
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        close = i;
                        break;
                    }
                }
                _ => {}
            }
        }
        let inner = &group[..close];
        let mut paths = Vec::new();
        for item in split_top_level(inner) {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let (sub, _) = read_paths(item, 0);
            paths.extend(sub);
        }
        return (paths, at + 1 + close + 1);
    }
    let mut segments = Vec::new();
    let mut pos = 0;
    loop {
        let seg_end = rest[pos..]
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .map_or(rest.len(), |e| pos + e);
        if seg_end == pos {
            break;
        }
        let seg = &rest[pos..seg_end];
        if seg != "self" {
            segments.push(seg.to_string());
        }
        pos = seg_end;
        if rest[pos..].starts_with("::{") {
            let (sub, end) = read_paths(rest, pos + 2);
            let paths = sub
                .into_iter()
                .map(|s| segments.iter().cloned().chain(s).collect())
                .collect();
            return (paths, at + end);
        }
        if rest[pos..].starts_with("::") {
            pos += 2;
        } else {
            break;
        }
    }
    (vec![segments], at + pos.max(1))
}

fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn modules(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn paths_groups_and_children_resolve_to_modules() {
        let m = modules(&["a", "a::b", "c", "d"]);
        let text = "mod b;\nuse crate::c::Thing;\nuse crate::{d, a::b::{X, Y}};\nfn f() { b::go(); super::Root; }\n";
        let refs = references("a", text, &m);
        assert_eq!(refs, modules(&["", "a::b", "c", "d"]));
    }

    #[test]
    fn test_blocks_and_comments_are_not_code() {
        let text = "// uses crate::x\nfn f() {}\n#[cfg(test)]\nmod tests {\n    use crate::y;\n}\n";
        let stripped = strip_tests(&strip_comments(text));
        assert!(!stripped.contains("crate::"), "{stripped}");
        let url = strip_comments("let u = \"http://crate::z\";\n");
        assert!(url.contains("crate::z"));
    }

    #[test]
    fn a_loop_is_found_and_a_chain_is_not() {
        let mut g = Graph::new();
        g.insert("a".into(), modules(&["b"]));
        g.insert("b".into(), modules(&["c"]));
        g.insert("c".into(), modules(&["a"]));
        g.insert("d".into(), modules(&["a"]));
        assert_eq!(
            cycles(&g),
            vec![vec!["a".to_string(), "b".into(), "c".into()]]
        );
        g.insert("c".into(), BTreeSet::new());
        assert!(cycles(&g).is_empty());
    }
}
