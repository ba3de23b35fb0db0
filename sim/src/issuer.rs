//! A health authority's verification server, reduced to what the lab and the tests need: one
//! ES256 key that signs verification certificates (JWTs whose `tekmac` binds them to the keys of
//! one upload), as Google's reference verification server does. A real verification server is
//! a separate system; enfeed only checks its certificates.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use enfeed::domain::certificate::{IssuerKey, TrustedIssuer, tekmac};
use enfeed::domain::key::DiagnosisKey;
use enfeed::domain::signature::VerificationKey;
use enfeed::ports::UnixSeconds;
use ring::error::KeyRejected;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::json;

/// A health authority's certificate signing: one ES256 key. For tests and for simulated
/// (foreign) health authorities; a real verification server is a separate system.
pub struct CertificateIssuer {
    key_pair: EcdsaKeyPair,
    kid: String,
    issuer: String,
    audience: String,
}

impl CertificateIssuer {
    /// An issuer `issuer` signing for `audience` with the PKCS#8 P-256 key `signing_key_pkcs8`
    /// (DER), named `kid`.
    pub fn new(
        signing_key_pkcs8: &[u8],
        kid: &str,
        issuer: &str,
        audience: &str,
    ) -> Result<Self, KeyRejected> {
        let key_pair = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            signing_key_pkcs8,
            &SystemRandom::new(),
        )?;
        Ok(Self {
            key_pair,
            kid: kid.to_owned(),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        })
    }

    /// An issuer with a fresh random key.
    pub fn generate(kid: &str, issuer: &str, audience: &str) -> Self {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .expect("the system random source works");
        Self::new(pkcs8.as_ref(), kid, issuer, audience).expect("ring reads its own PKCS#8")
    }

    /// How a key server is configured to trust this issuer.
    pub fn trusted(&self) -> TrustedIssuer {
        let public_key =
            VerificationKey::from_point(self.key_pair.public_key().as_ref(), &self.kid, "")
                .expect("ring's P-256 public keys are uncompressed points");
        TrustedIssuer {
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            keys: vec![IssuerKey {
                kid: self.kid.clone(),
                public_key_pem: public_key.to_pem(),
                not_before: None,
                not_after: None,
            }],
            jwks_url: None,
        }
    }

    /// This issuer as an `[[issuer]]` of a trusted issuers file (TOML), with its key.
    pub fn toml_entry(&self) -> String {
        let key = &self.trusted().keys[0];
        format!(
            "[[issuer]]\nissuer = {:?}\naudience = {:?}\n\n[[issuer.keys]]\nkid = {:?}\n\
             public_key_pem = \"\"\"\n{}\"\"\"\n",
            self.issuer, self.audience, key.kid, key.public_key_pem
        )
    }

    /// The issuer's public key as a JSON Web Key Set (RFC 7517), as verification servers
    /// publish theirs.
    pub fn jwks(&self) -> serde_json::Value {
        let point = self.key_pair.public_key().as_ref();
        let coordinate = |bytes: &[u8]| BASE64URL.encode(bytes);
        json!({"keys": [{
            "kty": "EC",
            "crv": "P-256",
            "use": "sig",
            "alg": "ES256",
            "kid": self.kid,
            "x": coordinate(&point[1..33]),
            "y": coordinate(&point[33..65]),
        }]})
    }

    /// A certificate for an upload of `keys` with `hmac_key`, valid from `now` for `lifetime`
    /// seconds. `report_type` is the claim's text: confirmed, likely, user-report (or negative).
    pub fn issue(
        &self,
        keys: &[DiagnosisKey],
        hmac_key: &[u8],
        report_type: &str,
        symptom_onset_interval: Option<u32>,
        now: UnixSeconds,
        lifetime: u64,
    ) -> String {
        let mut claims = json!({
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "nbf": now,
            "exp": now.saturating_add(lifetime),
            "tekmac": tekmac(keys, hmac_key),
            "reportType": report_type,
        });
        if let Some(onset) = symptom_onset_interval {
            claims["symptomOnsetInterval"] = onset.into();
        }
        self.sign(&claims)
    }

    /// A compact JWS of `claims`, signed ES256 with this issuer's `kid`.
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let header = json!({ "alg": "ES256", "typ": "JWT", "kid": self.kid });
        let signed = format!(
            "{}.{}",
            BASE64URL.encode(header.to_string()),
            BASE64URL.encode(claims.to_string())
        );
        let signature = self
            .key_pair
            .sign(&SystemRandom::new(), signed.as_bytes())
            .expect("ECDSA signing with a valid key works");
        format!("{signed}.{}", BASE64URL.encode(signature))
    }
}
