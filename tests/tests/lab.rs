//! The local lab (issue 4). Needs root, debootstrap and a Debian mirror (the host's apt source)
//! the first time, to build the cached node image.

use std::net::Ipv4Addr;
use std::time::Duration;

use molten_testkit::ignition;
use molten_testkit::lab::netns::Hub;
use molten_testkit::lab::node::LabNode;
use molten_testkit::lab::{image, image_cache, nodes_dir, unique_id};

/// A hand-written Ignition enabling Docker and a one-member etcd: proves the lab machinery
/// (image, engine, namespaces, systemd as PID 1) independently of `molten compose`.
fn single_node_ignition(name: &str, ip: Ipv4Addr) -> String {
    let dropin = format!(
        "[Service]\\nEnvironment=ETCD_NAME={name}\\nEnvironment=ETCD_LISTEN_CLIENT_URLS=http://{ip}:2379,http://127.0.0.1:2379\\nEnvironment=ETCD_ADVERTISE_CLIENT_URLS=http://{ip}:2379\\n"
    );
    format!(
        r#"{{"ignition":{{"version":"3.3.0"}},
"storage":{{"files":[{{"path":"/etc/hostname","mode":420,"contents":{{"source":"data:,{name}%0A"}}}}]}},
"systemd":{{"units":[{{"name":"docker.service","enabled":true}},{{"name":"etcd.service","enabled":true,"dropins":[{{"name":"20-lab.conf","contents":"{dropin}"}}]}}]}}}}"#
    )
}

#[test]
fn one_node_boots_systemd_from_its_ignition() {
    let image = image::ensure_image(&image_cache()).unwrap();
    let id = unique_id();
    let hub_ip: Ipv4Addr = "10.88.0.1".parse().unwrap();
    let ip: Ipv4Addr = "10.88.0.11".parse().unwrap();
    let hub = Hub::create(&format!("{id}-hub"), hub_ip, 24).unwrap();
    let netns = hub.attach(&format!("{id}-n1"), "p1", ip).unwrap();
    std::fs::create_dir_all(nodes_dir()).unwrap();
    let work = tempfile::tempdir_in(nodes_dir()).unwrap();
    let mut node =
        LabNode::create("lab-one", ip, &image, &work.path().join("lab-one"), netns).unwrap();

    let config = work.path().join("lab-one.ign");
    std::fs::write(&config, single_node_ignition("lab-one", ip)).unwrap();
    ignition::validate(&config).unwrap();
    ignition::apply_files(&config, &node.root()).unwrap();

    node.boot().unwrap();
    let state = node.wait_booted(Duration::from_secs(90)).unwrap();
    assert_eq!(
        state,
        "running",
        "failed units:\n{}",
        node.exec(&["systemctl", "--failed", "--no-pager"])
            .unwrap_or_default()
    );
    assert_eq!(node.exec(&["hostname"]).unwrap().trim(), "lab-one");
    for unit in ["docker.service", "etcd.service"] {
        assert_eq!(
            node.unit_state(unit).unwrap(),
            "active",
            "{}",
            node.journal(unit, 30)
        );
    }
    // etcd answers on the node's address, seen from the hub across the bridge.
    let health = hub
        .ns
        .command("/usr/bin/etcdctl")
        .args(["--endpoints=http://10.88.0.11:2379", "endpoint", "health"])
        .output()
        .unwrap();
    assert!(
        health.status.success(),
        "{}",
        String::from_utf8_lossy(&health.stderr)
    );

    // Reboot: kill PID 1, boot the same root; the units come back.
    let first_pid1 = node.pid1().unwrap();
    node.reboot().unwrap();
    assert!(!std::path::Path::new(&format!("/proc/{first_pid1}")).exists());
    node.wait_booted(Duration::from_secs(90)).unwrap();
    assert_eq!(node.unit_state("etcd.service").unwrap(), "active");
    assert_eq!(node.boots(), 2);
}

#[path = "lab/trust.rs"]
mod trust;

mod cluster {
    use std::collections::BTreeSet;
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    use super::trust;
    use molten_contract::{NodeConfig, NODE_CONFIG_PATH};
    pub(crate) use molten_testkit::lab::checks::check;
    use molten_testkit::lab::checks::{
        all_ok, healths, mc_status, wait_node, wait_status, CONVERGE, MC,
    };
    use molten_testkit::lab::cluster::{Lab, LabOptions};
    use molten_testkit::lab::{intruder, probes};

    pub(crate) const DOCKER_TLS_PORT: u16 = 2376;

    pub(crate) fn options() -> LabOptions {
        LabOptions::lab_profile(&PathBuf::from(env!("CARGO_BIN_EXE_flanneld-standin"))).unwrap()
    }

    #[test]
    fn three_nodes_converge_survive_reboots_and_heal() {
        let options = options();
        let provisioning = Instant::now();
        let mut lab = Lab::provision(&options).unwrap();
        eprintln!(
            "molten-lab: provisioned 3 nodes (compose, serve, copy, Ignition) in {:.1} s",
            provisioning.elapsed().as_secs_f64()
        );
        let names: Vec<String> = lab.nodes.iter().map(|n| n.name.clone()).collect();
        let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
        assert_eq!(names.len(), 3, "the lab profile has three nodes");

        // 8. From the first unshare until every node reports every node healthy.
        let started: Instant = lab.boot_all().unwrap();
        for name in &names {
            wait_node(&lab, name);
        }
        check(
            &lab,
            "all healthy",
            wait_status(&lab, &names[0], &all_ok(&names), CONVERGE),
        );
        let converged = started.elapsed();
        eprintln!(
            "molten-lab: 3 nodes converged {:.1} s after the first unshare",
            converged.as_secs_f64()
        );

        // 1. One etcd cluster from the static initial cluster, every member healthy.
        check(&lab, "etcd cluster", probes::etcd_cluster(&lab, &name_refs));
        trust::etcd_operations_under_access_control(&lab, &names[0]);

        // 2. mc.service succeeded everywhere (above); every node sees three healthy nodes.
        for name in &names {
            check(
                &lab,
                &format!("mc status on {name}"),
                wait_status(&lab, name, &all_ok(&names), Duration::from_secs(30)),
            );
        }
        // Each node's Docker endpoint passed the status probe: a TLS handshake that checked the
        // Docker CA and the node's address (no client certificate on a node, so no /_ping).
        let views = check(&lab, "mc status", mc_status(lab.node(&names[0])));
        for view in &views {
            assert_eq!(
                (
                    view["probe"]["result"].as_str(),
                    view["probe"]["summary"].as_str()
                ),
                (Some("ok"), Some("ok (tls only)")),
                "{view}"
            );
        }

        // 3. One authority: every node trusts its CAs and nothing of it is in etcd; every
        //    dockerd serves its enrolled certificate to the operator's client certificate and
        //    refuses a client without one.
        check(&lab, "one authority", probes::one_authority(&lab));
        for node in &lab.nodes {
            let version = check(
                &lab,
                "docker tls",
                probes::docker_tls(&lab, node, DOCKER_TLS_PORT),
            );
            assert!(!version.is_empty());
        }
        // Every node enrolled exactly once.
        let log = lab.serve_log();
        for name in &names {
            assert_eq!(intruder::enrollments(&log, name), 1, "{name}:\n{log}");
        }

        // 4. Each node's BOSH network is on its own flannel subnet (its zone's, by the contract).
        let mut subnets = BTreeSet::new();
        for node in &lab.nodes {
            let config_path = node.root().join(NODE_CONFIG_PATH.trim_start_matches('/'));
            let config = NodeConfig::load(&config_path).unwrap();
            let network = config.bosh.network_name.clone();
            let bosh = check(
                &lab,
                "bosh network",
                probes::bosh_network_subnet(node, &network),
            );
            let leased = check(&lab, "flannel subnet", probes::flannel_subnet(node));
            let expected = config.subnet().unwrap();
            assert_eq!((bosh, leased), (expected, expected), "{}", node.name);
            subnets.insert(bosh);
        }
        assert_eq!(subnets.len(), 3, "two nodes share a subnet: {subnets:?}");

        // 5. cpi-config: three Docker CPIs, the same on every node, whose hosts answer over TLS.
        let (cpi_text, cpis) = check(&lab, "cpi-config", probes::cpi_config(&lab, &lab.nodes[0]));
        let hosts: BTreeSet<String> = cpis.iter().map(|c| c.host.clone()).collect();
        let expected_hosts: BTreeSet<String> = lab
            .nodes
            .iter()
            .map(|n| format!("tcp://{}:{DOCKER_TLS_PORT}", n.ip))
            .collect();
        assert_eq!(hosts, expected_hosts, "CPIs: {cpis:?}");
        for node in &lab.nodes[1..] {
            let (text, _) = check(&lab, "cpi-config", probes::cpi_config(&lab, node));
            assert!(
                text == cpi_text,
                "cpi-config on {} differs from {}'s",
                node.name,
                names[0]
            );
        }
        check(&lab, "CPI hosts", probes::cpi_hosts_answer(&lab, &cpi_text));

        trust::trust_holds_against_the_rack_network(&lab, &names);

        // 6. Reboot a node: it rejoins, mc reports unchanged, certificates and cpi-config stay.
        let victim = names[1].clone();
        let prints = check(
            &lab,
            "fingerprints",
            probes::cert_fingerprints(lab.node(&victim)),
        );
        let before = check(&lab, "status", probes::published_status(&lab, &victim));
        let rebooted_at = Instant::now();
        lab.node_mut(&victim).reboot().unwrap();
        wait_node(&lab, &victim);
        check(
            &lab,
            "healthy after reboot",
            wait_status(&lab, &victim, &all_ok(&names), CONVERGE),
        );
        let reboot_converged = rebooted_at.elapsed();
        let after = check(&lab, "status", probes::published_status(&lab, &victim));
        assert_ne!(
            after.finished, before.finished,
            "{victim} did not publish a new converge"
        );
        let changed: Vec<_> = after
            .steps
            .iter()
            .filter(|(_, state, _)| state != "unchanged")
            .collect();
        assert!(
            after.ok && changed.is_empty(),
            "after a reboot mc changed: {changed:?}"
        );
        assert_eq!(
            check(
                &lab,
                "fingerprints",
                probes::cert_fingerprints(lab.node(&victim))
            ),
            prints
        );
        let (cpi_after, _) = check(&lab, "cpi-config", probes::cpi_config(&lab, &lab.nodes[0]));
        assert!(
            cpi_after == cpi_text,
            "cpi-config changed after {victim} rebooted"
        );
        check(
            &lab,
            "etcd cluster after reboot",
            probes::etcd_cluster(&lab, &name_refs),
        );
        // The identity survived the reboot: no second enrollment.
        assert_eq!(
            intruder::enrollments(&lab.serve_log(), &victim),
            1,
            "{victim} enrolled again after a reboot"
        );

        // 7. Stop a node: the others still converge and report it; start it: it heals.
        let stopped = names[2].clone();
        lab.node_mut(&stopped).kill().unwrap();
        // As an operator would: let the two survivors elect an etcd leader first (the stopped
        // node may have been the leader), then converge.
        let survivors: Vec<&str> = names[..2].iter().map(String::as_str).collect();
        check(
            &lab,
            &format!("etcd quorum with {stopped} down"),
            probes::wait_etcd_quorum(&lab, &survivors, Duration::from_secs(30)),
        );
        for name in &names[..2] {
            check(
                &lab,
                &format!("mc converge on {name} with {stopped} down"),
                lab.node(name).exec(&[MC, "converge"]).map(|_| ()),
            );
        }
        let views = check(&lab, "mc status", mc_status(lab.node(&names[0])));
        let seen = healths(&views);
        for (name, health) in &seen {
            if *name == stopped {
                assert!(
                    health == "unreachable" || health == "stale",
                    "{stopped} shows {health}"
                );
            } else {
                assert_eq!(health, "ok", "{name} while {stopped} is down");
            }
        }
        assert_eq!(seen.len(), 3, "{seen:?}");
        lab.node_mut(&stopped).boot().unwrap();
        wait_node(&lab, &stopped);
        check(
            &lab,
            "healed",
            wait_status(&lab, &names[0], &all_ok(&names), CONVERGE),
        );
        check(
            &lab,
            "etcd cluster after healing",
            probes::etcd_cluster(&lab, &name_refs),
        );

        eprintln!(
            "molten-lab: timings: first converge {:.1} s; reboot of {victim} to healthy {:.1} s",
            converged.as_secs_f64(),
            reboot_converged.as_secs_f64()
        );

        trust::certificates_renew(&mut lab, &names[0]);
        trust::revocation(&lab, &names[0], &names[2]);
    }
}
