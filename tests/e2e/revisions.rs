//! Revisions as the reference server has them: every upload answers a revision token; an
//! upload with it may change the report type of the keys it covers (likely to confirmed, or
//! negative), once, and add new keys. Revised keys reach phones and peers in the next files'
//! `revised_keys`, and a consumer imports them.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use enfeed::domain::config::Config;
use enfeed::domain::feed::Feed;
use enfeed::domain::key::{DiagnosisKey, ReportType};
use enfeed::ports::Clock as _;
use enfeed::services::consumer::Poll;
use enfeed_tests::fake_peer::{FakePeer, keys, plain_http};
use enfeed_tests::{NOW, TestRegion, key_json, person_keys, upload_body};
use serde_json::{Value, json};

use crate::replication::{consumer, state_store};

/// A region that pads nothing, so files hold only real keys.
async fn region(id: &str) -> TestRegion {
    let mut config = Config::new(id.parse().unwrap());
    config.padding_min = 0;
    TestRegion::with_config(config).await
}

/// A code issued with the health authority's test type.
async fn code(region: &TestRegion, test_type: &str) -> String {
    region
        .issue_code_for(json!({ "testType": test_type }))
        .await
}

/// Uploads `keys` with a fresh code of `test_type` and, if given, a revision token.
async fn upload(
    region: &TestRegion,
    keys: &[Value],
    test_type: &str,
    token: Option<&str>,
) -> (u16, Value) {
    let mut body = upload_body(keys, &["CH", "DE"], &code(region, test_type).await);
    if let Some(token) = token {
        body["revisionToken"] = json!(token);
    }
    region.publish(&body).await
}

fn token_of(answer: &Value) -> String {
    answer["revisionToken"]
        .as_str()
        .unwrap_or_else(|| panic!("no revision token in {answer}"))
        .to_string()
}

/// The newest chunk of `feed` as an independent reader sees it: Python's zipfile, the protobuf
/// wire format and the signature checked with `cryptography`, nothing of enfeed's code.
async fn newest_chunk(region: &TestRegion, feed: Feed) -> Value {
    let (index, _) = region.download_feed(feed).await;
    let newest = index.chunks.last().copied().expect("a chunk");
    let zip = region
        .get_as_admin(&feed.chunk_path(newest))
        .await
        .bytes()
        .await
        .unwrap();
    let pem = region.verification_keys().await[0].to_pem();
    let dir = tempfile::tempdir().unwrap();
    let (file, pem_file) = (dir.path().join("chunk.zip"), dir.path().join("key.pem"));
    std::fs::write(&file, zip).unwrap();
    std::fs::write(&pem_file, pem).unwrap();
    let reader = Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/smoke/gaen_check.py");
    let out = std::process::Command::new(enfeed_tests::venv_python())
        .arg(reader)
        .arg("--file")
        .arg(&file)
        .arg(&pem_file)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn key_data(keys: &[Value]) -> Vec<String> {
    let mut data: Vec<String> = keys
        .iter()
        .map(|k| k["key"].as_str().unwrap().into())
        .collect();
    data.sort();
    data
}

fn read_data(keys: &Value) -> Vec<String> {
    let mut data: Vec<String> = keys
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["keyData"].as_str().unwrap().into())
        .collect();
    data.sort();
    data
}

#[tokio::test]
async fn a_likely_diagnosis_becomes_confirmed_in_the_next_files_revised_keys() {
    let ch = region("CH").await;
    let likely = person_keys(1, 2);
    let (status, first) = upload(&ch, &likely, "likely", None).await;
    assert_eq!(
        (status, first["insertedExposures"].as_u64()),
        (200, Some(2))
    );
    let token = token_of(&first);
    ch.dataprep().await;
    let published = newest_chunk(&ch, Feed::Public).await;
    assert_eq!(read_data(&published["keys"]), key_data(&likely));
    assert!(
        published["keys"][0]["reportType"] == 2,
        "likely: {published}"
    );

    // The test comes back positive: the same keys, confirmed, and yesterday's key released
    // today.
    ch.clock.advance(3600);
    let mut second_keys = likely.clone();
    second_keys.push(key_json(9, 0));
    let (status, second) = upload(&ch, &second_keys, "confirmed", Some(&token)).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["insertedExposures"], 3);
    assert_eq!(token_of(&second).len(), token.len(), "tokens are one size");
    ch.clock.advance(24 * 3600);
    ch.dataprep().await;
    for feed in [
        Feed::Public,
        Feed::AllToAll,
        Feed::Region("DE".parse().unwrap()),
    ] {
        let file = newest_chunk(&ch, feed).await;
        assert_eq!(read_data(&file["revisedKeys"]), key_data(&likely), "{feed}");
        assert!(
            file["revisedKeys"]
                .as_array()
                .unwrap()
                .iter()
                .all(|k| k["reportType"] == 1),
            "confirmed on {feed}: {file}"
        );
        assert_eq!(
            read_data(&file["keys"]),
            key_data(&[key_json(9, 0)]),
            "{feed}"
        );
    }
    // Counted as keys once, not twice.
    assert_eq!(ch.backend.keys.count().await.unwrap().local, 3);
}

#[tokio::test]
async fn a_key_is_revised_once_along_allowed_transitions_and_bad_tokens_are_refused() {
    let ch = region("CH").await;
    let keys = person_keys(1, 2);
    let (_, first) = upload(&ch, &keys, "likely", None).await;
    let token = token_of(&first);

    // Forged, altered or another region's tokens.
    let mut altered = BASE64.decode(&token).unwrap();
    altered[30] ^= 1;
    let de = region("DE").await;
    let (_, de_answer) = upload(&de, &person_keys(1, 2), "likely", None).await;
    for bad in [
        "not a token".to_string(),
        BASE64.encode(altered),
        token_of(&de_answer),
    ] {
        let (status, answer) = upload(&ch, &keys, "confirmed", Some(&bad)).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (400, Some("invalid_revision_token"))
        );
    }
    // A token that covers none of the upload's keys is for other keys.
    let (status, answer) = upload(&ch, &person_keys(5, 2), "confirmed", Some(&token)).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (400, Some("invalid_revision_token"))
    );

    // Likely to confirmed, once.
    let (status, revised) = upload(&ch, &keys, "confirmed", Some(&token)).await;
    assert_eq!(
        (status, revised["insertedExposures"].as_u64()),
        (200, Some(2))
    );
    let (status, again) = upload(&ch, &keys, "confirmed", Some(&token)).await;
    assert_eq!(
        (status, again["code"].as_str()),
        (400, Some("key_already_revised"))
    );
    // Confirmed never goes back to likely.
    let (status, back) = upload(&ch, &keys, "likely", Some(&token_of(&revised))).await;
    assert_eq!(
        (status, back["code"].as_str()),
        (400, Some("invalid_report_type_transition"))
    );
    // Nothing the refusals carried was stored, and their codes stay unused. Published with its
    // revision in one run, a key goes out once, as revised.
    ch.clock.advance(3600);
    ch.dataprep().await;
    let files = ch.download_feed(Feed::Public).await.1;
    assert!(files.iter().all(|file| file.revised_keys.is_empty()));
    let published: Vec<DiagnosisKey> = files.into_iter().flat_map(|file| file.keys).collect();
    assert_eq!(published.len(), 2);
    assert!(
        published
            .iter()
            .all(|k| k.report_type == ReportType::ConfirmedTest)
    );
    assert_eq!(ch.backend.keys.count().await.unwrap().local, 2);
    let code = code(&ch, "confirmed").await;
    let mut body = upload_body(&keys, &["CH"], &code);
    body["revisionToken"] = json!(token);
    assert_eq!(ch.publish(&body).await.1["code"], "key_already_revised");
    let fresh = upload_body(&person_keys(6, 1), &["CH"], &code);
    assert_eq!(
        ch.publish(&fresh).await.0,
        200,
        "the refused upload left its code unused"
    );

    // A token whose keys have all expired is worth nothing.
    ch.clock.advance(ch.backend.config.retention() + 3600);
    let now = ch.clock.now();
    let (status, expired) = upload(
        &ch,
        &enfeed_tests::person_keys_at(now, 7, 1),
        "confirmed",
        Some(&token),
    )
    .await;
    assert_eq!(
        (status, expired["code"].as_str()),
        (400, Some("invalid_revision_token"))
    );
}

#[tokio::test]
async fn a_negative_test_revokes_the_keys_a_likely_diagnosis_published() {
    let ch = region("CH").await;
    let keys = person_keys(1, 2);
    let (_, first) = upload(&ch, &keys, "likely", None).await;
    ch.dataprep().await;
    ch.clock.advance(3600);
    let mut with_new = keys.clone();
    with_new.push(person_keys(2, 1)[0].clone());
    let (status, answer) = upload(&ch, &with_new, "negative", Some(&token_of(&first))).await;
    assert_eq!(
        (status, answer["insertedExposures"].as_u64()),
        (200, Some(2))
    );
    ch.dataprep().await;
    let file = newest_chunk(&ch, Feed::Public).await;
    assert!(
        file["keys"].as_array().unwrap().is_empty(),
        "nothing new: {file}"
    );
    assert_eq!(read_data(&file["revisedKeys"]), key_data(&keys));
    assert!(file["revisedKeys"][0]["reportType"] == 5, "revoked: {file}");
}

#[tokio::test]
async fn a_consumer_imports_a_peers_revised_keys_once_and_phones_get_them() {
    let ch = region("CH").await;
    let (state, _dir) = state_store();
    let de = FakePeer::start("DE").await;
    let mut likely: Vec<DiagnosisKey> = keys(10, 3);
    for key in &mut likely {
        key.report_type = ReportType::ConfirmedClinicalDiagnosis;
    }
    let confirmed: Vec<DiagnosisKey> = likely
        .iter()
        .map(|k| DiagnosisKey {
            report_type: ReportType::ConfirmedTest,
            ..k.clone()
        })
        .collect();
    de.serve_index(&[1], NOW + 600);
    de.serve_chunk(1, &likely).await;
    let pull = consumer(&ch.backend, vec![de.producer(plain_http())], state.clone());
    assert_eq!(pull.run(Poll::Now).await.peers[0].imported, 3);
    ch.dataprep().await;
    // The peer's test results came back positive.
    ch.clock.advance(600);
    let revised = de.chunk_with_revisions(&[], &confirmed, "DE").await;
    de.serve("v1/CH/keys/2", revised);
    de.serve_index(&[1, 2], NOW + 1200);
    let report = pull.run(Poll::Now).await;
    assert_eq!(report.peers[0].imported, 3, "{report:?}");
    assert_eq!(ch.backend.keys.count().await.unwrap().remote, 3);
    ch.dataprep().await;
    let (_, files) = ch.download_feed(Feed::Public).await;
    let revised: Vec<&DiagnosisKey> = files.iter().flat_map(|f| &f.revised_keys).collect();
    assert_eq!(revised.len(), 3);
    assert!(
        revised
            .iter()
            .all(|k| k.report_type == ReportType::ConfirmedTest)
    );

    // A file that holds a key and its revision (revised before it was first exported, as the
    // reference server writes it): the key is taken once, as revised.
    let mut both = keys(40, 1);
    both[0].report_type = ReportType::ConfirmedClinicalDiagnosis;
    let revised_too = vec![DiagnosisKey {
        report_type: ReportType::Revoked,
        ..both[0].clone()
    }];
    let file = de.chunk_with_revisions(&both, &revised_too, "DE").await;
    de.serve("v1/CH/keys/3", file);
    de.serve_index(&[1, 2, 3], NOW + 1800);
    assert_eq!(pull.run(Poll::Now).await.peers[0].imported, 1);
    ch.clock.advance(600);
    ch.dataprep().await;
    let (_, files) = ch.download_feed(Feed::Public).await;
    let newest = files.last().unwrap();
    assert_eq!(newest.keys, revised_too);
    assert!(newest.revised_keys.is_empty());

    // Read again from the start (a consumer that lost its place): nothing twice.
    let (fresh_state, _fresh) = state_store();
    let again = consumer(&ch.backend, vec![de.producer(plain_http())], fresh_state);
    let report = again.run(Poll::Now).await;
    assert_eq!(report.peers[0].imported, 0, "{report:?}");
    assert!(report.peers[0].error.is_none(), "{report:?}");
}
