//! Helpers shared by the `compose_*` suites: the built `molten` binary, the shipped profiles, a
//! fixed fake agent, reading a composed tree, and a tiny file server for the Ignition engine.
#![allow(dead_code)] // each suite uses a different part

pub mod serve;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use molten::platform::sample::FAKE_AGENT;
use molten::platform::Platform;

/// The repository root (profiles/ lives there).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("composer/ has a parent")
        .to_path_buf()
}

/// Every shipped profile, by file stem, sorted.
pub fn shipped_profiles() -> Vec<(String, PathBuf)> {
    let dir = repo_root().join("profiles");
    let mut profiles: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    profiles.sort();
    assert!(!profiles.is_empty(), "no profiles in {}", dir.display());
    profiles
}

/// Writes the fixed fake agent into `dir` and returns its path (stable hashes in snapshots).
pub fn fake_agent(dir: &Path) -> PathBuf {
    let path = dir.join("mc");
    std::fs::write(&path, FAKE_AGENT).unwrap();
    path
}

/// Platforms whose bundles serve files ship `--agent`; packet takes the profile's agent URL.
pub fn agent_args(platform: Platform, agent: &Path) -> Vec<String> {
    match platform {
        Platform::Packet => vec![],
        _ => vec!["--agent".into(), agent.display().to_string()],
    }
}

/// A packet bundle cannot ship a local agent (nothing serves files), so a profile that names no
/// agent gets a fixed download URL with the fake agent's hash, as a packet user must add.
pub fn profile_for(platform: Platform, profile: &Path, work: &Path) -> PathBuf {
    let text = std::fs::read_to_string(profile).unwrap();
    let names_agent = text.lines().any(|l| l.starts_with("agent:"));
    if platform != Platform::Packet || names_agent {
        return profile.to_path_buf();
    }
    let copy = work.join(format!(
        "{}-with-agent.yaml",
        profile.file_stem().unwrap().to_string_lossy()
    ));
    let hash = molten::digest::sha512_hex(FAKE_AGENT);
    std::fs::write(
        &copy,
        format!("{text}\nagent:\n  url: https://downloads.example.org/mc\n  sha512: {hash}\n"),
    )
    .unwrap();
    copy
}

/// Whether `profile` can be composed for `platform` (what `molten validate --platform` says).
pub fn supports(profile: &Path, platform: Platform, agent: &Path) -> bool {
    let mut args = vec![
        "validate".to_string(),
        "--profile".into(),
        profile.display().to_string(),
        "--platform".into(),
        platform.name().into(),
    ];
    args.extend(agent_args(platform, agent));
    molten(&args).status.success()
}

/// Runs the built `molten` with `args` from the repository root.
pub fn molten<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_molten"))
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("the molten binary runs")
}

/// A private copy (0700, files 0600) in `dir` of the tests' fixed authority for `cluster`
/// (`tests/fixtures/snapshot-authority`: public CA certificates and the token key, so composing
/// gives the same bytes every run). Its CA key files are placeholders: compose never reads a CA
/// key, and nothing can sign with these.
pub fn fixture_authority(dir: &Path, cluster: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/snapshot-authority");
    let authority = dir.join(format!("{cluster}.authority"));
    std::fs::create_dir_all(&authority).unwrap();
    std::fs::set_permissions(&authority, std::fs::Permissions::from_mode(0o700)).unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = authority.join(name);
        std::fs::write(&path, bytes).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    };
    for stem in ["authority-ca", "etcd-ca", "docker-ca"] {
        write(
            &format!("{stem}.pem"),
            &std::fs::read(fixture.join(format!("{stem}.pem"))).unwrap(),
        );
        write(
            &format!("{stem}.key"),
            b"placeholder: the composer tests hold no CA key\n",
        );
    }
    let hex_key = std::fs::read_to_string(fixture.join("token-key.hex")).unwrap();
    write("token-key", &hex::decode(hex_key.trim()).unwrap());
    write(
        "enrollment.json",
        molten::authority::enrollment::EnrollmentState::new(cluster)
            .to_json()
            .as_bytes(),
    );
    authority
}

/// The cluster name of `profile` (what `molten authority init` names the directory after).
pub fn cluster_name(profile: &Path) -> String {
    let checked = molten::profile::check_file(profile, &molten::profile::LoadOptions::default())
        .unwrap_or_else(|e| panic!("{}: {e}", profile.display()));
    checked.loaded.cluster.name
}

/// `molten compose` of `profile` for `platform` into `out`, with a copy of the fixed authority
/// in a temporary directory of its own (never in the source tree, never beside `out`); panics
/// with stderr on failure.
pub fn compose_to(profile: &Path, platform: Platform, agent: &Path, out: &Path) -> String {
    let authority_dir = tempfile::tempdir().unwrap();
    let authority = fixture_authority(authority_dir.path(), &cluster_name(profile));
    let mut args = vec![
        "compose".to_string(),
        "--platform".into(),
        platform.name().into(),
        "--profile".into(),
        profile.display().to_string(),
        "--out".into(),
        out.display().to_string(),
        "--authority".into(),
        authority.display().to_string(),
    ];
    if platform == Platform::Packet {
        // Nothing serves a packet bundle: the authority runs on a bastion the devices reach.
        args.extend([
            "--authority-url".into(),
            "https://bastion.example:8443".into(),
        ]);
    }
    args.extend(agent_args(platform, agent));
    let output = molten(&args);
    assert!(
        output.status.success(),
        "molten {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Every file under `root`: relative path → bytes.
pub fn read_tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    collect(root, root, &mut files);
    files
}

fn collect(root: &Path, dir: &Path, files: &mut BTreeMap<String, Vec<u8>>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(root, &path, files);
        } else {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            files.insert(rel, std::fs::read(&path).unwrap());
        }
    }
}
