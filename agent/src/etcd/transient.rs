//! Which etcd failures are worth retrying: the ones a cluster that is starting, electing a leader
//! or losing a member produces. Anything else (bad input, a key that is not UTF-8, a half-created
//! value) fails at once.

/// gRPC status codes (fixed by the gRPC spec) that mean "try again, maybe elsewhere".
const CANCELLED: i32 = 1;
const UNKNOWN: i32 = 2;
const DEADLINE_EXCEEDED: i32 = 4;
const RESOURCE_EXHAUSTED: i32 = 8;
const INVALID_ARGUMENT: i32 = 3;
const INTERNAL: i32 = 13;
const UNAVAILABLE: i32 = 14;

/// etcd's ErrAuthOldRevision (InvalidArgument): the request was authenticated before a user or
/// role changed (members create roles at birth, all at once); the same request again passes.
const AUTH_OLD_REVISION: &str = "revision of auth store is old";

/// Texts of transient failures that etcd or the transport report under a generic code.
const TRANSIENT_TEXTS: &[&str] = &[
    "leader changed",
    "no leader",
    "timed out",
    "timeout expired",
    "tcp connect error",
    "connection refused",
    "connection reset",
    "broken pipe",
    "transport error",
    // hyper's "connection was not ready": the connection died before the request went out
    // (seen as Cancelled "operation was canceled" when a member vanished mid-session).
    "connection was not ready",
    "connection closed",
];

/// No answer from an endpoint in time (the connection or status check hung).
#[derive(Debug, thiserror::Error)]
#[error("no answer from {endpoint} within {seconds:.1}s")]
pub struct NoAnswer {
    pub endpoint: String,
    pub seconds: f64,
}

/// Whether `err` (or any error it wraps) is a transient etcd failure.
pub fn is_transient(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        if cause.is::<NoAnswer>() {
            return true;
        }
        match cause.downcast_ref::<etcd_client::Error>() {
            Some(etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_)) => true,
            Some(etcd_client::Error::GRpcStatus(status)) => {
                transient_status(status.code().into(), &status_text(status.message(), status))
            }
            _ => false,
        }
    })
}

/// A status's message followed by the errors it wraps (the transport's own reason is there).
fn status_text(message: &str, status: &dyn std::error::Error) -> String {
    let mut text = message.to_owned();
    let mut source = status.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Unavailable (no leader, member down, connect error), deadline exceeded and "too many
/// requests" are transient; Unknown, Internal and Cancelled only with a text that says so
/// (the client's own per-request timeout arrives as Cancelled "Timeout expired").
fn transient_status(code: i32, message: &str) -> bool {
    match code {
        UNAVAILABLE | DEADLINE_EXCEEDED | RESOURCE_EXHAUSTED => true,
        INVALID_ARGUMENT => message.contains(AUTH_OLD_REVISION),
        UNKNOWN | INTERNAL | CANCELLED => {
            let message = message.to_ascii_lowercase();
            TRANSIENT_TEXTS.iter().any(|t| message.contains(t))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gRPC status as etcd-client returns it, wrapped in context like the agent's operations.
    fn status(code: tonic::Code, message: &str) -> anyhow::Error {
        let err = etcd_client::Error::GRpcStatus(tonic::Status::new(code, message));
        anyhow::Error::from(err).context("etcd put /molten/x")
    }

    #[test]
    fn cluster_formation_and_member_loss_are_transient() {
        for (code, message) in [
            (tonic::Code::Unavailable, "tcp connect error"),
            (tonic::Code::Unavailable, "etcdserver: no leader"),
            (tonic::Code::Unavailable, "etcdserver: leader changed"),
            (tonic::Code::Unavailable, "etcdserver: request timed out"),
            (tonic::Code::DeadlineExceeded, "Timeout expired"),
            (
                tonic::Code::ResourceExhausted,
                "etcdserver: too many requests",
            ),
            (tonic::Code::Unknown, "etcdserver: leader changed"),
            (tonic::Code::Internal, "h2 protocol error: connection reset"),
            (tonic::Code::Cancelled, "Timeout expired"),
            // Roles changed while the request was in flight (members bootstrapping together).
            (
                tonic::Code::InvalidArgument,
                "etcdserver: revision of auth store is old",
            ),
        ] {
            assert!(is_transient(&status(code, message)), "{code:?} {message}");
        }
        let io = etcd_client::Error::IoError(std::io::ErrorKind::ConnectionRefused.into());
        assert!(is_transient(&anyhow::Error::from(io)));
        let slow = NoAnswer {
            endpoint: "https://10.0.0.10:2379".into(),
            seconds: 5.0,
        };
        assert!(is_transient(&anyhow::Error::from(slow).context("etcd get")));
    }

    #[test]
    fn a_cancelled_request_whose_connection_died_is_transient() {
        // What etcd-client returned when the member behind the session's connection vanished.
        let mut status = tonic::Status::new(tonic::Code::Cancelled, "operation was canceled");
        status.set_source(std::sync::Arc::new(std::io::Error::other(
            "connection was not ready",
        )));
        let err = anyhow::Error::from(etcd_client::Error::GRpcStatus(status)).context("etcd put");
        assert!(is_transient(&err));
    }

    #[test]
    fn bad_requests_and_bad_data_are_not_retried() {
        for (code, message) in [
            (
                tonic::Code::InvalidArgument,
                "etcdserver: request is too large",
            ),
            (
                tonic::Code::FailedPrecondition,
                "etcdserver: requested lease not found",
            ),
            (
                tonic::Code::PermissionDenied,
                "etcdserver: permission denied",
            ),
            (
                tonic::Code::Unknown,
                "etcdserver: duplicate key given in txn request",
            ),
            (
                tonic::Code::OutOfRange,
                "etcdserver: mvcc: required revision has been compacted",
            ),
            (tonic::Code::Cancelled, "operation was canceled"),
        ] {
            assert!(!is_transient(&status(code, message)), "{code:?} {message}");
        }
        let invalid = etcd_client::Error::InvalidArgs("no key".into());
        assert!(!is_transient(&anyhow::Error::from(invalid)));
        // Errors of our own (a half-created value, a local file) are not etcd's to retry.
        let ours = anyhow::anyhow!("etcd key /molten/ca/key is missing while others exist");
        assert!(!is_transient(&ours));
        let file = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(!is_transient(&anyhow::Error::from(file)));
    }
}
