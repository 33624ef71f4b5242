//! T-SQL for `ctsync doctor`: read-only catalog and permission queries of
//! the primary and the replica.

/// The database, server version and edition, the login's user, and the
/// database settings change tracking needs.
pub const PREFLIGHT_DATABASE: &str = "SELECT DB_NAME() AS database_name, \
CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128)) AS version, \
CAST(SERVERPROPERTY('Edition') AS nvarchar(128)) AS edition, USER_NAME() AS user_name, \
CAST(d.compatibility_level AS int) AS compatibility_level, \
d.is_broker_enabled, CAST(CASE WHEN d.snapshot_isolation_state = 1 THEN 1 ELSE 0 END AS bit) AS snapshot_on, \
CAST(CASE WHEN ctd.database_id IS NULL THEN 0 ELSE 1 END AS bit) AS ct_on, \
CAST(ctd.retention_period AS int) AS retention_period, ctd.retention_period_units_desc AS retention_units, \
ctd.is_auto_cleanup_on \
FROM sys.databases AS d LEFT OUTER JOIN sys.change_tracking_databases AS ctd ON ctd.database_id = d.database_id \
WHERE d.database_id = DB_ID()";

/// The DDL queue `@P1`: enabled for RECEIVE, an event notification to its
/// service, and whether the login may RECEIVE from it.
pub const PREFLIGHT_QUEUE: &str = "SELECT q.is_receive_enabled, \
CAST(CASE WHEN EXISTS (SELECT 1 FROM sys.services AS s JOIN sys.event_notifications AS en \
ON en.service_name = s.name WHERE s.service_queue_id = q.object_id) THEN 1 ELSE 0 END AS bit) AS notified, \
HAS_PERMS_BY_NAME(@P1, N'OBJECT', N'RECEIVE') AS can_receive \
FROM sys.service_queues AS q WHERE q.object_id = OBJECT_ID(@P1)";

/// Every user table (not ctsync's own): its primary key and change
/// tracking, and for tracked ones whether the login can read it and its
/// changes.
pub const PREFLIGHT_TABLES: &str = "SELECT s.name AS schema_name, t.name AS table_name, \
CAST(CASE WHEN EXISTS (SELECT 1 FROM sys.indexes AS i WHERE i.object_id = t.object_id AND i.is_primary_key = 1) \
THEN 1 ELSE 0 END AS bit) AS has_pk, \
CAST(CASE WHEN ct.object_id IS NULL THEN 0 ELSE 1 END AS bit) AS tracked, \
HAS_PERMS_BY_NAME(QUOTENAME(s.name) + N'.' + QUOTENAME(t.name), N'OBJECT', N'SELECT') AS can_select, \
HAS_PERMS_BY_NAME(QUOTENAME(s.name) + N'.' + QUOTENAME(t.name), N'OBJECT', N'VIEW CHANGE TRACKING') AS can_view_ct \
FROM sys.tables AS t JOIN sys.schemas AS s ON s.schema_id = t.schema_id \
LEFT OUTER JOIN sys.change_tracking_tables AS ct ON ct.object_id = t.object_id \
WHERE t.is_ms_shipped = 0 AND s.name <> N'ctsync' ORDER BY s.name, t.name";

/// Columns of tracked tables whose type ctsync cannot replicate.
pub const PREFLIGHT_UNSUPPORTED: &str = "SELECT s.name AS schema_name, t.name AS table_name, \
c.name AS column_name, TYPE_NAME(c.user_type_id) AS type_name \
FROM sys.change_tracking_tables AS ct JOIN sys.tables AS t ON t.object_id = ct.object_id \
JOIN sys.schemas AS s ON s.schema_id = t.schema_id JOIN sys.columns AS c ON c.object_id = t.object_id \
JOIN sys.types AS ty ON ty.user_type_id = c.user_type_id \
WHERE ty.is_assembly_type = 1 OR TYPE_NAME(c.system_type_id) = N'sql_variant' ORDER BY s.name, t.name, c.column_id";

/// The database permissions a login needs, each as (permission, has it):
/// `VIEW DEFINITION` on the primary (modules), DDL and DML on the replica.
pub const PREFLIGHT_DATABASE_PERMISSIONS: &str = "SELECT p.permission_name, \
HAS_PERMS_BY_NAME(DB_NAME(), N'DATABASE', p.permission_name) AS has_it \
FROM (VALUES (N'VIEW DEFINITION'), (N'CREATE TABLE'), (N'CREATE SCHEMA'), (N'CREATE VIEW'), \
(N'CREATE PROCEDURE'), (N'CREATE FUNCTION'), (N'SELECT'), (N'INSERT'), (N'DELETE'), (N'ALTER')) \
AS p (permission_name)";

/// The T-SQL that fixes a doctor finding, to run on the finding's side.
/// Names are quoted; the permission and securable come from the server's
/// own catalog. `AddPrimaryKey` is a template: the operator names the key
/// columns.
pub fn fix_sql(fix: &ctsync_actors::doctor::Fix) -> String {
    use super::{quote, table};
    use ctsync_actors::doctor::Fix;
    match fix {
        Fix::EnableChangeTracking { database } => format!(
            "ALTER DATABASE {} SET CHANGE_TRACKING = ON (CHANGE_RETENTION = 2 DAYS, AUTO_CLEANUP = ON);",
            quote(database)
        ),
        Fix::Retention {
            database,
            days,
            behind,
        } => format!(
            "ALTER DATABASE {} SET CHANGE_TRACKING (CHANGE_RETENTION = {days} DAYS);{}",
            quote(database),
            if *behind {
                " -- or fix what keeps the table behind"
            } else {
                ""
            }
        ),
        Fix::AllowSnapshot { database } => format!(
            "ALTER DATABASE {} SET ALLOW_SNAPSHOT_ISOLATION ON;",
            quote(database)
        ),
        Fix::EnableBroker { database } => format!(
            "ALTER DATABASE {} SET ENABLE_BROKER WITH ROLLBACK IMMEDIATE;",
            quote(database)
        ),
        Fix::CreateQueue { schema, name } => {
            let queue = super::queue_name(schema, name);
            format!(
                "CREATE QUEUE {queue};\nCREATE SERVICE [SyncDDLService] ON QUEUE {queue} ([http://schemas.microsoft.com/SQL/Notifications/PostEventNotification]);\n{CREATE_NOTIFICATION}"
            )
        }
        Fix::EnableQueue { schema, name } => format!(
            "ALTER QUEUE {} WITH STATUS = ON;",
            super::queue_name(schema, name)
        ),
        Fix::CreateNotification => CREATE_NOTIFICATION.to_string(),
        Fix::Grant {
            permission,
            on,
            user,
        } => format!("GRANT {permission} ON {on} TO {};", quote(user)),
        Fix::CompatibilityLevel => "ALTER DATABASE CURRENT SET COMPATIBILITY_LEVEL = 130;".into(),
        Fix::DisableTracking { table: t } => format!(
            "ALTER TABLE {} DISABLE CHANGE_TRACKING; -- or change the column's type",
            table(t)
        ),
        Fix::EnableTracking { table: t } => format!(
            "ALTER TABLE {} ENABLE CHANGE_TRACKING WITH (TRACK_COLUMNS_UPDATED = OFF);",
            table(t)
        ),
        Fix::AddPrimaryKey { table: t } => format!(
            "ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY (<key columns>);",
            table(t),
            quote(&format!("PK_{}", t.name))
        ),
    }
}

/// The event notification that sends DDL events to ctsync's service.
const CREATE_NOTIFICATION: &str = "CREATE EVENT NOTIFICATION [SyncDDLEvents] ON DATABASE FOR DDL_TABLE_EVENTS, RENAME TO SERVICE 'SyncDDLService', 'current database';";
