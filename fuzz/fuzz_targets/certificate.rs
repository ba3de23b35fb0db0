//! Verification certificates (ES256 JWTs) and where their issuers' keys come from. The first
//! byte chooses what the rest is:
//! - 0: a certificate, checked as the upload's verification payload;
//! - 1: a JOSE header and claims (JSON) on two lines, which the harness signs with a trusted
//!   key, so that the fuzzer reaches the checks behind the signature; `$TEKMAC` in the claims
//!   reads as the upload's right `tekmac`;
//! - 2: a JSON Web Key Set, and a trusted issuers file.
#![no_main]

use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as BASE64, URL_SAFE_NO_PAD as BASE64URL};
use enfeed::Config;
use enfeed::domain::certificate::{
    IssuerKey, IssuersFile, TrustedIssuer, TrustedIssuers, jwks_keys,
};
use enfeed::domain::signature::VerificationKey;
use enfeed::domain::upload::{PublishRequest, Upload};
use libfuzzer_sys::fuzz_target;
use ring::hmac;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};

/// The time the certificate is checked at.
const NOW: u64 = 1_795_000_000;

/// The upload the certificate must vouch for.
const UPLOAD: &str = r#"{
  "temporaryExposureKeys": [
    {"key": "AAECAwQFBgcICQoLDA0ODw==", "rollingStartNumber": 2991456, "rollingPeriod": 144},
    {"key": "EBESExQVFhcYGRobHB0eHw==", "rollingStartNumber": 2991312, "rollingPeriod": 144, "transmissionRisk": 2}
  ],
  "verificationPayload": "replaced by the certificate",
  "hmacKey": "c2VjcmV0IGhtYWMga2V5IG9mIHRoZSBwaG9uZQ=="
}"#;

struct World {
    signer: EcdsaKeyPair,
    issuers: TrustedIssuers,
    upload: Upload,
    tekmac: String,
}

static WORLD: LazyLock<World> = LazyLock::new(|| {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let signer =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let public = VerificationKey::from_point(signer.public_key().as_ref(), "", "").unwrap();
    let issuers = TrustedIssuers::new(vec![TrustedIssuer {
        issuer: "health.example".into(),
        audience: "enfeed.example".into(),
        keys: vec![IssuerKey {
            kid: "v1".into(),
            public_key_pem: public.to_pem(),
            not_before: None,
            not_after: Some(NOW + 86_400),
        }],
        jwks_url: None,
    }])
    .unwrap();
    let config = Config::new("CH".parse().unwrap());
    let upload = PublishRequest::from_json(UPLOAD.as_bytes())
        .unwrap()
        .validate(&config, NOW)
        .unwrap();
    // Over the keys as sent, as the phone computed it.
    let hmac_key = hmac::Key::new(hmac::HMAC_SHA256, upload.hmac_key.as_deref().unwrap());
    let tekmac = BASE64.encode(hmac::sign(&hmac_key, upload.tekmac_message.as_bytes()));
    World {
        signer,
        issuers,
        upload,
        tekmac,
    }
});

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let world = &*WORLD;
    match mode % 3 {
        0 => check(world, String::from_utf8_lossy(rest).into_owned()),
        1 => {
            let text = String::from_utf8_lossy(rest);
            let (header, claims) = text.split_once('\n').unwrap_or((&text, ""));
            let claims = claims.replace("$TEKMAC", &world.tekmac);
            let signed = format!("{}.{}", BASE64URL.encode(header), BASE64URL.encode(claims));
            let signature = world
                .signer
                .sign(&SystemRandom::new(), signed.as_bytes())
                .unwrap();
            check(
                world,
                format!("{signed}.{}", BASE64URL.encode(signature.as_ref())),
            );
        }
        _ => {
            let _ = jwks_keys(rest);
            if let Ok(text) = std::str::from_utf8(rest)
                && let Ok(file) = IssuersFile::parse(text, "issuers.toml")
            {
                let _ = TrustedIssuers::new(file.issuers);
            }
        }
    }
});

fn check(world: &World, certificate: String) {
    let mut upload = world.upload.clone();
    upload.verification_payload = certificate;
    if let Ok(certified) = world.issuers.check(&upload, NOW) {
        assert_eq!(certified.issuer, "health.example");
    }
}
