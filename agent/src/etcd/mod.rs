//! etcd v3 access: a session with bounded retries and failover across endpoints, and the few
//! operations the agent needs.

pub mod membership;
pub mod quorum;
pub mod rbac;
mod retry;
mod session;
pub mod snapshot;
mod tls;
mod transient;

use anyhow::{Context, Result};
use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp, TxnOpResponse};

pub use retry::Retry;
pub use session::{check_endpoints, Etcd};
pub use tls::EtcdTls;
pub use transient::is_transient;

/// Connects over mutual TLS to the first of `endpoints` (all `https://`) that answers, retrying
/// within the budget; for commands that make a few calls and need no session. The error names
/// every endpoint and the last failure.
pub async fn connect(endpoints: &[String], retry: Retry, tls: EtcdTls) -> Result<Client> {
    Etcd::connect(endpoints, retry, tls).await?.client()
}

/// A key's value and the lease it is attached to (0 = none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub value: String,
    pub lease: i64,
    /// Revision of the last change, for compare-and-swap.
    pub mod_revision: i64,
}

pub async fn get(client: &mut Client, key: &str) -> Result<Option<Entry>> {
    let resp = client
        .get(key, None)
        .await
        .with_context(|| format!("etcd get {key}"))?;
    resp.kvs()
        .first()
        .map(|kv| {
            Ok(Entry {
                value: kv
                    .value_str()
                    .with_context(|| format!("etcd key {key} is not UTF-8"))?
                    .to_string(),
                lease: kv.lease(),
                mod_revision: kv.mod_revision(),
            })
        })
        .transpose()
}

/// All keys under `prefix` with their values, sorted by key.
pub async fn get_prefix(client: &mut Client, prefix: &str) -> Result<Vec<(String, String)>> {
    let resp = client
        .get(prefix, Some(GetOptions::new().with_prefix()))
        .await
        .with_context(|| format!("etcd get {prefix}*"))?;
    let mut out = resp
        .kvs()
        .iter()
        .map(|kv| Ok((kv.key_str()?.to_string(), kv.value_str()?.to_string())))
        .collect::<Result<Vec<_>, etcd_client::Error>>()
        .with_context(|| format!("etcd keys under {prefix} are not UTF-8"))?;
    out.sort();
    Ok(out)
}

/// Every key under `prefix` with its raw value, sorted by key: for keys other nodes write, whose
/// values may be anything (a key that is not UTF-8 is shown lossily; it matches no node).
pub async fn get_prefix_bytes(client: &mut Client, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let resp = client
        .get(prefix, Some(GetOptions::new().with_prefix()))
        .await
        .with_context(|| format!("etcd get {prefix}*"))?;
    let mut out: Vec<(String, Vec<u8>)> = resp
        .kvs()
        .iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(kv.key()).into_owned(),
                kv.value().to_vec(),
            )
        })
        .filter(|(key, _)| key.starts_with(prefix))
        .collect();
    out.sort();
    Ok(out)
}

pub async fn put(client: &mut Client, key: &str, value: &str) -> Result<()> {
    client
        .put(key, value, None)
        .await
        .with_context(|| format!("etcd put {key}"))?;
    Ok(())
}

/// Puts several keys in one transaction, so a reader never sees one without the others (a
/// certificate without its key).
pub async fn put_all(client: &mut Client, pairs: &[(&str, &str)]) -> Result<()> {
    let puts: Vec<TxnOp> = pairs
        .iter()
        .map(|(key, value)| TxnOp::put(*key, *value, None))
        .collect();
    let keys = pairs.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ");
    client
        .txn(Txn::new().and_then(puts))
        .await
        .with_context(|| format!("etcd transaction writing {keys}"))?;
    Ok(())
}

/// Result of a create-if-absent transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// Our values were written.
    Ours,
    /// Someone else's values were there; these are theirs, in the order of the keys.
    Theirs(Vec<String>),
}

/// Writes all `pairs` in one transaction only if none of the keys exists yet; otherwise returns
/// the existing values. This is how exactly one of many concurrent agents creates a shared value.
pub async fn create_if_absent(client: &mut Client, pairs: &[(&str, &str)]) -> Result<Created> {
    let compares: Vec<Compare> = pairs
        .iter()
        .map(|(key, _)| Compare::create_revision(*key, CompareOp::Equal, 0))
        .collect();
    let puts: Vec<TxnOp> = pairs
        .iter()
        .map(|(key, value)| TxnOp::put(*key, *value, None))
        .collect();
    let gets: Vec<TxnOp> = pairs
        .iter()
        .map(|(key, _)| TxnOp::get(*key, None))
        .collect();
    let keys = pairs.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ");
    let resp = client
        .txn(Txn::new().when(compares).and_then(puts).or_else(gets))
        .await
        .with_context(|| format!("etcd transaction creating {keys}"))?;
    if resp.succeeded() {
        return Ok(Created::Ours);
    }
    let mut values = Vec::new();
    for (op, (key, _)) in resp.op_responses().into_iter().zip(pairs) {
        let value = match op {
            TxnOpResponse::Get(get) => get
                .kvs()
                .first()
                .map(|kv| kv.value_str().map(str::to_string))
                .transpose()
                .with_context(|| format!("etcd key {key} is not UTF-8"))?,
            _ => None,
        };
        values.push(value.with_context(|| {
            format!("etcd key {key} is missing while others of {keys} exist (half-created)")
        })?);
    }
    Ok(Created::Theirs(values))
}

/// Puts `value` at `key` only if the key is still as we read it (`expected` = None: absent).
/// Returns false when someone changed it in between.
pub async fn put_if_unchanged(
    client: &mut Client,
    key: &str,
    value: &str,
    expected: Option<&Entry>,
) -> Result<bool> {
    let compare = match expected {
        Some(entry) => Compare::mod_revision(key, CompareOp::Equal, entry.mod_revision),
        None => Compare::create_revision(key, CompareOp::Equal, 0),
    };
    let resp = client
        .txn(
            Txn::new()
                .when([compare])
                .and_then([TxnOp::put(key, value, None)]),
        )
        .await
        .with_context(|| format!("etcd transaction on {key}"))?;
    Ok(resp.succeeded())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A client identity that parses (self-signed, trusted by nothing that listens).
    fn tls() -> EtcdTls {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["n".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap()
            .pem();
        EtcdTls::new(&cert, &cert, &key.serialize_pem())
    }

    #[tokio::test]
    async fn unreachable_etcd_is_reported_with_every_endpoint_within_the_budget() {
        // Ports that were just free: connections are refused.
        let ports: Vec<u16> = (0..2)
            .map(|_| {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap().port()
            })
            .collect();
        let endpoints: Vec<String> = ports
            .iter()
            .map(|p| format!("https://127.0.0.1:{p}"))
            .collect();
        let retry = Retry {
            budget: Duration::from_millis(800),
            first_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(200),
        };
        let Err(err) = connect(&endpoints, retry, tls()).await else {
            panic!("connected to nothing")
        };
        let err = err.to_string();
        assert!(err.starts_with("etcd unreachable at "), "{err}");
        assert!(err.contains(&endpoints.join(",")), "{err}");
        assert!(!err.contains("after 1 attempts"), "it retried: {err}");
    }

    #[tokio::test]
    async fn no_endpoints_is_an_error() {
        let Err(err) = connect(&[], Retry::default(), tls()).await else {
            panic!("connected to nothing")
        };
        assert_eq!(err.to_string(), "no etcd endpoints configured");
    }

    #[tokio::test]
    async fn a_plain_http_endpoint_is_refused_before_any_connection() {
        let endpoints = vec![
            "https://127.0.0.1:2379".to_string(),
            "http://127.0.0.1:2379".to_string(),
        ];
        let started = std::time::Instant::now();
        let Err(err) = connect(&endpoints, Retry::default(), tls()).await else {
            panic!("connected over plain HTTP")
        };
        assert_eq!(
            err.to_string(),
            "etcd endpoint \"http://127.0.0.1:2379\" is not https://: molten's etcd takes only \
             mutual TLS (check etcd.endpoints in the node config, or --etcd)"
        );
        assert!(started.elapsed() < Duration::from_secs(1), "not retried");
    }
}
