//! Which way each table's rows reach the replica, for every replica that
//! can bulk-copy (the SQL Server adapter and the in-memory double): bulk
//! copy unless it is switched off (`CTSYNC_BULK_LOAD=off`), the replica
//! refuses the table's schema, or a bulk load of the table already failed
//! in this process. Decided once per written columns and logged.

use std::collections::HashMap;
use std::fmt::Display;
use std::sync::Mutex;

use crate::model::{TableId, TableSchema};
use crate::telemetry;

/// How a page's rows are inserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowPath {
    /// Bulk copy (TDS bulk load).
    Bulk,
    /// Ordinary INSERT statements (`INSERT … OPENJSON` on SQL Server).
    Insert,
}

/// What failed when a bulk load failed, as the replica classifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkFailure {
    /// The bulk load itself (the server refused it, or the rows): the
    /// table is written with INSERT from then on.
    Load,
    /// The connection (I/O, TLS, routing): the table stays on bulk copy,
    /// unless its bulk loads lose their connection
    /// [`CONNECTION_FAILURES_TO_DEMOTE`] times in a row (a bulk stream the
    /// server answers by closing the session looks the same).
    Connection,
}

/// Bulk loads of one table that lose their connection this many times in
/// a row (no page of the table committed in between) switch it to INSERT:
/// a retry on bulk copy would fail the same way at every cycle.
pub const CONNECTION_FAILURES_TO_DEMOTE: u32 = 2;

#[derive(Debug)]
struct Choice {
    /// The written columns the choice was made for.
    columns: String,
    path: RowPath,
    /// Bulk loads that lost their connection since the table's last
    /// committed page.
    connection_failures: u32,
}

/// Each table's [`RowPath`], chosen once per written columns.
#[derive(Debug)]
pub struct WritePaths {
    enabled: bool,
    chosen: Mutex<HashMap<TableId, Choice>>,
}

impl Default for WritePaths {
    fn default() -> Self {
        Self::new(true)
    }
}

/// The written columns a choice holds for: a change of any resets it.
fn fingerprint(schema: &TableSchema) -> String {
    schema
        .written_columns()
        .iter()
        .map(|c| format!("{}:{:?}:{:?}", c.name, c.ty, c.collation))
        .collect::<Vec<_>>()
        .join(",")
}

impl WritePaths {
    /// `enabled: false`: every table is written with INSERT.
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            chosen: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TableId, Choice>> {
        self.chosen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The path for `schema`'s rows. `refusal` says why the replica cannot
    /// bulk-copy the schema, if it cannot; it is asked (and the choice
    /// logged) only when no choice holds for the table's written columns.
    pub fn choose(
        &self,
        schema: &TableSchema,
        refusal: impl FnOnce(&TableSchema) -> Option<String>,
    ) -> RowPath {
        let columns = fingerprint(schema);
        let mut chosen = self.lock();
        if let Some(c) = chosen.get(&schema.id).filter(|c| c.columns == columns) {
            return c.path;
        }
        let table = &schema.id;
        let path = if !self.enabled {
            tracing::info!(table = %table, "rows are written with INSERT: CTSYNC_BULK_LOAD is off");
            RowPath::Insert
        } else if let Some(why) = refusal(schema) {
            tracing::warn!(table = %table, "rows are written with INSERT, not bulk copy: {why}");
            RowPath::Insert
        } else {
            tracing::info!(table = %table, "rows are written with bulk copy");
            RowPath::Bulk
        };
        chosen.insert(
            table.clone(),
            Choice {
                columns,
                path,
                connection_failures: 0,
            },
        );
        path
    }

    /// A bulk load into `table` failed with `error`: its rows are written
    /// with INSERT from now on (until its written columns change or the
    /// process restarts), said once — at once for a failure of the load
    /// itself, after [`CONNECTION_FAILURES_TO_DEMOTE`] in a row for lost
    /// connections. The failed transaction rolled back whole, so the page
    /// is simply retried.
    pub fn demote(&self, table: &TableId, failure: BulkFailure, error: &dyn Display) {
        let mut chosen = self.lock();
        let Some(c) = chosen.get_mut(table).filter(|c| c.path == RowPath::Bulk) else {
            return;
        };
        let why = match failure {
            BulkFailure::Load => format!("bulk copy failed ({error})"),
            BulkFailure::Connection => {
                c.connection_failures += 1;
                if c.connection_failures < CONNECTION_FAILURES_TO_DEMOTE {
                    tracing::info!(table = %table, "a bulk copy lost its connection ({error}); the page is retried on bulk copy");
                    return;
                }
                format!(
                    "bulk copy lost its connection {} times in a row (last: {error})",
                    c.connection_failures
                )
            }
        };
        c.path = RowPath::Insert;
        tracing::warn!(table = %table, "{why}; this table's rows are written with INSERT from now on (set CTSYNC_BULK_LOAD=off to skip bulk copy everywhere)");
        telemetry::bulk_fallback(table);
    }

    /// A page of `table` committed: lost connections before it no longer
    /// count towards demoting it.
    pub fn committed(&self, table: &TableId) {
        if let Some(c) = self.lock().get_mut(table) {
            c.connection_failures = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ColumnDef, KeyColumn, SqlType};

    fn schema(extra: Option<&str>) -> TableSchema {
        let mut columns = vec![ColumnDef::new("Id", SqlType::Int, false)];
        if let Some(name) = extra {
            columns.push(ColumnDef::new(name, SqlType::Int, true));
        }
        TableSchema {
            id: TableId::new("dbo", "T"),
            columns,
            primary_key: vec![KeyColumn {
                name: "Id".into(),
                descending: false,
            }],
        }
    }

    #[test]
    fn bulk_unless_switched_off_or_refused() {
        let s = schema(None);
        assert_eq!(WritePaths::new(true).choose(&s, |_| None), RowPath::Bulk);
        assert_eq!(
            WritePaths::new(false).choose(&s, |_| panic!("not asked when off")),
            RowPath::Insert
        );
        assert_eq!(
            WritePaths::new(true).choose(&s, |_| Some("xml".into())),
            RowPath::Insert
        );
    }

    #[test]
    fn the_refusal_is_asked_once_per_written_columns() {
        let paths = WritePaths::new(true);
        let asked = std::cell::Cell::new(0);
        let refusal = |_: &TableSchema| {
            asked.set(asked.get() + 1);
            None
        };
        paths.choose(&schema(None), refusal);
        paths.choose(&schema(None), refusal);
        assert_eq!(asked.get(), 1);
        paths.choose(&schema(Some("Added")), refusal);
        assert_eq!(asked.get(), 2, "a column change chooses again");
    }

    #[test]
    fn a_failed_bulk_load_demotes_its_table_unless_the_connection_failed() {
        let paths = WritePaths::new(true);
        let s = schema(None);
        paths.choose(&s, |_| None);
        paths.demote(&s.id, BulkFailure::Connection, &"connection reset");
        assert_eq!(paths.choose(&s, |_| None), RowPath::Bulk);
        paths.demote(&s.id, BulkFailure::Load, &"refused");
        assert_eq!(paths.choose(&s, |_| None), RowPath::Insert);
        // Until the written columns change: then bulk copy is tried again.
        assert_eq!(
            paths.choose(&schema(Some("Added")), |_| None),
            RowPath::Bulk
        );
    }

    /// A bulk stream the server answers by closing the session looks like
    /// a lost connection: twice in a row, with no page committed between,
    /// and the table goes on by INSERT instead of retrying bulk for ever.
    #[test]
    fn bulk_loads_that_lose_their_connection_twice_in_a_row_demote_the_table() {
        let paths = WritePaths::new(true);
        let s = schema(None);
        paths.choose(&s, |_| None);
        paths.demote(&s.id, BulkFailure::Connection, &"broken pipe");
        paths.committed(&s.id);
        paths.demote(&s.id, BulkFailure::Connection, &"broken pipe");
        assert_eq!(
            paths.choose(&s, |_| None),
            RowPath::Bulk,
            "a page committed between"
        );
        paths.demote(&s.id, BulkFailure::Connection, &"broken pipe");
        assert_eq!(paths.choose(&s, |_| None), RowPath::Insert);
    }
}
