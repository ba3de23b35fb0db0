//! The HTTP API of a backend, one axum router for every entry point (local server and Lambda):
//!
//! | route | who | what |
//! |---|---|---|
//! | `POST /v1/publish` | phones | upload Diagnosis Keys |
//! | `GET /v1/keys`, `/v1/keys/{n}` | anyone | public feed index and chunks |
//! | `GET /v1/a2a/keys[/{n}]`, `/v1/{region}/keys[/{n}]` | peer backends | backend feeds |
//! | `GET /v1/verification-keys` | anyone | public keys that verify chunks |
//! | `POST /v1/admin/codes` | operator, code issuer | issue a one-time code |
//! | `GET /v1/admin/codes` | code issuer | the codes they issued today, with their status |
//! | `POST`, `GET /v1/issuer/codes` | code issuer | the same two, on a path of their own (on AWS, the only one their token works on) |
//! | `POST /v1/admin/run/dataprep` | operator | run data-prep now |
//! | `POST /v1/admin/run/consumer` | operator | pull peers' feeds now |
//! | `GET /v1/admin/status`, `/peers`, `/errors` | operator | the region's and its peers' status, recent errors |
//! | `GET`, `POST /v1/admin/issuers`, `POST /v1/admin/issuers/{name}/revoke` | operator | code issuers |
//! | `GET /metrics` | operator | the metrics, as Prometheus text |
//! | `GET /health` | anyone | 200 when the store answers and data-prep is running, else 503 |
//! | `/console/...` | operator, code issuer | the console's pages (see [`console`]) |
//!
//! Admin routes need `Authorization: Bearer <token>`: the admin token (the operator's), or a
//! code issuer's token where the route says so; a code issuer's token on an operator route is
//! answered 403. A console session (its cookie, and on state-changing requests its CSRF token)
//! stands for the token it was opened with. Backend feeds are served to a
//! request that carries the admin token, or that a TLS listener marked with the [`Peer`]
//! identity of an entitled consumer. Every error is JSON: `{"error": "...", "code": "..."}`.
//! Every answer carries the request's ID in `X-Request-Id`, as every log line of the request
//! does; an internal error says only that, with the ID, and leaves the detail to the log.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::Method;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::Instrument as _;

use crate::domain::access::{AccessPolicy, Peer};
use crate::domain::client::{client_address, rate_limit_key};
use crate::domain::diagnosis::CodeRequest;
use crate::domain::feed::{BadFeedPath, Feed, Published, TEXT_INDEX};
use crate::domain::secret::{random_token, same_secret};
use crate::domain::upload::{MAX_BODY_BYTES, UploadError};
use crate::entry::backend::{Backend, VerificationKeys};
use crate::entry::console::{self, BadOrigin, Caller, Delivery, Page, Sessions};
use crate::ports::{Blob, UnixSeconds, VerifyError};
use crate::services::code_issuers::{CodeIssuers, IssuerError};
use crate::services::consumer::Poll;
use crate::services::publish::{PublishError, PublishResponse, padded_answer};

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
    /// Origins of the console's static pages (`https://console.example`) that may call the API
    /// from the browser with a bearer token: answered with CORS headers, never with cookies.
    pub console_origins: Vec<HeaderValue>,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            trusted_proxies: Vec::new(),
            body_timeout: Duration::from_secs(10),
            redirect_chunks: false,
            console_origins: Vec::new(),
        }
    }
}

/// The origins of `ENFEED_CONSOLE_ORIGINS`, checked.
pub fn console_origins(origins: &[String]) -> Result<Vec<HeaderValue>, BadOrigin> {
    origins
        .iter()
        .map(|text| {
            let origin = console::origin(text)?;
            HeaderValue::from_str(&origin).map_err(|_| BadOrigin(text.clone()))
        })
        .collect()
}

/// CORS for the console's static pages: their origins may call the API with a bearer token
/// (`Authorization`, no cookies); every other origin gets no CORS header, and so no answer its
/// script may read.
fn cors(origins: &[HeaderValue]) -> tower_http::cors::CorsLayer {
    tower_http::cors::CorsLayer::new()
        .allow_origin(origins.to_vec())
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .expose_headers([axum::http::HeaderName::from_static(REQUEST_ID_HEADER)])
        .max_age(Duration::from_secs(3600))
}

#[derive(Clone)]
struct App {
    backend: Arc<Backend>,
    access: Arc<AccessPolicy>,
    settings: Arc<ApiSettings>,
    sessions: Arc<Sessions>,
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
    let cors = (!settings.console_origins.is_empty()).then(|| cors(&settings.console_origins));
    let router = Router::new()
        .route("/v1/publish", post(publish))
        .route("/v1/verification-keys", get(verification_keys))
        .route("/v1/admin/codes", post(issue_code).get(codes_today))
        .route("/v1/issuer/codes", post(issue_code).get(codes_today))
        .route("/v1/admin/run/dataprep", post(run_dataprep))
        .route("/v1/admin/run/consumer", post(run_consumer))
        .route("/v1/admin/status", get(region_status))
        .route("/v1/admin/peers", get(peers_status))
        .route("/v1/admin/errors", get(recent_errors))
        .route("/v1/admin/issuers", get(list_issuers).post(add_issuer))
        .route("/v1/admin/issuers/{name}/revoke", post(revoke_issuer))
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/v1/keys", get(public_index))
        .route("/v1/keys/{n}", get(public_chunk))
        .route("/v1/{feed}/keys", get(backend_index))
        .route("/v1/{feed}/keys/{n}", get(backend_chunk))
        .merge(console_routes())
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .with_state(App {
            backend,
            access: Arc::new(access),
            settings: Arc::new(settings),
            sessions: Arc::default(),
        })
        .layer(middleware::from_fn(with_request_id));
    match cors {
        Some(cors) => router.layer(cors),
        None => router,
    }
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
            PublishError::Invalid(_) | PublishError::Revision(_) => StatusCode::BAD_REQUEST,
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
    let (status, answer) = match outcome {
        Ok(answer) => (StatusCode::OK, padded_answer(&answer)),
        Err(error) => (error.status, padded_answer(&error.body)),
    };
    let json = HeaderValue::from_static("application/json");
    (status, [(header::CONTENT_TYPE, json)], answer).into_response()
}

/// The header that marks a request as chaff.
pub const CHAFF_HEADER: &str = "x-chaff";

async fn upload(app: &App, request: Request) -> Result<PublishResponse, ApiError> {
    let client = client_of(app, &request);
    let body = read_body(app, request, MAX_BODY_BYTES).await?;
    Ok(app.backend.publish(&body, &client).await?)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

fn bearer_is_admin(app: &App, headers: &HeaderMap) -> bool {
    bearer(headers).is_some_and(|token| same_secret(token, &app.access.admin_token))
}

fn unauthorized() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "this route needs the admin bearer token, a code issuer's token or a console session",
    )
}

fn forbidden(what: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", what)
}

/// Whom a token belongs to: the operator (the admin token), an unrevoked code issuer, or
/// nobody.
async fn caller_of_token(app: &App, token: &str) -> Result<Option<Caller>, ApiError> {
    if same_secret(token, &app.access.admin_token) {
        return Ok(Some(Caller::Operator));
    }
    let Some(issuers) = &app.backend.code_issuers else {
        return Ok(None);
    };
    let name = issuers
        .authenticate(token)
        .await
        .map_err(ApiError::internal)?;
    Ok(name.map(Caller::Issuer))
}

/// A caller whom the transport authenticated before the request reached the router: on AWS,
/// API Gateway's IAM authoriser, which lets through a route it guards only the IAM identities
/// that the operator gave a policy for it (docs/deploy.md). Nothing in a request makes one.
#[derive(Clone, Debug)]
pub struct Authenticated(pub Caller);

/// What tells who calls an admin route: the request's method and headers, and whom the
/// transport authenticated.
struct Head {
    method: Method,
    headers: HeaderMap,
    authenticated: Option<Caller>,
}

impl Head {
    fn new(method: &Method, headers: &HeaderMap, extensions: &axum::http::Extensions) -> Self {
        Self {
            method: method.clone(),
            headers: headers.clone(),
            authenticated: extensions.get::<Authenticated>().map(|a| a.0.clone()),
        }
    }

    fn of(request: &Request) -> Self {
        Self::new(request.method(), request.headers(), request.extensions())
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Head {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self::new(&parts.method, &parts.headers, &parts.extensions))
    }
}

/// Who calls an admin route: whom the transport authenticated, else the bearer token's owner,
/// else the console session's. A session of a revoked issuer is closed; a session's
/// state-changing request needs its CSRF token and the console's own origin.
async fn caller(app: &App, head: &Head) -> Result<Caller, ApiError> {
    let Head {
        method,
        headers,
        authenticated,
    } = head;
    if let Some(caller) = authenticated {
        return Ok(caller.clone());
    }
    if let Some(token) = bearer(headers) {
        return caller_of_token(app, token).await?.ok_or_else(unauthorized);
    }
    let session = session_caller(app, headers)
        .await?
        .ok_or_else(unauthorized)?;
    let changes_state = !matches!(*method, Method::GET | Method::HEAD);
    if changes_state && !(session.csrf_matches(headers) && console::same_origin(headers)) {
        return Err(forbidden(
            "a console request that changes state needs the session's CSRF token",
        ));
    }
    Ok(session.caller)
}

/// The console session a request's cookie names, if it is open and its issuer unrevoked.
async fn session_caller(
    app: &App,
    headers: &HeaderMap,
) -> Result<Option<console::Session>, ApiError> {
    let Some(session) = app.sessions.of_request(headers, app.backend.clock.now()) else {
        return Ok(None);
    };
    if let Caller::Issuer(name) = &session.caller {
        let active = match &app.backend.code_issuers {
            Some(issuers) => issuers.is_active(name).await.map_err(ApiError::internal)?,
            None => false,
        };
        if !active {
            app.sessions.close_issuer(name);
            return Ok(None);
        }
    }
    Ok(Some(session))
}

/// Lets the operator through; a code issuer gets 403, anyone else 401.
async fn require_admin(app: &App, head: &Head) -> Result<(), ApiError> {
    match caller(app, head).await? {
        Caller::Operator => Ok(()),
        Caller::Issuer(_) => Err(forbidden(
            "this route is the operator's: a code issuer may issue codes and list their own",
        )),
    }
}

/// The code issuers of this backend, or why it has none.
fn code_issuers(app: &App) -> Result<&CodeIssuers, ApiError> {
    app.backend.code_issuers.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "no_code_issuers",
            "this backend has no code issuers (they need the code pepper)",
        )
    })
}

impl From<IssuerError> for ApiError {
    fn from(e: IssuerError) -> Self {
        let status = match &e {
            IssuerError::BadName(_) => StatusCode::BAD_REQUEST,
            IssuerError::Exists(_) => StatusCode::CONFLICT,
            IssuerError::NotFound(_) => StatusCode::NOT_FOUND,
            IssuerError::Store(e) => return Self::internal(e),
        };
        Self::new(status, e.code(), e.to_string())
    }
}

/// Most bytes of a code request's body (`{"testType", "symptomDate"}`).
const MAX_CODE_REQUEST_BYTES: usize = MAX_SMALL_BODY_BYTES;

async fn issue_code(State(app): State<App>, request: Request) -> Result<Response, ApiError> {
    let caller = caller(&app, &Head::of(&request)).await?;
    let body = read_body(&app, request, MAX_CODE_REQUEST_BYTES).await?;
    let diagnosis = CodeRequest::from_body(&body)
        .and_then(|request| request.diagnosis(app.backend.clock.now()))
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.code(), e.to_string()))?;
    let code = match &caller {
        Caller::Operator => app.backend.issue_code(diagnosis).await,
        Caller::Issuer(name) => app.backend.issue_code_as(name, diagnosis).await,
    }
    .map_err(ApiError::internal)?;
    Ok((StatusCode::CREATED, Json(code)).into_response())
}

/// The codes the calling issuer issued today.
async fn codes_today(State(app): State<App>, head: Head) -> Result<Response, ApiError> {
    let Caller::Issuer(name) = caller(&app, &head).await? else {
        return Err(forbidden(
            "only a code issuer has a list of codes: each sees the codes they issued",
        ));
    };
    let codes = code_issuers(&app)?
        .codes_today(&name, app.backend.clock.now())
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(json!({ "issuer": name, "codes": codes })).into_response())
}

async fn region_status(State(app): State<App>, head: Head) -> Result<Response, ApiError> {
    require_admin(&app, &head).await?;
    let status = app.backend.status().await.map_err(ApiError::internal)?;
    Ok(Json(status).into_response())
}

async fn peers_status(State(app): State<App>, head: Head) -> Result<Response, ApiError> {
    require_admin(&app, &head).await?;
    Ok(Json(json!({ "peers": app.backend.peers().await })).into_response())
}

async fn recent_errors(State(app): State<App>, head: Head) -> Result<Response, ApiError> {
    require_admin(&app, &head).await?;
    let errors = app.backend.recent_errors.newest_first();
    Ok(Json(json!({ "errors": errors })).into_response())
}

async fn list_issuers(State(app): State<App>, head: Head) -> Result<Response, ApiError> {
    require_admin(&app, &head).await?;
    let issuers = code_issuers(&app)?.list().await?;
    Ok(Json(json!({ "issuers": issuers })).into_response())
}

/// The body of `POST /v1/admin/issuers`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewIssuerRequest {
    name: String,
}

/// Most bytes of a small JSON request (a code request, a new issuer, a sign-in).
const MAX_SMALL_BODY_BYTES: usize = 1024;

/// A small JSON request's body, parsed.
async fn read_json<T: serde::de::DeserializeOwned>(
    app: &App,
    request: Request,
) -> Result<T, ApiError> {
    let body = read_body(app, request, MAX_SMALL_BODY_BYTES).await?;
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_json", e.to_string()))
}

async fn add_issuer(State(app): State<App>, request: Request) -> Result<Response, ApiError> {
    require_admin(&app, &Head::of(&request)).await?;
    let NewIssuerRequest { name } = read_json(&app, request).await?;
    let added = code_issuers(&app)?
        .add(&name, app.backend.clock.now())
        .await?;
    tracing::info!(issuer = %name, "code issuer added");
    Ok((StatusCode::CREATED, Json(added)).into_response())
}

async fn revoke_issuer(
    State(app): State<App>,
    Path(name): Path<String>,
    head: Head,
) -> Result<Response, ApiError> {
    require_admin(&app, &head).await?;
    code_issuers(&app)?
        .revoke(&name, app.backend.clock.now())
        .await?;
    app.sessions.close_issuer(&name);
    tracing::info!(issuer = %name, "code issuer revoked");
    Ok(Json(json!({ "revoked": name })).into_response())
}

/// The console's pages, assets and sign-in, with the console's security headers.
fn console_routes() -> Router<App> {
    Router::new()
        .route("/console", get(|| async { see_other("/console/") }))
        .route("/console/", get(console_home))
        .route("/console/login", get(login_page).post(sign_in))
        .route("/console/logout", post(sign_out))
        .route("/console/session", get(session_info))
        .route("/console/assets/{name}", get(console_asset))
        .route("/console/{page}", get(console_page))
        .layer(middleware::from_fn(console::secure_headers))
}

fn see_other(to: &str) -> Response {
    match HeaderValue::from_str(to) {
        Ok(location) => (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response(),
        Err(_) => ApiError::internal(format!("{to:?} is no header")).into_response(),
    }
}

fn html(status: StatusCode, page: Page) -> Response {
    let content_type = HeaderValue::from_static("text/html; charset=utf-8");
    let html = page.html(&Delivery::Served);
    (status, [(header::CONTENT_TYPE, content_type)], html).into_response()
}

async fn console_home(State(app): State<App>, headers: HeaderMap) -> Result<Response, ApiError> {
    Ok(match session_caller(&app, &headers).await? {
        Some(session) => see_other(session.caller.home()),
        None => see_other("/console/login"),
    })
}

async fn login_page() -> Response {
    html(StatusCode::OK, Page::Login)
}

/// A page for its role: anyone else signed in is forbidden it, anyone not signed in (or whose
/// session ended) is sent to sign in.
async fn console_page(
    State(app): State<App>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some(page) = Page::named(&name) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such console page",
        ));
    };
    let Some(role) = page.role() else {
        return Ok(html(StatusCode::OK, page));
    };
    Ok(match session_caller(&app, &headers).await? {
        // A cookie that names no open session: it ended (expired, signed out, revoked).
        None if console::session_id(&headers).is_some() => see_other("/console/login?ended"),
        None => see_other("/console/login"),
        Some(session) if session.caller.role() == role => html(StatusCode::OK, page),
        Some(_) => html(StatusCode::FORBIDDEN, Page::Forbidden),
    })
}

async fn console_asset(Path(name): Path<String>) -> Result<Response, ApiError> {
    let (content_type, body) = console::asset(&name).ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such console asset")
    })?;
    Ok((
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response())
}

/// The body of a sign-in.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    token: String,
}

/// Opens a session for the owner of a token. A wrong or revoked token is told only that.
async fn sign_in(State(app): State<App>, request: Request) -> Result<Response, ApiError> {
    let json_body = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json_body || !console::same_origin(request.headers()) {
        return Err(forbidden("sign in on the console's own page"));
    }
    let SignIn { token } = read_json(&app, request).await?;
    let Some(caller) = caller_of_token(&app, token.trim()).await? else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the credential was not accepted",
        ));
    };
    let session = app.sessions.open(caller, app.backend.clock.now());
    tracing::info!(role = session.caller.role(), "console sign-in");
    let answer = json!({ "role": session.caller.role(), "home": session.caller.home() });
    Ok(([(header::SET_COOKIE, session.cookie())], Json(answer)).into_response())
}

async fn sign_out(State(app): State<App>, head: Head) -> Result<Response, ApiError> {
    caller(&app, &head).await?;
    if let Some(id) = console::session_id(&head.headers) {
        app.sessions.close(id);
    }
    let answer = json!({ "home": "/console/login" });
    Ok((
        [(header::SET_COOKIE, console::cleared_cookie())],
        Json(answer),
    )
        .into_response())
}

/// The signed-in caller's role, name and CSRF token, for the pages' script.
async fn session_info(State(app): State<App>, headers: HeaderMap) -> Result<Response, ApiError> {
    let session = session_caller(&app, &headers)
        .await?
        .ok_or_else(unauthorized)?;
    let name = match &session.caller {
        Caller::Operator => "operator".to_string(),
        Caller::Issuer(name) => name.clone(),
    };
    let answer = json!({
        "role": session.caller.role(),
        "name": name,
        "csrf": session.csrf,
        "home": session.caller.home(),
    });
    Ok(Json(answer).into_response())
}

async fn run_dataprep(State(app): State<App>, head: Head) -> Result<impl IntoResponse, ApiError> {
    require_admin(&app, &head).await?;
    Ok(Json(
        app.backend
            .run_dataprep()
            .await
            .map_err(ApiError::internal)?,
    ))
}

async fn run_consumer(State(app): State<App>, head: Head) -> Result<impl IntoResponse, ApiError> {
    require_admin(&app, &head).await?;
    Ok(Json(app.backend.run_consumer(Poll::Now).await))
}

async fn metrics(State(app): State<App>, head: Head) -> Result<Response, ApiError> {
    require_admin(&app, &head).await?;
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
