//! Page-sized writes whose SQL text and parameter declaration never depend
//! on the values: a page's rows (or keys) travel as one JSON document in one
//! `nvarchar(max)` parameter and `OPENJSON … WITH` turns them back into the
//! columns' own types. One request per page, one plan per table and shape.

use ctsync_actors::model::{ColumnDef, Len, SqlType, TableSchema};

use super::{collation, quote, table, type_ddl};

/// JSON members are named this and the column's position.
pub const MEMBER_PREFIX: &str = "c";

/// The JSON member that carries the value of the `i`-th column of a row.
pub fn member(i: usize) -> String {
    format!("{MEMBER_PREFIX}{i}")
}

/// The `WITH` type of a column's text: every value travels as a JSON string
/// (or null) in the form `json_rows::value_text` writes; `max` only where
/// that text can pass 4,000 characters.
fn with_type(ty: &SqlType) -> &'static str {
    let long = |n: &Len, chars_per_byte: u32| match n {
        Len::Max => true,
        Len::N(n) => n.saturating_mul(chars_per_byte) + 2 > 4_000,
    };
    match ty {
        SqlType::Char(n) | SqlType::VarChar(n) if long(n, 1) => "nvarchar(max)",
        SqlType::Binary(n) | SqlType::VarBinary(n) if long(n, 2) => "nvarchar(max)",
        SqlType::NVarChar(Len::Max)
        | SqlType::Text
        | SqlType::NText
        | SqlType::Image
        | SqlType::Xml => "nvarchar(max)",
        _ => "nvarchar(4000)",
    }
}

/// `WITH (…)` for the given columns, member `c<i>` for the `i`-th.
fn with_clause(columns: &[&ColumnDef]) -> String {
    let members = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            format!(
                "{} {} '$.{}'",
                quote(&member(i)),
                with_type(&c.ty),
                member(i)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!("WITH ({members})")
}

/// The column's value from its JSON text `src`, for an INSERT:
/// - char/varchar/text stay nvarchar: assigning them converts under the
///   column's own collation and code page (see `typed_param`);
/// - binary types travel as `0x…` hex (style 1);
/// - datetime and smalldatetime as ISO 8601 (style 126, independent of
///   `SET DATEFORMAT` and the language); the other temporal types' ISO
///   forms are independent of those settings anyway;
/// - xml with style 1, which keeps insignificant white space (CAST and
///   CONVERT, "XML styles");
/// - everything else converts from its exact text to the column's type.
fn from_text(c: &ColumnDef, src: &str) -> String {
    match &c.ty {
        SqlType::Char(_)
        | SqlType::VarChar(_)
        | SqlType::Text
        | SqlType::NChar(_)
        | SqlType::NVarChar(_)
        | SqlType::NText => src.to_string(),
        SqlType::Binary(_) | SqlType::VarBinary(_) | SqlType::Image | SqlType::RowVersion => {
            format!("CONVERT(varbinary(max), {src}, 1)")
        }
        SqlType::DateTime | SqlType::SmallDateTime => {
            format!(
                "CONVERT({}, {src}, 126)",
                type_ddl(&c.ty).unwrap_or_default()
            )
        }
        // Style 1 keeps insignificant white space; style 0 (CAST's)
        // discards it, and the replica would differ from the primary.
        SqlType::Xml => format!("CONVERT(xml, {src}, 1)"),
        ty => match type_ddl(ty) {
            Some(ddl) => format!("CONVERT({ddl}, {src})"),
            None => src.to_string(),
        },
    }
}

/// The column's value from its JSON text `src`, compared with the column
/// in a predicate: exactly the column's type (char/varchar under the
/// column's own collation, as `compare_param` explains), so key seeks stay
/// seeks and SQL Server alone decides which keys are equal.
fn compared_text(c: &ColumnDef, src: &str) -> String {
    let ddl = type_ddl(&c.ty).unwrap_or_default();
    match &c.ty {
        SqlType::Char(_) | SqlType::VarChar(_) => {
            format!("CAST({src}{} AS {ddl})", collation(c))
        }
        SqlType::NChar(_) | SqlType::NVarChar(_) => format!("CAST({src} AS {ddl})"),
        SqlType::Binary(_) | SqlType::VarBinary(_) | SqlType::RowVersion => {
            format!("CONVERT({ddl}, {src}, 1)")
        }
        _ => from_text(c, src),
    }
}

/// `INSERT` of a page of rows into the written columns from the JSON array
/// `@P1` (objects with members `c0`, `c1`, … in written-column order);
/// identity values are kept (IDENTITY_INSERT on and off in the same batch).
pub fn insert_json(schema: &TableSchema) -> String {
    let cols = schema.written_columns();
    let names = cols
        .iter()
        .map(|c| quote(&c.name))
        .collect::<Vec<_>>()
        .join(", ");
    let values = cols
        .iter()
        .enumerate()
        .map(|(i, c)| from_text(c, &format!("[j].{}", quote(&member(i)))))
        .collect::<Vec<_>>()
        .join(", ");
    let insert = format!(
        "INSERT INTO {tbl} ({names}) SELECT {values} FROM OPENJSON(@P1) {with} AS [j];",
        tbl = table(&schema.id),
        with = with_clause(&cols),
    );
    if schema.has_identity() {
        format!(
            "SET IDENTITY_INSERT {tbl} ON; {insert} SET IDENTITY_INSERT {tbl} OFF;",
            tbl = table(&schema.id)
        )
    } else {
        insert
    }
}

/// `DELETE` of the rows whose keys are in the JSON array `@P1` (objects
/// with members `c0`, `c1`, … in key order).
pub fn delete_json(schema: &TableSchema, keys: &[&ColumnDef]) -> String {
    let on = keys
        .iter()
        .enumerate()
        .map(|(i, c)| {
            format!(
                "[t].{} = {}",
                quote(&c.name),
                compared_text(c, &format!("[j].{}", quote(&member(i))))
            )
        })
        .collect::<Vec<_>>()
        .join(" AND ");
    format!(
        "DELETE [t] FROM {tbl} AS [t] JOIN OPENJSON(@P1) {with} AS [j] ON {on};",
        tbl = table(&schema.id),
        with = with_clause(keys),
    )
}
