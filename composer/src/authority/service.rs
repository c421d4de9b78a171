//! What the authority answers, independent of HTTP: enrollment (token), renewal and roster (mTLS
//! identity). Every answer and every refusal is logged with the node and the peer address; a
//! reused token loudly, with when and from where it was first used.
//!
//! Names come only from the authority's own record of the node (`enrollment.json`, written by
//! compose): a CSR contributes its public key, nothing else.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};

use molten_contract::trust::{
    CertificateKind, EnrollAnswer, EnrollRequest, RefusalKind, RenewRequest, ResolvedSan, Roster,
    SubjectAltName, MAX_CSR_PEM_BYTES,
};
use time::{Duration, OffsetDateTime};

use super::ca::{self, Ca};
use super::enrollment::{rfc3339, NodeRecord, Refused};
use super::{Authority, DOCKER_CA, ETCD_CA};
use crate::serve::LogSink;

/// Node certificates are valid this long unless `--cert-validity` says otherwise.
pub const DEFAULT_CERT_VALIDITY: Duration = Duration::days(90);
/// Longest node name accepted from the network (DNS label rules keep names far shorter).
const MAX_NODE_NAME: usize = 253;

/// The loaded authority: CAs in memory, the enrollment record read under the lock per request.
pub struct AuthorityService {
    authority: Authority,
    etcd: Ca,
    docker: Ca,
    cert_validity: Duration,
    log: LogSink,
}

impl AuthorityService {
    pub fn load(
        authority: Authority,
        cert_validity: Duration,
        log: LogSink,
    ) -> anyhow::Result<AuthorityService> {
        Ok(AuthorityService {
            etcd: authority.ca(ETCD_CA)?,
            docker: authority.ca(DOCKER_CA)?,
            authority,
            cert_validity,
            log,
        })
    }

    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    fn log(&self, line: String) {
        (self.log)(&format!("{} authority: {line}", rfc3339(now())));
    }

    pub(crate) fn refused(
        &self,
        what: &str,
        node: &str,
        peer: SocketAddr,
        refused: Refused,
    ) -> Refused {
        if refused.kind == RefusalKind::TokenReused {
            self.log(format!(
                "ALERT: REUSED ENROLLMENT TOKEN for node {node:?} presented from {peer} and \
                 refused: {} — someone holds a copy of this node's Ignition",
                refused.message
            ));
        } else {
            self.log(format!(
                "refused {what} node={node:?} from={peer} reason={}: {}",
                refused.kind, refused.message
            ));
        }
        refused
    }

    /// `POST /v1/enroll`. Blocking (file lock, fsync): call from a blocking thread.
    pub fn enroll(
        &self,
        request: &EnrollRequest,
        peer: SocketAddr,
    ) -> Result<EnrollAnswer, Refused> {
        self.try_enroll(request, peer)
            .map_err(|refused| self.refused("enroll", &request.node, peer, refused))
    }

    fn try_enroll(
        &self,
        request: &EnrollRequest,
        peer: SocketAddr,
    ) -> Result<EnrollAnswer, Refused> {
        check_node_name(&request.node)?;
        let keys = public_keys(&request.requests)?;
        let _lock = self.authority.lock().map_err(internal)?;
        let mut state = self.authority.read_state().map_err(internal)?;
        let now = now();
        let record = state.check_token(&request.node, &request.token, now)?;
        let answer = self.sign(&request.node, record, &keys, request.private_ip, now)?;
        // Durable before the answer leaves: a crash after this burns the token, never reuses it.
        state.mark_used(&request.node, now, &peer.to_string());
        self.authority.write_state(&state).map_err(internal)?;
        self.log(format!(
            "enrolled node={} from={peer} certificates={} not_after={}",
            request.node,
            kinds(&answer),
            answer.not_after
        ));
        Ok(answer)
    }

    /// `POST /v1/renew`; `client_cn` is the CN of the verified etcd client certificate.
    pub fn renew(
        &self,
        request: &RenewRequest,
        client_cn: Option<&str>,
        peer: SocketAddr,
    ) -> Result<EnrollAnswer, Refused> {
        self.try_renew(request, client_cn, peer)
            .map_err(|refused| self.refused("renew", &request.node, peer, refused))
    }

    fn try_renew(
        &self,
        request: &RenewRequest,
        client_cn: Option<&str>,
        peer: SocketAddr,
    ) -> Result<EnrollAnswer, Refused> {
        check_node_name(&request.node)?;
        match client_cn {
            None => {
                return Err(Refused::new(
                    RefusalKind::NotAuthenticated,
                    "renewal needs the node's current etcd client certificate",
                ))
            }
            Some(cn) if cn != request.node => {
                return Err(Refused::new(
                    RefusalKind::NotAuthenticated,
                    format!(
                        "the client certificate names {cn:?}, not {:?}",
                        request.node
                    ),
                ))
            }
            Some(_) => {}
        }
        let keys = public_keys(&request.requests)?;
        let state = {
            let _lock = self.authority.lock().map_err(internal)?;
            self.authority.read_state().map_err(internal)?
        };
        let record = state.check_renewal(&request.node)?;
        let answer = self.sign(&request.node, record, &keys, request.private_ip, now())?;
        self.log(format!(
            "renewed node={} from={peer} certificates={} not_after={}",
            request.node,
            kinds(&answer),
            answer.not_after
        ));
        Ok(answer)
    }

    /// `GET /v1/roster`: any valid etcd client certificate.
    pub fn roster(&self, client_cn: Option<&str>, peer: SocketAddr) -> Result<Roster, Refused> {
        let who = client_cn.unwrap_or("-");
        let result = match client_cn {
            None => Err(Refused::new(
                RefusalKind::NotAuthenticated,
                "the roster needs an etcd client certificate",
            )),
            Some(_) => self
                .authority
                .lock()
                .and_then(|_lock| self.authority.read_state())
                .map(|state| Roster {
                    nodes: state.roster(),
                    revoked: state.revoked_nodes(),
                })
                .map_err(internal),
        };
        result.map_err(|refused| self.refused("roster", who, peer, refused))
    }

    fn sign(
        &self,
        node: &str,
        record: &NodeRecord,
        keys: &BTreeMap<CertificateKind, rcgen::PublicKey>,
        private_ip: Option<Ipv4Addr>,
        now: OffsetDateTime,
    ) -> Result<EnrollAnswer, Refused> {
        let mut certificates = BTreeMap::new();
        for (&kind, key) in keys {
            if kind.members_only() && !record.member {
                return Err(Refused::new(
                    RefusalKind::BadRequest,
                    format!("node {node} is not an etcd member: no {kind} certificate"),
                ));
            }
            let sans = sans_for(kind, record, private_ip)?;
            let common_name = match kind {
                CertificateKind::EtcdClient => record.identity.etcd_client_cn.as_str(),
                other => ca::common_name(other, node),
            };
            let issuer = if kind.is_docker() {
                &self.docker
            } else {
                &self.etcd
            };
            let pem = issuer
                .sign_node(kind, key, common_name, &sans, now, self.cert_validity)
                .map_err(internal)?;
            certificates.insert(kind, pem);
        }
        Ok(EnrollAnswer {
            certificates,
            not_after: rfc3339(now + self.cert_validity),
        })
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn internal(err: anyhow::Error) -> Refused {
    Refused::new(RefusalKind::Internal, format!("{err:#}"))
}

fn kinds(answer: &EnrollAnswer) -> String {
    let names: Vec<&str> = answer.certificates.keys().map(|k| k.name()).collect();
    names.join(",")
}

fn check_node_name(node: &str) -> Result<(), Refused> {
    let plain = !node.is_empty()
        && node.len() <= MAX_NODE_NAME
        && node
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if plain {
        Ok(())
    } else {
        Err(Refused::new(
            RefusalKind::BadRequest,
            "the node name is empty, too long or has characters no node name has",
        ))
    }
}

/// Each CSR's verified public key; refuses an empty request, an oversized or invalid CSR.
fn public_keys(
    requests: &BTreeMap<CertificateKind, String>,
) -> Result<BTreeMap<CertificateKind, rcgen::PublicKey>, Refused> {
    if requests.is_empty() {
        return Err(Refused::new(
            RefusalKind::BadRequest,
            "the request asks for no certificate",
        ));
    }
    requests
        .iter()
        .map(|(&kind, pem)| {
            if pem.len() > MAX_CSR_PEM_BYTES {
                return Err(Refused::new(
                    RefusalKind::BadRequest,
                    format!("the {kind} CSR is larger than {MAX_CSR_PEM_BYTES} bytes"),
                ));
            }
            ca::csr_public_key(pem)
                .map(|key| (kind, key))
                .map_err(|err| Refused::new(RefusalKind::BadRequest, format!("{kind}: {err}")))
        })
        .collect()
}

/// The SANs of `kind` for this node, from the record; etcd server certificates also carry the
/// loopback names (a member's agent dials its own etcd there).
fn sans_for(
    kind: CertificateKind,
    record: &NodeRecord,
    private_ip: Option<Ipv4Addr>,
) -> Result<Vec<ResolvedSan>, Refused> {
    let identity = &record.identity;
    let listed: &[SubjectAltName] = match kind {
        CertificateKind::EtcdPeer => &identity.etcd_peer_sans,
        CertificateKind::EtcdServer => &identity.etcd_server_sans,
        CertificateKind::DockerServer => &identity.docker_server_sans,
        CertificateKind::EtcdClient | CertificateKind::EtcdAdmin => &[],
    };
    let mut sans = Vec::new();
    for san in listed {
        let resolved = san.resolve(private_ip).ok_or_else(|| {
            Refused::new(
                RefusalKind::BadRequest,
                match san {
                    SubjectAltName::BootAddress { within } => format!(
                        "the {kind} certificate needs the node's private address inside \
                         {within}; the request gave {}",
                        private_ip.map_or("none".to_string(), |ip| ip.to_string())
                    ),
                    _ => format!("cannot resolve a {kind} name"),
                },
            )
        })?;
        if !sans.contains(&resolved) {
            sans.push(resolved);
        }
    }
    if kind == CertificateKind::EtcdServer {
        for loopback in ca::loopback_sans() {
            if !sans.contains(&loopback) {
                sans.push(loopback);
            }
        }
    }
    Ok(sans)
}

#[cfg(test)]
mod tests {
    use super::*;
    use molten_contract::trust::NodeTlsIdentity;

    fn record(member: bool) -> NodeRecord {
        NodeRecord {
            generation: 1,
            token_sha256: String::new(),
            not_after: String::new(),
            used_at: None,
            used_from: None,
            enrolled_at: None,
            member,
            identity: NodeTlsIdentity {
                etcd_peer_sans: vec![SubjectAltName::BootAddress {
                    within: "10.0.0.0/8".parse().unwrap(),
                }],
                etcd_server_sans: vec![SubjectAltName::Ip("10.0.0.10".parse().unwrap())],
                etcd_client_cn: "n0".into(),
                docker_server_sans: vec![SubjectAltName::Dns("n0".into())],
            },
        }
    }

    #[test]
    fn server_certificates_add_loopback_and_boot_addresses_must_fit() {
        let r = record(true);
        let server = sans_for(CertificateKind::EtcdServer, &r, None).unwrap();
        assert_eq!(server.len(), 3, "{server:?}");
        assert!(sans_for(CertificateKind::EtcdClient, &r, None)
            .unwrap()
            .is_empty());
        let refused = sans_for(
            CertificateKind::EtcdPeer,
            &r,
            Some(Ipv4Addr::new(192, 168, 1, 1)),
        )
        .unwrap_err();
        assert_eq!(refused.kind, RefusalKind::BadRequest);
        assert!(refused.message.contains("inside 10.0.0.0/8"), "{refused:?}");
        let peer = sans_for(
            CertificateKind::EtcdPeer,
            &r,
            Some(Ipv4Addr::new(10, 2, 3, 4)),
        )
        .unwrap();
        assert_eq!(peer, [ResolvedSan::Ip("10.2.3.4".parse().unwrap())]);
    }

    #[test]
    fn node_names_from_the_network_are_plain() {
        assert!(check_node_name("core-01").is_ok());
        for bad in ["", "a b", "a\nb", "x/../y", &"a".repeat(300)] {
            assert!(check_node_name(bad).is_err(), "{bad:?}");
        }
        let empty = BTreeMap::new();
        assert_eq!(
            public_keys(&empty).unwrap_err().kind,
            RefusalKind::BadRequest
        );
    }
}
