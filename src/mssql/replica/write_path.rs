//! Which way each table's rows reach the replica: bulk copy unless it is
//! switched off (`CTSYNC_BULK_LOAD=off`), the table's schema cannot take it
//! (`bulk::refusal`), or a bulk load of the table already failed in this
//! process. Decided once per schema and logged; a failure logs the switch.

use std::collections::HashMap;
use std::sync::Mutex;

use ctsync_actors::model::{TableId, TableSchema};

use super::bulk;
use super::write_plan::WritePath;
use crate::mssql::MssqlError;

struct Choice {
    /// The written columns the choice was made for.
    columns: String,
    bulk: bool,
}

pub struct WritePaths {
    enabled: bool,
    chosen: Mutex<HashMap<TableId, Choice>>,
}

fn fingerprint(schema: &TableSchema) -> String {
    schema
        .written_columns()
        .iter()
        .map(|c| format!("{}:{:?}:{:?}", c.name, c.ty, c.collation))
        .collect::<Vec<_>>()
        .join(",")
}

impl WritePaths {
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            chosen: Mutex::new(HashMap::new()),
        }
    }

    /// The path for `schema`'s rows into `schema` itself (`shadow`: into the
    /// table's shadow, which may be locked whole).
    pub fn choose(&self, schema: &TableSchema, shadow: bool) -> WritePath {
        let columns = fingerprint(schema);
        let mut chosen = self.chosen.lock().unwrap_or_else(|e| e.into_inner());
        let bulk = match chosen.get(&schema.id) {
            Some(c) if c.columns == columns => c.bulk,
            _ => {
                let bulk = match (self.enabled, bulk::refusal(schema)) {
                    (false, _) => {
                        tracing::info!(table = %schema.id, "rows are written with INSERT: CTSYNC_BULK_LOAD is off");
                        false
                    }
                    (true, Some(why)) => {
                        tracing::warn!(table = %schema.id, "rows are written with INSERT, not bulk copy: {why}");
                        false
                    }
                    (true, None) => {
                        tracing::info!(table = %schema.id, "rows are written with bulk copy");
                        true
                    }
                };
                chosen.insert(schema.id.clone(), Choice { columns, bulk });
                bulk
            }
        };
        if bulk {
            WritePath::Bulk { table_lock: shadow }
        } else {
            WritePath::Json
        }
    }

    /// A bulk load into `table` failed: unless the connection itself failed,
    /// its rows are written with INSERT from now on (until its schema
    /// changes or the process restarts). The failed transaction rolled
    /// back, so the page is simply retried.
    pub fn demote(&self, table: &TableId, error: &MssqlError) {
        if connection_lost(error) {
            return;
        }
        let mut chosen = self.chosen.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = chosen.get_mut(table) {
            if c.bulk {
                c.bulk = false;
                tracing::warn!(table = %table, "bulk copy failed ({error}); this table's rows are written with INSERT from now on (set CTSYNC_BULK_LOAD=off to skip bulk copy everywhere)");
                metrics::counter!(ctsync_actors::telemetry::BULK_FALLBACKS, "table" => table.to_string())
                    .increment(1);
            }
        }
    }
}

/// Errors of the connection rather than of the bulk load itself.
fn connection_lost(error: &MssqlError) -> bool {
    use tiberius::error::Error as T;
    match error {
        MssqlError::Sql { source, .. } => {
            matches!(source, T::Io { .. } | T::Tls(_) | T::Routing { .. })
        }
        MssqlError::Connect { .. } => true,
        _ => false,
    }
}
