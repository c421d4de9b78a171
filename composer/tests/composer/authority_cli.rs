//! `molten authority` as the operator runs it: a private directory, nothing partial, refusals
//! with exit statuses, client certificates that chain to the right CA.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use x509_parser::prelude::*;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn cert(pem_text: &str) -> Vec<u8> {
    x509_parser::pem::parse_x509_pem(pem_text.as_bytes())
        .unwrap()
        .1
        .contents
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn init_creates_the_authority_beside_the_profile_once() {
    let work = tempfile::tempdir().unwrap();
    let profile = work.path().join("dev.yaml");
    std::fs::copy(common::repo_root().join("profiles/dev.yaml"), &profile).unwrap();
    let out = common::molten(&["authority", "init", "--profile", profile.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let dir = work.path().join("dev.authority");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("created the authority of cluster dev"),
        "{stdout}"
    );
    assert_eq!(mode(&dir), 0o700);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "authority-ca.key",
            "authority-ca.pem",
            "docker-ca.key",
            "docker-ca.pem",
            "enrollment.json",
            "etcd-ca.key",
            "etcd-ca.pem",
            "token-key"
        ]
    );
    for name in &names {
        assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
    }
    let before = read(&dir.join("etcd-ca.key"));

    // A second init never replaces the keys.
    let again = common::molten(&["authority", "init", "--profile", profile.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1), "{again:?}");
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains("refusing to overwrite an authority"),
        "{stderr}"
    );
    assert_eq!(read(&dir.join("etcd-ca.key")), before);
}

#[test]
fn an_invalid_profile_creates_nothing() {
    let work = tempfile::tempdir().unwrap();
    let profile = work.path().join("bad.yaml");
    std::fs::write(&profile, "version: 1\nname: x\n").unwrap();
    let out = common::molten(&["authority", "init", "--profile", profile.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(std::fs::read_dir(work.path()).unwrap().count(), 1);
}

#[test]
fn issue_client_writes_private_keys_and_certificates_of_the_right_ca() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("a");
    let profile = common::repo_root().join("profiles/dev.yaml");
    let init = common::molten(&[
        "authority",
        "init",
        "--profile",
        profile.to_str().unwrap(),
        "--dir",
        dir.to_str().unwrap(),
    ]);
    assert!(init.status.success(), "{init:?}");
    let out_dir = work.path().join("bosh-client");
    let issue = common::molten(&[
        "authority",
        "issue-client",
        "--dir",
        dir.to_str().unwrap(),
        "--name",
        "bosh",
        "--etcd-root",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(issue.status.success(), "{issue:?}");
    assert_eq!(mode(&out_dir), 0o700);
    for key in ["bosh.key", "etcd-root.key"] {
        assert_eq!(mode(&out_dir.join(key)), 0o600, "{key}");
        assert!(read(&out_dir.join(key)).contains("PRIVATE KEY"));
    }
    let check = |leaf: &str, ca: &str, cn: &str| {
        let leaf_der = cert(&read(&out_dir.join(leaf)));
        let ca_der = cert(&read(&dir.join(ca)));
        let (_, leaf) = X509Certificate::from_der(&leaf_der).unwrap();
        let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
        leaf.verify_signature(Some(ca.public_key())).unwrap();
        let name = leaf.subject().iter_common_name().next().unwrap();
        assert_eq!(name.as_str().unwrap(), cn);
    };
    check("bosh.pem", "docker-ca.pem", "bosh");
    check("etcd-root.pem", "etcd-ca.pem", "root");
    assert_eq!(
        read(&out_dir.join("docker-ca.pem")),
        read(&dir.join("docker-ca.pem"))
    );

    // Issuing into the same place again never overwrites keys.
    let again = common::molten(&[
        "authority",
        "issue-client",
        "--dir",
        dir.to_str().unwrap(),
        "--name",
        "bosh",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert_eq!(again.status.code(), Some(1), "{again:?}");

    // "root" is the etcd admin's name; other names must be plain.
    for bad in ["root", "../x", ""] {
        let refused = common::molten(&[
            "authority",
            "issue-client",
            "--dir",
            dir.to_str().unwrap(),
            "--name",
            bad,
        ]);
        assert_eq!(refused.status.code(), Some(2), "{bad}: {refused:?}");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains("error[--name]"), "{stderr}");
    }
}

#[test]
fn a_group_readable_authority_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("a");
    let profile = common::repo_root().join("profiles/dev.yaml");
    let init = common::molten(&[
        "authority",
        "init",
        "--profile",
        profile.to_str().unwrap(),
        "--dir",
        dir.to_str().unwrap(),
    ]);
    assert!(init.status.success(), "{init:?}");
    std::fs::set_permissions(
        dir.join("docker-ca.key"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    let issue = common::molten(&[
        "authority",
        "issue-client",
        "--dir",
        dir.to_str().unwrap(),
        "--name",
        "bosh",
    ]);
    assert_eq!(issue.status.code(), Some(1), "{issue:?}");
    let stderr = String::from_utf8_lossy(&issue.stderr);
    assert!(stderr.contains("docker-ca.key has mode 0640"), "{stderr}");
    assert!(!dir.join("clients").exists());
}
