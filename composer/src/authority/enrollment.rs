//! `enrollment.json`: the authority's own record of every node it may sign for — the names the
//! profile gives it (copied at compose time, so serve never trusts a request's names), the hash
//! of its current token, when that token expires and whether it was used.
//!
//! The checks here are pure functions of the state and the request, so they are unit-tested
//! without a server; the caller holds the directory lock around read → check → mark → write.

use std::collections::BTreeMap;

use molten_contract::trust::{NodeTlsIdentity, RefusalKind};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::tokens::token_matches;

/// The format version of `enrollment.json`.
pub const STATE_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollmentState {
    pub version: u32,
    pub cluster: String,
    /// Names and addresses nodes dial `molten serve`'s HTTPS listener by (the hosts of every
    /// `authority_url` composed): serve's certificate carries them.
    #[serde(default)]
    pub serve_names: Vec<String>,
    pub nodes: BTreeMap<String, NodeRecord>,
    /// Enrolled nodes whose credentials were revoked (`molten authority revoke`, or dropped from
    /// the profile): never signed for again until readmitted, and members delete their etcd
    /// users. The generation is kept so a readmitted node never gets an old token back.
    #[serde(default)]
    pub revoked: BTreeMap<String, Revocation>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    /// RFC 3339.
    pub at: String,
    pub reason: String,
    /// The generation of the node's last token.
    pub generation: u64,
    /// `molten authority readmit`: the next compose gives the node a new record and token.
    #[serde(default)]
    pub readmitted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeRecord {
    /// Bumped by compose once the current token was used: a reprovisioned node gets a new one.
    pub generation: u64,
    /// Hex sha256 of the current token.
    pub token_sha256: String,
    /// RFC 3339: the current token is refused after this.
    pub not_after: String,
    /// RFC 3339 and peer address of the current token's use, or null.
    pub used_at: Option<String>,
    pub used_from: Option<String>,
    /// When the node first enrolled (any generation): it may renew and is on the roster.
    pub enrolled_at: Option<String>,
    /// The node runs an etcd member (may hold peer, server and admin certificates).
    pub member: bool,
    /// What the authority signs for this node.
    pub identity: NodeTlsIdentity,
}

/// A refusal with the reason the serve log and the node see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub kind: RefusalKind,
    pub message: String,
}

impl Refused {
    pub fn new(kind: RefusalKind, message: impl Into<String>) -> Refused {
        Refused {
            kind,
            message: message.into(),
        }
    }
}

pub fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).expect("a UTC time formats as RFC 3339")
}

pub fn parse_rfc3339(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

impl EnrollmentState {
    pub fn new(cluster: &str) -> EnrollmentState {
        EnrollmentState {
            version: STATE_VERSION,
            cluster: cluster.to_string(),
            serve_names: Vec::new(),
            nodes: BTreeMap::new(),
            revoked: BTreeMap::new(),
        }
    }

    /// Revokes `node`'s credentials: its record goes, so nothing is signed for it any more, and
    /// the roster names it revoked. Fails for a node the authority has no record of.
    pub fn revoke(&mut self, node: &str, reason: &str, now: OffsetDateTime) -> anyhow::Result<()> {
        let Some(record) = self.nodes.remove(node) else {
            anyhow::bail!("the authority has no node {node:?} to revoke");
        };
        self.revoked.insert(
            node.to_string(),
            Revocation {
                at: rfc3339(now),
                reason: reason.to_string(),
                generation: record.generation,
                readmitted: false,
            },
        );
        Ok(())
    }

    /// Lets the next compose provision a revoked node again (with a new token).
    pub fn readmit(&mut self, node: &str) -> anyhow::Result<()> {
        match self.revoked.get_mut(node) {
            Some(revocation) => {
                revocation.readmitted = true;
                Ok(())
            }
            None => anyhow::bail!("node {node:?} is not revoked"),
        }
    }

    /// The refusal for a node without a record: revoked (and why), or unknown.
    fn missing(&self, node: &str) -> Refused {
        match self.revoked.get(node) {
            Some(revocation) => Refused::new(
                RefusalKind::NodeRevoked,
                format!(
                    "node {node} was revoked at {}: {}",
                    revocation.at, revocation.reason
                ),
            ),
            None => Refused::new(
                RefusalKind::UnknownNode,
                format!("no node {node:?} in cluster {}", self.cluster),
            ),
        }
    }

    pub fn from_json(text: &str) -> anyhow::Result<EnrollmentState> {
        let state: EnrollmentState = serde_json::from_str(text)?;
        if state.version != STATE_VERSION {
            anyhow::bail!(
                "version {} (this molten reads {STATE_VERSION})",
                state.version
            );
        }
        Ok(state)
    }

    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("the state serializes");
        text.push('\n');
        text
    }

    /// Checks a first enrollment: the node is known, the token is its current one, unused and
    /// not expired. A reused token is reported before an expired one: it is the louder news.
    pub fn check_token(
        &self,
        node: &str,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<&NodeRecord, Refused> {
        let record = self.nodes.get(node).ok_or_else(|| self.missing(node))?;
        if !token_matches(token, &record.token_sha256) {
            return Err(Refused::new(
                RefusalKind::TokenInvalid,
                format!(
                    "the token is not node {node}'s current one (generation {})",
                    record.generation
                ),
            ));
        }
        if let Some(used_at) = &record.used_at {
            return Err(Refused::new(
                RefusalKind::TokenReused,
                format!(
                    "node {node}'s token (generation {}) was already used at {used_at} from {}",
                    record.generation,
                    record.used_from.as_deref().unwrap_or("?")
                ),
            ));
        }
        let expired = parse_rfc3339(&record.not_after).is_none_or(|not_after| now > not_after);
        if expired {
            return Err(Refused::new(
                RefusalKind::TokenExpired,
                format!(
                    "node {node}'s token expired at {}; compose again for a fresh one",
                    record.not_after
                ),
            ));
        }
        Ok(record)
    }

    /// Marks `node`'s current token used (and the node enrolled). Call only after
    /// [`EnrollmentState::check_token`] accepted it, under the lock.
    pub fn mark_used(&mut self, node: &str, now: OffsetDateTime, from: &str) {
        if let Some(record) = self.nodes.get_mut(node) {
            let at = rfc3339(now);
            record.used_at = Some(at.clone());
            record.used_from = Some(from.to_string());
            record.enrolled_at.get_or_insert(at);
        }
    }

    /// A renewal: the node is known and has enrolled before.
    pub fn check_renewal(&self, node: &str) -> Result<&NodeRecord, Refused> {
        let record = self.nodes.get(node).ok_or_else(|| self.missing(node))?;
        if record.enrolled_at.is_none() {
            return Err(Refused::new(
                RefusalKind::NotAuthenticated,
                format!("node {node} has not enrolled yet"),
            ));
        }
        Ok(record)
    }

    /// The enrolled nodes, sorted.
    pub fn roster(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|(_, record)| record.enrolled_at.is_some())
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The revoked nodes, sorted.
    pub fn revoked_nodes(&self) -> Vec<String> {
        self.revoked.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authority::tokens::token_hash;
    use time::Duration;

    fn record(token: &str, not_after: OffsetDateTime) -> NodeRecord {
        NodeRecord {
            generation: 1,
            token_sha256: token_hash(token),
            not_after: rfc3339(not_after),
            used_at: None,
            used_from: None,
            enrolled_at: None,
            member: true,
            identity: NodeTlsIdentity {
                etcd_peer_sans: vec![],
                etcd_server_sans: vec![],
                etcd_client_cn: "n0".into(),
                docker_server_sans: vec![],
            },
        }
    }

    fn state(now: OffsetDateTime) -> EnrollmentState {
        let mut state = EnrollmentState::new("dev");
        state
            .nodes
            .insert("n0".into(), record("tok", now + Duration::hours(1)));
        state
    }

    #[test]
    fn a_token_works_once() {
        let now = OffsetDateTime::now_utc();
        let mut state = state(now);
        assert!(state.check_token("n0", "tok", now).is_ok());
        assert!(state.roster().is_empty());
        state.mark_used("n0", now, "10.0.0.10:5555");
        let refused = state.check_token("n0", "tok", now).unwrap_err();
        assert_eq!(refused.kind, RefusalKind::TokenReused);
        assert!(
            refused.message.contains("from 10.0.0.10:5555"),
            "{refused:?}"
        );
        assert_eq!(state.roster(), ["n0"]);
        assert!(state.check_renewal("n0").is_ok());
    }

    #[test]
    fn refusals_name_their_reason() {
        let now = OffsetDateTime::now_utc();
        let state = state(now);
        let kind = |node, token, at| state.check_token(node, token, at).unwrap_err().kind;
        assert_eq!(kind("n9", "tok", now), RefusalKind::UnknownNode);
        assert_eq!(kind("n0", "other", now), RefusalKind::TokenInvalid);
        assert_eq!(
            kind("n0", "tok", now + Duration::hours(2)),
            RefusalKind::TokenExpired
        );
        assert_eq!(
            state.check_renewal("n0").unwrap_err().kind,
            RefusalKind::NotAuthenticated
        );
    }

    #[test]
    fn the_file_round_trips_and_checks_its_version() {
        let now = OffsetDateTime::now_utc();
        let state = state(now);
        let text = state.to_json();
        assert_eq!(EnrollmentState::from_json(&text).unwrap(), state);
        let other = text.replace("\"version\": 1", "\"version\": 9");
        let err = EnrollmentState::from_json(&other).unwrap_err().to_string();
        assert_eq!(err, "version 9 (this molten reads 1)");
    }
}
