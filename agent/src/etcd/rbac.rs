//! etcd access control, set up by members with their etcd-admin (CN=root) identity: one user and
//! one role per node, then `auth enable`. Every call is idempotent, so every member runs it at
//! every converge; nodes enrolled later get their role at the members' next converge.
//!
//! A node's role lets it write its own record and status (exact keys) and flannel's leases,
//! and read the rest of `/molten/` and flannel's network config: nothing else.

use anyhow::{Context, Result};
use etcd_client::{Client, Permission, UserAddOptions};
use molten_contract::keys;

/// The etcd user (and role) with every permission: members' etcd-admin certificates.
pub const ROOT: &str = "root";
/// flannel's keys (the default `--etcd-prefix`).
pub const FLANNEL_SUBNETS: &str = "/coreos.com/network/subnets/";
pub const FLANNEL_CONFIG: &str = "/coreos.com/network/config";

/// What a bootstrap changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bootstrap {
    /// Users (and their roles) created by this run.
    pub created: Vec<String>,
    /// Names that were refused as etcd users (not valid node names).
    pub refused: Vec<String>,
}

/// Whether `name` can be an etcd user for a node: a node name (lowercase letters, digits and
/// dashes, at most 63) and never `root`. The roster comes from the network: check before use.
pub fn valid_user(name: &str) -> bool {
    name != ROOT
        && (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// The permissions of node `name`'s role.
pub fn node_permissions(name: &str) -> Vec<Permission> {
    vec![
        Permission::read_write(keys::node_record(name)),
        Permission::read_write(keys::node_status(name)),
        Permission::read(format!("{}/", keys::ROOT)).with_prefix(),
        Permission::read_write(FLANNEL_SUBNETS).with_prefix(),
        Permission::read(FLANNEL_CONFIG),
    ]
}

/// Creates the root user and a user and role for each of `nodes` that lacks one, grants the
/// permissions (again: grants are idempotent and repair drift), then enables authentication.
/// `client` must be connected as root (or to an etcd without authentication yet).
pub async fn bootstrap(client: &mut Client, nodes: &[String]) -> Result<Bootstrap> {
    let mut out = Bootstrap::default();
    let (users, roles) = users_and_roles(client).await?;
    let mut wanted = vec![ROOT.to_string()];
    for node in nodes {
        if !valid_user(node) {
            out.refused.push(node.clone());
        } else if !wanted.contains(node) {
            wanted.push(node.clone());
        }
    }
    for name in &wanted {
        // Members boot together and race here: another member creating the same user or
        // role first is success, not failure.
        let new_user = !users.contains(name)
            && created_or_exists(
                client
                    .user_add(name.as_str(), "", Some(UserAddOptions::new().with_no_pwd()))
                    .await,
            )
            .with_context(|| format!("etcd user add {name}"))?;
        if new_user {
            out.created.push(name.clone());
        }
        let new_role = !roles.contains(name)
            && created_or_exists(client.role_add(name.as_str()).await)
                .with_context(|| format!("etcd role add {name}"))?;
        // Grants are repeated only when the role's permissions drifted (a warm converge
        // makes two reads per node, not seven writes).
        if name != ROOT && (new_role || !permissions_match(client, name).await?) {
            for permission in node_permissions(name) {
                client
                    .role_grant_permission(name.as_str(), permission)
                    .await
                    .with_context(|| format!("etcd role grant-permission {name}"))?;
            }
        }
        let has_role = !new_user
            && client
                .user_get(name.as_str())
                .await
                .with_context(|| format!("etcd user get {name}"))?
                .roles()
                .contains(name);
        if !has_role {
            client
                .user_grant_role(name.as_str(), name.as_str())
                .await
                .with_context(|| format!("etcd user grant-role {name} {name}"))?;
        }
    }
    // etcd ignores `auth enable` when it is on already (3.4 has no call to ask first).
    client.auth_enable().await.context("etcd auth enable")?;
    Ok(out)
}

/// Deletes the etcd user and role of every revoked node that still has one (the authority's
/// roster names them: `molten authority revoke`, or dropped from the profile). A node's
/// certificate stays valid TLS-wise until it expires, but etcd maps its CN to a user: with the
/// user gone, every request it makes is refused. Returns the names removed.
pub async fn revoke(client: &mut Client, revoked: &[String]) -> Result<Vec<String>> {
    let (users, roles) = users_and_roles(client).await?;
    let mut removed = Vec::new();
    for name in revoked.iter().filter(|n| valid_user(n)) {
        if users.contains(name) {
            gone_or_deleted(client.user_delete(name.as_str()).await)
                .with_context(|| format!("etcd user delete {name}"))?;
            removed.push(name.clone());
        }
        if roles.contains(name) {
            gone_or_deleted(client.role_delete(name.as_str()).await)
                .with_context(|| format!("etcd role delete {name}"))?;
        }
    }
    Ok(removed)
}

async fn users_and_roles(client: &mut Client) -> Result<(Vec<String>, Vec<String>)> {
    let users = client
        .user_list()
        .await
        .context("etcd user list")?
        .users()
        .to_vec();
    let roles = client
        .role_list()
        .await
        .context("etcd role list")?
        .roles()
        .to_vec();
    Ok((users, roles))
}

/// Another member deleting it first is success.
fn gone_or_deleted<T>(result: Result<T, etcd_client::Error>) -> Result<()> {
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.to_string().contains("not found") => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// `Ok(true)` when the call created the user or role, `Ok(false)` when it existed already.
fn created_or_exists<T>(result: Result<T, etcd_client::Error>) -> Result<bool> {
    match result {
        Ok(_) => Ok(true),
        Err(e) if e.to_string().contains("already exists") => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Whether role `name` holds exactly the permissions of [`node_permissions`] (type and key;
/// etcd stores prefixes as ranges).
async fn permissions_match(client: &mut Client, name: &str) -> Result<bool> {
    let have: std::collections::BTreeSet<(i32, Vec<u8>)> = client
        .role_get(name)
        .await
        .with_context(|| format!("etcd role get {name}"))?
        .permissions()
        .iter()
        .map(|p| (p.get_type(), p.key().to_vec()))
        .collect();
    let want: std::collections::BTreeSet<(i32, Vec<u8>)> = node_permissions(name)
        .iter()
        .map(|p| (p.get_type(), p.key().to_vec()))
        .collect();
    Ok(have == want)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_only() {
        for ok in ["node-a", "core-01", "n0"] {
            assert!(valid_user(ok), "{ok}");
        }
        for bad in [
            "root",
            "",
            "-a",
            "a-",
            "Node",
            "a/b",
            "a b",
            &"x".repeat(64),
        ] {
            assert!(!valid_user(bad), "{bad}");
        }
    }

    #[test]
    fn a_node_writes_only_its_own_keys() {
        let perms = node_permissions("node-a");
        let writable: Vec<String> = perms
            .iter()
            .filter(|p| p.get_type() == etcd_client::PermissionType::Readwrite as i32)
            .map(|p| p.key_str().unwrap().to_string())
            .collect();
        assert_eq!(
            writable,
            vec![
                "/molten/nodes/node-a",
                "/molten/status/node-a",
                "/coreos.com/network/subnets/"
            ]
        );
    }
}
