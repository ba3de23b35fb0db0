//! Code issuers on AWS, against moto: the operator manages them through the codes function's
//! IAM-authorised routes, an issuer issues and lists codes with their own bearer token on a
//! route that IAM does not guard, a revoked token is refused, an issuer is refused every
//! operator route, and the console's static pages may call it from their own origin only.

use std::sync::Arc;

use enfeed::adapters::aws::DynamoStore;
use enfeed::entry::lambda::handlers as lambda;
use enfeed::ports::{CodeIssuer, CodeIssuerStore as _, CodeStatus, StoreError};
use enfeed_tests::{NOW, person_keys, upload_body};
use serde_json::{Value, json};

use super::{Cloud, TABLE, api_event, json_body, lambda_request, with_iam_caller};

const CONSOLE: &str = "https://d111111abcdef8.cloudfront.net";

/// The codes function as deployed, with the console's static pages at [`CONSOLE`].
async fn codes_function(cloud: &Cloud) -> lambda::CodesFunction {
    let backend = Arc::new(cloud.backend().await);
    lambda::CodesFunction::new(backend, vec![CONSOLE.parse().unwrap()])
}

/// A request to the codes function; with `iam`, as API Gateway's IAM authoriser passes it,
/// with `token`, carrying that bearer token.
async fn call(
    function: &lambda::CodesFunction,
    method: &str,
    path: &str,
    body: Option<&Value>,
    iam: bool,
    token: Option<&str>,
) -> (u16, Value) {
    let mut event = api_event(method, path, body, "203.0.113.9");
    if iam {
        event = with_iam_caller(event, "operator");
    }
    if let Some(token) = token {
        event["headers"]["authorization"] = json!(format!("Bearer {token}"));
    }
    let response = function.serve(lambda_request(event)).await.unwrap();
    (response.status().as_u16(), json_body(&response))
}

#[tokio::test]
async fn the_store_keeps_issuers_by_name_and_revokes_them_once() {
    let cloud = Cloud::start().await;
    let store = DynamoStore::new(cloud.dynamo.clone(), TABLE, 14 * 86_400);
    let issuer = |name: &str, hash: u8| CodeIssuer {
        name: name.into(),
        token_hash: [hash; 32],
        created_at: NOW,
        revoked_at: None,
    };
    store.add_issuer(issuer("ward 3", 1)).await.unwrap();
    store.add_issuer(issuer("Test centre 1", 2)).await.unwrap();
    assert!(matches!(
        store.add_issuer(issuer("ward 3", 9)).await,
        Err(StoreError::Conflict(_))
    ));
    let listed = store.issuers().await.unwrap();
    assert_eq!(
        listed,
        vec![issuer("Test centre 1", 2), issuer("ward 3", 1)],
        "by name, each as it was added"
    );
    assert!(store.revoke_issuer("ward 3", NOW + 5).await.unwrap());
    assert!(store.revoke_issuer("ward 3", NOW + 9).await.unwrap());
    assert!(!store.revoke_issuer("nobody", NOW + 9).await.unwrap());
    let ward = store.issuers().await.unwrap().pop().unwrap();
    assert_eq!(
        ward.revoked_at,
        Some(NOW + 5),
        "the first revocation stands"
    );
    assert_eq!(
        store.codes_issued_by("ward 3", 0, NOW).await.unwrap(),
        vec![]
    );
}

#[tokio::test]
async fn an_issuer_token_issues_and_lists_codes_until_the_operator_revokes_it() {
    let cloud = Cloud::start().await;
    let codes = codes_function(&cloud).await;

    // Managing issuers is the operator's, through IAM: without it, nobody.
    let new = json!({"name": "Test centre 1"});
    let (status, answer) = call(&codes, "POST", "/v1/admin/issuers", Some(&new), false, None).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (status, added) = call(&codes, "POST", "/v1/admin/issuers", Some(&new), true, None).await;
    assert_eq!(status, 201, "{added}");
    let token = added["token"].as_str().unwrap().to_string();
    let (status, answer) = call(&codes, "POST", "/v1/admin/issuers", Some(&new), true, None).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (409, Some("issuer_exists"))
    );
    let (status, listed) = call(&codes, "GET", "/v1/admin/issuers", None, true, None).await;
    assert_eq!(status, 200);
    assert_eq!(listed["issuers"][0]["name"], "Test centre 1");
    assert!(listed["issuers"][0].get("revokedAt").is_none());
    assert!(
        !listed.to_string().contains(&token),
        "the token is shown once"
    );

    // The issuer issues a confirmed code with a symptom date, and lists it.
    let onset = "2025-06-13"; // two days before NOW
    let request = json!({"testType": "confirmed", "symptomDate": onset});
    let (status, issued) = call(
        &codes,
        "POST",
        "/v1/issuer/codes",
        Some(&request),
        false,
        Some(&token),
    )
    .await;
    assert_eq!(status, 201, "{issued}");
    let code = issued["code"].as_str().unwrap().to_string();
    let (status, today) = call(&codes, "GET", "/v1/issuer/codes", None, false, Some(&token)).await;
    assert_eq!(status, 200, "{today}");
    assert_eq!(today["issuer"], "Test centre 1");
    assert_eq!(today["codes"].as_array().unwrap().len(), 1);
    assert_eq!(today["codes"][0]["status"], "unused");
    assert_eq!(today["codes"][0]["testType"], "confirmed");
    assert_eq!(today["codes"][0]["symptomDate"], onset);
    assert!(
        !today.to_string().contains(&code),
        "the list never shows a code"
    );

    // A phone uploads with it: the issuer sees it used, as the store sees it.
    let ingest = lambda::HttpFunction::new(Arc::new(cloud.backend().await), Vec::new(), None);
    let upload = upload_body(&person_keys(1, 3), &["CH"], &code);
    let event = api_event("POST", "/v1/publish", Some(&upload), "198.51.100.7");
    let response = ingest.serve(lambda_request(event)).await.unwrap();
    assert_eq!(response.status(), 200, "{}", json_body(&response));
    let (_, today) = call(&codes, "GET", "/v1/issuer/codes", None, false, Some(&token)).await;
    assert_eq!(today["codes"][0]["status"], "used");
    // A code an issuing system issued over IAM is nobody's in particular.
    let (status, _) = call(&codes, "POST", "/v1/admin/codes", None, true, None).await;
    assert_eq!(status, 201);
    let (_, today) = call(&codes, "GET", "/v1/issuer/codes", None, false, Some(&token)).await;
    assert_eq!(today["codes"].as_array().unwrap().len(), 1);
    let store = DynamoStore::new(cloud.dynamo.clone(), TABLE, 14 * 86_400);
    let past_expiry = issued["expiresAt"].as_u64().unwrap() + 1;
    let later = store
        .codes_issued_by("Test centre 1", 0, past_expiry)
        .await
        .unwrap();
    assert_eq!(later[0].status, CodeStatus::Used, "a used code stays used");

    // The issuer's token opens no operator route.
    for (method, path) in [
        ("GET", "/v1/admin/issuers"),
        ("POST", "/v1/admin/issuers/Test%20centre%201/revoke"),
        ("POST", "/v1/admin/run/dataprep"),
        ("GET", "/v1/admin/status"),
        ("GET", "/metrics"),
    ] {
        let (status, answer) = call(&codes, method, path, None, false, Some(&token)).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (403, Some("forbidden")),
            "{path}"
        );
    }

    // Revoked: the token is refused from then on, and the list says when.
    let (status, _) = call(
        &codes,
        "POST",
        "/v1/admin/issuers/Test%20centre%201/revoke",
        None,
        true,
        None,
    )
    .await;
    assert_eq!(status, 200);
    for (method, path) in [("POST", "/v1/issuer/codes"), ("GET", "/v1/issuer/codes")] {
        let (status, answer) = call(&codes, method, path, None, false, Some(&token)).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (401, Some("unauthorized")),
            "{path}"
        );
    }
    let (_, listed) = call(&codes, "GET", "/v1/admin/issuers", None, true, None).await;
    assert_eq!(listed["issuers"][0]["revokedAt"], NOW);
    let (status, answer) = call(
        &codes,
        "POST",
        "/v1/admin/issuers/nobody/revoke",
        None,
        true,
        None,
    )
    .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (404, Some("issuer_not_found"))
    );
}

#[tokio::test]
async fn the_console_origin_alone_may_call_the_issuer_routes_from_a_browser() {
    let cloud = Cloud::start().await;
    let codes = codes_function(&cloud).await;
    let preflight = |origin: &str| {
        let mut event = api_event("OPTIONS", "/v1/issuer/codes", None, "203.0.113.9");
        event["headers"]["origin"] = json!(origin);
        event["headers"]["access-control-request-method"] = json!("POST");
        event["headers"]["access-control-request-headers"] = json!("authorization,content-type");
        event
    };
    let response = codes
        .serve(lambda_request(preflight(CONSOLE)))
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let headers = response.headers();
    assert_eq!(headers["access-control-allow-origin"], CONSOLE);
    let allowed = headers["access-control-allow-headers"].to_str().unwrap();
    assert!(allowed.contains("authorization"), "{allowed}");
    assert!(headers.get("access-control-allow-credentials").is_none());

    let response = codes
        .serve(lambda_request(preflight("https://evil.example")))
        .await
        .unwrap();
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );

    // The answer itself carries the header too, for the console's origin.
    let mut event = api_event("GET", "/v1/issuer/codes", None, "203.0.113.9");
    event["headers"]["origin"] = json!(CONSOLE);
    let response = codes.serve(lambda_request(event)).await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["access-control-allow-origin"], CONSOLE);
}
