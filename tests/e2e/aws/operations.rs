//! The serverless region as its operator runs it: secrets only where they are needed, failures
//! that show in the functions' errors and metrics, every chunk reaching a peer whatever its
//! size, and peers named by their certificates, not by what a subject string seems to say.

use std::sync::Arc;

use aws_sdk_ssm::types::ParameterType;
use enfeed::adapters::aws::S3BlobStore;
use enfeed::domain::feed::Feed;
use enfeed::domain::key::{DiagnosisKey, ReportType, interval_of};
use enfeed::domain::signature::VerificationKey;
use enfeed::entry::lambda::handlers as lambda;
use enfeed::ports::{BlobKind, BlobStore as _, Clock as _};
use enfeed_sim::issuer::CertificateIssuer;
use enfeed_tests::{NOW, person_keys, upload_body};
use rcgen::DnType;
use serde_json::Value;

use super::{
    BUCKET, Cloud, api_event, json_body, lambda_request, scheduled_event, with_client_cert,
    with_client_cert_of, with_iam_caller,
};

/// The ingest function as deployed: no signing keys path, and so no access to private keys.
async fn ingest(cloud: &Cloud) -> Arc<enfeed::Backend> {
    let mut settings = cloud.settings.clone();
    settings.signing_keys_path = None;
    let backend =
        enfeed::entry::lambda::backend(cloud.config(), &settings, &cloud.sdk, cloud.clock.clone())
            .await
            .unwrap();
    Arc::new(backend)
}

async fn get(backend: &Arc<enfeed::Backend>, path: &str, event: Option<Value>) -> (u16, Value) {
    let function = lambda::HttpFunction::new(backend.clone(), vec!["AT".parse().unwrap()], None);
    let event = event.unwrap_or_else(|| api_event("GET", path, None, "198.51.100.7"));
    let response = function.serve(lambda_request(event)).await.unwrap();
    (response.status().as_u16(), json_body(&response))
}

#[tokio::test]
async fn public_keys_are_served_by_a_function_that_cannot_read_the_private_ones() {
    let cloud = Cloud::start().await;
    let ingest = ingest(&cloud).await;
    // Before data-prep published them, there is nothing to serve.
    let (status, answer) = get(&ingest, "/v1/verification-keys", None).await;
    assert_eq!((status, answer["code"].as_str()), (404, Some("not_found")));

    let code = {
        let backend = cloud.backend().await;
        let event = with_iam_caller(
            api_event("POST", "/v1/admin/codes", None, "203.0.113.9"),
            "ha",
        );
        let response = lambda::issue_code(&backend, lambda_request(event))
            .await
            .unwrap();
        json_body(&response)["code"].as_str().unwrap().to_string()
    };
    let upload = upload_body(&person_keys(1, 2), &["CH"], &code);
    let function = lambda::HttpFunction::new(ingest.clone(), Vec::new(), None);
    let event = api_event("POST", "/v1/publish", Some(&upload), "198.51.100.7");
    let response = function.serve(lambda_request(event)).await.unwrap();
    assert_eq!(response.status(), 200);
    cloud.clock.advance(60);
    cloud.scheduled_dataprep().await;

    let (status, published) = get(&ingest, "/v1/verification-keys", None).await;
    assert_eq!(status, 200, "{published}");
    let keys: Vec<VerificationKey> = published["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| VerificationKey::from_pem(k["publicKeyPem"].as_str().unwrap(), "", "").unwrap())
        .collect();
    let (_, files) = cloud.feed_files(Feed::Public).await;
    files[0].verify(&keys).unwrap();
    // The same document lies in the bucket, where CloudFront serves it.
    let (bytes, content_type, _) = cloud.object("v1/verification-keys").await.unwrap();
    assert_eq!(content_type, "application/json");
    assert_eq!(serde_json::from_slice::<Value>(&bytes).unwrap(), published);
}

#[tokio::test]
async fn the_consumer_takes_its_tls_client_key_from_ssm_and_a_failing_peer_fails_the_run() {
    let cloud = Cloud::start().await;
    // DE, a live region on loopback behind mutual TLS, with one key declared for CH.
    let world = enfeed_sim::world::World::start(&[enfeed_sim::world::RegionPlan::new("DE")], NOW)
        .await
        .unwrap();
    let de = world.nodes.values().next().unwrap();
    let code = world.issue_code("DE".parse().unwrap()).await.unwrap();
    let keys: Vec<enfeed::domain::key::DiagnosisKey> = (1..=2)
        .map(|day| enfeed::domain::key::DiagnosisKey {
            key_data: [0xc0 + day as u8; 16],
            rolling_start: enfeed_tests::day_start(day),
            rolling_period: 144,
            transmission_risk: 1,
            report_type: enfeed::domain::key::ReportType::ConfirmedTest,
            days_since_onset: None,
        })
        .collect();
    let (status, answer) = world
        .upload(
            "DE".parse().unwrap(),
            &keys,
            &["DE".parse().unwrap(), "CH".parse().unwrap()],
            &code,
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{answer}");
    world.clock.advance(60);
    de.backend.run_dataprep().await.unwrap();

    // CH's consumer: the peers file names its certificate only; the key is in SSM.
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = world.ca.issue("ch-client", "CH", false).unwrap();
    let de_key = dir.path().join("de.pem");
    std::fs::write(
        &de_key,
        de.backend.verification_keys()[0].public_key_pem.as_bytes(),
    )
    .unwrap();
    let peers = dir.path().join("peers.toml");
    std::fs::write(
        &peers,
        format!(
            "[[peer]]\nregion = \"DE\"\nurl = \"{}\"\nreplication = \"partial\"\n\
             verification_keys = [\"{}\"]\nclient_cert = \"{}\"\nserver_ca = \"{}\"\n\n\
             [[peer]]\nregion = \"FR\"\nurl = \"https://127.0.0.1:1\"\nreplication = \"partial\"\n\
             verification_keys = [\"{}\"]\n",
            de.backend_url,
            de_key.display(),
            cert.display(),
            world.ca.ca_pem().display(),
            de_key.display(),
        ),
    )
    .unwrap();
    cloud
        .ssm
        .put_parameter()
        .name("/enfeed/CH/client-key")
        .value(std::fs::read_to_string(&key).unwrap())
        .r#type(ParameterType::SecureString)
        .send()
        .await
        .unwrap();
    let mut settings = cloud.settings.clone();
    settings.signing_keys_path = None;
    settings.peers_file = Some(peers.clone());
    settings.client_key_parameter = Some("/enfeed/CH/client-key".into());
    let consumer =
        enfeed::entry::lambda::backend(cloud.config(), &settings, &cloud.sdk, cloud.clock.clone())
            .await
            .unwrap();
    let failed = lambda::run_consumer(&consumer, scheduled_event("enfeed-consumer"))
        .await
        .unwrap_err();
    // DE was pulled over mutual TLS with the key from SSM; FR, down, fails the run.
    assert_eq!(consumer.keys.count().await.unwrap().remote, 2);
    assert_eq!(failed.failed.len(), 1, "{failed}");
    assert!(failed.failed[0].starts_with("FR:"), "{failed}");
    let metrics = &consumer.metrics;
    assert_eq!(metrics.peer_failures.get(&["FR"]), Some(1.0));
    assert_eq!(metrics.peer_failures.get(&["DE"]), None);
    assert_eq!(metrics.peer_keys_imported.get(&["DE"]), Some(2.0));
    assert!(metrics.peer_last_success.get(&["DE"]).is_some());

    // Without the key, the peers file alone cannot reach DE.
    settings.client_key_parameter = None;
    let refused =
        enfeed::entry::lambda::backend(cloud.config(), &settings, &cloud.sdk, cloud.clock.clone())
            .await;
    assert!(
        refused.is_err(),
        "a client certificate without its key was accepted"
    );
}

#[tokio::test]
async fn what_the_functions_count_is_written_as_embedded_metric_format() {
    let cloud = Cloud::start().await;
    let backend = cloud.backend().await;
    backend.metrics.peer_failures.inc(&["DE"]);
    backend.metrics.dataprep_runs.inc(&["ok"]);
    let lines = lambda::emf_lines(&backend);
    let lines: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let failures = lines
        .iter()
        .find(|l| l.get("enfeed_peer_failures_total").is_some())
        .expect("the peer failure is reported");
    assert_eq!(failures["enfeed_peer_failures_total"], 1.0);
    assert_eq!(failures["Region"], "CH");
    assert_eq!(failures["peer"], "DE");
    let directive = &failures["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directive["Namespace"], "enfeed");
    assert_eq!(
        directive["Dimensions"],
        serde_json::json!([["Region", "peer"], ["Region"]])
    );
    assert_eq!(
        directive["Metrics"][0]["Name"],
        "enfeed_peer_failures_total"
    );
    assert!(failures["_aws"]["Timestamp"].as_u64().unwrap() >= NOW * 1000);
    // Counters are reported once: the next invocation reports what it counted.
    assert!(
        lambda::emf_lines(&backend)
            .iter()
            .all(|l| !l.contains("enfeed_peer_failures_total"))
    );
}

#[tokio::test]
async fn a_chunk_of_any_size_reaches_a_peer_through_the_feed_gateway() {
    let cloud = Cloud::start().await;
    let blobs = S3BlobStore::new(cloud.s3.clone(), BUCKET);
    let chunk: Vec<u8> = (0..10_000_000u32)
        .map(|i| (i % 251) as u8 ^ (i >> 12) as u8)
        .collect();
    let kind = BlobKind::Chunk {
        fresh_until: NOW + 30 * 86_400,
    };
    blobs
        .put_new("v1/DE/keys/1", kind, chunk.clone())
        .await
        .unwrap();
    let gateway = lambda::HttpFunction::new(ingest(&cloud).await, Vec::new(), None);
    let request = |path: &str| {
        with_client_cert(
            api_event("GET", path, None, "203.0.113.50"),
            "CN=DE,O=RKI,C=DE",
        )
    };
    let response = gateway
        .serve(lambda_request(request("/v1/DE/keys/1")))
        .await
        .unwrap();
    assert_eq!(response.status(), 307);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let location = response.headers()["location"].to_str().unwrap();
    let fetched = reqwest::get(location).await.unwrap();
    assert_eq!(fetched.status(), 200);
    assert_eq!(fetched.bytes().await.unwrap().as_ref(), chunk.as_slice());
    // A chunk that does not exist is a 404, not a redirect to nothing.
    let missing = gateway
        .serve(lambda_request(request("/v1/DE/keys/2")))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn a_peer_is_the_first_common_name_of_its_certificate_not_a_look_alike_in_another_field() {
    let cloud = Cloud::start().await;
    let gateway = ingest(&cloud).await;
    let blobs = S3BlobStore::new(cloud.s3.clone(), BUCKET);
    blobs
        .put("v1/DE/keys", BlobKind::Index, b"{}".to_vec())
        .await
        .unwrap();
    let status = |event: Value| {
        let gateway = gateway.clone();
        async move { get(&gateway, "", Some(event)).await.0 }
    };
    let event = || api_event("GET", "/v1/DE/keys", None, "203.0.113.50");
    // The real DE.
    assert_eq!(
        status(with_client_cert(event(), "CN=DE,O=RKI,C=DE")).await,
        200
    );
    // An organisational unit that reads "x/CN=DE" in a subject string names no region.
    let look_alike = [(DnType::OrganizationalUnitName, "x/CN=DE".to_string())];
    assert_eq!(
        status(with_client_cert_of(event(), &look_alike, "OU=x/CN=DE")).await,
        401
    );
    // With a common name of its own, it is that region, and DE's feed is not its to read.
    let at = [
        (DnType::OrganizationalUnitName, "x/CN=DE".to_string()),
        (DnType::CommonName, "AT".to_string()),
    ];
    assert_eq!(
        status(with_client_cert_of(event(), &at, "OU=x/CN=DE,CN=AT")).await,
        403
    );
}

#[tokio::test]
async fn behind_the_upload_cdn_only_its_requests_are_served_and_viewers_are_told_apart() {
    let cloud = Cloud::start().await;
    let token = "0b6f6c2e-8d1c-4a53-9d55-3f0c7d2e9a10";
    let ingest = lambda::HttpFunction::new(ingest(&cloud).await, Vec::new(), Some(token.into()));
    let keys = person_keys(7, 2);
    let upload = upload_body(&keys, &["CH"], "0000000000");
    // Every request arrives from the same CloudFront edge address.
    let through_cdn = |viewer: &str, token: Option<&str>| {
        let mut event = api_event("POST", "/v1/publish", Some(&upload), "130.176.0.10");
        if let Some(token) = token {
            event["headers"]["x-enfeed-origin-token"] = token.into();
        }
        event["headers"]["cloudfront-viewer-address"] = format!("{viewer}:40312").into();
        let ingest = ingest.clone();
        async move {
            let response = ingest.serve(lambda_request(event)).await.unwrap();
            (
                response.status().as_u16(),
                json_body(&response)["code"].clone(),
            )
        }
    };
    // Straight to the API, or with a wrong token: refused, whatever viewer it claims.
    assert_eq!(
        through_cdn("192.0.2.1", None).await,
        (403, "not_through_cdn".into())
    );
    assert_eq!(
        through_cdn("192.0.2.1", Some("guess")).await,
        (403, "not_through_cdn".into())
    );
    // One viewer guessing codes is held back; another viewer behind the same edge is not.
    for _ in 0..10 {
        assert_eq!(
            through_cdn("192.0.2.1", Some(token)).await,
            (401, "code_unknown".into())
        );
    }
    assert_eq!(
        through_cdn("192.0.2.1", Some(token)).await,
        (429, "rate_limited".into())
    );
    assert_eq!(
        through_cdn("2001:db8::7", Some(token)).await,
        (401, "code_unknown".into())
    );
}

/// Uploads `keys` with a certificate through an ingest function that follows `issuers`;
/// returns the status and the refusal's code, if any.
async fn upload_certified(
    ingest: &lambda::HttpFunction,
    keys: &[enfeed::domain::key::DiagnosisKey],
    certificate: String,
) -> (u16, Option<String>) {
    let body = serde_json::json!({
        "temporaryExposureKeys": keys.iter().map(|k| serde_json::json!({
            "key": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, k.key_data),
            "rollingStartNumber": k.rolling_start,
            "rollingPeriod": k.rolling_period,
            "transmissionRisk": k.transmission_risk,
        })).collect::<Vec<_>>(),
        "regions": ["CH", "AT"],
        "verificationPayload": certificate,
        "hmacKey": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [7u8; 32]),
    });
    let event = api_event("POST", "/v1/publish", Some(&body), "198.51.100.7");
    let response = ingest.serve(lambda_request(event)).await.unwrap();
    let answer = json_body(&response);
    (
        response.status().as_u16(),
        answer["code"].as_str().map(str::to_string),
    )
}

#[tokio::test]
async fn f4_on_the_serverless_deployment_with_issuers_read_from_ssm_and_rotated_without_a_redeploy()
{
    let cloud = Cloud::start().await;
    // AT's health authority, trusted by CH through an SSM parameter.
    let at_v1 = CertificateIssuer::generate("at-1", "health.at", "enfeed.ch");
    let parameter = "/enfeed/CH/issuers";
    let put = |text: String| {
        cloud
            .ssm
            .put_parameter()
            .name(parameter)
            .value(text)
            .r#type(ParameterType::String)
            .overwrite(true)
            .send()
    };
    put(at_v1.toml_entry()).await.unwrap();
    let mut settings = cloud.settings.clone();
    settings.signing_keys_path = None;
    settings.issuers = Some(format!("ssm:{parameter}"));
    let backend =
        enfeed::entry::lambda::backend(cloud.config(), &settings, &cloud.sdk, cloud.clock.clone())
            .await
            .unwrap();
    let ingest = lambda::HttpFunction::new(Arc::new(backend), Vec::new(), None);

    // Bob of CH tested positive while roaming in AT, and uploads at home with AT's certificate.
    let today = interval_of(NOW) / 144 * 144;
    let bob: Vec<DiagnosisKey> = (1..=3)
        .map(|day| DiagnosisKey {
            key_data: [0xb0 + day as u8; 16],
            rolling_start: today - day * 144,
            rolling_period: 144,
            transmission_risk: 3,
            report_type: ReportType::ConfirmedTest,
            days_since_onset: None,
        })
        .collect();
    let certificate = |issuer: &CertificateIssuer, keys: &[DiagnosisKey]| {
        issuer.issue(keys, &[7u8; 32], "confirmed", None, cloud.clock.now(), 600)
    };
    assert_eq!(
        upload_certified(&ingest, &bob[..1], certificate(&at_v1, &bob[..1])).await,
        (200, None)
    );
    cloud.scheduled_dataprep().await;
    assert_eq!(
        cloud
            .key_counts(Feed::Region("AT".parse().unwrap()))
            .await
            .len(),
        1
    );

    // AT rotates its key: CH's operator updates the parameter, and deploys nothing.
    let at_v2 = CertificateIssuer::generate("at-2", "health.at", "enfeed.ch");
    put(at_v2.toml_entry()).await.unwrap();
    cloud.clock.advance(cloud.config().issuers_refresh);
    assert_eq!(
        upload_certified(&ingest, &bob[1..2], certificate(&at_v2, &bob[1..2])).await,
        (200, None)
    );
    assert_eq!(
        upload_certified(&ingest, &bob[2..], certificate(&at_v1, &bob[2..])).await,
        (401, Some("certificate_unknown_kid".into()))
    );

    // The same file as an S3 object.
    cloud
        .s3
        .put_object()
        .bucket(BUCKET)
        .key("config/issuers.toml")
        .body(at_v2.toml_entry().into_bytes().into())
        .send()
        .await
        .unwrap();
    settings.issuers = Some(format!("s3://{BUCKET}/config/issuers.toml"));
    let backend =
        enfeed::entry::lambda::backend(cloud.config(), &settings, &cloud.sdk, cloud.clock.clone())
            .await
            .unwrap();
    let ingest = lambda::HttpFunction::new(Arc::new(backend), Vec::new(), None);
    assert_eq!(
        upload_certified(&ingest, &bob[2..], certificate(&at_v2, &bob[2..])).await,
        (200, None)
    );
    // A location that is neither is a clear error at start.
    settings.issuers = Some("/enfeed/CH/issuers".into());
    let error =
        enfeed::entry::lambda::backend(cloud.config(), &settings, &cloud.sdk, cloud.clock.clone())
            .await
            .err()
            .unwrap();
    assert!(error.to_string().contains("ssm:<parameter>"), "{error}");
}
