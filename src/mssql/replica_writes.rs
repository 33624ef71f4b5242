//! Row writes inside the replica's transactions: inserts and deletes split
//! to respect the 2,100-parameter and 1,000-row limits, identity values kept
//! with IDENTITY_INSERT, and the table's version record.

use ctsync_actors::model::{Row, RowKey, SqlType, SyncVersion, TableId, TableSchema};
use tiberius::ColumnData;

use super::conn::Lease;
use super::convert::{key_params, value_to_sql};
use super::pool::{batch, execute};
use super::{sql, MssqlError};

/// The replica's version record is keyed by the table's Redis name.
pub(super) fn name_param(table: &TableId) -> ColumnData<'static> {
    ColumnData::String(Some(table.key_name().into()))
}

/// Inserts rows in statements sized to the parameter limits.
pub(super) async fn insert_chunks(
    lease: &mut Lease<'_>,
    schema: &TableSchema,
    rows: &[Row],
) -> std::result::Result<(), MssqlError> {
    if rows.is_empty() {
        return Ok(());
    }
    let types: Vec<SqlType> = schema
        .written_columns()
        .iter()
        .map(|c| c.ty.clone())
        .collect();
    let identity = schema.has_identity();
    if identity {
        batch(lease, &sql::identity_insert(&schema.id, true), || {
            format!("SET IDENTITY_INSERT {} ON", schema.id)
        })
        .await?;
    }
    for chunk in rows.chunks(sql::rows_per_statement(types.len())) {
        let text = sql::insert_rows(schema, chunk.len());
        let params = chunk
            .iter()
            .flat_map(|row| row.iter().zip(&types).map(|(v, t)| value_to_sql(v, t)))
            .collect();
        execute(lease, &text, params, || {
            format!("inserting {} rows into {}", chunk.len(), schema.id)
        })
        .await?;
    }
    if identity {
        batch(lease, &sql::identity_insert(&schema.id, false), || {
            format!("SET IDENTITY_INSERT {} OFF", schema.id)
        })
        .await?;
    }
    Ok(())
}

pub(super) async fn delete_chunks(
    lease: &mut Lease<'_>,
    schema: &TableSchema,
    keys: &[RowKey],
) -> std::result::Result<(), MssqlError> {
    let key_cols = schema
        .key_columns()
        .ok_or_else(|| MssqlError::Unexpected(format!("table {} has no key", schema.id)))?;
    let key_defs = schema
        .key_column_defs()
        .ok_or_else(|| MssqlError::Unexpected(format!("table {} has no key", schema.id)))?;
    for chunk in keys.chunks(sql::rows_per_statement(key_cols.len())) {
        let text = sql::delete_keys(schema, &key_cols, chunk.len());
        let params = chunk
            .iter()
            .flat_map(|key| key_params(key, &key_defs))
            .collect();
        execute(lease, &text, params, || {
            format!("deleting {} keys from {}", chunk.len(), schema.id)
        })
        .await?;
    }
    Ok(())
}

pub(super) async fn upsert_version(
    lease: &mut Lease<'_>,
    table: &TableId,
    version: SyncVersion,
) -> std::result::Result<(), MssqlError> {
    write_version(lease, sql::UPSERT_VERSION, table, version).await
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
