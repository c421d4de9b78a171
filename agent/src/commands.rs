//! What each subcommand does, given parsed arguments. Returns the process exit code.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::bosh::{self, CloudOptions};
use crate::cli::{BoshArgs, BoshCommand, Cli, Command, LocalArgs, NodeArgs};
use crate::converge::{self, Options};
use crate::etcd_join::{self, JoinOptions};
pub use crate::node_access::EXIT_BUSY;
use crate::node_access::{config_path, exit, lock, retry, session};
use crate::records;
use crate::status::{self, StatusOptions};
use crate::systemd::Systemctl;

/// Printed on stderr before the status JSON when etcd could not take it.
pub const STATUS_FOLLOWS: &str = "the status follows as JSON:";
/// Exit code of `mc status` and `mc bosh` when some node records were invalid (or newer than
/// this mc) and were shown as such or left out, while everything else was fine.
pub const EXIT_PARTIAL: u8 = 3;

pub async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Converge(args) => {
            let options = Options {
                root: args.node.root.clone(),
                config: args.node.config.clone(),
                etcd: args.node.etcd.clone(),
                docker_host: args.docker_host,
                docker_client: match (args.docker_cert, args.docker_key) {
                    (Some(cert), Some(key)) => Some(converge::DockerClient { cert, key }),
                    _ => None,
                },
                stage: args.stage,
                etcd_retry: retry(&args.node),
            };
            // A node without a readable config is refused before anything, the lock included,
            // is created under its root.
            converge::load_config(&options.config_path())?;
            let _lock = match lock(&args.node, "mc converge", args.lock_wait) {
                Ok(lock) => lock,
                Err(busy) => return Ok(busy),
            };
            let report = converge::converge(&options, &Systemctl::local()).await?;
            let status_json = serde_json::to_string_pretty(&report.status)?;
            if args.json {
                println!("{status_json}");
            } else {
                print!("{}", converge::summary(&report));
            }
            if let Some(e) = &report.publish_error {
                // The status could not reach etcd: journald keeps it instead.
                eprintln!("mc: {e}; {STATUS_FOLLOWS}\n{status_json}");
            }
            Ok(exit(report.ok()))
        }
        Command::Status(args) => {
            // This node's own enrollment/renewal failure: without an identity it cannot even
            // read etcd, so this comes first.
            if let Some(trust) = node_trust(&args.node).ok().flatten() {
                if let Some(failure) =
                    crate::enroll::last_failure(&args.node.root, &trust.state_dir)
                {
                    eprintln!("this node {failure}");
                }
            }
            // One retrying session for every read: a leader election or a member going away
            // while the operator looks must not blank the table.
            let mut etcd = session(&args.node).await?;
            let config = node_config(&args.node)?;
            let mut rules = etcd
                .run("reading the cluster's record rules", |mut client| {
                    let config = config.as_deref();
                    async move { records::rules(&mut client, config).await }
                })
                .await?;
            if let Some(path) = &args.docker_ca {
                rules = rules.with_docker_ca(&read_text(path)?)?;
            }
            let options = StatusOptions {
                stale_after: Duration::from_secs(args.stale_after * 24 * 3600),
                prober: if args.no_probe {
                    None
                } else {
                    Some(prober(&args)?)
                },
            };
            let state = etcd
                .run("reading node records and statuses", |mut client| {
                    let rules = &rules;
                    async move { status::read(&mut client, rules).await }
                })
                .await?;
            let views = status::collect(state, &options).await;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&views)?);
            } else {
                print!("{}", status::table(&views));
            }
            let mut code = status_exit(&views);
            if !args.json {
                // etcd's own health, per member: the cluster the statuses live in.
                let members = crate::etcd_commands::member_reports(&mut etcd).await?;
                println!();
                print!("{}", crate::etcd_commands::table(&members));
                if !members.iter().all(|m| m.health.status.is_some()) {
                    code = ExitCode::FAILURE;
                }
            }
            Ok(code)
        }
        Command::Bosh(command) => bosh_command(command).await,
        Command::EtcdJoin(args) => {
            let options = JoinOptions {
                root: args.node.root.clone(),
                config: args.node.config.clone(),
                etcd: args.node.etcd.clone(),
                peer_port: args.peer_port,
                env_file: args.env_file,
                data_dir: args.data_dir,
                retry: retry(&args.node),
                bootstrap_after: args.bootstrap_after.map(std::time::Duration::from_secs),
            };
            let join_lock = crate::lock::JOIN_LOCK_PATH;
            let _lock = match crate::node_access::lock_at(&args.node, join_lock, "mc etcd-join", 60)
            {
                Ok(lock) => lock,
                Err(busy) => return Ok(busy),
            };
            let outcome = etcd_join::join(&options).await?;
            if let Some(start) = outcome.static_start {
                println!(
                    "{}; removed {} if it was there",
                    match start {
                        etcd_join::StaticStart::Bootstrap => format!(
                            "no etcd cluster with a leader answered within {}s and this member \
                             has no data: etcd bootstraps from its static initial cluster",
                            args.bootstrap_after.unwrap_or(0)
                        ),
                        etcd_join::StaticStart::Known => {
                            "a member already: etcd restarts from its data".to_string()
                        }
                        etcd_join::StaticStart::FromData => format!(
                            "no etcd cluster with a leader answered within {}s: etcd restarts \
                             from its data",
                            args.bootstrap_after.unwrap_or(0)
                        ),
                    },
                    outcome.env_file.display()
                );
                return Ok(ExitCode::SUCCESS);
            }
            if !outcome.replaced.is_empty() {
                println!(
                    "removed this node's old member(s) {}: their data was gone",
                    outcome.replaced.join(", ")
                );
            }
            if let Some(path) = &outcome.moved_aside {
                println!("moved data of a removed member aside to {}", path.display());
            }
            println!(
                "{} {}; ETCD_INITIAL_CLUSTER={}{}",
                if outcome.added {
                    "added as a learner (mc etcd promote makes it a voter),"
                } else {
                    "already a member,"
                },
                outcome.env_file.display(),
                outcome.initial_cluster,
                if outcome.env_written {
                    ""
                } else {
                    " (unchanged)"
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Enroll(args) => {
            let (config, settings) = trust_settings(&args.local)?;
            let root = &args.local.root;
            crate::converge::trust::install_roots(root, &config, &settings)?;
            let token = args
                .token_file
                .unwrap_or_else(|| crate::fs::under_root(root, crate::enroll::TOKEN_PATH));
            let (verb, infos) = match crate::enroll::enroll(root, &settings, &token).await? {
                crate::enroll::Enrolled::Already(infos) => ("already enrolled", infos),
                crate::enroll::Enrolled::New(infos) => ("enrolled", infos),
            };
            println!("{verb}: {}", expiry_summary(&infos));
            Ok(ExitCode::SUCCESS)
        }
        Command::Renew(args) => {
            let (config, settings) = trust_settings(&args.local)?;
            let root = &args.local.root;
            let renewed = crate::enroll::renew(root, &settings, args.force).await?;
            let written = crate::converge::trust::install_roots(root, &config, &settings)?;
            let units = crate::converge::trust::units_to_restart(&config, &renewed.kinds, &written);
            let restarted = crate::systemd::restart_if_active(root, &Systemctl::local(), &units)?;
            if renewed.kinds.is_empty() {
                println!("not due: {}", expiry_summary(&renewed.infos));
            } else {
                println!(
                    "renewed: {}{}",
                    expiry_summary(&renewed.infos),
                    if restarted.is_empty() {
                        String::new()
                    } else {
                        format!("; restarted {}", restarted.join(", "))
                    }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Etcd(command) => crate::etcd_commands::run(command).await,
        Command::Version => {
            println!("mc {}", crate::cli::VERSION);
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn bosh_command(command: BoshCommand) -> Result<ExitCode> {
    let args = match &command {
        BoshCommand::CloudConfig(a) | BoshCommand::CpiConfig(a) => a,
        BoshCommand::Write { args, .. } => args,
    };
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
    };
    // Node keys are never in etcd: the CPIs present the operator's certificate.
    let client = match (&args.client_cert, &args.client_key) {
        (Some(cert), Some(key)) => Some(crate::identity::Pair {
            cert_pem: read(cert)?,
            key_pem: read(key)?,
        }),
        _ => None,
    };
    let needs_client = !matches!(command, BoshCommand::CloudConfig(_));
    if needs_client && client.is_none() {
        anyhow::bail!(
            "the cpi-config needs a Docker client certificate: pass --client-cert and \
             --client-key (from `molten authority issue-client --name bosh`)"
        );
    }
    let docker_ca =
        match &args.docker_ca {
            Some(path) => read(path)?,
            None => node_trust(&args.node)?
                .context(
                    "no --docker-ca and no node config: give the Docker CA (docker-ca.pem of the \
                     authority)",
                )?
                .docker_ca,
        };
    let now = crate::timestamp::now();
    crate::identity::check_ca("the Docker CA", &docker_ca, now)?;
    if let (Some(pair), Some(cert)) = (&client, &args.client_cert) {
        crate::identity::check_presented(
            &format!("--client-cert {}", cert.display()),
            &pair.cert_pem,
            Some(&docker_ca),
            now,
        )?;
    }
    let mut etcd = session(&args.node).await?;
    let config = node_config(&args.node)?;
    let rules = etcd
        .run("reading the cluster's record rules", |mut client| {
            let config = config.as_deref();
            async move { records::rules(&mut client, config).await }
        })
        .await?
        .with_docker_ca(&docker_ca)?;
    // bosh::load only reads etcd: safe to repeat after a transient failure.
    let inputs = etcd
        .run("reading node records", |mut client| {
            let (rules, docker_ca) = (&rules, docker_ca.as_str());
            async move { bosh::load(&mut client, rules, docker_ca).await }
        })
        .await?;
    for node in &inputs.left_out {
        eprintln!(
            "mc bosh: warning: node {} left out: {}",
            node.name, node.reason
        );
    }
    let options = cloud_options(args);
    match &command {
        BoshCommand::CloudConfig(_) => print!("{}", bosh::cloud_config(&inputs, &options)),
        BoshCommand::CpiConfig(_) => {
            let client = client.as_ref().context("checked above")?;
            print!("{}", bosh::cpi_config(&inputs, client))
        }
        BoshCommand::Write { dir, .. } => {
            let client = client.as_ref().context("checked above")?;
            let written = bosh::write(dir, &inputs, client, &options)?;
            if written.is_empty() {
                println!("unchanged: {}", dir.display());
            } else {
                println!("wrote {} in {}", written.join(", "), dir.display());
            }
        }
    }
    if inputs.left_out.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "mc bosh: partial: {} node(s) left out; the output covers the other {}",
            inputs.left_out.len(),
            inputs.zones.len()
        );
        Ok(ExitCode::from(EXIT_PARTIAL))
    }
}

/// 0 when every node is ok, [`EXIT_PARTIAL`] when the only problems are invalid or newer
/// records, 1 otherwise.
fn status_exit(views: &[status::NodeView]) -> ExitCode {
    use status::Health;
    let mut partial = false;
    for view in views {
        match view.health {
            Health::Ok => {}
            Health::Invalid | Health::Newer => partial = true,
            _ => return ExitCode::FAILURE,
        }
    }
    if partial {
        ExitCode::from(EXIT_PARTIAL)
    } else {
        ExitCode::SUCCESS
    }
}

/// The node config records are checked against: `--config`, or the default path unless
/// `--etcd` says where etcd is (an operator's machine has no node config).
fn node_config(node: &NodeArgs) -> Result<Option<crate::config::Config>> {
    if node.config.is_none() && node.etcd.is_some() {
        return Ok(None);
    }
    let path = config_path(&node.root, &node.config);
    if node.config.is_none() && !path.exists() {
        return Ok(None);
    }
    converge::load_config(&path).map(Some)
}

fn cloud_options(args: &BoshArgs) -> CloudOptions {
    CloudOptions {
        dns: args.dns.clone(),
        disk_size_mb: args.disk_size,
        compilation_workers: args.workers,
    }
}

/// The Docker probe of `mc status`: the Docker CA from `--docker-ca` or node.json's trust
/// section, and the operator's client certificate when given. Both are checked (clock, validity
/// windows, issuer) before any connection; without a Docker CA only TCP is tried (and says so).
fn prober(args: &crate::cli::StatusArgs) -> Result<crate::docker::probe::Prober> {
    let docker_ca = match &args.docker_ca {
        Some(path) => Some(read_text(path)?),
        None => node_trust(&args.node)?.map(|trust| trust.docker_ca),
    };
    let now = crate::timestamp::now();
    if let Some(ca) = &docker_ca {
        crate::identity::check_ca("the Docker CA", ca, now)?;
    }
    let client = match (&args.client_cert, &args.client_key) {
        (Some(cert), Some(key)) => {
            anyhow::ensure!(
                docker_ca.is_some(),
                "--client-cert needs the Docker CA: pass --docker-ca (off a node, there is no \
                 node config to take it from)"
            );
            let cert_pem = read_text(cert)?;
            crate::identity::check_presented(
                &format!("--client-cert {}", cert.display()),
                &cert_pem,
                docker_ca.as_deref(),
                now,
            )?;
            Some((cert_pem, read_text(key)?))
        }
        _ => None,
    };
    crate::docker::probe::Prober::new(
        docker_ca.as_deref(),
        client.as_ref().map(|(c, k)| (c.as_str(), k.as_str())),
        Duration::from_secs(args.probe_timeout),
    )
    .context("the Docker probe")
}

fn read_text(path: &std::path::Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// The node config's trust section, when there is a node config.
fn node_trust(node: &NodeArgs) -> Result<Option<molten_contract::TrustSettings>> {
    let path = config_path(&node.root, &node.config);
    if node.config.is_none() && !path.exists() {
        return Ok(None);
    }
    Ok(Some(converge::load_config(&path)?.into_node_config().trust))
}

/// The node config and its trust settings (enroll and renew need both).
fn trust_settings(
    local: &LocalArgs,
) -> Result<(molten_contract::NodeConfig, crate::enroll::Settings)> {
    let path = config_path(&local.root, &local.config);
    let config = converge::load_config(&path)?;
    let mut settings = crate::enroll::Settings::from_config(&config);
    settings.private_ip = crate::address::private_ip(&local.root, &config).ok();
    Ok((config.into_node_config(), settings))
}

/// "N certificates, the first expiring at T".
fn expiry_summary(infos: &[crate::identity::CertInfo]) -> String {
    match infos.iter().map(|i| i.not_after).min() {
        Some(first) => format!(
            "{} certificates, valid until {}",
            infos.len(),
            crate::timestamp::rfc3339(first)
        ),
        None => "no certificates".to_string(),
    }
}
