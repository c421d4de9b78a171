//! A verified file as an HTTP response: HEAD, a single `Range`, `If-None-Match` on the sha256
//! ETag, and a body streamed chunk by chunk, each chunk checked again before it is sent.

use std::io;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use tokio::sync::mpsc;

use super::access_log::LogSink;
use super::content::{ChunkedFile, Data, Verified, CHUNK};

/// Chunks read ahead of the socket (so hashing overlaps sending).
const READ_AHEAD: usize = 2;

pub fn file_response(
    file: &Verified,
    method: &Method,
    headers: &HeaderMap,
    content_type: &'static str,
    log: &LogSink,
) -> Response {
    if let Data::File(chunked) = &file.data {
        if chunked.is_changed() {
            return changed_response(&file.rel);
        }
    }
    let etag = format!("\"{}\"", file.sha256);
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|tag| tag.trim() == etag || tag.trim() == "*")
        })
    {
        return with_common(StatusCode::NOT_MODIFIED, &etag, content_type, Body::empty());
    }
    let (status, range) = match headers.get(header::RANGE) {
        None => (StatusCode::OK, 0..file.len),
        Some(value) => match value.to_str().ok().and_then(|v| parse_range(v, file.len)) {
            Some(Ok(range)) => (StatusCode::PARTIAL_CONTENT, range),
            // A syntax we do not support: the whole file, as RFC 9110 allows.
            None => (StatusCode::OK, 0..file.len),
            Some(Err(())) => {
                let mut response =
                    (StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable\n").into_response();
                response.headers_mut().insert(
                    header::CONTENT_RANGE,
                    header_value(&format!("bytes */{}", file.len)),
                );
                return response;
            }
        },
    };
    let length = range.end - range.start;
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        match &file.data {
            Data::Memory(bytes) => {
                Body::from(bytes.slice(range.start as usize..range.end as usize))
            }
            Data::File(chunked) => Body::new(stream_checked(
                chunked.clone(),
                range.clone(),
                file.rel.clone(),
                log.clone(),
            )),
        }
    };
    let mut response = with_common(status, &etag, content_type, body);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_LENGTH, header_value(&length.to_string()));
    if status == StatusCode::PARTIAL_CONTENT {
        headers.insert(
            header::CONTENT_RANGE,
            header_value(&format!(
                "bytes {}-{}/{}",
                range.start,
                range.end - 1,
                file.len
            )),
        );
    }
    response
}

fn with_common(status: StatusCode, etag: &str, content_type: &'static str, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::ETAG, header_value(etag));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).expect("digits, quotes and hex are valid header text")
}

pub fn changed_response(rel: &str) -> Response {
    let message = format!(
        "/{rel} changed on disk since molten serve verified it; it is no longer served \
         (restart molten serve to serve the new bundle)\n"
    );
    (StatusCode::SERVICE_UNAVAILABLE, message).into_response()
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` against a file of `len` bytes. `None`: not a single
/// byte range we handle (the whole file is sent); `Some(Err)`: a range outside the file.
fn parse_range(value: &str, len: u64) -> Option<Result<Range<u64>, ()>> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    let range = if first.is_empty() {
        let suffix: u64 = last.parse().ok()?;
        if suffix == 0 {
            return Some(Err(()));
        }
        len.saturating_sub(suffix)..len
    } else {
        let start: u64 = first.parse().ok()?;
        let end = if last.is_empty() {
            len
        } else {
            let last: u64 = last.parse().ok()?;
            if last < start {
                return None;
            }
            last.saturating_add(1).min(len)
        };
        start..end
    };
    if range.start >= len || range.is_empty() {
        return Some(Err(()));
    }
    Some(Ok(range))
}

/// Reads, checks and forwards the chunks covering `range` on a blocking thread. On a chunk that
/// fails its hash the body ends with an error: hyper then closes the connection short of the
/// announced length, so the client sees a failed download, never the changed bytes.
fn stream_checked(
    file: Arc<ChunkedFile>,
    range: Range<u64>,
    rel: String,
    log: LogSink,
) -> CheckedBody {
    let (tx, rx) = mpsc::channel(READ_AHEAD);
    let remaining = range.end - range.start;
    tokio::task::spawn_blocking(move || {
        let mut offset = range.start;
        while offset < range.end {
            let index = (offset / CHUNK) as usize;
            let end = ((index as u64 + 1) * CHUNK).min(range.end);
            let piece = file.read_checked(index, offset, end);
            let failed = piece.is_err();
            if let Err(err) = &piece {
                log(&format!(
                    "molten serve: /{rel}: {err}; download cut off at byte {offset}, the file is \
                     refused until molten serve restarts"
                ));
            }
            if tx.blocking_send(piece).is_err() || failed {
                return;
            }
            offset = end;
        }
    });
    CheckedBody { rx, remaining }
}

struct CheckedBody {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    remaining: u64,
}

impl http_body::Body for CheckedBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(bytes))) => {
                self.remaining = self.remaining.saturating_sub(bytes.len() as u64);
                Poll::Ready(Some(Ok(Frame::data(bytes))))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(err))),
            Poll::Ready(None) => Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "reader stopped",
            )))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_byte_ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some(Ok(0..10)));
        assert_eq!(parse_range("bytes=90-", 100), Some(Ok(90..100)));
        assert_eq!(parse_range("bytes=-10", 100), Some(Ok(90..100)));
        assert_eq!(parse_range("bytes=-1000", 100), Some(Ok(0..100)));
        assert_eq!(parse_range("bytes=50-1000", 100), Some(Ok(50..100)));
        assert_eq!(parse_range("bytes=100-", 100), Some(Err(())));
        assert_eq!(parse_range("bytes=-0", 100), Some(Err(())));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), None);
        assert_eq!(parse_range("bytes=9-1", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
        assert_eq!(parse_range("bytes=x-1", 100), None);
    }
}
