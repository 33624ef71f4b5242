//! The `verify` checksums on SQL Server, shared by the primary and the
//! replica adapters: per-row SHA-256 computed by the server, a 64-bit
//! digest of a chunk's row hashes computed here (a differing chunk is then
//! compared row by row, by the SHA-256 values).

use std::hash::{Hash, Hasher};

use ctsync_actors::model::{RowKey, TableSchema};
use ctsync_actors::verify::{ChunkSum, KeyRange};
use ctsync_actors::{Error, Result};
use tiberius::ColumnData;

use super::convert::{decode_row, key_params};
use super::pool::{query_rows, Pool};
use super::sql;

/// The rows of `range` (at most `limit`) with their hashes, in key order.
pub async fn row_hashes(
    pool: &Pool,
    side: fn(String) -> Error,
    schema: &TableSchema,
    range: &KeyRange,
    limit: Option<usize>,
) -> Result<Vec<(RowKey, String)>> {
    let keys = schema
        .key_columns()
        .ok_or_else(|| Error::NoKey(schema.id.clone()))?;
    let key_cols = schema
        .key_column_defs()
        .ok_or_else(|| Error::NoKey(schema.id.clone()))?;
    let text = sql::row_sums(
        schema,
        &keys,
        range.after.is_some(),
        range.upto.is_some(),
        limit.is_some(),
    );
    let mut params = Vec::new();
    if let Some(limit) = limit {
        params.push(ColumnData::I64(Some(limit.min(i64::MAX as usize) as i64)));
    }
    for key in [&range.after, &range.upto].into_iter().flatten() {
        params.extend(key_params(key, &key_cols));
    }
    let mut lease = pool.lease().await.map_err(|e| side(e.to_string()))?;
    let rows = query_rows(&mut lease, &text, params, || {
        format!("reading row checksums of {}", schema.id)
    })
    .await
    .map_err(|e| side(e.to_string()))?;
    rows.into_iter()
        .map(|row| {
            let mut cells = row.into_iter();
            let key = decode_row(cells.by_ref().take(key_cols.len()), &key_cols)
                .map_err(|e| side(e.to_string()))?;
            let hash = match cells.next() {
                Some(ColumnData::Binary(Some(b))) => b.iter().map(|x| format!("{x:02x}")).collect(),
                _ => String::new(),
            };
            Ok((RowKey(key), hash))
        })
        .collect()
}

/// A chunk's count, digest and last key from its row hashes.
pub fn chunk_of(rows: Vec<(RowKey, String)>) -> ChunkSum {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for (_, hash) in &rows {
        hash.hash(&mut h);
    }
    ChunkSum {
        rows: rows.len() as u64,
        sum: if rows.is_empty() {
            String::new()
        } else {
            format!("{:016x}", h.finish())
        },
        last: rows.last().map(|(k, _)| k.clone()),
    }
}

/// Implements `verify`'s `Checksums` for an adapter with a `pool` field;
/// `side` maps errors to the adapter's side (`Error::Primary`, …).
macro_rules! impl_checksums {
    ($adapter:ty, $side:path) => {
        #[async_trait::async_trait]
        impl ctsync_actors::verify::Checksums for $adapter {
            async fn chunk_sum(
                &self,
                schema: &ctsync_actors::model::TableSchema,
                range: &ctsync_actors::verify::KeyRange,
                limit: usize,
            ) -> ctsync_actors::Result<ctsync_actors::verify::ChunkSum> {
                let limit = (limit != usize::MAX).then_some(limit);
                let rows =
                    $crate::mssql::checksums::row_hashes(&self.pool, $side, schema, range, limit)
                        .await?;
                Ok($crate::mssql::checksums::chunk_of(rows))
            }

            async fn row_sums(
                &self,
                schema: &ctsync_actors::model::TableSchema,
                range: &ctsync_actors::verify::KeyRange,
            ) -> ctsync_actors::Result<Vec<(ctsync_actors::model::RowKey, String)>> {
                $crate::mssql::checksums::row_hashes(&self.pool, $side, schema, range, None).await
            }
        }
    };
}
pub(crate) use impl_checksums;
