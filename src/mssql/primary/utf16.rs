//! Finds the value tiberius refused as invalid UTF-16: the table's unicode
//! text columns are read as varbinary (which tiberius passes through
//! untouched), in keyset pages, and checked here, so the table's error can
//! name the column and the key of the row to fix.

use ctsync_actors::model::{ColumnDef, RowKey, SqlType, TableSchema, Value};
use tiberius::ColumnData;

use crate::mssql::convert::{decode_row, key_params};
use crate::mssql::pool::{query_rows, Pool};
use crate::mssql::sql;
use crate::mssql::MssqlError;

/// Rows read per page, and pages at most (the search gives up after that
/// many rows rather than scan a huge table on every retry).
const PAGE: usize = 5_000;
const MAX_PAGES: usize = 40;

/// Whether `bytes` (UTF-16LE, as SQL Server stores nvarchar) is valid.
pub fn valid_utf16(bytes: &[u8]) -> bool {
    if !bytes.len().is_multiple_of(2) {
        return false;
    }
    let units = bytes
        .chunks_exact(2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]));
    char::decode_utf16(units).all(|c| c.is_ok())
}

/// How a key is shown in the error: `Id = 7, Code = 'x'`.
pub fn describe_key(names: &[String], key: &RowKey) -> String {
    names
        .iter()
        .zip(&key.0)
        .map(|(n, v)| {
            let v = match v {
                Value::String(s) => format!("'{}'", s.replace('\'', "''")),
                Value::Null => "NULL".into(),
                Value::Bool(b) => (*b as u8).to_string(),
                Value::U8(x) => x.to_string(),
                Value::I16(x) => x.to_string(),
                Value::I32(x) => x.to_string(),
                Value::I64(x) => x.to_string(),
                Value::Decimal { value, scale } => {
                    crate::mssql::convert::decimal_text(*value, *scale)
                }
                other => format!("{other:?}"),
            };
            format!("{} = {v}", sql::quote(n))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// "column [C] of the row with key …", or `None` if no invalid value was
/// found within the search's bounds.
pub async fn locate_invalid(
    pool: &Pool,
    schema: &TableSchema,
) -> Result<Option<String>, MssqlError> {
    let text: Vec<&ColumnDef> = schema
        .written_columns()
        .into_iter()
        .filter(|c| {
            matches!(
                c.ty,
                SqlType::NChar(_) | SqlType::NVarChar(_) | SqlType::NText
            )
        })
        .collect();
    let (Some(keys), Some(key_defs)) = (schema.key_columns(), schema.key_column_defs()) else {
        return Ok(None);
    };
    if text.is_empty() {
        return Ok(None);
    }
    let mut after: Option<RowKey> = None;
    let mut lease = pool.lease().await?;
    for _ in 0..MAX_PAGES {
        let statement = sql::text_as_binary_page(schema, &keys, &text, after.is_some());
        let mut params = vec![ColumnData::I64(Some(PAGE as i64))];
        if let Some(k) = &after {
            params.extend(key_params(k, &key_defs));
        }
        let rows = query_rows(&mut lease, &statement, params, || {
            format!("locating an invalid UTF-16 value in {}", schema.id)
        })
        .await?;
        let n = rows.len();
        for row in rows {
            let mut cells = row.into_iter();
            let key = RowKey(decode_row(cells.by_ref().take(key_defs.len()), &key_defs)?);
            for (cell, col) in cells.zip(&text) {
                if let ColumnData::Binary(Some(bytes)) = cell {
                    if !valid_utf16(&bytes) {
                        return Ok(Some(format!(
                            "column {} of the row with key {}",
                            sql::quote(&col.name),
                            describe_key(&keys, &key)
                        )));
                    }
                }
            }
            after = Some(key);
        }
        if n < PAGE {
            break;
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpaired_surrogates_are_invalid_and_pairs_are_not() {
        let bytes = |units: &[u16]| {
            units
                .iter()
                .flat_map(|u| u.to_le_bytes())
                .collect::<Vec<u8>>()
        };
        assert!(valid_utf16(&bytes(&[0x61, 0xD83D, 0xDE42]))); // a🙂
        assert!(valid_utf16(&bytes(&[0x61, 0x0000, 0x62]))); // NUL inside
        assert!(!valid_utf16(&bytes(&[0x78, 0xD800]))); // lone high
        assert!(!valid_utf16(&bytes(&[0xDC00, 0x78]))); // lone low
        assert!(!valid_utf16(&[0x61])); // odd length
        assert_eq!(
            describe_key(
                &["Id".into(), "Co]de".into()],
                &RowKey(vec![Value::I32(2), Value::String("it's".into())])
            ),
            "[Id] = 2, [Co]]de] = 'it''s'"
        );
    }
}
