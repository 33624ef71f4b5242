//! In-memory implementations of the three ports, good enough to run the real
//! pipeline: the primary models CT's net changes and min valid version, the
//! replica applies each call atomically and rejects duplicate keys; faults
//! are injected around any of them by `faults`.

mod checksums;
mod ddl_queue;
pub mod faults;
mod preflight;
mod primary;
mod replica;
mod replica_load;
mod replica_paths;
mod replica_table;
mod replica_tx;
mod state;

pub use ddl_queue::MemoryDdlQueue;
pub use primary::MemoryPrimary;
pub use replica::{MemoryReplica, SCHEMA_LOCK_TIMEOUT};
pub use state::MemoryState;

use crate::model::{Row, RowKey, TableSchema};

/// The key of `row` under `schema` (rows hold the written columns in order).
pub fn row_key(schema: &TableSchema, row: &Row) -> Option<RowKey> {
    let positions = schema.key_positions()?;
    Some(RowKey(
        positions
            .iter()
            .map(|&i| row.get(i).cloned().unwrap_or(crate::model::Value::Null))
            .collect(),
    ))
}
