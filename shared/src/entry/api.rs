//! The HTTP API of a backend, one axum router for every entry point (local server and Lambda):
//!
//! | route | who | what |
//! |---|---|---|
//! | `POST /v1/publish` | phones | upload Diagnosis Keys |
//! | `GET /v1/keys`, `/v1/keys/{n}` | anyone | public feed index and chunks |
//! | `GET /v1/a2a/keys[/{n}]`, `/v1/{region}/keys[/{n}]` | peer backends | backend feeds |
//! | `GET /v1/verification-keys` | anyone | public keys that verify chunks |
//! | `POST /v1/admin/codes` | health authority | issue a one-time code |
//! | `POST /v1/admin/run/dataprep` | operator | run data-prep now |
//! | `POST /v1/admin/run/consumer` | operator | pull peers' feeds now |
//!
//! Admin routes need `Authorization: Bearer <admin token>`. Backend feeds are served to a
//! request that carries the admin token, or that a TLS listener marked with the [`Peer`]
//! identity of an entitled consumer. Every error is JSON: `{"error": "...", "code": "..."}`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;

use crate::domain::access::{AccessPolicy, Peer};
use crate::domain::digest::sha256;
use crate::domain::feed::{BadFeedPath, Feed};
use crate::domain::key::RegionId;
use crate::domain::upload::{MAX_BODY_BYTES, UploadError};
use crate::entry::backend::Backend;
use crate::ports::{Blob, CodeRefused, VerifyError};
use crate::services::consumer::Poll;
use crate::services::publish::{PublishError, PublishResponse};

#[derive(Clone)]
struct App {
    backend: Arc<Backend>,
    access: Arc<AccessPolicy>,
}

/// The router of a backend.
pub fn router(backend: Arc<Backend>, access: AccessPolicy) -> Router {
    Router::new()
        .route("/v1/publish", post(publish))
        .route("/v1/verification-keys", get(verification_keys))
        .route("/v1/admin/codes", post(issue_code))
        .route("/v1/admin/run/dataprep", post(run_dataprep))
        .route("/v1/admin/run/consumer", post(run_consumer))
        .route("/v1/keys", get(public_index))
        .route("/v1/keys/{n}", get(public_chunk))
        .route("/v1/{feed}/keys", get(backend_index))
        .route("/v1/{feed}/keys/{n}", get(backend_chunk))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .with_state(App {
            backend,
            access: Arc::new(access),
        })
}

/// An error answer: a status and a JSON body naming what is wrong.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

#[derive(Debug, Serialize)]
struct ErrorBody {
    error: String,
    code: &'static str,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, error: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                error: error.into(),
                code,
            },
        }
    }

    fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "request failed");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

impl From<PublishError> for ApiError {
    fn from(e: PublishError) -> Self {
        let message = e.to_string();
        match e {
            PublishError::Invalid(UploadError::BodyTooLarge) => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", message)
            }
            PublishError::Invalid(invalid) => {
                Self::new(StatusCode::BAD_REQUEST, invalid.code(), message)
            }
            PublishError::Unauthorized(VerifyError::RateLimited) => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message)
            }
            PublishError::Unauthorized(VerifyError::Refused(refused)) => {
                let code = match refused {
                    CodeRefused::Unknown => "code_unknown",
                    CodeRefused::Expired => "code_expired",
                    CodeRefused::Used => "code_used",
                };
                Self::new(StatusCode::UNAUTHORIZED, code, message)
            }
            PublishError::Unauthorized(VerifyError::Certificate(refused)) => {
                Self::new(StatusCode::UNAUTHORIZED, refused.code(), message)
            }
            PublishError::Unauthorized(VerifyError::Store(e)) | PublishError::Store(e) => {
                Self::internal(e)
            }
        }
    }
}

/// The caller's address, for rate limiting; "unknown" where the transport gives none.
fn client_of(request: &Request) -> String {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(
            || "unknown".to_string(),
            |ConnectInfo(addr)| addr.ip().to_string(),
        )
}

async fn publish(
    State(app): State<App>,
    request: Request,
) -> Result<Json<PublishResponse>, ApiError> {
    let client = client_of(&request);
    // Read one byte past the limit, so an oversize body is told apart from a broken one.
    let body = axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES + 1)
        .await
        .map_err(|_| PublishError::Invalid(UploadError::BodyTooLarge))?;
    Ok(Json(app.backend.publish(&body, &client).await?))
}

fn require_admin(app: &App, headers: &HeaderMap) -> Result<(), ApiError> {
    if bearer_is_admin(app, headers) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this route needs the admin bearer token",
        ))
    }
}

fn bearer_is_admin(app: &App, headers: &HeaderMap) -> bool {
    // Digests are compared, so the comparison's timing tells nothing about the token.
    let digest = |s: &str| sha256(&[s.as_bytes()]);
    let expected = &app.access.admin_token;
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|token| !expected.is_empty() && digest(token) == digest(expected))
}

async fn issue_code(
    State(app): State<App>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    require_admin(&app, &headers)?;
    let code = app.backend.issue_code().await.map_err(ApiError::internal)?;
    Ok((StatusCode::CREATED, Json(code)))
}

async fn run_dataprep(
    State(app): State<App>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    require_admin(&app, &headers)?;
    Ok(Json(
        app.backend
            .run_dataprep()
            .await
            .map_err(ApiError::internal)?,
    ))
}

async fn run_consumer(
    State(app): State<App>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    require_admin(&app, &headers)?;
    Ok(Json(app.backend.run_consumer(Poll::Now).await))
}

async fn verification_keys(State(app): State<App>) -> impl IntoResponse {
    #[derive(Serialize)]
    struct Keys {
        region: RegionId,
        keys: Vec<crate::entry::backend::PublishedKey>,
    }
    Json(Keys {
        region: app.backend.config.region,
        keys: app.backend.verification_keys(),
    })
}

async fn public_index(State(app): State<App>) -> Result<Response, ApiError> {
    serve_index(&app, Feed::Public).await
}

async fn public_chunk(State(app): State<App>, Path(n): Path<String>) -> Result<Response, ApiError> {
    serve_chunk(&app, Feed::Public, chunk_number(&n)?).await
}

async fn backend_index(
    State(app): State<App>,
    Path(feed): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let feed = backend_feed(&app, &feed, &request)?;
    serve_index(&app, feed).await
}

async fn backend_chunk(
    State(app): State<App>,
    Path((feed, n)): Path<(String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    let feed = backend_feed(&app, &feed, &request)?;
    serve_chunk(&app, feed, chunk_number(&n)?).await
}

fn chunk_number(n: &str) -> Result<u32, ApiError> {
    n.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{n:?} is not a chunk number"),
        )
    })
}

/// Resolves `/v1/{segment}/keys` to a backend feed the caller may read.
fn backend_feed(app: &App, segment: &str, request: &Request) -> Result<Feed, ApiError> {
    let feed: Feed = format!("v1/{segment}/keys")
        .parse()
        .map_err(|e: BadFeedPath| {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
        })?;
    let peer = request.extensions().get::<Peer>().copied();
    if bearer_is_admin(app, request.headers()) || app.access.may_read(feed, peer) {
        return Ok(feed);
    }
    Err(match peer {
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "backend feeds are for authenticated peer backends",
        ),
        Some(Peer(region)) => ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("a backend of region {region} may not read {feed}"),
        ),
    })
}

/// A feed's index; a feed that has had no chunk yet has an empty one.
async fn serve_index(app: &App, feed: Feed) -> Result<Response, ApiError> {
    let blob = app
        .backend
        .feeds()
        .index(feed)
        .await
        .map_err(ApiError::internal)?;
    Ok(blob_response(blob))
}

async fn serve_chunk(app: &App, feed: Feed, n: u32) -> Result<Response, ApiError> {
    let blob = app
        .backend
        .feeds()
        .chunk(feed, n)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("{} does not exist", feed.chunk_path(n)),
            )
        })?;
    Ok(blob_response(blob))
}

fn blob_response(blob: Blob) -> Response {
    let mut response = Response::new(Body::from(Bytes::from(blob.bytes)));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(blob.kind.content_type()),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(blob.kind.cache_control()),
    );
    response
}
