//! `mc enroll` and renewal: the node generates its keys, sends certificate requests to the
//! authority (HTTPS pinned to node.json's `authority_ca`), checks what comes back and keeps it
//! in its identity directory.
//!
//! Enrollment spends the node's single-use token, so it runs only when the identity on disk is
//! missing or unusable: a node with a valid identity does nothing (no re-enrollment at reboot).
//! Renewal authenticates with the node's current etcd-client certificate instead of a token.

pub mod https;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use rcgen::{CertificateParams, DnType, KeyPair};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::fs::{under_root, write_atomic, MODE_PUBLIC};
use crate::identity::{self, root_of, CertInfo, Held, IdentityDir, Kind, Pair, Roots};
use https::Authority;
use molten_contract::trust::{
    EnrollAnswer, EnrollRequest, Refusal, RenewRequest, Roster, ENROLL_PATH, ETCD_ROOT_USER,
    RENEW_PATH, ROSTER_PATH,
};
use molten_contract::{NodeConfig, Role};

pub use molten_contract::trust::ENROLL_TOKEN_PATH as TOKEN_PATH;

/// Inside the state dir: the last enrollment or renewal failure, for `mc status`.
pub const FAILURE_FILE: &str = "enroll-failure.json";

/// What enrollment needs from the node config.
#[derive(Debug, Clone)]
pub struct Settings {
    pub node: String,
    /// etcd members also get peer, server and admin certificates.
    pub member: bool,
    pub authority_url: String,
    pub authority_ca: String,
    pub roots: Roots,
    /// The persistent state dir (absolute, as on the node).
    pub state_dir: String,
    /// The node's private address, sent for SANs the profile cannot know (packet).
    pub private_ip: Option<std::net::Ipv4Addr>,
}

impl Settings {
    /// From node.json's `trust` section.
    pub fn from_config(config: &NodeConfig) -> Self {
        let trust = &config.trust;
        Self {
            node: config.node.name.clone(),
            member: config.has_role(Role::Etcd),
            authority_url: trust.authority_url.clone(),
            authority_ca: trust.authority_ca.clone(),
            roots: Roots {
                etcd_ca: trust.etcd_ca.clone(),
                docker_ca: trust.docker_ca.clone(),
            },
            state_dir: trust.state_dir.clone(),
            private_ip: None,
        }
    }

    pub fn kinds(&self) -> Vec<Kind> {
        Kind::for_node(self.member)
    }

    /// The authority CA mc pins is within its validity window (before any request).
    fn check_authority_ca(&self, now: OffsetDateTime) -> Result<()> {
        identity::check_ca(
            "trust.authority_ca (the authority's CA)",
            &self.authority_ca,
            now,
        )
    }

    pub fn identity(&self, root: &Path) -> IdentityDir {
        IdentityDir::new(root, &self.state_dir)
    }

    fn failure_path(&self, root: &Path) -> PathBuf {
        under_root(root, &self.state_dir).join(FAILURE_FILE)
    }
}

/// What `mc enroll` did.
#[derive(Debug, Clone)]
pub enum Enrolled {
    /// A valid identity was already on disk: nothing sent, nothing written.
    Already(Vec<CertInfo>),
    /// New keys and certificates are on disk.
    New(Vec<CertInfo>),
}

/// A failure kept on disk so `mc status` can say why this node has no identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// `enroll` or `renew`.
    pub operation: String,
    pub reason: String,
    pub at: String,
}

/// Enrolls unless a valid identity is on disk. Any failure is also recorded for `mc status`.
pub async fn enroll(root: &Path, settings: &Settings, token_file: &Path) -> Result<Enrolled> {
    let result = try_enroll(root, settings, token_file).await;
    record(root, settings, "enroll", &result)?;
    result
}

async fn try_enroll(root: &Path, settings: &Settings, token_file: &Path) -> Result<Enrolled> {
    let now = crate::timestamp::now();
    let dir = settings.identity(root);
    let missing = match identity::held(&dir, &settings.kinds(), &settings.roots, now)? {
        Held::Valid(infos) => return Ok(Enrolled::Already(infos)),
        Held::Unusable { kind, reason } => format!("{kind}: {reason}"),
    };
    tracing::info!(node = %settings.node, %missing, "enrolling with the authority");
    settings.check_authority_ca(now)?;
    let token = read_token(token_file)?;
    let (keys, requests) = requests(settings)?;
    let body = serde_json::to_string(&EnrollRequest {
        node: settings.node.clone(),
        token,
        requests,
        private_ip: settings.private_ip,
    })?;
    let authority = Authority::new(&settings.authority_url, &settings.authority_ca, None)?;
    let answer = authority.post_json(ENROLL_PATH, body).await?;
    let pairs = accept(settings, answer, keys, now)?;
    store(&dir, &pairs)?;
    Ok(Enrolled::New(infos(&pairs, settings, now)?))
}

/// What renewal did.
#[derive(Debug, Clone)]
pub struct Renewed {
    /// The kinds whose files changed (empty: nothing was due).
    pub kinds: Vec<Kind>,
    /// Every kind as now on disk.
    pub infos: Vec<CertInfo>,
}

/// Renews every certificate when any has less than a third of its validity left (or `force`).
/// Authenticates with the current etcd-client certificate, which must still be valid.
pub async fn renew(root: &Path, settings: &Settings, force: bool) -> Result<Renewed> {
    let result = try_renew(root, settings, force).await;
    record(root, settings, "renew", &result)?;
    result
}

async fn try_renew(root: &Path, settings: &Settings, force: bool) -> Result<Renewed> {
    let now = crate::timestamp::now();
    let dir = settings.identity(root);
    let current = match identity::held(&dir, &settings.kinds(), &settings.roots, now)? {
        Held::Valid(infos) => infos,
        Held::Unusable { kind, reason } => {
            anyhow::bail!("no valid identity to renew with ({kind}: {reason}); run mc enroll")
        }
    };
    if !force && !current.iter().any(|info| info.renewal_due(now)) {
        return Ok(Renewed {
            kinds: Vec::new(),
            infos: current,
        });
    }
    settings.check_authority_ca(now)?;
    let client = dir
        .load(Kind::EtcdClient)?
        .context("the etcd-client certificate vanished")?;
    let (keys, requests) = requests(settings)?;
    let body = serde_json::to_string(&RenewRequest {
        node: settings.node.clone(),
        requests,
        private_ip: settings.private_ip,
    })?;
    let authority = Authority::new(
        &settings.authority_url,
        &settings.authority_ca,
        Some(&client),
    )?;
    let answer = authority.post_json(RENEW_PATH, body).await?;
    let pairs = accept(settings, answer, keys, now)?;
    store(&dir, &pairs)?;
    Ok(Renewed {
        kinds: pairs.keys().copied().collect(),
        infos: infos(&pairs, settings, now)?,
    })
}

/// The etcd users the authority says are enrolled (`GET /v1/roster`, mTLS with etcd-client).
pub async fn roster(root: &Path, settings: &Settings) -> Result<Roster> {
    let client = settings
        .identity(root)
        .load(Kind::EtcdClient)?
        .context("no etcd-client certificate: enroll first")?;
    // Members ask at every converge; an authority that is offline must not hold the boot up.
    let authority = Authority::new(
        &settings.authority_url,
        &settings.authority_ca,
        Some(&client),
    )?
    .with_timeout(std::time::Duration::from_secs(3));
    let answer = authority.get(ROSTER_PATH).await?;
    anyhow::ensure!(
        answer.status == 200,
        "the authority refused the roster request: {}",
        refusal_text(&answer)
    );
    serde_json::from_str(&answer.body).context("the roster answer is not valid JSON")
}

fn read_token(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "no enrollment token at {} (Ignition writes it at first boot)",
            path.display()
        )
    })?;
    let token = text.trim().to_string();
    anyhow::ensure!(!token.is_empty(), "{} is empty", path.display());
    Ok(token)
}

/// A fresh key and a CSR per kind. The authority ignores the CSR's subject and names (it signs
/// what the profile gives this node), so the subject is informative only.
type Requests = (BTreeMap<Kind, KeyPair>, BTreeMap<Kind, String>);

fn requests(settings: &Settings) -> Result<Requests> {
    let mut keys = BTreeMap::new();
    let mut requests = BTreeMap::new();
    for kind in settings.kinds() {
        let key = identity::generate_key()?;
        let mut params = CertificateParams::new(Vec::<String>::new())
            .context("certificate request parameters")?;
        params.distinguished_name.push(
            DnType::CommonName,
            expected_cn(settings, kind).unwrap_or(&settings.node),
        );
        let csr = params
            .serialize_request(&key)
            .with_context(|| format!("signing the {kind} certificate request"))?
            .pem()
            .with_context(|| format!("encoding the {kind} certificate request"))?;
        requests.insert(kind, csr);
        keys.insert(kind, key);
    }
    Ok((keys, requests))
}

/// The CN the authority must have signed for kinds whose CN is an etcd user.
fn expected_cn(settings: &Settings, kind: Kind) -> Option<&str> {
    match kind {
        Kind::EtcdClient => Some(&settings.node),
        Kind::EtcdAdmin => Some(ETCD_ROOT_USER),
        _ => None,
    }
}

/// Checks an answer: every requested kind issued, for our key, by the right CA, valid now, and
/// the etcd user names as expected. Nothing is written unless all of it holds.
fn accept(
    settings: &Settings,
    answer: https::Answer,
    keys: BTreeMap<Kind, KeyPair>,
    now: OffsetDateTime,
) -> Result<BTreeMap<Kind, Pair>> {
    if answer.status != 200 {
        anyhow::bail!("{}", refusal_text(&answer));
    }
    let issued: EnrollAnswer =
        serde_json::from_str(&answer.body).context("the authority's answer is not valid JSON")?;
    let mut pairs = BTreeMap::new();
    for (kind, key) in keys {
        let cert_pem = issued
            .certificates
            .get(&kind)
            .with_context(|| format!("the authority issued no {kind} certificate"))?;
        identity::verify_cert(
            kind,
            cert_pem,
            key.public_key_raw(),
            settings.roots.pem(root_of(kind)),
            now,
        )
        .with_context(|| format!("the {kind} certificate the authority issued"))?;
        if let Some(cn) = expected_cn(settings, kind) {
            let found = common_name(cert_pem)?;
            anyhow::ensure!(
                found == cn,
                "the {kind} certificate names {found:?}, expected {cn:?}"
            );
        }
        pairs.insert(
            kind,
            Pair {
                cert_pem: cert_pem.clone(),
                key_pem: key.serialize_pem(),
            },
        );
    }
    Ok(pairs)
}

fn refusal_text(answer: &https::Answer) -> String {
    match serde_json::from_str::<Refusal>(&answer.body) {
        Ok(r) => format!("refused ({}): {}", r.kind, sanitize(&r.message, 400)),
        Err(_) => format!(
            "the authority answered HTTP {}: {}",
            answer.status,
            sanitize(&answer.body, 200)
        ),
    }
}

/// Text from the network, bounded and printable, before it reaches a log or a status.
fn sanitize(text: &str, max: usize) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect()
}

fn common_name(cert_pem: &str) -> Result<String> {
    let der = identity::pem_to_der(cert_pem)?;
    let (_, cert) =
        X509Certificate::from_der(&der).map_err(|e| anyhow!("certificate does not parse: {e}"))?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .context("the certificate has no CN")?
        .as_str()
        .map_err(|_| anyhow!("the certificate's CN is not text"))?;
    Ok(cn.to_string())
}

fn store(dir: &IdentityDir, pairs: &BTreeMap<Kind, Pair>) -> Result<()> {
    for (kind, pair) in pairs {
        dir.store(*kind, pair)?;
    }
    Ok(())
}

fn infos(
    pairs: &BTreeMap<Kind, Pair>,
    settings: &Settings,
    now: OffsetDateTime,
) -> Result<Vec<CertInfo>> {
    pairs
        .iter()
        .map(|(kind, pair)| identity::verify(*kind, pair, settings.roots.pem(root_of(*kind)), now))
        .collect()
}

/// Keeps the last failure for `mc status`; a success clears it.
fn record<T>(root: &Path, settings: &Settings, operation: &str, result: &Result<T>) -> Result<()> {
    let path = settings.failure_path(root);
    match result {
        Ok(_) => match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(anyhow!(e).context(format!("cannot remove {}", path.display()))),
        },
        Err(e) => {
            let failure = Failure {
                operation: operation.to_string(),
                reason: format!("{e:#}"),
                at: crate::timestamp::rfc3339(crate::timestamp::now()),
            };
            let mut text = serde_json::to_string_pretty(&failure)?;
            text.push('\n');
            write_atomic(&path, text.as_bytes(), MODE_PUBLIC)
        }
    }
}

/// The last recorded failure of this node, if any.
pub fn last_failure(root: &Path, state_dir: &str) -> Option<Failure> {
    let path = under_root(root, state_dir).join(FAILURE_FILE);
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verb = if self.operation == "renew" {
            "could not renew"
        } else {
            "could not enroll"
        };
        write!(f, "{verb}: {} (at {})", self.reason, self.at)
    }
}

#[cfg(test)]
mod tests;
