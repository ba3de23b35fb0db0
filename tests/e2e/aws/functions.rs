//! The Lambda handlers fed the events API Gateway and EventBridge send: a code issued over the
//! IAM-authorised route, uploads through the HTTP API, scheduled data-prep, and the chunks read
//! back from the bucket and verified as GAEN exports.

use std::sync::Arc;

use base64::Engine as _;
use enfeed::domain::feed::Feed;
use enfeed::domain::key::ReportType;
use enfeed::entry::lambda::handlers as lambda;
use enfeed_tests::{person_keys, upload_body};
use serde_json::{Value, json};

use super::{
    Cloud, ONE_RUN, api_event, json_body, lambda_request, scheduled_event, with_client_cert,
    with_iam_caller,
};

/// Issues a code through the codes function, as the health authority's system would.
async fn issue_code(cloud: &Cloud) -> String {
    let backend = cloud.backend().await;
    let event = with_iam_caller(
        api_event("POST", "/v1/admin/codes", None, "203.0.113.9"),
        "health-authority",
    );
    let response = lambda::issue_code(&backend, lambda_request(event))
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body = json_body(&response);
    assert!(body["expiresAt"].as_u64().unwrap() > enfeed_tests::NOW);
    body["code"].as_str().unwrap().to_string()
}

/// Sends an upload through the ingest function; returns the status and JSON answer.
async fn publish(cloud: &Cloud, body: &Value, source_ip: &str) -> (u16, Value) {
    let backend = Arc::new(cloud.backend().await);
    let ingest = lambda::HttpFunction::new(backend, Vec::new(), None);
    let event = api_event("POST", "/v1/publish", Some(body), source_ip);
    let response = ingest.serve(lambda_request(event)).await.unwrap();
    (response.status().as_u16(), json_body(&response))
}

fn base64_keys(keys: &[Value]) -> Vec<String> {
    let mut keys: Vec<String> = keys
        .iter()
        .map(|k| k["key"].as_str().unwrap().to_string())
        .collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn uploads_through_api_gateway_are_published_by_scheduled_dataprep_as_signed_chunks() {
    let cloud = Cloud::start().await;
    let alice = person_keys(1, 5);
    let bob = person_keys(2, 3);
    for (keys, regions) in [(&alice, vec!["CH", "DE"]), (&bob, vec!["CH"])] {
        let code = issue_code(&cloud).await;
        let body = upload_body(keys, &regions, &code);
        let (status, answer) = publish(&cloud, &body, "198.51.100.7").await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["insertedExposures"], keys.len());
        // A retry of the same upload gets the same answer and stores nothing more.
        let (status, answer) = publish(&cloud, &body, "198.51.100.7").await;
        assert_eq!(
            (status, answer["insertedExposures"].clone()),
            (200, json!(keys.len()))
        );
    }
    cloud.clock.advance(60);
    let backend = cloud.backend().await;
    let report = lambda::run_dataprep(&backend, scheduled_event("enfeed-dataprep"), ONE_RUN)
        .await
        .unwrap();
    let paths: Vec<_> = report.chunks.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(paths, ["v1/keys/1", "v1/a2a/keys/1", "v1/DE/keys/1"]);

    // What phones and peers download, fetched from the bucket and verified independently.
    let everyone = base64_keys(&[alice.clone(), bob.clone()].concat());
    let (index, files) = cloud.feed_files(Feed::Public).await;
    assert_eq!(index.chunks, [1]);
    assert_eq!(index.region.as_str(), "CH");
    let mut published: Vec<String> = files[0]
        .keys
        .iter()
        .map(|k| base64::engine::general_purpose::STANDARD.encode(k.key_data))
        .collect();
    published.sort();
    assert_eq!(published, everyone, "exactly the uploaded keys");
    let de: Vec<_> = cloud
        .key_counts(Feed::Region("DE".parse().unwrap()))
        .await
        .into_keys()
        .collect();
    assert_eq!(
        de,
        base64_keys(&alice),
        "the DE feed has the keys declared for DE"
    );
    assert_eq!(cloud.key_counts(Feed::AllToAll).await.len(), 8);
    assert!(cloud.chunk_versions().await.values().all(|v| *v == 1));

    // A second scheduled run with nothing new publishes nothing and keeps the indexes.
    cloud.clock.advance(3600);
    let report = lambda::run_dataprep(&backend, scheduled_event("enfeed-dataprep"), ONE_RUN)
        .await
        .unwrap();
    assert!(report.chunks.is_empty());
    assert_eq!(cloud.feed_files(Feed::Public).await.0.chunks, [1]);
}

#[tokio::test]
async fn wrong_codes_are_rate_limited_by_the_callers_address_from_the_request_context() {
    let cloud = Cloud::start().await;
    let keys = person_keys(3, 2);
    for _ in 0..10 {
        let (status, answer) = publish(
            &cloud,
            &upload_body(&keys, &["CH"], "0000000000"),
            "192.0.2.1",
        )
        .await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (401, Some("code_unknown"))
        );
    }
    let (status, answer) = publish(
        &cloud,
        &upload_body(&keys, &["CH"], "0000000000"),
        "192.0.2.1",
    )
    .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (429, Some("rate_limited"))
    );
    // Another address is not held back, and a good code from it goes through.
    let code = issue_code(&cloud).await;
    let (status, _) = publish(&cloud, &upload_body(&keys, &["CH"], &code), "192.0.2.2").await;
    assert_eq!(status, 200);
    // The same code again for a different upload is refused.
    let other = person_keys(4, 2);
    let (status, answer) = publish(&cloud, &upload_body(&other, &["CH"], &code), "192.0.2.2").await;
    assert_eq!((status, answer["code"].as_str()), (401, Some("code_used")));
    // A malformed upload is told why, as by the local server.
    let (status, answer) =
        publish(&cloud, &json!({"temporaryExposureKeys": []}), "192.0.2.3").await;
    assert_eq!(status, 400, "{answer}");
}

#[tokio::test]
async fn the_feed_gateway_serves_backend_feeds_to_entitled_peers_only() {
    let cloud = Cloud::start().await;
    let code = issue_code(&cloud).await;
    let (status, _) = publish(
        &cloud,
        &upload_body(&person_keys(5, 2), &["CH", "DE"], &code),
        "198.51.100.7",
    )
    .await;
    assert_eq!(status, 200);
    cloud.clock.advance(60);
    let backend = Arc::new(cloud.backend().await);
    backend.run_dataprep().await.unwrap();
    // The gateway: no signing keys, read access to the bucket, AT entitled to all-to-all.
    let mut settings = cloud.settings.clone();
    settings.signing_keys_path = None;
    let gateway =
        enfeed::entry::lambda::backend(cloud.config(), &settings, &cloud.sdk, cloud.clock.clone())
            .await
            .unwrap();
    let gateway = Arc::new(gateway);
    let gateway = lambda::HttpFunction::new(gateway, settings.a2a_consumers.clone(), None);
    let get = |path: &str, subject: Option<&str>| {
        let event = api_event("GET", path, None, "203.0.113.50");
        let event = match subject {
            Some(subject) => with_client_cert(event, subject),
            None => event,
        };
        let gateway = gateway.clone();
        async move { gateway.serve(lambda_request(event)).await }
    };
    let cases = [
        ("/v1/a2a/keys", Some("CN=AT,O=AGES,C=AT"), 200),
        // Chunks: a redirect to a presigned address in the bucket.
        ("/v1/a2a/keys/1", Some("CN=AT,O=AGES,C=AT"), 307),
        ("/v1/a2a/keys", Some("CN=CZ,O=UZIS,C=CZ"), 403),
        ("/v1/a2a/keys", None, 401),
        ("/v1/DE/keys/1", Some("CN=DE,O=RKI,C=DE"), 307),
        ("/v1/DE/keys/1", Some("CN=AT,O=AGES,C=AT"), 403),
        ("/v1/DE/keys/2", Some("CN=DE,O=RKI,C=DE"), 404),
    ];
    for (path, subject, status) in cases {
        let response = get(path, subject).await.unwrap();
        assert_eq!(response.status(), status, "{path} as {subject:?}");
    }
    let redirect = get("/v1/DE/keys/1", Some("CN=DE,O=RKI,C=DE"))
        .await
        .unwrap();
    let chunk = reqwest::get(redirect.headers()["location"].to_str().unwrap())
        .await
        .unwrap();
    assert_eq!(chunk.headers()["content-type"], "application/zip");
    let chunk = chunk.bytes().await.unwrap();
    let file = enfeed::domain::export::read_export(&chunk, &Default::default()).unwrap();
    file.verify(&cloud.verification_keys()).unwrap();
    assert_eq!(file.keys.len(), 2);
}

#[tokio::test]
async fn the_consumer_runs_on_schedule_and_reports_that_no_peers_are_configured() {
    let cloud = Cloud::start().await;
    let backend = cloud.backend().await;
    let report = lambda::run_consumer(&backend, scheduled_event("enfeed-consumer"))
        .await
        .unwrap();
    assert!(report.peers.is_empty());
}

/// A peer backend that serves a per-region feed for CH as static files over loopback HTTP.
async fn serve_peer_feed(chunk: Vec<u8>) -> (String, tokio::task::JoinHandle<()>) {
    use axum::http::{StatusCode, Uri};
    let index = json!({"region": "DE", "chunks": [1], "recommendedNextPollTime": 0});
    let files: std::collections::HashMap<&str, Vec<u8>> = [
        ("/v1/CH/keys", index.to_string().into_bytes()),
        ("/v1/CH/keys/1", chunk),
    ]
    .into();
    let app = axum::Router::new().fallback(move |uri: Uri| {
        let body = files.get(uri.path()).cloned();
        async move { body.ok_or(StatusCode::NOT_FOUND) }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    (
        url,
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() }),
    )
}

#[tokio::test]
async fn the_consumer_pulls_a_peer_feed_into_the_table_and_dataprep_publishes_it_to_phones_only() {
    use enfeed::adapters::local::signing_keys;
    use enfeed::domain::export::ExportHeader;
    use enfeed::domain::key::{DiagnosisKey, ReportType};
    use enfeed::ports::ConsumerStateStore as _;
    use enfeed::ports::Signer as _;
    use enfeed::ports::write_export;

    let cloud = Cloud::start().await;
    // The peer DE: its signing key, one chunk of three keys for CH.
    let dir = tempfile::tempdir().unwrap();
    let de_signer = signing_keys::open_or_create(&dir.path().join("de-keys"), "DE").unwrap();
    let keys: Vec<DiagnosisKey> = (0..3u8)
        .map(|i| DiagnosisKey {
            key_data: [0xd0 + i; 16],
            rolling_start: enfeed_tests::day_start(2),
            rolling_period: 144,
            transmission_risk: 1,
            report_type: ReportType::ConfirmedTest,
            days_since_onset: None,
        })
        .collect();
    let header = ExportHeader {
        start_timestamp: enfeed_tests::NOW - 3600,
        end_timestamp: enfeed_tests::NOW,
        region: "DE".into(),
        batch_num: 1,
        batch_size: 1,
    };
    let chunk = write_export(&header, &keys, &[], &de_signer).await.unwrap();
    let (url, server) = serve_peer_feed(chunk).await;
    std::fs::write(
        dir.path().join("de.pem"),
        de_signer.verification_keys()[0].to_pem(),
    )
    .unwrap();
    let peers = dir.path().join("peers.toml");
    std::fs::write(
        &peers,
        format!(
            "[[peer]]\nregion = \"DE\"\nurl = \"{url}\"\nreplication = \"partial\"\n\
             verification_keys = [\"de.pem\"]\ninsecure_http = true\n"
        ),
    )
    .unwrap();

    // The consumer function as deployed: the peers file from its layer, the state table.
    let mut settings = cloud.settings.clone();
    settings.peers_file = Some(peers);
    settings.signing_keys_path = None;
    let consumer =
        enfeed::entry::lambda::backend(cloud.config(), &settings, &cloud.sdk, cloud.clock.clone())
            .await
            .unwrap();
    let report = lambda::run_consumer(&consumer, scheduled_event("enfeed-consumer"))
        .await
        .unwrap();
    assert_eq!(report.peers.len(), 1);
    assert_eq!(report.peers[0].error, None, "{report:?}");
    assert_eq!((report.peers[0].batches, report.peers[0].imported), (1, 3));
    assert_eq!(consumer.keys.count().await.unwrap().remote, 3);
    let state = enfeed::adapters::aws::DynamoConsumerState::new(
        cloud.dynamo.clone(),
        super::CONSUMER_TABLE,
    );
    let de = state.load_peer("DE".parse().unwrap()).await.unwrap();
    assert_eq!(de.last_batch_id.as_deref(), Some("1"));
    // Pulled again: nothing new.
    let again = lambda::run_consumer(&consumer, scheduled_event("enfeed-consumer"))
        .await
        .unwrap();
    assert_eq!(again.peers[0].imported, 0, "{again:?}");
    server.abort();

    cloud.clock.advance(60);
    cloud.scheduled_dataprep().await;
    assert_eq!(cloud.key_counts(Feed::Public).await.len(), 3);
    assert!(
        cloud.key_counts(Feed::AllToAll).await.is_empty(),
        "remote keys never go back to peers"
    );
}

/// A likely diagnosis confirmed later, through the ingest function: the revision lands in the
/// `revised_keys` of the next chunks data-prep writes to the bucket, for phones and peers.
#[tokio::test]
async fn a_revision_through_api_gateway_reaches_phones_and_peers_as_revised_keys() {
    let cloud = Cloud::start().await;
    let keys = person_keys(4, 2);
    let mut likely = upload_body(&keys, &["CH", "DE"], &issue_code(&cloud).await);
    likely["reportType"] = json!("likely");
    let (status, first) = publish(&cloud, &likely, "198.51.100.7").await;
    assert_eq!(status, 200, "{first}");
    cloud.clock.advance(60);
    let backend = cloud.backend().await;
    lambda::run_dataprep(&backend, scheduled_event("enfeed-dataprep"), ONE_RUN)
        .await
        .unwrap();

    let mut confirmed = upload_body(&keys, &["CH", "DE"], &issue_code(&cloud).await);
    confirmed["revisionToken"] = first["revisionToken"].clone();
    let (status, second) = publish(&cloud, &confirmed, "198.51.100.7").await;
    assert_eq!(
        (status, second["insertedExposures"].as_u64()),
        (200, Some(2)),
        "{second}"
    );
    // The phone missed the answer and sends it again: the same answer, nothing revised twice.
    let (status, again) = publish(&cloud, &confirmed, "198.51.100.7").await;
    assert_eq!(
        (status, again["insertedExposures"].as_u64()),
        (200, Some(2))
    );
    cloud.clock.advance(3600);
    lambda::run_dataprep(&backend, scheduled_event("enfeed-dataprep"), ONE_RUN)
        .await
        .unwrap();
    for feed in [
        Feed::Public,
        Feed::AllToAll,
        Feed::Region("DE".parse().unwrap()),
    ] {
        let (index, files) = cloud.feed_files(feed).await;
        assert_eq!(index.chunks, [1, 2], "{feed}");
        let revised = &files[1].revised_keys;
        assert_eq!(revised.len(), 2, "{feed}");
        assert!(
            revised
                .iter()
                .all(|k| k.report_type == ReportType::ConfirmedTest)
        );
        assert!(files[1].keys.is_empty(), "{feed}");
        assert!(
            files[0]
                .keys
                .iter()
                .all(|k| k.report_type == ReportType::ConfirmedClinicalDiagnosis)
        );
    }
}
