//! Trust: what the composer tells a node about its cluster authority ([`TrustSettings`], the
//! `trust` section of node.json) and the enrollment protocol between `mc enroll` and the authority
//! that `molten serve --authority` runs (JSON over HTTPS, the node pinning `authority_ca`).
//!
//! Everything here is public: certificates, names, addresses. The node's one secret, its
//! single-use enrollment token, is a separate file ([`ENROLL_TOKEN_PATH`]), never in node.json.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// `POST`: first enrollment, authenticated by the node's token.
pub const ENROLL_PATH: &str = "/v1/enroll";
/// `POST` over mTLS with the node's current `etcd-client` certificate: new certificates, same names.
pub const RENEW_PATH: &str = "/v1/renew";
/// `GET` over mTLS with any valid `etcd-client` certificate: the enrolled nodes ([`Roster`]).
pub const ROSTER_PATH: &str = "/v1/roster";

/// The node's enrollment token (mode 0600), written by Ignition; the only secret a node is given.
pub const ENROLL_TOKEN_PATH: &str = "/etc/molten/enroll-token";
/// Where the node keeps its persistent state (identity, etcd data where the platform has a disk).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/molten";
/// Under the state dir (mode 0700): `<kind>.pem` and `<kind>.key` (0600) per [`CertificateKind`].
pub const IDENTITY_SUBDIR: &str = "identity";
/// The trust roots the node installs for etcd/flanneld and for dockerd (under the OS layout's
/// `tls_dir`, `/etc/molten/tls`).
pub const ETCD_CA_FILE: &str = "etcd-ca.pem";
pub const DOCKER_CA_FILE: &str = "docker-ca.pem";

/// The etcd user of the operator/admin certificate (`etcd-admin` kind, members only).
pub const ETCD_ROOT_USER: &str = "root";

/// Upper bound of an enrollment/renewal request body; the server refuses larger ones.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Upper bound of one CSR PEM inside a request.
pub const MAX_CSR_PEM_BYTES: usize = 8 * 1024;

/// The `trust` section of node.json.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustSettings {
    /// `https://<serve address>:<port>`: enrollment and renewal.
    pub authority_url: String,
    /// PEM of the authority CA: the only root `mc` trusts for `authority_url`.
    pub authority_ca: String,
    /// PEM of the CA that issues every etcd certificate (peer, server, client, admin).
    pub etcd_ca: String,
    /// PEM of the CA that issues dockerd server certificates and Docker client certificates.
    pub docker_ca: String,
    /// Exactly what the authority signs for this node, whatever its CSRs ask for.
    pub identity: NodeTlsIdentity,
    /// Every node name in the profile: etcd members create an etcd user and role for each.
    pub roster: Vec<String>,
    /// Persistent state directory ([`DEFAULT_STATE_DIR`]); the identity is under
    /// [`IDENTITY_SUBDIR`] there.
    pub state_dir: String,
}

/// The names the authority puts into each of a node's certificates. Empty SAN lists for kinds the
/// node does not get (a worker has no etcd peer or server certificate).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeTlsIdentity {
    pub etcd_peer_sans: Vec<SubjectAltName>,
    pub etcd_server_sans: Vec<SubjectAltName>,
    /// The CN of the node's etcd client certificate, which is its etcd user: the node's name.
    pub etcd_client_cn: String,
    pub docker_server_sans: Vec<SubjectAltName>,
}

/// One subject alternative name, JSON `{"ip": "10.0.0.10"}`, `{"dns": "core-01"}` or
/// `{"boot-address": {"within": "10.0.0.0/8"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum SubjectAltName {
    Ip(IpAddr),
    Dns(String),
    /// The node's private address, known only at boot (packet): the authority signs the
    /// `private_ip` the request states, only when it lies inside `within`.
    BootAddress {
        within: Ipv4Net,
    },
}

impl SubjectAltName {
    /// The concrete SAN for a node whose boot-time private address is `private_ip`; `None` when a
    /// boot address is needed but missing or outside its network.
    pub fn resolve(&self, private_ip: Option<Ipv4Addr>) -> Option<ResolvedSan> {
        match self {
            SubjectAltName::Ip(ip) => Some(ResolvedSan::Ip(*ip)),
            SubjectAltName::Dns(name) => Some(ResolvedSan::Dns(name.clone())),
            SubjectAltName::BootAddress { within } => private_ip
                .filter(|ip| within.contains(ip))
                .map(|ip| ResolvedSan::Ip(IpAddr::V4(ip))),
        }
    }
}

/// A SAN as it goes into a certificate.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum ResolvedSan {
    Ip(IpAddr),
    Dns(String),
}

/// The certificates a node can hold. Keys are generated on the node and never leave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CertificateKind {
    /// etcd peer certificate (server and client auth), members only.
    EtcdPeer,
    /// etcd client-facing server certificate, members only.
    EtcdServer,
    /// etcd client certificate, CN = the node's name (its etcd user); also authenticates renewal.
    EtcdClient,
    /// etcd client certificate with CN = [`ETCD_ROOT_USER`], members only: creates users/roles
    /// and enables auth at cluster birth.
    EtcdAdmin,
    /// dockerd's TLS server certificate, issued by the Docker CA.
    DockerServer,
}

impl CertificateKind {
    pub const ALL: [CertificateKind; 5] = [
        CertificateKind::EtcdPeer,
        CertificateKind::EtcdServer,
        CertificateKind::EtcdClient,
        CertificateKind::EtcdAdmin,
        CertificateKind::DockerServer,
    ];

    /// The kebab-case wire name, also the file stem under the identity dir.
    pub fn name(self) -> &'static str {
        match self {
            CertificateKind::EtcdPeer => "etcd-peer",
            CertificateKind::EtcdServer => "etcd-server",
            CertificateKind::EtcdClient => "etcd-client",
            CertificateKind::EtcdAdmin => "etcd-admin",
            CertificateKind::DockerServer => "docker-server",
        }
    }

    /// Only etcd members get this kind.
    pub fn members_only(self) -> bool {
        matches!(
            self,
            CertificateKind::EtcdPeer | CertificateKind::EtcdServer | CertificateKind::EtcdAdmin
        )
    }

    /// Issued by the Docker CA (else the etcd CA).
    pub fn is_docker(self) -> bool {
        self == CertificateKind::DockerServer
    }

    /// The kinds a node with (`is_member`) or without the etcd role enrolls for.
    pub fn for_node(is_member: bool) -> Vec<CertificateKind> {
        Self::ALL
            .into_iter()
            .filter(|kind| is_member || !kind.members_only())
            .collect()
    }
}

impl fmt::Display for CertificateKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `POST /v1/enroll`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    pub node: String,
    /// The contents of [`ENROLL_TOKEN_PATH`] (trimmed).
    pub token: String,
    /// One CSR (PEM) per kind. The authority checks each CSR's self-signature and takes only its
    /// public key: subject and SANs come from the profile.
    pub requests: BTreeMap<CertificateKind, String>,
    /// The node's private address where the profile cannot know it (packet), for
    /// [`SubjectAltName::BootAddress`]; ignored otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_ip: Option<Ipv4Addr>,
}

/// `POST /v1/renew` (mTLS: the node's current `etcd-client` certificate names the node).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewRequest {
    pub node: String,
    pub requests: BTreeMap<CertificateKind, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_ip: Option<Ipv4Addr>,
}

/// 200 answer to enroll and renew.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollAnswer {
    /// One certificate (PEM) per requested kind.
    pub certificates: BTreeMap<CertificateKind, String>,
    /// When every certificate in this answer expires (RFC 3339, UTC).
    pub not_after: String,
}

/// `GET /v1/roster`: the enrolled nodes, and the nodes whose credentials the operator revoked
/// (members delete their etcd users), each sorted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Roster {
    pub nodes: Vec<String>,
    #[serde(default)]
    pub revoked: Vec<String>,
}

/// Any 4xx/5xx answer from the authority.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refusal {
    pub kind: RefusalKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefusalKind {
    /// The token was already used (a stolen copy of the node's Ignition, or a lost answer).
    TokenReused,
    TokenExpired,
    /// The token does not match the node's current one.
    TokenInvalid,
    /// The authority knows no node of that name.
    UnknownNode,
    /// Malformed JSON, a bad CSR, a kind this node may not hold, a missing boot address.
    BadRequest,
    /// Renewal/roster without a valid client certificate, or one that names another node.
    NotAuthenticated,
    /// The authority failed (its state could not be written); nothing was issued.
    Internal,
    /// The operator revoked the node (`molten authority revoke`, or it left the profile).
    NodeRevoked,
}

impl RefusalKind {
    pub fn name(self) -> &'static str {
        match self {
            RefusalKind::TokenReused => "token-reused",
            RefusalKind::TokenExpired => "token-expired",
            RefusalKind::TokenInvalid => "token-invalid",
            RefusalKind::UnknownNode => "unknown-node",
            RefusalKind::BadRequest => "bad-request",
            RefusalKind::NotAuthenticated => "not-authenticated",
            RefusalKind::Internal => "internal",
            RefusalKind::NodeRevoked => "node-revoked",
        }
    }

    /// The HTTP status the authority answers with.
    pub fn http_status(self) -> u16 {
        match self {
            RefusalKind::TokenReused => 409,
            RefusalKind::TokenExpired | RefusalKind::TokenInvalid | RefusalKind::NodeRevoked => 403,
            RefusalKind::UnknownNode => 404,
            RefusalKind::BadRequest => 400,
            RefusalKind::NotAuthenticated => 401,
            RefusalKind::Internal => 500,
        }
    }
}

impl fmt::Display for RefusalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_use_their_wire_names() {
        for kind in CertificateKind::ALL {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.name()));
        }
        assert_eq!(
            CertificateKind::for_node(false),
            [CertificateKind::EtcdClient, CertificateKind::DockerServer]
        );
        assert_eq!(CertificateKind::for_node(true).len(), 5);
    }

    #[test]
    fn enroll_request_wire_shape() {
        let text = r#"{"node":"core-01","token":"t","requests":{"etcd-client":"PEM"}}"#;
        let request: EnrollRequest = serde_json::from_str(text).unwrap();
        assert_eq!(request.requests[&CertificateKind::EtcdClient], "PEM");
        assert_eq!(request.private_ip, None);
        assert_eq!(serde_json::to_string(&request).unwrap(), text);
        let bad = r#"{"node":"n","token":"t","requests":{"etcd-root":"PEM"}}"#;
        assert!(serde_json::from_str::<EnrollRequest>(bad).is_err());
    }

    #[test]
    fn refusal_wire_shape() {
        let refusal = Refusal {
            kind: RefusalKind::TokenReused,
            message: "used".into(),
        };
        let text = serde_json::to_string(&refusal).unwrap();
        assert_eq!(text, r#"{"kind":"token-reused","message":"used"}"#);
        assert_eq!(refusal.kind.http_status(), 409);
    }

    #[test]
    fn sans_are_tagged_and_boot_addresses_bounded() {
        let sans: Vec<SubjectAltName> = serde_json::from_str(
            r#"[{"ip":"10.0.0.10"},{"dns":"core-01"},{"boot-address":{"within":"10.0.0.0/8"}}]"#,
        )
        .unwrap();
        let boot = &sans[2];
        assert_eq!(
            boot.resolve(Some(Ipv4Addr::new(10, 1, 2, 3))),
            Some(ResolvedSan::Ip("10.1.2.3".parse().unwrap()))
        );
        assert_eq!(boot.resolve(Some(Ipv4Addr::new(192, 168, 0, 1))), None);
        assert_eq!(boot.resolve(None), None);
        assert_eq!(
            sans[1].resolve(None),
            Some(ResolvedSan::Dns("core-01".into()))
        );
    }
}
