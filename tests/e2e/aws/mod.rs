//! The serverless deployment against a moto server: the DynamoDB, S3 and SSM adapters, the
//! Lambda handlers fed the events API Gateway and EventBridge send, and data-prep runs that
//! race or die halfway. Each test has its own moto server; nothing leaves the machine.

mod adapters;
mod code_issuers;
mod functions;
mod operations;
mod races;

use enfeed_tests::NOW;
pub use enfeed_tests::cloud::{
    BUCKET, CONSUMER_TABLE, Cloud, KEYS_PATH, ONE_RUN, TABLE, scheduled_event,
};
use rcgen::{CertificateParams, DnType, KeyPair};
use serde_json::{Value, json};

/// An API Gateway HTTP API (payload format 2.0) event, as API Gateway hands it to Lambda.
pub fn api_event(method: &str, path: &str, body: Option<&Value>, source_ip: &str) -> Value {
    let mut headers = json!({
        "accept": "*/*",
        "host": "a1b2c3d4e5.execute-api.eu-central-2.amazonaws.com",
        "user-agent": "enfeed-tests",
        "x-amzn-trace-id": "Root=1-5e6722a7-cc56xmpl46db7ae02d4da47e",
        "x-forwarded-for": source_ip,
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
    });
    let body = body.map(|b| {
        let text = b.to_string();
        headers["content-type"] = json!("application/json");
        headers["content-length"] = json!(text.len().to_string());
        text
    });
    let mut event = json!({
        "version": "2.0",
        "routeKey": format!("{method} {}", route_of(path)),
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "a1b2c3d4e5",
            "domainName": "a1b2c3d4e5.execute-api.eu-central-2.amazonaws.com",
            "domainPrefix": "a1b2c3d4e5",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": "enfeed-tests"
            },
            "requestId": "JKJaXmPLvHcESHA=",
            "routeKey": format!("{method} {}", route_of(path)),
            "stage": "$default",
            "time": "15/Jun/2025:12:00:00 +0000",
            "timeEpoch": NOW * 1000
        },
        "isBase64Encoded": false
    });
    if let Some(body) = body {
        event["body"] = json!(body);
    }
    event
}

/// The route a path matches in `template.yaml`.
fn route_of(path: &str) -> String {
    match path.split('/').collect::<Vec<_>>().as_slice() {
        ["", "v1", _, "keys"] if !path.starts_with("/v1/keys") => "/v1/{feed}/keys".into(),
        ["", "v1", _, "keys", _] => "/v1/{feed}/keys/{n}".into(),
        _ => path.into(),
    }
}

/// The same event after API Gateway's IAM authoriser let `user` through.
pub fn with_iam_caller(mut event: Value, user: &str) -> Value {
    event["requestContext"]["authorizer"] = json!({
        "iam": {
            "accessKey": "AKIAIOSFODNN7EXAMPLE",
            "accountId": "123456789012",
            "callerId": "AIDACKCEVSQ6C2EXAMPLE",
            "cognitoIdentity": null,
            "principalOrgId": null,
            "userArn": format!("arn:aws:iam::123456789012:user/{user}"),
            "userId": "AIDACKCEVSQ6C2EXAMPLE"
        }
    });
    event
}

/// `event` as API Gateway passes it behind a mutual-TLS custom domain, with a client
/// certificate whose subject is `subject` (`CN=AT,O=AGES,C=AT`: attributes separated by commas).
pub fn with_client_cert(event: Value, subject: &str) -> Value {
    let attributes: Vec<(DnType, String)> = subject
        .split(',')
        .filter_map(|part| part.split_once('='))
        .map(|(kind, value)| {
            let kind = match kind.trim() {
                "CN" => DnType::CommonName,
                "O" => DnType::OrganizationName,
                "OU" => DnType::OrganizationalUnitName,
                "C" => DnType::CountryName,
                other => panic!("no attribute {other} in test subjects"),
            };
            (kind, value.trim().to_string())
        })
        .collect();
    with_client_cert_of(event, &attributes, subject)
}

/// `event` with a client certificate of exactly `attributes`, and the subject string API
/// Gateway shows for it (`subject_dn`).
pub fn with_client_cert_of(
    mut event: Value,
    attributes: &[(DnType, String)],
    subject_dn: &str,
) -> Value {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    for (kind, value) in attributes {
        params.distinguished_name.push(kind.clone(), value.as_str());
    }
    let key = KeyPair::generate().unwrap();
    let pem = params.self_signed(&key).unwrap().pem();
    event["requestContext"]["domainName"] = json!("peers.enfeed.example");
    event["requestContext"]["authentication"] = json!({
        "clientCert": {
            "clientCertPem": pem,
            "issuerDN": "CN=enfeed peers CA,O=CH health authority",
            "serialNumber": "a1:a1:a1:a1",
            "subjectDN": subject_dn,
            "validity": {
                "notAfter": "Aug  5 00:28:21 2120 GMT",
                "notBefore": "Aug 29 00:28:21 2020 GMT"
            }
        }
    });
    event
}

/// Turns an event into the request `lambda_http` gives a handler.
pub fn lambda_request(event: Value) -> lambda_http::Request {
    let event: lambda_http::request::LambdaRequest =
        serde_json::from_value(event).expect("an API Gateway event lambda_http reads");
    event.into()
}

/// The body of a response from a handler, as JSON.
pub fn json_body(response: &lambda_http::Response<lambda_http::Body>) -> Value {
    serde_json::from_slice(response.body().as_ref()).unwrap_or(Value::Null)
}
