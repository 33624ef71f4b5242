//! The primary port on SQL Server: catalog reads, CT versions, keyset pages
//! and change sets (`change_set`). A change set is copied in a SNAPSHOT
//! transaction when the database allows snapshot isolation (see
//! docs/consistency.md). Also the DDL queue (`ddl_queue`, Service Broker on
//! the primary database) and the invalid-UTF-16 finder (`utf16`).

pub(crate) mod change_set;
pub(crate) mod ddl_queue;
mod utf16;

use std::sync::atomic::{AtomicU8, Ordering};

use async_trait::async_trait;
use ctsync_actors::model::{
    ColumnDef, PrimaryIdentity, Row, RowKey, SyncVersion, TableId, TableSchema,
};
use ctsync_actors::modules::ModuleDef;
use ctsync_actors::ports::{ChangeSet, Primary, Scouted};
use ctsync_actors::{Error, Result};
use tiberius::ColumnData;

use self::change_set::{ChangeSource, MssqlChangeSet};
use super::catalog::{self, big, flag, int, text};
use super::convert::{decode_row as decode, key_params};
use super::pool::{query_rows, query_rows_within, Pool, META_TIMEOUT};
use super::sql;
use super::MssqlError;

pub struct MssqlPrimary {
    pool: Pool,
    /// Whether ALLOW_SNAPSHOT_ISOLATION is on (`SNAPSHOT_*`); refreshed by
    /// every `identity()` read (once per discovery), which reads the same
    /// sys.databases row.
    snapshot: AtomicU8,
    /// How change sets are copied (`CTSYNC_CHANGE_ISOLATION`).
    isolation: ChangeIsolation,
    /// Each table's columns stamp from its last catalog read: a change read
    /// checks it in the same request (`sql::columns_unchanged`).
    stamps: std::sync::Mutex<std::collections::HashMap<TableId, i32>>,
    /// Sessions a change set may keep while its pages are read: one fewer
    /// than the pool's connections, so discovery, catalog reads and
    /// full-load pages always find one (the daemon refuses fewer than 2
    /// connections; a pool of one, in tests, serves everything in turn).
    pub(super) change_sessions: tokio::sync::Semaphore,
    /// Tables the scout could not check, said once each until it can again.
    scout_failed: std::sync::Mutex<std::collections::HashSet<TableId>>,
    /// How long a change set's copy may take (`CTSYNC_CHANGE_COPY_TIMEOUT_SECS`).
    pub(super) copy_timeout: std::time::Duration,
}

/// How a change set's keys are copied on the primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeIsolation {
    /// In a SNAPSHOT transaction (the default): CT cleanup cannot remove
    /// changes under the copy, and the min valid version read inside it
    /// holds for it (Microsoft's "Work with change tracking" pattern).
    Snapshot,
    /// Under READ COMMITTED, when the database cannot allow snapshot
    /// isolation: a cleanup run can delete changes of a table near its
    /// retention limit before the min valid version shows it, unseen.
    ReadCommitted,
}

const SNAPSHOT_UNKNOWN: u8 = 0;
const SNAPSHOT_OFF: u8 = 1;
const SNAPSHOT_ON: u8 = 2;
const SNAPSHOT_SWITCHING_ON: u8 = 3;

/// Why no change set is copied while snapshot isolation is being switched
/// on: the ALTER DATABASE waits for the transactions open when it ran.
const SNAPSHOT_SWITCHING: &str =
    "snapshot isolation is being switched on in the primary database: SQL Server waits for the \
     transactions that were open when ALTER DATABASE … SET ALLOW_SNAPSHOT_ISOLATION ON ran to \
     finish (sys.databases.snapshot_isolation_state = 3); the tables continue once it is on";

/// Why no change set is copied while snapshot isolation is off.
const SNAPSHOT_REQUIRED: &str =
    "snapshot isolation is off on the primary database, and ctsync copies change sets in a \
     SNAPSHOT transaction so that change tracking cleanup cannot remove changes under the copy: \
     run ALTER DATABASE <db> SET ALLOW_SNAPSHOT_ISOLATION ON (`ctsync doctor` prints it for the \
     database), and the tables continue at their next cycle; or set \
     CTSYNC_CHANGE_ISOLATION=read-committed to copy without it, accepting the exposure \
     docs/consistency.md describes";

/// The refusal to copy without SNAPSHOT: definite until the database
/// allows it (or the operator accepts READ COMMITTED).
pub(crate) fn snapshot_required() -> Error {
    Error::Refused {
        side: ctsync_actors::error::Side::Primary,
        message: SNAPSHOT_REQUIRED.into(),
    }
}

fn err(e: MssqlError) -> Error {
    Error::Primary(e.to_string())
}

impl MssqlPrimary {
    pub fn new(pool: Pool) -> Self {
        Self {
            change_sessions: tokio::sync::Semaphore::new(pool.size().saturating_sub(1).max(1)),
            pool,
            snapshot: AtomicU8::new(SNAPSHOT_UNKNOWN),
            isolation: ChangeIsolation::Snapshot,
            stamps: Default::default(),
            scout_failed: Default::default(),
            copy_timeout: super::conn::COMMAND_TIMEOUT,
        }
    }

    /// A change set's copy may take `limit` before it is abandoned (the
    /// pool's endpoint must allow requests that long; see
    /// `Endpoint::with_command_timeout`).
    pub fn with_copy_timeout(mut self, limit: std::time::Duration) -> Self {
        self.copy_timeout = limit;
        self
    }

    /// How change sets are copied; `Snapshot` unless the operator accepted
    /// the READ COMMITTED copy's exposure.
    pub fn with_change_isolation(mut self, isolation: ChangeIsolation) -> Self {
        self.isolation = isolation;
        self
    }

    /// Whether a change set may be copied, and how: under SNAPSHOT unless
    /// the operator chose READ COMMITTED; refused, naming the fix, when the
    /// last identity read found snapshot isolation off. Until one was read
    /// the copy asks for SNAPSHOT, which the server refuses (Msg 3952) when
    /// the database does not allow it.
    fn copy_isolation(&self) -> Result<bool> {
        match self.isolation {
            ChangeIsolation::ReadCommitted => Ok(false),
            ChangeIsolation::Snapshot => match self.snapshot.load(Ordering::Relaxed) {
                SNAPSHOT_OFF => Err(snapshot_required()),
                SNAPSHOT_SWITCHING_ON => Err(Error::Refused {
                    side: ctsync_actors::error::Side::Primary,
                    message: SNAPSHOT_SWITCHING.into(),
                }),
                _ => Ok(true),
            },
        }
    }

    /// `SELECT 1` (readiness).
    pub async fn ping(&self) -> std::result::Result<(), MssqlError> {
        self.pool.ping("primary").await
    }

    async fn rows(
        &self,
        sql: &str,
        params: Vec<ColumnData<'static>>,
        what: &str,
    ) -> Result<Vec<tiberius::Row>> {
        let mut lease = self.pool.lease().await.map_err(err)?;
        query_rows_within(&mut lease, META_TIMEOUT, sql, params, || what.to_string())
            .await
            .map_err(err)
    }

    async fn scalar_version(
        &self,
        sql: &str,
        params: Vec<ColumnData<'static>>,
        what: &str,
    ) -> Result<Option<i64>> {
        let rows = self.rows(sql, params, what).await?;
        match rows.first() {
            Some(row) => big(row, 0).map_err(err),
            None => Ok(None),
        }
    }

    pub(super) fn pool(&self) -> &Pool {
        &self.pool
    }

    fn keys(schema: &TableSchema) -> Result<Vec<String>> {
        schema
            .key_columns()
            .ok_or_else(|| Error::NoKey(schema.id.clone()))
    }

    fn key_defs(schema: &TableSchema) -> Result<Vec<&ColumnDef>> {
        schema
            .key_column_defs()
            .ok_or_else(|| Error::NoKey(schema.id.clone()))
    }
}

#[async_trait]
impl Primary for MssqlPrimary {
    async fn identity(&self) -> Result<PrimaryIdentity> {
        let rows = self
            .rows(
                sql::PRIMARY_IDENTITY,
                vec![],
                "reading the primary's identity",
            )
            .await?;
        let row = rows.first().ok_or_else(|| {
            Error::Primary("sys.databases has no row for the current database".into())
        })?;
        let broker_guid = text(row, "broker_guid").map_err(err)?.unwrap_or_default();
        let create_date = text(row, "create_date").map_err(err)?.unwrap_or_default();
        // sys.databases.snapshot_isolation_state: 1 = ON; 0 = OFF, 2 = in
        // transition to OFF, 3 = in transition to ON (a SNAPSHOT
        // transaction cannot start until it is ON, Msg 3956).
        let snapshot = match int(row, "snapshot_state").map_err(err)? {
            Some(1) => SNAPSHOT_ON,
            Some(3) => SNAPSHOT_SWITCHING_ON,
            _ => SNAPSHOT_OFF,
        };
        self.snapshot.store(snapshot, Ordering::Relaxed);
        Ok(PrimaryIdentity {
            broker_guid,
            create_date,
        })
    }

    async fn tracked_tables(&self) -> Result<Vec<TableId>> {
        let rows = self
            .rows(sql::TRACKED_TABLES, vec![], "listing change-tracked tables")
            .await?;
        rows.iter()
            .map(|r| {
                let schema = text(r, "schema_name").map_err(err)?.unwrap_or_default();
                let name = text(r, "table_name").map_err(err)?.unwrap_or_default();
                Ok(TableId::new(schema, name))
            })
            .collect()
    }

    async fn table_schema(&self, table: &TableId) -> Result<TableSchema> {
        let mut lease = self.pool.lease().await.map_err(err)?;
        let (schema, stamp) = catalog::stamped_table_schema(&mut lease, table)
            .await
            .map_err(err)?
            .ok_or_else(|| Error::NotTracked(table.clone()))?;
        self.stamps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(table.clone(), stamp);
        Ok(schema)
    }

    async fn modules(&self) -> Result<Vec<ModuleDef>> {
        let mut lease = self.pool.lease().await.map_err(err)?;
        catalog::modules(&mut lease, "primary").await.map_err(err)
    }

    async fn current_version(&self) -> Result<SyncVersion> {
        self.scalar_version(sql::CURRENT_VERSION, vec![], "reading CHANGE_TRACKING_CURRENT_VERSION()")
            .await?
            .ok_or_else(|| {
                Error::Primary(
                    "CHANGE_TRACKING_CURRENT_VERSION() is NULL: change tracking is not enabled on the primary database \
                     (ALTER DATABASE … SET CHANGE_TRACKING = ON)"
                        .into(),
                )
            })
    }

    async fn min_valid_version(&self, table: &TableId) -> Result<Option<SyncVersion>> {
        let params = vec![ColumnData::String(Some(
            sql::object_name_param(table).into(),
        ))];
        self.scalar_version(
            sql::MIN_VALID_VERSION,
            params,
            &format!("reading the min valid version of {table}"),
        )
        .await
    }

    async fn row_count(&self, table: &TableId) -> Result<u64> {
        let params = vec![ColumnData::String(Some(
            sql::object_name_param(table).into(),
        ))];
        let n = self
            .scalar_version(
                sql::ROW_COUNT,
                params,
                &format!("counting the rows of {table}"),
            )
            .await?;
        Ok(n.unwrap_or(0).max(0) as u64)
    }

    async fn change_retention(&self) -> Result<Option<std::time::Duration>> {
        let rows = self
            .rows(
                sql::CHANGE_RETENTION,
                vec![],
                "reading the change tracking retention",
            )
            .await?;
        let row = rows.first().ok_or_else(|| {
            Error::Primary("change tracking is not enabled on the primary database (sys.change_tracking_databases has no row)".into())
        })?;
        if !flag(row, "is_auto_cleanup_on").map_err(err)? {
            return Ok(None);
        }
        let period = int(row, "retention_period")
            .map_err(err)?
            .unwrap_or(0)
            .max(0) as u64;
        let unit = match int(row, "retention_units").map_err(err)? {
            Some(1) => 60,
            Some(2) => 3_600,
            _ => 86_400,
        };
        Ok(Some(std::time::Duration::from_secs(period * unit)))
    }

    async fn read_page(
        &self,
        schema: &TableSchema,
        after: Option<&RowKey>,
        limit: usize,
    ) -> Result<Vec<Row>> {
        let keys = Self::keys(schema)?;
        let key_defs = Self::key_defs(schema)?;
        let text = sql::read_page(schema, &keys, after.is_some());
        let mut params = vec![ColumnData::I64(Some(limit as i64))];
        if let Some(k) = after {
            params.extend(key_params(k, &key_defs));
        }
        // A data page keeps the long command timeout (LOB-heavy pages).
        let mut lease = self.pool.lease().await.map_err(err)?;
        let rows = match query_rows(&mut lease, &text, params, || {
            format!("reading a page of {}", schema.id)
        })
        .await
        {
            Ok(rows) => rows,
            Err(e) => {
                drop(lease);
                return Err(self.explain(schema, e).await);
            }
        };
        drop(lease);
        let cols = schema.written_columns();
        rows.into_iter()
            .map(|r| decode(r.into_iter(), &cols).map_err(err))
            .collect()
    }

    /// One query per chunk of tables. A chunk the server refuses (a table
    /// dropped, or its change tracking disabled, since discovery) is split
    /// and asked again, so one such table costs a few more queries and
    /// never the other tables' answers; that table is answered "changed"
    /// (its cycle reads its changes itself and meets its own error), said
    /// at WARN once and counted. A lost connection fails the scout.
    async fn scout(&self, tables: &[(TableId, SyncVersion)]) -> Result<Vec<Scouted>> {
        let mut found: Vec<Option<Scouted>> = vec![None; tables.len()];
        let mut work: Vec<std::ops::Range<usize>> = (0..tables.len())
            .step_by(sql::SCOUT_CHUNK)
            .map(|start| start..(start + sql::SCOUT_CHUNK).min(tables.len()))
            .collect();
        while let Some(range) = work.pop() {
            match self.scout_chunk(&tables[range.clone()]).await {
                Ok(answers) => {
                    // One lock per answered chunk, and none while no table
                    // has failed (the common case, every poll).
                    let mut failed = self.scout_failed.lock().unwrap_or_else(|e| e.into_inner());
                    for (i, answer) in range.zip(answers) {
                        if !failed.is_empty() {
                            failed.remove(&tables[i].0);
                        }
                        found[i] = Some(answer);
                    }
                }
                Err(e) if !refused_by_the_server(&e) => return Err(err(e)),
                Err(_) if range.len() > 1 => {
                    let mid = range.start + range.len() / 2;
                    work.push(range.start..mid);
                    work.push(mid..range.end);
                }
                Err(e) => {
                    let table = &tables[range.start].0;
                    metrics::counter!(ctsync_actors::telemetry::SCOUT_FAILURES, "table" => table.to_string())
                        .increment(1);
                    let first = self
                        .scout_failed
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(table.clone());
                    if first {
                        tracing::warn!(table = %table, error = %e, "the scout cannot check this table (dropped, or change tracking disabled?); it reads its own changes each cycle until the scout can again");
                    }
                    found[range.start] = Some(Scouted {
                        changed: true,
                        min_valid: None,
                        current: 0,
                    });
                }
            }
        }
        found
            .into_iter()
            .zip(tables)
            .map(|(slot, (t, _))| {
                slot.ok_or_else(|| Error::Primary(format!("the scout gave no answer for {t}")))
            })
            .collect()
    }

    async fn open_changes<'a>(
        &'a self,
        schema: &TableSchema,
        since: SyncVersion,
        after: Option<&RowKey>,
    ) -> Result<Box<dyn ChangeSet + 'a>> {
        let snapshot = self.copy_isolation()?;
        Ok(Box::new(
            MssqlChangeSet::open(self, schema, since, after, snapshot).await?,
        ))
    }
}

/// An error of the request itself (the server answered with an error),
/// not of the connection: asking again, for fewer tables, may succeed.
fn refused_by_the_server(e: &MssqlError) -> bool {
    matches!(
        e,
        MssqlError::Sql { source, .. } if !matches!(source, tiberius::error::Error::Io { .. })
    )
}

impl MssqlPrimary {
    /// The scout's query for one chunk of tables (at most `SCOUT_CHUNK`).
    async fn scout_chunk(
        &self,
        chunk: &[(TableId, SyncVersion)],
    ) -> std::result::Result<Vec<Scouted>, MssqlError> {
        let ids: Vec<TableId> = chunk.iter().map(|(t, _)| t.clone()).collect();
        let params = chunk
            .iter()
            .flat_map(|(t, v)| {
                [
                    ColumnData::String(Some(sql::object_name_param(t).into())),
                    ColumnData::I64(Some(*v)),
                ]
            })
            .collect();
        let what = format!("looking for changes in {} tables", ids.len());
        let mut lease = self.pool.lease().await?;
        let rows = query_rows_within(&mut lease, META_TIMEOUT, &sql::scout(&ids), params, || {
            what.clone()
        })
        .await?;
        let bad = |m: String| MssqlError::Unexpected(m);
        let mut found = vec![None; chunk.len()];
        for row in &rows {
            let i = int(row, "i")?.unwrap_or(-1);
            let slot = usize::try_from(i).ok().and_then(|i| found.get_mut(i));
            let Some(slot) = slot else {
                return Err(bad(format!("the scout answered for table #{i}")));
            };
            *slot = Some(Scouted {
                changed: int(row, "changed")? == Some(1),
                min_valid: big(row, 2)?,
                current: big(row, 3)?
                    .ok_or_else(|| bad("CHANGE_TRACKING_CURRENT_VERSION() is NULL".into()))?,
            });
        }
        found
            .into_iter()
            .zip(chunk)
            .map(|(slot, (t, _))| {
                slot.ok_or_else(|| bad(format!("the scout gave no answer for {t}")))
            })
            .collect()
    }

    /// Prefixes a change read with the check that the table's columns are
    /// still the ones its cached schema was read with (when a stamp is
    /// known), appending that check's parameters.
    pub(super) fn check_columns(
        &self,
        schema: &TableSchema,
        text: &mut String,
        params: &mut Vec<ColumnData<'static>>,
    ) {
        let stamp = self
            .stamps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&schema.id)
            .copied();
        if let Some(stamp) = stamp {
            *text = format!("{}{text}", sql::columns_unchanged(params.len() + 1));
            params.push(ColumnData::String(Some(
                sql::object_name_param(&schema.id).into(),
            )));
            params.push(ColumnData::I32(Some(stamp)));
        }
    }

    /// A failed page read as the table's error. tiberius refuses an
    /// nvarchar value that is not valid UTF-16 (an unpaired surrogate)
    /// without saying where: ctsync then finds the column and key itself,
    /// so the operator can fix that value (the table retries and continues).
    pub(super) async fn explain(&self, schema: &TableSchema, e: MssqlError) -> Error {
        if let MssqlError::Sql {
            source: tiberius::error::Error::Server(token),
            ..
        } = &e
        {
            if token.code() == sql::COLUMNS_CHANGED_ERROR {
                return Error::ColumnsChanged(schema.id.clone());
            }
        }
        if !matches!(
            &e,
            MssqlError::Sql {
                source: tiberius::error::Error::Utf16,
                ..
            }
        ) {
            return err(e);
        }
        let place = match utf16::locate_invalid(&self.pool, schema).await {
            Ok(Some(place)) => place,
            Ok(None) | Err(_) => {
                "a text value (the row could not be located; a key column may hold it)".into()
            }
        };
        Error::Primary(format!(
            "table {}: {place} is not valid UTF-16 (an unpaired surrogate), which ctsync cannot \
             read without changing it; fix that value on the primary and the table continues",
            schema.id
        ))
    }
}

super::checksums::impl_checksums!(MssqlPrimary, Error::Primary);

#[async_trait]
impl ChangeSource for MssqlPrimary {
    fn pool(&self) -> &Pool {
        &self.pool
    }

    fn change_sessions(&self) -> &tokio::sync::Semaphore {
        &self.change_sessions
    }

    fn copy_timeout(&self) -> std::time::Duration {
        self.copy_timeout
    }

    fn check_columns(
        &self,
        schema: &TableSchema,
        text: &mut String,
        params: &mut Vec<ColumnData<'static>>,
    ) {
        MssqlPrimary::check_columns(self, schema, text, params)
    }

    async fn explain(&self, schema: &TableSchema, e: MssqlError) -> Error {
        MssqlPrimary::explain(self, schema, e).await
    }
}
