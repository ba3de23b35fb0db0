//! The paper's user stories (F1-F4), the enterprise cluster, and roaming privacy (SP2). Each
//! runs several regions as separate servers on loopback, with peers over mutual TLS and phones
//! that use the real Exposure Notification cryptography.

use enfeed::domain::key::{DiagnosisKey, INTERVALS_PER_DAY, RegionId, interval_of};
use enfeed_sim::issuer::CertificateIssuer;
use enfeed_sim::phone::Phone;
use enfeed_sim::world::{RegionPlan, World};
use enfeed_tests::NOW;

fn r(region: &str) -> RegionId {
    region.parse().unwrap()
}

/// An interval `days` days before the tests' now, in the afternoon.
fn days_ago(days: u32) -> u32 {
    (interval_of(NOW) / INTERVALS_PER_DAY - days) * INTERVALS_PER_DAY + 90
}

/// Three regions of one world, each pulling the per-region feeds the others keep for it
/// (partial replication, the paper's recommendation across clusters).
async fn three_regions() -> World {
    let plan = [
        RegionPlan::new("AT")
            .pulls_partial("BE")
            .pulls_partial("CZ"),
        RegionPlan::new("BE")
            .pulls_partial("AT")
            .pulls_partial("CZ"),
        RegionPlan::new("CZ")
            .pulls_partial("AT")
            .pulls_partial("BE"),
    ];
    World::start(&plan, NOW).await.unwrap()
}

/// The person's keys of the last days, uploaded with a fresh code of `region`.
async fn tests_positive(world: &World, phone: &Phone, region: &str, declared: &[&str]) {
    let keys = keys_of(phone);
    let code = world.issue_code(r(region)).await.unwrap();
    let declared: Vec<RegionId> = declared.iter().map(|d| r(d)).collect();
    let (status, answer) = world
        .upload(r(region), &keys, &declared, &code, None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{answer}");
}

fn keys_of(phone: &Phone) -> Vec<DiagnosisKey> {
    phone.diagnosis_keys(days_ago(14)..interval_of(NOW) - INTERVALS_PER_DAY)
}

/// The key data of keys: what identifies a key across backends.
fn data(keys: &[DiagnosisKey]) -> Vec<[u8; 16]> {
    keys.iter().map(|k| k.key_data).collect()
}

/// Whether `phone`, listening to the public feeds of `regions`, finds an exposure to `other`.
async fn notified(world: &World, phone: &Phone, regions: &[&str], other: &Phone) -> bool {
    let mut keys = Vec::new();
    for region in regions {
        keys.extend(world.download(r(region), 0).await.unwrap().0.keys);
    }
    let theirs = data(&keys_of(other));
    phone
        .matches(&keys)
        .iter()
        .any(|e| theirs.contains(&e.key.key_data))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f1_local_notified_of_infected_traveller() {
    let world = three_regions().await;
    let (mut alice, mut bob, carol) = (
        Phone::new("Alice of AT"),
        Phone::new("Bob of BE"),
        Phone::new("Carol of CZ"),
    );
    // Bob, whose base is BE, visits the bakery in AT next to Alice.
    Phone::meet(&mut alice, &mut bob, days_ago(3));
    // Back home, Bob tests positive and declares BE and AT.
    tests_positive(&world, &bob, "BE", &["BE", "AT"]).await;
    world.publish_and_replicate().await.unwrap();
    // Alice listens to her own region only, and learns of Bob.
    assert!(notified(&world, &alice, &["AT"], &bob).await);
    // Partial replication: CZ was not declared and never received Bob's keys.
    assert!(!notified(&world, &carol, &["CZ"], &bob).await);
    let cz = data(&world.download(r("CZ"), 0).await.unwrap().0.keys);
    assert!(data(&keys_of(&bob)).iter().all(|k| !cz.contains(k)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f2_traveller_notified_of_infected_local() {
    let world = three_regions().await;
    let (mut alice, mut bob) = (Phone::new("Alice of AT"), Phone::new("Bob of BE"));
    Phone::meet(&mut alice, &mut bob, days_ago(4));
    // Alice, a local of AT, tests positive and declares only AT.
    tests_positive(&world, &alice, "AT", &["AT"]).await;
    world.publish_and_replicate().await.unwrap();
    // Bob listens to his base BE and to AT, where he roamed: AT's feed notifies him.
    assert!(notified(&world, &bob, &["BE", "AT"], &alice).await);
    // BE's own feed does not carry Alice's keys: she declared AT only.
    assert!(!notified(&world, &bob, &["BE"], &alice).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f3_traveller_notified_of_infected_traveller() {
    let world = three_regions().await;
    let (mut bob, mut carol) = (Phone::new("Bob of BE"), Phone::new("Carol of CZ"));
    // Bob and Carol, both travellers, meet in AT.
    Phone::meet(&mut bob, &mut carol, days_ago(2));
    // Carol tests positive at home in CZ and declares CZ and AT.
    tests_positive(&world, &carol, "CZ", &["CZ", "AT"]).await;
    world.publish_and_replicate().await.unwrap();
    // AT pulled Carol's keys from CZ; Bob, listening to AT where he roamed, is notified.
    assert!(notified(&world, &bob, &["BE", "AT"], &carol).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f4_roaming_user_uploads_at_home_with_foreign_certificate() {
    // AT's health authority signs verification certificates; BE trusts it.
    let at_health = CertificateIssuer::generate("at-key-1", "health.at", "enfeed");
    let plan = [
        RegionPlan::new("AT")
            .pulls_partial("BE")
            .pulls_partial("CZ"),
        RegionPlan::new("BE")
            .pulls_partial("AT")
            .pulls_partial("CZ")
            .trusts(at_health.trusted()),
        RegionPlan::new("CZ")
            .pulls_partial("AT")
            .pulls_partial("BE"),
    ];
    let world = World::start(&plan, NOW).await.unwrap();
    let (mut alice, mut bob) = (Phone::new("Alice of AT"), Phone::new("Bob of BE"));
    Phone::meet(&mut alice, &mut bob, days_ago(3));
    // Bob is tested positive while in AT; he uploads to his home BE with AT's certificate.
    let keys = keys_of(&bob);
    let hmac_key = [7u8; 32];
    let certificate = at_health.issue(&keys, &hmac_key, "confirmed", None, NOW, 3600);
    let (status, answer) = world
        .upload(
            r("BE"),
            &keys,
            &[r("BE"), r("AT")],
            &certificate,
            Some(&hmac_key),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{answer}");
    world.publish_and_replicate().await.unwrap();
    assert!(notified(&world, &alice, &["AT"], &bob).await);

    // CZ does not trust AT's health authority, and a certificate from nobody is refused.
    let (status, answer) = world
        .upload(r("CZ"), &keys, &[r("CZ")], &certificate, Some(&hmac_key))
        .await
        .unwrap();
    assert_eq!(
        (status, answer["code"].as_str()),
        (401, Some("code_unknown")),
        "{answer}"
    );
    let stranger = CertificateIssuer::generate("x", "health.example", "enfeed");
    let forged = stranger.issue(&keys, &hmac_key, "confirmed", None, NOW, 3600);
    let (status, answer) = world
        .upload(r("BE"), &keys, &[r("BE")], &forged, Some(&hmac_key))
        .await
        .unwrap();
    assert_eq!(
        (status, answer["code"].as_str()),
        (401, Some("certificate_unknown_issuer")),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enterprise_cluster_all_to_all() {
    let sites = ["EA", "EB", "EC", "ED"];
    let plan: Vec<RegionPlan> = sites
        .iter()
        .map(|site| {
            sites
                .iter()
                .filter(|other| *other != site)
                .fold(RegionPlan::new(site), |plan, other| {
                    plan.pulls_a2a(other).serves_a2a_to(other)
                })
        })
        .collect();
    let world = World::start(&plan, NOW).await.unwrap();
    // One employee per site tests positive, declaring nothing but their own site.
    let mut employees: Vec<Phone> = sites
        .iter()
        .map(|s| Phone::new(format!("employee of {s}")))
        .collect();
    let mut colleague = Phone::new("colleague who visits every site");
    for (i, employee) in employees.iter_mut().enumerate() {
        Phone::meet(employee, &mut colleague, days_ago(2) + i as u32);
    }
    for (site, employee) in sites.iter().zip(&employees) {
        tests_positive(&world, employee, site, &[]).await;
    }
    world.publish_and_replicate().await.unwrap();
    // Every site's phones see every site's keys, each exactly once: no loops between sites.
    let all: Vec<[u8; 16]> = employees.iter().flat_map(|e| data(&keys_of(e))).collect();
    for site in sites {
        let feed = data(&world.download(r(site), 0).await.unwrap().0.keys);
        assert_eq!(feed.len(), all.len(), "{site}");
        assert!(all.iter().all(|k| feed.contains(k)), "{site} misses keys");
        for employee in &employees {
            assert!(notified(&world, &colleague, &[site], employee).await);
        }
    }
    // Another round adds nothing: remote keys are never published to other backends.
    world.publish_and_replicate().await.unwrap();
    for site in sites {
        assert_eq!(
            world.download(r(site), 0).await.unwrap().0.keys.len(),
            all.len(),
            "{site}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sp2_per_region_feeds_carry_no_region_tags_and_peers_learn_no_other_regions() {
    let world = three_regions().await;
    let bob = {
        let mut bob = Phone::new("Bob of BE");
        bob.broadcast(days_ago(3));
        bob
    };
    // Bob declares his base BE and two roaming regions, AT and CZ.
    tests_positive(&world, &bob, "BE", &["BE", "AT", "CZ"]).await;
    world.publish_and_replicate().await.unwrap();
    let be = &world.nodes[&r("BE")];
    // The file BE keeps for AT names only its producer; nothing says CZ was declared too.
    let at = &world.nodes[&r("AT")];
    let remote = at
        .backend
        .keys
        .published_between(0, u64::MAX, NOW)
        .await
        .unwrap();
    let bobs_keys = data(&keys_of(&bob));
    let bobs: Vec<_> = remote
        .iter()
        .filter(|k| bobs_keys.contains(&k.key.key_data))
        .collect();
    assert!(!bobs.is_empty(), "AT received Bob's keys");
    // What AT stored of Bob: keys, origin remote, and no regions at all.
    assert!(
        bobs.iter()
            .all(|k| k.origin == enfeed::ports::Origin::Remote && k.regions.is_empty())
    );
    // The export files AT pulled say "BE" and nothing else about regions.
    let chunk = be.backend.blobs.get("v1/AT/keys/1").await.unwrap().unwrap();
    let file = enfeed::domain::export::read_export(&chunk.bytes, &Default::default()).unwrap();
    assert_eq!(file.header.region, "BE");
    // Its only text fields are the producer's region and signing key's identity.
    assert!(file.signature_infos.iter().all(|info| info.key_id == "BE"));
    assert!(file.keys.iter().all(|k| bobs_keys.contains(&k.key_data)));
}
