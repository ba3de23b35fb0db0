//! Verification certificates, as in Google's reference key server: the health authority's
//! verification server signs a JWT (ES256) whose `tekmac` claim binds it to the keys of one
//! upload. [`TrustedIssuers`] checks them (the certificate verifier service puts that check
//! behind the upload verifier port). The lab's `CertificateIssuer` signs them, for tests and
//! simulated health authorities.
//!
//! The JWS is verified with ring directly: it is one ECDSA P-256 check over `header.claims`,
//! and accepting nothing but `ES256` is then a string comparison rather than a library
//! setting. A certificate is not single use (the reference server keeps no `jti` either): it
//! can only ever authorise the very keys its `tekmac` covers, so a replay uploads keys that are
//! already stored.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as BASE64, URL_SAFE_NO_PAD as BASE64URL};
use ring::hmac;
use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use serde::Deserialize;

use crate::domain::config::CERTIFICATE_MAX_LIFETIME;
use crate::domain::key::{DiagnosisKey, ReportType, UnixSeconds, interval_of};
use crate::domain::signature::VerificationKey;
use crate::domain::upload::{Upload, render_for_tekmac, tekmac_message};

/// Seconds of clock skew tolerated in `exp`, `nbf` and `iat`.
pub const LEEWAY: u64 = 60;

/// The only JWS algorithm accepted: ECDSA P-256 with SHA-256.
const ES256: &str = "ES256";

/// A trusted health authority: who signs certificates.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedIssuer {
    /// The `iss` claim of its certificates.
    pub issuer: String,
    /// The `aud` its certificates must name: this key server.
    pub audience: String,
    #[serde(default)]
    pub keys: Vec<IssuerKey>,
    /// A JSON Web Key Set (RFC 7517) whose P-256 keys are this issuer's too, fetched again at
    /// every refresh of the trusted issuers.
    #[serde(default)]
    pub jwks_url: Option<String>,
}

/// One of an issuer's signing keys.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerKey {
    /// The `kid` header of the certificates it signs.
    pub kid: String,
    /// The P-256 public key as SubjectPublicKeyInfo PEM (`PUBLIC KEY`).
    pub public_key_pem: String,
    /// From when the key is trusted (Unix seconds, or RFC 3339 text); always, if not given.
    #[serde(default, deserialize_with = "moment")]
    pub not_before: Option<UnixSeconds>,
    /// Until when the key is trusted; for good, if not given.
    #[serde(default, deserialize_with = "moment")]
    pub not_after: Option<UnixSeconds>,
}

/// A moment given as Unix seconds or as RFC 3339 text (`"2026-12-31T00:00:00Z"`).
fn moment<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<UnixSeconds>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Moment {
        Seconds(u64),
        Text(String),
    }
    match Moment::deserialize(d)? {
        Moment::Seconds(seconds) => Ok(Some(seconds)),
        Moment::Text(text) => {
            let at =
                time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
                    .map_err(|e| {
                        serde::de::Error::custom(format!("{text:?} is not RFC 3339: {e}"))
                    })?;
            u64::try_from(at.unix_timestamp())
                .map(Some)
                .map_err(|_| serde::de::Error::custom(format!("{text:?} is before 1970")))
        }
    }
}

/// The trusted issuers file (TOML), one `[[issuer]]` per health authority:
///
/// ```toml
/// [[issuer]]
/// issuer = "health.example"       # the certificates' `iss`
/// audience = "enfeed.example"     # their `aud`
/// jwks_url = "https://health.example/.well-known/jwks.json"   # optional: keys to fetch
///
/// [[issuer.keys]]                 # keys given here (besides, or instead of, the JWKS)
/// kid = "v1"
/// public_key_pem = """-----BEGIN PUBLIC KEY----- ... -----END PUBLIC KEY-----"""
/// not_after = "2026-12-31T00:00:00Z"   # optional validity window: not_before, not_after
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuersFile {
    #[serde(default, rename = "issuer")]
    pub issuers: Vec<TrustedIssuer>,
}

impl IssuersFile {
    /// The file's text, parsed; `source` names where it came from, for errors.
    pub fn parse(text: &str, source: &str) -> Result<Self, CertificateConfigError> {
        toml::from_str(text).map_err(|e| CertificateConfigError::File(format!("{source}: {e}")))
    }

    pub fn load(path: &std::path::Path) -> Result<Self, CertificateConfigError> {
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| CertificateConfigError::File(format!("{source}: {e}")))?;
        Self::parse(&text, &source)
    }
}

/// The ES256 signing keys in a JSON Web Key Set: every key of type `EC` on curve `P-256`
/// with a `kid` (other keys cannot sign certificates, and are left out).
pub fn jwks_keys(json: &[u8]) -> Result<Vec<IssuerKey>, CertificateConfigError> {
    #[derive(Deserialize)]
    struct Set {
        keys: Vec<Jwk>,
    }
    #[derive(Deserialize)]
    struct Jwk {
        kty: String,
        crv: Option<String>,
        kid: Option<String>,
        x: Option<String>,
        y: Option<String>,
        #[serde(rename = "use")]
        usage: Option<String>,
    }
    let bad = |why: String| CertificateConfigError::Jwks(why);
    let set: Set = serde_json::from_slice(json).map_err(|e| bad(e.to_string()))?;
    let mut keys = Vec::new();
    for jwk in set.keys {
        let (Some(kid), Some(x), Some(y)) = (jwk.kid, jwk.x, jwk.y) else {
            continue;
        };
        if jwk.kty != "EC"
            || jwk.crv.as_deref() != Some("P-256")
            || jwk.usage.as_deref().is_some_and(|usage| usage != "sig")
        {
            continue;
        }
        let coordinate = |c: &str| {
            BASE64URL
                .decode(c)
                .ok()
                .filter(|bytes| bytes.len() == 32)
                .ok_or_else(|| {
                    bad(format!(
                        "key {kid:?}: a coordinate is not 32 bytes of base64url"
                    ))
                })
        };
        let mut point = vec![4u8];
        point.extend(coordinate(&x)?);
        point.extend(coordinate(&y)?);
        let key = VerificationKey::from_point(&point, &kid, "")
            .map_err(|_| bad(format!("key {kid:?} is not a point on P-256")))?;
        keys.push(IssuerKey {
            kid,
            public_key_pem: key.to_pem(),
            not_before: None,
            not_after: None,
        });
    }
    Ok(keys)
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
    #[error("trusted issuers file {0}")]
    File(String),
    #[error("JSON Web Key Set: {0}")]
    Jwks(String),
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
    #[error("key {kid:?} of issuer {issuer:?} is not trusted at this time")]
    KeyNotValid { issuer: String, kid: String },
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
    #[error(
        "the verification certificate is valid for {lifetime} seconds; at most {max} are accepted"
    )]
    TooLong { lifetime: u64, max: u64 },
    #[error("the verification certificate's symptomOnsetInterval is in the future")]
    OnsetInFuture,
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
            Self::KeyNotValid { .. } => "certificate_key_not_valid",
            Self::BadSignature => "certificate_bad_signature",
            Self::WrongAudience(_) => "certificate_wrong_audience",
            Self::Expired => "certificate_expired",
            Self::NotYetValid => "certificate_not_yet_valid",
            Self::IssuedInFuture => "certificate_issued_in_future",
            Self::TooLong { .. } => "certificate_lifetime",
            Self::OnsetInFuture => "certificate_onset_in_future",
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
    keys: HashMap<String, TrustedKey>,
}

/// A key that verifies certificates, and when.
struct TrustedKey {
    public_key: UnparsedPublicKey<Vec<u8>>,
    not_before: Option<UnixSeconds>,
    not_after: Option<UnixSeconds>,
}

/// The health authorities trusted to sign certificates, and the check of a certificate against
/// them; see the [module documentation](self).
pub struct TrustedIssuers {
    issuers: HashMap<String, Issuer>,
    /// The longest validity, `exp` minus `iat`, accepted.
    pub max_lifetime: u64,
}

/// Whether a verification payload has the shape of a certificate (a compact JWS: three
/// dot-separated parts) rather than of a one-time code.
pub fn is_certificate(payload: &str) -> bool {
    Jws::split(payload.trim()).is_some()
}

impl TrustedIssuers {
    /// Trusts `issuers` and nothing else.
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
                let trusted_key = TrustedKey {
                    public_key: UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point),
                    not_before: key.not_before,
                    not_after: key.not_after,
                };
                if keys.insert(key.kid.clone(), trusted_key).is_some() {
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
            max_lifetime: CERTIFICATE_MAX_LIFETIME,
        })
    }

    /// Checks the upload's verification payload as a certificate at time `now`.
    pub fn check(&self, upload: &Upload, now: UnixSeconds) -> Result<Certified, CertificateError> {
        let (claims, issuer) = self.verified_claims(upload.verification_payload.trim(), now)?;
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
        let lifetime = claims.exp.saturating_sub(claims.iat);
        if lifetime > self.max_lifetime {
            return Err(CertificateError::TooLong {
                lifetime,
                max: self.max_lifetime,
            });
        }
        if claims
            .symptom_onset_interval
            .is_some_and(|onset| onset > interval_of(now.saturating_add(LEEWAY)))
        {
            return Err(CertificateError::OnsetInFuture);
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
            upload.tekmac_message.as_bytes(),
            &tekmac,
        )
        .map_err(|_| CertificateError::TekmacMismatch)?;
        Ok(Certified {
            issuer: claims.iss,
            report_type,
            symptom_onset_interval: claims.symptom_onset_interval,
        })
    }

    /// The claims of an ES256 JWS signed by a key that a trusted issuer has at `now`, and that
    /// issuer.
    fn verified_claims(
        &self,
        token: &str,
        now: UnixSeconds,
    ) -> Result<(Claims, &Issuer), CertificateError> {
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
                kid: kid.clone(),
            })?;
        if key.not_before.is_some_and(|at| now < at) || key.not_after.is_some_and(|at| now >= at) {
            return Err(CertificateError::KeyNotValid {
                issuer: claims.iss.clone(),
                kid,
            });
        }
        jws.verify(&key.public_key)?;
        Ok((claims, issuer))
    }
}

/// The `tekmac` claim for `keys`: base64 of HMAC-SHA256, keyed with `hmac_key`, over the keys
/// rendered `base64(key).rollingStartNumber.rollingPeriod.transmissionRisk`, sorted as
/// strings and joined with commas.
pub fn tekmac(keys: &[DiagnosisKey], hmac_key: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, hmac_key);
    BASE64.encode(hmac::sign(&key, keys_message(keys).as_bytes()))
}

/// What the `tekmac` of `keys` is the HMAC of.
fn keys_message(keys: &[DiagnosisKey]) -> String {
    tekmac_message(keys.iter().map(|k| {
        render_for_tekmac(
            &BASE64.encode(k.key_data),
            k.rolling_start,
            k.rolling_period,
            k.transmission_risk,
        )
    }))
}

fn parse_report_type(label: &str) -> Result<ReportType, CertificateError> {
    match ReportType::from_label(label) {
        Some(ReportType::Revoked) => Err(CertificateError::NegativeReport),
        Some(report_type) => Ok(report_type),
        None => Err(CertificateError::BadReportType(label.to_owned())),
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

#[cfg(test)]
mod tests {
    use super::*;

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
            CertificateError::TooLong {
                lifetime: 0,
                max: 0,
            },
            CertificateError::OnsetInFuture,
            CertificateError::BadReportType(String::new()),
            CertificateError::NegativeReport,
            CertificateError::MissingHmacKey,
            CertificateError::TekmacMismatch,
        ];
        let codes: std::collections::HashSet<_> = all.iter().map(|e| e.code()).collect();
        assert_eq!(codes.len(), all.len());
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
            keys_message(&keys),
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
}
