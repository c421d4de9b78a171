//! No import cycle between the modules of `molten` or `mc` (docs/architecture.md, layers): each
//! module names only modules below it. Read from the sources by `molten_testkit::modgraph`.

use std::path::Path;

use molten_testkit::modgraph::{crate_graph, cycles, display};

fn assert_acyclic(krate: &str) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(krate)
        .join("src");
    let graph = crate_graph(&src).unwrap();
    assert!(
        graph.len() > 2,
        "{krate}: read only {} modules",
        graph.len()
    );
    let found = cycles(&graph);
    if !found.is_empty() {
        let mut text = String::new();
        for component in &found {
            text.push_str(&format!("  cycle: {}\n", component.join(" <-> ")));
            for module in component {
                let inside: Vec<String> = graph[&module.replace("crate", "")]
                    .iter()
                    .filter(|t| component.contains(&display(t)))
                    .map(|t| display(t))
                    .collect();
                text.push_str(&format!("    {module} -> {}\n", inside.join(", ")));
            }
        }
        panic!("{krate}: modules that import each other:\n{text}");
    }
}

#[test]
fn composer_modules_form_no_cycle() {
    assert_acyclic("composer");
}

#[test]
fn agent_modules_form_no_cycle() {
    assert_acyclic("agent");
}

#[test]
fn contract_modules_form_no_cycle() {
    assert_acyclic("contract");
}
