//! T-SQL for ctsync's own objects on the replica (schema `[ctsync]`): the
//! ordered migrations that create and upgrade them, and the statements on
//! `[ctsync].[sync_versions]`, the per-table record of the version the
//! replica holds and of a pending full load.

/// The schema of ctsync's own objects; never touched by module sync.
pub const OWN_SCHEMA: &str = "ctsync";

/// Opens the migration transaction and takes an exclusive application lock
/// on it (two instances never migrate at once), failing loudly if the lock
/// is not granted within 60 s. Creates the schema and the schema-version
/// table when missing.
pub const MIGRATION_BEGIN: &str = "SET XACT_ABORT ON; BEGIN TRANSACTION; \
DECLARE @lock int; \
EXEC @lock = sp_getapplock @Resource = N'ctsync_schema_migrations', @LockMode = N'Exclusive', \
@LockOwner = N'Transaction', @LockTimeout = 60000; \
IF @lock < 0 THROW 50001, N'ctsync: could not take the migration lock ctsync_schema_migrations within 60 s', 1; \
IF SCHEMA_ID(N'ctsync') IS NULL EXEC (N'CREATE SCHEMA [ctsync]'); \
IF OBJECT_ID(N'[ctsync].[schema_version]', N'U') IS NULL \
CREATE TABLE [ctsync].[schema_version] ([id] int NOT NULL CONSTRAINT [PK_ctsync_schema_version] PRIMARY KEY \
CONSTRAINT [CK_ctsync_schema_version_one_row] CHECK ([id] = 1), [version] int NOT NULL, \
[updated_at] datetime2(3) NOT NULL);";

/// The schema version the replica's `[ctsync]` objects are at (no row: 0).
pub const SELECT_SCHEMA_VERSION: &str =
    "SELECT [version] FROM [ctsync].[schema_version] WHERE [id] = 1";

/// Records `@P1` as the schema version (inside the migration transaction).
pub const SET_SCHEMA_VERSION: &str =
    "UPDATE [ctsync].[schema_version] SET [version] = @P1, [updated_at] = SYSUTCDATETIME() \
WHERE [id] = 1; \
IF @@ROWCOUNT = 0 INSERT INTO [ctsync].[schema_version] ([id], [version], [updated_at]) \
VALUES (1, @P1, SYSUTCDATETIME())";

/// One migration: the schema version it brings the objects to, what it
/// does, and its batches (each sent on its own, in order, inside the
/// migration transaction).
pub struct Migration {
    pub version: i32,
    pub description: &'static str,
    pub batches: &'static [&'static str],
}

/// Every migration, in order. Never edit a released one: add the next.
/// Migrations are keyed by version only (a replica at version n never runs
/// 1..=n again, and nothing compares their text), so an edited one runs
/// only on replicas that never ran it. The one exception allowed: an edit
/// that cannot change the result on any replica that already ran it. The
/// only such edit so far is migration 2's `N'OBJECT'` on its sp_rename:
/// with @objtype NULL the name might have been read as a column or index
/// `sync_versions_v2` of a table `ctsync`, but then `[ctsync].[sync_versions]`
/// would not exist and that replica could not have run since; on every
/// replica that works, the old text renamed the table, exactly as the new
/// text does.
/// (<https://learn.microsoft.com/en-us/sql/relational-databases/system-stored-procedures/sp-rename-transact-sql>)
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "the version record of ctsync 0.1 (kept as it was for existing replicas)",
        batches: &["IF OBJECT_ID(N'[ctsync].[sync_versions]', N'U') IS NULL \
CREATE TABLE [ctsync].[sync_versions] ([table_name] nvarchar(300) NOT NULL PRIMARY KEY, \
[version] bigint NOT NULL, [updated_at] datetime2(3) NOT NULL)"],
    },
    Migration {
        version: 2,
        description: "version record keyed by the exact table key name (binary collation, room \
                      for two quoted 128-character names), with the pending load (JSON: start \
                      version, cursor, rows, mode)",
        batches: &[
            "CREATE TABLE [ctsync].[sync_versions_v2] (\
[table_name] nvarchar(600) COLLATE Latin1_General_BIN2 NOT NULL CONSTRAINT [PK_ctsync_sync_versions_v2] PRIMARY KEY, \
[version] bigint NULL, [load] nvarchar(max) NULL, [updated_at] datetime2(3) NOT NULL)",
            "INSERT INTO [ctsync].[sync_versions_v2] ([table_name], [version], [load], [updated_at]) \
SELECT [table_name], [version], NULL, [updated_at] FROM [ctsync].[sync_versions]",
            "DROP TABLE [ctsync].[sync_versions]",
            "EXEC sp_rename N'[ctsync].[sync_versions_v2]', N'sync_versions', N'OBJECT'",
        ],
    },
    Migration {
        version: 3,
        description: "the DDL inbox: received DDL events, recorded before the receive commits",
        batches: &["CREATE TABLE [ctsync].[ddl_inbox] (\
[seq] bigint IDENTITY(1,1) NOT NULL CONSTRAINT [PK_ctsync_ddl_inbox] PRIMARY KEY, \
[message_id] nvarchar(100) COLLATE Latin1_General_BIN2 NOT NULL CONSTRAINT [UQ_ctsync_ddl_inbox_message_id] UNIQUE, \
[message_type] nvarchar(256) NOT NULL, [body] nvarchar(max) NULL, \
[status] varchar(10) NOT NULL CONSTRAINT [CK_ctsync_ddl_inbox_status] CHECK ([status] IN ('pending', 'parked')), \
[attempts] int NOT NULL, [error] nvarchar(max) NULL, [received_at] datetime2(3) NOT NULL)"],
    },
    Migration {
        version: 4,
        description: "the fence: each table's current owner (instance id) and token, checked by \
                      every transaction that writes the table",
        batches: &["CREATE TABLE [ctsync].[fence] (\
[table_name] nvarchar(600) COLLATE Latin1_General_BIN2 NOT NULL CONSTRAINT [PK_ctsync_fence] PRIMARY KEY, \
[owner] nvarchar(200) COLLATE Latin1_General_BIN2 NOT NULL, [token] bigint NOT NULL, \
[claimed_at] datetime2(3) NOT NULL, [committed_at] datetime2(3) NULL)"],
    },
    Migration {
        version: 5,
        description: "the backlog cursor: an incremental run part-way through its change set \
                      (JSON: since, target, key columns, last committed key)",
        batches: &["ALTER TABLE [ctsync].[sync_versions] ADD [backlog] nvarchar(max) NULL"],
    },
];

/// The schema version this build of ctsync expects.
pub fn latest_schema_version() -> i32 {
    MIGRATIONS.last().map(|m| m.version).unwrap_or(0)
}

/// The record of table `@P1`: its version, pending load and backlog (JSON).
pub const SELECT_RECORD: &str =
    "SELECT [version], [load], [backlog] FROM [ctsync].[sync_versions] \
WHERE [table_name] = @P1";

/// Records `@P2` as the version of table `@P1` after a batch of changes
/// (inside the batch's transaction); a recorded backlog is done.
pub const UPSERT_VERSION: &str = "UPDATE [ctsync].[sync_versions] SET [version] = @P2, \
[backlog] = NULL, [updated_at] = SYSUTCDATETIME() \
WHERE [table_name] = @P1; \
IF @@ROWCOUNT = 0 INSERT INTO [ctsync].[sync_versions] ([table_name], [version], [load], \
[updated_at]) VALUES (@P1, @P2, NULL, SYSUTCDATETIME())";

/// Records a full load of table `@P1` as pending, `@P2` its state (JSON),
/// with no version while it runs.
pub const BEGIN_LOAD: &str = "UPDATE [ctsync].[sync_versions] SET [version] = NULL, [load] = @P2, \
[backlog] = NULL, [updated_at] = SYSUTCDATETIME() WHERE [table_name] = @P1; \
IF @@ROWCOUNT = 0 INSERT INTO [ctsync].[sync_versions] ([table_name], [version], [load], \
[updated_at]) VALUES (@P1, NULL, @P2, SYSUTCDATETIME())";

/// Records the load's new state `@P2` (cursor, rows; JSON padded with
/// spaces for a stable declaration, trimmed here) of table `@P1` in the
/// page's transaction; fails if the load is no longer pending.
pub const LOAD_PAGE: &str =
    "UPDATE [ctsync].[sync_versions] SET [load] = RTRIM(@P2), [updated_at] = SYSUTCDATETIME() \
WHERE [table_name] = @P1 AND [load] IS NOT NULL; \
IF @@ROWCOUNT = 0 THROW 50002, N'ctsync: the full load is no longer pending on the replica', 1;";

/// Records `@P2` as the version of table `@P1` and clears a pending load.
pub const FINISH_LOAD: &str =
    "UPDATE [ctsync].[sync_versions] SET [version] = @P2, [load] = NULL, [backlog] = NULL, \
[updated_at] = SYSUTCDATETIME() WHERE [table_name] = @P1; \
IF @@ROWCOUNT = 0 INSERT INTO [ctsync].[sync_versions] ([table_name], [version], [load], \
[updated_at]) VALUES (@P1, @P2, NULL, SYSUTCDATETIME())";

/// Records where the backlog of table `@P1` stands, `@P2` (JSON: since,
/// target, key columns, cursor; padded for a stable declaration, trimmed
/// here), in the transaction of the page it follows. A table with no record
/// yet gets one at the backlog's start version `@P3` (its rows are
/// complete up to there: that is where the run started).
pub const BACKLOG_PAGE: &str = "UPDATE [ctsync].[sync_versions] SET [backlog] = RTRIM(@P2), \
[updated_at] = SYSUTCDATETIME() WHERE [table_name] = @P1; \
IF @@ROWCOUNT = 0 INSERT INTO [ctsync].[sync_versions] ([table_name], [version], [load], \
[backlog], [updated_at]) VALUES (@P1, @P3, NULL, RTRIM(@P2), SYSUTCDATETIME())";

/// Moves idle tables' versions in one transaction, each on its own terms.
/// `@P1` is a JSON array of `{"t": name, "owner", "token", "from", "to"}`.
/// A table moves only where the fence still names that owner and token
/// (the fence rows are updated first and stay locked until the commit, as
/// [`CHECK_FENCE`] does), its record says `from` and no load or backlog is
/// pending. Returns the names of the tables moved.
pub const ADVANCE_VERSIONS: &str = "SET XACT_ABORT ON; BEGIN TRANSACTION; \
DECLARE @held TABLE ([t] nvarchar(600) COLLATE Latin1_General_BIN2 NOT NULL PRIMARY KEY); \
UPDATE [f] SET [f].[committed_at] = SYSUTCDATETIME() OUTPUT inserted.[table_name] INTO @held \
FROM [ctsync].[fence] AS [f] \
JOIN OPENJSON(@P1) WITH ([t] nvarchar(600), [owner] nvarchar(200), [token] bigint) AS [j] \
ON [f].[table_name] = [j].[t] COLLATE Latin1_General_BIN2 \
AND [f].[owner] = [j].[owner] COLLATE Latin1_General_BIN2 AND [f].[token] = [j].[token]; \
UPDATE [v] SET [v].[version] = [j].[to], [v].[updated_at] = SYSUTCDATETIME() \
OUTPUT inserted.[table_name] \
FROM [ctsync].[sync_versions] AS [v] \
JOIN OPENJSON(@P1) WITH ([t] nvarchar(600), [from] bigint, [to] bigint) AS [j] \
ON [v].[table_name] = [j].[t] COLLATE Latin1_General_BIN2 \
JOIN @held AS [h] ON [h].[t] = [v].[table_name] \
WHERE [v].[version] = [j].[from] AND [v].[load] IS NULL AND [v].[backlog] IS NULL; \
COMMIT TRANSACTION;";

/// Claims table `@P1` for owner `@P2`: its token goes up by one (starting
/// at 1) and the new (owner, token) is recorded and returned, in one
/// transaction. HOLDLOCK keeps two first claims from both inserting; a
/// claim waits for a write of the table in flight (which holds the row's
/// lock until it commits), so it fences everything after that write.
pub const CLAIM_TABLE: &str = "SET XACT_ABORT ON; BEGIN TRANSACTION; \
DECLARE @claimed TABLE ([token] bigint NOT NULL); \
UPDATE [ctsync].[fence] WITH (UPDLOCK, HOLDLOCK) SET [token] = [token] + 1, [owner] = @P2, \
[claimed_at] = SYSUTCDATETIME() OUTPUT inserted.[token] INTO @claimed WHERE [table_name] = @P1; \
IF @@ROWCOUNT = 0 INSERT INTO [ctsync].[fence] ([table_name], [owner], [token], [claimed_at]) \
OUTPUT inserted.[token] INTO @claimed VALUES (@P1, @P2, 1, SYSUTCDATETIME()); \
COMMIT TRANSACTION; \
SELECT [token] FROM @claimed";

/// The first statement of every transaction that writes table `@P1`: it
/// passes (one row) only if the table's current claim is exactly owner
/// `@P2` with token `@P3`, and then holds the row's lock until the
/// transaction ends, so no claim can slip in before it commits.
pub const CHECK_FENCE: &str = "UPDATE [ctsync].[fence] SET [committed_at] = SYSUTCDATETIME() \
WHERE [table_name] = @P1 AND [owner] = @P2 AND [token] = @P3";

/// Who holds table `@P1` on the replica's fence (for the refusal message).
pub const SELECT_FENCE: &str =
    "SELECT [owner], [token] FROM [ctsync].[fence] WHERE [table_name] = @P1";

/// Moves the record of a renamed table: `@P1` old, `@P2` new name.
pub const RENAME_RECORD: &str =
    "UPDATE [ctsync].[sync_versions] SET [table_name] = @P2 WHERE [table_name] = @P1";

/// `DROP TABLE` of the table if it exists (a rebuild inside a load's
/// transaction); `@P1` is [`super::object_name_param`] of the same table.
pub fn drop_table_if_exists(id: &ctsync_actors::model::TableId) -> String {
    format!(
        "IF OBJECT_ID(@P1, N'U') IS NOT NULL DROP TABLE {}",
        super::table(id)
    )
}

/// Records one received message (`@P1` id, `@P2` type, `@P3` body) unless
/// the inbox has it already (a receive delivered again).
pub const INBOX_ADD: &str = "IF NOT EXISTS (SELECT 1 FROM [ctsync].[ddl_inbox] WHERE [message_id] = @P1) \
INSERT INTO [ctsync].[ddl_inbox] ([message_id], [message_type], [body], [status], [attempts], [error], [received_at]) \
VALUES (@P1, @P2, @P3, 'pending', 0, NULL, SYSUTCDATETIME())";

/// The pending messages, oldest first.
pub const INBOX_PENDING: &str = "SELECT [message_id], [message_type], [body], [attempts] \
FROM [ctsync].[ddl_inbox] WHERE [status] = 'pending' ORDER BY [seq]";

/// An applied (or ignored) message leaves the inbox: `@P1` id.
pub const INBOX_DONE: &str = "DELETE FROM [ctsync].[ddl_inbox] WHERE [message_id] = @P1";

/// A failed attempt: `@P1` id, `@P2` error, `@P3` the new status.
pub const INBOX_FAILED: &str = "UPDATE [ctsync].[ddl_inbox] SET [attempts] = [attempts] + 1, \
[error] = @P2, [status] = @P3 WHERE [message_id] = @P1";
