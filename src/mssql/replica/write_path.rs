//! The SQL Server side of the core's write-path choice
//! (`ctsync_actors::write_path`): what tiberius's bulk copy refuses
//! (`bulk::refusal`), the shadow table's lock, and which errors are the
//! connection's rather than the bulk load's.

use ctsync_actors::model::{TableId, TableSchema};
use ctsync_actors::write_path::{BulkFailure, RowPath, WritePaths};

use super::bulk;
use super::write_plan::WritePath;
use crate::mssql::MssqlError;

/// The path for `schema`'s rows into `schema` itself (`shadow`: into the
/// table's shadow, which may be locked whole).
pub fn choose(paths: &WritePaths, schema: &TableSchema, shadow: bool) -> WritePath {
    match paths.choose(schema, bulk::refusal) {
        RowPath::Bulk => WritePath::Bulk { table_lock: shadow },
        RowPath::Insert => WritePath::Json,
    }
}

/// A bulk load into `table` failed with `error` (see `WritePaths::demote`).
pub fn demote(paths: &WritePaths, table: &TableId, error: &MssqlError) {
    paths.demote(table, classify(error), error);
}

/// Errors of the connection rather than of the bulk load itself. After
/// login only `Io` can occur here (tiberius raises `Tls` and `Routing` in
/// the handshake, `Connect` comes from opening the lease), and `Io` also
/// covers tiberius's own packet-decode failure (turned into `BrokenPipe`)
/// and a command timeout: so a lost connection keeps bulk copy only until
/// it happens twice in a row (`WritePaths::demote`).
fn classify(error: &MssqlError) -> BulkFailure {
    use tiberius::error::Error as T;
    let connection = match error {
        MssqlError::Sql { source, .. } => {
            matches!(source, T::Io { .. } | T::Tls(_) | T::Routing { .. })
        }
        MssqlError::Connect { .. } => true,
        _ => false,
    };
    if connection {
        BulkFailure::Connection
    } else {
        BulkFailure::Load
    }
}
