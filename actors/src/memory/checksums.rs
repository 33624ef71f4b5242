//! `verify` over the in-memory primary and replica: each row hashed from
//! its values (the same on both sides), chunk checksums over the hashes in
//! key order, like the SQL Server adapter does with SHA-256.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::ops::Bound;

use async_trait::async_trait;

use super::{MemoryPrimary, MemoryReplica};
use crate::error::Result;
use crate::model::{Row, RowKey, TableSchema};
use crate::verify::{Checksums, ChunkSum, KeyRange};

fn row_hash(row: &Row) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    format!("{row:?}").hash(&mut h);
    format!("{:016x}", h.finish())
}

fn in_range(rows: &BTreeMap<RowKey, Row>, range: &KeyRange) -> Vec<(RowKey, String)> {
    let lower = match &range.after {
        Some(k) => Bound::Excluded(k.clone()),
        None => Bound::Unbounded,
    };
    let upper = match &range.upto {
        Some(k) => Bound::Included(k.clone()),
        None => Bound::Unbounded,
    };
    if let (Bound::Excluded(a), Bound::Included(b)) = (&lower, &upper) {
        if a >= b {
            return Vec::new();
        }
    }
    rows.range((lower, upper))
        .map(|(k, r)| (k.clone(), row_hash(r)))
        .collect()
}

fn chunk(rows: Vec<(RowKey, String)>, limit: usize) -> ChunkSum {
    let taken: Vec<_> = rows.into_iter().take(limit).collect();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for (_, hash) in &taken {
        hash.hash(&mut h);
    }
    ChunkSum {
        rows: taken.len() as u64,
        sum: if taken.is_empty() {
            String::new()
        } else {
            format!("{:016x}", h.finish())
        },
        last: taken.last().map(|(k, _)| k.clone()),
    }
}

/// Both doubles expose `row_map`; one implementation serves both.
macro_rules! memory_checksums {
    ($double:ty) => {
        #[async_trait]
        impl Checksums for $double {
            async fn chunk_sum(
                &self,
                schema: &TableSchema,
                range: &KeyRange,
                limit: usize,
            ) -> Result<ChunkSum> {
                Ok(chunk(in_range(&self.row_map(&schema.id), range), limit))
            }
            async fn row_sums(
                &self,
                schema: &TableSchema,
                range: &KeyRange,
            ) -> Result<Vec<(RowKey, String)>> {
                Ok(in_range(&self.row_map(&schema.id), range))
            }
        }
    };
}

memory_checksums!(MemoryPrimary);
memory_checksums!(MemoryReplica);
