//! Proving the replica: compares a table between primary and replica in
//! keyset chunks of the primary's key order — row count and a checksum of
//! the rows' hashes per chunk — and drills into every chunk that differs to
//! name the missing, extra and changed keys. Rows that change while the
//! check runs make chunks differ for a moment, so differing chunks are
//! checked again once the replica has caught up with the primary version
//! read before the first pass; only differences that persist are reported.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use crate::error::Result;
use crate::model::{RowKey, SyncVersion, TableSchema};
/// The ports `verify` runs on, at their old paths.
pub use crate::ports::{
    CaughtUp, Checksums, ChunkSum, Difference, DifferenceKind, KeyRange, Report, Verify,
};

/// How `verify` checks and waits.
#[derive(Debug, Clone)]
pub struct Options {
    /// Rows per chunk.
    pub chunk: usize,
    /// Differing keys listed at most.
    pub max_keys: usize,
    /// How long to wait for the replica to catch up before re-checking.
    pub settle: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            chunk: 10_000,
            max_keys: 20,
            settle: Duration::from_secs(60),
        }
    }
}

/// [`CaughtUp`] from the ports: the replica's recorded version of the
/// table against the primary's current version.
pub struct RecordedVersion<'a> {
    pub primary: &'a dyn crate::ports::Primary,
    pub replica: &'a dyn crate::ports::Replica,
    pub table: crate::model::TableId,
}

#[async_trait]
impl CaughtUp for RecordedVersion<'_> {
    async fn caught_up(&self) -> Result<bool> {
        let current = self.primary.current_version().await?;
        let record = self.replica.record(&self.table).await?;
        Ok(record.load.is_none() && record.version.is_some_and(|v| v >= current))
    }
}

/// One pass: the ranges whose count or checksum differs.
async fn pass(
    primary: &dyn Checksums,
    replica: &dyn Checksums,
    schema: &TableSchema,
    chunk: usize,
    report: &mut Report,
) -> Result<Vec<KeyRange>> {
    let mut differing = Vec::new();
    let mut after: Option<RowKey> = None;
    report.chunks = 0;
    report.rows_primary = 0;
    report.rows_replica = 0;
    loop {
        let range = KeyRange {
            after: after.clone(),
            upto: None,
        };
        let p = primary.chunk_sum(schema, &range, chunk.max(1)).await?;
        if p.rows == 0 {
            // Whatever the replica has beyond the primary's last key is extra.
            let tail = replica.chunk_sum(schema, &range, usize::MAX).await?;
            report.rows_replica += tail.rows;
            if tail.rows > 0 {
                differing.push(range);
            }
            return Ok(differing);
        }
        let range = KeyRange {
            after: after.clone(),
            upto: p.last.clone(),
        };
        let r = replica.chunk_sum(schema, &range, usize::MAX).await?;
        report.chunks += 1;
        report.rows_primary += p.rows;
        report.rows_replica += r.rows;
        if (p.rows, &p.sum) != (r.rows, &r.sum) {
            differing.push(range);
        }
        after = p.last;
    }
}

/// The differing keys of one range.
async fn drill(
    primary: &dyn Checksums,
    replica: &dyn Checksums,
    schema: &TableSchema,
    range: &KeyRange,
) -> Result<Vec<Difference>> {
    let p: BTreeMap<RowKey, String> = primary.row_sums(schema, range).await?.into_iter().collect();
    let r: BTreeMap<RowKey, String> = replica.row_sums(schema, range).await?.into_iter().collect();
    let mut out = Vec::new();
    for (key, hash) in &p {
        match r.get(key) {
            None => out.push(Difference {
                kind: DifferenceKind::Missing,
                key: key.clone(),
            }),
            Some(h) if h != hash => out.push(Difference {
                kind: DifferenceKind::Changed,
                key: key.clone(),
            }),
            Some(_) => {}
        }
    }
    for key in r.keys().filter(|k| !p.contains_key(*k)) {
        out.push(Difference {
            kind: DifferenceKind::Extra,
            key: key.clone(),
        });
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

/// Verifies one table. `at_version` is the primary's current version read
/// before the check (reported); `caught_up` tells when the replica has
/// applied what the primary committed, before differing chunks are
/// checked again.
pub async fn verify_table(
    primary: &dyn Checksums,
    replica: &dyn Checksums,
    caught_up: &dyn CaughtUp,
    schema: &TableSchema,
    at_version: SyncVersion,
    options: &Options,
) -> Result<Report> {
    let mut report = Report {
        table: schema.id.key_name(),
        at_version,
        ..Report::default()
    };
    let differing = pass(primary, replica, schema, options.chunk, &mut report).await?;
    if differing.is_empty() {
        return Ok(report);
    }
    // Rows may have changed during the pass: let the replica catch up with
    // the primary, then look again at what differed.
    let deadline = tokio::time::Instant::now() + options.settle;
    while !caught_up.caught_up().await? && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for range in differing {
        let found = drill(primary, replica, schema, &range).await?;
        if found.is_empty() {
            continue;
        }
        report.total_differences += found.len() as u64;
        let room = options.max_keys.saturating_sub(report.differences.len());
        report.differences.extend(found.into_iter().take(room));
        report.ranges.push((range.after, range.upto));
    }
    Ok(report)
}

/// [`Verify`] over a primary and a replica that both offer [`Checksums`].
pub struct Sides<P, R> {
    pub primary: std::sync::Arc<P>,
    pub replica: std::sync::Arc<R>,
    pub options: Options,
}

#[async_trait]
impl<P, R> Verify for Sides<P, R>
where
    P: crate::ports::Primary + Checksums + 'static,
    R: crate::ports::Replica + Checksums + 'static,
{
    async fn verify(&self, table: &crate::model::TableId) -> Result<Report> {
        let schema = self.primary.table_schema(table).await?;
        let at = self.primary.current_version().await?;
        let caught_up = RecordedVersion {
            primary: self.primary.as_ref(),
            replica: self.replica.as_ref(),
            table: table.clone(),
        };
        verify_table(
            self.primary.as_ref(),
            self.replica.as_ref(),
            &caught_up,
            &schema,
            at,
            &self.options,
        )
        .await
    }
}

/// The last verification of a table, as the board, API and page show it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Summary {
    /// Unix ms.
    pub at: u64,
    pub equal: bool,
    pub differences: u64,
    pub rows_primary: u64,
    pub rows_replica: u64,
}

impl Summary {
    pub fn of(report: &Report) -> Self {
        Self {
            at: crate::clock::now_millis(),
            equal: report.equal(),
            differences: report.total_differences,
            rows_primary: report.rows_primary,
            rows_replica: report.rows_replica,
        }
    }
}
