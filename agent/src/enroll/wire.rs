//! The enrollment protocol's JSON bodies (see the design in docs/security.md).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `POST /v1/enroll`: the node's single-use token and one CSR (PEM) per certificate kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollRequest {
    pub node: String,
    pub token: String,
    pub requests: BTreeMap<String, String>,
}

/// `POST /v1/renew` (mTLS with the node's current etcd-client certificate).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewRequest {
    pub node: String,
    pub requests: BTreeMap<String, String>,
}

/// 200: one certificate (PEM) per requested kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issued {
    pub certificates: BTreeMap<String, String>,
    pub not_after: String,
}

/// 4xx: why the authority refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub kind: String,
    pub message: String,
}

/// `GET /v1/roster` (mTLS): every enrolled node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Roster {
    pub nodes: Vec<String>,
}
