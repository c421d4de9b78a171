//! The command line (clap). Only types and parsing; the work is in [`crate::commands`].

use std::net::Ipv4Addr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::converge::Stage;

const EXAMPLES: &str = "\
Examples:
  mc converge --stage boot            run by mc.service at every boot
  mc converge --stage network         run by mc-network.service after Docker
  mc converge --root /tmp/node --etcd https://127.0.0.1:2379
                                      converge a directory tree (tests, operators)
  mc status                           the whole cluster: who failed, where, why
  mc bosh write --dir /var/lib/bosh   cloud-config.yml and cpi-config.yml
  mc etcd-join                        negotiate this member's membership before etcd starts
  mc etcd members                     every etcd member and its health
  mc etcd remove core-03              remove a dead member (refused if quorum would go)
  mc etcd promote                     make this node's learner a voting member
  mc etcd snapshot --keep 7           save a checked snapshot on this node
  mc etcd restore                     one-member cluster from the newest snapshot";

/// `mc --version`: the crate version and the git commit it was built from (build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("MOLTEN_GIT_COMMIT"),
    ")"
);

#[derive(Debug, Parser)]
#[command(
    name = "mc",
    version = VERSION,
    about = "molten node agent: converges this node at every boot and reports honestly",
    after_help = EXAMPLES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make this node match its node config; publish the result in etcd.
    Converge(ConvergeArgs),
    /// Show every node's last converge from etcd.
    Status(StatusArgs),
    /// Render BOSH configs from the node records in etcd.
    #[command(subcommand)]
    Bosh(BoshCommand),
    /// Negotiate this member's etcd membership before etcd starts; write etcd's environment.
    EtcdJoin(EtcdJoinArgs),
    /// Enroll with the cluster authority: keys made here, only requests sent. Does nothing
    /// when a valid identity is on disk (the token is single-use).
    Enroll(EnrollArgs),
    /// Renew this node's certificates when a third of their validity is left; restart the
    /// daemons whose files changed (mc-renew.timer, daily).
    Renew(RenewArgs),
    /// etcd membership, snapshots and restore, without etcdctl.
    #[command(subcommand)]
    Etcd(EtcdCommand),
    /// Print mc's version.
    Version,
}

/// Where the node config and etcd are.
#[derive(Debug, Clone, Args)]
pub struct NodeArgs {
    /// Every file mc reads or writes is under this directory.
    #[arg(long, default_value = "/", value_name = "DIR")]
    pub root: PathBuf,
    /// The node config [default: <root>/etc/molten/node.json].
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// etcd client URLs, comma separated [default: from the node config].
    #[arg(long, value_name = "URL,...", value_delimiter = ',')]
    pub etcd: Option<Vec<String>>,
    /// Give up reaching etcd after this many seconds (retries with backoff).
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub etcd_timeout: u64,
    /// etcd client certificate (PEM) [default: the node's enrolled etcd-client identity].
    #[arg(long, value_name = "PATH", requires_all = ["etcd_key", "etcd_ca"])]
    pub etcd_cert: Option<PathBuf>,
    /// The key of --etcd-cert.
    #[arg(long, value_name = "PATH", requires = "etcd_cert")]
    pub etcd_key: Option<PathBuf>,
    /// The etcd CA (PEM) that signed the members' certificates.
    #[arg(long, value_name = "PATH", requires = "etcd_cert")]
    pub etcd_ca: Option<PathBuf>,
}

/// This node's config and files.
#[derive(Debug, Clone, Args)]
pub struct LocalArgs {
    /// Every file mc reads or writes is under this directory.
    #[arg(long, default_value = "/", value_name = "DIR")]
    pub root: PathBuf,
    /// The node config [default: <root>/etc/molten/node.json].
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct EnrollArgs {
    #[command(flatten)]
    pub local: LocalArgs,
    /// The enrollment token [default: <root>/etc/molten/enroll-token].
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RenewArgs {
    #[command(flatten)]
    pub local: LocalArgs,
    /// Renew now, whatever the validity left.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ConvergeArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Which steps to run.
    #[arg(long, value_enum, default_value_t = Stage::All)]
    pub stage: Stage,
    /// Docker API: unix:///path, or tcp://host:port with --docker-cert/--docker-key
    /// [default: unix://<root>/var/run/docker.sock].
    #[arg(long, value_name = "URL")]
    pub docker_host: Option<String>,
    /// A Docker client certificate (from `molten authority issue-client`) for a tcp:// host;
    /// the node's Docker CA verifies the daemon.
    #[arg(long, value_name = "PATH", requires_all = ["docker_key", "docker_host"])]
    pub docker_cert: Option<PathBuf>,
    /// The key of --docker-cert.
    #[arg(long, value_name = "PATH", requires = "docker_cert")]
    pub docker_key: Option<PathBuf>,
    /// Print the published status as JSON instead of a summary.
    #[arg(long)]
    pub json: bool,
    /// Wait this long for another mc changing this node to finish (exit 75 after).
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub lock_wait: u64,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// A converge older than this many days is shown as stale.
    #[arg(long, default_value_t = 30, value_name = "DAYS")]
    pub stale_after: u64,
    /// Do not probe each node's Docker endpoint.
    #[arg(long)]
    pub no_probe: bool,
    /// Seconds each Docker probe (connect, TLS handshake, /_ping) may take; probes run at once.
    #[arg(long, default_value_t = 3, value_name = "SECS")]
    pub probe_timeout: u64,
    /// The cluster's Docker CA (PEM): daemons must present a certificate from it for their
    /// address, records must name it [default: the node config's trust.docker_ca].
    #[arg(long, value_name = "PATH")]
    pub docker_ca: Option<PathBuf>,
    /// A Docker client certificate (from `molten authority issue-client`): the probe then also
    /// asks each daemon `GET /_ping`.
    #[arg(long, value_name = "PATH", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// The key of --client-cert.
    #[arg(long, value_name = "PATH", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum BoshCommand {
    /// Print the cloud-config (AZs, network, vm and disk types, compilation).
    CloudConfig(BoshArgs),
    /// Print the cpi-config (one Docker CPI per AZ, with TLS).
    CpiConfig(BoshArgs),
    /// Write cloud-config.yml and cpi-config.yml into DIR, each only if it changed.
    Write {
        #[command(flatten)]
        args: BoshArgs,
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
}

#[derive(Debug, Clone, Args)]
pub struct BoshArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// DNS servers for the BOSH network (repeatable).
    #[arg(long = "dns", value_name = "IP", default_value = "8.8.8.8")]
    pub dns: Vec<Ipv4Addr>,
    /// Size of the `default` persistent disk type, MB.
    #[arg(long, default_value_t = 10_240, value_name = "MB")]
    pub disk_size: i64,
    /// Compilation workers.
    #[arg(long, default_value_t = 4)]
    pub workers: i64,
    /// The Docker client certificate the CPIs present (from `molten authority issue-client`;
    /// node keys are never in etcd). Required by cpi-config and write.
    #[arg(long, value_name = "PATH", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// The key of --client-cert.
    #[arg(long, value_name = "PATH", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// The Docker CA (PEM) [default: the node config's trust.docker_ca].
    #[arg(long, value_name = "PATH")]
    pub docker_ca: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct EtcdJoinArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// The peer port this member will listen on.
    #[arg(long, default_value_t = crate::etcd_join::DEFAULT_PEER_PORT)]
    pub peer_port: u16,
    /// Where to write etcd's environment [default: <root>/run/molten/etcd-join.env].
    #[arg(long, value_name = "PATH")]
    pub env_file: Option<PathBuf>,
    /// etcd's data dir on this node [default: <root>/var/lib/etcd].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// A member whose addresses come from the profile: if no cluster with a leader answers
    /// within SECS, remove the env file and exit 0 — etcd then bootstraps from its static
    /// settings (empty data dir: a new cluster's first boot) or restarts from its data.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub bootstrap_after: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum EtcdCommand {
    /// Every member with its health: leader, raft index, lag, db size.
    Members {
        #[command(flatten)]
        node: NodeArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove a member (dead, or to shrink), refused if the cluster would lose quorum.
    Remove {
        #[command(flatten)]
        node: NodeArgs,
        /// The member's name.
        name: String,
    },
    /// Promote a learner to a voting member once it has caught up.
    Promote {
        #[command(flatten)]
        node: NodeArgs,
        /// The member's name [default: this node's].
        name: Option<String>,
        /// Wait this long for the learner to catch up.
        #[arg(long, default_value_t = 120, value_name = "SECS")]
        wait: u64,
    },
    /// Save an integrity-checked snapshot of etcd on this node, keeping the newest N.
    Snapshot(SnapshotArgs),
    /// Re-form a one-member cluster from a snapshot when quorum is lost for good.
    Restore(RestoreArgs),
}

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Where snapshots go [default: <root>/var/lib/molten/etcd-snapshots].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// How many snapshots to keep.
    #[arg(long, default_value_t = crate::etcd::snapshot::DEFAULT_KEEP, value_name = "N")]
    pub keep: usize,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Every file mc reads or writes is under this directory.
    #[arg(long, default_value = "/", value_name = "DIR")]
    pub root: PathBuf,
    /// The node config [default: <root>/etc/molten/node.json].
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// The snapshot [default: the newest in <root>/var/lib/molten/etcd-snapshots].
    #[arg(long, value_name = "FILE")]
    pub snapshot: Option<PathBuf>,
    /// etcd's data dir to create; must hold no member [default: <root>/var/lib/etcd].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The restored member's name [default: the node's].
    #[arg(long)]
    pub name: Option<String>,
    /// Its peer URL [default: https://<private IP>:2380].
    #[arg(long, value_name = "URL")]
    pub peer_url: Option<String>,
    /// The etcdctl whose `snapshot restore` writes the data dir.
    #[arg(long, default_value = "etcdctl", value_name = "PATH")]
    pub etcdctl: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent_and_help_fits_80_columns() {
        Cli::command().debug_assert();
        let help = Cli::command().term_width(80).render_long_help().to_string();
        for line in help.lines() {
            assert!(line.chars().count() <= 80, "too wide: {line:?}");
        }
        let mut converge = Cli::command();
        let converge = converge.find_subcommand_mut("converge").unwrap();
        let help = converge
            .clone()
            .term_width(80)
            .render_long_help()
            .to_string();
        assert!(help.contains("--docker-host"), "{help}");
        for line in help.lines() {
            assert!(line.chars().count() <= 80, "too wide: {line:?}");
        }
    }

    #[test]
    fn the_version_names_the_commit() {
        let shown = Cli::command().render_version();
        let commit = env!("MOLTEN_GIT_COMMIT");
        assert_eq!(
            shown.trim(),
            format!("mc {} (commit {commit})", env!("CARGO_PKG_VERSION"))
        );
        let is_hash = commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit());
        assert!(is_hash || commit == "unknown", "{commit}");
    }

    /// docs/man is generated from this command line; `MOLTEN_BLESS=1` rewrites it.
    #[test]
    fn the_man_pages_in_docs_are_current() {
        molten_testkit::man_pages::check_current(Cli::command(), env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn etcd_endpoints_split_on_commas() {
        let cli =
            Cli::try_parse_from(["mc", "converge", "--etcd", "https://a:1,https://b:2"]).unwrap();
        let Command::Converge(args) = cli.command else {
            panic!()
        };
        assert_eq!(args.node.etcd.unwrap(), vec!["https://a:1", "https://b:2"]);
        assert_eq!(args.stage, Stage::All);
    }
}
