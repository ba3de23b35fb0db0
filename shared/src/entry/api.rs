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
//! | `GET /metrics` | operator | the metrics, as Prometheus text |
//! | `GET /health` | anyone | 200 when the store answers and data-prep is running, else 503 |
//!
//! Admin routes need `Authorization: Bearer <admin token>`. Backend feeds are served to a
//! request that carries the admin token, or that a TLS listener marked with the [`Peer`]
//! identity of an entitled consumer. Every error is JSON: `{"error": "...", "code": "..."}`.
//! Every answer carries the request's ID in `X-Request-Id`, as every log line of the request
//! does; an internal error says only that, with the ID, and leaves the detail to the log.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ipnet::IpNet;
use serde::Serialize;
use serde_json::json;
use tracing::Instrument as _;

use crate::domain::access::{AccessPolicy, Peer};
use crate::domain::client::{client_address, rate_limit_key};
use crate::domain::diagnosis::CodeRequest;
use crate::domain::feed::{BadFeedPath, Feed, Published, TEXT_INDEX};
use crate::domain::secret::{random_token, same_secret};
use crate::domain::upload::{MAX_BODY_BYTES, UploadError};
use crate::entry::backend::{Backend, VerificationKeys};
use crate::ports::{Blob, UnixSeconds, VerifyError};
use crate::services::consumer::Poll;
use crate::services::publish::{PublishError, PublishResponse, pad_answer};

/// How the API treats its callers.
#[derive(Clone, Debug)]
pub struct ApiSettings {
    /// Proxies in front of the API (CIDRs) whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<IpNet>,
    /// Time a client has to send a request's body once its headers arrived.
    pub body_timeout: Duration,
    /// Answer a chunk request with a redirect to the blob store's own short-lived address of
    /// the chunk, where it has one: for transports that cannot carry large bodies (Lambda
    /// answers at most 6 MB, a chunk may be 16 MiB).
    pub redirect_chunks: bool,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            trusted_proxies: Vec::new(),
            body_timeout: Duration::from_secs(10),
            redirect_chunks: false,
        }
    }
}

#[derive(Clone)]
struct App {
    backend: Arc<Backend>,
    access: Arc<AccessPolicy>,
    settings: Arc<ApiSettings>,
}

/// A request's ID, when the transport has one (API Gateway's); otherwise one is made.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// The header that carries a request's ID in every answer.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

tokio::task_local! {
    /// The ID of the request being answered, for internal errors to name.
    static CURRENT_REQUEST: String;
}

/// Gives every request an ID, runs it in a log span that names it, and names it in the answer.
async fn with_request_id(mut request: Request, next: Next) -> Response {
    let id = match request.extensions().get::<RequestId>() {
        Some(RequestId(id)) => id.clone(),
        None => random_token()[..16].to_string(),
    };
    request.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        path = %request.uri().path()
    );
    let mut response = CURRENT_REQUEST
        .scope(id.clone(), next.run(request))
        .instrument(span)
        .await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// The router of a backend.
pub fn router(backend: Arc<Backend>, access: AccessPolicy, settings: ApiSettings) -> Router {
    Router::new()
        .route("/v1/publish", post(publish))
        .route("/v1/verification-keys", get(verification_keys))
        .route("/v1/admin/codes", post(issue_code))
        .route("/v1/admin/run/dataprep", post(run_dataprep))
        .route("/v1/admin/run/consumer", post(run_consumer))
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/v1/keys", get(public_index))
        .route("/v1/keys/{n}", get(public_chunk))
        .route("/v1/{feed}/keys", get(backend_index))
        .route("/v1/{feed}/keys/{n}", get(backend_chunk))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .with_state(App {
            backend,
            access: Arc::new(access),
            settings: Arc::new(settings),
        })
        .layer(middleware::from_fn(with_request_id))
}

/// An error answer: a status and a JSON body naming what is wrong.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorBody {
    error: String,
    code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, error: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                error: error.into(),
                code,
                request_id: None,
            },
        }
    }

    /// A failure of the backend itself: logged with its detail, answered without it.
    fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "request failed");
        let mut error = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        );
        error.body.request_id = CURRENT_REQUEST.try_with(Clone::clone).ok();
        error
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

impl From<PublishError> for ApiError {
    fn from(e: PublishError) -> Self {
        let status = match &e {
            PublishError::Invalid(UploadError::BodyTooLarge) => StatusCode::PAYLOAD_TOO_LARGE,
            PublishError::Invalid(_) => StatusCode::BAD_REQUEST,
            PublishError::Unauthorized(VerifyError::RateLimited) => StatusCode::TOO_MANY_REQUESTS,
            PublishError::Unauthorized(VerifyError::Store(e)) | PublishError::Store(e) => {
                return Self::internal(e);
            }
            PublishError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        };
        Self::new(status, e.code(), e.to_string())
    }
}

/// The caller as rate limiting counts it (see [`crate::domain::client`]); "unknown" where the
/// transport gives no address.
fn client_of(app: &App, request: &Request) -> String {
    let Some(ConnectInfo(socket)) = request.extensions().get::<ConnectInfo<SocketAddr>>() else {
        return "unknown".to_string();
    };
    let forwarded_for: Vec<&str> = request
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect();
    let client = client_address(socket.ip(), &forwarded_for, &app.settings.trusted_proxies);
    rate_limit_key(client)
}

/// A request's body, at most `limit` bytes, within the API's body timeout. A body declared
/// larger is refused before any of it is read (and before a client waiting for `100 Continue`
/// is told to send it).
async fn read_body(app: &App, request: Request, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request body is larger than {limit} bytes"),
        )
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    // One byte past the limit tells an oversize body apart from a broken one.
    let reading = axum::body::to_bytes(request.into_body(), limit + 1);
    match tokio::time::timeout(app.settings.body_timeout, reading).await {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!(
                "the request body did not arrive within {} seconds",
                app.settings.body_timeout.as_secs()
            ),
        )),
        Ok(Err(_)) => Err(too_large()),
        Ok(Ok(body)) if body.len() > limit => Err(too_large()),
        Ok(Ok(body)) => Ok(body),
    }
}

/// An upload, or chaff (a request with a non-empty `X-Chaff` header): either way, the answer
/// is padded to a random size (see [`crate::services::publish`]).
async fn publish(State(app): State<App>, request: Request) -> Response {
    let arrived = Instant::now();
    let chaff = request
        .headers()
        .get(CHAFF_HEADER)
        .is_some_and(|value| !value.is_empty());
    let outcome = if chaff {
        // Read, so that the connection is kept as after an upload, and never looked at.
        let _ = read_body(&app, request, MAX_BODY_BYTES).await;
        Ok(app.backend.chaff(arrived).await)
    } else {
        upload(&app, request).await
    };
    let (status, mut answer) = match outcome {
        Ok(answer) => (StatusCode::OK, json!(answer)),
        Err(error) => (error.status, json!(error.body)),
    };
    pad_answer(&mut answer);
    (status, Json(answer)).into_response()
}

/// The header that marks a request as chaff.
pub const CHAFF_HEADER: &str = "x-chaff";

async fn upload(app: &App, request: Request) -> Result<PublishResponse, ApiError> {
    let client = client_of(app, &request);
    let body = read_body(app, request, MAX_BODY_BYTES).await?;
    Ok(app.backend.publish(&body, &client).await?)
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
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|token| same_secret(token, &app.access.admin_token))
}

/// Most bytes of a code request's body (`{"testType", "symptomDate"}`).
const MAX_CODE_REQUEST_BYTES: usize = 1024;

async fn issue_code(State(app): State<App>, request: Request) -> Result<Response, ApiError> {
    require_admin(&app, request.headers())?;
    let body = read_body(&app, request, MAX_CODE_REQUEST_BYTES).await?;
    let diagnosis = CodeRequest::from_body(&body)
        .and_then(|request| request.diagnosis(app.backend.clock.now()))
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.code(), e.to_string()))?;
    let code = app
        .backend
        .issue_code(diagnosis)
        .await
        .map_err(ApiError::internal)?;
    Ok((StatusCode::CREATED, Json(code)).into_response())
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

async fn metrics(State(app): State<App>, headers: HeaderMap) -> Result<Response, ApiError> {
    require_admin(&app, &headers)?;
    let text = app.backend.metrics.prometheus_text(app.backend.clock.now());
    let content_type = HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8");
    Ok(([(header::CONTENT_TYPE, content_type)], text).into_response())
}

async fn health(State(app): State<App>) -> Response {
    let health = app.backend.health().await;
    let status = if health.healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(health)).into_response()
}

/// The keys data-prep published; before its first run, those of the signer, if this entry
/// point has one (a function without access to the private keys has none).
async fn verification_keys(State(app): State<App>) -> Result<Response, ApiError> {
    let published = app
        .backend
        .feeds()
        .verification_keys()
        .await
        .map_err(ApiError::internal)?;
    if let Some(blob) = published {
        return Ok(blob_response(
            Published::VerificationKeys,
            blob,
            app.backend.clock.now(),
        ));
    }
    let keys = app.backend.verification_keys();
    if keys.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no verification keys are published yet (data-prep has not run)",
        ));
    }
    Ok(Json(VerificationKeys {
        region: app.backend.config.region,
        keys,
    })
    .into_response())
}

async fn public_index(State(app): State<App>) -> Result<Response, ApiError> {
    serve_index(&app, Feed::Public).await
}

async fn public_chunk(State(app): State<App>, Path(n): Path<String>) -> Result<Response, ApiError> {
    serve_below_feed(&app, Feed::Public, &n).await
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
    serve_below_feed(&app, feed, &n).await
}

/// What a feed publishes below its path: a chunk by number, or the text index.
async fn serve_below_feed(app: &App, feed: Feed, name: &str) -> Result<Response, ApiError> {
    match format!("{feed}/{name}").parse::<Published>() {
        Ok(Published::Chunk(_, n)) => serve_chunk(app, feed, n).await,
        Ok(Published::TextIndex(_)) => {
            let blob = app
                .backend
                .feeds()
                .text_index(feed)
                .await
                .map_err(ApiError::internal)?;
            Ok(blob_response(
                Published::TextIndex(feed),
                blob,
                app.backend.clock.now(),
            ))
        }
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{name:?} is neither a chunk number nor {TEXT_INDEX}"),
        )),
    }
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
    Ok(blob_response(
        Published::Index(feed),
        blob,
        app.backend.clock.now(),
    ))
}

async fn serve_chunk(app: &App, feed: Feed, n: u32) -> Result<Response, ApiError> {
    if app.settings.redirect_chunks {
        let url = app
            .backend
            .feeds()
            .chunk_url(feed, n, CHUNK_URL_LIFETIME)
            .await
            .map_err(ApiError::internal)?;
        if let Some(url) = url {
            return Ok(redirect(&url));
        }
    }
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
    Ok(blob_response(
        Published::Chunk(feed, n),
        blob,
        app.backend.clock.now(),
    ))
}

/// How long the address a chunk request is redirected to stays valid.
const CHUNK_URL_LIFETIME: Duration = Duration::from_secs(300);

/// A temporary redirect to `url`, which caches must not keep (the address expires).
fn redirect(url: &str) -> Response {
    match HeaderValue::from_str(url) {
        Ok(location) => (
            StatusCode::TEMPORARY_REDIRECT,
            [
                (header::LOCATION, location),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
        )
            .into_response(),
        Err(_) => {
            ApiError::internal(format!("the chunk's address {url:?} is no header")).into_response()
        }
    }
}

/// A published blob as served at `now`: a chunk may be cached until its `fresh_until`, no
/// longer.
fn blob_response(published: Published, blob: Blob, now: UnixSeconds) -> Response {
    let cache_control = blob.kind.cache_control(now);
    let mut response = Response::new(Body::from(Bytes::from(blob.bytes)));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(published.content_type()),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_str(&cache_control).expect("cache-control is ASCII"),
    );
    response
}
