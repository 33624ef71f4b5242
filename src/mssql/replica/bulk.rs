//! TDS bulk load of a page's rows (tiberius `bulk_insert_with_options`),
//! inside the page's replica transaction: which tables can take it, the
//! values in the form tiberius encodes exactly, and the load itself.

use std::borrow::Cow;

use ctsync_actors::model::{ColumnDef, Len, Row, SqlType, TableSchema, Value};
use tiberius::numeric::Numeric;
use tiberius::{ColumnData, SqlBulkCopyOption, SqlBulkCopyOptions, TokenRow};

use crate::mssql::conn::Lease;
use crate::mssql::convert::value_to_sql;
use crate::mssql::session::BulkLoad;
use crate::mssql::sql;
use crate::mssql::Context;
use crate::mssql::MssqlError;

/// Requests tiberius 0.13 sends for one bulk load (`Client::
/// bulk_insert_with_options`): `SELECT TOP 0 <columns> FROM <table>` for
/// the target's metadata, the `INSERT BULK` batch, then the rows as one
/// bulk-load message (split into packets, answered once).
pub const BULK_LOAD_REQUESTS: usize = 3;

/// A decimal column whose values tiberius 0.13 would send longer than the
/// column allows: `Numeric::precision` counts a digit for a zero integer
/// part (1 + scale), so in `decimal(p,p)` every value goes with the length
/// of precision p + 1, which for p = 9, 19 and 28 is the next storage size
/// (9, 13, 17 bytes where the column takes 5, 9, 13). MS-TDS 2.2.5.5.1.6
/// allows an integer shorter than the column's, never longer.
fn overlong_decimal(ty: &SqlType) -> Option<String> {
    match ty {
        SqlType::Decimal { precision, scale } | SqlType::Numeric { precision, scale }
            if precision == scale && matches!(precision, 9 | 19 | 28) =>
        {
            Some(format!(
                "{} (tiberius 0.13 would send its values one storage \
                 size longer than the column's)",
                sql::type_ddl(ty).unwrap_or_default()
            ))
        }
        _ => None,
    }
}

/// Why `schema`'s rows cannot go through tiberius 0.13's bulk copy, if they
/// cannot (they are then written with `sql::insert_json`):
/// - xml: an empty xml value is encoded as a zero-length chunk followed by
///   the terminator, which desyncs the stream (src/tds/xml.rs);
/// - char/varchar/text under a `_UTF8` collation: tiberius encodes them by
///   the collation's LCID code page, never UTF-8, so non-ASCII text would
///   be stored wrong;
/// - image: tiberius has no bulk encoding for it;
/// - a column whose `INSERT BULK` declaration tiberius misstates
///   ([`misstated`]);
/// - names with control characters: tiberius refuses them as identifiers;
/// - a decimal whose values tiberius sends too long ([`overlong_decimal`]).
pub fn refusal(schema: &TableSchema) -> Option<String> {
    let id = &schema.id;
    if [&id.schema, &id.name]
        .iter()
        .any(|n| n.chars().any(|c| c.is_ascii_control()))
    {
        return Some("its name has a control character".into());
    }
    for c in schema.written_columns() {
        if c.name.chars().any(|ch| ch.is_ascii_control()) {
            return Some(format!("column {:?} has a control character", c.name));
        }
        if c.ty == SqlType::Xml {
            return Some(format!(
                "column [{}] is xml (tiberius 0.13 cannot bulk-copy an empty xml value)",
                c.name
            ));
        }
        if c.ty == SqlType::Image {
            return Some(format!(
                "column [{}] is image (tiberius 0.13 has no bulk encoding for it)",
                c.name
            ));
        }
        if let Some(why) = overlong_decimal(&c.ty) {
            return Some(format!("column [{}] is {why}", c.name));
        }
        if let Some(why) = misstated(c) {
            return Some(format!(
                "column [{}] is {} and tiberius 0.13 would declare it {why} in INSERT BULK",
                c.name,
                sql::type_ddl(&c.ty).unwrap_or_default()
            ));
        }
        if is_single_byte_text(&c.ty) && utf8_collation(c) {
            return Some(format!(
                "column [{}] uses the UTF-8 collation {} (tiberius bulk copy encodes by code page)",
                c.name,
                c.collation.as_deref().unwrap_or_default()
            ));
        }
    }
    None
}

/// The type tiberius 0.13 writes into the `INSERT BULK` column list for a
/// column it renders wrong from the target's metadata (`MetaDataColumn`'s
/// `Display`, src/tds/codec/token/token_col_metadata.rs), when that
/// declaration cannot carry the column's data:
/// - time(n < 7) and datetimeoffset(n < 7) lose their scale (read as 7,
///   while the rows are encoded at n: the server refuses a misstated
///   column, "invalid column attribute from bcp client", tiberius #234);
/// - nvarchar(2001..4000) becomes nvarchar(max) while its data is sent as
///   non-max;
/// - nchar(n) becomes nchar(2n) (invalid past 2000, and a fixed-length
///   declaration twice as long pads every value);
/// - a nullable smalldatetime becomes datetime (8 bytes, sent as 4).
///
/// nvarchar(n <= 2000) becomes nvarchar(2n): the same family, non-max, so
/// the wider declaration converts to the column exactly (the contract
/// suite pins it on a real server).
fn misstated(c: &ColumnDef) -> Option<String> {
    match &c.ty {
        SqlType::Time { scale } if *scale < 7 => Some("time (scale 7)".into()),
        SqlType::DateTimeOffset { scale } if *scale < 7 => Some("datetimeoffset (scale 7)".into()),
        SqlType::NVarChar(Len::N(bytes)) if *bytes > 4_000 => Some("nvarchar(max)".into()),
        SqlType::NChar(Len::N(bytes)) => Some(format!("nchar({bytes})")),
        SqlType::SmallDateTime if c.nullable => Some("datetime".into()),
        _ => None,
    }
}

fn is_single_byte_text(ty: &SqlType) -> bool {
    matches!(ty, SqlType::Char(_) | SqlType::VarChar(_) | SqlType::Text)
}

fn utf8_collation(c: &ColumnDef) -> bool {
    c.collation
        .as_deref()
        .is_some_and(|name| name.to_ascii_uppercase().ends_with("_UTF8"))
}

/// A value as a bulk-load cell of a column of type `ty`: decimals and money
/// as exact `Numeric`s at their own scale (tiberius rescales to the
/// column's), text as text (encoded with the target column's collation);
/// everything else as the parameter binding sends it.
pub fn cell(value: &Value, ty: &SqlType) -> ColumnData<'static> {
    match (value, ty) {
        (Value::Decimal { value, scale }, _) => {
            ColumnData::Numeric(Some(Numeric::new_with_scale(*value, *scale)))
        }
        (Value::Null, SqlType::Decimal { .. } | SqlType::Numeric { .. })
        | (Value::Null, SqlType::Money | SqlType::SmallMoney) => ColumnData::Numeric(None),
        (Value::Null, t) if t.is_character() || matches!(t, SqlType::Text | SqlType::NText) => {
            ColumnData::String(None)
        }
        (Value::String(s), _) => ColumnData::String(Some(Cow::Owned(s.clone()))),
        _ => value_to_sql(value, ty),
    }
}

/// Bulk-loads `rows` into `target`'s written columns on the lease's open
/// transaction, keeping identity values and NULLs (without KEEP_NULLS a
/// NULL would take the column's default). `table_lock` for a shadow table
/// only ctsync writes. Returns the rows the server counted.
pub async fn load(
    lease: &mut Lease<'_>,
    target: &TableSchema,
    rows: &[Row],
    table_lock: bool,
) -> Result<u64, MssqlError> {
    let table = sql::table(&target.id);
    let cols = target.written_columns();
    let names: Vec<String> = cols.iter().map(|c| sql::quote(&c.name)).collect();
    let mut options: SqlBulkCopyOptions = SqlBulkCopyOption::KeepNulls.into();
    if target.has_identity() {
        options |= SqlBulkCopyOption::KeepIdentity;
    }
    if table_lock {
        options |= SqlBulkCopyOption::TableLock;
    }
    let what = || format!("bulk-loading {} rows into {}", rows.len(), target.id);
    let cells = rows
        .iter()
        .map(|row| {
            let mut cells = TokenRow::with_capacity(cols.len());
            for (value, c) in row.iter().zip(&cols) {
                cells.push(cell(value, &c.ty));
            }
            cells
        })
        .collect();
    let load = BulkLoad {
        table,
        columns: names,
        options,
        rows: cells,
    };
    let result = async { lease.session()?.bulk(load).await.context(what) }.await;
    lease.answered();
    if result.is_err() {
        // The bulk stream may be half sent: the connection cannot be reused.
        lease.discard();
    }
    let loaded = result?;
    if loaded != rows.len() as u64 {
        return Err(MssqlError::Unexpected(format!(
            "{}: the server stored {loaded} rows",
            what()
        )));
    }
    Ok(loaded)
}
