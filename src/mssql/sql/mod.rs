//! Every T-SQL statement ctsync sends, built in one place (this module and
//! `ddl` for schema changes, modules and the DDL queue). Identifiers are
//! bracket-quoted (`]` → `]]`); values are always `@Pn` parameters, never
//! spliced. Each builder has a golden test and is parsed by an independent
//! T-SQL parser in `tests/sql_statements.rs`.

mod change_set;
mod ddl;
mod doctor;
pub mod json_rows;
mod own_schema;
#[cfg(feature = "testkit")]
pub mod session_rules;
mod shadow;
mod verify;

pub use change_set::*;
pub use ddl::*;
pub use doctor::*;
pub use json_rows::{delete_json, insert_json};
pub use own_schema::*;
pub use shadow::*;
pub use verify::*;

use ctsync_actors::model::{ColumnDef, Len, SqlType, TableId, TableSchema};

/// `name` → `[name]`, doubling any `]`.
pub fn quote(ident: &str) -> String {
    format!("[{}]", ident.replace(']', "]]"))
}

/// `[schema].[table]`.
pub fn table(id: &TableId) -> String {
    format!("{}.{}", quote(&id.schema), quote(&id.name))
}

/// The quoted two-part name as a *value*, for `OBJECT_ID(@P1)`.
pub fn object_name_param(id: &TableId) -> String {
    table(id)
}

// ---------------------------------------------------------------- primary

pub const PRIMARY_IDENTITY: &str =
    "SELECT CONVERT(nvarchar(36), d.service_broker_guid) AS broker_guid, \
CONVERT(nvarchar(30), d.create_date, 126) AS create_date, \
CAST(d.snapshot_isolation_state AS int) AS snapshot_state \
FROM sys.databases AS d WHERE d.database_id = DB_ID()";

pub const TRACKED_TABLES: &str = "SELECT s.name AS schema_name, t.name AS table_name \
FROM sys.change_tracking_tables AS ctt \
JOIN sys.tables AS t ON t.object_id = ctt.object_id \
JOIN sys.schemas AS s ON s.schema_id = t.schema_id \
ORDER BY s.name, t.name";

/// The sys.columns fields whose change changes a table's columns stamp
/// (see [`columns_unchanged`]).
macro_rules! stamped_columns {
    () => {
        "c.column_id, c.name, c.system_type_id, c.user_type_id, c.max_length, c.precision, \
c.scale, c.is_nullable, c.collation_name, c.is_computed, c.is_identity"
    };
}

/// Columns of `OBJECT_ID(@P1)` in `column_id` order, with the base type of
/// alias types, identity seed/increment and computed definitions.
pub const TABLE_COLUMNS: &str = concat!(
    "SELECT c.name AS column_name, \
CASE WHEN ty.is_user_defined = 1 AND ty.is_assembly_type = 0 THEN TYPE_NAME(c.system_type_id) ELSE ty.name END AS type_name, \
CAST(c.max_length AS int) AS max_length, CAST(c.precision AS int) AS precision, CAST(c.scale AS int) AS scale, \
c.is_nullable, c.is_computed, c.collation_name, \
CAST(CASE WHEN c.default_object_id <> 0 THEN 1 ELSE 0 END AS bit) AS has_default, \
CONVERT(nvarchar(40), ic.seed_value) AS identity_seed, CONVERT(nvarchar(40), ic.increment_value) AS identity_increment, \
cc.definition AS computed_definition, cc.is_persisted, \
CHECKSUM_AGG(BINARY_CHECKSUM(",
    stamped_columns!(),
    ")) OVER () AS columns_stamp \
FROM sys.columns AS c \
JOIN sys.types AS ty ON ty.user_type_id = c.user_type_id \
LEFT JOIN sys.identity_columns AS ic ON ic.object_id = c.object_id AND ic.column_id = c.column_id \
LEFT JOIN sys.computed_columns AS cc ON cc.object_id = c.object_id AND cc.column_id = c.column_id \
WHERE c.object_id = OBJECT_ID(@P1) \
ORDER BY c.column_id"
);

/// Primary-key columns of `OBJECT_ID(@P1)` in key order.
pub const PRIMARY_KEY_COLUMNS: &str = "SELECT c.name AS column_name, ic.is_descending_key \
FROM sys.indexes AS i \
JOIN sys.index_columns AS ic ON ic.object_id = i.object_id AND ic.index_id = i.index_id \
JOIN sys.columns AS c ON c.object_id = ic.object_id AND c.column_id = ic.column_id \
WHERE i.object_id = OBJECT_ID(@P1) AND i.is_primary_key = 1 AND ic.key_ordinal > 0 \
ORDER BY ic.key_ordinal";

/// CT retention of the current database: period, units (1 minutes, 2 hours,
/// 3 days) and whether auto cleanup runs.
pub const CHANGE_RETENTION: &str = "SELECT CAST(ctd.retention_period AS int) AS retention_period, \
CAST(ctd.retention_period_units AS int) AS retention_units, ctd.is_auto_cleanup_on \
FROM sys.change_tracking_databases AS ctd WHERE ctd.database_id = DB_ID()";

/// Readiness probe.
pub const PING: &str = "SELECT 1 AS ok";

pub const CURRENT_VERSION: &str = "SELECT CHANGE_TRACKING_CURRENT_VERSION() AS version";

pub const MIN_VALID_VERSION: &str =
    "SELECT CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(@P1)) AS version";

/// Row count from partition metadata: cheap on large tables, used only for
/// the progress display.
pub const ROW_COUNT: &str = "SELECT CAST(COALESCE(SUM(p.rows), 0) AS bigint) AS row_count \
FROM sys.partitions AS p WHERE p.object_id = OBJECT_ID(@P1) AND p.index_id IN (0, 1)";

pub const BEGIN_SNAPSHOT: &str = "SET TRANSACTION ISOLATION LEVEL SNAPSHOT; BEGIN TRANSACTION;";
pub const END_SNAPSHOT: &str =
    "COMMIT TRANSACTION; SET TRANSACTION ISOLATION LEVEL READ COMMITTED;";
pub const ROLLBACK: &str = "IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION;";

/// Whether a value for a column of type `ty` is sent as text and cast to
/// the column's type in the statement (see [`typed_param`]); the binding
/// side is `convert::value_to_sql`. One decision, used by both.
pub fn sent_as_text(ty: &SqlType) -> bool {
    matches!(
        ty,
        SqlType::Char(_)
            | SqlType::VarChar(_)
            | SqlType::Decimal { .. }
            | SqlType::Numeric { .. }
            | SqlType::Money
            | SqlType::SmallMoney
            | SqlType::Xml
    )
}

/// The parameter `@Pn` as a statement uses it for a column of type `ty`. Some values are sent as text and cast to the column's own type, so
/// the declared type never depends on the value and is valid for every
/// value:
/// - char/varchar: sent as nvarchar and not cast here: assigning it to the
///   column converts it under the column's own collation and code page
///   (a CAST would go through the database default's code page and turn
///   what it cannot hold into '?'); see [`compare_param`] for predicates;
/// - decimal/numeric: tiberius declares `numeric(digits + 1, scale)` from
///   each value, which the server rejects past 38 (decimal(38,38)), and a
///   new declaration per value means a plan per statement;
/// - money/smallmoney: tiberius has no exact binding for them;
/// - xml: tiberius sends an empty xml value as a zero-length chunk that
///   desyncs the request; nvarchar '' converts to an empty xml.
pub fn typed_param(ty: &SqlType, n: usize) -> String {
    match type_ddl(ty) {
        // Style 1 keeps insignificant white space (CAST's style 0 drops it).
        Some(_) if *ty == SqlType::Xml => format!("CONVERT(xml, @P{n}, 1)"),
        Some(ddl) if sent_as_text(ty) && !ty.is_character() => format!("CAST(@P{n} AS {ddl})"),
        _ => format!("@P{n}"),
    }
}

/// The parameter `@Pn` compared with column `c` in a predicate (keyset
/// pages, deletes, checksum ranges). A char/varchar key is compared as the
/// column's own type under the column's own collation: nvarchar against it
/// would convert the column and lose index seeks, and a plain CAST would go
/// through the database default's code page ('?' for what it cannot hold,
/// so pages would skip or repeat rows). SQL Server then both orders and
/// compares the keys by the column's collation (case, accents, trailing
/// spaces), and ctsync never compares keys itself.
pub fn compare_param(c: &ColumnDef, n: usize) -> String {
    match (&c.ty, type_ddl(&c.ty)) {
        (SqlType::Char(_) | SqlType::VarChar(_), Some(ddl)) => {
            format!("CAST(@P{n}{} AS {ddl})", collation(c))
        }
        _ => typed_param(&c.ty, n),
    }
}

/// The parameter `@Pn` compared with `column` (see [`compare_param`]).
fn param(schema: &TableSchema, column: &str, n: usize) -> String {
    match schema.columns.iter().find(|c| c.name == column) {
        Some(c) => compare_param(c, n),
        None => format!("@P{n}"),
    }
}

/// A column as ctsync reads it, in the types tiberius decodes exactly:
/// - money and smallmoney as decimal(19,4) and decimal(10,4) (tiberius
///   reads money as f64, exact only to about 9·10¹¹);
/// - char, varchar and text as nvarchar: tiberius decodes them by the code
///   page of the collation's LCID and ignores UTF-8 collations (`_UTF8`), so
///   their non-ASCII text would come back garbled; the server converts
///   them to UTF-16 exactly, whatever their collation.
fn select_expr(prefix: &str, c: &ColumnDef) -> String {
    let col = format!("{prefix}{}", quote(&c.name));
    let nvarchar = |n: &Len| match n {
        Len::N(n) if *n <= 4_000 => format!("nvarchar({})", (*n).max(1)),
        _ => "nvarchar(max)".to_string(),
    };
    match &c.ty {
        SqlType::Money => format!("CAST({col} AS decimal(19, 4))"),
        SqlType::SmallMoney => format!("CAST({col} AS decimal(10, 4))"),
        SqlType::Char(n) | SqlType::VarChar(n) => format!("CAST({col} AS {})", nvarchar(n)),
        SqlType::Text => format!("CAST({col} AS nvarchar(max))"),
        _ => col,
    }
}

fn select_list(prefix: &str, columns: &[&ColumnDef]) -> String {
    columns
        .iter()
        .map(|c| select_expr(prefix, c))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The key columns, read as [`select_expr`] reads them.
pub(crate) fn key_select_list(prefix: &str, schema: &TableSchema, keys: &[String]) -> String {
    keys.iter()
        .map(|k| match schema.columns.iter().find(|c| &c.name == k) {
            Some(c) => select_expr(prefix, c),
            None => format!("{prefix}{}", quote(k)),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `(k1 > @a) OR (k1 = @a AND k2 > @b) OR …` with parameters numbered from
/// `first`: strictly after the cursor in ascending key order.
pub(crate) fn keyset_predicate(
    prefix: &str,
    schema: &TableSchema,
    keys: &[String],
    first: usize,
) -> String {
    let mut terms = Vec::with_capacity(keys.len());
    for i in 0..keys.len() {
        let mut parts: Vec<String> = (0..i)
            .map(|j| {
                format!(
                    "{prefix}{} = {}",
                    quote(&keys[j]),
                    param(schema, &keys[j], first + j)
                )
            })
            .collect();
        parts.push(format!(
            "{prefix}{} > {}",
            quote(&keys[i]),
            param(schema, &keys[i], first + i)
        ));
        terms.push(format!("({})", parts.join(" AND ")));
    }
    terms.join(" OR ")
}

pub(crate) fn order_by(prefix: &str, keys: &[String]) -> String {
    keys.iter()
        .map(|k| format!("{prefix}{}", quote(k)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One keyset page of a full load. `@P1` = page size; with `after`, the key
/// values of the last row read are `@P2…`.
pub fn read_page(schema: &TableSchema, keys: &[String], after: bool) -> String {
    let cols = select_list("", &schema.written_columns());
    let mut sql = format!("SELECT TOP (@P1) {cols} FROM {}", table(&schema.id));
    if after {
        sql.push_str(&format!(" WHERE {}", keyset_predicate("", schema, keys, 2)));
    }
    sql.push_str(&format!(" ORDER BY {}", order_by("", keys)));
    sql
}

/// A keyset page of the key columns and the given unicode text columns read
/// as varbinary (bytes tiberius does not decode), to find a value that is
/// not valid UTF-16. `@P1` = page size; with `after`, the cursor is `@P2…`.
pub fn text_as_binary_page(
    schema: &TableSchema,
    keys: &[String],
    text: &[&ColumnDef],
    after: bool,
) -> String {
    let binary = text
        .iter()
        .map(|c| format!("CAST({} AS varbinary(max))", quote(&c.name)))
        .collect::<Vec<_>>()
        .join(", ");
    let mut sql = format!(
        "SELECT TOP (@P1) {}, {binary} FROM {}",
        key_select_list("", schema, keys),
        table(&schema.id)
    );
    if after {
        sql.push_str(&format!(" WHERE {}", keyset_predicate("", schema, keys, 2)));
    }
    sql.push_str(&format!(" ORDER BY {}", order_by("", keys)));
    sql
}

/// Stops a change read whose table's columns are no longer the ones the
/// cached schema was read with: `@Pn` the table's name, `@Pn+1` the
/// `columns_stamp` [`TABLE_COLUMNS`] returned (the same aggregate over the
/// same rows of sys.columns). Error 50010 ends the batch before any row.
pub fn columns_unchanged(n: usize) -> String {
    format!(
        "IF (SELECT CHECKSUM_AGG(BINARY_CHECKSUM({})) FROM sys.columns AS c \
         WHERE c.object_id = OBJECT_ID(@P{n})) <> @P{m} \
         THROW 50010, N'ctsync: the columns of the table changed since they were read', 1; ",
        stamped_columns!(),
        m = n + 1
    )
}

/// The error number [`columns_unchanged`] throws.
pub const COLUMNS_CHANGED_ERROR: u32 = 50_010;

// ---------------------------------------------------------------- replica

pub const SCHEMA_ID: &str = "SELECT SCHEMA_ID(@P1) AS schema_id";
pub const TABLE_OBJECT_ID: &str = "SELECT OBJECT_ID(@P1, N'U') AS object_id";

/// `CREATE SCHEMA` must be alone in its batch, so it is sent on its own.
pub fn create_schema(schema: &str) -> String {
    format!("CREATE SCHEMA {}", quote(schema))
}

/// SQL Server type text for a column on the replica (rowversion becomes
/// `binary(8)`, since the replica stores the primary's value).
pub fn type_ddl(ty: &SqlType) -> Option<String> {
    fn len(n: &Len, bytes_per_char: u32) -> String {
        match n {
            Len::Max => "max".into(),
            Len::N(n) => (n / bytes_per_char).max(1).to_string(),
        }
    }
    Some(match ty {
        SqlType::Bit => "bit".into(),
        SqlType::TinyInt => "tinyint".into(),
        SqlType::SmallInt => "smallint".into(),
        SqlType::Int => "int".into(),
        SqlType::BigInt => "bigint".into(),
        SqlType::Decimal { precision, scale } => format!("decimal({precision}, {scale})"),
        SqlType::Numeric { precision, scale } => format!("numeric({precision}, {scale})"),
        SqlType::Money => "money".into(),
        SqlType::SmallMoney => "smallmoney".into(),
        SqlType::Real => "real".into(),
        SqlType::Float { precision } => format!("float({precision})"),
        SqlType::Char(n) => format!("char({})", len(n, 1)),
        SqlType::VarChar(n) => format!("varchar({})", len(n, 1)),
        SqlType::NChar(n) => format!("nchar({})", len(n, 2)),
        SqlType::NVarChar(n) => format!("nvarchar({})", len(n, 2)),
        SqlType::Text => "text".into(),
        SqlType::NText => "ntext".into(),
        SqlType::Binary(n) => format!("binary({})", len(n, 1)),
        SqlType::VarBinary(n) => format!("varbinary({})", len(n, 1)),
        SqlType::Image => "image".into(),
        SqlType::UniqueIdentifier => "uniqueidentifier".into(),
        SqlType::Date => "date".into(),
        SqlType::Time { scale } => format!("time({scale})"),
        SqlType::DateTime => "datetime".into(),
        SqlType::SmallDateTime => "smalldatetime".into(),
        SqlType::DateTime2 { scale } => format!("datetime2({scale})"),
        SqlType::DateTimeOffset { scale } => format!("datetimeoffset({scale})"),
        SqlType::RowVersion => "binary(8)".into(),
        SqlType::Xml => "xml".into(),
        SqlType::Unsupported(_) => return None,
    })
}

/// Collation names are plain words (`Latin1_General_CI_AS`); anything else
/// is dropped rather than spliced.
pub(crate) fn collation(c: &ColumnDef) -> String {
    match &c.collation {
        Some(name)
            if !name.is_empty()
                && name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '_') =>
        {
            format!(" COLLATE {name}")
        }
        _ => String::new(),
    }
}

pub(crate) fn column_ddl(c: &ColumnDef) -> Option<String> {
    if let Some(computed) = &c.computed {
        let persisted = if computed.persisted { " PERSISTED" } else { "" };
        return Some(format!(
            "{} AS {}{persisted}",
            quote(&c.name),
            computed.definition
        ));
    }
    let mut s = format!("{} {}", quote(&c.name), type_ddl(&c.ty)?);
    if c.ty.is_character() {
        s.push_str(&collation(c));
    }
    if let Some(id) = &c.identity {
        s.push_str(&format!(" IDENTITY({}, {})", id.seed, id.increment));
    }
    s.push_str(if c.nullable { " NULL" } else { " NOT NULL" });
    Some(s)
}

/// `CREATE TABLE` for the replica: columns in catalog order, identity,
/// computed columns as computed, and the primary key in key order.
/// `None` if a column has an unsupported type.
pub fn create_table(schema: &TableSchema) -> Option<String> {
    let mut parts = schema
        .columns
        .iter()
        .map(column_ddl)
        .collect::<Option<Vec<_>>>()?;
    if !schema.primary_key.is_empty() {
        let keys = schema
            .primary_key
            .iter()
            .map(|k| {
                format!(
                    "{} {}",
                    quote(&k.name),
                    if k.descending { "DESC" } else { "ASC" }
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        parts.push(format!("PRIMARY KEY ({keys})"));
    }
    Some(format!(
        "CREATE TABLE {} ({})",
        table(&schema.id),
        parts.join(", ")
    ))
}

pub const BEGIN: &str = "SET XACT_ABORT ON; BEGIN TRANSACTION;";
pub const COMMIT: &str = "COMMIT TRANSACTION;";

pub fn truncate(id: &TableId) -> String {
    format!("TRUNCATE TABLE {}", table(id))
}
