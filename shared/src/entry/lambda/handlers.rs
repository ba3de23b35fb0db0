//! The Lambda handlers: what each function does with the event it is given. The functions'
//! `main`s only build a [`Backend`] and hand events to these, so tests feed them the same
//! events API Gateway and EventBridge send.
//!
//! - [`serve_http`]: an API Gateway HTTP API (payload 2.0) request through the core's router
//!   (`ingest` and the feed gateway), with the caller's address for rate limiting and, behind
//!   a mutual-TLS custom domain, the peer region named by its client certificate.
//! - [`issue_code`]: the IAM-authorised route that issues a one-time code.
//! - [`run_dataprep`]: a scheduled data-prep run.
//! - [`run_consumer`]: a scheduled pull of peer feeds.

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

use crate::domain::access::Peer;
use crate::domain::key::RegionId;
use crate::entry::backend::Backend;
use crate::services::consumer::{ConsumerReport, Poll};
use crate::services::dataprep::{DataPrepError, DataPrepReport};

/// The region named by a client certificate's subject: its common name, e.g. `CN=DE,O=...`.
pub fn peer_of_subject(subject_dn: &str) -> Option<Peer> {
    subject_dn
        .split([',', '/'])
        .filter_map(|part| part.trim().strip_prefix("CN="))
        .find_map(|cn| cn.trim().parse::<RegionId>().ok())
        .map(Peer)
}

/// Serves one HTTP API request with the core's router and turns the answer into what the
/// Lambda runtime sends back to API Gateway.
pub async fn serve_http(app: Router, request: Request) -> Result<http::Response<Body>, Infallible> {
    let context = request.request_context_ref().cloned();
    let (mut parts, body) = request.into_parts();
    let mut source = None;
    if let Some(RequestContext::ApiGatewayV2(context)) = &context {
        source = context
            .http
            .source_ip
            .as_deref()
            .and_then(|ip| ip.parse::<IpAddr>().ok());
        // API Gateway has checked the certificate against the truststore; its subject names
        // the peer.
        let subject = context
            .authentication
            .as_ref()
            .and_then(|a| a.client_cert.as_ref())
            .and_then(|c| c.subject_dn.as_deref());
        if let Some(peer) = subject.and_then(peer_of_subject) {
            parts.extensions.insert(peer);
        }
    }
    let address = SocketAddr::new(source.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), 0);
    parts.extensions.insert(ConnectInfo(address));
    let request = http::Request::from_parts(parts, axum::body::Body::from(body.to_vec()));
    let response = app.oneshot(request).await?;
    Ok(lambda_http::IntoResponse::into_response(response).await)
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

/// Issues a one-time code (`POST /v1/admin/codes`, authorised by IAM in API Gateway): `201`
/// with `{"code", "expiresAt"}`, as the local server's admin route answers.
pub async fn issue_code(
    backend: &Backend,
    request: Request,
) -> Result<http::Response<Body>, Infallible> {
    let caller = iam_caller(&request).unwrap_or_else(|| "unknown".into());
    Ok(match backend.issue_code().await {
        Ok(code) => {
            tracing::info!(%caller, expires_at = code.expires_at, "one-time code issued");
            json_response(StatusCode::CREATED, &code)
        }
        Err(e) => {
            tracing::error!(%caller, error = %e, "issuing a one-time code failed");
            json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &serde_json::json!({"error": e.to_string(), "code": "internal"}),
            )
        }
    })
}

/// Runs data-prep for a scheduled event. EventBridge delivers at least once; a repeated or
/// concurrent run publishes nothing twice.
pub async fn run_dataprep(
    backend: &Backend,
    event: EventBridgeEvent,
) -> Result<DataPrepReport, DataPrepError> {
    tracing::info!(
        event = event.id.as_deref().unwrap_or("-"),
        scheduled = event.time.map(|t| t.to_rfc3339()).as_deref().unwrap_or("-"),
        "data-prep run"
    );
    backend.run_dataprep().await
}

/// Pulls the peers' feeds that are due (the core's consumer, with its place kept in the
/// consumer state table). A backend without configured peers reports that it pulled nothing.
pub async fn run_consumer(backend: &Backend, event: EventBridgeEvent) -> ConsumerReport {
    let event = event.id.as_deref().unwrap_or("-");
    if !backend.pulls_peers() {
        tracing::info!(event, "no peers are configured; nothing to pull");
    }
    let report = backend.run_consumer(Poll::WhenDue).await;
    tracing::info!(
        event,
        peers = report.peers.len(),
        imported = report.peers.iter().map(|p| p.imported).sum::<u64>(),
        "consumer run complete"
    );
    report
}

/// The router of the feed gateway and the upload function: the core's, with admin routes off
/// (they need a bearer token, and none is configured on Lambda).
pub fn http_app(backend: Arc<Backend>, a2a_consumers: Vec<RegionId>) -> Router {
    crate::entry::api::router(
        backend,
        crate::domain::access::AccessPolicy {
            admin_token: String::new(),
            a2a_consumers,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_subjects_name_peers() {
        let de: RegionId = "DE".parse().unwrap();
        assert_eq!(
            peer_of_subject("CN=DE,O=Robert Koch-Institut,C=DE"),
            Some(Peer(de))
        );
        assert_eq!(peer_of_subject("/C=DE/CN=DE"), Some(Peer(de)));
        assert_eq!(peer_of_subject("O=Nobody,CN=germany"), None);
    }
}
