//! README's first command on a fresh Debian machine (issue 8): a pristine bookworm root with only
//! Rust, a fresh clone of the committed tree, `scripts/compose` as written. It must install what
//! it needs itself, say so, and write a bundle the real Ignition validator accepts. Needs root
//! and the host's Debian mirror; the first run debootstraps the root and builds every crate inside
//! it (see `molten_testkit::fresh_root`).

use std::path::Path;

use molten_testkit::fresh_root::{compose_packages, run_first_command};
use molten_testkit::ignition;

#[test]
fn scripts_compose_works_on_a_fresh_debian_with_only_rust() {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let run = run_first_command(source).unwrap();
    eprintln!(
        "fresh-root: `scripts/compose` took {:.1?} (root {}, cargo target {})",
        run.command_time,
        if run.built_root {
            "built now"
        } else {
            "cached"
        },
        if run.cold_target {
            "new: every crate built in the root"
        } else {
            "cached"
        },
    );

    // The root had none of the packages: the script installed them all and said so.
    let packages = compose_packages(source).unwrap();
    let said = run
        .log
        .lines()
        .find(|l| l.starts_with("molten: installing missing Debian packages: "))
        .unwrap_or_else(|| panic!("scripts/compose did not say what it installs:\n{}", run.log));
    for package in &packages {
        assert!(
            said.split_whitespace().any(|w| w == package),
            "{package} not in {said:?}"
        );
    }
    assert!(
        run.log.contains("composed 3 nodes for vagrant"),
        "no compose summary:\n{}",
        run.log
    );

    let bundle = run.bundle.path().join("vagrant");
    assert!(bundle.join("Vagrantfile").is_file());
    let mut configs = Vec::new();
    for entry in std::fs::read_dir(bundle.join("ignition")).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(path.extension().unwrap(), "ign", "{}", path.display());
        ignition::validate(&path).unwrap();
        configs.push(path);
    }
    assert_eq!(
        configs.len(),
        3,
        "one Ignition config per node of profiles/dev.yaml"
    );
}
