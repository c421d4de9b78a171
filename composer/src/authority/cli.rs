//! `molten authority init | issue-client`: the operator's commands on the authority directory.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use molten_contract::trust::ETCD_ROOT_USER;
use time::{Duration, OffsetDateTime};

use super::{secure_fs, Authority, DOCKER_CA, ETCD_CA};
use crate::profile::{self, LoadOptions};

#[derive(Debug, Args)]
pub struct AuthorityArgs {
    #[command(subcommand)]
    pub command: AuthorityCommand,
}

#[derive(Debug, Subcommand)]
pub enum AuthorityCommand {
    /// Create the cluster authority (CAs, token key) in a new private directory
    Init(InitArgs),
    /// Issue a Docker client certificate (BOSH, operator), optionally an etcd root one
    IssueClient(IssueClientArgs),
    /// Revoke a node: nothing is signed for it any more, members delete its etcd user
    Revoke(RevokeArgs),
    /// Let the next compose provision a revoked node again (with a new token)
    Readmit(ReadmitArgs),
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    #[command(flatten)]
    pub at: DirArgs,
    /// The node to revoke
    #[arg(long, value_name = "NAME")]
    pub node: String,
    /// Why (kept in the authority, shown to whoever asks for the node)
    #[arg(long, value_name = "TEXT", default_value = "revoked by the operator")]
    pub reason: String,
}

#[derive(Debug, Args)]
pub struct ReadmitArgs {
    #[command(flatten)]
    pub at: DirArgs,
    /// The revoked node to provision again
    #[arg(long, value_name = "NAME")]
    pub node: String,
}

#[derive(Debug, Args)]
pub struct DirArgs {
    /// The cluster profile (YAML); names the cluster and the default directory
    #[arg(long, value_name = "PATH", default_value = "profiles/dev.yaml")]
    pub profile: PathBuf,
    /// The authority directory [default: <profile dir>/<cluster>.authority]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub at: DirArgs,
}

#[derive(Debug, Args)]
pub struct IssueClientArgs {
    #[command(flatten)]
    pub at: DirArgs,
    /// The client's name (certificate CN), e.g. bosh
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// Also issue an etcd client certificate with CN=root (cluster admin)
    #[arg(long)]
    pub etcd_root: bool,
    /// Where to write the certificates and keys [default: <authority>/clients/<NAME>]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// How long the certificates are valid, in days
    #[arg(long, value_name = "DAYS", default_value_t = 365)]
    pub validity_days: u32,
}

/// `molten compose`'s authority flags. Every compose has an authority.
#[derive(Debug, Args)]
pub struct ComposeTrustArgs {
    /// The cluster authority (enrollment, TLS) [default: <profile dir>/<cluster>.authority,
    /// created on first use]; a DIR given must exist (`molten authority init --dir`)
    // `Option<Option<_>>`: absent, `--authority` alone (both: the default), or `--authority DIR`.
    // (A PathBuf parser refuses the empty default_missing_value that stood in for "alone".)
    #[arg(long, value_name = "DIR", num_args = 0..=1)]
    pub authority: Option<Option<PathBuf>>,
    /// How nodes reach the authority's HTTPS listener [default: https://<bundle host>:8443]
    #[arg(long, value_name = "URL")]
    pub authority_url: Option<String>,
    /// How long enrollment tokens stay valid: 24h, 7d, 600s
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "24h",
        value_parser = super::serve_cmd::parse_validity
    )]
    pub token_ttl: Duration,
}

/// The authority to compose with: `--authority DIR`, else the one beside the profile, created
/// (with a message) when none is there yet. Refused when it overlaps the output directory, and
/// (by [`Authority::open`]) when group or others can access it.
pub fn trust_input(
    args: &ComposeTrustArgs,
    profile: &Path,
    cluster: &crate::model::Cluster,
    platform: crate::platform::Platform,
    out: &Path,
) -> Result<crate::trust::TrustInput, AuthorityFailure> {
    let named = args.authority.clone().flatten();
    let implicit = named.is_none();
    let dir = match named {
        Some(dir) => dir,
        None => super::default_dir(profile, &cluster.name),
    };
    if secure_fs::is_within(&dir, out) || secure_fs::is_within(out, &dir) {
        eprintln!(
            "error[--authority]: {} and the output {} overlap: the authority holds CA keys and \
             must stay outside every bundle",
            dir.display(),
            out.display()
        );
        return Err(AuthorityFailure::InvalidInput);
    }
    let now = OffsetDateTime::now_utc();
    let authority = if implicit && !dir.exists() {
        let authority =
            Authority::init(&dir, &cluster.name, now).map_err(AuthorityFailure::Failed)?;
        eprintln!(
            "created the authority of cluster {} in {} (0700): keep it, back it up",
            cluster.name,
            dir.display()
        );
        authority
    } else {
        Authority::open(&dir).map_err(AuthorityFailure::Failed)?
    };
    let authority_url = authority_url(args, cluster, platform)?;
    Ok(crate::trust::TrustInput {
        authority,
        authority_url,
        token_ttl: args.token_ttl,
        now,
    })
}

/// `--authority-url`, else `https://<bundle host>:8443` where the platform serves a bundle.
pub fn authority_url(
    args: &ComposeTrustArgs,
    cluster: &crate::model::Cluster,
    platform: crate::platform::Platform,
) -> Result<String, AuthorityFailure> {
    let authority_url = match &args.authority_url {
        Some(url) => url.clone(),
        None => {
            let served = platform
                .target()
                .served_base_url(cluster)
                .map_err(|err| AuthorityFailure::Failed(anyhow::anyhow!("{err}")))?;
            match served
                .as_deref()
                .and_then(crate::trust::default_authority_url)
            {
                Some(url) => url,
                None => {
                    eprintln!(
                        "error[--authority-url]: platform {platform} serves no bundle, so molten \
                         cannot tell where nodes reach the authority: give \
                         --authority-url https://<bastion>:8443"
                    );
                    return Err(AuthorityFailure::InvalidInput);
                }
            }
        }
    };
    if crate::trust::url_host(&authority_url).is_none() {
        eprintln!("error[--authority-url]: {authority_url} is not https://<host>:<port>");
        return Err(AuthorityFailure::InvalidInput);
    }
    Ok(authority_url)
}

/// Why the command failed: bad input (exit 2) or anything else (exit 1).
#[derive(Debug)]
pub enum AuthorityFailure {
    InvalidInput,
    Failed(anyhow::Error),
}

pub fn run(args: &AuthorityArgs) -> Result<(), AuthorityFailure> {
    match &args.command {
        AuthorityCommand::Init(init) => {
            let cluster = cluster_name(&init.at.profile)?;
            let dir = dir_of(&init.at, &cluster);
            let authority = Authority::init(&dir, &cluster, OffsetDateTime::now_utc())
                .map_err(AuthorityFailure::Failed)?;
            println!(
                "created the authority of cluster {cluster} in {} (0700): keep it on this \
                 machine, back it up, never copy it into a bundle",
                authority.dir().display()
            );
            Ok(())
        }
        AuthorityCommand::IssueClient(issue) => {
            check_client_name(&issue.name)?;
            let dir = authority_dir(&issue.at)?;
            issue_client(&dir, issue).map_err(AuthorityFailure::Failed)
        }
        AuthorityCommand::Revoke(revoke) => {
            let dir = authority_dir(&revoke.at)?;
            let reason: String = revoke
                .reason
                .chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect();
            change_state(&dir, |state| {
                state.revoke(&revoke.node, &reason, OffsetDateTime::now_utc())
            })?;
            println!(
                "revoked node {}: the authority signs nothing for it any more; etcd members \
                 delete its user at their next converge (mc converge, or mc-converge.timer)",
                revoke.node
            );
            Ok(())
        }
        AuthorityCommand::Readmit(readmit) => {
            let dir = authority_dir(&readmit.at)?;
            change_state(&dir, |state| state.readmit(&readmit.node))?;
            println!(
                "node {} may be provisioned again: compose gives it a new token",
                readmit.node
            );
            Ok(())
        }
    }
}

fn authority_dir(at: &DirArgs) -> Result<PathBuf, AuthorityFailure> {
    Ok(match &at.dir {
        Some(dir) => dir.clone(),
        None => dir_of(at, &cluster_name(&at.profile)?),
    })
}

/// Read → change → write of `enrollment.json` under the authority's lock.
fn change_state(
    dir: &Path,
    change: impl FnOnce(&mut super::enrollment::EnrollmentState) -> Result<()>,
) -> Result<(), AuthorityFailure> {
    let result = (|| {
        let authority = Authority::open(dir)?;
        let _lock = authority.lock()?;
        let mut state = authority.read_state()?;
        change(&mut state)?;
        authority.write_state(&state)
    })();
    result.map_err(AuthorityFailure::Failed)
}

fn cluster_name(profile_path: &Path) -> Result<String, AuthorityFailure> {
    match profile::check_file(profile_path, &LoadOptions::default()) {
        Ok(checked) => Ok(checked.loaded.cluster.name),
        Err(diagnostics) => {
            eprintln!("{diagnostics}\n");
            eprintln!("molten: {} is not a valid profile", profile_path.display());
            Err(AuthorityFailure::InvalidInput)
        }
    }
}

fn dir_of(at: &DirArgs, cluster: &str) -> PathBuf {
    at.dir
        .clone()
        .unwrap_or_else(|| super::default_dir(&at.profile, cluster))
}

fn check_client_name(name: &str) -> Result<(), AuthorityFailure> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if !valid || name == ETCD_ROOT_USER {
        eprintln!(
            "error[--name]: {name:?} is not a client name: use 1-64 letters, digits, '-', '_' or \
             '.' (not \"root\", which --etcd-root issues)"
        );
        return Err(AuthorityFailure::InvalidInput);
    }
    Ok(())
}

fn issue_client(dir: &Path, args: &IssueClientArgs) -> Result<()> {
    let authority = Authority::open(dir)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| dir.join("clients").join(&args.name));
    if out.exists() && std::fs::read_dir(&out)?.next().is_some() {
        bail!(
            "{} already exists and is not empty: refusing to overwrite keys",
            out.display()
        );
    }
    let now = OffsetDateTime::now_utc();
    let validity = Duration::days(i64::from(args.validity_days));
    let mut files = Vec::new();
    let docker = authority.ca(DOCKER_CA)?;
    let (cert, key) = docker.issue_with_new_key(&args.name, &[], false, now, validity)?;
    files.push((format!("{}.pem", args.name), cert));
    files.push((format!("{}.key", args.name), key));
    files.push(("docker-ca.pem".to_string(), docker.cert_pem().to_string()));
    if args.etcd_root {
        let etcd = authority.ca(ETCD_CA)?;
        let (cert, key) = etcd.issue_with_new_key(ETCD_ROOT_USER, &[], false, now, validity)?;
        files.push(("etcd-root.pem".to_string(), cert));
        files.push(("etcd-root.key".to_string(), key));
        files.push(("etcd-ca.pem".to_string(), etcd.cert_pem().to_string()));
    }
    // Staged next to `out` and renamed: all files or none.
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let staging = tempfile::Builder::new()
        .prefix(".client.new-")
        .tempdir_in(parent)
        .with_context(|| format!("cannot create a directory in {}", parent.display()))?;
    secure_fs::create_private_dir(staging.path())?;
    for (name, contents) in &files {
        secure_fs::create_private_file(&staging.path().join(name), contents.as_bytes())?;
    }
    if out.exists() {
        std::fs::remove_dir(&out).with_context(|| format!("cannot replace {}", out.display()))?;
    }
    std::fs::rename(staging.path(), &out)
        .with_context(|| format!("cannot move the certificates into {}", out.display()))?;
    let _ = staging.keep();
    println!(
        "issued client {} (Docker{}) valid {} days: {} (keys 0600)",
        args.name,
        if args.etcd_root { ", etcd root" } else { "" },
        args.validity_days,
        out.display()
    );
    Ok(())
}
