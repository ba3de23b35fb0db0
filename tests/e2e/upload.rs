//! Uploads: authorised by one-time codes, validated by every rule, stored once.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use enfeed::domain::key::interval_of;
use enfeed_tests::{NOW, TestRegion, day_start, key_json, person_keys, upload_body};
use serde_json::{Value, json};

async fn stored_keys(region: &TestRegion) -> u64 {
    let counts = region.backend.keys.count().await.unwrap();
    counts.local + counts.remote
}

#[tokio::test]
async fn an_upload_is_stored_once_and_its_retry_inserts_nothing_twice() {
    let region = TestRegion::start("CH").await;
    let code = region.issue_code().await;
    let body = upload_body(&person_keys(1, 3), &["CH"], &code);
    let (status, mut first) = region.publish(&body).await;
    let token = first["revisionToken"].take();
    assert_eq!(
        (status, first),
        (200, json!({"insertedExposures": 3, "revisionToken": null}))
    );
    // The phone did not see the answer and sends the same upload again.
    let (status, mut retry) = region.publish(&body).await;
    assert!(retry["revisionToken"].take().is_string() && token.is_string());
    assert_eq!(
        (status, retry),
        (200, json!({"insertedExposures": 3, "revisionToken": null}))
    );
    assert_eq!(stored_keys(&region).await, 3);
    // The code cannot authorise different keys.
    let other = upload_body(&person_keys(2, 3), &["CH"], &code);
    let (status, answer) = region.publish(&other).await;
    assert_eq!((status, answer["code"].as_str()), (401, Some("code_used")));
    assert_eq!(stored_keys(&region).await, 3);
}

/// A catalogue of bad uploads: each gets a 4xx with a JSON reason, and nothing is stored (the
/// code they carry still works afterwards).
#[tokio::test]
async fn bad_uploads_get_a_4xx_with_a_reason_and_change_nothing() {
    let region = TestRegion::start("CH").await;
    let code = region.issue_code().await;
    let good = || upload_body(&person_keys(1, 2), &["CH", "DE"], &code);
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut body = good();
        edit(&mut body);
        body
    };
    // A key that breaks a rule of its own is left out (see the protocol tests); when every key
    // breaks it, the upload is refused.
    let key = |edit: &dyn Fn(&mut Value)| {
        with(&|b| {
            for key in b["temporaryExposureKeys"].as_array_mut().unwrap() {
                edit(key)
            }
        })
    };
    let today = interval_of(NOW);
    let used_code = region.issue_code().await;
    region
        .upload_with(&person_keys(9, 1), &["CH"], &used_code)
        .await;
    let stored_before = stored_keys(&region).await;

    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "short key",
            key(&|k| k["key"] = json!(BASE64.encode([1u8; 15]))),
            400,
            "bad_key_length",
        ),
        (
            "long key",
            key(&|k| k["key"] = json!(BASE64.encode([1u8; 17]))),
            400,
            "bad_key_length",
        ),
        (
            "bad base64",
            key(&|k| k["key"] = json!("%%%notbase64%%%")),
            400,
            "bad_base64",
        ),
        (
            "no keys",
            with(&|b| b["temporaryExposureKeys"] = json!([])),
            400,
            "no_keys",
        ),
        (
            "31 keys",
            with(&|b| {
                b["temporaryExposureKeys"] = json!(
                    (0..31)
                        .map(|i| key_json(100 + i, 1 + u32::from(i) % 14))
                        .collect::<Vec<_>>()
                )
            }),
            400,
            "too_many_keys",
        ),
        (
            "future key",
            key(&|k| k["rollingStartNumber"] = json!(today + 1)),
            400,
            "key_in_future",
        ),
        (
            "key too old",
            key(&|k| k["rollingStartNumber"] = json!(day_start(20))),
            400,
            "key_too_old",
        ),
        (
            "period 0",
            key(&|k| k["rollingPeriod"] = json!(0)),
            400,
            "bad_rolling_period",
        ),
        (
            "period 145",
            key(&|k| k["rollingPeriod"] = json!(145)),
            400,
            "bad_rolling_period",
        ),
        (
            "risk 9",
            key(&|k| k["transmissionRisk"] = json!(9)),
            400,
            "bad_transmission_risk",
        ),
        (
            "negative start",
            key(&|k| k["rollingStartNumber"] = json!(-5)),
            400,
            "bad_json",
        ),
        (
            "start as text",
            key(&|k| k["rollingStartNumber"] = json!("today")),
            400,
            "bad_json",
        ),
        (
            "overlapping keys",
            with(&|b| {
                b["temporaryExposureKeys"][1]["rollingStartNumber"] = json!(day_start(1) + 10)
            }),
            400,
            "overlapping_keys",
        ),
        (
            "four keys of one day",
            with(&|b| {
                b["temporaryExposureKeys"] =
                    json!((1..=4).map(|i| key_json(i, 3)).collect::<Vec<_>>())
            }),
            400,
            "too_many_same_start",
        ),
        (
            "one key twice",
            with(&|b| b["temporaryExposureKeys"] = json!([key_json(5, 2), key_json(5, 3)])),
            400,
            "duplicate_key",
        ),
        (
            "unknown field",
            with(&|b| b["surprise"] = json!(true)),
            400,
            "bad_json",
        ),
        (
            "unknown key field",
            key(&|k| k["color"] = json!("red")),
            400,
            "bad_json",
        ),
        (
            "missing keys field",
            with(&|b| {
                b.as_object_mut()
                    .unwrap()
                    .retain(|f, _| f != "temporaryExposureKeys")
            }),
            400,
            "bad_json",
        ),
        (
            "lower-case region",
            with(&|b| b["regions"] = json!(["ch"])),
            400,
            "bad_region",
        ),
        (
            "four-letter region",
            with(&|b| b["regions"] = json!(["CHEE"])),
            400,
            "bad_region",
        ),
        (
            "digit in region",
            with(&|b| b["regions"] = json!(["C1"])),
            400,
            "bad_region",
        ),
        (
            "region not text",
            with(&|b| b["regions"] = json!([41])),
            400,
            "bad_json",
        ),
        (
            "no verification",
            with(&|b| b["verificationPayload"] = json!("")),
            400,
            "missing_verification",
        ),
        (
            "negative report",
            with(&|b| b["reportType"] = json!("negative")),
            400,
            "bad_report_type",
        ),
        (
            "revision",
            with(&|b| b["revisionToken"] = json!("abc")),
            400,
            "invalid_revision_token",
        ),
        (
            "onset in future",
            with(&|b| b["symptomOnsetInterval"] = json!(today + 144)),
            400,
            "onset_in_future",
        ),
        (
            "oversize body",
            with(&|b| b["padding"] = json!("A".repeat(70_000))),
            413,
            "body_too_large",
        ),
        (
            "wrong code",
            with(&|b| b["verificationPayload"] = json!("0000000000")),
            401,
            "code_unknown",
        ),
        (
            "used code",
            with(&|b| b["verificationPayload"] = json!(used_code)),
            401,
            "code_used",
        ),
    ];
    for (name, body, status, code) in cases {
        let (got_status, answer) = region.publish(&body).await;
        assert_eq!(
            (got_status, answer["code"].as_str()),
            (status, Some(code)),
            "{name}: {answer}"
        );
        assert!(
            answer["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{name}: {answer}"
        );
        assert_eq!(
            stored_keys(&region).await,
            stored_before,
            "{name} stored something"
        );
    }
    for raw in ["", "not json", "[]", "{\"temporaryExposureKeys\": "] {
        let response = region
            .http
            .post(region.url("v1/publish"))
            .body(raw)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{raw:?}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["code"], "bad_json");
    }
    assert_eq!(stored_keys(&region).await, stored_before);
    // Nothing above used the code up.
    let (status, answer) = region.publish(&good()).await;
    assert_eq!(
        (status, answer["insertedExposures"].as_u64()),
        (200, Some(2))
    );
}

#[tokio::test]
async fn wrong_codes_are_rate_limited_even_when_sent_in_parallel() {
    let region = TestRegion::start("CH").await;
    let guesses = (0..30).map(|i| {
        let body = upload_body(&person_keys(1, 1), &["CH"], &format!("{i:010}"));
        let region = &region;
        async move { region.publish(&body).await.0 }
    });
    let mut statuses = futures::future::join_all(guesses).await;
    statuses.sort();
    let refused = statuses.iter().filter(|s| **s == 401).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((refused, limited), (10, 20), "{statuses:?}");
    // While limited, even a right code is not looked at.
    let code = region.issue_code().await;
    assert_eq!(
        region
            .publish(&upload_body(&person_keys(1, 1), &["CH"], &code))
            .await
            .0,
        429
    );
    region.clock.advance(3600);
    assert_eq!(
        region
            .publish(&upload_body(&person_keys(1, 1), &["CH"], &code))
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn codes_expire() {
    let region = TestRegion::start("CH").await;
    let code = region.issue_code().await;
    region.clock.advance(24 * 3600 + 1);
    let (status, answer) = region
        .publish(&upload_body(&person_keys(1, 1), &["CH"], &code))
        .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (401, Some("code_expired"))
    );
}

#[tokio::test]
async fn admin_routes_need_the_admin_token() {
    let region = TestRegion::start("CH").await;
    for path in ["v1/admin/codes", "v1/admin/run/dataprep"] {
        for auth in [None, Some("Bearer wrong"), Some("test-admin-token")] {
            let mut request = region.http.post(region.url(path));
            if let Some(auth) = auth {
                request = request.header("authorization", auth);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 401, "{path} with {auth:?}");
            let answer: Value = response.json().await.unwrap();
            assert_eq!(answer["code"], "unauthorized");
        }
    }
    let response = region
        .http
        .get(region.url("v1/nothing/here"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(response.json::<Value>().await.unwrap()["code"], "not_found");
}
