//! `doctor` over the in-memory primary and replica: the facts a test sets,
//! with the primary's tables (their keys and change tracking) filled in
//! from its catalog.

use async_trait::async_trait;

use super::{MemoryPrimary, MemoryReplica};
use crate::doctor::{PrimaryFacts, PrimaryPreflight, ReplicaFacts, ReplicaPreflight};
use crate::error::Result;

#[async_trait]
impl PrimaryPreflight for MemoryPrimary {
    async fn preflight(&self, _queue: Option<&str>) -> Result<PrimaryFacts> {
        let mut facts = self.facts_for_doctor();
        facts.tables = self.table_keys_and_tracking();
        Ok(facts)
    }
}

#[async_trait]
impl ReplicaPreflight for MemoryReplica {
    async fn preflight(&self) -> Result<ReplicaFacts> {
        Ok(self.facts_for_doctor())
    }
}
