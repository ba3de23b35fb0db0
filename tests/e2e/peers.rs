//! Peers as they really are: files laid out as real national servers wrote them, files with
//! some bad keys, region IDs that are not two letters, Google's bucket layout, and hostile
//! peers (zip bombs, redirects, plain HTTP, slowness) that must cost only themselves.

use std::io::{Cursor, Read as _, Write as _};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use enfeed::domain::export::{ExportLimits, read_export};
use enfeed::domain::feed::Feed;
use enfeed::domain::key::{DiagnosisKey, INTERVALS_PER_DAY, ReportType, interval_of};
use enfeed::domain::peers::{FeedFormat, PeerConfig, Replication};
use enfeed::ports::{ConsumerStateStore as _, Fetch, FetchError};
use enfeed::services::consumer::{Poll, Producer};
use enfeed_tests::fake_peer::{FakePeer, keys, plain_http};
use enfeed_tests::{NOW, TestRegion, day_start, person_keys};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

use crate::replication::{consumer, remote_keys, state_store};

/// export.bin and export.sig of a file `peer` signs, to lay out anew.
async fn signed_parts(peer: &FakePeer, keys: &[DiagnosisKey]) -> (Vec<u8>, Vec<u8>) {
    let zip = peer.chunk(keys, peer.region.as_str()).await;
    let mut archive = ZipArchive::new(Cursor::new(zip)).unwrap();
    let mut read = |name| {
        let mut bytes = Vec::new();
        archive
            .by_name(name)
            .unwrap()
            .read_to_end(&mut bytes)
            .unwrap();
        bytes
    };
    (read("export.bin"), read("export.sig"))
}

/// A zip of `entries` in that order; `streamed` writes it as a stream, with data descriptors
/// after each entry instead of sizes in its header (as Java's and Android's writers do).
fn zip_of(entries: &[(&str, &[u8])], streamed: bool) -> Vec<u8> {
    let options = SimpleFileOptions::default().compression_method(CompressionMethod::Deflated);
    if streamed {
        let mut zip = ZipWriter::new_stream(Vec::new());
        for (name, bytes) in entries {
            zip.start_file(*name, options).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap().into_inner()
    } else {
        let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
        for (name, bytes) in entries {
            zip.start_file(*name, options).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap().into_inner()
    }
}

/// A key starting `start` for `period` intervals, with an onset `onset` days away.
fn key(seed: u8, start: u32, period: u32, onset: Option<i32>) -> DiagnosisKey {
    DiagnosisKey {
        key_data: [seed; 16],
        rolling_start: start,
        rolling_period: period,
        transmission_risk: 2,
        report_type: ReportType::ConfirmedTest,
        days_since_onset: onset,
    }
}

#[tokio::test]
async fn a_file_with_bad_keys_keeps_its_good_keys_and_the_next_file_is_pulled() {
    let ch = TestRegion::start("CH").await;
    let (state, _dir) = state_store();
    let de = FakePeer::start("DE").await;
    let mut first = keys(10, 5);
    first[1].rolling_period = 0;
    first[2].rolling_start = interval_of(NOW) + 10;
    first[3].transmission_risk = 9;
    first.push(first[0].clone());
    de.serve_index(&[1, 2], NOW);
    de.serve_chunk(1, &first).await;
    de.serve_chunk(2, &keys(20, 3)).await;
    let report = consumer(&ch.backend, vec![de.producer(plain_http())], state.clone())
        .run(Poll::WhenDue)
        .await;
    let peer = &report.peers[0];
    assert_eq!(peer.error, None, "{report:?}");
    assert_eq!((peer.batches, peer.imported), (2, 2 + 3));
    let dropped: Vec<_> = peer.dropped.iter().map(|(k, v)| (*k, *v)).collect();
    assert_eq!(
        dropped,
        [
            ("bad_rolling_period", 1),
            ("bad_transmission_risk", 1),
            ("duplicate_key", 1),
            ("key_in_future", 1),
        ]
    );
    assert_eq!(remote_keys(&ch).await, 5);
    let last = state.load_peer(de.region).await.unwrap().last_batch_id;
    assert_eq!(
        last.as_deref(),
        Some("2"),
        "the file with bad keys stalls nothing"
    );
    let json = serde_json::to_value(peer).unwrap();
    assert_eq!(json["dropped"]["duplicate_key"], 1, "{json}");
}

#[tokio::test]
async fn a_refused_file_is_retried_while_newest_then_skipped() {
    let ch = TestRegion::start("CH").await;
    let (state, _dir) = state_store();
    let de = FakePeer::start("DE").await;
    let impostor = FakePeer::start("DE").await;
    de.serve_index(&[1], NOW);
    de.serve("v1/CH/keys/1", impostor.chunk(&keys(1, 2), "DE").await);
    let run = consumer(&ch.backend, vec![de.producer(plain_http())], state.clone());
    let report = run.run(Poll::WhenDue).await;
    assert!(report.peers[0].error.is_some(), "{report:?}");
    assert_eq!(
        state.load_peer(de.region).await.unwrap().last_batch_id,
        None
    );

    de.serve_index(&[1, 2], NOW);
    de.serve_chunk(2, &keys(30, 4)).await;
    let report = run.run(Poll::WhenDue).await;
    let peer = &report.peers[0];
    assert_eq!(peer.error, None, "{report:?}");
    assert_eq!((peer.batches, peer.imported), (1, 4));
    assert_eq!(peer.skipped.len(), 1);
    assert_eq!(peer.skipped[0].batch, "1");
    assert!(peer.skipped[0].error.contains("signature"), "{peer:?}");
    let last = state.load_peer(de.region).await.unwrap().last_batch_id;
    assert_eq!(last.as_deref(), Some("2"));
}

#[tokio::test]
async fn every_real_export_layout_is_read() {
    let ch = TestRegion::start("CH").await;
    let (state, _dir) = state_store();
    let today = interval_of(NOW) / INTERVALS_PER_DAY * INTERVALS_PER_DAY;
    // Italy's files carry its mobile country code, the EU gateway's `EUR`.
    for (seed, region) in [(0, "222"), (10, "EUR")] {
        let peer = FakePeer::start(region).await;
        let varied = vec![
            key(seed + 1, day_start(3), 144, Some(-14)),
            key(seed + 2, day_start(2) + 37, 1, Some(0)),
            key(seed + 3, day_start(2) + 50, 93, Some(-3)),
            key(seed + 4, today - 200, 143, Some(14)),
            key(seed + 5, today - 1, 1, None),
        ];
        let (bin, sig) = signed_parts(&peer, &varied).await;
        let (one_bin, one_sig) = signed_parts(&peer, &varied[..1]).await;
        let (none_bin, none_sig) = signed_parts(&peer, &[]).await;
        let descriptors = zip_of(&[("export.bin", &bin), ("export.sig", &sig)], true);
        assert_ne!(
            u16::from_le_bytes([descriptors[6], descriptors[7]]) & 0x08,
            0,
            "the entry is written with a data descriptor"
        );
        let files = [
            zip_of(&[("export.sig", &sig), ("export.bin", &bin)], false),
            descriptors,
            zip_of(
                &[
                    ("export.bin", &bin),
                    ("export.sig", &sig),
                    ("content.sig", b"\x30\x82 a CMS signature"),
                ],
                false,
            ),
            zip_of(
                &[("export.bin", &none_bin), ("export.sig", &none_sig)],
                false,
            ),
            zip_of(&[("export.bin", &one_bin), ("export.sig", &one_sig)], true),
        ];
        let numbers: Vec<u32> = (1..=files.len() as u32).collect();
        peer.serve_index(&numbers, NOW);
        for (n, file) in numbers.iter().zip(files) {
            peer.serve(&format!("v1/CH/keys/{n}"), file);
        }
        let before = remote_keys(&ch).await;
        let report = consumer(
            &ch.backend,
            vec![peer.producer(plain_http())],
            state.clone(),
        )
        .run(Poll::WhenDue)
        .await;
        let pulled = &report.peers[0];
        assert_eq!(pulled.region, region);
        assert_eq!(pulled.error, None, "{region}: {report:?}");
        assert!(pulled.dropped.is_empty(), "{region}: {report:?}");
        assert_eq!(pulled.batches, 5, "{region}");
        // The same five keys in every layout: stored once each.
        assert_eq!(remote_keys(&ch).await - before, 5, "{region}");
    }
    // The onsets, periods and odd starts reach phones as they came.
    ch.clock.advance(60);
    ch.dataprep().await;
    let (_, files) = ch.download_feed(Feed::Public).await;
    let mut published: Vec<_> = files.into_iter().flat_map(|f| f.keys).collect();
    published.sort_by_key(|k| k.key_data);
    let onsets: Vec<_> = published.iter().map(|k| k.days_since_onset).collect();
    assert_eq!(
        onsets,
        [Some(-14), Some(0), Some(-3), Some(14), None].repeat(2)
    );
    let periods: Vec<_> = published.iter().map(|k| k.rolling_period).collect();
    assert_eq!(periods, [144, 1, 93, 143, 1].repeat(2));
}

#[tokio::test]
async fn a_google_layout_bucket_is_imported_through_its_prefix_index() {
    let mut config = enfeed::Config::new("CH".parse().unwrap());
    config.padding_min = 0;
    let ch = TestRegion::with_config(config).await;
    let (state, _dir) = state_store();
    let us = FakePeer::start("US").await;
    // The bucket: the index under a prefix, its lines relative to the bucket's root.
    let prefix = "exposureKeyExport-US";
    let names = [
        format!("{prefix}/1749895200-1749981600-00001.zip"),
        format!("{prefix}/1749981600-1750068000-00001.zip"),
    ];
    us.serve(
        &format!("{prefix}/index.txt"),
        format!("{}\n{}\n", names[1], names[0]).into_bytes(),
    );
    us.serve(&names[0], us.chunk(&keys(1, 2), "US").await);
    us.serve(&names[1], us.chunk(&keys(7, 3), "US").await);
    let config = PeerConfig {
        index_url: Some(format!("{}/{prefix}/index.txt", us.url)),
        export_root: Some(us.url.clone()),
        ..us.config(FeedFormat::GaenIndex)
    };
    let producer = Producer::new(config, us.signer_keys(), plain_http());
    let run = consumer(&ch.backend, vec![producer], state.clone());
    let report = run.run(Poll::WhenDue).await;
    assert_eq!(report.peers[0].error, None, "{report:?}");
    assert_eq!((report.peers[0].batches, report.peers[0].imported), (2, 5));
    let last = state.load_peer(us.region).await.unwrap().last_batch_id;
    assert_eq!(last, Some(names[1].clone()), "taken in time order");
    assert_eq!(run.run(Poll::WhenDue).await.peers[0].batches, 0);

    // enfeed's own index.txt: lines from the host's root, numbered chunks in number order.
    let de = FakePeer::start("DE").await;
    let index = Feed::Region(ch.backend.config.region).text_index(&[9, 10, 2]);
    de.serve("v1/CH/keys/index.txt", index.into_bytes());
    for (n, seed) in [(2, 40), (9, 50), (10, 60)] {
        de.serve_chunk(n, &keys(seed, 1)).await;
    }
    let config = PeerConfig {
        index_url: Some(format!("{}/v1/CH/keys/index.txt", de.url)),
        ..de.config(FeedFormat::GaenIndex)
    };
    let producer = Producer::new(config, de.signer_keys(), plain_http());
    let report = consumer(&ch.backend, vec![producer], state.clone())
        .run(Poll::WhenDue)
        .await;
    assert_eq!(report.peers[0].error, None, "{report:?}");
    assert_eq!(report.peers[0].batches, 3);
    let last = state.load_peer(de.region).await.unwrap().last_batch_id;
    assert_eq!(last.as_deref(), Some("v1/CH/keys/10"));
}

#[tokio::test]
async fn an_enfeed_region_is_imported_through_the_index_txt_it_publishes() {
    let ch = TestRegion::start("CH").await;
    let de = TestRegion::start("DE").await;
    let (state, _dir) = state_store();
    for person in [1, 2] {
        de.upload(&person_keys(person, 2), &[]).await;
        de.clock.advance(60);
        de.dataprep().await;
    }
    let (index, _) = de.download_feed(Feed::Public).await;
    assert_eq!(index.chunks, vec![1, 2]);
    let config = PeerConfig {
        format: FeedFormat::GaenIndex,
        index_url: Some(de.url(&Feed::Public.text_index_path())),
        insecure_http: true,
        ..PeerConfig::new(de.backend.config.region, de.base.clone(), Replication::A2a)
    };
    let producer = Producer::new(config, de.verification_keys().await, plain_http());
    let run = consumer(&ch.backend, vec![producer], state.clone());
    let report = run.run(Poll::WhenDue).await;
    assert_eq!(report.peers[0].error, None, "{report:?}");
    assert_eq!((report.peers[0].batches, report.peers[0].imported), (2, 4));
    let last = state.load_peer(de.backend.config.region).await.unwrap();
    assert_eq!(last.last_batch_id.as_deref(), Some("v1/keys/2"));

    de.upload(&person_keys(3, 1), &[]).await;
    de.clock.advance(60);
    de.dataprep().await;
    let report = run.run(Poll::WhenDue).await;
    assert_eq!(
        (report.peers[0].batches, report.peers[0].imported),
        (1, 1),
        "only the new chunk: {report:?}"
    );
    assert_eq!(remote_keys(&ch).await, 5, "every key DE published, once");
}

/// A fetch that answers slower than any deadline, like a peer that trickles its bytes.
struct Stalls;

#[async_trait::async_trait]
impl Fetch for Stalls {
    async fn get(&self, _url: &str, _max_bytes: usize) -> Result<Vec<u8>, FetchError> {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        unreachable!("the deadline ends the pull first")
    }
}

#[tokio::test]
async fn a_slow_peer_costs_its_own_deadline_and_the_next_peer_is_pulled() {
    let mut config = enfeed::Config::new("CH".parse().unwrap());
    config.padding_min = 0;
    config.peer_deadline = 1;
    let ch = TestRegion::with_config(config).await;
    let (state, _dir) = state_store();
    let slow = FakePeer::start("AT").await;
    let de = FakePeer::start("DE").await;
    de.serve_index(&[1], NOW);
    de.serve_chunk(1, &keys(1, 3)).await;
    let started = std::time::Instant::now();
    let report = consumer(
        &ch.backend,
        vec![slow.producer(Arc::new(Stalls)), de.producer(plain_http())],
        state,
    )
    .run(Poll::WhenDue)
    .await;
    assert!(started.elapsed() < Duration::from_secs(30));
    let error = report.peers[0].error.as_deref().unwrap();
    assert!(error.contains("deadline of 1 s"), "{error}");
    assert_eq!(report.peers[1].error, None);
    assert_eq!(report.peers[1].imported, 3);
}

#[tokio::test]
async fn peers_are_reached_over_https_only_and_without_redirects() {
    let ch = TestRegion::start("CH").await;
    let (state, _dir) = state_store();
    let de = FakePeer::start("DE").await;
    de.serve_index(&[1], NOW);
    de.serve_chunk(1, &keys(1, 2)).await;

    // A peer on http:// is refused by the peers file unless it says insecure_http...
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("peers.toml");
    std::fs::write(dir.path().join("de.pem"), de.signer_pem()).unwrap();
    let toml = format!(
        "[[peer]]\nregion = \"DE\"\nurl = \"{}\"\nreplication = \"partial\"\n\
         verification_keys = [\"de.pem\"]\n",
        de.url
    );
    std::fs::write(&file, &toml).unwrap();
    let error = enfeed::domain::peers::PeersFile::load(&file).unwrap_err();
    assert!(error.to_string().contains("insecure_http"), "{error}");
    // ...and the client refuses it too, whatever its configuration says.
    let https_only = Arc::new(enfeed::adapters::tls::HttpsFetch::new(None, None).unwrap());
    let report = consumer(&ch.backend, vec![de.producer(https_only)], state.clone())
        .run(Poll::WhenDue)
        .await;
    assert!(report.peers[0].error.is_some(), "{report:?}");
    assert_eq!(remote_keys(&ch).await, 0);

    // A redirect (to the very file) is not followed.
    let redirect = axum::Router::new().fallback({
        let target = de.url.clone();
        move |uri: axum::http::Uri| {
            let location = format!("{target}{}", uri.path());
            async move {
                (
                    StatusCode::FOUND,
                    [(axum::http::header::LOCATION, location)],
                )
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, redirect).await.unwrap() });
    let mut config = de.config(FeedFormat::Enfeed);
    config.url = url;
    let producer = Producer::new(config, de.signer_keys(), plain_http());
    let report = consumer(&ch.backend, vec![producer], state.clone())
        .run(Poll::WhenDue)
        .await;
    let error = report.peers[0].error.as_deref().unwrap();
    assert!(error.contains("302"), "{error}");
    assert_eq!(remote_keys(&ch).await, 0);
    server.abort();

    // With insecure_http the same peer is pulled.
    std::fs::write(&file, format!("{toml}insecure_http = true\n")).unwrap();
    let peers = enfeed::domain::peers::PeersFile::load(&file).unwrap();
    let producer = enfeed::entry::peers::open_producer(peers.peers[0].clone(), None).unwrap();
    let report = consumer(&ch.backend, vec![producer], state)
        .run(Poll::WhenDue)
        .await;
    assert_eq!(report.peers[0].error, None, "{report:?}");
    assert_eq!(remote_keys(&ch).await, 2);
}

/// A zip bomb as an attacker builds it: export.bin is GAEN's header and then millions of empty
/// keys (two bytes each), which inflate from a few kilobytes; decoded before the signature
/// was checked, they took the consumer past a gigabyte.
fn zip_bomb(inflated: usize) -> Vec<u8> {
    let mut bin = Vec::with_capacity(inflated);
    bin.extend_from_slice(enfeed::domain::export::EXPORT_HEADER);
    while bin.len() + 2 <= inflated {
        bin.extend_from_slice(&[(7 << 3) | 2, 0]);
    }
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .compression_level(Some(9));
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    for (name, bytes) in [("export.bin", &bin[..]), ("export.sig", b"")] {
        zip.start_file(name, options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    let zip = zip.finish().unwrap().into_inner();
    assert!(zip.len() < 64 << 10, "a small bomb: {} bytes", zip.len());
    zip
}

/// Peak resident memory since the last reset, and the reset: Linux keeps the high-water mark
/// in /proc/self/status and lets a process reset it to its current size (clear_refs 5).
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/self/status");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib * 1024
}

fn reset_peak_rss() -> u64 {
    std::fs::write("/proc/self/clear_refs", "5").expect("resetting the peak RSS");
    peak_rss_bytes()
}

/// The memory a zip bomb's pull costs, measured alone in a process of its own (see
/// [`a_zip_bomb_costs_its_pull_little_memory_and_the_next_peer_is_imported`], which runs it):
/// the peak RSS above the start of the pull, with a control that the meter sees a real cost.
#[tokio::test]
#[ignore = "run in a process of its own by a_zip_bomb_costs_its_pull_little_memory_..."]
async fn zip_bomb_pull_measured_alone() {
    let ch = TestRegion::start("CH").await;
    let (state, _dir) = state_store();
    let bomber = FakePeer::start("AT").await;
    let bomb = zip_bomb(32 << 20);
    bomber.serve_index(&[1, 2], NOW);
    bomber.serve("v1/CH/keys/1", bomb.clone());
    bomber.serve_chunk(2, &keys(5, 2)).await;
    let de = FakePeer::start("DE").await;
    de.serve_index(&[1], NOW);
    de.serve_chunk(1, &keys(9, 3)).await;

    let start = reset_peak_rss();
    let report = consumer(
        &ch.backend,
        vec![bomber.producer(plain_http()), de.producer(plain_http())],
        state,
    )
    .run(Poll::WhenDue)
    .await;
    let cost = peak_rss_bytes().saturating_sub(start);
    println!("\nzip-bomb-pull-peak-rss-bytes={cost}");
    // The control, after the pull so that it leaves no freed memory for the pull to reuse: the
    // meter sees 64 MiB that are touched.
    let start = reset_peak_rss();
    let ballast = std::hint::black_box(vec![1u8; 64 << 20]);
    let control = peak_rss_bytes().saturating_sub(start);
    drop(ballast);
    assert!(
        control >= 60 << 20,
        "the meter sees {control} bytes of 64 MiB"
    );
    let bombed = &report.peers[0];
    assert_eq!(bombed.skipped.len(), 1, "{report:?}");
    assert!(bombed.skipped[0].error.contains("signature"), "{report:?}");
    assert_eq!(
        bombed.imported, 2,
        "the bomber's next file is taken: {report:?}"
    );
    assert_eq!(report.peers[1].imported, 3, "the next peer is imported");
    assert!(cost < 64 << 20, "the bomb's pull cost {cost} bytes");
}

#[test]
fn a_zip_bomb_costs_its_pull_little_memory_and_the_next_peer_is_imported() {
    // A real bomb: it inflates to 16 million keys, past the cap of any file.
    let inflated = read_export(&zip_bomb(32 << 20), &ExportLimits::default());
    assert!(
        matches!(
            inflated,
            Err(enfeed::domain::export::ExportError::KeyCap { .. })
        ),
        "{inflated:?}"
    );
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "peers::zip_bomb_pull_measured_alone",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let cost: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("zip-bomb-pull-peak-rss-bytes="))
        .unwrap_or_else(|| panic!("no measurement in {stdout}"))
        .parse()
        .unwrap();
    println!(
        "a zip bomb's pull: {:.1} MiB peak RSS",
        cost as f64 / f64::from(1 << 20)
    );
    assert!(cost < 64 << 20, "{cost}");
    assert!(stdout.contains("1 passed"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_is_recognised_by_its_pinned_certificate() {
    use enfeed::adapters::tls::{HttpsFetch, PeerTls};
    use enfeed_sim::world::{RegionPlan, World};
    let world = World::start(&[RegionPlan::new("AT")], NOW).await.unwrap();
    let at = &world.nodes[&"AT".parse().unwrap()];
    let pki = world.ca.ca_pem().parent().unwrap().to_path_buf();
    let server_pem = std::fs::read_to_string(pki.join("AT-server.pem")).unwrap();
    let server_der = pem::parse(server_pem).unwrap().into_contents();
    let (cert, key) = world.ca.issue("probe-BE", "BE", false).unwrap();
    let tls = |pin: Option<[u8; 32]>| PeerTls {
        identity_pem: Some((std::fs::read(&cert).unwrap(), std::fs::read(&key).unwrap())),
        server_cert_sha256: pin,
        ..PeerTls::default()
    };
    let get = async |tls: PeerTls| {
        HttpsFetch::with(&tls)
            .unwrap()
            .get(&format!("{}/v1/keys", at.backend_url), 1 << 20)
            .await
    };
    let pin = enfeed::domain::digest::sha256(&[&server_der]);
    assert!(get(tls(Some(pin))).await.is_ok(), "the pinned certificate");
    let mut other = pin;
    other[0] ^= 1;
    let refused = get(tls(Some(other))).await.unwrap_err();
    assert!(matches!(refused, FetchError::Transport { .. }), "{refused}");
    let refused = get(tls(None)).await.unwrap_err();
    assert!(
        matches!(refused, FetchError::Transport { .. }),
        "no CA and no pin: nothing is trusted: {refused}"
    );
}
