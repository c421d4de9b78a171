//! Certificate expiry as `mc status` shows it, from the node records (public facts only):
//! the earliest expiry of each node's certificates, and a warning 30 days ahead, when the
//! daily renewal (which starts in the last third of the validity) has kept failing.

use time::{Duration, OffsetDateTime};

use crate::records::NodeRecord;

/// Warn this long before a node's first certificate expires.
pub const WARN_BEFORE: Duration = Duration::days(30);

/// The earliest expiry among the record's certificates (the Docker server certificate's for
/// records without the list).
pub fn earliest(record: &NodeRecord) -> Option<OffsetDateTime> {
    let listed = record
        .certificates
        .iter()
        .filter_map(|c| crate::timestamp::parse_rfc3339(&c.not_after))
        .min();
    listed.or_else(|| crate::timestamp::parse_rfc3339(&record.server_cert_expiry))
}

/// The warning for a node whose certificates expire within [`WARN_BEFORE`] (or did).
pub fn warning(name: &str, expiry: OffsetDateTime, now: OffsetDateTime) -> Option<String> {
    let left = expiry - now;
    if left <= Duration::ZERO {
        Some(format!(
            "{name}: a certificate EXPIRED at {}",
            crate::timestamp::rfc3339(expiry)
        ))
    } else if left < WARN_BEFORE {
        Some(format!(
            "{name}: a certificate expires in {} days ({}); renewal is failing: see its \
             identity step",
            left.whole_days(),
            crate::timestamp::rfc3339(expiry)
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_thirty_days_ahead_and_after_expiry() {
        let now = OffsetDateTime::now_utc();
        assert_eq!(warning("a", now + Duration::days(31), now), None);
        let soon = warning("a", now + Duration::days(12) + Duration::hours(1), now).unwrap();
        assert!(
            soon.starts_with("a: a certificate expires in 12 days"),
            "{soon}"
        );
        let gone = warning("a", now - Duration::hours(1), now).unwrap();
        assert!(gone.contains("EXPIRED"), "{gone}");
    }
}
