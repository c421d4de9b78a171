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
#[cfg(test)]
use molten_contract::trust::RefusalKind;

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
        if let Some(revocation) = state.revoked.get(&node.name) {
            if !revocation.readmitted {
                bail!(
                    "node {} was revoked at {} ({}): remove it from the profile, or run `molten \
                     authority readmit --node {}` to provision it again",
                    node.name,
                    revocation.at,
                    revocation.reason,
                    node.name
                );
            }
        }
        let previous = state.nodes.remove(&node.name);
        let (generation, enrolled_at) = match (&previous, state.revoked.remove(&node.name)) {
            (Some(old), _) if old.used_at.is_some() => {
                (old.generation + 1, old.enrolled_at.clone())
            }
            (Some(old), _) => (old.generation, old.enrolled_at.clone()),
            // Readmitted: a generation never used before, so no old token works again.
            (None, Some(revocation)) => (revocation.generation + 1, None),
            (None, None) => (1, None),
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
    // Enrolled nodes that left the profile are revoked: their certificates stop renewing and
    // the members delete their etcd users. (A node that never enrolled just goes.)
    let left: Vec<String> = state
        .nodes
        .iter()
        .filter(|(_, record)| record.enrolled_at.is_some())
        .map(|(name, _)| name.clone())
        .collect();
    for name in left {
        state.revoke(&name, "removed from the profile", now)?;
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

    #[test]
    fn revoked_nodes_stay_out_until_readmitted_and_never_get_an_old_token() {
        let tmp = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let authority = Authority::init(&tmp.path().join("a"), "dev", now).unwrap();
        let nodes = [node("n0"), node("n1")];
        let first = register_nodes(&authority, "dev", &nodes, &[], now, DEFAULT_TOKEN_TTL).unwrap();
        let mut state = authority.read_state().unwrap();
        state.mark_used("n0", now, "10.0.0.10:1");
        state.mark_used("n1", now, "10.0.0.11:1");
        state.revoke("n1", "stolen", now).unwrap();
        authority.write_state(&state).unwrap();
        let state = authority.read_state().unwrap();
        assert_eq!(state.roster(), ["n0"]);
        assert_eq!(state.revoked_nodes(), ["n1"]);
        let refused = state.check_renewal("n1").unwrap_err();
        assert_eq!(refused.kind, RefusalKind::NodeRevoked);
        assert!(refused.message.contains("stolen"), "{}", refused.message);

        // Composing with n1 still in the profile is refused, naming the way back.
        let err = register_nodes(&authority, "dev", &nodes, &[], now, DEFAULT_TOKEN_TTL)
            .unwrap_err()
            .to_string();
        assert!(err.contains("readmit --node n1"), "{err}");

        // Dropping n0 from the profile revokes it too (it had enrolled).
        register_nodes(&authority, "dev", &[], &[], now, DEFAULT_TOKEN_TTL).unwrap();
        let state = authority.read_state().unwrap();
        assert_eq!(state.revoked_nodes(), ["n0", "n1"]);
        assert_eq!(state.revoked["n0"].reason, "removed from the profile");

        // Readmitted, n1 gets a generation it never had: its old token stays dead.
        let mut state = authority.read_state().unwrap();
        state.readmit("n1").unwrap();
        authority.write_state(&state).unwrap();
        let again =
            register_nodes(&authority, "dev", &nodes[1..], &[], now, DEFAULT_TOKEN_TTL).unwrap();
        assert_ne!(again["n1"], first["n1"]);
        let mut state = authority.read_state().unwrap();
        assert_eq!(state.nodes["n1"].generation, 2);
        assert_eq!(state.revoked_nodes(), ["n0"]);
        assert!(state.readmit("n9").is_err());
    }
}
