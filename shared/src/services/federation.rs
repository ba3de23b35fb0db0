//! Federation through the trust registry (paper, section 4.1.4): reads the verified registry,
//! checks every region's entry, and derives what this region pulls and whom it serves
//! ([`FederationView`]). An entry that fails its checks is refused, logged with its role and
//! counted; the others stand. A registry that fails verification changes nothing: the caller
//! keeps the view it had.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use crate::domain::key::RegionId;
use crate::domain::registry::{FederationView, RegionEntry};
use crate::ports::{Registry, RegistryError};

/// What a refresh of the registry found.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistryReport {
    /// The regions of accepted entries.
    pub regions: Vec<String>,
    /// The regions this region pulls from, by the registry.
    pub producers: Vec<String>,
    /// Entries refused, with their role and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<RefusedEntry>,
    /// Refusals by reason.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub refused_by_reason: BTreeMap<&'static str, u64>,
    /// Why the registry was not taken, if it was not: the configuration in force stays.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An entry of the registry that was refused.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RefusedEntry {
    pub target: String,
    pub role: String,
    pub error: String,
}

/// Reads the registry for one region.
pub struct Federation {
    registry: Arc<dyn Registry>,
    own: RegionId,
}

impl Federation {
    pub fn new(registry: Arc<dyn Registry>, own: RegionId) -> Self {
        Self { registry, own }
    }

    /// The view of this region from the registry as it verifies now, with the report of what
    /// was taken and refused.
    pub async fn refresh(&self) -> Result<(FederationView, RegistryReport), RegistryError> {
        let targets = self.registry.targets().await?;
        let mut report = RegistryReport::default();
        let mut entries = Vec::with_capacity(targets.len());
        for target in targets {
            match RegionEntry::read(&target.name, &target.role, &target.bytes) {
                Ok(checked) => entries.push(checked),
                Err(error) => {
                    tracing::warn!(
                        target = %target.name, role = %target.role, %error,
                        "registry entry refused"
                    );
                    *report.refused_by_reason.entry(error.code()).or_default() += 1;
                    report.refused.push(RefusedEntry {
                        target: target.name,
                        role: target.role,
                        error: error.to_string(),
                    });
                }
            }
        }
        let view = FederationView::of(self.own, entries);
        report.regions = view.members.iter().map(ToString::to_string).collect();
        report.producers = view
            .producers
            .iter()
            .map(|(config, _)| config.region.to_string())
            .collect();
        Ok((view, report))
    }
}
