//! The Lambda handlers: what each function does with the event it is given. The functions'
//! `main`s only build a [`Backend`] and hand events to these, so tests feed them the same
//! events API Gateway and EventBridge send.
//!
//! - [`HttpFunction`]: an API Gateway HTTP API (payload 2.0) request through the core's router
//!   (`ingest` and the feed gateway), with the caller's address for rate limiting and, behind
//!   a mutual-TLS custom domain, the peer region named by its client certificate.
//! - [`issue_code`]: the IAM-authorised route that issues a one-time code.
//! - [`CodesFunction`]: the codes function's routes: that one, the code issuers' routes
//!   (their bearer tokens) and the operator's IAM-authorised management of code issuers.
//! - [`run_dataprep`]: a scheduled data-prep run.
//! - [`run_consumer`]: a scheduled pull of peer feeds; it fails when a peer's pull failed, so
//!   that the function's error metric and its failure destination see it.
//!
//! After each event, [`emit_metrics`] writes what the backend counted as CloudWatch embedded
//! metric format lines.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use aws_lambda_events::eventbridge::EventBridgeEvent;
use axum::Router;
use axum::extract::ConnectInfo;
use lambda_http::http::{self, StatusCode, header};
use lambda_http::request::RequestContext;
use lambda_http::tower::ServiceExt as _;
use lambda_http::{Body, Request, RequestExt as _};
use serde::Serialize;

use rustls::pki_types::CertificateDer;

use crate::adapters::tls::listener::peer_of;
use crate::domain::access::Peer;
use crate::domain::diagnosis::CodeRequest;
use crate::domain::key::RegionId;
use crate::domain::metrics::Kind;
use crate::domain::secret::same_secret;
use crate::entry::api::{ApiSettings, Authenticated, RequestId};
use crate::entry::backend::Backend;
use crate::entry::console::Caller;
use crate::services::consumer::{ConsumerReport, Poll};
use crate::services::dataprep::{DataPrepError, DataPrepReport};

/// The peer a client certificate (PEM, as API Gateway passes it) names: the first common name
/// of its subject, read from the certificate itself as the mutual-TLS listener reads it.
pub fn peer_of_certificate(pem_text: &str) -> Option<Peer> {
    let block = pem::parse(pem_text).ok()?;
    (block.tag() == "CERTIFICATE")
        .then(|| peer_of(&CertificateDer::from(block.contents())))
        .flatten()
}

/// The header through which the CDN in front of an HTTP function proves that a request came
/// through it (a CloudFront origin custom header; CloudFront overwrites a viewer's own).
pub const ORIGIN_TOKEN_HEADER: &str = "x-enfeed-origin-token";

/// The header in which CloudFront tells the origin the viewer's address (`ip:port`).
pub const VIEWER_ADDRESS_HEADER: &str = "cloudfront-viewer-address";

/// An HTTP function (ingest, the feed gateway): the core's router over the function's backend.
/// Behind a CDN (with an origin token), it answers only requests that came through the CDN
/// and counts clients by the viewer address the CDN reports.
#[derive(Clone)]
pub struct HttpFunction {
    pub backend: Arc<Backend>,
    app: Router,
    origin_token: Option<Arc<str>>,
}

impl HttpFunction {
    /// The function over `backend`, with the peers that may read the all-to-all feed, and the
    /// token of the CDN in front of it, if one is.
    pub fn new(
        backend: Arc<Backend>,
        a2a_consumers: Vec<RegionId>,
        origin_token: Option<String>,
    ) -> Self {
        Self::with_settings(backend, a2a_consumers, origin_token, ApiSettings::default())
    }

    /// [`HttpFunction::new`], whose router is made with `settings` (chunks are redirected
    /// whatever they say).
    pub fn with_settings(
        backend: Arc<Backend>,
        a2a_consumers: Vec<RegionId>,
        origin_token: Option<String>,
        settings: ApiSettings,
    ) -> Self {
        Self {
            app: http_app(backend.clone(), a2a_consumers, settings),
            backend,
            origin_token: origin_token.map(Arc::from),
        }
    }

    /// Serves one HTTP API request (payload 2.0) with the core's router and turns the answer
    /// into what the Lambda runtime sends back to API Gateway.
    pub async fn serve(&self, request: Request) -> Result<http::Response<Body>, Infallible> {
        let context = request.request_context_ref().cloned();
        let (mut parts, body) = request.into_parts();
        let mut source = None;
        if let Some(RequestContext::ApiGatewayV2(context)) = &context {
            source = context
                .http
                .source_ip
                .as_deref()
                .and_then(|ip| ip.parse::<IpAddr>().ok());
            // API Gateway has checked the certificate against the truststore; its subject's
            // common name names the peer.
            let certificate = context
                .authentication
                .as_ref()
                .and_then(|a| a.client_cert.as_ref())
                .and_then(|c| c.client_cert_pem.as_deref());
            if let Some(peer) = certificate.and_then(peer_of_certificate) {
                parts.extensions.insert(peer);
            }
            if let Some(id) = &context.request_id {
                parts.extensions.insert(RequestId(id.clone()));
            }
            // API Gateway's IAM authoriser let the caller through a route it guards: one of the
            // operator's (the IAM policy of the route says whose).
            if let Some(iam) = context.authorizer.as_ref().and_then(|a| a.iam.as_ref()) {
                let arn = iam.user_arn.as_deref().unwrap_or("unknown");
                tracing::info!(caller = %arn, route = %parts.uri.path(), "IAM-authorised request");
                parts.extensions.insert(Authenticated(Caller::Operator));
            }
        }
        if let Some(token) = &self.origin_token {
            let header = |name| parts.headers.get(name).and_then(|v| v.to_str().ok());
            if !header(ORIGIN_TOKEN_HEADER).is_some_and(|presented| same_secret(presented, token)) {
                return Ok(json_response(
                    StatusCode::FORBIDDEN,
                    &serde_json::json!({
                        "error": "this API is reached through its CDN only",
                        "code": "not_through_cdn",
                    }),
                ));
            }
            source = header(VIEWER_ADDRESS_HEADER).and_then(viewer_ip);
        }
        let address = SocketAddr::new(source.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), 0);
        parts.extensions.insert(ConnectInfo(address));
        let request = http::Request::from_parts(parts, axum::body::Body::from(body.to_vec()));
        let response = self.app.clone().oneshot(request).await?;
        let response = lambda_http::IntoResponse::into_response(response).await;
        emit_metrics(&self.backend);
        Ok(response)
    }
}

/// The viewer's IP address in CloudFront's `CloudFront-Viewer-Address` (`198.51.100.10:46532`,
/// `2001:db8::1:46532`, or bracketed IPv6).
fn viewer_ip(value: &str) -> Option<IpAddr> {
    if let Ok(socket) = value.parse::<SocketAddr>() {
        return Some(socket.ip());
    }
    let (ip, _port) = value.rsplit_once(':')?;
    ip.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// The IAM identity behind a request (the `AWS_IAM` authoriser's caller), for the audit log.
fn iam_caller(request: &Request) -> Option<String> {
    match request.request_context_ref()? {
        RequestContext::ApiGatewayV2(context) => {
            context.authorizer.as_ref()?.iam.as_ref()?.user_arn.clone()
        }
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

fn json_response(status: StatusCode, body: &impl Serialize) -> http::Response<Body> {
    http::Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            serde_json::to_string(body).expect("answers serialize"),
        ))
        .expect("a valid response")
}

/// Issues a one-time code (`POST /v1/admin/codes`, authorised by IAM in API Gateway), with the
/// diagnosis of an optional `{"testType", "symptomDate"}` body: `201` with
/// `{"code", "expiresAt"}`, as the local server's admin route answers.
pub async fn issue_code(
    backend: &Backend,
    request: Request,
) -> Result<http::Response<Body>, Infallible> {
    let caller = iam_caller(&request).unwrap_or_else(|| "unknown".into());
    let diagnosis = match CodeRequest::from_body(request.body().as_ref())
        .and_then(|asked| asked.diagnosis(backend.clock.now()))
    {
        Ok(diagnosis) => diagnosis,
        Err(e) => {
            return Ok(json_response(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({"error": e.to_string(), "code": e.code()}),
            ));
        }
    };
    let issued = backend.issue_code(diagnosis).await;
    emit_metrics(backend);
    Ok(match issued {
        Ok(code) => {
            tracing::info!(%caller, expires_at = code.expires_at, "one-time code issued");
            json_response(StatusCode::CREATED, &code)
        }
        Err(e) => {
            tracing::error!(%caller, error = %e, "issuing a one-time code failed");
            json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &serde_json::json!({
                    "error": "internal error",
                    "code": "internal",
                    "requestId": request_id(&request),
                }),
            )
        }
    })
}

/// The codes function: `POST /v1/admin/codes` from the health authority's IAM-authorised
/// systems ([`issue_code`]), and, through the core's router, the code issuers'
/// `/v1/issuer/codes` (their bearer tokens) and the operator's management of code issuers
/// (`/v1/admin/issuers...`, which API Gateway authorises with IAM).
#[derive(Clone)]
pub struct CodesFunction {
    http: HttpFunction,
}

impl CodesFunction {
    /// The function over `backend`; the console's static pages at `console_origins` may call
    /// it from the browser.
    pub fn new(backend: Arc<Backend>, console_origins: Vec<http::HeaderValue>) -> Self {
        let settings = ApiSettings {
            console_origins,
            ..ApiSettings::default()
        };
        Self {
            http: HttpFunction::with_settings(backend, Vec::new(), None, settings),
        }
    }

    /// Answers one request of the codes function's routes.
    pub async fn serve(&self, request: Request) -> Result<http::Response<Body>, Infallible> {
        if request.method() == http::Method::POST && request.uri().path() == "/v1/admin/codes" {
            return issue_code(&self.http.backend, request).await;
        }
        self.http.serve(request).await
    }
}

/// API Gateway's ID of a request.
fn request_id(request: &Request) -> Option<String> {
    match request.request_context_ref()? {
        RequestContext::ApiGatewayV2(context) => context.request_id.clone(),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// Runs data-prep for a scheduled event, and again while a backlog larger than one run
/// remains and another run fits in `budget` (what is left of the invocation's time).
/// EventBridge delivers at least once; a repeated or concurrent run publishes nothing twice.
pub async fn run_dataprep(
    backend: &Backend,
    event: EventBridgeEvent,
    budget: std::time::Duration,
) -> Result<DataPrepReport, DataPrepError> {
    tracing::info!(
        event = event.id.as_deref().unwrap_or("-"),
        scheduled = event.time.map(|t| t.to_rfc3339()).as_deref().unwrap_or("-"),
        budget_s = budget.as_secs(),
        "data-prep run"
    );
    let report = backend.drain_dataprep(budget).await;
    emit_metrics(backend);
    report
}

/// A consumer run in which pulls from peers failed.
#[derive(Debug, thiserror::Error)]
#[error("pulls from {} peer(s) failed: {}", .failed.len(), .failed.join("; "))]
pub struct PeersFailed {
    /// Each failed peer and why.
    pub failed: Vec<String>,
}

/// Pulls the peers' feeds that are due (the core's consumer, with its place kept in the
/// consumer state table). A backend without configured peers reports that it pulled nothing.
/// The run fails when any peer's pull failed, after every peer was pulled, or when the trust
/// registry was refused (the last good one stays in force while the function is warm).
pub async fn run_consumer(
    backend: &Backend,
    event: EventBridgeEvent,
) -> Result<ConsumerReport, PeersFailed> {
    let event = event.id.as_deref().unwrap_or("-");
    if !backend.pulls_peers() {
        tracing::info!(event, "no peers are configured; nothing to pull");
    }
    // The registry first (a warm function keeps the last good one if this one is refused).
    let registry = backend.refresh_registry().await;
    let report = backend.run_consumer(Poll::WhenDue).await;
    emit_metrics(backend);
    tracing::info!(
        event,
        peers = report.peers.len(),
        imported = report.peers.iter().map(|p| p.imported).sum::<u64>(),
        "consumer run complete"
    );
    let mut failed: Vec<String> = report
        .peers
        .iter()
        .filter_map(|peer| Some(format!("{}: {}", peer.region, peer.error.as_ref()?)))
        .collect();
    if let Some(error) = registry.error {
        failed.push(format!("registry: {error}"));
    }
    if failed.is_empty() {
        Ok(report)
    } else {
        Err(PeersFailed { failed })
    }
}

/// The namespace of the region's metrics in CloudWatch.
pub const METRICS_NAMESPACE: &str = "enfeed";

/// Writes what the backend counted since the last call to standard output, one CloudWatch
/// embedded-metric-format line per sample. Each metric has the dimension `Region`, and with its
/// labels (`peer`, `outcome`, ...) also their dimension set, so that alarms can watch the
/// region as a whole or one label value.
pub fn emit_metrics(backend: &Backend) {
    for line in emf_lines(backend) {
        println!("{line}");
    }
}

/// The embedded-metric-format lines [`emit_metrics`] writes.
pub fn emf_lines(backend: &Backend) -> Vec<String> {
    let now = backend.clock.now();
    let region = backend.config.region.to_string();
    backend
        .metrics
        .take_increments(now)
        .into_iter()
        .map(|sample| {
            let mut dimensions = vec![vec!["Region".to_string()]];
            let mut labelled = vec!["Region".to_string()];
            labelled.extend(sample.labels.iter().map(|(name, _)| name.to_string()));
            if labelled.len() > 1 {
                dimensions.insert(0, labelled);
            }
            let unit = match sample.kind {
                Kind::Counter => "Count",
                Kind::Gauge if sample.name.ends_with("_seconds") => "Seconds",
                Kind::Gauge => "None",
            };
            let mut line = serde_json::json!({
                "_aws": {
                    "Timestamp": now * 1000,
                    "CloudWatchMetrics": [{
                        "Namespace": METRICS_NAMESPACE,
                        "Dimensions": dimensions,
                        "Metrics": [{"Name": sample.name, "Unit": unit}],
                    }],
                },
                "Region": region,
            });
            for (name, value) in &sample.labels {
                line[*name] = value.clone().into();
            }
            line[sample.name] = sample.value.into();
            line.to_string()
        })
        .collect()
}

/// The router of the HTTP functions: the core's, with no admin token (there is none on
/// Lambda: the operator's routes are authorised by IAM, code issuers by their own tokens), and
/// chunks answered with a redirect to a presigned address in the bucket, since Lambda answers
/// carry at most 6 MB.
fn http_app(backend: Arc<Backend>, a2a_consumers: Vec<RegionId>, settings: ApiSettings) -> Router {
    crate::entry::api::router(
        backend,
        crate::domain::access::AccessPolicy {
            admin_token: String::new(),
            a2a_consumers,
            ..Default::default()
        },
        ApiSettings {
            redirect_chunks: true,
            ..settings
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viewer_addresses_of_cloudfront_give_the_ip() {
        let ip = |s: &str| viewer_ip(s).map(|ip| ip.to_string());
        assert_eq!(ip("198.51.100.10:46532").as_deref(), Some("198.51.100.10"));
        assert_eq!(ip("2001:db8::1:46532").as_deref(), Some("2001:db8::1"));
        assert_eq!(ip("[2001:db8::1]:46532").as_deref(), Some("2001:db8::1"));
        assert_eq!(ip("nonsense"), None);
    }
}
