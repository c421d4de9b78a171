//! `molten` as a user runs it: exit statuses (0 ok, 2 invalid input, 1 other failure), what it
//! prints, and that a failed compose leaves no output behind.

mod common;

use molten::model::Platform;

#[test]
fn compose_writes_the_bundle_and_prints_a_summary() {
    let work = tempfile::tempdir().unwrap();
    let agent = common::fake_agent(work.path());
    let out = work.path().join("out/vagrant");
    let profile = common::repo_root().join("profiles/dev.yaml");
    let stdout = common::compose_to(&profile, Platform::Vagrant, &agent, &out);
    assert!(
        stdout.starts_with("composed 3 nodes for vagrant: 9 files, "),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("in {}\n", out.display())),
        "{stdout}"
    );
    assert!(stdout.contains("Ignition per node: min "), "{stdout}");
    for file in [
        "Vagrantfile",
        "SHA256SUMS",
        "assets/mc",
        "pointer/core-01.ign",
    ] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    // A second compose replaces the first and leaves nothing else next to it.
    common::compose_to(&profile, Platform::Vagrant, &agent, &out);
    let siblings: Vec<_> = std::fs::read_dir(work.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(siblings, ["vagrant"]);
}

#[test]
fn an_invalid_profile_exits_2_and_writes_nothing() {
    let work = tempfile::tempdir().unwrap();
    let profile = work.path().join("bad.yaml");
    let text = std::fs::read_to_string(common::repo_root().join("profiles/dev.yaml")).unwrap();
    std::fs::write(
        &profile,
        text.replace("ip: 192.168.56.12", "ip: 192.168.56.11"),
    )
    .unwrap();
    let agent = common::fake_agent(work.path());
    let out = work.path().join("out");
    let output = common::molten(&[
        "compose",
        "--platform",
        "vagrant",
        "--profile",
        profile.to_str().unwrap(),
        "--agent",
        agent.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("error[$.nodes[1].ip]"), "{stderr}");
    assert!(stderr.contains("bad.yaml:"), "{stderr}");
    assert!(!out.exists(), "an output directory was created");
    let leftovers: Vec<_> = std::fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "bad.yaml" && n != "mc")
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
}

#[test]
fn a_platform_the_input_cannot_serve_exits_2() {
    let work = tempfile::tempdir().unwrap();
    let agent = common::fake_agent(work.path());
    let out = work.path().join("out");
    let output = common::molten(&[
        "compose",
        "--platform",
        "packet",
        "--profile",
        "profiles/packet.yaml",
        "--agent",
        agent.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("error[--agent]: platform packet serves no files"),
        "{stderr}"
    );
    assert!(!out.exists());
}

#[test]
fn refusing_to_replace_a_foreign_directory_exits_1_and_keeps_it() {
    let work = tempfile::tempdir().unwrap();
    let agent = common::fake_agent(work.path());
    let out = work.path().join("precious");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    let output = common::molten(&[
        "compose",
        "--platform",
        "ipxe",
        "--agent",
        agent.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("refusing to replace"));
    assert_eq!(
        std::fs::read_to_string(out.join("notes.txt")).unwrap(),
        "mine"
    );
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1);
}

#[test]
fn validate_and_schema() {
    let work = tempfile::tempdir().unwrap();
    let agent = common::fake_agent(work.path());
    let ok = common::molten(&[
        "validate",
        "--platform",
        "ipxe",
        "--agent",
        agent.to_str().unwrap(),
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout)
        .starts_with("profiles/dev.yaml: valid for ipxe (3 nodes"));

    let schema = common::molten(&["schema"]);
    assert!(schema.status.success());
    let value: serde_json::Value = serde_json::from_slice(&schema.stdout).unwrap();
    assert!(value.get("properties").is_some(), "{value}");
}

#[test]
fn help_shows_examples() {
    let output = common::molten(&["--help"]);
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(
        help.contains("Examples:\n  molten compose --platform vagrant"),
        "{help}"
    );
    assert!(help.lines().all(|l| l.chars().count() <= 80), "{help}");
}

/// `platforms.ipxe.assets`: the listed files land in `assets/` under their own names, byte for
/// byte, and `SHA256SUMS` lists them, so `molten serve` serves them with no manual step.
#[test]
fn ipxe_assets_are_copied_into_the_bundle_and_summed() {
    let work = tempfile::tempdir().unwrap();
    let agent = common::fake_agent(work.path());
    let images = work.path().join("images");
    std::fs::create_dir(&images).unwrap();
    let kernel: Vec<u8> = (0..2_500_000u32).map(|i| (i % 241) as u8).collect();
    std::fs::write(images.join("vmlinuz"), &kernel).unwrap();
    std::fs::write(images.join("initrd.cpio.gz"), b"initrd").unwrap();
    let dev = std::fs::read_to_string(common::repo_root().join("profiles/dev.yaml")).unwrap();
    let text = dev.replace(
        "\n  ipxe:\n",
        "\n  ipxe:\n    kernel: vmlinuz\n    initrd: initrd.cpio.gz\n    \
         assets: [images/vmlinuz, images/initrd.cpio.gz]\n",
    );
    assert_ne!(text, dev, "dev.yaml has no ipxe section to extend");
    let profile = work.path().join("dev-assets.yaml");
    std::fs::write(&profile, text).unwrap();
    let out = work.path().join("out");
    common::compose_to(&profile, Platform::Ipxe, &agent, &out);

    assert_eq!(std::fs::read(out.join("assets/vmlinuz")).unwrap(), kernel);
    assert_eq!(
        std::fs::read(out.join("assets/initrd.cpio.gz")).unwrap(),
        b"initrd"
    );
    let sums = std::fs::read_to_string(out.join("SHA256SUMS")).unwrap();
    for (name, bytes) in [("vmlinuz", &kernel[..]), ("initrd.cpio.gz", b"initrd")] {
        let line = format!("{}  assets/{name}", molten::platform::sha256_hex(bytes));
        assert!(sums.lines().any(|l| l == line), "{line} not in:\n{sums}");
    }
    let scripts = common::read_tree(&out.join("nodes"));
    assert_eq!(scripts.len(), 3);
    for script in scripts.values() {
        let script = String::from_utf8_lossy(script);
        assert!(script.contains("/assets/vmlinuz "), "{script}");
    }
}

#[test]
fn a_missing_ipxe_asset_exits_2_naming_the_entry_and_writes_nothing() {
    let work = tempfile::tempdir().unwrap();
    let agent = common::fake_agent(work.path());
    let dev = std::fs::read_to_string(common::repo_root().join("profiles/dev.yaml")).unwrap();
    let text = dev.replace(
        "\n  ipxe:\n",
        "\n  ipxe:\n    assets: [flatcar_production_pxe.vmlinuz, flatcar_production_pxe_image.cpio.gz]\n",
    );
    let profile = work.path().join("dev-assets.yaml");
    std::fs::write(&profile, text).unwrap();
    std::fs::write(work.path().join("flatcar_production_pxe.vmlinuz"), b"k").unwrap();
    let out = work.path().join("out");
    let output = common::molten(&[
        "compose",
        "--platform",
        "ipxe",
        "--profile",
        profile.to_str().unwrap(),
        "--agent",
        agent.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "error[$.platforms.ipxe.assets[1]]: cannot use `flatcar_production_pxe_image.cpio.gz` \
             (relative to the profile's directory): No such file or directory"
        ),
        "{stderr}"
    );
    assert!(!out.exists());
}
