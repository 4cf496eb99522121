//! The web page at `/` and the JSON API under `/api/` that it uses (docs/DOORS.md): log in
//! with a password (a session cookie), list, mkdir, rename, delete, download with Range,
//! and uploads in chunks that resume from what the server received. Every call is a call on
//! the core ([`Home`]); the page itself is served from the binary.
//!
//! A request that changes something must carry `X-Sockit: 1` and, when the browser sends an
//! `Origin`, come from this server's own: with the SameSite=Strict cookie, no other site can
//! act for a logged-in browser. Bodies: JSON up to 64 KiB, upload chunks up to
//! [`MAX_CHUNK`], each with its length announced.

use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::cookies::{self, Sessions};
use crate::home::Home;
use crate::ops::metrics::Door;
use crate::service::session::FileService;
use crate::storage::{Entry, WirePath};
use crate::{Error, Result};

/// The largest upload chunk one request may carry.
pub(crate) const MAX_CHUNK: u64 = 16 << 20;

/// The address a request came from (a request extension set by the listener).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientIp(pub(crate) IpAddr);

/// What the page's handlers share.
pub(crate) struct Web {
    files: Arc<FileService>,
    sessions: Sessions,
}

/// The page's routes over `files`.
pub(crate) fn router(files: Arc<FileService>) -> Router {
    let web = Arc::new(Web {
        files,
        sessions: Sessions::default(),
    });
    Router::new()
        .route("/", get(|| asset("text/html", include_str!("page.html"))))
        .route(
            "/page.js",
            get(|| asset("text/javascript", include_str!("page.js"))),
        )
        .route(
            "/page.css",
            get(|| asset("text/css", include_str!("page.css"))),
        )
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .route("/api/list", get(list))
        .route("/api/mkdir", post(mkdir))
        .route("/api/rename", post(rename))
        .route("/api/delete", post(delete))
        .route("/api/file", get(super::download::download))
        .route("/api/upload", get(upload_state).put(upload_chunk))
        .layer(DefaultBodyLimit::max(64 * 1024))
        .with_state(web)
}

/// A file of the page, with headers that keep it to itself (no other origin, no framing).
async fn asset(kind: &'static str, text: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, format!("{kind}; charset=utf-8")),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; frame-ancestors 'none'".into(),
            ),
            (header::X_FRAME_OPTIONS, "DENY".into()),
            (header::CACHE_CONTROL, "no-cache".into()),
        ],
        text,
    )
        .into_response()
}

/// A core error as the page is told it: a status and `{"error": message}`.
pub(crate) struct ApiError(pub(crate) Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::AlreadyExists(_) => StatusCode::CONFLICT,
            Error::PermissionDenied(_) => StatusCode::FORBIDDEN,
            Error::BadRequest(_) | Error::DigestMismatch(_) => StatusCode::BAD_REQUEST,
            Error::QuotaExceeded(_) | Error::StorageFull(_) => StatusCode::INSUFFICIENT_STORAGE,
            Error::Busy(_) => StatusCode::LOCKED,
            Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::AuthFailed(_) | Error::AuthRequired => StatusCode::UNAUTHORIZED,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let message = match &self.0 {
            Error::AuthRequired => "log in first".to_owned(),
            e => e.to_string(),
        };
        (status, Json(json!({ "error": message }))).into_response()
    }
}

type ApiResult<T> = std::result::Result<T, ApiError>;

impl Web {
    /// The session's user and home; for a request that changes something, also the checks
    /// against other sites (the `X-Sockit` header, the `Origin`).
    pub(crate) fn caller(&self, headers: &HeaderMap, method: &Method) -> Result<(String, Home)> {
        if method != Method::GET && method != Method::HEAD {
            let marked = headers.get("x-sockit").is_some_and(|v| v == "1");
            let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
            let origin_ok = match headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
                None => true,
                Some(origin) => host.is_some_and(|host| {
                    origin == format!("https://{host}") || origin == format!("http://{host}")
                }),
            };
            if !marked || !origin_ok {
                return Err(Error::PermissionDenied(
                    "a request from another site (or without X-Sockit: 1)".into(),
                ));
            }
        }
        let token = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(cookies::token)
            .ok_or(Error::AuthRequired)?;
        self.sessions.home(token, &self.files)
    }
}

/// A path from the page, checked and jailed.
pub(crate) fn resolve(path: &str) -> Result<WirePath> {
    WirePath::root().resolve(path)
}

#[derive(Deserialize)]
struct LoginForm {
    user: String,
    password: String,
}

async fn login(
    State(web): State<Arc<Web>>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    headers: HeaderMap,
    Json(form): Json<LoginForm>,
) -> ApiResult<Response> {
    // Not logged in yet, but the same checks against other sites: no login CSRF.
    if let Err(e @ Error::PermissionDenied(_)) = web.caller(&headers, &Method::POST) {
        return Err(e.into());
    }
    let mut login = web
        .files
        .password_login(Door::Http, &form.user, form.password.into(), ip)
        .await?;
    let home = login.home(&web.files)?;
    let user = login.user(&web.files)?.name.clone();
    let token = web.sessions.add(&user, login)?;
    let space = home.space();
    let body = json!({ "user": user, "quota": space.quota, "used": space.used });
    Ok((
        [(header::SET_COOKIE, cookies::set_cookie(&token))],
        Json(body),
    )
        .into_response())
}

async fn logout(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    if let Some(token) = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(cookies::token)
    {
        web.sessions.remove(token);
    }
    (
        [(header::SET_COOKIE, cookies::set_cookie(""))],
        Json(json!({})),
    )
        .into_response()
}

#[derive(Deserialize)]
struct PathQuery {
    path: String,
}

#[derive(Serialize)]
struct Listing {
    user: String,
    path: String,
    entries: Vec<Entry>,
    quota: Option<u64>,
    used: u64,
}

async fn list(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Query(q): Query<PathQuery>,
) -> ApiResult<Json<Listing>> {
    let (user, home) = web.caller(&headers, &Method::GET)?;
    let path = resolve(&q.path)?;
    let entries = home.list(&path).await?;
    let space = home.space();
    Ok(Json(Listing {
        user,
        path: path.to_string(),
        entries,
        quota: space.quota,
        used: space.used,
    }))
}

async fn mkdir(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Json(q): Json<PathQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let (_, home) = web.caller(&headers, &Method::POST)?;
    home.mkdir(&resolve(&q.path)?, false).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct RenameForm {
    from: String,
    to: String,
}

async fn rename(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Json(q): Json<RenameForm>,
) -> ApiResult<Json<serde_json::Value>> {
    let (_, home) = web.caller(&headers, &Method::POST)?;
    home.rename(&resolve(&q.from)?, &resolve(&q.to)?).await?;
    Ok(Json(json!({})))
}

async fn delete(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Json(q): Json<PathQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let (_, home) = web.caller(&headers, &Method::POST)?;
    home.remove(&resolve(&q.path)?, true).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct UploadQuery {
    path: String,
    size: u64,
    #[serde(default)]
    offset: u64,
}

/// Where an upload stands: bytes the server holds, and whether it is committed.
#[derive(Serialize)]
struct UploadState {
    offset: u64,
    done: bool,
}

/// `GET /api/upload?path&size`: where an upload of `size` bytes to `path` resumes (0 for a
/// new one); refused at once when it cannot fit the quota.
async fn upload_state(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Query(q): Query<UploadQuery>,
) -> ApiResult<Json<UploadState>> {
    let (_, home) = web.caller(&headers, &Method::GET)?;
    let pending = home.begin_upload(&resolve(&q.path)?, q.size, true).await?;
    let offset = pending.offset;
    home.settle(pending).await;
    Ok(Json(UploadState {
        offset,
        done: false,
    }))
}

/// `PUT /api/upload?path&size&offset`: the bytes from `offset` on (the body, with its
/// length); at the last byte the file is committed under its name. An offset other than
/// what the server holds is answered 409 with the right one.
async fn upload_chunk(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Query(q): Query<UploadQuery>,
    body: Body,
) -> ApiResult<Response> {
    let (_, home) = web.caller(&headers, &Method::PUT)?;
    let len = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .ok_or_else(|| Error::BadRequest("a chunk needs its Content-Length".into()))?;
    if len > MAX_CHUNK || q.offset.checked_add(len).is_none_or(|end| end > q.size) {
        return Err(Error::TooLarge(format!(
            "a chunk is at most {MAX_CHUNK} bytes and ends by the file's size"
        ))
        .into());
    }
    let target = resolve(&q.path)?;
    let mut pending = home.begin_upload(&target, q.size, true).await?;
    if pending.offset != q.offset {
        let offset = pending.offset;
        home.settle(pending).await;
        let state = UploadState {
            offset,
            done: false,
        };
        return Ok((StatusCode::CONFLICT, Json(state)).into_response());
    }
    let stored = async {
        let mut file = home.writer(&mut pending, q.offset, q.size).await?;
        let mut body = body;
        let mut got = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| Error::Io(std::io::Error::other(e)))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            got += data.len() as u64;
            if got > len {
                return Err(Error::BadRequest(
                    "the chunk is longer than announced".into(),
                ));
            }
            file.write(&mut pending, data).await?;
        }
        let offset = q.offset + got;
        let done = offset == q.size;
        file.finish(&mut pending, done).await?;
        if got < len {
            return Err(Error::BadRequest("the chunk ended early".into()));
        }
        if done {
            home.commit(&mut pending, q.size).await?;
        }
        Ok(UploadState { offset, done })
    }
    .await;
    // The bytes that arrived stay in the partial file for the next chunk or a resume.
    home.settle(pending).await;
    Ok(Json(stored?).into_response())
}
