//! Hardening, seen from the attacker's side: a listener that sheds slow, idle and surplus
//! connections, rate limits that fit shared addresses, secrets no other user can read and a
//! database that yields no code, errors that say nothing of the inside.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use enfeed::Backend;
use enfeed::adapters::local::{DATABASE, LocalStore};
use enfeed::domain::access::AccessPolicy;
use enfeed::domain::digest::sha256;
use enfeed::domain::secret::Pepper;
use enfeed::entry::api::{self, ApiSettings, REQUEST_ID_HEADER};
use enfeed::ports::{Blob, BlobError, BlobKind, BlobStore, Put};
use enfeed_tests::{ADMIN_TOKEN, Limits, TestRegion, person_keys, upload_body};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// A listener that gives up on clients after one second.
fn impatient() -> (Limits, ApiSettings) {
    (
        Limits {
            header_timeout: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(1),
            max_connections: 8,
        },
        ApiSettings {
            body_timeout: Duration::from_secs(1),
            ..ApiSettings::default()
        },
    )
}

fn address(region: &TestRegion) -> SocketAddr {
    region.base.trim_start_matches("http://").parse().unwrap()
}

/// Reads what the server sends until it closes the connection (or `limit` passes); returns it
/// and how long that took.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let left = limit.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
            Err(_) => panic!(
                "still open after {limit:?}; received {:?}",
                String::from_utf8_lossy(&received)
            ),
        }
    }
    (
        String::from_utf8_lossy(&received).into_owned(),
        started.elapsed(),
    )
}

/// The public index's status, asked on a connection of its own: the server closes idle
/// keep-alive connections here within a second, and a pooled one could be reused just as it
/// closes.
async fn public_index_status(region: &TestRegion) -> u16 {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
        .get(region.url("v1/keys"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn slow_headers_slow_bodies_and_idle_connections_are_closed_while_others_are_served() {
    let (limits, settings) = impatient();
    let region = TestRegion::with_limits("CH", limits, settings).await;

    let mut slow_headers = TcpStream::connect(address(&region)).await.unwrap();
    slow_headers
        .write_all(b"POST /v1/publish HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();

    let mut slow_body = TcpStream::connect(address(&region)).await.unwrap();
    slow_body
        .write_all(
            b"POST /v1/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 1000\r\n\r\n{\"tempo",
        )
        .await
        .unwrap();

    let mut idle = TcpStream::connect(address(&region)).await.unwrap();
    idle.write_all(b"GET /v1/keys HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 64];
    let n = idle.read(&mut first).await.unwrap();
    assert!(first[..n].starts_with(b"HTTP/1.1 200"));

    // Meanwhile others are answered.
    assert_eq!(public_index_status(&region).await, 200);

    let (answer, _) = read_until_closed(&mut slow_headers, Duration::from_secs(5)).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    let (answer, _) = read_until_closed(&mut slow_body, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"body_timeout\""), "{answer}");
    read_until_closed(&mut idle, Duration::from_secs(5)).await;

    assert_eq!(public_index_status(&region).await, 200);
    // Nothing of the slow upload was stored.
    assert_eq!(region.backend.keys.count().await.unwrap().local, 0);
}

#[tokio::test]
async fn a_body_declared_too_large_is_refused_before_the_client_sends_it() {
    let region = TestRegion::start("CH").await;
    let mut stream = TcpStream::connect(address(&region)).await.unwrap();
    stream
        .write_all(
            b"POST /v1/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 100000\r\nExpect: 100-continue\r\n\r\n",
        )
        .await
        .unwrap();
    let mut answer = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
        .await
        .expect("answered without the body")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(!answer.contains("100 Continue"), "{answer}");
    assert!(answer.contains("body_too_large"), "{answer}");
}

#[tokio::test]
async fn connections_past_the_cap_are_closed_and_service_resumes_when_idle_ones_go() {
    let (limits, settings) = impatient();
    let region = TestRegion::with_limits("CH", limits, settings).await;
    let mut held = Vec::new();
    for _ in 0..limits.max_connections {
        held.push(TcpStream::connect(address(&region)).await.unwrap());
    }
    // Give the listener the time to take them all.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut surplus = TcpStream::connect(address(&region)).await.unwrap();
    let (answer, took) = read_until_closed(&mut surplus, Duration::from_secs(5)).await;
    assert!(answer.is_empty(), "{answer}");
    assert!(
        took < Duration::from_millis(900),
        "closed only after {took:?}"
    );
    // The idle ones time out, and the listener serves again.
    for mut stream in held {
        read_until_closed(&mut stream, Duration::from_secs(5)).await;
    }
    assert_eq!(public_index_status(&region).await, 200);
}

#[tokio::test]
async fn the_public_listener_speaks_no_http2_in_clear() {
    let region = TestRegion::start("CH").await;
    let mut stream = TcpStream::connect(address(&region)).await.unwrap();
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    // An HTTP/2 server would answer with a SETTINGS frame (type 4), not with text or nothing.
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 "),
        "{answer:?}"
    );
}

#[tokio::test]
async fn parallel_uploads_with_valid_codes_from_one_address_all_go_through() {
    let region = TestRegion::start("CH").await;
    let mut codes = Vec::new();
    for _ in 0..20 {
        codes.push(region.issue_code().await);
    }
    let uploads = codes.iter().enumerate().map(|(i, code)| {
        let body = upload_body(&person_keys(i as u8 + 1, 2), &["CH"], code);
        let region = &region;
        async move { region.publish(&body).await.0 }
    });
    let statuses = futures::future::join_all(uploads).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
}

async fn publish_from(region: &TestRegion, client: &str, code: &str, person: u8) -> (u16, Value) {
    let response = region
        .http
        .post(region.url("v1/publish"))
        .header("x-forwarded-for", client)
        .json(&upload_body(&person_keys(person, 1), &["CH"], code))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn behind_a_trusted_proxy_one_clients_wrong_guesses_do_not_block_another() {
    let settings = ApiSettings {
        trusted_proxies: vec!["127.0.0.0/8".parse().unwrap()],
        ..ApiSettings::default()
    };
    let region = TestRegion::with_limits("CH", Limits::default(), settings).await;
    for guess in 0..10 {
        let (status, _) = publish_from(&region, "203.0.113.1", &format!("{guess:010}"), 1).await;
        assert_eq!(status, 401);
    }
    assert_eq!(
        publish_from(&region, "203.0.113.1", "0000000042", 1)
            .await
            .0,
        429
    );
    // A client spoofing its own header is still seen by what the proxy appended.
    assert_eq!(
        publish_from(&region, "198.51.100.9, 203.0.113.1", "0000000043", 1)
            .await
            .0,
        429
    );
    // Another phone behind the same proxy goes through, and its wrong guesses are its own.
    let code = region.issue_code().await;
    assert_eq!(publish_from(&region, "203.0.113.2", &code, 2).await.0, 200);
    assert_eq!(
        publish_from(&region, "203.0.113.2", "0000000044", 3)
            .await
            .0,
        401
    );
}

#[tokio::test]
async fn without_a_trusted_proxy_a_forwarded_address_changes_nothing() {
    let region = TestRegion::start("CH").await;
    for guess in 0..10 {
        let client = format!("203.0.113.{guess}");
        let (status, _) = publish_from(&region, &client, &format!("{guess:010}"), 1).await;
        assert_eq!(status, 401);
    }
    assert_eq!(
        publish_from(&region, "203.0.113.200", "0000000042", 1)
            .await
            .0,
        429
    );
}

#[tokio::test]
async fn guesses_spread_over_many_clients_raise_the_alarm() {
    let mut config = enfeed::Config::new("CH".parse().unwrap());
    config.wrong_code_alarm = 5;
    let region = TestRegion::with_config(config).await;
    let body = |guess: u32| {
        serde_json::to_vec(&upload_body(
            &person_keys(1, 1),
            &["CH"],
            &format!("{guess:010}"),
        ))
        .unwrap()
    };
    for guess in 0..12 {
        let client = format!("192.0.2.{guess}");
        assert!(region.backend.publish(&body(guess), &client).await.is_err());
    }
    let metrics = &region.backend.metrics;
    assert_eq!(metrics.wrong_codes.get(&[]), Some(12.0));
    assert_eq!(metrics.guessing_alarms.get(&[]), Some(1.0));
}

#[cfg(unix)]
#[tokio::test]
async fn nothing_in_the_data_directory_is_readable_by_other_users() {
    use std::os::unix::fs::PermissionsExt as _;
    let region = TestRegion::start("CH").await;
    region.upload(&person_keys(1, 2), &["CH", "DE"]).await;
    region.clock.advance(60);
    region.dataprep().await;
    enfeed::adapters::local::secrets::admin_token(region.data_dir()).unwrap();
    let mut checked = 0;
    let mut folders = vec![region.data_dir().to_path_buf()];
    while let Some(folder) = folders.pop() {
        let mode = std::fs::metadata(&folder).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o077,
            0,
            "{} is {:o}",
            folder.display(),
            mode & 0o777
        );
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else {
                let mode = std::fs::metadata(&path).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600, "{}", path.display());
                checked += 1;
            }
        }
    }
    // Database, pepper, admin token, signing key, chunks and indexes.
    assert!(checked >= 6, "{checked} files");
}

#[tokio::test]
async fn a_stolen_database_holds_no_plain_hash_of_any_code() {
    let data = tempfile::tempdir().unwrap();
    let codes = {
        let backend = enfeed::entry::local::open_backend(
            enfeed::Config::new("CH".parse().unwrap()),
            data.path(),
            Arc::new(enfeed::ports::ManualClock::new(enfeed_tests::NOW)),
            &[],
        )
        .unwrap();
        let mut codes = Vec::new();
        for _ in 0..20 {
            codes.push(backend.issue_code(Default::default()).await.unwrap().code);
        }
        codes
    };
    let database = std::fs::read(data.path().join(DATABASE)).unwrap();
    let contains = |needle: &[u8]| database.windows(needle.len()).any(|w| w == needle);
    let pepper = enfeed::adapters::local::secrets::code_pepper(data.path()).unwrap();
    for code in &codes {
        assert!(
            !contains(&sha256(&[code.as_bytes()])),
            "SHA-256 of {code} stored"
        );
        // What is stored instead is the peppered hash: the scan would have found the plain one.
        assert!(contains(&pepper.hash(code)), "no hash of {code} stored");
    }
}

/// A code store on the embedded store whose first new codes all collide.
struct Colliding {
    inner: Arc<LocalStore>,
    collisions: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl enfeed::ports::CodeStore for Colliding {
    async fn add_code(
        &self,
        code: enfeed::ports::CodeRecord,
    ) -> Result<(), enfeed::ports::StoreError> {
        use std::sync::atomic::Ordering;
        if self
            .collisions
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(enfeed::ports::StoreError::Conflict(
                "a live code has this hash".into(),
            ));
        }
        self.inner.add_code(code).await
    }

    async fn wrong_attempts(
        &self,
        client: &str,
        window: u64,
    ) -> Result<u32, enfeed::ports::StoreError> {
        self.inner.wrong_attempts(client, window).await
    }

    async fn count_wrong_attempt(
        &self,
        client: &str,
        window: u64,
    ) -> Result<u32, enfeed::ports::StoreError> {
        self.inner.count_wrong_attempt(client, window).await
    }

    async fn check_code(
        &self,
        claim: &enfeed::ports::CodeClaim,
        now: u64,
    ) -> Result<enfeed::domain::diagnosis::Diagnosis, enfeed::ports::StoreError> {
        self.inner.check_code(claim, now).await
    }
}

#[tokio::test]
async fn a_code_that_collides_with_a_live_one_is_drawn_again() {
    use enfeed::ports::CodeStore as _;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalStore::open(&dir.path().join("db")).unwrap());
    let colliding = Arc::new(Colliding {
        inner: store,
        collisions: 3.into(),
    });
    let codes = enfeed::services::codes::OneTimeCodes::new(
        colliding.clone(),
        Some(Pepper::from_hex(&enfeed::domain::secret::new_pepper_hex()).unwrap()),
        Arc::default(),
        3600,
    );
    let issued = codes
        .issue(enfeed_tests::NOW, Default::default(), None)
        .await
        .unwrap();
    assert_eq!(issued.code.len(), 10);
    assert_eq!(
        colliding
            .collisions
            .load(std::sync::atomic::Ordering::SeqCst),
        0,
        "every collision was drawn again"
    );
    // Forever colliding is an error, not a loop.
    colliding
        .collisions
        .store(1000, std::sync::atomic::Ordering::SeqCst);
    assert!(
        codes
            .issue(enfeed_tests::NOW, Default::default(), None)
            .await
            .is_err()
    );
    let _ = colliding.wrong_attempts("x", 0).await;
}

/// Blobs that cannot be read: a disk gone bad.
struct Unreadable;

#[async_trait]
impl BlobStore for Unreadable {
    async fn put_new(&self, _: &str, _: BlobKind, _: Vec<u8>) -> Result<Put, BlobError> {
        Err(BlobError::Backend(
            "disk /dev/sdb1 failed: I/O error".into(),
        ))
    }
    async fn put(&self, _: &str, _: BlobKind, _: Vec<u8>) -> Result<(), BlobError> {
        Err(BlobError::Backend(
            "disk /dev/sdb1 failed: I/O error".into(),
        ))
    }
    async fn get(&self, _: &str) -> Result<Option<Blob>, BlobError> {
        Err(BlobError::Backend(
            "disk /dev/sdb1 failed: I/O error".into(),
        ))
    }
    async fn delete(&self, _: &str) -> Result<(), BlobError> {
        Err(BlobError::Backend(
            "disk /dev/sdb1 failed: I/O error".into(),
        ))
    }
}

#[tokio::test]
async fn internal_errors_name_the_request_and_nothing_of_the_inside() {
    let region = TestRegion::start("CH").await;
    let broken = Backend {
        blobs: Arc::new(Unreadable),
        ..(*region.backend).clone()
    };
    let app = api::router(
        Arc::new(broken),
        AccessPolicy {
            admin_token: ADMIN_TOKEN.into(),
            ..AccessPolicy::default()
        },
        ApiSettings::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/keys", listener.local_addr().unwrap());
    let server = tokio::spawn(enfeed::adapters::listener::serve(
        listener,
        app,
        Limits::default(),
        None,
        std::future::pending(),
    ));
    let response = reqwest::get(&url).await.unwrap();
    assert_eq!(response.status(), 500);
    let id = response.headers()[REQUEST_ID_HEADER]
        .to_str()
        .unwrap()
        .to_string();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "internal error");
    assert_eq!(body["code"], "internal");
    assert_eq!(body["requestId"], id.as_str());
    assert!(!body.to_string().contains("sdb1"), "{body}");
    // Every answer names its request.
    let ok = reqwest::get(format!("{}/v1/verification-keys", region.base))
        .await
        .unwrap();
    assert!(ok.headers().contains_key(REQUEST_ID_HEADER));
    server.abort();
}
