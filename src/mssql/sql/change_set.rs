//! The change set of an incremental cycle: the keys changed since the
//! stored version, copied once from CHANGETABLE into a temporary table the
//! session created in a batch, then read page by page joined to the
//! current rows, on that session.

use ctsync_actors::model::{ColumnDef, TableSchema};

use super::{column_ddl, key_select_list, keyset_predicate, order_by, quote, select_list, table};

/// The session's change-set table (one per connection; the next open on the
/// same connection replaces a leftover, e.g. an empty set's).
pub const CHANGE_SET_TABLE: &str = "#ctsync_changes";

/// Name of the column that says whether the changed row still exists.
pub const EXISTS_COLUMN: &str = "__ctsync_row_exists";

/// The key columns as the temporary table declares them: the table's types
/// and collations (a key column without a recorded collation takes the
/// primary database's default, not tempdb's), never identity or computed.
fn key_column_defs(schema: &TableSchema, keys: &[String]) -> Option<String> {
    keys.iter()
        .map(|k| {
            let c = schema.columns.iter().find(|c| &c.name == k)?;
            let mut plain = ColumnDef {
                identity: None,
                computed: None,
                nullable: false,
                ..c.clone()
            };
            if plain.ty.is_character() && plain.collation.is_none() {
                plain.collation = Some("DATABASE_DEFAULT".into());
            }
            column_ddl(&plain)
        })
        .collect::<Option<Vec<_>>>()
        .map(|defs| defs.join(", "))
}

/// Bytes a key of these columns can take (their declared maximum); `None`
/// if one is max, LOB or unsupported (no index key can hold it).
fn key_bytes(schema: &TableSchema, keys: &[String]) -> Option<u32> {
    use ctsync_actors::model::{Len, SqlType};
    let mut total = 0;
    for k in keys {
        let c = schema.columns.iter().find(|c| &c.name == k)?;
        total += match &c.ty {
            SqlType::Bit | SqlType::TinyInt => 1,
            SqlType::SmallInt => 2,
            SqlType::Int | SqlType::Real | SqlType::SmallMoney | SqlType::SmallDateTime => 4,
            SqlType::Date => 3,
            SqlType::BigInt | SqlType::Money | SqlType::DateTime | SqlType::RowVersion => 8,
            SqlType::Float { precision } => {
                if *precision <= 24 {
                    4
                } else {
                    8
                }
            }
            SqlType::UniqueIdentifier => 16,
            SqlType::Decimal { precision, .. } | SqlType::Numeric { precision, .. } => {
                match precision {
                    0..=9 => 5,
                    10..=19 => 9,
                    20..=28 => 13,
                    _ => 17,
                }
            }
            SqlType::Time { .. } => 5,
            SqlType::DateTime2 { .. } => 8,
            SqlType::DateTimeOffset { .. } => 10,
            SqlType::Char(Len::N(n))
            | SqlType::VarChar(Len::N(n))
            | SqlType::NChar(Len::N(n))
            | SqlType::NVarChar(Len::N(n))
            | SqlType::Binary(Len::N(n))
            | SqlType::VarBinary(Len::N(n)) => *n,
            _ => return None,
        };
    }
    Some(total)
}

/// The most bytes a clustered index key may take (a nonclustered one may
/// take 1,700): "Maximum capacity specifications for SQL Server".
pub const CLUSTERED_KEY_LIMIT: u32 = 900;

/// The batch that creates the session's change-set table (and its unique
/// index: clustered, or nonclustered when the key can exceed the clustered
/// limit — a primary key declared NONCLUSTERED may take up to 1,700 bytes,
/// and a clustered index over it would refuse every longer key with Msg
/// 1946), replacing a leftover. It must be sent as a **batch**
/// (`simple_query`): a temporary table created inside an RPC
/// (`sp_executesql`, which tiberius uses for every parameterized request)
/// is dropped when that RPC returns, while one a batch creates lives until
/// the session ends or drops it, and the session's later RPCs may use it
/// (CREATE TABLE, "Temporary tables"). Identifiers only, no values. `None`
/// when a key column has an unsupported type.
pub fn create_change_set(schema: &TableSchema, keys: &[String]) -> Option<String> {
    let set = CHANGE_SET_TABLE;
    let kind = match key_bytes(schema, keys) {
        Some(n) if n <= CLUSTERED_KEY_LIMIT => "CLUSTERED",
        _ => "NONCLUSTERED",
    };
    Some(format!(
        "IF OBJECT_ID(N'tempdb..{set}') IS NOT NULL DROP TABLE {set}; \
CREATE TABLE {set} ({defs}); \
CREATE UNIQUE {kind} INDEX [ctsync_changes_key] ON {set} ({key_list});",
        defs = key_column_defs(schema, keys)?,
        key_list = order_by("", keys),
    ))
}

/// Drops the session's change set after its last page (a batch, like its
/// creation).
pub const DROP_CHANGE_SET: &str = "DROP TABLE #ctsync_changes;";

/// Fills the session's change set ([`create_change_set`], sent before on
/// the same session) with the keys of `schema`'s table changed since `@P1`,
/// the stored version; `@P2` = the table's name
/// ([`super::object_name_param`]); with `after` (a backlog continued), the
/// cursor key is `@P3…`. An RPC: it uses the table its session created.
///
/// `CHANGE_TRACKING_CURRENT_VERSION()` is read first, before any data is
/// read (a snapshot transaction starts at its first data access, so every
/// change up to that version is visible to the copy). The copy runs only
/// for a version CT can answer, in a SNAPSHOT transaction when `snapshot`
/// (cleanup cannot remove rows under it; the transaction and the isolation
/// level both end inside this request); the min valid version is read
/// again after the copy, so cleanup that passed the stored version while
/// the copy ran is seen. One row comes back: the target version, the min
/// valid version and the number of keys copied.
pub fn fill_change_set(
    schema: &TableSchema,
    keys: &[String],
    after: bool,
    snapshot: bool,
) -> String {
    let tbl = table(&schema.id);
    let key_list = order_by("", keys);
    let ct_keys = order_by("[ct].", keys);
    let set = CHANGE_SET_TABLE;
    let mut copy = format!(
        "INSERT INTO {set} ({key_list}) SELECT {ct_keys} FROM CHANGETABLE(CHANGES {tbl}, @P1) AS [ct]"
    );
    if after {
        copy.push_str(&format!(
            " WHERE {}",
            keyset_predicate("[ct].", schema, keys, 3)
        ));
    }
    let (begin, commit) = if snapshot {
        (
            "SET TRANSACTION ISOLATION LEVEL SNAPSHOT; BEGIN TRANSACTION; ",
            " COMMIT TRANSACTION; SET TRANSACTION ISOLATION LEVEL READ COMMITTED;",
        )
    } else {
        ("", "")
    };
    format!(
        "SET NOCOUNT ON; \
DECLARE @target bigint = CHANGE_TRACKING_CURRENT_VERSION(); \
DECLARE @min bigint = CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(@P2)); \
DECLARE @n bigint = 0; \
IF @P1 >= @min AND @P1 <= @target \
BEGIN \
{begin}{copy}; \
SET @n = @@ROWCOUNT; \
SET @min = CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(@P2));{commit} \
END; \
SELECT @target AS [target_version], @min AS [min_valid_version], @n AS [changed_keys];"
    )
}

/// One page of the session's change set joined to the current rows: the
/// key columns, an existence flag, then the written columns. `@P1` = page
/// size; with `after`, the cursor key is `@P2…`. An RPC on the session
/// that created the set; [`DROP_CHANGE_SET`] follows the last page.
pub fn change_set_page(schema: &TableSchema, keys: &[String], after: bool) -> String {
    let key_cols = key_select_list("[c].", schema, keys);
    let row_cols = select_list("[t].", &schema.written_columns());
    let join = keys
        .iter()
        .map(|k| format!("[t].{q} = [c].{q}", q = quote(k)))
        .collect::<Vec<_>>()
        .join(" AND ");
    let first_key = quote(&keys[0]);
    let mut sql = format!(
        "SELECT TOP (@P1) {key_cols}, CASE WHEN [t].{first_key} IS NULL THEN 0 ELSE 1 END AS {exists}, {row_cols} \
FROM {set} AS [c] LEFT OUTER JOIN {tbl} AS [t] ON {join}",
        exists = quote(EXISTS_COLUMN),
        set = CHANGE_SET_TABLE,
        tbl = table(&schema.id),
    );
    if after {
        sql.push_str(&format!(
            " WHERE {}",
            keyset_predicate("[c].", schema, keys, 2)
        ));
    }
    sql.push_str(&format!(" ORDER BY {}", order_by("[c].", keys)));
    sql
}

/// Tables per scout query (two parameters each, far below SQL Server's
/// 2,100).
pub const SCOUT_CHUNK: usize = 250;

/// Which of `tables` have changes after their stored versions: one row
/// per table (`[i]` its position) with `[changed]` 1 or 0, its min valid
/// version and the current version read before the checks. Table `i`'s
/// name ([`super::object_name_param`]) is `@P(2i+1)`, its version
/// `@P(2i+2)`.
pub fn scout(tables: &[ctsync_actors::model::TableId]) -> String {
    let rows = tables
        .iter()
        .enumerate()
        .map(|(i, t)| {
            format!(
                "SELECT {i} AS [i], CASE WHEN EXISTS (SELECT 1 FROM CHANGETABLE(CHANGES {tbl}, @P{v}) AS [ct]) \
                 THEN 1 ELSE 0 END AS [changed], CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(@P{n})) AS [min_valid], \
                 @current AS [current_version]",
                tbl = table(t),
                n = 2 * i + 1,
                v = 2 * i + 2,
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    format!("DECLARE @current bigint = CHANGE_TRACKING_CURRENT_VERSION(); {rows};")
}
