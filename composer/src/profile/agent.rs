//! Where nodes get `mc`: a local file the composer hashes, or a URL with a given sha512.

use std::io;
use std::path::{Path, PathBuf};

use super::raw::RawProfile;
use super::report::{At, Report};
use super::target::TargetRules;
use super::values;
use crate::digest;
use crate::model::Agent;

pub(crate) fn agent(
    raw: &RawProfile,
    base_dir: &Path,
    agent_override: Option<&Path>,
    target: Option<&dyn TargetRules>,
    report: &mut Report,
) -> Option<Agent> {
    if let Some(path) = agent_override {
        // The command line wins over the profile's agent section.
        let at = At::new("--agent", (0, 0));
        return local(path, path, None, &at, report);
    }
    let Some(section) = raw.agent.as_ref() else {
        let message = match target.filter(|t| !t.serves_files()) {
            Some(t) => format!(
                "no agent: {} nodes download it, so set agent.url + agent.sha512",
                t.name()
            ),
            None => {
                "no agent: set agent.path or agent.url + agent.sha512, or pass --agent PATH".into()
            }
        };
        report.error(&At::new("$.agent", (0, 0)), message);
        return None;
    };
    let section_at = At::of("$.agent", section);
    let sha512 = section.sha512.as_ref().and_then(|sum| {
        values::sha512_hex(sum)
            .map_err(|m| report.error(&At::of("$.agent.sha512", sum), m))
            .ok()
            .map(|hex| (hex, At::of("$.agent.sha512", sum)))
    });
    let sha_failed = section.sha512.is_some() && sha512.is_none();
    match (section.path.as_ref(), section.url.as_ref()) {
        (Some(_), Some(url)) => {
            report.error(
                &At::of("$.agent.url", url),
                "give either agent.path or agent.url, not both",
            );
            None
        }
        (None, None) => {
            report.error(
                &section_at,
                "agent needs `path` (a local file) or `url` + `sha512`",
            );
            None
        }
        (Some(path), None) => {
            let at = At::of("$.agent.path", path);
            let written = Path::new(path.as_str());
            let resolved = base_dir.join(written);
            if sha_failed {
                return None;
            }
            local(written, &resolved, sha512, &at, report)
        }
        (None, Some(url)) => {
            let at = At::of("$.agent.url", url);
            if let Err(message) = values::http_url(url) {
                report.error(&at, message);
                return None;
            }
            match sha512 {
                Some((sha512, _)) => Some(Agent::Url {
                    url: url.to_string(),
                    sha512,
                }),
                None if sha_failed => None,
                None => {
                    report.error(
                        &at,
                        "agent.url needs agent.sha512 so nodes can check the download",
                    );
                    None
                }
            }
        }
    }
}

/// Whether no agent is named at all: no `agent` section and no `--agent`.
pub(crate) fn unset(raw: &RawProfile, agent_override: Option<&Path>) -> bool {
    raw.agent.is_none() && agent_override.is_none()
}

/// Where a local agent binary was named (`--agent` or `$.agent.path`), for platforms that cannot
/// serve one; `None` when the agent is a URL or invalid.
pub(crate) fn local_origin(
    raw: &RawProfile,
    agent_override: Option<&Path>,
    agent: Option<&Agent>,
) -> Option<At> {
    if !matches!(agent, Some(Agent::Local { .. })) {
        return None;
    }
    if agent_override.is_some() {
        return Some(At::new("--agent", (0, 0)));
    }
    let path = raw.agent.as_ref()?.path.as_ref()?;
    Some(At::of("$.agent.path", path))
}

/// Hashes the file at `resolved`; messages show the path as the user wrote it.
fn local(
    written: &Path,
    resolved: &Path,
    expected: Option<(String, At)>,
    at: &At,
    report: &mut Report,
) -> Option<Agent> {
    let (sha512, size) = match hash_file(resolved) {
        Ok(found) => found,
        Err(err) => {
            let relative = if written.is_relative() && written != resolved {
                " (relative to the profile's directory)"
            } else {
                ""
            };
            report.error(
                at,
                format!(
                    "cannot read the agent binary `{}`{relative}: {err}",
                    written.display()
                ),
            );
            return None;
        }
    };
    if let Some((expected, sha_at)) = expected {
        if expected != sha512 {
            report.error(
                &sha_at,
                format!(
                    "agent.sha512 does not match `{}`, which hashes to {sha512}",
                    written.display()
                ),
            );
            return None;
        }
    }
    Some(Agent::Local {
        path: PathBuf::from(resolved),
        sha512,
        size,
    })
}

/// `(sha512, size)` of a regular file (a directory opens, but is no agent).
fn hash_file(path: &Path) -> io::Result<(String, u64)> {
    if std::fs::metadata(path)?.is_dir() {
        return Err(io::Error::other("it is a directory"));
    }
    digest::sha512_file(path)
}

/// The sha512 of a file, as the composer records it (lowercase hex).
pub fn sha512_of(path: &Path) -> io::Result<String> {
    hash_file(path).map(|(sum, _)| sum)
}
