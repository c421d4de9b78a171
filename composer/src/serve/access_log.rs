//! The lines `molten serve` writes: one per request, plus a summary when a node has fetched its
//! Ignition config. Plain `key=value` text so operators can grep it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::nodes::NodeFile;

/// Where log lines go (stderr for the CLI; tests collect them).
pub type LogSink = Arc<dyn Fn(&str) + Send + Sync>;

/// A sink that writes each line to stderr.
pub fn stderr_sink() -> LogSink {
    Arc::new(|line: &str| eprintln!("{line}"))
}

/// What the request log records about one request.
pub struct RequestRecord<'a> {
    pub client: SocketAddr,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    /// Body bytes of the response (the `Content-Length` sent; 0 for HEAD).
    pub bytes: u64,
    pub node_file: Option<&'a NodeFile>,
}

pub fn request_line(now: SystemTime, record: &RequestRecord<'_>) -> String {
    let mut line = format!(
        "{} client={} {} {} status={} bytes={}",
        utc_timestamp(now),
        record.client,
        record.method,
        record.path,
        record.status,
        record.bytes
    );
    if let Some(file) = record.node_file {
        if let Some(node) = file.node() {
            line.push_str(&format!(" node={node}"));
        }
        if let NodeFile::Script { mac, .. } = file {
            line.push_str(&format!(" mac={mac}"));
        }
    }
    line
}

pub fn fetched_line(
    now: SystemTime,
    node: &str,
    rel: &str,
    bytes: u64,
    sha256: &str,
    fetched: usize,
    total: usize,
) -> String {
    format!(
        "{} node {node} fetched its Ignition config {rel} ({bytes} bytes, sha256 {sha256}); \
         {fetched} of {total} nodes have fetched theirs",
        utc_timestamp(now)
    )
}

pub fn install_fetched_line(
    now: SystemTime,
    node: &str,
    rel: &str,
    bytes: u64,
    sha256: &str,
) -> String {
    format!(
        "{} node {node} fetched its install-to-disk config {rel} ({bytes} bytes, sha256 {sha256})",
        utc_timestamp(now)
    )
}

/// RFC 3339 UTC with seconds, e.g. `2026-11-22T02:50:18Z`.
pub fn utc_timestamp(now: SystemTime) -> String {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar, counting in
/// 400-year eras that start on March 1st (so the leap day is the era's last day).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153; // 0 = March
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> String {
        utc_timestamp(UNIX_EPOCH + Duration::from_secs(secs))
    }

    #[test]
    fn formats_utc() {
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(at(1_795_315_818), "2026-11-22T02:50:18Z");
    }

    #[test]
    fn request_line_names_the_node() {
        let script = NodeFile::Script {
            mac: "52-54-00-12-34-56".into(),
            node: Some("n1".into()),
        };
        let record = RequestRecord {
            client: "10.0.2.15:4242".parse().unwrap(),
            method: "GET",
            path: "/nodes/52-54-00-12-34-56.ipxe",
            status: 200,
            bytes: 312,
            node_file: Some(&script),
        };
        assert_eq!(
            request_line(UNIX_EPOCH, &record),
            "1970-01-01T00:00:00Z client=10.0.2.15:4242 GET /nodes/52-54-00-12-34-56.ipxe \
             status=200 bytes=312 node=n1 mac=52-54-00-12-34-56"
        );
    }
}
