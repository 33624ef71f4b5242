//! T-SQL for schema changes on the replica, for views/procedures/functions,
//! and for receiving from the DDL queue.

use ctsync_actors::model::{ColumnDef, TableId};
use ctsync_actors::modules::{create_or_alter, qualified_statement, ModuleDef, ModuleKind};

use super::{collation, column_ddl, quote, table, type_ddl};

/// `ALTER TABLE … ADD <column>` (identity, computed and nullability as on
/// the primary).
pub fn add_column(id: &TableId, c: &ColumnDef) -> Option<String> {
    Some(format!("ALTER TABLE {} ADD {}", table(id), column_ddl(c)?))
}

pub fn drop_column(id: &TableId, column: &str) -> String {
    format!("ALTER TABLE {} DROP COLUMN {}", table(id), quote(column))
}

/// `ALTER TABLE … ALTER COLUMN` to the column's type and nullability.
pub fn alter_column(id: &TableId, c: &ColumnDef) -> Option<String> {
    let mut ty = type_ddl(&c.ty)?;
    if c.ty.is_character() {
        ty.push_str(&collation(c));
    }
    let null = if c.nullable { "NULL" } else { "NOT NULL" };
    Some(format!(
        "ALTER TABLE {} ALTER COLUMN {} {ty} {null}",
        table(id),
        quote(&c.name)
    ))
}

/// `sp_rename` of a column: `@P1` = `[s].[t].[old]`, `@P2` = the new name.
pub const RENAME_COLUMN: &str = "EXEC sp_rename @P1, @P2, N'COLUMN'";
/// `sp_rename` of a table: `@P1` = `[s].[old]`, `@P2` = the new name
/// ([`table_rename`]). `@objtype` is always `N'OBJECT'`: with it NULL,
/// sp_rename first reads a two-part name as `table.column` or
/// `table.index` (`[sales].[Order]` as the column or index `Order` of a
/// table `sales`), and would lock or rename that instead
/// (<https://learn.microsoft.com/en-us/sql/relational-databases/system-stored-procedures/sp-rename-transact-sql>).
pub const RENAME_OBJECT: &str = "EXEC sp_rename @P1, @P2, N'OBJECT'";

/// The values a table rename `from` → `to` sends, statement by statement,
/// all in its one fenced transaction (the schema stays: `sp_rename` keeps
/// a table in its schema).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRename {
    /// [`RENAME_OBJECT`]'s: `@objname` the old `[schema].[name]`, quoted
    /// with `]` doubled (sp_rename parses it as a name), and `@newname`
    /// the bare new name (taken as written: brackets would become part of
    /// the name).
    pub object: [String; 2],
    /// [`super::move_shadow`]'s: the old and the new shadow's
    /// `[ctsync].[shadow_…]` and the new shadow's bare name.
    pub shadow: [String; 3],
    /// [`super::RENAME_RECORD`]'s: the old and the new record key.
    pub record: [String; 2],
}

/// The values of the statements of a table rename `from` → `to`.
pub fn table_rename(from: &TableId, to: &TableId) -> TableRename {
    TableRename {
        object: [super::object_name_param(from), to.name.clone()],
        shadow: super::move_shadow_params(from, to),
        record: [from.key_name(), to.key_name()],
    }
}

/// The value of `sp_rename`'s `@objname` for a column.
pub fn column_object_name(id: &TableId, column: &str) -> String {
    format!("{}.{}", table(id), quote(column))
}

/// Views, procedures, functions and triggers, with their SET options.
pub const MODULES: &str =
    "SELECT s.name AS schema_name, o.name AS object_name, RTRIM(o.type) AS object_type, \
m.definition, m.uses_ansi_nulls, m.uses_quoted_identifier \
FROM sys.sql_modules AS m \
JOIN sys.objects AS o ON o.object_id = m.object_id \
JOIN sys.schemas AS s ON s.schema_id = o.schema_id \
WHERE o.is_ms_shipped = 0 AND o.type IN ('V', 'P', 'FN', 'IF', 'TF', 'TR') \
ORDER BY s.name, o.name";

/// The SET options a module was created with (they are stored with it).
pub fn module_set_options(ansi_nulls: bool, quoted_identifier: bool) -> String {
    let on = |b: bool| if b { "ON" } else { "OFF" };
    format!(
        "SET ANSI_NULLS {}; SET QUOTED_IDENTIFIER {};",
        on(ansi_nulls),
        on(quoted_identifier)
    )
}

/// Puts the session options back to what every other statement of ctsync
/// expects (DML on tables with indexed computed columns or indexed views
/// fails under ANSI_NULLS or QUOTED_IDENTIFIER OFF), on a pooled connection
/// that just created a module with other options.
pub const SESSION_OPTIONS_DEFAULT: &str = "SET ANSI_NULLS ON; SET QUOTED_IDENTIFIER ON;";

/// The batches that create (or alter) a module, in order: the module's SET
/// options, its CREATE, and the reset to the session defaults. `None` as
/// for [`create_module`].
pub fn module_batches(m: &ModuleDef, or_alter: bool) -> Option<[String; 3]> {
    Some([
        module_set_options(m.ansi_nulls, m.quoted_identifier),
        create_module(m, or_alter)?,
        SESSION_OPTIONS_DEFAULT.to_string(),
    ])
}

/// The statement that creates (or, with `or_alter`, recreates) a module on
/// the replica: its own definition with the CREATE header naming
/// `[schema].[name]` (definitions may omit the schema or carry a name from
/// before an sp_rename). A header that cannot be read is sent as written;
/// `None` for an encrypted module or an unreadable header to alter.
pub fn create_module(m: &ModuleDef, or_alter: bool) -> Option<String> {
    let d = m.definition.as_deref()?;
    qualified_statement(d, &m.schema, &m.name, or_alter).or_else(|| {
        if or_alter {
            create_or_alter(d)
        } else {
            Some(d.to_string())
        }
    })
}

pub fn drop_module(kind: ModuleKind, schema: &str, name: &str) -> String {
    format!(
        "DROP {} {}.{}",
        kind.drop_keyword(),
        quote(schema),
        quote(name)
    )
}

/// The DDL queue ctsync listens on, as `[schema].[queue]`.
pub fn queue_name(schema: &str, queue: &str) -> String {
    format!("{}.{}", quote(schema), quote(queue))
}

/// One transactional receive from the DDL queue. `max` and `timeout_ms`
/// are ctsync's own numbers (not input), written as integer literals. The
/// body comes raw (varbinary) and is decoded by ctsync: a cast to xml here
/// would fail the whole receive on one body that is not XML.
pub fn receive(queue: &str, max: usize, timeout_ms: u64) -> String {
    format!(
        "WAITFOR (RECEIVE TOP ({max}) conversation_handle, message_sequence_number, \
         message_type_name, message_body FROM {queue}), TIMEOUT {timeout_ms}"
    )
}

/// Ends conversation `@P1` (its handle as text) inside the receive
/// transaction.
pub const END_CONVERSATION: &str =
    "DECLARE @handle uniqueidentifier = CAST(@P1 AS uniqueidentifier); END CONVERSATION @handle;";

pub const BEGIN_RECEIVE: &str = "BEGIN TRANSACTION;";
