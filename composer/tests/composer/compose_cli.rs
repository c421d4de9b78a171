//! `molten` as a user runs it: exit statuses (0 ok, 2 invalid input, 1 other failure), what it
//! prints, and that a failed compose leaves no output behind.

use crate::common;

use molten::platform::Platform;

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
    let authority = common::fixture_authority(work.path(), "dev");
    let output = common::molten(&[
        "compose",
        "--platform",
        "ipxe",
        "--agent",
        agent.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--authority",
        authority.to_str().unwrap(),
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
    assert!(help.contains("\n  molten serve out/ipxe"), "{help}");

    // A subcommand's page shows only its own examples.
    let compose = stdout_of(&common::molten(&["compose", "--help"]));
    assert!(
        compose.contains("Examples:\n  molten compose --platform vagrant"),
        "{compose}"
    );
    assert!(!compose.contains("molten serve"), "{compose}");
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
        let line = format!("{}  assets/{name}", molten::digest::sha256_hex(bytes));
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

/// The platforms a profile has a `platforms.<name>` section for.
fn platforms_in(text: &str) -> Vec<Platform> {
    Platform::ALL
        .into_iter()
        .filter(|p| text.contains(&format!("\n  {}:", p.name())))
        .collect()
}

fn stdout_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The shipped profiles leave the agent to `compose --agent`: validate checks everything else,
/// strictly, alone and for every platform the profile has a section for (packet included), and
/// notes that compose will need the agent.
#[test]
fn validate_needs_no_agent_for_any_shipped_profile() {
    let mut checked = Vec::new();
    for (name, path) in common::shipped_profiles() {
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.lines().any(|l| l.starts_with("agent:")),
            "{name} names an agent; this test is about profiles that do not"
        );
        let platforms = platforms_in(&text);
        assert!(!platforms.is_empty(), "{name} has no platform section");
        for platform in std::iter::once(None).chain(platforms.into_iter().map(Some)) {
            let mut args = vec!["validate", "--strict", "--profile", path.to_str().unwrap()];
            if let Some(platform) = platform {
                args.extend(["--platform", platform.name()]);
            }
            let output = common::molten(&args);
            let (stdout, stderr) = (stdout_of(&output), stderr_of(&output));
            assert_eq!(output.status.code(), Some(0), "{args:?}:\n{stderr}");
            assert!(stderr.is_empty(), "{args:?} printed:\n{stderr}");
            let target = platform.map(|p| format!(" for {p}")).unwrap_or_default();
            assert!(
                stdout.contains(&format!(": valid{target} (")),
                "{args:?}:\n{stdout}"
            );
            assert!(
                stdout.contains("\nnote: the agent is not set; compose"),
                "{args:?}:\n{stdout}"
            );
            checked.push((name.clone(), platform));
        }
    }
    assert!(
        checked.contains(&("packet".to_string(), Some(Platform::Packet))),
        "{checked:?}"
    );
}

/// What `molten validate --help` shows must work as shown, from the repository root.
#[test]
fn the_validate_help_examples_work() {
    let help = stdout_of(&common::molten(&["validate", "--help"]));
    let examples: Vec<&str> = help
        .lines()
        .filter_map(|l| l.strip_prefix("  molten "))
        .filter(|l| l.starts_with("validate "))
        .collect();
    assert!(
        examples.contains(&"validate --profile profiles/packet.yaml --platform packet --strict"),
        "{help}"
    );
    for example in examples {
        let args: Vec<&str> = example.split_whitespace().collect();
        let output = common::molten(&args);
        assert_eq!(
            output.status.code(),
            Some(0),
            "molten {example}:\n{}",
            stderr_of(&output)
        );
    }
}

/// Composing still needs the agent: without one it exits 2 naming `$.agent`, and writes nothing.
#[test]
fn compose_without_an_agent_exits_2() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let output = common::molten(&[
        "compose",
        "--platform",
        "vagrant",
        "--profile",
        "profiles/dev.yaml",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains(
            "error[$.agent]: no agent: set agent.path or agent.url + agent.sha512, \
             or pass --agent PATH"
        ),
        "{stderr}"
    );
    assert!(!out.exists());
}

/// An agent that is named is checked by validate as by compose: a missing file is an error,
/// and packet refuses a local one; a valid URL agent leaves no note.
#[test]
fn validate_checks_an_agent_that_is_named() {
    let work = tempfile::tempdir().unwrap();
    let dev = std::fs::read_to_string(common::repo_root().join("profiles/dev.yaml")).unwrap();
    let missing = work.path().join("missing-agent.yaml");
    std::fs::write(&missing, format!("{dev}\nagent: {{path: no-such-mc}}\n")).unwrap();
    let output = common::molten(&["validate", "--profile", missing.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("error[$.agent.path]: cannot read the agent binary `no-such-mc`"),
        "{stderr}"
    );

    let agent = common::fake_agent(work.path());
    let output = common::molten(&[
        "validate",
        "--profile",
        "profiles/packet.yaml",
        "--platform",
        "packet",
        "--agent",
        agent.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr_of(&output).contains("error[--agent]: platform packet serves no files"),
        "{}",
        stderr_of(&output)
    );

    let packet = common::profile_for(
        Platform::Packet,
        &common::repo_root().join("profiles/packet.yaml"),
        work.path(),
    );
    let output = common::molten(&[
        "validate",
        "--strict",
        "--profile",
        packet.to_str().unwrap(),
        "--platform",
        "packet",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let stdout = stdout_of(&output);
    assert!(stdout.contains(": valid for packet (3 nodes"), "{stdout}");
    assert!(!stdout.contains("note:"), "{stdout}");
}

/// Platform rules that once surfaced only while composing (no line) are profile-stage errors
/// now: `validate --platform X` reports them with their place, and compose stops before it.
#[test]
fn platform_os_rules_point_at_the_profile() {
    let work = tempfile::tempdir().unwrap();
    let packet = std::fs::read_to_string(common::repo_root().join("profiles/packet.yaml"))
        .unwrap()
        .replace("\nos: flatcar\n", "\nos: debian\n");
    let os_line = packet.lines().position(|l| l == "os: debian").unwrap() + 1;
    let path = work.path().join("packet.yaml");
    std::fs::write(&path, &packet).unwrap();
    let output = common::molten(&[
        "validate",
        "--platform",
        "packet",
        "--profile",
        path.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("error[$.os]: platform packet supports os flatcar only"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("packet.yaml:{os_line}:5")),
        "{stderr}"
    );

    let rack = std::fs::read_to_string(common::repo_root().join("profiles/rack.yaml")).unwrap();
    let rack = format!("{rack}os: debian\n");
    let path = work.path().join("rack.yaml");
    std::fs::write(&path, &rack).unwrap();
    let output = common::molten(&[
        "validate",
        "--platform",
        "ipxe",
        "--profile",
        path.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains(
            "error[$.platforms.ipxe.install_to_disk]: install to disk uses flatcar-install: \
             it needs os flatcar"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("rack.yaml:55:"), "{stderr}");
}
