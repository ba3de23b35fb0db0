//! Code issuers and the operator over the HTTP API: an issuer's token issues codes and lists
//! the issuer's own codes of today, nothing else; the operator creates, lists and revokes
//! issuers; console sessions stand for the token they were opened with, and need their CSRF
//! token to change anything.

use enfeed::Config;
use enfeed_tests::{ADMIN_TOKEN, TestRegion, person_keys, upload_body};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn call(
    region: &TestRegion,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = region
        .http
        .request(method, region.url(path))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn add_issuer(region: &TestRegion, name: &str) -> String {
    let (status, body) = call(
        region,
        reqwest::Method::POST,
        "v1/admin/issuers",
        ADMIN_TOKEN,
        Some(json!({ "name": name })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["token"].as_str().unwrap().to_string()
}

async fn issue(region: &TestRegion, token: &str, body: Value) -> (StatusCode, Value) {
    call(
        region,
        reqwest::Method::POST,
        "v1/admin/codes",
        token,
        Some(body),
    )
    .await
}

async fn today(region: &TestRegion, token: &str) -> Vec<Value> {
    let (status, body) = call(region, reqwest::Method::GET, "v1/admin/codes", token, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["codes"].as_array().unwrap().clone()
}

fn statuses(codes: &[Value]) -> Vec<&str> {
    codes
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn an_issuer_issues_codes_and_sees_their_own_of_today_with_status() {
    let mut config = Config::new("CH".parse().unwrap());
    config.code_lifetime = 3600;
    let region = TestRegion::with_config(config).await;
    let ward = add_issuer(&region, "Ward 3").await;
    let lab = add_issuer(&region, "Lab").await;
    let (status, first) = issue(
        &region,
        &ward,
        json!({"testType": "confirmed", "symptomDate": "2025-06-12"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    region.clock.advance(60);
    let (_, second) = issue(&region, &ward, json!({})).await;
    issue(&region, &lab, json!({"testType": "likely"})).await;

    let codes = today(&region, &ward).await;
    assert_eq!(statuses(&codes), ["unused", "unused"]);
    assert_eq!(codes[0]["testType"], "confirmed");
    assert_eq!(codes[0]["symptomDate"], "2025-06-12");
    assert_eq!(codes[0]["expiresAt"], first["expiresAt"]);
    assert!(codes[1].get("testType").is_none());
    // The codes themselves are never shown again.
    assert!(
        !codes
            .iter()
            .any(|c| c.to_string().contains(first["code"].as_str().unwrap()))
    );
    assert_eq!(today(&region, &lab).await.len(), 1);

    // A phone uploads with the second code: it is used. The first one expires.
    let keys = person_keys(7, 3);
    let code = second["code"].as_str().unwrap();
    let (status, answer) = region.publish(&upload_body(&keys, &[], code)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(statuses(&today(&region, &ward).await), ["unused", "used"]);
    region
        .clock
        .advance(region.backend.config.code_lifetime - 60);
    assert_eq!(statuses(&today(&region, &ward).await), ["expired", "used"]);

    // The next day's list starts empty.
    region.clock.advance(86_400);
    assert!(today(&region, &ward).await.is_empty());

    // The operator's codes are nobody's list: the operator has none.
    let (status, _) = call(
        &region,
        reqwest::Method::GET,
        "v1/admin/codes",
        ADMIN_TOKEN,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn an_issuer_token_on_an_operator_route_gets_403_and_a_wrong_one_401() {
    let region = TestRegion::start("CH").await;
    let token = add_issuer(&region, "Ward 3").await;
    use reqwest::Method as M;
    let operator_routes = [
        (M::POST, "v1/admin/run/dataprep"),
        (M::POST, "v1/admin/run/consumer"),
        (M::GET, "v1/admin/status"),
        (M::GET, "v1/admin/peers"),
        (M::GET, "v1/admin/errors"),
        (M::GET, "v1/admin/issuers"),
        (M::POST, "v1/admin/issuers"),
        (M::POST, "v1/admin/issuers/Ward%203/revoke"),
        (M::GET, "metrics"),
    ];
    for (method, path) in operator_routes {
        let body = (method == M::POST).then(|| json!({"name": "x"}));
        let (status, answer) = call(&region, method.clone(), path, &token, body.clone()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {answer}");
        assert_eq!(answer["code"], "forbidden");
        let (status, _) = call(&region, method, path, "wrong", body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
    // The issuer is still there: the 403s changed nothing.
    let (_, list) = call(&region, M::GET, "v1/admin/issuers", ADMIN_TOKEN, None).await;
    assert_eq!(list["issuers"].as_array().unwrap().len(), 1);
    assert!(list["issuers"][0].get("revokedAt").is_none());
    assert!(!list.to_string().contains(&token));

    // A symptom date in the future or past 14 days is refused to an issuer too.
    for date in ["2025-06-16", "2025-05-31"] {
        let (status, answer) = issue(&region, &token, json!({"symptomDate": date})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(answer["code"], "bad_symptom_date");
    }
    assert!(today(&region, &token).await.is_empty());
}

#[tokio::test]
async fn a_revoked_issuer_is_refused_and_names_are_checked_and_never_reused() {
    let region = TestRegion::start("CH").await;
    let token = add_issuer(&region, "Ward 3").await;
    use reqwest::Method as M;
    let (status, _) = call(
        &region,
        M::POST,
        "v1/admin/issuers/Ward%203/revoke",
        ADMIN_TOKEN,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = issue(&region, &token, json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (_, list) = call(&region, M::GET, "v1/admin/issuers", ADMIN_TOKEN, None).await;
    assert!(list["issuers"][0]["revokedAt"].is_u64());

    for (name, status, code) in [
        ("Ward 3", StatusCode::CONFLICT, "issuer_exists"),
        ("", StatusCode::BAD_REQUEST, "bad_issuer_name"),
        ("a/b", StatusCode::BAD_REQUEST, "bad_issuer_name"),
        (" padded", StatusCode::BAD_REQUEST, "bad_issuer_name"),
    ] {
        let (got, answer) = call(
            &region,
            M::POST,
            "v1/admin/issuers",
            ADMIN_TOKEN,
            Some(json!({ "name": name })),
        )
        .await;
        assert_eq!(
            (got, answer["code"].as_str()),
            (status, Some(code)),
            "{name:?}"
        );
    }
    let (status, answer) = call(
        &region,
        M::POST,
        "v1/admin/issuers/nobody/revoke",
        ADMIN_TOKEN,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(answer["code"], "issuer_not_found");
}

/// Signs in on the console; returns the session cookie and the CSRF token.
/// A request as the console's browser sends it: `path` with the session `cookie`.
fn as_browser(
    region: &TestRegion,
    method: Method,
    path: &str,
    cookie: &str,
) -> reqwest::RequestBuilder {
    region
        .http
        .request(method, region.url(path))
        .header("cookie", cookie)
}

async fn sign_in(region: &TestRegion, token: &str) -> (String, String) {
    let response = region
        .http
        .post(region.url("console/login"))
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let set_cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    for flag in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(flag), "{set_cookie}");
    }
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    let session: Value = as_browser(region, Method::GET, "console/session", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (cookie, session["csrf"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn a_console_session_stands_for_its_token_and_needs_its_csrf_token_to_change_anything() {
    let region = TestRegion::start("CH").await;
    // A wrong credential learns nothing but that.
    let response = region
        .http
        .post(region.url("console/login"))
        .json(&json!({ "token": "wrong" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().get("set-cookie").is_none());
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["error"], "the credential was not accepted");
    // A sign-in that a foreign page's form could send is refused.
    let form = region
        .http
        .post(region.url("console/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("token=x")
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::FORBIDDEN);

    let (cookie, csrf) = sign_in(&region, ADMIN_TOKEN).await;
    let post = |path: &'static str| as_browser(&region, Method::POST, path, &cookie);
    let status = as_browser(&region, Method::GET, "v1/admin/status", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), StatusCode::OK);
    assert_eq!(
        post("v1/admin/run/dataprep").send().await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let foreign = post("v1/admin/run/dataprep")
        .header("x-csrf-token", &csrf)
        .header("origin", "https://elsewhere.example")
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN);
    let run = post("v1/admin/run/dataprep")
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(run.status(), StatusCode::OK);
    let added = post("v1/admin/issuers")
        .header("x-csrf-token", &csrf)
        .json(&json!({"name": "Ward 3"}))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), StatusCode::CREATED);
    let issuer_token = added.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();

    // An issuer's session opens their page, not the operator's; revoking them ends it.
    let (issuer_cookie, _) = sign_in(&region, &issuer_token).await;
    let page = |path: &'static str| as_browser(&region, Method::GET, path, &issuer_cookie);
    let issuer_page = page("console/issuer").send().await.unwrap();
    assert_eq!(issuer_page.status(), StatusCode::OK);
    let policy = issuer_page.headers()["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(policy.contains("script-src 'self'") && !policy.contains("unsafe-inline"));
    assert_eq!(issuer_page.headers()["x-frame-options"], "DENY");
    assert_eq!(
        page("console/status").send().await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        page("v1/admin/status").send().await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    post("v1/admin/issuers/Ward%203/revoke")
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let ended = no_redirects
        .get(region.url("console/issuer"))
        .header("cookie", &issuer_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), StatusCode::SEE_OTHER);
    assert_eq!(ended.headers()["location"], "/console/login?ended");
    assert_eq!(
        page("v1/admin/codes").send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );

    // Signing out ends the operator's session.
    let out = post("console/logout")
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert!(
        out.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let after = as_browser(&region, Method::GET, "v1/admin/status", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_status_counts_are_those_of_metrics() {
    let region = TestRegion::start("CH").await;
    region.upload(&person_keys(1, 4), &[]).await;
    region.upload(&person_keys(2, 2), &[]).await;
    region.clock.advance(3 * 3600);
    region.dataprep().await;
    let (_, status) = call(
        &region,
        reqwest::Method::GET,
        "v1/admin/status",
        ADMIN_TOKEN,
        None,
    )
    .await;
    let metrics = region.get_as_admin("metrics").await.text().await.unwrap();
    let sample = |series: &str| -> f64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in {metrics}"))
    };
    let accepted = sample("enfeed_uploads_total{outcome=\"accepted\"}");
    let published = sample("enfeed_keys_published_total{feed=\"v1/keys\"}");
    assert_eq!(accepted, 2.0);
    assert_eq!(published, 6.0);
    assert_eq!(status["uploads"]["accepted"], accepted);
    assert_eq!(status["keysStored"]["local"], 6);
    let total = |series: &str| -> u64 {
        status["history"][series]
            .as_array()
            .unwrap()
            .iter()
            .map(|point| point[1].as_u64().unwrap())
            .sum()
    };
    assert_eq!(total("uploadsPerHour") as f64, accepted);
    assert_eq!(total("keysPublishedPerDay") as f64, published);
    let public = status["lastDataprep"]["feeds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|feed| feed["feed"] == "v1/keys")
        .unwrap()
        .clone();
    assert_eq!(public["keys"], published);
    assert_eq!(status["signingKeys"][0]["keyId"], "CH");
}
