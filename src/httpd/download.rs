//! `GET /api/file?path=…`: a file of the user's home, streamed, with one byte range
//! (`Range: bytes=A-B`, `A-`, `-N`) for a resumed download.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::web::{ApiError, Web, resolve};

#[derive(Deserialize)]
pub(crate) struct FileQuery {
    path: String,
}

/// The bytes `start..end` of a file of `len` bytes that a `Range` value asks for; `None`
/// for a range outside the file (416), the whole file when the value is not one range of
/// bytes (a server may ignore a `Range` it does not take).
fn range(value: Option<&str>, len: u64) -> Option<(u64, u64)> {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return Some((0, len));
    };
    let Some((a, b)) = spec.split_once('-').filter(|_| !spec.contains(',')) else {
        return Some((0, len));
    };
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = match (a.parse::<u64>().ok(), b.parse::<u64>().ok()) {
        (Some(a), Some(b)) if a <= b => (a, b.saturating_add(1).min(len)),
        (Some(a), None) if b.is_empty() => (a, len),
        (None, Some(n)) if a.is_empty() => (len.saturating_sub(n), len),
        _ => return Some((0, len)),
    };
    (start < end || (start == 0 && len == 0)).then_some((start, end))
}

/// Streams the file, or the range asked for.
pub(crate) async fn download(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Query(q): Query<FileQuery>,
) -> Result<Response, ApiError> {
    let (_, home) = web.caller(&headers, &Method::GET)?;
    let path = resolve(&q.path)?;
    let (file, len) = home.open_read(&path).await?;
    let asked = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let Some((start, end)) = range(asked, len) else {
        return Ok((
            StatusCode::RANGE_NOT_SATISFIABLE,
            [(header::CONTENT_RANGE, format!("bytes */{len}"))],
        )
            .into_response());
    };
    let count = end - start;
    let name = path.name().unwrap_or("file");
    let encoded: String =
        percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC).collect();
    let mut response = Response::new(Body::from_stream(file.into_stream(start, end)));
    let h = response.headers_mut();
    let put = |h: &mut HeaderMap, k, v: String| {
        if let Ok(v) = v.parse() {
            h.insert(k, v);
        }
    };
    put(h, header::CONTENT_TYPE, "application/octet-stream".into());
    put(h, header::CONTENT_LENGTH, count.to_string());
    put(h, header::ACCEPT_RANGES, "bytes".into());
    put(
        h,
        header::CONTENT_DISPOSITION,
        format!("attachment; filename*=UTF-8''{encoded}"),
    );
    if (start, end) != (0, len) {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        put(
            response.headers_mut(),
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{len}", end - 1),
        );
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::range;

    #[test]
    fn ranges_as_browsers_and_curl_send_them() {
        assert_eq!(range(None, 10), Some((0, 10)));
        assert_eq!(range(Some("bytes=2-4"), 10), Some((2, 5)));
        assert_eq!(range(Some("bytes=2-"), 10), Some((2, 10)));
        assert_eq!(range(Some("bytes=-3"), 10), Some((7, 10)));
        assert_eq!(range(Some("bytes=5-100"), 10), Some((5, 10)));
        assert_eq!(range(Some("bytes=10-"), 10), None);
        assert_eq!(range(Some("bytes=1-2,4-5"), 10), Some((0, 10)));
        assert_eq!(range(Some("items=1-2"), 10), Some((0, 10)));
        assert_eq!(range(None, 0), Some((0, 0)));
    }
}
