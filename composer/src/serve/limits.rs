//! What one client, or many, may hold of a `molten serve` listener: timeouts and connection caps.
//! Every listener of `molten serve` goes through [`super::listener`], which applies these.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Descriptors kept free for the bundle's open files, the log and the runtime.
const RESERVED_FDS: u64 = 64;

/// Connection limits of a listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// A request's head (request line and headers) must arrive within this time of the
    /// connection opening or of the previous response (slowloris; idle keep-alive connections).
    pub header_read_timeout: Duration,
    /// A connection that neither sends nor receives a byte for this long is closed (a client
    /// that stopped reading a download).
    pub idle_timeout: Duration,
    /// The handler must have answered (status and headers) within this time.
    pub request_timeout: Duration,
    /// Open connections at most, all clients together.
    pub max_connections: usize,
    /// Open connections at most from one client address.
    pub max_connections_per_client: usize,
    /// Bytes of large files kept in memory as verified ([`super::content`]).
    pub memory_budget: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            max_connections: 4096,
            max_connections_per_client: 64,
            memory_budget: super::content::DEFAULT_MEMORY_BUDGET,
        }
    }
}

impl Limits {
    /// Checks the values make sense (all positive, the per-client cap within the global one).
    pub fn check(&self) -> Result<(), String> {
        for (name, value) in [
            ("header read timeout", self.header_read_timeout),
            ("idle timeout", self.idle_timeout),
            ("request timeout", self.request_timeout),
        ] {
            if value.is_zero() {
                return Err(format!("the {name} must be more than 0 seconds"));
            }
        }
        if self.max_connections == 0 || self.max_connections_per_client == 0 {
            return Err("connection caps must be at least 1".into());
        }
        if self.max_connections_per_client > self.max_connections {
            return Err(format!(
                "the per-client cap ({}) exceeds the connection cap ({})",
                self.max_connections_per_client, self.max_connections
            ));
        }
        Ok(())
    }

    /// Raises the soft open-file limit to the hard one and lowers `max_connections` to what the
    /// descriptors allow, so the cap is reached before the process runs out of descriptors.
    /// Returns a note when the cap was lowered.
    pub fn fit_to_descriptors(&mut self) -> Option<String> {
        let available = raise_nofile_limit()?;
        let fits = available.saturating_sub(RESERVED_FDS).max(1) as usize;
        if self.max_connections <= fits {
            return None;
        }
        let note = format!(
            "connection cap lowered from {} to {fits}: the open-file limit is {available}",
            self.max_connections
        );
        self.max_connections = fits;
        self.max_connections_per_client = self.max_connections_per_client.min(fits);
        Some(note)
    }
}

/// Sets RLIMIT_NOFILE's soft limit to its hard limit; returns the soft limit now in force.
fn raise_nofile_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let current = limit.current?;
    match limit.maximum {
        Some(maximum) if current < maximum => {
            let raised = Rlimit {
                current: Some(maximum),
                maximum: Some(maximum),
            };
            Some(if setrlimit(Resource::Nofile, raised).is_ok() {
                maximum
            } else {
                current
            })
        }
        // Already at the hard limit, or the hard limit is unlimited: keep the soft limit.
        _ => Some(current),
    }
}

/// Counts open connections, globally and per client address.
pub struct Admission {
    limits: Limits,
    global: Arc<Semaphore>,
    per_client: Mutex<HashMap<IpAddr, usize>>,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Full,
    ClientFull,
}

/// An admitted connection; dropping it frees its slots.
pub struct Ticket {
    admission: Arc<Admission>,
    client: IpAddr,
    _permit: OwnedSemaphorePermit,
}

impl Admission {
    pub fn new(limits: Limits) -> Arc<Admission> {
        Arc::new(Admission {
            global: Arc::new(Semaphore::new(limits.max_connections)),
            limits,
            per_client: Mutex::new(HashMap::new()),
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Open connections now.
    pub fn open(&self) -> usize {
        self.limits.max_connections - self.global.available_permits()
    }

    pub fn admit(self: &Arc<Self>, client: IpAddr) -> Result<Ticket, Refusal> {
        let mut per_client = self
            .per_client
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let count = per_client.get(&client).copied().unwrap_or(0);
        if count >= self.limits.max_connections_per_client {
            return Err(Refusal::ClientFull);
        }
        let permit = self
            .global
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::Full)?;
        per_client.insert(client, count + 1);
        Ok(Ticket {
            admission: self.clone(),
            client,
            _permit: permit,
        })
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut per_client = self
            .admission
            .per_client
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if let Some(count) = per_client.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                per_client.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Limits {
        Limits {
            max_connections: 3,
            max_connections_per_client: 2,
            ..Limits::default()
        }
    }

    #[test]
    fn caps_per_client_and_globally_and_frees_on_drop() {
        let admission = Admission::new(small());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = admission.admit(a).unwrap();
        let _a2 = admission.admit(a).unwrap();
        assert_eq!(admission.admit(a).err(), Some(Refusal::ClientFull));
        let _b1 = admission.admit(b).unwrap();
        assert_eq!(admission.admit(b).err(), Some(Refusal::Full));
        assert_eq!(admission.open(), 3);
        drop(a1);
        assert_eq!(admission.open(), 2);
        let _b2 = admission.admit(b).unwrap();
        assert_eq!(admission.admit(a).err(), Some(Refusal::Full));
    }

    #[test]
    fn rejects_nonsense_limits() {
        assert!(Limits::default().check().is_ok());
        let zero = Limits {
            idle_timeout: Duration::ZERO,
            ..Limits::default()
        };
        assert!(zero.check().unwrap_err().contains("idle timeout"));
        let inverted = Limits {
            max_connections: 2,
            max_connections_per_client: 3,
            ..Limits::default()
        };
        assert!(inverted.check().unwrap_err().contains("per-client cap (3)"));
    }
}
