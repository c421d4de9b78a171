//! An etcd session that survives a cluster forming or losing a member: every operation retries
//! transient failures with backoff, reconnecting to the next configured endpoint each time,
//! within one time budget for the whole session.
//!
//! The client talks to one endpoint at a time: etcd-client's balanced channel
//! (`Client::connect` with several endpoints) does not fail over; it keeps spreading requests
//! over all endpoints, so with one dead member about every other request fails with "tcp
//! connect error" (measured against etcd 3.4 with etcd-client 0.21). Failover is done here.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use etcd_client::{Client, ConnectOptions};

use super::retry::{Retry, REQUEST_TIMEOUT};
use super::tls::EtcdTls;
use super::transient::{is_transient, NoAnswer};

/// A connection to one of `endpoints`, replaced by one to the next endpoint after a transient
/// failure.
pub struct Etcd {
    endpoints: Vec<String>,
    retry: Retry,
    /// Time lost to failed attempts and backoff so far; the budget bounds it.
    lost: Duration,
    /// Index of the endpoint the client talks to (or tries next).
    current: usize,
    client: Option<Client>,
    /// The client identity of every connection (molten's etcd requires mutual TLS).
    tls: EtcdTls,
}

impl Etcd {
    /// Connects to the first endpoint that answers, retrying within `retry.budget`, over mutual
    /// TLS with `tls`. Every endpoint must be `https://`: a plain one is a configuration error.
    pub async fn connect(endpoints: &[String], retry: Retry, tls: EtcdTls) -> Result<Self> {
        check_endpoints(endpoints)?;
        let mut etcd = Self {
            endpoints: endpoints.to_vec(),
            retry,
            lost: Duration::ZERO,
            current: 0,
            client: None,
            tls,
        };
        etcd.run("connect", |_| async { Ok(()) }).await?;
        Ok(etcd)
    }

    /// The client TLS the session uses (for dialling other members with the same identity).
    pub fn tls(&self) -> &EtcdTls {
        &self.tls
    }

    /// The endpoint the session talks to now.
    pub fn endpoint(&self) -> &str {
        &self.endpoints[self.current]
    }

    /// The connected client (for callers that make a single call and need no retries); an
    /// error when the last attempt left the session without one.
    pub fn client(&self) -> Result<Client> {
        self.client
            .clone()
            .with_context(|| format!("not connected to etcd at {}", self.endpoint()))
    }

    /// Runs `op` (named `what` in errors) on a client, retrying transient failures on the next
    /// endpoint after a backoff until the session's budget is spent. Other errors return at once.
    /// `op` may run more than once, so it must be safe to repeat (the agent's operations are:
    /// reads, puts of the same value, compare-and-swap transactions).
    pub async fn run<T, F, Fut>(&mut self, what: &str, mut op: F) -> Result<T>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut backoff = self.retry.first_backoff;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let started = Instant::now();
            let result = match self.ensure_client().await {
                Ok(client) => op(client).await,
                Err(err) => Err(err),
            };
            let err = match result {
                Ok(value) => return Ok(value),
                Err(err) if is_transient(&err) => err,
                Err(err) => return Err(err),
            };
            self.lost += started.elapsed();
            let failed_at = self.endpoint().to_string();
            tracing::debug!(%what, attempt = attempts, endpoint = %failed_at, error = %format!("{err:#}"), "etcd: transient failure, retrying");
            self.client = None;
            self.current = (self.current + 1) % self.endpoints.len();
            if self.lost + backoff >= self.retry.budget {
                anyhow::bail!(
                    "etcd unreachable at {} after {attempts} attempts ({what}; {:.1}s of the \
                     {:.0}s budget spent waiting): last error from {failed_at}: {err:#}",
                    self.endpoints.join(","),
                    self.lost.as_secs_f64(),
                    self.retry.budget.as_secs_f64(),
                );
            }
            tokio::time::sleep(backoff).await;
            self.lost += backoff;
            backoff = (backoff * 2).min(self.retry.max_backoff);
        }
    }

    /// The current client, connecting to the current endpoint first if there is none.
    async fn ensure_client(&mut self) -> Result<Client> {
        if let Some(client) = &self.client {
            return Ok(client.clone());
        }
        let remaining = self.retry.budget.saturating_sub(self.lost);
        let limit = remaining.clamp(Duration::from_millis(100), REQUEST_TIMEOUT);
        let endpoint = self.endpoint().to_string();
        let client = connect_one(&endpoint, limit, &self.tls)
            .await
            .with_context(|| format!("connecting to etcd at {endpoint}"))?;
        self.client = Some(client.clone());
        Ok(client)
    }
}

/// Refuses an empty list and any endpoint that is not `https://`.
pub fn check_endpoints(endpoints: &[String]) -> Result<()> {
    anyhow::ensure!(!endpoints.is_empty(), "no etcd endpoints configured");
    if let Some(plain) = endpoints.iter().find(|e| !e.starts_with("https://")) {
        anyhow::bail!(
            "etcd endpoint {plain:?} is not https://: molten's etcd takes only mutual TLS \
             (check etcd.endpoints in the node config, or --etcd)"
        );
    }
    Ok(())
}

/// Connects to one endpoint and checks that the member answers (the client connects lazily).
async fn connect_one(endpoint: &str, limit: Duration, tls: &EtcdTls) -> Result<Client> {
    let options = ConnectOptions::new()
        .with_connect_timeout(limit)
        .with_timeout(REQUEST_TIMEOUT)
        .with_tls(tls.options());
    let attempt = async {
        let mut client = Client::connect([endpoint], Some(options)).await?;
        client.status().await?;
        Ok::<_, etcd_client::Error>(client)
    };
    match tokio::time::timeout(limit, attempt).await {
        Ok(result) => result.map_err(anyhow::Error::from),
        Err(_) => Err(NoAnswer {
            endpoint: endpoint.to_string(),
            seconds: limit.as_secs_f64(),
        }
        .into()),
    }
}
