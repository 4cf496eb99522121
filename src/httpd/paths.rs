//! What the HTTP door checks of a WebDAV request before dav-server sees it: paths and
//! `Destination` headers that climb or leave `/dav/`, and the length a PUT announces.

use axum::body::Body;
use headers::HeaderMapExt;
use http::{Request, Response, StatusCode, header};

use super::text;

/// Refuses a request whose path, or whose `Destination` (COPY, MOVE), climbs with `..`
/// (plain or percent-encoded), lies outside `/dav/`, or names another server. dav-server
/// would fold a `..` in; refusing it here says so plainly, before any file is looked at.
pub(super) fn check_paths<B>(req: &Request<B>) -> Option<Response<Body>> {
    if climbs(req.uri().path()) {
        return Some(text(
            StatusCode::FORBIDDEN,
            "`..` is not allowed in a path\n",
        ));
    }
    let destination = req.headers().get("destination")?;
    let Some(uri) = destination
        .to_str()
        .ok()
        .and_then(|d| d.parse::<http::Uri>().ok())
    else {
        return Some(text(StatusCode::BAD_REQUEST, "Destination is not a URL\n"));
    };
    if let Some(authority) = uri.authority() {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok());
        if host != Some(authority.as_str()) {
            return Some(text(
                StatusCode::BAD_GATEWAY,
                "Destination names another server\n",
            ));
        }
    }
    let path = uri.path();
    if climbs(path) || !(path == "/dav" || path.starts_with("/dav/")) {
        return Some(text(
            StatusCode::FORBIDDEN,
            "Destination must lie in your home, under /dav/, without `..`\n",
        ));
    }
    None
}

/// Whether a URL path has a segment that decodes to `..`, or to a name holding `/`, `\\` or
/// NUL.
fn climbs(path: &str) -> bool {
    path.split('/').any(|segment| {
        let name = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
        name == ".." || name.contains(['/', '\\', '\0'])
    })
}

/// The length a PUT announces: `Content-Length`, or macOS Finder's
/// `X-Expected-Entity-Length` for a chunked body.
pub(super) fn put_length<B>(req: &Request<B>) -> Option<u64> {
    let headers = req.headers();
    if let Some(length) = headers.typed_get::<headers::ContentLength>() {
        return Some(length.0);
    }
    headers
        .get("x-expected-entity-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}
