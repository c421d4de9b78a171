//! What compose records in the authority: every node of the profile with the names it may get
//! and its current token. A node keeps its token (and generation) across composes until the
//! token is used, so composing twice writes identical bundles; once used, the next compose
//! gives it a new generation, because a reprovisioned node must not need a burnt token.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use molten_contract::trust::NodeTlsIdentity;
use time::{Duration, OffsetDateTime};

use super::enrollment::{rfc3339, NodeRecord};
use super::tokens::token_hash;
use super::Authority;

/// Tokens are refused this long after the compose that wrote them, unless `--token-ttl` says
/// otherwise.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::hours(24);

/// One node as compose describes it to the authority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEnrollment {
    pub name: String,
    pub member: bool,
    pub identity: NodeTlsIdentity,
}

/// Records `nodes` (replacing the records of nodes no longer in the profile) and the names
/// nodes dial serve by; returns each node's current token.
pub fn register_nodes(
    authority: &Authority,
    cluster: &str,
    nodes: &[NodeEnrollment],
    serve_names: &[String],
    now: OffsetDateTime,
    token_ttl: Duration,
) -> Result<BTreeMap<String, String>> {
    let key = authority.token_key()?;
    let _lock = authority.lock()?;
    let mut state = authority.read_state()?;
    if state.cluster != cluster {
        bail!(
            "the authority in {} belongs to cluster {:?}, not {cluster:?}",
            authority.dir().display(),
            state.cluster
        );
    }
    let not_after = rfc3339(now + token_ttl);
    let mut records = BTreeMap::new();
    let mut tokens = BTreeMap::new();
    for node in nodes {
        let previous = state.nodes.remove(&node.name);
        let (generation, enrolled_at) = match &previous {
            Some(old) if old.used_at.is_some() => (old.generation + 1, old.enrolled_at.clone()),
            Some(old) => (old.generation, old.enrolled_at.clone()),
            None => (1, None),
        };
        let token = key.token(cluster, &node.name, generation);
        records.insert(
            node.name.clone(),
            NodeRecord {
                generation,
                token_sha256: token_hash(&token),
                not_after: not_after.clone(),
                used_at: None,
                used_from: None,
                enrolled_at,
                member: node.member,
                identity: node.identity.clone(),
            },
        );
        tokens.insert(node.name.clone(), token);
    }
    state.nodes = records;
    for name in serve_names {
        if !state.serve_names.contains(name) {
            state.serve_names.push(name.clone());
        }
    }
    authority.write_state(&state)?;
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> NodeEnrollment {
        NodeEnrollment {
            name: name.into(),
            member: true,
            identity: NodeTlsIdentity {
                etcd_peer_sans: vec![],
                etcd_server_sans: vec![],
                etcd_client_cn: name.into(),
                docker_server_sans: vec![],
            },
        }
    }

    #[test]
    fn tokens_are_stable_until_used() {
        let tmp = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let authority = Authority::init(&tmp.path().join("a"), "dev", now).unwrap();
        let nodes = [node("n0"), node("n1")];
        let names = ["10.0.0.1".to_string()];
        let first =
            register_nodes(&authority, "dev", &nodes, &names, now, DEFAULT_TOKEN_TTL).unwrap();
        let again =
            register_nodes(&authority, "dev", &nodes, &names, now, DEFAULT_TOKEN_TTL).unwrap();
        assert_eq!(first, again, "reproducible");

        let mut state = authority.read_state().unwrap();
        state.mark_used("n0", now, "10.0.0.10:1");
        authority.write_state(&state).unwrap();
        let after = register_nodes(
            &authority,
            "dev",
            &nodes[..1],
            &names,
            now,
            DEFAULT_TOKEN_TTL,
        )
        .unwrap();
        assert_ne!(after["n0"], first["n0"], "a used token is replaced");
        let state = authority.read_state().unwrap();
        assert_eq!(state.nodes["n0"].generation, 2);
        assert!(state.nodes["n0"].enrolled_at.is_some(), "still enrolled");
        assert!(state.nodes["n0"].used_at.is_none());
        assert!(!state.nodes.contains_key("n1"), "gone from the profile");
        assert_eq!(state.serve_names, ["10.0.0.1"]);

        let err =
            register_nodes(&authority, "rack", &nodes, &names, now, DEFAULT_TOKEN_TTL).unwrap_err();
        assert!(
            err.to_string().contains("belongs to cluster \"dev\""),
            "{err}"
        );
    }
}
