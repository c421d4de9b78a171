//! What each subcommand does, given parsed arguments. Returns the process exit code.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use etcd_client::Client;

use crate::bosh::{self, CloudOptions};
use crate::cli::{BoshArgs, BoshCommand, Cli, Command, NodeArgs};
use crate::converge::{self, Options};
use crate::etcd::{self, Retry};
use crate::etcd_join::{self, JoinOptions};
use crate::status::{self, StatusOptions};
use crate::systemd::Systemctl;

/// Printed on stderr before the status JSON when etcd could not take it.
pub const STATUS_FOLLOWS: &str = "the status follows as JSON:";

pub async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Converge(args) => {
            let options = Options {
                root: args.node.root.clone(),
                config: args.node.config.clone(),
                etcd: args.node.etcd.clone(),
                docker_host: args.docker_host,
                stage: args.stage,
                etcd_retry: retry(&args.node),
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
            let mut client = connect(&args.node).await?;
            let options = StatusOptions {
                stale_after: Duration::from_secs(args.stale_after * 24 * 3600),
                probe: !args.no_probe,
                ..StatusOptions::default()
            };
            let views = status::collect(&mut client, &options).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&views)?);
            } else {
                print!("{}", status::table(&views));
            }
            let healthy = views.iter().all(|v| v.health == status::Health::Ok);
            Ok(exit(healthy))
        }
        Command::Bosh(command) => bosh_command(command).await,
        Command::EtcdJoin(args) => {
            let options = JoinOptions {
                root: args.node.root.clone(),
                config: args.node.config.clone(),
                etcd: args.node.etcd.clone(),
                peer_port: args.peer_port,
                env_file: args.env_file,
                retry: retry(&args.node),
            };
            let outcome = etcd_join::join(&options).await?;
            println!(
                "{} {}; ETCD_INITIAL_CLUSTER={}{}",
                if outcome.added {
                    "added member,"
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
    let mut client = connect(&args.node).await?;
    let inputs = bosh::load(&mut client).await?;
    let options = cloud_options(args);
    match &command {
        BoshCommand::CloudConfig(_) => print!("{}", bosh::cloud_config(&inputs, &options)),
        BoshCommand::CpiConfig(_) => print!("{}", bosh::cpi_config(&inputs)),
        BoshCommand::Write { dir, .. } => {
            let written = bosh::write(dir, &inputs, &options)?;
            if written.is_empty() {
                println!("unchanged: {}", dir.display());
            } else {
                println!("wrote {} in {}", written.join(", "), dir.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn cloud_options(args: &BoshArgs) -> CloudOptions {
    CloudOptions {
        dns: args.dns.clone(),
        disk_size_mb: args.disk_size,
        compilation_workers: args.workers,
    }
}

fn retry(node: &NodeArgs) -> Retry {
    Retry::with_budget(Duration::from_secs(node.etcd_timeout))
}

/// etcd from `--etcd`, else from the node config.
async fn connect(node: &NodeArgs) -> Result<Client> {
    let endpoints = match &node.etcd {
        Some(e) => e.clone(),
        None => {
            let path = node.config.clone().unwrap_or_else(|| {
                crate::fs::under_root(&node.root, molten_contract::NODE_CONFIG_PATH)
            });
            converge::load_config(&path)
                .context("no --etcd given, so the endpoints come from the node config")?
                .etcd
                .endpoints
        }
    };
    etcd::connect(&endpoints, retry(node)).await
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
