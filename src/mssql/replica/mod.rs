//! The replica port on SQL Server. Every write is one transaction with
//! `XACT_ABORT ON`; on any error the transaction is rolled back and the
//! connection discarded, and so is a connection whose lease is dropped
//! with its transaction open (`pool::begin_transaction`). A page's rows go in by bulk copy or one INSERT …
//! OPENJSON (`write_plan`, `write_path`, `bulk`, `json_rows`), identity
//! values kept; full loads are `load`, the version record `version_record`,
//! ctsync's own objects `migrations`.

pub mod bulk;
pub mod json_rows;
mod load;
mod migrations;
mod version_record;
mod write_path;
pub mod write_plan;

use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use ctsync_actors::fence::Claim;
use ctsync_actors::model::{ChangeBatch, ColumnOp, Row, SyncVersion, TableId, TableSchema};
use ctsync_actors::modules::{ModuleDef, ModuleOp};
use ctsync_actors::ports::{
    Advance, InboxMessage, InboxOutcome, LoadMode, LoadStart, PendingLoad, QueueMessage, Replica,
    ReplicaRecord,
};
use ctsync_actors::write_path::WritePaths;
use ctsync_actors::{Error, Result};
use tiberius::ColumnData;

use self::migrations::migrate;
use self::version_record::name_param;
use self::write_plan::{change_plan, StepFailed, WritePlan};
use super::catalog;
use super::conn::Lease;
use super::pool::{batch, begin_transaction, end_transaction, execute, query_rows, Pool};
use super::sql;
use super::MssqlError;

pub struct MssqlReplica {
    pub(super) pool: Pool,
    /// Bulk copy or INSERT, per table.
    pub(super) paths: WritePaths,
    /// The `[ctsync]` migrations ran in this process.
    migrated: AtomicBool,
}

/// A lock wait that gave up ([`lock_waited`]) is `Error::Blocked`: the
/// DDL inbox tries it again without counting it; every other error is
/// `Error::Replica`.
pub(super) fn err(e: MssqlError) -> Error {
    match e {
        MssqlError::LockWait(message) => Error::Blocked {
            side: ctsync_actors::error::Side::Replica,
            message,
        },
        e => Error::Replica(e.to_string()),
    }
}

/// Bounds the lock waits of a schema change of a table (`change`: "the
/// swap of [dbo].[T]") on `lease`, by a batch inside its fenced
/// transaction before the change's first statement that takes a lock;
/// [`unbound_lock_waits`] ends it before the commit, and a failed change
/// discards the session. See `sql::SCHEMA_LOCK_TIMEOUT_MS`.
pub(super) async fn bound_lock_waits(
    lease: &mut Lease<'_>,
    change: &str,
) -> std::result::Result<(), MssqlError> {
    batch(lease, &sql::schema_lock_timeout(), || {
        format!("bounding the lock waits of {change}")
    })
    .await
}

/// Puts the session's lock waits back to unbounded after a schema change
/// (before the pooled session serves anything else).
pub(super) async fn unbound_lock_waits(
    lease: &mut Lease<'_>,
    change: &str,
) -> std::result::Result<(), MssqlError> {
    batch(lease, sql::UNBOUNDED_LOCK_WAIT, || {
        format!("resetting the lock waits after {change}")
    })
    .await
}

/// A schema change that waited past its lock timeout (Msg 1222), said as
/// what it is and what happens next (`next`), as
/// [`MssqlError::LockWait`]. Msg 1222 alone cancels only the statement;
/// under `XACT_ABORT ON` the whole transaction rolls back on the server.
/// `finish` sends no ROLLBACK after a failed request (the lease is no
/// longer open): it discards the connection, and closing it rolls back
/// whatever was still open. Nothing of the change stays, and the session
/// with its `LOCK_TIMEOUT` never returns to the pool. Any other error as
/// it is.
/// (<https://learn.microsoft.com/en-us/previous-versions/sql/sql-server-2005/ms177413(v=sql.90)>,
/// <https://learn.microsoft.com/en-us/sql/t-sql/statements/set-xact-abort-transact-sql>)
pub(super) fn lock_waited(change: &str, next: &str, e: MssqlError) -> MssqlError {
    match &e {
        MssqlError::Sql {
            source: tiberius::error::Error::Server(token),
            ..
        } if token.code() == sql::LOCK_TIMEOUT_ERROR => MssqlError::LockWait(format!(
            "{change} waited more than {} s for the table's schema lock (a long-running \
             reader of the replica table, or an open transaction on it?); nothing changed, \
             {next}",
            sql::SCHEMA_LOCK_TIMEOUT_MS / 1_000
        )),
        _ => e,
    }
}

impl MssqlReplica {
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            paths: WritePaths::new(true),
            migrated: AtomicBool::new(false),
        }
    }

    /// `false`: every table's rows are written with INSERT, never bulk copy
    /// (`CTSYNC_BULK_LOAD=off`).
    pub fn with_bulk_load(mut self, enabled: bool) -> Self {
        self.paths = WritePaths::new(enabled);
        self
    }

    /// `SELECT 1` (readiness).
    pub async fn ping(&self) -> std::result::Result<(), MssqlError> {
        self.pool.ping("replica").await
    }

    pub(super) async fn ensure_schema(
        lease: &mut Lease<'_>,
        schema: &str,
    ) -> std::result::Result<(), MssqlError> {
        let rows = query_rows(
            lease,
            sql::SCHEMA_ID,
            vec![ColumnData::String(Some(schema.to_string().into()))],
            || format!("looking up schema {schema} on the replica"),
        )
        .await?;
        let exists = rows
            .first()
            .and_then(|r| r.try_get::<i32, _>(0).ok().flatten())
            .is_some();
        if !exists {
            batch(lease, &sql::create_schema(schema), || {
                format!("creating schema {schema} on the replica")
            })
            .await?;
        }
        Ok(())
    }

    /// Runs the `[ctsync]` migrations once per process, before first use.
    pub(super) async fn ensure_migrated(
        &self,
        lease: &mut Lease<'_>,
    ) -> std::result::Result<(), MssqlError> {
        if self.migrated.load(Ordering::Relaxed) {
            return Ok(());
        }
        migrate(lease).await?;
        self.migrated.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Leases a connection and opens a transaction on it.
    pub(super) async fn begin(&self, what: &str) -> Result<Lease<'_>> {
        let mut lease = self.pool.lease().await.map_err(err)?;
        self.ensure_migrated(&mut lease).await.map_err(err)?;
        begin_transaction(&mut lease, sql::BEGIN, || what.to_string())
            .await
            .map_err(err)?;
        Ok(lease)
    }

    /// Leases a connection, opens a transaction and checks `claim` against
    /// `[ctsync].[fence]` as its first statement (see `sql::CHECK_FENCE`):
    /// a write of an owner that no longer owns the table ends here, rolled
    /// back, with [`Error::Fenced`].
    pub(super) async fn begin_fenced(
        &self,
        what: &str,
        table: &TableId,
        claim: &Claim,
    ) -> Result<Lease<'_>> {
        let mut lease = self.begin(what).await?;
        let params = vec![
            name_param(table),
            ColumnData::String(Some(claim.owner.clone().into())),
            ColumnData::I64(Some(i64::try_from(claim.token).unwrap_or(i64::MAX))),
        ];
        let checked = execute(&mut lease, sql::CHECK_FENCE, params, || {
            format!("{what}: checking the fence")
        })
        .await;
        match checked {
            Ok(1) => return Ok(lease),
            Ok(_) => {}
            Err(e) => return Err(err(e)),
        }
        let holder = query_rows(
            &mut lease,
            sql::SELECT_FENCE,
            vec![name_param(table)],
            || format!("{what}: reading the fence"),
        )
        .await
        .ok()
        .and_then(|rows| {
            rows.first().map(|r| {
                let owner = r.try_get::<&str, _>(0).ok().flatten().unwrap_or("?");
                let token = r.try_get::<i64, _>(1).ok().flatten().unwrap_or(0);
                format!("{owner} {token}")
            })
        });
        let _ = end_transaction(&mut lease, sql::ROLLBACK, || what.to_string()).await;
        Err(ctsync_actors::fence::refused(
            table,
            claim,
            ctsync_actors::fence::CheckedBy::Replica,
            holder.as_deref(),
        ))
    }

    /// Runs `plan` in one fenced transaction of `table`. A failed bulk load
    /// switches the table to INSERT for the retry (see `WritePaths`).
    pub(super) async fn run_fenced(
        &self,
        what: &str,
        table: &TableId,
        claim: &Claim,
        plan: WritePlan<'_>,
    ) -> Result<()> {
        let mut lease = self.begin_fenced(what, table, claim).await?;
        let work = match plan.run(&mut lease).await {
            Ok(()) => Ok(()),
            Err(StepFailed { bulk, error }) => {
                if bulk {
                    write_path::demote(&self.paths, table, &error);
                }
                Err(error)
            }
        };
        let done = Self::finish(lease, work, what).await;
        if done.is_ok() {
            // Lost connections before a committed page no longer count.
            self.paths.committed(table);
        }
        done
    }

    /// Commits if `work` succeeded; otherwise rolls back and discards the
    /// connection.
    pub(super) async fn finish(
        mut lease: Lease<'_>,
        work: std::result::Result<(), MssqlError>,
        what: &str,
    ) -> Result<()> {
        let ctx = || what.to_string();
        let result = match work {
            Ok(()) => end_transaction(&mut lease, sql::COMMIT, ctx).await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            // Best effort: a dropped connection rolls back on the server too.
            if lease.is_open() {
                let _ = end_transaction(&mut lease, sql::ROLLBACK, ctx).await;
            }
            lease.discard();
            return Err(err(e));
        }
        Ok(())
    }
}

#[async_trait]
impl Replica for MssqlReplica {
    async fn begin_full_load(
        &self,
        schema: &TableSchema,
        start: &LoadStart,
        claim: &Claim,
    ) -> Result<()> {
        self.begin_load(schema, start, claim).await
    }

    async fn insert_rows(
        &self,
        schema: &TableSchema,
        rows: &[Row],
        load: &PendingLoad,
        claim: &Claim,
    ) -> Result<()> {
        self.insert_page(schema, rows, load, claim).await
    }

    async fn apply_changes(
        &self,
        schema: &TableSchema,
        change: &ChangeBatch,
        claim: &Claim,
    ) -> Result<()> {
        let what = format!(
            "applying {} changed keys to {}",
            change.keys.len(),
            schema.id
        );
        let path = write_path::choose(&self.paths, schema, false);
        let plan = change_plan(schema, change, path).map_err(err)?;
        self.run_fenced(&what, &schema.id, claim, plan).await
    }

    async fn finish_full_load(
        &self,
        schema: &TableSchema,
        version: SyncVersion,
        mode: LoadMode,
        claim: &Claim,
    ) -> Result<()> {
        self.finish_load(schema, version, mode, claim).await
    }

    async fn cancel_load(
        &self,
        table: &TableId,
        version: SyncVersion,
        claim: &Claim,
    ) -> Result<()> {
        self.cancel(table, version, claim).await
    }

    async fn claim(&self, table: &TableId, owner: &str) -> Result<u64> {
        let mut lease = self.pool.lease().await.map_err(err)?;
        self.ensure_migrated(&mut lease).await.map_err(err)?;
        let params = vec![
            name_param(table),
            ColumnData::String(Some(owner.to_string().into())),
        ];
        let rows = query_rows(&mut lease, sql::CLAIM_TABLE, params, || {
            format!("claiming {table} in [ctsync].[fence]")
        })
        .await
        .map_err(err)?;
        rows.first()
            .and_then(|r| r.try_get::<i64, _>(0).ok().flatten())
            .and_then(|t| u64::try_from(t).ok())
            .ok_or_else(|| Error::Replica(format!("claiming {table}: no token came back")))
    }

    async fn advance_versions(&self, advances: &[Advance]) -> Result<Vec<TableId>> {
        if advances.is_empty() {
            return Ok(Vec::new());
        }
        let document: Vec<serde_json::Value> = advances
            .iter()
            .map(|a| {
                serde_json::json!({
                    "t": a.table.key_name(),
                    "owner": a.claim.owner,
                    "token": a.claim.token,
                    "from": a.from,
                    "to": a.to,
                })
            })
            .collect();
        let json = serde_json::Value::Array(document).to_string();
        let what = || format!("moving the versions of {} idle tables", advances.len());
        let mut lease = self.pool.lease().await.map_err(err)?;
        self.ensure_migrated(&mut lease).await.map_err(err)?;
        let rows = query_rows(
            &mut lease,
            sql::ADVANCE_VERSIONS,
            vec![json_rows::stable_json(json)],
            what,
        )
        .await
        .map_err(err)?;
        let moved: Vec<&str> = rows
            .iter()
            .filter_map(|r| r.try_get::<&str, _>(0).ok().flatten())
            .collect();
        Ok(advances
            .iter()
            .filter(|a| moved.contains(&a.table.key_name().as_str()))
            .map(|a| a.table.clone())
            .collect())
    }

    async fn swap_blockers(&self, table: &TableId) -> Result<Vec<String>> {
        self.blockers(table).await
    }

    async fn schema_bound_dependents(&self, table: &TableId) -> Result<Vec<ModuleOp>> {
        self.schema_bound(table).await
    }

    async fn record(&self, table: &TableId) -> Result<ReplicaRecord> {
        self.read_record(table).await
    }

    async fn table_schema(&self, table: &TableId) -> Result<Option<TableSchema>> {
        let mut lease = self.pool.lease().await.map_err(err)?;
        catalog::table_schema(&mut lease, table).await.map_err(err)
    }

    async fn alter_columns(&self, table: &TableId, ops: &[ColumnOp], claim: &Claim) -> Result<()> {
        let what = format!("changing the columns of {table} on the replica");
        let mut statements = Vec::with_capacity(ops.len());
        for op in ops {
            let stmt = match op {
                ColumnOp::Add(c) => sql::add_column(table, c),
                ColumnOp::Drop(name) => Some(sql::drop_column(table, name)),
                ColumnOp::Alter(c) => sql::alter_column(table, c),
            };
            statements.push(stmt.ok_or_else(|| {
                Error::Replica(format!("{table}: a changed column has an unsupported type"))
            })?);
        }
        let mut lease = self.begin_fenced(&what, table, claim).await?;
        let work = async {
            for stmt in &statements {
                batch(&mut lease, stmt, || format!("{what}: {stmt}")).await?;
            }
            Ok(())
        }
        .await;
        Self::finish(lease, work, &what).await
    }

    async fn rename_column(
        &self,
        table: &TableId,
        from: &str,
        to: &str,
        claim: &Claim,
    ) -> Result<()> {
        let what = format!("renaming {table}.{from} to {to} on the replica");
        let params = vec![
            ColumnData::String(Some(sql::column_object_name(table, from).into())),
            ColumnData::String(Some(to.to_string().into())),
        ];
        let mut lease = self.begin_fenced(&what, table, claim).await?;
        let work = execute(&mut lease, sql::RENAME_COLUMN, params, || what.clone())
            .await
            .map(|_| ());
        Self::finish(lease, work, &what).await
    }

    /// `sp_rename` of the table, its shadow and its record in one fenced
    /// transaction, its lock waits bounded like the swap's: behind a long
    /// reader it gives up whole (Msg 1222) and the DDL event is applied
    /// again from the inbox.
    async fn rename_table(&self, from: &TableId, to: &TableId, claim: &Claim) -> Result<()> {
        let what = format!("renaming {from} to {to} on the replica");
        let change = format!("the rename of {from} to {to}");
        let values = sql::table_rename(from, to);
        let texts = |values: &[String]| -> Vec<ColumnData<'static>> {
            values
                .iter()
                .map(|v| ColumnData::String(Some(v.clone().into())))
                .collect()
        };
        let mut lease = self.begin_fenced(&what, from, claim).await?;
        let work = async {
            bound_lock_waits(&mut lease, &change).await?;
            execute(
                &mut lease,
                sql::RENAME_OBJECT,
                texts(&values.object),
                || what.clone(),
            )
            .await?;
            // The shadow and the record move with the table: a shadow load
            // under way resumes from its cursor under the new name.
            execute(
                &mut lease,
                &sql::move_shadow(to),
                texts(&values.shadow),
                || format!("{what}: moving its shadow table"),
            )
            .await?;
            execute(
                &mut lease,
                sql::RENAME_RECORD,
                texts(&values.record),
                || what.clone(),
            )
            .await?;
            unbound_lock_waits(&mut lease, &change).await
        }
        .await
        .map_err(|e| lock_waited(&change, "the rename is tried again from the DDL inbox", e));
        Self::finish(lease, work, &what).await
    }

    async fn inbox_add(&self, messages: &[QueueMessage]) -> Result<()> {
        let what = format!(
            "recording {} DDL messages in [ctsync].[ddl_inbox]",
            messages.len()
        );
        let mut lease = self.begin(&what).await?;
        let work = async {
            for m in messages {
                let params = vec![
                    ColumnData::String(Some(m.id.clone().into())),
                    ColumnData::String(Some(m.message_type.clone().into())),
                    ColumnData::String(m.body.clone().map(Into::into)),
                ];
                execute(&mut lease, sql::INBOX_ADD, params, || what.clone()).await?;
            }
            Ok(())
        }
        .await;
        Self::finish(lease, work, &what).await
    }

    async fn inbox_pending(&self) -> Result<Vec<InboxMessage>> {
        let mut lease = self.pool.lease().await.map_err(err)?;
        self.ensure_migrated(&mut lease).await.map_err(err)?;
        let rows = query_rows(&mut lease, sql::INBOX_PENDING, vec![], || {
            "reading [ctsync].[ddl_inbox]".into()
        })
        .await
        .map_err(err)?;
        rows.iter()
            .map(|r| {
                let text = |i: usize| r.try_get::<&str, _>(i).ok().flatten().map(str::to_string);
                let id = text(0).unwrap_or_default();
                Ok(InboxMessage {
                    message: QueueMessage {
                        conversation: id.split(':').next().unwrap_or_default().to_string(),
                        id,
                        message_type: text(1).unwrap_or_default(),
                        body: text(2),
                    },
                    attempts: r.try_get::<i32, _>(3).ok().flatten().unwrap_or(0).max(0) as u32,
                })
            })
            .collect()
    }

    async fn inbox_settle(&self, id: &str, outcome: &InboxOutcome) -> Result<()> {
        let what = format!("settling DDL message {id} in [ctsync].[ddl_inbox]");
        let id_param = ColumnData::String(Some(id.to_string().into()));
        let (text, params) = match outcome {
            InboxOutcome::Done => (sql::INBOX_DONE, vec![id_param]),
            InboxOutcome::Retry(e) | InboxOutcome::Parked(e) => {
                let status = if matches!(outcome, InboxOutcome::Parked(_)) {
                    "parked"
                } else {
                    "pending"
                };
                (
                    sql::INBOX_FAILED,
                    vec![
                        id_param,
                        ColumnData::String(Some(e.clone().into())),
                        ColumnData::String(Some(status.into())),
                    ],
                )
            }
        };
        let mut lease = self.begin(&what).await?;
        let work = execute(&mut lease, text, params, || what.clone())
            .await
            .map(|_| ());
        Self::finish(lease, work, &what).await
    }

    async fn modules(&self) -> Result<Vec<ModuleDef>> {
        let mut lease = self.pool.lease().await.map_err(err)?;
        catalog::modules(&mut lease, "replica").await.map_err(err)
    }

    /// Each CREATE is sent as its own batch, after a batch with the SET
    /// options the module was created with on the primary.
    async fn apply_module(&self, op: &ModuleOp) -> Result<()> {
        let mut lease = self.pool.lease().await.map_err(err)?;
        let result = match op {
            ModuleOp::Drop { schema, name, kind } => {
                batch(&mut lease, &sql::drop_module(*kind, schema, name), || {
                    format!("dropping {schema}.{name}")
                })
                .await
            }
            ModuleOp::Create(m) | ModuleOp::Alter(m) => {
                let name = m.qualified();
                let [options, text, reset] =
                    sql::module_batches(m, matches!(op, ModuleOp::Alter(_))).ok_or_else(|| {
                        Error::Replica(format!(
                        "the definition of {name} does not start with CREATE; cannot recreate it"
                    ))
                    })?;
                let created =
                    match batch(&mut lease, &options, || format!("SET options for {name}")).await {
                        Ok(()) => {
                            batch(&mut lease, &text, || {
                                format!("creating {name} on the replica")
                            })
                            .await
                        }
                        Err(e) => Err(e),
                    };
                // The options stay on this pooled connection otherwise (a
                // failed batch has discarded it already).
                match (created, lease.is_open()) {
                    (Ok(()), true) => {
                        batch(&mut lease, &reset, || {
                            format!("resetting the session options after {name}")
                        })
                        .await
                    }
                    (result, _) => result,
                }
            }
        };
        result.map_err(err)
    }
}

super::checksums::impl_checksums!(MssqlReplica, Error::Replica);
