//! A local region as its operator watches it: `/metrics` in the Prometheus text format (read
//! back by Prometheus' own Python parser), counting exactly what happened, and `/health`
//! turning unhealthy when data-prep stops.

use std::collections::BTreeMap;
use std::process::Command;

use enfeed_tests::{TestRegion, person_keys, upload_body, venv_python};
use serde_json::Value;

/// Every sample of a Prometheus text exposition, parsed by the `prometheus_client` package:
/// `name{label=value,...}` to value.
fn parse_with_prometheus_client(text: &str) -> BTreeMap<String, f64> {
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
samples = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        samples[f"{s.name}{{{labels}}}"] = s.value
print(json.dumps(samples))
"#;
    let mut child = Command::new(venv_python())
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the parser refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

async fn metrics(region: &TestRegion) -> BTreeMap<String, f64> {
    let response = region.get_as_admin("metrics").await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    parse_with_prometheus_client(&response.text().await.unwrap())
}

#[tokio::test]
async fn metrics_count_exactly_what_happened_and_parse_as_prometheus_text() {
    let region = TestRegion::start("CH").await;
    let anonymous = region.http.get(region.url("metrics")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401, "metrics need the admin token");

    let codes = [region.issue_code().await, region.issue_code().await];
    for (person, code) in codes.iter().enumerate() {
        let body = upload_body(&person_keys(person as u8 + 1, 3), &["CH", "DE"], code);
        assert_eq!(region.publish(&body).await.0, 200);
    }
    let wrong = upload_body(&person_keys(9, 1), &["CH"], "0000000000");
    assert_eq!(region.publish(&wrong).await.0, 401);
    let bad = serde_json::json!("not an upload");
    assert_eq!(region.publish(&bad).await.0, 400);
    region.clock.advance(60);
    region.dataprep().await;

    let samples = metrics(&region).await;
    let sample = |name: &str| samples.get(name).copied();
    assert_eq!(sample("enfeed_uploads_total{outcome=accepted}"), Some(2.0));
    assert_eq!(
        sample("enfeed_uploads_total{outcome=code_unknown}"),
        Some(1.0)
    );
    assert_eq!(sample("enfeed_uploads_total{outcome=bad_json}"), Some(1.0));
    assert_eq!(sample("enfeed_keys_stored_total{origin=local}"), Some(6.0));
    assert_eq!(sample("enfeed_codes_issued_total{}"), Some(2.0));
    assert_eq!(sample("enfeed_wrong_codes_total{}"), Some(1.0));
    assert_eq!(sample("enfeed_dataprep_runs_total{outcome=ok}"), Some(1.0));
    assert_eq!(
        sample("enfeed_chunks_published_total{feed=v1/keys}"),
        Some(1.0)
    );
    assert_eq!(
        sample("enfeed_keys_published_total{feed=v1/keys}"),
        Some(6.0)
    );
    assert_eq!(
        sample("enfeed_keys_published_total{feed=v1/a2a/keys}"),
        Some(6.0)
    );
    assert_eq!(
        sample("enfeed_keys_published_total{feed=v1/DE/keys}"),
        Some(6.0)
    );
    assert!(sample("enfeed_dataprep_last_success_timestamp_seconds{}").is_some());
}

async fn health(region: &TestRegion) -> (u16, Value) {
    let response = region.http.get(region.url("health")).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn health_turns_unhealthy_when_data_prep_has_not_run_for_two_intervals() {
    let region = TestRegion::start("CH").await;
    let (status, answer) = health(&region).await;
    assert_eq!((status, answer["store"].as_str()), (503, Some("ok")));
    assert!(
        answer["dataprep"]
            .as_str()
            .unwrap()
            .contains("not completed yet")
    );

    region.dataprep().await;
    let (status, answer) = health(&region).await;
    assert_eq!(
        (status, answer["healthy"].as_bool()),
        (200, Some(true)),
        "{answer}"
    );

    let interval = region.backend.config.dataprep_interval;
    region.clock.advance(2 * interval);
    assert_eq!(health(&region).await.0, 200, "two intervals are still fine");
    region.clock.advance(1);
    let (status, answer) = health(&region).await;
    assert_eq!(status, 503, "{answer}");
    assert!(
        answer["dataprep"].as_str().unwrap().contains("ago"),
        "{answer}"
    );

    region.dataprep().await;
    assert_eq!(health(&region).await.0, 200);
}
