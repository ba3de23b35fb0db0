//! Verification certificates, as in Google's reference key server: the health authority's
//! verification server signs a JWT (ES256) whose `tekmac` claim binds it to the keys of one
//! upload. [`CertificateVerifier`] is the [`UploadVerifier`] that checks them, handing other
//! payloads (one-time codes) to a fallback; [`CertificateIssuer`] signs them, for tests and for
//! simulated health authorities.
//!
//! The JWS is verified with ring directly: it is one ECDSA P-256 check over `header.claims`,
//! and accepting nothing but `ES256` is then a string comparison rather than a library
//! setting. A certificate is not single use (the reference server keeps no `jti` either): it
//! can only ever authorise the very keys its `tekmac` covers, so a replay uploads keys that are
//! already stored.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as BASE64, URL_SAFE_NO_PAD as BASE64URL};
use ring::hmac;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use serde::Deserialize;
use serde_json::json;

use crate::authorize::{Authorization, UploadVerifier, VerifyError};
use crate::key::{DiagnosisKey, ReportType};
use crate::ports::UnixSeconds;
use crate::signing::VerificationKey;
use crate::upload::Upload;

/// Seconds of clock skew tolerated in `exp`, `nbf` and `iat`.
pub const LEEWAY: u64 = 60;

/// The only JWS algorithm accepted: ECDSA P-256 with SHA-256.
const ES256: &str = "ES256";

/// A trusted health authority: who signs certificates.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct TrustedIssuer {
    /// The `iss` claim of its certificates.
    pub issuer: String,
    /// The `aud` its certificates must name: this key server.
    pub audience: String,
    pub keys: Vec<IssuerKey>,
}

/// One of an issuer's signing keys.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct IssuerKey {
    /// The `kid` header of the certificates it signs.
    pub kid: String,
    /// The P-256 public key as SubjectPublicKeyInfo PEM (`PUBLIC KEY`).
    pub public_key_pem: String,
}

/// The trusted issuers file (TOML), one `[[issuer]]` per health authority:
///
/// ```toml
/// [[issuer]]
/// issuer = "health.example"       # the certificates' `iss`
/// audience = "enfeed.example"     # their `aud`
/// keys = [{ kid = "v1", public_key_pem = """-----BEGIN PUBLIC KEY----- ... -----END PUBLIC KEY-----""" }]
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuersFile {
    #[serde(default, rename = "issuer")]
    pub issuers: Vec<TrustedIssuer>,
}

impl IssuersFile {
    pub fn load(path: &std::path::Path) -> Result<Self, CertificateConfigError> {
        let unreadable = |e: &dyn std::fmt::Display| {
            CertificateConfigError::File(format!("{}: {e}", path.display()))
        };
        let text = std::fs::read_to_string(path).map_err(|e| unreadable(&e))?;
        toml::from_str(&text).map_err(|e| unreadable(&e))
    }
}

/// A misconfigured issuer or signing key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateConfigError {
    #[error("issuer {0:?} is configured twice")]
    DuplicateIssuer(String),
    #[error("issuer {issuer:?} has key {kid:?} twice")]
    DuplicateKid { issuer: String, kid: String },
    #[error(
        "key {kid:?} of issuer {issuer:?} is not an ECDSA P-256 public key in \
         SubjectPublicKeyInfo PEM (\"PUBLIC KEY\")"
    )]
    NotP256PublicKey { issuer: String, kid: String },
    #[error("the signing key is not a PKCS#8 ECDSA P-256 private key: {0}")]
    NotP256PrivateKey(String),
    #[error("trusted issuers file {0}")]
    File(String),
}

/// Why a certificate does not authorise an upload. Each variant has a stable
/// [`code`](CertificateError::code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    #[error("the verification certificate is not a well-formed JWT: {0}")]
    Malformed(String),
    #[error("the verification certificate is signed with {0:?}; only ES256 is accepted")]
    UnsupportedAlgorithm(String),
    #[error("the verification certificate has no kid header")]
    MissingKid,
    #[error("the verification certificate's issuer {0:?} is not trusted")]
    UnknownIssuer(String),
    #[error("the verification certificate's key {kid:?} is not a key of issuer {issuer:?}")]
    UnknownKid { issuer: String, kid: String },
    #[error("the verification certificate's signature is not valid")]
    BadSignature,
    #[error("the verification certificate is for audience {0:?}, not for this server")]
    WrongAudience(String),
    #[error("the verification certificate has expired")]
    Expired,
    #[error("the verification certificate is not valid yet (nbf)")]
    NotYetValid,
    #[error("the verification certificate is issued in the future (iat)")]
    IssuedInFuture,
    #[error("reportType {0:?} is not one of confirmed, likely, user-report")]
    BadReportType(String),
    #[error("the verification certificate reports a negative test")]
    NegativeReport,
    #[error("a verification certificate needs the upload's hmacKey")]
    MissingHmacKey,
    #[error("the verification certificate's tekmac does not match the uploaded keys and hmacKey")]
    TekmacMismatch,
}

impl CertificateError {
    /// A short, stable, machine-readable name for the error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "certificate_malformed",
            Self::UnsupportedAlgorithm(_) => "certificate_algorithm",
            Self::MissingKid => "certificate_missing_kid",
            Self::UnknownIssuer(_) => "certificate_unknown_issuer",
            Self::UnknownKid { .. } => "certificate_unknown_kid",
            Self::BadSignature => "certificate_bad_signature",
            Self::WrongAudience(_) => "certificate_wrong_audience",
            Self::Expired => "certificate_expired",
            Self::NotYetValid => "certificate_not_yet_valid",
            Self::IssuedInFuture => "certificate_issued_in_future",
            Self::BadReportType(_) => "certificate_bad_report_type",
            Self::NegativeReport => "certificate_negative_report",
            Self::MissingHmacKey => "certificate_missing_hmac_key",
            Self::TekmacMismatch => "certificate_tekmac_mismatch",
        }
    }
}

/// What a valid certificate says about the diagnosis. The reference server lets these
/// override what the upload itself declares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Certified {
    pub issuer: String,
    /// From the `reportType` claim, when present.
    pub report_type: Option<ReportType>,
    /// From the `symptomOnsetInterval` claim, when present.
    pub symptom_onset_interval: Option<u32>,
}

/// The trusted keys of one issuer, by `kid`.
struct Issuer {
    audience: String,
    keys: HashMap<String, UnparsedPublicKey<Vec<u8>>>,
}

/// Checks verification certificates; see the [module documentation](self).
pub struct CertificateVerifier {
    issuers: HashMap<String, Issuer>,
    fallback: Option<Arc<dyn UploadVerifier>>,
}

impl CertificateVerifier {
    /// A verifier that trusts `issuers` and nothing else.
    pub fn new(issuers: Vec<TrustedIssuer>) -> Result<Self, CertificateConfigError> {
        let mut by_name = HashMap::with_capacity(issuers.len());
        for trusted in issuers {
            let mut keys = HashMap::with_capacity(trusted.keys.len());
            for key in trusted.keys {
                let point = p256_point(&key.public_key_pem).ok_or_else(|| {
                    CertificateConfigError::NotP256PublicKey {
                        issuer: trusted.issuer.clone(),
                        kid: key.kid.clone(),
                    }
                })?;
                let public_key = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point);
                if keys.insert(key.kid.clone(), public_key).is_some() {
                    return Err(CertificateConfigError::DuplicateKid {
                        issuer: trusted.issuer,
                        kid: key.kid,
                    });
                }
            }
            let issuer = Issuer {
                audience: trusted.audience,
                keys,
            };
            if by_name.insert(trusted.issuer.clone(), issuer).is_some() {
                return Err(CertificateConfigError::DuplicateIssuer(trusted.issuer));
            }
        }
        Ok(Self {
            issuers: by_name,
            fallback: None,
        })
    }

    /// Hands payloads that are not JWTs (not three dot-separated parts), such as one-time
    /// codes, to `other`.
    pub fn or_else(self, other: Arc<dyn UploadVerifier>) -> Self {
        Self {
            fallback: Some(other),
            ..self
        }
    }

    /// Checks the upload's verification payload as a certificate at time `now`.
    pub fn check(&self, upload: &Upload, now: UnixSeconds) -> Result<Certified, CertificateError> {
        let (claims, issuer) = self.verified_claims(upload.verification_payload.trim())?;
        if !claims.aud.names(&issuer.audience) {
            return Err(CertificateError::WrongAudience(claims.aud.to_string()));
        }
        if now >= claims.exp.saturating_add(LEEWAY) {
            return Err(CertificateError::Expired);
        }
        if claims.nbf > now.saturating_add(LEEWAY) {
            return Err(CertificateError::NotYetValid);
        }
        if claims.iat > now.saturating_add(LEEWAY) {
            return Err(CertificateError::IssuedInFuture);
        }
        let report_type = claims
            .report_type
            .as_deref()
            .filter(|r| !r.is_empty())
            .map(parse_report_type)
            .transpose()?;
        let hmac_key = upload
            .hmac_key
            .as_deref()
            .filter(|k| !k.is_empty())
            .ok_or(CertificateError::MissingHmacKey)?;
        let tekmac = BASE64
            .decode(&claims.tekmac)
            .map_err(|_| CertificateError::TekmacMismatch)?;
        // Constant-time comparison.
        hmac::verify(
            &hmac::Key::new(hmac::HMAC_SHA256, hmac_key),
            tekmac_message(&upload.keys).as_bytes(),
            &tekmac,
        )
        .map_err(|_| CertificateError::TekmacMismatch)?;
        Ok(Certified {
            issuer: claims.iss,
            report_type,
            symptom_onset_interval: claims.symptom_onset_interval,
        })
    }

    /// The claims of an ES256 JWS signed by a trusted issuer's key, and that issuer.
    fn verified_claims(&self, token: &str) -> Result<(Claims, &Issuer), CertificateError> {
        let jws = Jws::split(token).ok_or_else(|| malformed("not three dot-separated parts"))?;
        let header: Header = decode_json(jws.header, "header")?;
        if header.alg != ES256 {
            return Err(CertificateError::UnsupportedAlgorithm(header.alg));
        }
        if header.crit.is_some() {
            return Err(malformed("critical header extensions are not supported"));
        }
        let kid = header.kid.ok_or(CertificateError::MissingKid)?;
        // Not trusted until the signature is checked: read only to find the key.
        let claims: Claims = decode_json(jws.claims, "claims")?;
        let issuer = self
            .issuers
            .get(&claims.iss)
            .ok_or_else(|| CertificateError::UnknownIssuer(claims.iss.clone()))?;
        let key = issuer
            .keys
            .get(&kid)
            .ok_or_else(|| CertificateError::UnknownKid {
                issuer: claims.iss.clone(),
                kid,
            })?;
        jws.verify(key)?;
        Ok((claims, issuer))
    }
}

#[async_trait]
impl UploadVerifier for CertificateVerifier {
    async fn verify(
        &self,
        upload: &Upload,
        client: &str,
        now: UnixSeconds,
    ) -> Result<Authorization, VerifyError> {
        match &self.fallback {
            Some(other) if Jws::split(upload.verification_payload.trim()).is_none() => {
                other.verify(upload, client, now).await
            }
            _ => {
                let certified = self.check(upload, now)?;
                Ok(Authorization {
                    claim: None,
                    report_type: certified.report_type,
                    symptom_onset_interval: certified.symptom_onset_interval,
                })
            }
        }
    }
}

/// The `tekmac` claim for `keys`: base64 of HMAC-SHA256, keyed with `hmac_key`, over the keys
/// rendered `base64(key).rollingStartNumber.rollingPeriod.transmissionRisk`, sorted as
/// strings and joined with commas.
pub fn tekmac(keys: &[DiagnosisKey], hmac_key: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, hmac_key);
    BASE64.encode(hmac::sign(&key, tekmac_message(keys).as_bytes()))
}

fn tekmac_message(keys: &[DiagnosisKey]) -> String {
    let mut rendered: Vec<String> = keys
        .iter()
        .map(|k| {
            format!(
                "{}.{}.{}.{}",
                BASE64.encode(k.key_data),
                k.rolling_start,
                k.rolling_period,
                k.transmission_risk
            )
        })
        .collect();
    rendered.sort_unstable();
    rendered.join(",")
}

fn parse_report_type(value: &str) -> Result<ReportType, CertificateError> {
    match value {
        "confirmed" => Ok(ReportType::ConfirmedTest),
        "likely" => Ok(ReportType::ConfirmedClinicalDiagnosis),
        "user-report" => Ok(ReportType::SelfReport),
        "negative" => Err(CertificateError::NegativeReport),
        other => Err(CertificateError::BadReportType(other.to_owned())),
    }
}

/// The uncompressed point of a P-256 SubjectPublicKeyInfo PEM. ring checks that it is on the
/// curve when it verifies.
fn p256_point(pem_text: &str) -> Option<Vec<u8>> {
    VerificationKey::from_pem(pem_text, "", "")
        .ok()
        .map(|key| key.point().to_vec())
}

fn malformed(why: &str) -> CertificateError {
    CertificateError::Malformed(why.to_owned())
}

/// A JWS in compact serialization, split into its base64url parts; nothing in it is trusted.
struct Jws<'a> {
    /// `header.claims`, what the signature covers.
    signed: &'a str,
    header: &'a str,
    claims: &'a str,
    signature: &'a str,
}

impl<'a> Jws<'a> {
    fn split(token: &'a str) -> Option<Self> {
        let (signed, signature) = token.rsplit_once('.')?;
        let (header, claims) = signed.split_once('.')?;
        (!claims.contains('.')).then_some(Self {
            signed,
            header,
            claims,
            signature,
        })
    }

    fn verify(&self, key: &UnparsedPublicKey<Vec<u8>>) -> Result<(), CertificateError> {
        let signature = BASE64URL
            .decode(self.signature)
            .map_err(|_| CertificateError::BadSignature)?;
        key.verify(self.signed.as_bytes(), &signature)
            .map_err(|_| CertificateError::BadSignature)
    }
}

fn decode_json<T: serde::de::DeserializeOwned>(
    part: &str,
    name: &str,
) -> Result<T, CertificateError> {
    let bytes = BASE64URL
        .decode(part)
        .map_err(|_| malformed(&format!("the {name} is not base64url")))?;
    serde_json::from_slice(&bytes).map_err(|e| malformed(&format!("the {name}: {e}")))
}

/// The JOSE header; other members (`typ`) are ignored.
#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
    crit: Option<serde_json::Value>,
}

/// The claims of a certificate; all but the last two are required.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Claims {
    iss: String,
    aud: Audience,
    exp: u64,
    nbf: u64,
    iat: u64,
    tekmac: String,
    report_type: Option<String>,
    symptom_onset_interval: Option<u32>,
}

/// A JWT `aud`: one name or a list of them.
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn names(&self, audience: &str) -> bool {
        match self {
            Audience::One(one) => one == audience,
            Audience::Many(many) => many.iter().any(|a| a == audience),
        }
    }
}

impl std::fmt::Display for Audience {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Audience::One(one) => f.write_str(one),
            Audience::Many(many) => f.write_str(&many.join(", ")),
        }
    }
}

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
    ) -> Result<Self, CertificateConfigError> {
        let key_pair = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            signing_key_pkcs8,
            &SystemRandom::new(),
        )
        .map_err(|e| CertificateConfigError::NotP256PrivateKey(e.to_string()))?;
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
            }],
        }
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
    fn sign(&self, claims: &serde_json::Value) -> String {
        let header = json!({ "alg": ES256, "typ": "JWT", "kid": self.kid });
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authorize::VerifyError;
    use crate::key::{INTERVALS_PER_DAY, interval_of};
    use crate::ports::CodeRefused;

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
        Upload {
            keys: keys(),
            regions: vec!["CH".parse().unwrap()],
            verification_payload: payload,
            hmac_key: Some(HMAC_KEY.to_vec()),
        }
    }

    fn health_authority() -> CertificateIssuer {
        CertificateIssuer::generate("v1", "health.example", "enfeed.example")
    }

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

    fn refusal(verifier: &CertificateVerifier, upload: &Upload) -> CertificateError {
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
        let certified = verifier(&[&ha])
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
        assert!(verifier(&[&ha]).check(&shuffled, NOW).is_ok());
        let mut claims = valid_claims();
        claims["aud"] = json!(["other.example", "enfeed.example"]);
        assert!(
            verifier(&[&ha])
                .check(&upload(ha.sign(&claims)), NOW)
                .is_ok()
        );
    }

    #[test]
    fn certificates_are_checked_against_the_clock_with_leeway() {
        let ha = health_authority();
        let v = verifier(&[&ha]);
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
        let v = verifier(&[&ha, &other]);
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

    #[test]
    fn refusals_have_distinct_codes() {
        let all = [
            CertificateError::Malformed(String::new()),
            CertificateError::UnsupportedAlgorithm(String::new()),
            CertificateError::MissingKid,
            CertificateError::UnknownIssuer(String::new()),
            CertificateError::UnknownKid {
                issuer: String::new(),
                kid: String::new(),
            },
            CertificateError::BadSignature,
            CertificateError::WrongAudience(String::new()),
            CertificateError::Expired,
            CertificateError::NotYetValid,
            CertificateError::IssuedInFuture,
            CertificateError::BadReportType(String::new()),
            CertificateError::NegativeReport,
            CertificateError::MissingHmacKey,
            CertificateError::TekmacMismatch,
        ];
        let codes: std::collections::HashSet<_> = all.iter().map(|e| e.code()).collect();
        assert_eq!(codes.len(), all.len());
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
    fn tekmac_is_over_the_sorted_rendered_keys() {
        // Computed independently (Python hmac). "/" sorts before "A": the order is that of the
        // rendered strings, not of the key bytes.
        let key = |data: [u8; 16], start, period, risk| DiagnosisKey {
            key_data: data,
            rolling_start: start,
            rolling_period: period,
            transmission_risk: risk,
            report_type: ReportType::ConfirmedTest,
            days_since_onset: None,
        };
        let keys = [
            key(std::array::from_fn(|i| i as u8), 2_650_032, 144, 4),
            key([0xff; 16], 2_650_176, 72, 0),
            key(std::array::from_fn(|i| 16 + i as u8), 2_649_888, 144, 8),
        ];
        assert_eq!(
            tekmac_message(&keys),
            "/////////////////////w==.2650176.72.0,AAECAwQFBgcICQoLDA0ODw==.2650032.144.4,\
             EBESExQVFhcYGRobHB0eHw==.2649888.144.8"
        );
        assert_eq!(
            tekmac(&keys, b"hmac key bytes"),
            "FK64TIcRN85h6wV3W41iN1wcxVp8B77k1OWjY2i5qpw="
        );
    }

    #[test]
    fn verifies_the_es256_example_of_rfc_7515() {
        // RFC 7515 appendix A.3: its public key as SPKI PEM, and its JWS.
        let coordinate = |b64| BASE64URL.decode(b64).unwrap();
        let point = [
            &[0x04][..],
            &coordinate("f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU"),
            &coordinate("x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"),
        ]
        .concat();
        let pem_text = VerificationKey::from_point(&point, "", "")
            .unwrap()
            .to_pem();
        let key = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, p256_point(&pem_text).unwrap());
        let jws = Jws::split(concat!(
            "eyJhbGciOiJFUzI1NiJ9.",
            "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxl",
            "LmNvbS9pc19yb290Ijp0cnVlfQ.",
            "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSA",
            "pmWQxfKTUJqPP3-Kg6NU1Q",
        ))
        .unwrap();
        assert_eq!(jws.verify(&key), Ok(()));
    }

    #[test]
    fn issuer_configuration_is_checked() {
        let ha = health_authority();
        let mut trusted = ha.trusted();
        assert!(
            CertificateVerifier::new(vec![trusted.clone(), trusted.clone()]).is_err_and(
                |e| e == CertificateConfigError::DuplicateIssuer("health.example".into())
            )
        );
        trusted.keys.push(trusted.keys[0].clone());
        assert!(matches!(
            CertificateVerifier::new(vec![trusted.clone()]),
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
                CertificateVerifier::new(vec![trusted.clone()]),
                Err(CertificateConfigError::NotP256PublicKey { .. })
            ));
        }
        assert!(CertificateIssuer::new(b"not a key", "v1", "a", "b").is_err());
    }
}
