//! The table's version record inside the replica's transactions (its rows
//! are written by a `write_plan::WritePlan`).

use ctsync_actors::model::{SyncVersion, TableId};
use tiberius::ColumnData;

use crate::mssql::conn::Lease;
use crate::mssql::pool::execute;
use crate::mssql::MssqlError;

/// The replica's version record is keyed by the table's Redis name.
pub(super) fn name_param(table: &TableId) -> ColumnData<'static> {
    ColumnData::String(Some(table.key_name().into()))
}

/// Runs `statement` (`@P1` table name, `@P2` version) that records the
/// table's version in the replica record, in the caller's transaction.
pub(super) async fn write_version(
    lease: &mut Lease<'_>,
    statement: &str,
    table: &TableId,
    version: SyncVersion,
) -> std::result::Result<(), MssqlError> {
    execute(
        lease,
        statement,
        vec![name_param(table), ColumnData::I64(Some(version))],
        || format!("recording version {version} of {table} on the replica"),
    )
    .await
    .map(|_| ())
}
