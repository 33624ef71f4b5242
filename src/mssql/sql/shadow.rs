//! T-SQL for shadow loads: what blocks a swap, what operators added to the
//! live table that is carried over (nonclustered indexes, object
//! permissions), and the swap itself. The swap runs in one transaction:
//! the live table is renamed aside, the shadow is transferred into the live
//! schema and renamed to the live name, the permissions are granted again,
//! the old table is dropped. Readers see the old complete table until the
//! commit and the new complete one after it.

use ctsync_actors::model::TableId;

use super::{quote, table};

/// Everything on the live table `@P1` (`[s].[t]` as a value) that a swap
/// cannot carry over, one row per object with what it is (a filtered
/// index's own reference to its table is not a schema-bound module). Nonclustered
/// rowstore indexes and table-level permissions are carried over instead.
pub const SWAP_BLOCKERS: &str = "DECLARE @id int = OBJECT_ID(@P1, N'U'); \
SELECT N'schema-bound ' + LOWER(o.type_desc) + N' ' + QUOTENAME(SCHEMA_NAME(o.schema_id)) + N'.' + QUOTENAME(o.name) + N' references the table' AS blocker \
FROM sys.sql_expression_dependencies AS d JOIN sys.objects AS o ON o.object_id = d.referencing_id \
WHERE d.referenced_id = @id AND d.is_schema_bound_reference = 1 \
AND d.referenced_class = 1 AND d.referencing_class = 1 AND d.referencing_id <> d.referenced_id \
UNION ALL SELECT N'foreign key ' + QUOTENAME(fk.name) + N' references or belongs to the table' \
FROM sys.foreign_keys AS fk WHERE fk.referenced_object_id = @id OR fk.parent_object_id = @id \
UNION ALL SELECT N'trigger ' + QUOTENAME(t.name) + N' on the table cannot be carried over' \
FROM sys.triggers AS t WHERE t.parent_id = @id \
UNION ALL SELECT N'index ' + QUOTENAME(i.name) + N' (' + LOWER(i.type_desc) + N') cannot be carried over' \
FROM sys.indexes AS i WHERE i.object_id = @id AND i.is_primary_key = 0 AND i.type > 0 \
AND (i.type <> 2 OR i.is_unique_constraint = 1 OR i.is_hypothetical = 1 OR i.is_disabled = 1) \
UNION ALL SELECT N'constraint ' + QUOTENAME(c.name) + N' (' + LOWER(c.type_desc) + N') cannot be carried over' \
FROM sys.objects AS c WHERE c.parent_object_id = @id AND c.type IN ('C', 'D') \
UNION ALL SELECT N'extended property ' + QUOTENAME(ep.name) + N' cannot be carried over' \
FROM sys.extended_properties AS ep WHERE ep.class = 1 AND ep.major_id = @id \
UNION ALL SELECT N'column permission ' + p.permission_name + N' to ' + QUOTENAME(USER_NAME(p.grantee_principal_id)) + N' cannot be carried over' \
FROM sys.database_permissions AS p WHERE p.class = 1 AND p.major_id = @id AND p.minor_id <> 0 \
UNION ALL SELECT N'the table is published for replication or tracked by change data capture' \
FROM sys.tables AS tb WHERE tb.object_id = @id AND (tb.is_replicated = 1 OR tb.is_tracked_by_cdc = 1)";

/// The modules bound to the table `@P1` by `WITH SCHEMABINDING`, once each
/// (schema-bound references are also listed per column): schema, name and
/// `sys.objects.type`. SQL Server refuses to drop the table while they exist.
/// A filtered index or statistics object lists the table as referencing
/// itself (class 1 rows whose referencing id is the table): not a module,
/// left out. Only views and functions, the kinds module sync recreates.
pub const SCHEMA_BOUND_DEPENDENTS: &str = "SELECT DISTINCT SCHEMA_NAME(o.schema_id) AS [schema_name], o.name AS [name], o.type AS [type] \
FROM sys.sql_expression_dependencies AS d JOIN sys.objects AS o ON o.object_id = d.referencing_id \
WHERE d.referenced_id = OBJECT_ID(@P1, N'U') AND d.is_schema_bound_reference = 1 \
AND d.referenced_class = 1 AND d.referencing_class = 1 AND d.referencing_id <> d.referenced_id \
AND o.type IN ('V', 'FN', 'IF', 'TF')";

/// The nonclustered rowstore indexes of the live table `@P1` (besides the
/// primary key), one row per index column, in index and column order.
pub const CARRIED_INDEXES: &str = "SELECT i.name AS index_name, i.is_unique, i.filter_definition, \
c.name AS column_name, ic.is_descending_key, ic.is_included_column \
FROM sys.indexes AS i \
JOIN sys.index_columns AS ic ON ic.object_id = i.object_id AND ic.index_id = i.index_id \
JOIN sys.columns AS c ON c.object_id = ic.object_id AND c.column_id = ic.column_id \
WHERE i.object_id = OBJECT_ID(@P1, N'U') AND i.type = 2 AND i.is_primary_key = 0 \
AND i.is_unique_constraint = 0 AND i.is_hypothetical = 0 AND i.is_disabled = 0 \
ORDER BY i.name, ic.is_included_column, ic.key_ordinal, ic.index_column_id";

/// The table-level permissions on the live table `@P1`.
pub const CARRIED_PERMISSIONS: &str = "SELECT p.state_desc, p.permission_name, \
USER_NAME(p.grantee_principal_id) AS grantee \
FROM sys.database_permissions AS p \
WHERE p.class = 1 AND p.major_id = OBJECT_ID(@P1, N'U') AND p.minor_id = 0 \
ORDER BY grantee, p.permission_name";

/// One index to build on the shadow table before the swap.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CarriedIndex {
    pub name: String,
    pub unique: bool,
    /// `sys.indexes.filter_definition`, as the replica's catalog gives it.
    pub filter: Option<String>,
    /// (column, descending)
    pub keys: Vec<(String, bool)>,
    pub included: Vec<String>,
}

/// `CREATE [UNIQUE] NONCLUSTERED INDEX … ON <shadow>` unless the shadow
/// has an index of that name already: `@P1` = the shadow's
/// `[ctsync].[shadow_…]` as a value, `@P2` = the index's name
/// ([`create_index_params`]). Each is an RPC of its own outside the swap's
/// transaction, so what it builds stays when the swap then fails (its lock
/// timeout, Msg 1222, rolls back only the swap); the retry finds the index
/// built and skips it, where a plain `CREATE INDEX` would fail with Msg
/// 1913 at every retry. A table renamed mid-load brings its shadow with
/// the indexes already built on it.
pub fn create_index(target: &TableId, index: &CarriedIndex) -> String {
    format!(
        "IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE object_id = OBJECT_ID(@P1, N'U') AND name = @P2) {}",
        build_index(target, index)
    )
}

/// The values of [`create_index`]'s statement.
pub fn create_index_params(target: &TableId, index: &CarriedIndex) -> [String; 2] {
    [table(target), index.name.clone()]
}

fn build_index(target: &TableId, index: &CarriedIndex) -> String {
    let keys = index
        .keys
        .iter()
        .map(|(c, desc)| format!("{} {}", quote(c), if *desc { "DESC" } else { "ASC" }))
        .collect::<Vec<_>>()
        .join(", ");
    let mut text = format!(
        "CREATE {}NONCLUSTERED INDEX {} ON {} ({keys})",
        if index.unique { "UNIQUE " } else { "" },
        quote(&index.name),
        table(target)
    );
    if !index.included.is_empty() {
        let included = index
            .included
            .iter()
            .map(|c| quote(c))
            .collect::<Vec<_>>()
            .join(", ");
        text.push_str(&format!(" INCLUDE ({included})"));
    }
    if let Some(filter) = &index.filter {
        // The catalog's own expression text (the replica's, not input).
        text.push_str(&format!(" WHERE {filter}"));
    }
    text
}

/// `GRANT`/`DENY <permission> ON <table> TO <grantee>` from a row of
/// [`CARRIED_PERMISSIONS`]; `None` for a state or permission name that is
/// not plain catalog text.
pub fn grant(id: &TableId, state: &str, permission: &str, grantee: &str) -> Option<String> {
    let plain = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_uppercase() || c == ' ');
    if !plain(permission) {
        return None;
    }
    let on = format!("{permission} ON {} TO {}", table(id), quote(grantee));
    match state {
        "GRANT" => Some(format!("GRANT {on}")),
        "GRANT_WITH_GRANT_OPTION" => Some(format!("GRANT {on} WITH GRANT OPTION")),
        "DENY" => Some(format!("DENY {on}")),
        _ => None,
    }
}

/// The name the live table has for the instant of the swap.
pub fn swap_aside_name(id: &TableId) -> String {
    format!("ctsync_old_{}", &id.shadow().name["shadow_".len()..])
}

/// How long each statement of a schema change of a table (the swap, a
/// table rename) may wait for a lock, in ms. Renames, the schema transfer
/// and the drop need schema-modification locks, which wait behind every
/// running reader of the table (and every new reader queues behind them);
/// `WAIT_AT_LOW_PRIORITY` does not apply to these statements. Past this
/// the statement fails (Msg 1222), the transaction rolls back whole
/// (`XACT_ABORT ON`), and the change is tried again later: the load stays
/// pending and its next cycle swaps again; the rename's DDL event stays in
/// the inbox.
/// (<https://learn.microsoft.com/en-us/sql/t-sql/statements/set-lock-timeout-transact-sql>)
pub const SCHEMA_LOCK_TIMEOUT_MS: u32 = 30_000;

/// Bounds a schema change's lock waits: a batch, so it lasts for the
/// session's later requests (inside an RPC it would revert when the RPC
/// returns).
pub fn schema_lock_timeout() -> String {
    format!("SET LOCK_TIMEOUT {SCHEMA_LOCK_TIMEOUT_MS};")
}

/// Puts the session's lock waits back to unbounded (the default) before
/// the pooled session serves anything else.
pub const UNBOUNDED_LOCK_WAIT: &str = "SET LOCK_TIMEOUT -1;";

/// SQL Server's error for a lock wait past `LOCK_TIMEOUT`.
pub const LOCK_TIMEOUT_ERROR: u32 = 1222;

/// The swap's statements, in order, inside one transaction (the caller
/// adds the version record and the commit): `@P1`, `@P2` … are the values
/// of each statement, given by [`swap_params`].
pub fn swap_statements(id: &TableId) -> [String; 4] {
    let shadow = id.shadow();
    let aside = TableId::new(id.schema.clone(), swap_aside_name(id));
    [
        // Live → aside, shadow → live schema → live name; each sp_rename
        // of a table says N'OBJECT' (see `super::RENAME_OBJECT`).
        super::RENAME_OBJECT.to_string(),
        format!(
            "ALTER SCHEMA {} TRANSFER {}",
            quote(&id.schema),
            table(&shadow)
        ),
        super::RENAME_OBJECT.to_string(),
        format!("DROP TABLE {}", table(&aside)),
    ]
}

/// The name of a table's primary key constraint; `@P1` = the table's
/// `[schema].[name]` ([`super::object_name_param`]). Read in the swap's
/// transaction before the live table moves aside, so the swapped-in table
/// gets it back (its own is a system name, `PK__shadow_…`).
pub const PRIMARY_KEY_NAME: &str = "SELECT kc.name AS [name] FROM sys.key_constraints AS kc \
WHERE kc.parent_object_id = OBJECT_ID(@P1) AND kc.type = N'PK'";

/// Gives the swapped-in table's primary key the live table's name, freed
/// by the drop of the table moved aside: `@P1` = the table's
/// `[schema].[name]`, `@P2` = its schema, `@P3` = the name to carry. An
/// RPC inside the swap's transaction (a constraint is renamed by
/// `sp_rename 'schema.constraint', 'new', 'OBJECT'`); nothing happens when
/// the key already has that name.
pub const RENAME_PRIMARY_KEY: &str =
    "DECLARE @current sysname = (SELECT kc.name FROM sys.key_constraints AS kc \
WHERE kc.parent_object_id = OBJECT_ID(@P1) AND kc.type = N'PK'); \
IF @current IS NOT NULL AND @current <> @P3 \
BEGIN \
DECLARE @qualified nvarchar(600) = QUOTENAME(@P2) + N'.' + QUOTENAME(@current); \
EXEC sp_rename @qualified, @P3, N'OBJECT'; \
END";

/// The parameters of each statement of [`swap_statements`].
pub fn swap_params(id: &TableId) -> [Vec<String>; 4] {
    let shadow = id.shadow();
    let moved = TableId::new(id.schema.clone(), shadow.name.clone());
    [
        vec![table(id), swap_aside_name(id)],
        vec![],
        vec![table(&moved), id.name.clone()],
        vec![],
    ]
}

/// `DROP TABLE` of the table's shadow if it exists; `@P1` is the shadow's
/// `[ctsync].[shadow_…]` as a value.
pub fn drop_shadow_if_exists(id: &TableId) -> String {
    format!(
        "IF OBJECT_ID(@P1, N'U') IS NOT NULL DROP TABLE {}",
        table(&id.shadow())
    )
}

/// Moves the shadow of a table renamed to `to` to the new name's, inside
/// the rename's transaction, so a shadow load under way resumes from its
/// cursor: `@P1` is the old shadow's `[ctsync].[shadow_…]` as a value,
/// `@P2` the new one's, `@P3` the new one's bare name. A copy already under
/// the new name (left by nothing ctsync still records) is dropped first;
/// without an old shadow only that happens. Decided by the shadow's
/// existence, not by the record's text (which may be unreadable). The
/// sp_rename says `N'OBJECT'` (see `super::RENAME_OBJECT`).
pub fn move_shadow(to: &TableId) -> String {
    format!(
        "IF OBJECT_ID(@P2, N'U') IS NOT NULL DROP TABLE {}; \
IF OBJECT_ID(@P1, N'U') IS NOT NULL EXEC sp_rename @P1, @P3, N'OBJECT'",
        table(&to.shadow())
    )
}

/// The values of [`move_shadow`]'s statement for a rename `from` → `to`.
pub fn move_shadow_params(from: &TableId, to: &TableId) -> [String; 3] {
    [table(&from.shadow()), table(&to.shadow()), to.shadow().name]
}
