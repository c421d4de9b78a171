//! The man pages in `docs/man/`, generated from the command lines with `clap_mangen`: one page
//! per command and subcommand (`molten.1`, `molten-compose.1`, `mc-bosh-write.1`, ...). The
//! crates' tests call [`check_current`], which fails when a page is stale or missing and
//! rewrites them all with `MOLTEN_BLESS=1`.

use std::path::{Path, PathBuf};

/// The man page directory of the workspace.
pub fn man_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/man")
}

/// Each page's file name and roff text for `command` and its subcommands, all stamped with
/// `version` (the crate version only: a commit hash would make every commit's pages stale).
pub fn render(command: clap::Command, version: &'static str) -> Vec<(String, Vec<u8>)> {
    let mut command = command.version(version);
    command.build();
    let mut pages = Vec::new();
    add_pages(&command, command.get_name().to_string(), &mut pages);
    pages
}

fn add_pages(command: &clap::Command, name: String, pages: &mut Vec<(String, Vec<u8>)>) {
    let mut roff = Vec::new();
    clap_mangen::Man::new(command.clone().name(name.clone()))
        .render(&mut roff)
        .expect("rendering into memory cannot fail");
    pages.push((format!("{name}.1"), roff));
    for sub in command.get_subcommands() {
        if sub.get_name() != "help" {
            add_pages(sub, format!("{name}-{}", sub.get_name()), pages);
        }
    }
}

/// Panics naming every page of `command` in `docs/man/` that differs from what the command line
/// renders now, or that is missing, or a page of it that no longer exists; writes them instead
/// when `MOLTEN_BLESS=1`.
pub fn check_current(command: clap::Command, version: &'static str) {
    let dir = man_dir();
    let prefix = command.get_name().to_string();
    let pages = render(command, version);
    let bless = std::env::var_os("MOLTEN_BLESS").is_some_and(|v| v == "1");
    let wanted: Vec<&str> = pages.iter().map(|(name, _)| name.as_str()).collect();
    let leftovers: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| is_page_of(name, &prefix) && !wanted.contains(&name.as_str()))
                .map(|name| dir.join(name))
                .collect()
        })
        .unwrap_or_default();
    if bless {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, roff) in &pages {
            std::fs::write(dir.join(name), roff).unwrap();
        }
        for old in &leftovers {
            std::fs::remove_file(old).unwrap();
        }
        return;
    }
    let mut stale: Vec<String> = pages
        .iter()
        .filter(|(name, roff)| std::fs::read(dir.join(name)).ok().as_ref() != Some(roff))
        .map(|(name, _)| name.clone())
        .collect();
    stale.extend(
        leftovers
            .iter()
            .map(|p| format!("{} (no such command)", p.display())),
    );
    assert!(
        stale.is_empty(),
        "stale man pages in {}: {stale:?}; regenerate with MOLTEN_BLESS=1 cargo test -p {prefix} --lib man_pages",
        dir.display()
    );
}

/// `molten.1`, `molten-compose.1`: pages of `prefix`, not of a command whose name starts alike.
fn is_page_of(file: &str, prefix: &str) -> bool {
    file.strip_suffix(".1")
        .is_some_and(|stem| stem == prefix || stem.starts_with(&format!("{prefix}-")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_page_per_subcommand_without_help() {
        let command = clap::Command::new("tool")
            .about("does things")
            .subcommand(clap::Command::new("one").subcommand(clap::Command::new("deep")))
            .subcommand(clap::Command::new("two"));
        let pages = render(command, "9.9.9");
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["tool.1", "tool-one.1", "tool-one-deep.1", "tool-two.1"]
        );
        let top = String::from_utf8(pages[0].1.clone()).unwrap();
        assert!(top.contains(".TH tool 1  \"tool 9.9.9\""), "{top}");
        assert!(is_page_of("mc-bosh.1", "mc") && !is_page_of("mcx.1", "mc"));
    }
}
