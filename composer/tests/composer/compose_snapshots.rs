//! Every shipped profile composed for every platform it supports, compared byte for byte with
//! the plain files under `tests/snapshots/<profile>-<platform>/`. `MOLTEN_BLESS=1` rewrites
//! them; review the diff like any other change. Also: composing twice gives identical bytes.

use crate::common;

use std::path::Path;

use molten::platform::Platform;

fn snapshot_root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots")
}

fn bless() -> bool {
    std::env::var_os("MOLTEN_BLESS").is_some_and(|v| v == "1")
}

#[test]
fn shipped_profiles_match_their_snapshots() {
    let work = tempfile::tempdir().unwrap();
    let agent = common::fake_agent(work.path());
    let mut expected_dirs = Vec::new();
    let mut mismatches = Vec::new();
    for (name, profile) in common::shipped_profiles() {
        let platforms: Vec<Platform> = Platform::ALL
            .into_iter()
            .filter(|p| {
                common::supports(&common::profile_for(*p, &profile, work.path()), *p, &agent)
            })
            .collect();
        assert!(
            !platforms.is_empty(),
            "profile {name} composes for no platform: run `molten validate --profile {} \
             --platform <p>` to see why",
            profile.display()
        );
        for platform in platforms {
            let label = format!("{name}-{platform}");
            let out = work.path().join(&label);
            let input = common::profile_for(platform, &profile, work.path());
            common::compose_to(&input, platform, &agent, &out);
            let snapshot = snapshot_root().join(&label);
            if bless() {
                let _ = std::fs::remove_dir_all(&snapshot);
                copy_tree(&out, &snapshot);
            } else {
                mismatches.extend(compare(&label, &out, &snapshot));
            }
            expected_dirs.push(label);
        }
    }
    let existing: Vec<String> = std::fs::read_dir(snapshot_root())
        .map(|dir| {
            dir.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    for stale in existing.iter().filter(|d| !expected_dirs.contains(d)) {
        if bless() {
            std::fs::remove_dir_all(snapshot_root().join(stale)).unwrap();
        } else {
            mismatches.push(format!(
                "{stale}: snapshot of a profile/platform no longer composed"
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "composed output differs from the snapshots (rerun with MOLTEN_BLESS=1 if intended):\n{}",
        mismatches.join("\n")
    );
}

fn compare(label: &str, out: &Path, snapshot: &Path) -> Vec<String> {
    let got = common::read_tree(out);
    if !snapshot.is_dir() {
        return vec![format!("{label}: no snapshot yet")];
    }
    let want = common::read_tree(snapshot);
    let mut problems = Vec::new();
    for (path, bytes) in &got {
        match want.get(path) {
            None => problems.push(format!("{label}/{path}: new file")),
            Some(w) if w != bytes => problems.push(format!(
                "{label}/{path}: differs\n--- snapshot\n{}\n+++ composed\n{}",
                String::from_utf8_lossy(w),
                String::from_utf8_lossy(bytes)
            )),
            Some(_) => {}
        }
    }
    for path in want.keys().filter(|p| !got.contains_key(*p)) {
        problems.push(format!("{label}/{path}: no longer written"));
    }
    problems
}

fn copy_tree(from: &Path, to: &Path) {
    for (path, bytes) in common::read_tree(from) {
        let dest = to.join(&path);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::write(dest, bytes).unwrap();
    }
}

#[test]
fn composing_twice_gives_the_same_bytes_and_modes() {
    let work = tempfile::tempdir().unwrap();
    let agent = common::fake_agent(work.path());
    let profile = common::repo_root().join("profiles/dev.yaml");
    for platform in [Platform::Vagrant, Platform::Ipxe] {
        let a = work.path().join(format!("a-{platform}"));
        let b = work.path().join(format!("b-{platform}"));
        common::compose_to(&profile, platform, &agent, &a);
        common::compose_to(&profile, platform, &agent, &b);
        let (ta, tb) = (common::read_tree(&a), common::read_tree(&b));
        assert!(ta.len() > 3, "{platform}: too few files: {:?}", ta.keys());
        assert_eq!(ta, tb, "{platform}: two runs differ");
        use std::os::unix::fs::PermissionsExt;
        for path in ta.keys() {
            let mode = |root: &Path| {
                std::fs::metadata(root.join(path))
                    .unwrap()
                    .permissions()
                    .mode()
                    & 0o777
            };
            assert_eq!(mode(&a), mode(&b), "{platform}: mode of {path}");
        }
        assert_eq!(
            std::fs::metadata(a.join("assets/mc"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o755
        );
    }
}
