//! [`CodeIssuerStore`] on the embedded store: issuers by name, and the codes each issued (an
//! index that [`add_code`](crate::ports::CodeStore::add_code) writes with the code).

use std::collections::HashSet;

use async_trait::async_trait;
use prost::Message as _;
use redb::{ReadableDatabase, ReadableTable};

use super::codec::{IssuedRow, IssuerRow};
use super::codes::read_stored_code;
use super::{CODES, ISSUED, ISSUERS, LocalStore};
use crate::ports::{
    CodeIssuer, CodeIssuerStore, CodeStatus, IssuedCodeStatus, StoreError, UnixSeconds,
};

fn issuer_of(name: &str, bytes: &[u8]) -> Result<CodeIssuer, StoreError> {
    let row = IssuerRow::decode(bytes).map_err(StoreError::backend)?;
    Ok(CodeIssuer {
        name: name.to_string(),
        token_hash: row
            .token_hash
            .as_slice()
            .try_into()
            .map_err(|_| StoreError::Backend(format!("issuer {name:?} has a bad token hash")))?,
        created_at: row.created_at,
        revoked_at: row.revoked_at,
    })
}

fn row_of(issuer: &CodeIssuer) -> Vec<u8> {
    IssuerRow {
        token_hash: issuer.token_hash.to_vec(),
        created_at: issuer.created_at,
        revoked_at: issuer.revoked_at,
    }
    .encode_to_vec()
}

#[async_trait]
impl CodeIssuerStore for LocalStore {
    async fn add_issuer(&self, issuer: CodeIssuer) -> Result<(), StoreError> {
        self.write(move |tables| {
            let exists = tables
                .issuers
                .get(issuer.name.as_str())
                .map_err(StoreError::backend)?
                .is_some();
            if exists {
                return Err(StoreError::Conflict(format!(
                    "a code issuer named {:?} exists",
                    issuer.name
                )));
            }
            tables
                .issuers
                .insert(issuer.name.as_str(), row_of(&issuer).as_slice())
                .map_err(StoreError::backend)?;
            Ok(())
        })
        .await
    }

    async fn issuers(&self) -> Result<Vec<CodeIssuer>, StoreError> {
        // Every request of a code issuer reads them: as few as a region has staff.
        self.read_now(|txn| {
            let issuers = txn.open_table(ISSUERS).map_err(StoreError::backend)?;
            issuers
                .iter()
                .map_err(StoreError::backend)?
                .map(|entry| {
                    let (name, row) = entry.map_err(StoreError::backend)?;
                    issuer_of(name.value(), row.value())
                })
                .collect()
        })
    }

    async fn revoke_issuer(&self, name: &str, at: UnixSeconds) -> Result<bool, StoreError> {
        let name = name.to_string();
        self.write(move |tables| {
            let found = tables
                .issuers
                .get(name.as_str())
                .map_err(StoreError::backend)?
                .map(|row| issuer_of(&name, row.value()))
                .transpose()?;
            let Some(mut issuer) = found else {
                return Ok(false);
            };
            if issuer.revoked_at.is_none() {
                issuer.revoked_at = Some(at);
                tables
                    .issuers
                    .insert(name.as_str(), row_of(&issuer).as_slice())
                    .map_err(StoreError::backend)?;
            }
            Ok(true)
        })
        .await
    }

    async fn codes_issued_by(
        &self,
        issuer: &str,
        since: UnixSeconds,
        now: UnixSeconds,
    ) -> Result<Vec<IssuedCodeStatus>, StoreError> {
        let issuer = issuer.to_string();
        let staged = self.staged_codes.clone();
        self.blocking(move |db| {
            // The codes staged as consumed (every staged code row is a consumption) as the
            // read begins, copied under the lock so that the writer never waits for the whole
            // list (see `read_code`).
            let (txn, consumed) = {
                let staged = staged.read().expect("no panic while staging codes");
                let txn = db.begin_read().map_err(StoreError::backend)?;
                (txn, staged.keys().copied().collect::<HashSet<[u8; 32]>>())
            };
            let issued = txn.open_table(ISSUED).map_err(StoreError::backend)?;
            let codes = txn.open_table(CODES).map_err(StoreError::backend)?;
            let range =
                (issuer.as_str(), since, [0u8; 32])..=(issuer.as_str(), u64::MAX, [255; 32]);
            let mut list = Vec::new();
            for entry in issued.range(range).map_err(StoreError::backend)? {
                let (key, row) = entry.map_err(StoreError::backend)?;
                let (_, issued_at, code_hash) = key.value();
                let row = IssuedRow::decode(row.value()).map_err(StoreError::backend)?;
                // A purged code had expired unused, or was used by an upload whose keys have
                // expired since: either way it can authorise nothing.
                let used = consumed.contains(&code_hash)
                    || read_stored_code(&codes, &code_hash)?
                        .is_some_and(|code| code.used_by.is_some());
                list.push(IssuedCodeStatus {
                    issued_at,
                    expires_at: row.expires_at,
                    diagnosis: row.diagnosis(),
                    status: CodeStatus::of(used, row.expires_at, now),
                });
            }
            Ok(list)
        })
        .await
    }
}
