//! The checks `verify` runs through the ports: chunk checksums and row
//! hashes on either side, whether the replica has caught up, and the
//! verification of a table by name with what it reports.

use async_trait::async_trait;
use serde::Serialize;

use crate::error::Result;
use crate::model::{RowKey, SyncVersion, TableSchema};

/// Rows strictly after `after` and up to and including `upto`, in key
/// order (`None`: unbounded).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyRange {
    pub after: Option<RowKey>,
    pub upto: Option<RowKey>,
}

/// One chunk's count and checksum, and its last key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChunkSum {
    pub rows: u64,
    /// Hex checksum over the rows' hashes in key order ("" for no rows).
    pub sum: String,
    pub last: Option<RowKey>,
}

/// Per-row hashes and chunk checksums of a table, on either side. The
/// primary's and the replica's implementations must hash a row the same
/// way (SQL Server: SHA-256 over a canonical text of every written column).
#[async_trait]
pub trait Checksums: Send + Sync {
    /// The first `limit` rows of `range`: count, checksum, last key.
    async fn chunk_sum(
        &self,
        schema: &TableSchema,
        range: &KeyRange,
        limit: usize,
    ) -> Result<ChunkSum>;
    /// Every row of `range` with its hash, in key order.
    async fn row_sums(
        &self,
        schema: &TableSchema,
        range: &KeyRange,
    ) -> Result<Vec<(RowKey, String)>>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DifferenceKind {
    /// On the primary, not on the replica.
    Missing,
    /// On the replica, not on the primary.
    Extra,
    /// On both, with other values.
    Changed,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    pub kind: DifferenceKind,
    pub key: RowKey,
}

/// What `verify` found for one table.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    pub table: String,
    pub chunks: u64,
    pub rows_primary: u64,
    pub rows_replica: u64,
    /// The key ranges (after, upto] that still differ.
    pub ranges: Vec<(Option<RowKey>, Option<RowKey>)>,
    /// Differing keys, at most `max_keys` of them.
    pub differences: Vec<Difference>,
    pub total_differences: u64,
    /// The primary's version before the first pass.
    pub at_version: SyncVersion,
}

impl Report {
    pub fn equal(&self) -> bool {
        self.total_differences == 0 && self.ranges.is_empty()
    }
}

/// Whether the replica has caught up with the primary (applied every
/// change the primary has committed by now).
#[async_trait]
pub trait CaughtUp: Send + Sync {
    async fn caught_up(&self) -> Result<bool>;
}

/// Verifies tables by name over the two sides' ports.
#[async_trait]
pub trait Verify: Send + Sync {
    async fn verify(&self, table: &crate::model::TableId) -> Result<Report>;
}
