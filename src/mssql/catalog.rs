//! Reading catalog rows (shared by the primary and the replica): a table's
//! columns and primary key, and the views, procedures and functions.

use ctsync_actors::model::{ColumnDef, Computed, Identity, KeyColumn, TableId, TableSchema};
use ctsync_actors::modules::{ModuleDef, ModuleKind};
use tiberius::ColumnData;

use super::conn::Lease;
use super::convert::sql_type;
use super::pool::{query_rows_within, META_TIMEOUT};
use super::{sql, MssqlError};

pub fn text(row: &tiberius::Row, col: &str) -> Result<Option<String>, MssqlError> {
    row.try_get::<&str, _>(col)
        .map(|v| v.map(str::to_string))
        .map_err(|e| MssqlError::Conversion(format!("catalog column {col}: {e}")))
}

pub fn int(row: &tiberius::Row, col: &str) -> Result<Option<i32>, MssqlError> {
    row.try_get::<i32, _>(col)
        .map_err(|e| MssqlError::Conversion(format!("catalog column {col}: {e}")))
}

pub fn big(row: &tiberius::Row, idx: usize) -> Result<Option<i64>, MssqlError> {
    row.try_get::<i64, _>(idx)
        .map_err(|e| MssqlError::Conversion(format!("column {idx}: {e}")))
}

pub fn flag(row: &tiberius::Row, col: &str) -> Result<bool, MssqlError> {
    row.try_get::<bool, _>(col)
        .map(|v| v.unwrap_or(false))
        .map_err(|e| MssqlError::Conversion(format!("catalog column {col}: {e}")))
}

fn parse_i128(table: &TableId, what: &str, v: Option<String>) -> Result<i128, MssqlError> {
    let s = v.unwrap_or_else(|| "1".into());
    s.trim().parse().map_err(|_| {
        MssqlError::Conversion(format!(
            "table {table}: identity {what} {s:?} is not an integer"
        ))
    })
}

fn column(table: &TableId, r: &tiberius::Row) -> Result<ColumnDef, MssqlError> {
    let name = text(r, "column_name")?.unwrap_or_default();
    let type_name = text(r, "type_name")?.unwrap_or_default();
    let max_length = int(r, "max_length")?.unwrap_or(0);
    let precision = int(r, "precision")?.unwrap_or(0).clamp(0, 255) as u8;
    let scale = int(r, "scale")?.unwrap_or(0).clamp(0, 255) as u8;
    let mut col = ColumnDef::new(
        name,
        sql_type(&type_name, max_length, precision, scale),
        flag(r, "is_nullable")?,
    );
    col.collation = text(r, "collation_name")?;
    col.has_default = flag(r, "has_default")?;
    if let Some(seed) = text(r, "identity_seed")? {
        col.identity = Some(Identity {
            seed: parse_i128(table, "seed", Some(seed))?,
            increment: parse_i128(table, "increment", text(r, "identity_increment")?)?,
        });
    }
    if flag(r, "is_computed")? {
        col.computed = Some(computed(
            table,
            &col.name,
            text(r, "computed_definition")?,
            flag(r, "is_persisted")?,
        )?);
    }
    Ok(col)
}

/// A computed column's definition. SQL Server shows it only to a login with
/// VIEW DEFINITION on the table (else NULL): without it the column cannot be
/// created, so the table is refused with what to grant.
pub(crate) fn computed(
    table: &TableId,
    column: &str,
    definition: Option<String>,
    persisted: bool,
) -> Result<Computed, MssqlError> {
    match definition.filter(|d| !d.trim().is_empty()) {
        Some(definition) => Ok(Computed {
            definition,
            persisted,
        }),
        None => Err(MssqlError::Unexpected(format!(
            "table {table}: the definition of computed column [{column}] is not visible to \
             ctsync's login, so the column cannot be created on the replica; grant it: GRANT \
             VIEW DEFINITION ON OBJECT::{} TO <ctsync's user>",
            super::sql::table(table)
        ))),
    }
}

/// The table's definition, or `None` if the database has no such table.
pub async fn table_schema(
    lease: &mut Lease<'_>,
    table: &TableId,
) -> Result<Option<TableSchema>, MssqlError> {
    Ok(stamped_table_schema(lease, table)
        .await?
        .map(|(schema, _)| schema))
}

/// [`table_schema`] with the table's columns stamp (`sql::columns_unchanged`
/// checks a later read against it).
pub async fn stamped_table_schema(
    lease: &mut Lease<'_>,
    table: &TableId,
) -> Result<Option<(TableSchema, i32)>, MssqlError> {
    let object = || {
        vec![ColumnData::String(Some(
            sql::object_name_param(table).into(),
        ))]
    };
    let rows = query_rows_within(lease, META_TIMEOUT, sql::TABLE_COLUMNS, object(), || {
        format!("reading the columns of {table}")
    })
    .await?;
    let Some(stamp) = rows.first().map(|r| {
        r.try_get::<i32, _>("columns_stamp")
            .ok()
            .flatten()
            .unwrap_or(0)
    }) else {
        return Ok(None);
    };
    let columns = rows
        .iter()
        .map(|r| column(table, r))
        .collect::<Result<Vec<_>, _>>()?;
    let pk_rows = query_rows_within(
        lease,
        META_TIMEOUT,
        sql::PRIMARY_KEY_COLUMNS,
        object(),
        || format!("reading the primary key of {table}"),
    )
    .await?;
    let primary_key = pk_rows
        .iter()
        .map(|r| {
            Ok(KeyColumn {
                name: text(r, "column_name")?.unwrap_or_default(),
                descending: flag(r, "is_descending_key")?,
            })
        })
        .collect::<Result<Vec<_>, MssqlError>>()?;
    Ok(Some((
        TableSchema {
            id: table.clone(),
            columns,
            primary_key,
        },
        stamp,
    )))
}

/// Views, procedures, functions and triggers of the database.
pub async fn modules(lease: &mut Lease<'_>, what: &str) -> Result<Vec<ModuleDef>, MssqlError> {
    let rows = query_rows_within(lease, META_TIMEOUT, sql::MODULES, vec![], || {
        format!("listing the modules of the {what}")
    })
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let code = text(r, "object_type")?.unwrap_or_default();
        let Some(kind) = ModuleKind::from_type_code(&code) else {
            continue;
        };
        out.push(ModuleDef {
            schema: text(r, "schema_name")?.unwrap_or_default(),
            name: text(r, "object_name")?.unwrap_or_default(),
            kind,
            definition: text(r, "definition")?,
            ansi_nulls: flag(r, "uses_ansi_nulls")?,
            quoted_identifier: flag(r, "uses_quoted_identifier")?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_computed_column_whose_definition_is_hidden_is_refused_with_the_grant() {
        let t = TableId::new("sales", "Or]der");
        let e = computed(&t, "Total", None, false).expect_err("hidden");
        let message = e.to_string();
        assert!(message.contains("computed column [Total]"), "{message}");
        assert!(
            message.contains("GRANT VIEW DEFINITION ON OBJECT::[sales].[Or]]der]"),
            "{message}"
        );
        let ok = computed(&t, "Total", Some("([Qty]*(2))".into()), true).expect("visible");
        assert_eq!(ok.definition, "([Qty]*(2))");
        assert!(ok.persisted);
    }
}
