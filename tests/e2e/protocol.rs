//! The v1 protocol as deployed apps and devices speak it: files found through `index.txt`,
//! partial successes, chaff, padded answers, travellers, and the field names of the reference
//! server's decoder.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use enfeed::domain::config::Config;
use enfeed::domain::export::{ExportLimits, read_export};
use enfeed::domain::feed::Feed;
use enfeed::domain::key::ReportType;
use enfeed_tests::{TestRegion, day_start, key_json, person_keys, upload_body};
use serde_json::{Value, json};

async fn stored_keys(region: &TestRegion) -> u64 {
    let counts = region.backend.keys.count().await.unwrap();
    counts.local + counts.remote
}

/// Sends a raw upload; returns the status and the whole answer, padding included.
async fn post(region: &TestRegion, body: &Value, chaff: bool) -> (u16, Value) {
    let mut request = region.http.post(region.url("v1/publish")).json(body);
    if chaff {
        request = request.header("X-Chaff", "1");
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn an_express_device_finds_and_verifies_every_chunk_through_index_txt() {
    let region = TestRegion::start("CH").await;
    for person in 1..=3 {
        region.upload(&person_keys(person, 2), &["CH"]).await;
        region.dataprep().await;
    }
    let keys = region.verification_keys().await;
    // As a device configured with the feed's index.txt: fetch it, then each line from the host
    // root, and verify each file.
    let response = region
        .http
        .get(region.url("v1/keys/index.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    assert_eq!(response.headers()["cache-control"], "no-cache, max-age=0");
    let index = response.text().await.unwrap();
    let lines: Vec<&str> = index.lines().collect();
    assert_eq!(
        lines,
        ["v1/keys/1", "v1/keys/2", "v1/keys/3"],
        "oldest first"
    );
    let mut found = 0;
    for line in lines {
        let zip = region
            .http
            .get(region.url(line))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let file = read_export(&zip, &ExportLimits::default()).unwrap();
        file.verify(&keys).unwrap();
        found += file.keys.len();
    }
    assert_eq!(found, 6);
    // The JSON index lists the same chunks.
    let (json_index, _) = region.download_feed(Feed::Public).await;
    assert_eq!(json_index.chunks, [1, 2, 3]);
    // Backend feeds' text indexes are theirs to read only.
    let anonymous = region
        .http
        .get(region.url("v1/a2a/keys/index.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let as_admin = region.get_as_admin("v1/a2a/keys/index.txt").await;
    assert_eq!(
        as_admin.text().await.unwrap(),
        "v1/a2a/keys/1\nv1/a2a/keys/2\nv1/a2a/keys/3\n"
    );
    // A feed with no chunk yet lists none.
    let empty = region.get_as_admin("v1/DE/keys/index.txt").await;
    assert_eq!(
        (empty.status().as_u16(), empty.text().await.unwrap()),
        (200, String::new())
    );
}

#[tokio::test]
async fn valid_keys_are_kept_and_the_dropped_ones_named() {
    let region = TestRegion::start("CH").await;
    let code = region.issue_code().await;
    let mut bad_base64 = key_json(2, 2);
    bad_base64["key"] = json!("%%%");
    let too_old = key_json(3, 20);
    let body = upload_body(&[key_json(1, 1), bad_base64, too_old], &["CH"], &code);
    let (status, answer) = region.publish(&body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["insertedExposures"], 1);
    assert_eq!(answer["code"], "partial_failure");
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.contains("key 1 is not valid base64") && error.contains("key 2 ended more than"),
        "{error}"
    );
    assert_eq!(stored_keys(&region).await, 1);
    // No valid key at all: refused, and the code is still good.
    let code = region.issue_code().await;
    let mut only_bad = key_json(4, 1);
    only_bad["rollingPeriod"] = json!(0);
    let (status, answer) = region
        .publish(&upload_body(&[only_bad], &["CH"], &code))
        .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (400, Some("bad_rolling_period"))
    );
    region.upload_with(&[key_json(5, 1)], &["CH"], &code).await;
}

#[tokio::test]
async fn chaff_stores_nothing_counts_against_nothing_and_looks_like_a_success() {
    let region = TestRegion::start("CH").await;
    // A real upload first, so that chaff has something to look like.
    let code = region.issue_code().await;
    let (_, real) = post(
        &region,
        &upload_body(&person_keys(1, 3), &["CH"], &code),
        false,
    )
    .await;
    let real_token = real["revisionToken"].as_str().unwrap().len();
    let before = stored_keys(&region).await;
    // Fifty chaff requests from one address, with codes that would be wrong.
    for i in 0..50 {
        let body = upload_body(&person_keys(2, 2), &["CH"], &format!("{i:010}"));
        let (status, answer) = post(&region, &body, true).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            answer["insertedExposures"], 3,
            "shaped like the real success"
        );
        assert!(answer["padding"].is_string());
        assert!(answer.get("code").is_none(), "{answer}");
        let token = answer["revisionToken"].as_str().unwrap();
        assert_eq!(token.len(), real_token, "a token like any other");
    }
    // Even with no body at all.
    let response = region
        .http
        .post(region.url("v1/publish"))
        .header("X-Chaff", "yes")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(stored_keys(&region).await, before);
    // The address is not held back: a real upload goes through.
    region.upload(&person_keys(3, 2), &["CH"]).await;
    let metrics = region.get_as_admin("metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("enfeed_uploads_total{outcome=\"chaff\"} 51"),
        "{metrics}"
    );
    assert!(!metrics.contains("enfeed_wrong_codes_total 1"), "{metrics}");
}

#[tokio::test]
async fn every_answer_is_padded_so_that_sizes_tell_nothing() {
    let region = TestRegion::start("CH").await;
    let code = region.issue_code().await;
    let good = upload_body(&person_keys(1, 2), &["CH"], &code);
    let mut sizes = Vec::new();
    for body in [
        good.clone(),
        good,
        json!({"temporaryExposureKeys": []}),
        json!("x"),
    ] {
        let response = region
            .http
            .post(region.url("v1/publish"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap();
        let answer: Value = serde_json::from_slice(&bytes).unwrap();
        assert!(BASE64.decode(answer["padding"].as_str().unwrap()).is_ok());
        sizes.push((status, bytes.len()));
    }
    for (status, size) in &sizes {
        assert!((3000..6200).contains(size), "{status}: {size} bytes");
    }
    assert_eq!(
        sizes.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        [200, 200, 400, 400]
    );
}

#[tokio::test]
async fn a_traveller_who_declares_no_regions_reaches_the_traveller_regions() {
    let mut config = Config::new("CH".parse().unwrap());
    config.traveler_regions = vec!["DE".parse().unwrap()];
    config.padding_min = 0;
    let region = TestRegion::with_config(config).await;
    let code = region.issue_code().await;
    // As Google's v1 apps upload: no regions, traveler set.
    let body = json!({
        "temporaryExposureKeys": [key_json(1, 1)],
        "verificationPayload": code,
        "traveler": true,
    });
    assert_eq!(region.publish(&body).await.0, 200);
    let code = region.issue_code().await;
    let homebody = json!({
        "temporaryExposureKeys": [key_json(2, 1)],
        "verificationPayload": code,
    });
    assert_eq!(region.publish(&homebody).await.0, 200);
    region.dataprep().await;
    assert_eq!(
        region.feed_keys(Feed::Region("DE".parse().unwrap())).await,
        [BASE64.encode([1u8; 16])]
    );
    assert_eq!(region.feed_keys(Feed::Public).await.len(), 2);
}

#[tokio::test]
async fn field_names_are_matched_as_the_reference_decoder_matches_them() {
    let region = TestRegion::start("CH").await;
    let code = region.issue_code().await;
    let body = json!({
        "TemporaryExposureKeys": [{
            "Key": BASE64.encode([7u8; 16]),
            "RollingStartNumber": day_start(1),
            "rollingperiod": 144,
            "TRANSMISSIONRISK": 3,
        }],
        "verificationpayload": code,
        "hmackey": BASE64.encode([1u8; 32]),
        "healthAuthorityID": "ch.admin.bag",
        "symptomOnsetInterval": day_start(2),
        "padding": BASE64.encode([0u8; 100]),
    });
    let (status, answer) = region.publish(&body).await;
    assert_eq!(
        (status, answer["insertedExposures"].as_u64()),
        (200, Some(1)),
        "{answer}"
    );
    // Unknown fields are still refused, whatever their case.
    let code = region.issue_code().await;
    let mut unknown = upload_body(&person_keys(2, 1), &["CH"], &code);
    unknown["Regionz"] = json!(["DE"]);
    let (status, answer) = region.publish(&unknown).await;
    assert_eq!((status, answer["code"].as_str()), (400, Some("bad_json")));
}

/// Issues a code over the admin API with a body; returns the status and the answer.
async fn issue_code_with(region: &TestRegion, body: Value) -> (u16, Value) {
    let response = region
        .http
        .post(region.url("v1/admin/codes"))
        .bearer_auth(enfeed_tests::ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn a_code_carries_the_health_authoritys_diagnosis_to_the_keys() {
    let mut config = Config::new("CH".parse().unwrap());
    config.padding_min = 0;
    let region = TestRegion::with_config(config).await;
    // NOW is 2025-06-15: symptoms began two days before.
    let (status, issued) = issue_code_with(
        &region,
        json!({"testType": "likely", "symptomDate": "2025-06-13"}),
    )
    .await;
    assert_eq!(status, 201, "{issued}");
    // The phone claims a confirmed test and sends no transmission risk.
    let mut key = key_json(1, 1);
    key.as_object_mut().unwrap().remove("transmissionRisk");
    let mut body = upload_body(&[key], &["CH"], issued["code"].as_str().unwrap());
    body["reportType"] = json!("confirmed");
    assert_eq!(region.publish(&body).await.0, 200);
    region.dataprep().await;
    let (_, files) = region.download_feed(Feed::Public).await;
    let published = &files[0].keys[0];
    assert_eq!(
        published.report_type,
        ReportType::ConfirmedClinicalDiagnosis
    );
    assert_eq!(published.days_since_onset, Some(1));
    assert_eq!(
        published.transmission_risk, 4,
        "derived from a likely diagnosis"
    );

    // A negative test publishes nothing, and uses its code.
    let (_, negative) = issue_code_with(&region, json!({"testType": "negative"})).await;
    let code = negative["code"].as_str().unwrap();
    let body = upload_body(&person_keys(2, 2), &["CH"], code);
    let (status, answer) = region.publish(&body).await;
    assert_eq!(
        (status, answer["insertedExposures"].as_u64()),
        (200, Some(0))
    );
    assert_eq!(stored_keys(&region).await, 1);
    let other = upload_body(&person_keys(3, 2), &["CH"], code);
    assert_eq!(region.publish(&other).await.1["code"], "code_used");

    // A diagnosis the verification servers would not send is refused.
    for (body, code) in [
        (json!({"testType": "positive"}), "bad_test_type"),
        (json!({"symptomDate": "2025-06-16"}), "bad_symptom_date"),
        (json!({"testType": "likely", "onset": 1}), "bad_json"),
    ] {
        let (status, answer) = issue_code_with(&region, body).await;
        assert_eq!((status, answer["code"].as_str()), (400, Some(code)));
    }
}
