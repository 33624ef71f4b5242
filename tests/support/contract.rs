//! The two worlds the Primary/Replica contract suite (tests/contract.rs)
//! runs in: the in-memory doubles, and real SQL Server through
//! `MssqlPrimary`/`MssqlReplica` when `CTSYNC_TEST_PRIMARY` and
//! `CTSYNC_TEST_REPLICA` are set. The ports are read-only where the suite
//! needs to write (the primary's rows, CT cleanup, an operator's index), so
//! each world brings a fixture writer.

use std::time::Duration;

use async_trait::async_trait;
use ctsync::mssql::conn::TdsClient;
use ctsync::mssql::convert::value_to_sql;
use ctsync::mssql::sql;
use ctsync::mssql::{Endpoint, MssqlPrimary, MssqlReplica, Pool, TlsSettings};
use ctsync_actors::memory::{MemoryPrimary, MemoryReplica};
use ctsync_actors::model::{Row, RowKey, TableSchema};
use ctsync_actors::ports::{Primary, Replica};
use ctsync_actors::verify::Checksums;
use tiberius::{ColumnData, EncryptionLevel, Query};
use tokio::sync::Mutex;

/// One world: the ports under test and a writer for what they cannot do.
#[async_trait]
pub trait World: Send + Sync {
    fn name(&self) -> String;
    /// A real SQL Server (cases only a real server decides run here).
    fn real(&self) -> bool;
    fn primary(&self) -> &dyn Primary;
    fn replica(&self) -> &dyn Replica;
    /// The table on the primary, change-tracked, empty; gone from the
    /// replica (and its shadow).
    async fn create(&self, schema: &TableSchema);
    /// Inserts `rows` in one transaction.
    async fn insert(&self, schema: &TableSchema, rows: &[Row]);
    /// Replaces the row with `row`'s key (an UPDATE).
    async fn update(&self, schema: &TableSchema, row: Row);
    async fn delete(&self, schema: &TableSchema, key: &RowKey);
    /// Gives the row at `old` the key and values of `row` (an UPDATE of
    /// the key).
    async fn update_key(&self, schema: &TableSchema, old: &RowKey, row: Row);
    async fn truncate(&self, schema: &TableSchema);
    /// CT cleanup removes every change of the table committed so far.
    async fn cleanup(&self, schema: &TableSchema);
    /// The replica table's rows, in key order.
    async fn replica_rows(&self, schema: &TableSchema) -> Vec<Row>;
    /// An index and a grant an operator adds to the replica table.
    async fn add_index_and_grant(&self, schema: &TableSchema);
    /// A filtered index an operator adds to the replica table (listed in
    /// `sys.sql_expression_dependencies` as the table referencing itself;
    /// the doubles keep no such list).
    async fn add_filtered_index(&self, schema: &TableSchema);
    /// The replica table's nonclustered indexes and grants.
    async fn indexes_and_grants(&self, schema: &TableSchema) -> (Vec<String>, Vec<String>);
    /// A reader elsewhere holds a lock on the replica table for `hold`
    /// (returns once the lock is held); `false` where the world has no
    /// locks. The doubles' lock is held for `hold` of the time schema
    /// changes spend waiting for it (they have no clock).
    async fn lock_replica_table(&self, schema: &TableSchema, hold: Duration) -> bool;
    /// Whether the primary database allows snapshot isolation (the
    /// doubles always do).
    async fn snapshot_allowed(&self) -> bool;
    /// Row hashes as `ctsync verify` reads them, on each side.
    fn primary_sums(&self) -> &dyn Checksums;
    fn replica_sums(&self) -> &dyn Checksums;
    /// Changes a replica row behind ctsync's back (by key), as a tamperer
    /// or a bug would.
    async fn tamper_replica(&self, schema: &TableSchema, row: Row);
}

/// The worlds this run has: always the doubles, and SQL Server (once per
/// write path: bulk copy where the table allows it, and INSERT … OPENJSON
/// only) when configured. Says loudly when SQL Server is skipped.
pub async fn worlds() -> Vec<Box<dyn World>> {
    let mut out: Vec<Box<dyn World>> = vec![Box::new(Memory::default())];
    match (
        std::env::var("CTSYNC_TEST_PRIMARY"),
        std::env::var("CTSYNC_TEST_REPLICA"),
    ) {
        (Ok(p), Ok(r)) => {
            for bulk in [true, false] {
                out.push(Box::new(SqlServer::connect(&p, &r, bulk).await.expect(
                    "connecting to CTSYNC_TEST_PRIMARY / CTSYNC_TEST_REPLICA",
                )));
            }
        }
        _ => println!(
            "contract: SQL Server SKIPPED (CTSYNC_TEST_PRIMARY / CTSYNC_TEST_REPLICA not set): \
             this run checks the in-memory doubles only, which are beliefs about SQL Server; \
             cases marked real-server-only are decided by a real server alone"
        ),
    }
    out
}

// ---- the doubles ----------------------------------------------------------

#[derive(Default)]
pub struct Memory {
    pub primary: MemoryPrimary,
    pub replica: MemoryReplica,
}

#[async_trait]
impl World for Memory {
    fn name(&self) -> String {
        "in-memory doubles".into()
    }
    fn real(&self) -> bool {
        false
    }
    fn primary(&self) -> &dyn Primary {
        &self.primary
    }
    fn replica(&self) -> &dyn Replica {
        &self.replica
    }
    async fn create(&self, schema: &TableSchema) {
        self.primary.create_table(schema.clone(), true);
        self.replica.drop_table_by_hand(&schema.id);
    }
    async fn insert(&self, schema: &TableSchema, rows: &[Row]) {
        self.primary.insert_many(&schema.id, rows.iter().cloned());
    }
    async fn update(&self, schema: &TableSchema, row: Row) {
        self.primary.upsert(&schema.id, row);
    }
    async fn delete(&self, schema: &TableSchema, key: &RowKey) {
        self.primary.delete(&schema.id, key);
    }
    async fn update_key(&self, schema: &TableSchema, old: &RowKey, row: Row) {
        self.primary.update_key(&schema.id, old, row);
    }
    async fn truncate(&self, schema: &TableSchema) {
        self.primary.truncate(&schema.id);
    }
    async fn cleanup(&self, schema: &TableSchema) {
        self.primary.cleanup(&schema.id, self.primary.version());
    }
    async fn replica_rows(&self, schema: &TableSchema) -> Vec<Row> {
        self.replica.rows(&schema.id)
    }
    async fn add_filtered_index(&self, schema: &TableSchema) {
        self.replica
            .add_index_by_hand(&schema.id, "ix_contract_filtered");
    }
    async fn add_index_and_grant(&self, schema: &TableSchema) {
        self.replica.add_index_by_hand(&schema.id, "ix_contract");
        self.replica
            .grant_by_hand(&schema.id, "GRANT SELECT TO ctsync_contract_reader");
    }
    async fn indexes_and_grants(&self, schema: &TableSchema) -> (Vec<String>, Vec<String>) {
        self.replica.indexes_and_grants(&schema.id)
    }
    async fn snapshot_allowed(&self) -> bool {
        true
    }
    async fn lock_replica_table(&self, schema: &TableSchema, hold: Duration) -> bool {
        self.replica.hold_lock_by_hand(&schema.id, hold);
        true
    }
    fn primary_sums(&self) -> &dyn Checksums {
        &self.primary
    }
    fn replica_sums(&self) -> &dyn Checksums {
        &self.replica
    }
    async fn tamper_replica(&self, schema: &TableSchema, row: Row) {
        let key = ctsync_actors::memory::row_key(schema, &row).expect("a key");
        self.replica.tamper(&schema.id, &key, Some(row));
    }
}

// ---- SQL Server -----------------------------------------------------------

/// The schema the suite works in, on both servers.
pub const SCHEMA: &str = "ctsync_contract";

pub struct SqlServer {
    bulk: bool,
    primary: MssqlPrimary,
    replica: MssqlReplica,
    /// Reads the replica's rows with the same keyset pages and conversions.
    replica_reader: MssqlPrimary,
    primary_sql: Mutex<TdsClient>,
    replica_sql: Mutex<TdsClient>,
    replica_endpoint: Endpoint,
}

fn tls() -> TlsSettings {
    TlsSettings {
        encrypt: EncryptionLevel::Required,
        trust_server_certificate: std::env::var("CTSYNC_TRUST_SERVER_CERTIFICATE")
            .map(|v| v == "true")
            .unwrap_or(true),
    }
}

async fn exec(c: &Mutex<TdsClient>, text: &str) {
    c.lock()
        .await
        .simple_query(text.to_string())
        .await
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .into_results()
        .await
        .unwrap_or_else(|e| panic!("{text}: {e}"));
}

async fn exec_with(c: &Mutex<TdsClient>, text: &str, params: Vec<ColumnData<'static>>) {
    let mut q = Query::new(text.to_string());
    for p in params {
        q.bind(p);
    }
    q.execute(&mut *c.lock().await)
        .await
        .unwrap_or_else(|e| panic!("{text}: {e}"));
}

async fn strings(c: &Mutex<TdsClient>, text: &str, name: &str) -> Vec<String> {
    let mut q = Query::new(text.to_string());
    q.bind(name.to_string());
    let rows = q
        .query(&mut *c.lock().await)
        .await
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .into_first_result()
        .await
        .unwrap_or_else(|e| panic!("{text}: {e}"));
    rows.iter()
        .filter_map(|r| r.try_get::<&str, _>(0).ok().flatten().map(str::to_string))
        .collect()
}

const IF_NO_SCHEMA: &str =
    "IF SCHEMA_ID(N'ctsync_contract') IS NULL EXEC(N'CREATE SCHEMA [ctsync_contract]')";
// The primary key's index is listed too: its name is the constraint's,
// which a swap must carry.
const INDEX_NAMES: &str = "SELECT i.name FROM sys.indexes AS i WHERE i.object_id = OBJECT_ID(@P1) AND i.name IS NOT NULL ORDER BY i.name";
// The catalog's own text columns and principal names have different
// collations: each is brought to the database's before they are joined.
const GRANTS: &str = "SELECT p.state_desc COLLATE DATABASE_DEFAULT + N' ' + p.permission_name COLLATE DATABASE_DEFAULT + N' TO ' + pr.name COLLATE DATABASE_DEFAULT AS [grant] FROM sys.database_permissions AS p JOIN sys.database_principals AS pr ON pr.principal_id = p.grantee_principal_id WHERE p.major_id = OBJECT_ID(@P1) ORDER BY [grant]";
const RETENTION: &str = "SELECT CAST(retention_period AS int) AS [period], retention_period_units_desc COLLATE DATABASE_DEFAULT AS [units] FROM sys.change_tracking_databases WHERE database_id = DB_ID()";

impl SqlServer {
    async fn connect(primary: &str, replica: &str, bulk: bool) -> anyhow::Result<Self> {
        let p = Endpoint::parse("CTSYNC_TEST_PRIMARY", primary, tls())?;
        let r = Endpoint::parse("CTSYNC_TEST_REPLICA", replica, tls())?;
        let world = Self {
            bulk,
            primary_sql: Mutex::new(p.connect().await?),
            replica_sql: Mutex::new(r.connect().await?),
            // One connection: every change set reuses the one session, so
            // a set left behind (empty, or abandoned) is replaced by the
            // next open for another table, of another key shape.
            primary: MssqlPrimary::new(Pool::new(p, 1)),
            replica: MssqlReplica::new(Pool::new(r.clone(), 2)).with_bulk_load(bulk),
            replica_reader: MssqlPrimary::new(Pool::new(r.clone(), 1)),
            replica_endpoint: r,
        };
        exec(&world.primary_sql, IF_NO_SCHEMA).await;
        exec(&world.replica_sql, IF_NO_SCHEMA).await;
        // The snapshot setting is read with the primary's identity.
        world.primary.identity().await?;
        Ok(world)
    }

    fn key_predicate(schema: &TableSchema, first: usize) -> String {
        schema
            .key_column_defs()
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(i, c)| {
                format!(
                    "{} = {}",
                    sql::quote(&c.name),
                    sql::compare_param(c, first + i)
                )
            })
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    fn key_values(schema: &TableSchema, key: &RowKey) -> Vec<ColumnData<'static>> {
        schema
            .key_column_defs()
            .unwrap_or_default()
            .iter()
            .zip(&key.0)
            .map(|(c, v)| value_to_sql(v, &c.ty))
            .collect()
    }

    /// `UPDATE … SET … WHERE <key>` giving the row at `key` the values of
    /// `row`: every written column but identity ones (never updatable), and
    /// the key columns only when `keys` (a key update).
    fn update_by_key(
        schema: &TableSchema,
        row: &Row,
        key: &RowKey,
        keys: bool,
    ) -> (String, Vec<ColumnData<'static>>) {
        let cols = schema.written_columns();
        let key_names = schema.key_columns().unwrap_or_default();
        let set = cols
            .iter()
            .enumerate()
            .filter(|(_, c)| c.identity.is_none() && (keys || !key_names.contains(&c.name)))
            .map(|(i, c)| {
                format!(
                    "{} = {}",
                    sql::quote(&c.name),
                    sql::typed_param(&c.ty, i + 1)
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let text = format!(
            "UPDATE {} SET {set} WHERE {}",
            sql::table(&schema.id),
            Self::key_predicate(schema, cols.len() + 1)
        );
        let mut params = Self::row_values(schema, row);
        params.extend(Self::key_values(schema, key));
        (text, params)
    }

    fn row_values(schema: &TableSchema, row: &Row) -> Vec<ColumnData<'static>> {
        schema
            .written_columns()
            .iter()
            .zip(row)
            .map(|(c, v)| value_to_sql(v, &c.ty))
            .collect()
    }
}

#[async_trait]
impl World for SqlServer {
    fn name(&self) -> String {
        format!(
            "SQL Server ({})",
            if self.bulk {
                "bulk copy where allowed"
            } else {
                "INSERT … OPENJSON"
            }
        )
    }
    fn real(&self) -> bool {
        true
    }
    fn primary(&self) -> &dyn Primary {
        &self.primary
    }
    fn replica(&self) -> &dyn Replica {
        &self.replica
    }

    async fn create(&self, schema: &TableSchema) {
        let t = sql::table(&schema.id);
        let create = sql::create_table(schema).expect("supported types");
        exec(
            &self.primary_sql,
            &format!(
                "IF OBJECT_ID(N'{t}') IS NOT NULL DROP TABLE {t}; {create}; ALTER TABLE {t} ENABLE CHANGE_TRACKING;"
            ),
        )
        .await;
        let shadow = sql::table(&schema.id.shadow());
        exec(
            &self.replica_sql,
            &format!(
                "IF OBJECT_ID(N'{t}') IS NOT NULL DROP TABLE {t}; IF OBJECT_ID(N'{shadow}') IS NOT NULL DROP TABLE {shadow};"
            ),
        )
        .await;
        // A record an earlier, failed run left (a pending load under this
        // name would make a rename onto it fail for good).
        exec_with(
            &self.replica_sql,
            "IF OBJECT_ID(N'[ctsync].[sync_versions]') IS NOT NULL \
             DELETE FROM [ctsync].[sync_versions] WHERE [table_name] = @P1",
            vec![ColumnData::String(Some(schema.id.key_name().into()))],
        )
        .await;
    }

    async fn insert(&self, schema: &TableSchema, rows: &[Row]) {
        let cols = schema.written_columns();
        let names = cols
            .iter()
            .map(|c| sql::quote(&c.name))
            .collect::<Vec<_>>()
            .join(", ");
        let t = sql::table(&schema.id);
        for row in rows {
            let values = cols
                .iter()
                .enumerate()
                .map(|(i, c)| sql::typed_param(&c.ty, i + 1))
                .collect::<Vec<_>>()
                .join(", ");
            let mut text = format!("INSERT INTO {t} ({names}) VALUES ({values});");
            if schema.has_identity() {
                text = format!("SET IDENTITY_INSERT {t} ON; {text} SET IDENTITY_INSERT {t} OFF;");
            }
            exec_with(&self.primary_sql, &text, Self::row_values(schema, row)).await;
        }
    }

    async fn update(&self, schema: &TableSchema, row: Row) {
        let key = ctsync_actors::memory::row_key(schema, &row).expect("a key");
        let (text, params) = Self::update_by_key(schema, &row, &key, false);
        exec_with(&self.primary_sql, &text, params).await;
    }

    async fn delete(&self, schema: &TableSchema, key: &RowKey) {
        let text = format!(
            "DELETE FROM {} WHERE {}",
            sql::table(&schema.id),
            Self::key_predicate(schema, 1)
        );
        exec_with(&self.primary_sql, &text, Self::key_values(schema, key)).await;
    }

    async fn update_key(&self, schema: &TableSchema, old: &RowKey, row: Row) {
        let (text, params) = Self::update_by_key(schema, &row, old, true);
        exec_with(&self.primary_sql, &text, params).await;
    }

    async fn truncate(&self, schema: &TableSchema) {
        exec(&self.primary_sql, &sql::truncate(&schema.id)).await;
    }

    /// A one-minute retention, then the manual cleanup procedure (for the
    /// whole database: only that form derives the cleanup point from the
    /// retention) until the table's min valid version passes every change
    /// made so far. A retention period is wall-clock time on a real server;
    /// the wait ends on the event, with a failsafe. The database's own
    /// retention is set back afterwards, failing or not.
    async fn cleanup(&self, schema: &TableSchema) {
        let before = self
            .primary
            .current_version()
            .await
            .expect("current version");
        let original = {
            let rows = Query::new(RETENTION)
                .query(&mut *self.primary_sql.lock().await)
                .await
                .expect("reading the retention")
                .into_first_result()
                .await
                .expect("reading the retention");
            let row = rows
                .first()
                .expect("change tracking is on for the test database");
            format!(
                "{} {}",
                row.try_get::<i32, _>(0).ok().flatten().unwrap_or(2),
                row.try_get::<&str, _>(1).ok().flatten().unwrap_or("DAYS")
            )
        };
        exec(
            &self.primary_sql,
            "ALTER DATABASE CURRENT SET CHANGE_TRACKING (CHANGE_RETENTION = 1 MINUTES)",
        )
        .await;
        let deadline = std::time::Instant::now() + Duration::from_secs(600);
        let passed = loop {
            tokio::time::sleep(Duration::from_secs(10)).await;
            exec(
                &self.primary_sql,
                "EXEC sys.sp_flush_CT_internal_table_on_demand",
            )
            .await;
            let min = self.primary.min_valid_version(&schema.id).await;
            if matches!(min, Ok(Some(m)) if m >= before) {
                break true;
            }
            if std::time::Instant::now() > deadline {
                break false;
            }
        };
        // Units come from the catalog (MINUTES, HOURS, DAYS), never input.
        exec(
            &self.primary_sql,
            &format!("ALTER DATABASE CURRENT SET CHANGE_TRACKING (CHANGE_RETENTION = {original})"),
        )
        .await;
        assert!(passed, "CT cleanup never passed version {before}");
    }

    async fn replica_rows(&self, schema: &TableSchema) -> Vec<Row> {
        self.replica_reader
            .read_page(schema, None, 1_000_000)
            .await
            .expect("reading the replica's rows")
    }

    async fn add_filtered_index(&self, schema: &TableSchema) {
        let t = sql::table(&schema.id);
        let column = sql::quote(&schema.written_columns()[1].name);
        exec(
            &self.replica_sql,
            &format!(
                "CREATE INDEX [ix_contract_filtered] ON {t} ({column}) WHERE {column} IS NOT NULL;"
            ),
        )
        .await;
    }

    async fn add_index_and_grant(&self, schema: &TableSchema) {
        let t = sql::table(&schema.id);
        let column = sql::quote(&schema.written_columns()[1].name);
        exec(
            &self.replica_sql,
            &format!(
                "CREATE INDEX [ix_contract] ON {t} ({column}); \
                 IF DATABASE_PRINCIPAL_ID(N'ctsync_contract_reader') IS NULL CREATE ROLE [ctsync_contract_reader]; \
                 GRANT SELECT ON {t} TO [ctsync_contract_reader]; \
                 DECLARE @pk nvarchar(600) = (SELECT QUOTENAME(SCHEMA_NAME(kc.schema_id)) + N'.' + QUOTENAME(kc.name) \
                 FROM sys.key_constraints AS kc WHERE kc.parent_object_id = OBJECT_ID(N'{name}') AND kc.type = N'PK'); \
                 EXEC sp_rename @pk, N'PK_contract_named_by_a_dba', N'OBJECT';",
                name = sql::object_name_param(&schema.id).replace('\'', "''")
            ),
        )
        .await;
    }

    async fn indexes_and_grants(&self, schema: &TableSchema) -> (Vec<String>, Vec<String>) {
        let name = sql::object_name_param(&schema.id);
        (
            strings(&self.replica_sql, INDEX_NAMES, &name).await,
            strings(&self.replica_sql, GRANTS, &name).await,
        )
    }

    fn primary_sums(&self) -> &dyn Checksums {
        &self.primary
    }
    fn replica_sums(&self) -> &dyn Checksums {
        &self.replica
    }

    /// Another session reads the table with TABLOCK, HOLDLOCK inside a
    /// transaction: its shared table lock stays until the rollback, and a
    /// schema-modification lock (the swap's) waits behind it.
    async fn snapshot_allowed(&self) -> bool {
        strings(
            &self.primary_sql,
            // The helper binds one value: here only a label for the query.
            "SELECT CONVERT(nvarchar(10), snapshot_isolation_state) FROM sys.databases \
             WHERE database_id = DB_ID() AND @P1 = N'current'",
            "current",
        )
        .await
        .first()
        .is_some_and(|state| state == "1")
    }
    async fn lock_replica_table(&self, schema: &TableSchema, hold: Duration) -> bool {
        let mut reader = self.replica_endpoint.connect().await.expect("a reader");
        let take = format!(
            "BEGIN TRANSACTION; SELECT COUNT_BIG(*) FROM {} WITH (TABLOCK, HOLDLOCK);",
            sql::table(&schema.id)
        );
        reader
            .simple_query(take.clone())
            .await
            .unwrap_or_else(|e| panic!("{take}: {e}"))
            .into_results()
            .await
            .unwrap_or_else(|e| panic!("{take}: {e}"));
        tokio::spawn(async move {
            tokio::time::sleep(hold).await;
            if let Ok(stream) = reader.simple_query("ROLLBACK TRANSACTION;").await {
                let _ = stream.into_results().await;
            }
        });
        true
    }

    async fn tamper_replica(&self, schema: &TableSchema, row: Row) {
        let key = ctsync_actors::memory::row_key(schema, &row).expect("a key");
        let (text, params) = Self::update_by_key(schema, &row, &key, false);
        exec_with(&self.replica_sql, &text, params).await;
    }
}

/// Cases run one at a time against a real server: CT cleanup and the
/// retention are the whole database's.
static SERIAL: Mutex<()> = Mutex::const_new(());

/// Held by every case for its whole run.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}
