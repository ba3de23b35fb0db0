//! Verification certificates of health authorities, as the reference verification server
//! signs them: what the certificate verifier accepts, and each refusal with its own reason.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::Router;
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use enfeed::adapters::listener::{Limits, serve};
use enfeed::adapters::local::FileIssuers;
use enfeed::adapters::tls::HttpsFetch;
use enfeed::adapters::tls::listener::server_config;
use enfeed::domain::certificate::{
    CertificateConfigError, CertificateError, Certified, IssuersFile, LEEWAY, TrustedIssuers,
    tekmac,
};
use enfeed::domain::key::{DiagnosisKey, INTERVALS_PER_DAY, ReportType, interval_of};
use enfeed::domain::upload::Upload;
use enfeed::ports::{Authorization, UploadVerifier, VerifyError};
use enfeed::ports::{CodeRefused, UnixSeconds};
use enfeed::services::certificates::{CertificateVerifier, IssuerUpdates};
use enfeed_sim::issuer::CertificateIssuer;
use enfeed_sim::world::BackendCa;
use ring::hmac;
use serde_json::json;
use tokio::net::TcpListener;

const ES256: &str = "ES256";
const NOW: u64 = 1_700_000_000;
const HMAC_KEY: &[u8] = b"a random key from the phone";

fn keys() -> Vec<DiagnosisKey> {
    let today = interval_of(NOW) / INTERVALS_PER_DAY * INTERVALS_PER_DAY;
    (1..=3)
        .map(|day| DiagnosisKey {
            key_data: [day as u8; 16],
            rolling_start: today - day * INTERVALS_PER_DAY,
            rolling_period: INTERVALS_PER_DAY,
            transmission_risk: 4,
            report_type: ReportType::ConfirmedTest,
            days_since_onset: None,
        })
        .collect()
}

fn upload(payload: String) -> Upload {
    Upload::of_keys(
        keys(),
        vec!["CH".parse().unwrap()],
        payload,
        Some(HMAC_KEY.to_vec()),
    )
}

fn health_authority() -> CertificateIssuer {
    CertificateIssuer::generate("v1", "health.example", "enfeed.example")
}

/// What checks certificates of `issuers`.
fn trusting(issuers: &[&CertificateIssuer]) -> TrustedIssuers {
    TrustedIssuers::new(issuers.iter().map(|i| i.trusted()).collect()).unwrap()
}

/// The upload verifier that accepts certificates of `issuers`.
fn verifier(issuers: &[&CertificateIssuer]) -> CertificateVerifier {
    CertificateVerifier::new(issuers.iter().map(|i| i.trusted()).collect()).unwrap()
}

fn certificate(issuer: &CertificateIssuer) -> String {
    issuer.issue(&keys(), HMAC_KEY, "confirmed", Some(7), NOW, 900)
}

/// A JWS with any header and claims, and a signature of `signature` bytes.
fn token(header: serde_json::Value, claims: &serde_json::Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        BASE64URL.encode(header.to_string()),
        BASE64URL.encode(claims.to_string()),
        BASE64URL.encode(signature)
    )
}

fn valid_claims() -> serde_json::Value {
    json!({
        "iss": "health.example", "aud": "enfeed.example",
        "iat": NOW, "nbf": NOW, "exp": NOW + 900,
        "tekmac": tekmac(&keys(), HMAC_KEY), "reportType": "confirmed",
    })
}

fn refusal(verifier: &TrustedIssuers, upload: &Upload) -> CertificateError {
    verifier.check(upload, NOW).unwrap_err()
}

#[test]
fn the_issuers_file_names_each_authority_and_its_keys() {
    let trusted = health_authority().trusted();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("issuers.toml");
    let key = &trusted.keys[0];
    let text = format!(
        "[[issuer]]\nissuer = {:?}\naudience = {:?}\nkeys = [{{ kid = {:?}, public_key_pem = \"\"\"{}\"\"\" }}]\n",
        trusted.issuer, trusted.audience, key.kid, key.public_key_pem
    );
    std::fs::write(&path, text).unwrap();
    assert_eq!(IssuersFile::load(&path).unwrap().issuers, vec![trusted]);
    std::fs::write(&path, "[[issuer]]\nissuer = 1").unwrap();
    assert!(matches!(
        IssuersFile::load(&path),
        Err(CertificateConfigError::File(_))
    ));
}

#[test]
fn a_valid_certificate_is_accepted() {
    let ha = health_authority();
    let certified = trusting(&[&ha])
        .check(&upload(certificate(&ha)), NOW)
        .unwrap();
    assert_eq!(
        certified,
        Certified {
            issuer: "health.example".into(),
            report_type: Some(ReportType::ConfirmedTest),
            symptom_onset_interval: Some(7),
        }
    );
    // Keys in another order, certificate with surrounding white space, audience as a list.
    let mut shuffled = upload(format!(" {}\n", certificate(&ha)));
    shuffled.keys.reverse();
    assert!(trusting(&[&ha]).check(&shuffled, NOW).is_ok());
    let mut claims = valid_claims();
    claims["aud"] = json!(["other.example", "enfeed.example"]);
    assert!(
        trusting(&[&ha])
            .check(&upload(ha.sign(&claims)), NOW)
            .is_ok()
    );
}

#[test]
fn certificates_are_checked_against_the_clock_with_leeway() {
    let ha = health_authority();
    let v = trusting(&[&ha]);
    let cert = upload(certificate(&ha));
    assert!(v.check(&cert, NOW + 900 + LEEWAY - 1).is_ok());
    assert_eq!(
        v.check(&cert, NOW + 900 + LEEWAY).unwrap_err(),
        CertificateError::Expired
    );
    assert!(v.check(&cert, NOW - LEEWAY).is_ok());
    assert_eq!(
        v.check(&cert, NOW - LEEWAY - 1).unwrap_err(),
        CertificateError::NotYetValid
    );
    let mut claims = valid_claims();
    claims["iat"] = json!(NOW + 3600);
    assert_eq!(
        refusal(&v, &upload(ha.sign(&claims))),
        CertificateError::IssuedInFuture
    );
}

#[test]
fn each_forgery_and_mistake_has_its_own_refusal() {
    let ha = health_authority();
    let other = CertificateIssuer::generate("v1", "other.example", "enfeed.example");
    let v = trusting(&[&ha, &other]);
    let refused = |payload: String| refusal(&v, &upload(payload));

    let genuine = certificate(&ha);
    let signature_at = genuine.rfind('.').unwrap() + 1;
    let mut bad_signature = genuine.clone();
    let first = if &genuine[signature_at..=signature_at] == "A" {
        "B"
    } else {
        "A"
    };
    bad_signature.replace_range(signature_at..=signature_at, first);
    // The claims of another upload under the genuine signature.
    let mut other_claims = valid_claims();
    other_claims["tekmac"] = json!(tekmac(&keys()[..1], HMAC_KEY));
    let swapped_claims = format!(
        "{}.{}",
        token(
            json!({"alg": ES256, "typ": "JWT", "kid": "v1"}),
            &other_claims,
            b""
        )
        .trim_end_matches('.'),
        &genuine[signature_at..]
    );
    let impostor = CertificateIssuer::generate("v1", "health.example", "enfeed.example");
    let unknown_kid = CertificateIssuer::generate("v2", "health.example", "enfeed.example");
    let stranger = CertificateIssuer::generate("v1", "nobody.example", "enfeed.example");
    // The classic confusion: HS256 keyed with the issuer's public key.
    let hs256 = {
        let unsigned = token(json!({"alg": "HS256", "kid": "v1"}), &valid_claims(), b"");
        let signed = unsigned.trim_end_matches('.');
        let public_pem = &ha.trusted().keys[0].public_key_pem;
        let mac = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, public_pem.as_bytes()),
            signed.as_bytes(),
        );
        format!("{signed}.{}", BASE64URL.encode(mac))
    };
    let expired = ha.issue(&keys(), HMAC_KEY, "confirmed", None, NOW - 7200, 3600);
    let early = ha.issue(&keys(), HMAC_KEY, "confirmed", None, NOW + 3600, 3600);
    let mut fewer_keys = keys();
    fewer_keys.pop();
    let other_keys = ha.issue(&fewer_keys, HMAC_KEY, "confirmed", None, NOW, 900);
    let other_hmac_key = ha.issue(&keys(), b"another key", "confirmed", None, NOW, 900);
    let negative = ha.issue(&keys(), HMAC_KEY, "negative", None, NOW, 900);
    let odd_report = ha.issue(&keys(), HMAC_KEY, "maybe", None, NOW, 900);
    let mut no_kid = ha.sign(&valid_claims());
    no_kid.replace_range(
        ..no_kid.find('.').unwrap(),
        &BASE64URL.encode(r#"{"alg":"ES256"}"#),
    );

    let cases = [
        (bad_signature, CertificateError::BadSignature),
        (swapped_claims, CertificateError::BadSignature),
        (
            impostor.issue(&keys(), HMAC_KEY, "confirmed", None, NOW, 900),
            CertificateError::BadSignature,
        ),
        (other.sign(&valid_claims()), CertificateError::BadSignature),
        (
            unknown_kid.issue(&keys(), HMAC_KEY, "confirmed", None, NOW, 900),
            CertificateError::UnknownKid {
                issuer: "health.example".into(),
                kid: "v2".into(),
            },
        ),
        (
            stranger.issue(&keys(), HMAC_KEY, "confirmed", None, NOW, 900),
            CertificateError::UnknownIssuer("nobody.example".into()),
        ),
        (
            token(json!({"alg": "none", "kid": "v1"}), &valid_claims(), b""),
            CertificateError::UnsupportedAlgorithm("none".into()),
        ),
        (
            hs256,
            CertificateError::UnsupportedAlgorithm("HS256".into()),
        ),
        (
            token(
                json!({"alg": "RS256", "kid": "v1"}),
                &valid_claims(),
                &[0; 256],
            ),
            CertificateError::UnsupportedAlgorithm("RS256".into()),
        ),
        (no_kid, CertificateError::MissingKid),
        (expired, CertificateError::Expired),
        (early, CertificateError::NotYetValid),
        (other_keys, CertificateError::TekmacMismatch),
        (other_hmac_key, CertificateError::TekmacMismatch),
        (negative, CertificateError::NegativeReport),
        (odd_report, CertificateError::BadReportType("maybe".into())),
    ];
    for (payload, expected) in cases {
        assert_eq!(refused(payload), expected);
    }

    let mut wrong_aud = valid_claims();
    wrong_aud["aud"] = json!("elsewhere.example");
    assert_eq!(
        refused(ha.sign(&wrong_aud)),
        CertificateError::WrongAudience("elsewhere.example".into())
    );
    let mut crit = token(
        json!({"alg": "ES256", "kid": "v1", "crit": ["exp"]}),
        &valid_claims(),
        &[0; 64],
    );
    assert!(matches!(
        refused(crit.clone()),
        CertificateError::Malformed(_)
    ));
    crit.insert(0, '!');
    assert!(matches!(refused(crit), CertificateError::Malformed(_)));
    for garbage in ["a.b", "a.b.c.d", "..", "e30.e30.", "x.y.z"] {
        assert!(
            matches!(refused(garbage.into()), CertificateError::Malformed(_)),
            "{garbage}"
        );
    }

    let mut without_hmac_key = upload(certificate(&ha));
    without_hmac_key.hmac_key = None;
    assert_eq!(
        refusal(&v, &without_hmac_key),
        CertificateError::MissingHmacKey
    );
    without_hmac_key.hmac_key = Some(Vec::new());
    assert_eq!(
        refusal(&v, &without_hmac_key),
        CertificateError::MissingHmacKey
    );
}

/// Refuses every code it is asked about, so that delegation is visible.
struct NoCodes;

#[async_trait]
impl UploadVerifier for NoCodes {
    async fn verify(
        &self,
        _: &Upload,
        _: &str,
        _: UnixSeconds,
    ) -> Result<Authorization, VerifyError> {
        Err(CodeRefused::Unknown.into())
    }
}

#[tokio::test]
async fn certificates_are_checked_and_other_payloads_delegated() {
    let ha = health_authority();
    let v = verifier(&[&ha]).or_else(Arc::new(NoCodes));
    let authorization = v
        .verify(&upload(certificate(&ha)), "client", NOW)
        .await
        .unwrap();
    // The certified diagnosis travels with the authorisation; no code is consumed.
    assert_eq!(
        authorization,
        Authorization {
            claim: None,
            report_type: Some(ReportType::ConfirmedTest),
            symptom_onset_interval: Some(7),
        }
    );
    assert!(matches!(
        v.verify(&upload("1234567890".into()), "client", NOW).await,
        Err(VerifyError::Refused(CodeRefused::Unknown))
    ));
    assert!(matches!(
        v.verify(&upload("x.y.z".into()), "client", NOW).await,
        Err(VerifyError::Certificate(CertificateError::Malformed(_)))
    ));
    // Without a fallback, a code is just a malformed certificate.
    assert!(matches!(
        verifier(&[&ha])
            .verify(&upload("1234567890".into()), "client", NOW)
            .await,
        Err(VerifyError::Certificate(CertificateError::Malformed(_)))
    ));
}

#[test]
fn issuer_configuration_is_checked() {
    let ha = health_authority();
    let mut trusted = ha.trusted();
    assert!(
        TrustedIssuers::new(vec![trusted.clone(), trusted.clone()])
            .is_err_and(|e| e == CertificateConfigError::DuplicateIssuer("health.example".into()))
    );
    trusted.keys.push(trusted.keys[0].clone());
    assert!(matches!(
        TrustedIssuers::new(vec![trusted.clone()]),
        Err(CertificateConfigError::DuplicateKid { .. })
    ));
    trusted.keys.truncate(1);
    // A P-256 private key, an RSA-looking blob and text are not P-256 public keys.
    for bad in [
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        "-----BEGIN PUBLIC KEY-----\nMA0GCSqGSIb3DQEBAQUAA4IBDwAwggEKAoIBAQ==\n\
         -----END PUBLIC KEY-----\n",
        "not pem",
    ] {
        trusted.keys[0].public_key_pem = bad.into();
        assert!(matches!(
            TrustedIssuers::new(vec![trusted.clone()]),
            Err(CertificateConfigError::NotP256PublicKey { .. })
        ));
    }
    assert!(CertificateIssuer::new(b"not a key", "v1", "a", "b").is_err());
}

#[test]
fn certificates_valid_too_long_or_with_a_future_onset_are_refused() {
    let ha = health_authority();
    let trusted = trusting(&[&ha]);
    let long = ha.issue(&keys(), HMAC_KEY, "confirmed", None, NOW, 7200);
    assert_eq!(
        refusal(&trusted, &upload(long.clone())),
        CertificateError::TooLong {
            lifetime: 7200,
            max: 3600
        }
    );
    // Without end: `exp` far in the future.
    let mut claims = valid_claims();
    claims["exp"] = json!(u64::MAX);
    assert!(matches!(
        refusal(&trusted, &upload(ha.sign(&claims))),
        CertificateError::TooLong { .. }
    ));
    // The limit is the region's to set.
    let mut patient = trusting(&[&ha]);
    patient.max_lifetime = 7200;
    assert!(patient.check(&upload(long), NOW).is_ok());
    let future_onset = interval_of(NOW) + 6 * 24 * 6;
    let onset = ha.issue(&keys(), HMAC_KEY, "confirmed", Some(future_onset), NOW, 900);
    assert_eq!(
        refusal(&trusted, &upload(onset)),
        CertificateError::OnsetInFuture
    );
}

/// Verifies `payload` (a certificate for [`keys`]) at `now`; the refusal's code, if refused.
async fn outcome(
    verifier: &CertificateVerifier,
    payload: String,
    now: UnixSeconds,
) -> &'static str {
    match verifier.verify(&upload(payload), "192.0.2.1", now).await {
        Ok(_) => "accepted",
        Err(VerifyError::Certificate(refused)) => refused.code(),
        Err(other) => panic!("not a certificate's refusal: {other}"),
    }
}

/// A certificate of `issuer` for [`keys`], issued at `now`.
fn certificate_at(issuer: &CertificateIssuer, now: UnixSeconds) -> String {
    issuer.issue(&keys(), HMAC_KEY, "confirmed", None, now, 600)
}

#[test]
fn issuer_keys_are_trusted_within_their_validity_window() {
    let authority = health_authority();
    let entry = authority.toml_entry().replace(
        "[[issuer.keys]]\n",
        &format!(
            "[[issuer.keys]]\nnot_before = {}\nnot_after = \"2023-11-15T00:00:00Z\"\n",
            NOW - 60
        ),
    );
    let issuers = TrustedIssuers::new(IssuersFile::parse(&entry, "test").unwrap().issuers).unwrap();
    let check = |now: UnixSeconds| {
        issuers
            .check(&upload(certificate_at(&authority, now)), now)
            .map(|_| "accepted")
            .unwrap_or_else(|e| e.code())
    };
    assert_eq!(check(NOW), "accepted");
    assert_eq!(check(NOW - 120), "certificate_key_not_valid");
    // 2023-11-15T00:00:00Z is 1_700_006_400.
    assert_eq!(check(1_700_006_400), "certificate_key_not_valid");
    let bad = entry.replace("2023-11-15T00:00:00Z", "next tuesday");
    assert!(IssuersFile::parse(&bad, "test").is_err());
}

#[tokio::test]
async fn issuers_and_their_key_sets_are_read_again_so_keys_rotate_without_a_redeploy() {
    let dir = tempfile::tempdir().unwrap();
    // A verification server publishing its keys as a JSON Web Key Set, over real TLS.
    let ca = BackendCa::new(&dir.path().join("ca")).unwrap();
    let (server_cert, server_key) = ca.issue("jwks", "localhost", true).unwrap();
    let (client_cert, client_key) = ca.issue("fetcher", "fetcher", false).unwrap();
    let at_v1 = CertificateIssuer::generate("v1", "health.at", "enfeed.example");
    let published = Arc::new(Mutex::new(at_v1.jwks()));
    let app = {
        let published = published.clone();
        Router::new().route(
            "/.well-known/jwks.json",
            get(move || {
                let published = published.clone();
                async move { axum::Json(published.lock().unwrap().clone()) }
            }),
        )
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://localhost:{}/.well-known/jwks.json",
        listener.local_addr().unwrap().port()
    );
    let tls = server_config(&server_cert, &server_key, &ca.ca_pem()).unwrap();
    tokio::spawn(serve(
        listener,
        app,
        Limits::default(),
        Some(tls),
        std::future::pending(),
    ));

    // Trusted: AT by its key set, and BE by a key in the file.
    let be = CertificateIssuer::generate("be-1", "health.be", "enfeed.example");
    let file = dir.path().join("issuers.toml");
    let at_entry = format!(
        "[[issuer]]\nissuer = \"health.at\"\naudience = \"enfeed.example\"\njwks_url = {url:?}\n\n"
    );
    std::fs::write(&file, format!("{at_entry}{}", be.toml_entry())).unwrap();
    let updates = IssuerUpdates {
        source: Arc::new(FileIssuers(file.clone())),
        fetch: Arc::new(
            HttpsFetch::new(Some((&client_cert, &client_key)), Some(&ca.ca_pem())).unwrap(),
        ),
        every: 300,
    };
    let verifier = CertificateVerifier::following(updates, NOW).await.unwrap();
    assert_eq!(
        outcome(&verifier, certificate_at(&at_v1, NOW), NOW).await,
        "accepted"
    );
    assert_eq!(
        outcome(&verifier, certificate_at(&be, NOW), NOW).await,
        "accepted"
    );

    // AT rotates its key, and BE is no longer trusted: nothing changes before the refresh...
    let at_v2 = CertificateIssuer::generate("v2", "health.at", "enfeed.example");
    *published.lock().unwrap() = at_v2.jwks();
    std::fs::write(&file, &at_entry).unwrap();
    let soon = NOW + 10;
    assert_eq!(
        outcome(&verifier, certificate_at(&at_v2, soon), soon).await,
        "certificate_unknown_kid"
    );
    assert_eq!(
        outcome(&verifier, certificate_at(&be, soon), soon).await,
        "accepted"
    );
    // ...and everything after it.
    let later = NOW + 300;
    assert_eq!(
        outcome(&verifier, certificate_at(&at_v2, later), later).await,
        "accepted"
    );
    assert_eq!(
        outcome(&verifier, certificate_at(&at_v1, later), later).await,
        "certificate_unknown_kid"
    );
    assert_eq!(
        outcome(&verifier, certificate_at(&be, later), later).await,
        "certificate_unknown_issuer"
    );

    // A refresh that fails keeps the issuers trusted until then.
    std::fs::write(&file, "[[issuer]]\nthis is not TOML").unwrap();
    let much_later = NOW + 600;
    assert_eq!(
        outcome(&verifier, certificate_at(&at_v2, much_later), much_later).await,
        "accepted"
    );
}
