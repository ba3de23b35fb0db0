//! Code issuers: the health authority's staff who issue one-time codes, each with a token of
//! their own that the operator creates, lists and revokes. A token is shown once, when it is
//! created, and stored only as an HMAC under the region's pepper, like the codes. An issuer may
//! issue codes and see the codes they issued today, nothing else; the admin token stays the
//! operator's.

use std::sync::Arc;

use serde::Serialize;

use crate::domain::diagnosis::CodeRequest;
use crate::domain::secret::{Pepper, random_token};
use crate::ports::{
    CodeIssuer, CodeIssuerStore, CodeStatus, IssuedCodeStatus, StoreError, UnixSeconds,
};

/// Most characters of an issuer's name.
pub const MAX_NAME_LEN: usize = 64;

/// Why an operation on code issuers was refused. Each variant has a stable
/// [`code`](IssuerError::code).
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    #[error(
        "a code issuer's name is 1 to {MAX_NAME_LEN} letters, digits, spaces, dots, dashes or \
         underscores, not {0:?}"
    )]
    BadName(String),
    #[error("a code issuer named {0:?} exists (names are not reused, even once revoked)")]
    Exists(String),
    #[error("there is no code issuer named {0:?}")]
    NotFound(String),
    #[error(transparent)]
    Store(StoreError),
}

impl IssuerError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadName(_) => "bad_issuer_name",
            Self::Exists(_) => "issuer_exists",
            Self::NotFound(_) => "issuer_not_found",
            Self::Store(_) => "internal",
        }
    }
}

/// A freshly created issuer and their token, which is never shown again.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewIssuer {
    pub name: String,
    pub token: String,
}

/// An issuer as the operator sees them (never the token).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuerSummary {
    pub name: String,
    pub created_at: UnixSeconds,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<UnixSeconds>,
}

/// A code as its issuer sees it in their list of today's codes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuedCodeView {
    pub issued_at: UnixSeconds,
    pub expires_at: UnixSeconds,
    #[serde(flatten)]
    pub diagnosis: CodeRequest,
    pub status: CodeStatus,
}

impl From<IssuedCodeStatus> for IssuedCodeView {
    fn from(code: IssuedCodeStatus) -> Self {
        Self {
            issued_at: code.issued_at,
            expires_at: code.expires_at,
            diagnosis: code.diagnosis.request(),
            status: code.status,
        }
    }
}

/// The region's code issuers.
#[derive(Clone)]
pub struct CodeIssuers {
    store: Arc<dyn CodeIssuerStore>,
    pepper: Pepper,
}

impl CodeIssuers {
    pub fn new(store: Arc<dyn CodeIssuerStore>, pepper: Pepper) -> Self {
        Self { store, pepper }
    }

    fn token_hash(&self, token: &str) -> [u8; 32] {
        // A label keeps token hashes apart from code hashes under the same pepper.
        self.pepper.hash(&format!("code issuer token {token}"))
    }

    /// Creates the issuer `name` with a new random token.
    pub async fn add(&self, name: &str, now: UnixSeconds) -> Result<NewIssuer, IssuerError> {
        let valid = !name.is_empty()
            && name.chars().count() <= MAX_NAME_LEN
            && name
                .chars()
                .all(|c| c.is_alphanumeric() || " ._-".contains(c))
            && name.trim() == name;
        if !valid {
            return Err(IssuerError::BadName(name.to_string()));
        }
        let token = random_token();
        let added = self
            .store
            .add_issuer(CodeIssuer {
                name: name.to_string(),
                token_hash: self.token_hash(&token),
                created_at: now,
                revoked_at: None,
            })
            .await;
        match added {
            Ok(()) => Ok(NewIssuer {
                name: name.to_string(),
                token,
            }),
            Err(StoreError::Conflict(_)) => Err(IssuerError::Exists(name.to_string())),
            Err(e) => Err(IssuerError::Store(e)),
        }
    }

    /// Every issuer, revoked ones included, by name.
    pub async fn list(&self) -> Result<Vec<IssuerSummary>, IssuerError> {
        let issuers = self.store.issuers().await.map_err(IssuerError::Store)?;
        Ok(issuers
            .into_iter()
            .map(|issuer| IssuerSummary {
                name: issuer.name,
                created_at: issuer.created_at,
                revoked_at: issuer.revoked_at,
            })
            .collect())
    }

    /// Revokes the issuer `name`: their token is refused from then on, and their console
    /// sessions end.
    pub async fn revoke(&self, name: &str, now: UnixSeconds) -> Result<(), IssuerError> {
        match self.store.revoke_issuer(name, now).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(IssuerError::NotFound(name.to_string())),
            Err(e) => Err(IssuerError::Store(e)),
        }
    }

    /// The name of the unrevoked issuer whose token `token` is, if any.
    pub async fn authenticate(&self, token: &str) -> Result<Option<String>, StoreError> {
        let hash = self.token_hash(token);
        Ok(self
            .store
            .issuers()
            .await?
            .into_iter()
            .find(|issuer| issuer.revoked_at.is_none() && issuer.token_hash == hash)
            .map(|issuer| issuer.name))
    }

    /// Whether the issuer `name` exists and is not revoked.
    pub async fn is_active(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self
            .store
            .issuers()
            .await?
            .iter()
            .any(|issuer| issuer.name == name && issuer.revoked_at.is_none()))
    }

    /// The codes `issuer` issued since midnight (UTC) of `now`'s day, oldest first.
    pub async fn codes_today(
        &self,
        issuer: &str,
        now: UnixSeconds,
    ) -> Result<Vec<IssuedCodeView>, StoreError> {
        let midnight = now - now % 86_400;
        let codes = self.store.codes_issued_by(issuer, midnight, now).await?;
        Ok(codes.into_iter().map(IssuedCodeView::from).collect())
    }
}
