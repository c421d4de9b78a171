//! The profile stage: YAML text → validated [`model::Cluster`], or every problem found, each
//! pointing at its place in the file (see [`crate::diagnostics`]).
//!
//! Two steps, like butane: [`raw`] types take the YAML as written (unknown keys and wrong types
//! are refused there), then the checks fill in defaults and apply the rules across values.
//! `docs/profile.md` is the reference for the format.

mod agent;
pub mod defaults;
mod draft;
mod ipxe_assets;
mod nodes;
mod parse;
mod platforms;
mod racks;
pub mod raw;
mod report;
mod settings;
pub mod target;
mod values;

use std::path::Path;

use crate::diagnostics::Diagnostics;
use crate::model::{self, Cluster};

pub use agent::sha512_of;
pub use parse::PROFILE_VERSION;
pub use report::At;
pub use target::{NodeValue, TargetCheck, TargetRules};

use report::Report;

/// How to load a profile.
#[derive(Clone, Copy, Default)]
pub struct LoadOptions<'a> {
    /// The rules of the platform being composed for (`Platform::X.rules()`): its section and
    /// node requirements are checked, and where it assigns addresses at boot the profile's are
    /// dropped.
    pub platform: Option<&'a dyn TargetRules>,
    /// `--agent PATH`: use this local file as the agent, whatever the profile says.
    pub agent_override: Option<&'a Path>,
    /// Treat warnings as errors.
    pub strict: bool,
}

/// A valid profile and the warnings it raised.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub cluster: Cluster,
    pub warnings: Diagnostics,
}

impl AsRef<Loaded> for Loaded {
    fn as_ref(&self) -> &Loaded {
        self
    }
}

impl AsRef<Loaded> for Checked {
    fn as_ref(&self) -> &Loaded {
        &self.loaded
    }
}

/// A profile checked by `molten validate`, which, unlike compose, does not need the agent.
#[derive(Debug, Clone)]
pub struct Checked {
    /// When `agent_unset`, `loaded.cluster.agent` is [`placeholder_agent`]: good for composing
    /// in memory to check a platform, never for writing a bundle.
    pub loaded: Loaded,
    /// Neither the profile's `agent` nor `--agent` named one; compose will ask for it.
    pub agent_unset: bool,
}

/// The URL of the stand-in agent a check uses when none is set (`.invalid` never resolves).
pub const PLACEHOLDER_AGENT_URL: &str = "https://agent-not-set.invalid/mc";

/// The stand-in agent of a [`Checked`] profile that names none: a download nobody can make.
pub fn placeholder_agent() -> model::Agent {
    model::Agent::Url {
        url: PLACEHOLDER_AGENT_URL.to_string(),
        sha512: "0".repeat(128),
    }
}

/// Whether loading insists on an agent (compose) or accepts a profile without one (validate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AgentRule {
    Required,
    MayBeUnset,
}

/// Loads a profile from `text`. `origin_name` is what messages call the file (e.g.
/// `profiles/dev.yaml`); a relative `agent.path` is resolved against `base_dir`.
///
/// On failure the result holds every error (and warning) found, in file order. With
/// `opts.strict`, warnings alone also fail the load.
pub fn load(
    origin_name: &str,
    text: &str,
    base_dir: &Path,
    opts: &LoadOptions,
) -> Result<Loaded, Diagnostics> {
    load_with(origin_name, text, base_dir, opts, AgentRule::Required).map(|c| c.loaded)
}

/// Like [`load`], but a profile that names no agent (and no `--agent`) passes: every other rule
/// is checked, and the result says the agent is unset. An agent that is named is checked as in
/// [`load`] (a missing file or a wrong sum is an error, packet refuses a local one).
pub fn check(
    origin_name: &str,
    text: &str,
    base_dir: &Path,
    opts: &LoadOptions,
) -> Result<Checked, Diagnostics> {
    load_with(origin_name, text, base_dir, opts, AgentRule::MayBeUnset)
}

fn load_with(
    origin_name: &str,
    text: &str,
    base_dir: &Path,
    opts: &LoadOptions,
    rule: AgentRule,
) -> Result<Checked, Diagnostics> {
    // Editors on some systems start files with a byte-order mark; YAML ignores it, so do we.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut report = Report::new(origin_name, text);
    let Some(raw) = parse::parse(text, &mut report) else {
        return Err(report.into_diagnostics());
    };
    let agent_unset = rule == AgentRule::MayBeUnset && agent::unset(&raw, opts.agent_override);
    let cluster = build(&raw, base_dir, opts, agent_unset, &mut report);
    // Strict turns any warning into a failure.
    let failed = report.error_count() > 0;
    let diagnostics = report.into_diagnostics();
    let refused = failed || (opts.strict && !diagnostics.is_empty());
    match cluster {
        Some(cluster) if !refused => Ok(Checked {
            loaded: Loaded {
                cluster,
                warnings: diagnostics,
            },
            agent_unset,
        }),
        _ => Err(diagnostics),
    }
}

/// Reads and loads a profile file; relative agent paths resolve against the file's directory.
pub fn load_file(path: &Path, opts: &LoadOptions) -> Result<Loaded, Diagnostics> {
    read_with(path, opts, AgentRule::Required).map(|c| c.loaded)
}

/// Reads and checks a profile file as [`check`] does (`molten validate`).
pub fn check_file(path: &Path, opts: &LoadOptions) -> Result<Checked, Diagnostics> {
    read_with(path, opts, AgentRule::MayBeUnset)
}

fn read_with(path: &Path, opts: &LoadOptions, rule: AgentRule) -> Result<Checked, Diagnostics> {
    let origin = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) => {
            let mut report = Report::new(&origin, "");
            report.error(
                &At::new("$", (0, 0)),
                format!("cannot read the profile: {err}"),
            );
            return Err(report.into_diagnostics());
        }
    };
    let base_dir = path.parent().unwrap_or(Path::new("."));
    load_with(&origin, &text, base_dir, opts, rule)
}

/// The JSON schema of profile v1 (`molten schema`), generated from the raw types.
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(raw::RawProfile);
    serde_json::to_value(schema).expect("a schema is JSON")
}

/// Applies every rule; `None` when some value could not be built (an error says why). With
/// `agent_unset` the agent is not looked for and the cluster gets [`placeholder_agent`].
fn build(
    raw: &raw::RawProfile,
    base_dir: &Path,
    opts: &LoadOptions,
    agent_unset: bool,
    report: &mut Report,
) -> Option<Cluster> {
    let name = settings::name(raw, report);
    let os = settings::os(raw);
    let ssh_authorized_keys = settings::ssh_keys(raw, report);
    let (etcd, [client, peer]) = settings::etcd(raw, os, report);
    let flannel = settings::flannel(raw, os, report);
    let (docker, tls) = settings::docker(raw, &flannel, report);
    settings::distinct_ports(
        &[
            ("etcd.client_port", &client),
            ("etcd.peer_port", &peer),
            ("docker.tls_port", &tls),
        ],
        report,
    );
    let bosh = settings::bosh(raw, report);
    let agent = if agent_unset {
        Some(placeholder_agent())
    } else {
        agent::agent(raw, base_dir, opts.agent_override, opts.platform, report)
    };

    let sections = raw.platforms.as_deref();
    let packet = sections
        .and_then(|p| p.packet.as_deref())
        .map(|p| platforms::packet(p, report));
    let (vagrant, host_at) = platforms::vagrant(
        sections.and_then(|p| p.vagrant.as_deref()),
        flannel.flannel.as_ref(),
        docker.as_ref(),
        report,
    );
    let ipxe = sections
        .and_then(|p| p.ipxe.as_deref())
        .map(|i| platforms::ipxe(i, base_dir, report));

    let expanded = nodes::expand(raw, report);
    nodes::check_all(
        raw,
        (&expanded.0, expanded.1),
        flannel.flannel.as_ref(),
        docker.as_ref(),
        report,
    );
    if let Some(rules) = opts.platform {
        let mut check = TargetCheck {
            raw,
            drafts: &expanded.0,
            packet: packet.as_ref(),
            ipxe: ipxe.as_ref(),
            vagrant: &vagrant,
            vagrant_host_at: host_at.as_ref(),
            local_agent_at: agent::local_origin(raw, opts.agent_override, agent.as_ref()),
            report,
        };
        rules.check_profile(&mut check);
    }
    let mut nodes: Vec<model::Node> = expanded.0.into_iter().map(|d| d.node).collect();
    if opts
        .platform
        .is_some_and(|rules| rules.assigns_addresses_at_boot())
    {
        for node in &mut nodes {
            node.ip = None;
        }
    }
    Some(Cluster {
        name,
        os,
        ssh_authorized_keys,
        etcd,
        flannel: flannel.flannel?,
        docker: docker?,
        agent: agent?,
        bosh,
        nodes,
        packet,
        vagrant,
        ipxe,
    })
}
