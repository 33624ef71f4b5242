//! The primary's change set on SQL Server: a batch creates the session's
//! temporary table (`sql::create_change_set`; a batch, because a temp table
//! created inside an RPC dies with it), one RPC copies the changed keys
//! into it (`sql::fill_change_set`), and the session is kept (leased) until
//! the last page has been read from it and a batch has dropped it.

use async_trait::async_trait;
use ctsync_actors::model::{ChangePage, ColumnDef, RowKey, SyncVersion, TableSchema};
use ctsync_actors::ports::{ChangeSet, Opened};
use ctsync_actors::{Error, Result};
use tiberius::ColumnData;

use crate::mssql::catalog::big;
use crate::mssql::conn::Lease;
use crate::mssql::convert::{decode_row as decode, key_params};
use crate::mssql::pool::Pool;
use crate::mssql::pool::{batch, query_rows};
use crate::mssql::sql;
use crate::mssql::MssqlError;

/// Requests a change set costs the primary besides its pages: two to open
/// it (the batch that creates the session's table, the RPC that fills it)
/// and, when it has keys, one after its last page (the batch that drops
/// it). A backlog of B keys in pages of P: 2 + ⌈B/P⌉ + 1; an empty set: 2.
pub const OPEN_REQUESTS: u64 = 2;
pub const CLOSE_REQUESTS: u64 = 1;

fn err(e: MssqlError) -> Error {
    Error::Primary(e.to_string())
}

/// Msg 3952: a SNAPSHOT transaction in a database that does not allow
/// snapshot isolation (switched off since the last identity read).
const SNAPSHOT_NOT_ALLOWED: u32 = 3952;

/// The copy's error; the server's refusal of SNAPSHOT says what to do.
fn refused_snapshot(e: MssqlError) -> Error {
    match &e {
        MssqlError::Sql {
            source: tiberius::error::Error::Server(token),
            ..
        } if token.code() == SNAPSHOT_NOT_ALLOWED => super::snapshot_required(),
        _ => err(e),
    }
}

/// What a change set needs of the primary adapter that opens it (so this
/// module does not depend on the adapter, which depends on it).
#[async_trait]
pub(super) trait ChangeSource: Send + Sync {
    fn pool(&self) -> &Pool;
    /// Sessions change sets may keep at once.
    fn change_sessions(&self) -> &tokio::sync::Semaphore;
    /// How long a copy may take (`CTSYNC_CHANGE_COPY_TIMEOUT_SECS`).
    fn copy_timeout(&self) -> std::time::Duration;
    /// Prefixes a change read with its columns check.
    fn check_columns(
        &self,
        schema: &TableSchema,
        text: &mut String,
        params: &mut Vec<ColumnData<'static>>,
    );
    /// A failed page read as the table's error.
    async fn explain(&self, schema: &TableSchema, e: MssqlError) -> Error;
}

/// An open change set: its session, its size and how far it has been read.
pub(super) struct MssqlChangeSet<'a> {
    primary: &'a dyn ChangeSource,
    /// The session holding the temporary table, and its permit; `None` for
    /// an empty set and after a failed page (the connection was discarded,
    /// and the set with it).
    lease: Option<Lease<'a>>,
    _session: Option<tokio::sync::SemaphorePermit<'a>>,
    keys: Vec<String>,
    opened: Opened,
    read: u64,
    cursor: Option<RowKey>,
}

impl<'a> MssqlChangeSet<'a> {
    /// Copies the keys of `schema`'s table changed since `since` (after
    /// `after`) on a leased session: two requests, the batch that creates
    /// the session's table and the RPC that fills it.
    pub(super) async fn open(
        primary: &'a dyn ChangeSource,
        schema: &TableSchema,
        since: SyncVersion,
        after: Option<&RowKey>,
        snapshot: bool,
    ) -> Result<Self> {
        let keys = schema
            .key_columns()
            .ok_or_else(|| Error::NoKey(schema.id.clone()))?;
        let key_defs = key_defs(schema)?;
        let create = sql::create_change_set(schema, &keys).ok_or_else(|| {
            Error::Primary(format!(
                "table {}: a key column has an unsupported type",
                schema.id
            ))
        })?;
        let fill = sql::fill_change_set(schema, &keys, after.is_some(), snapshot);
        let mut params = vec![
            ColumnData::I64(Some(since)),
            ColumnData::String(Some(sql::object_name_param(&schema.id).into())),
        ];
        if let Some(k) = after {
            params.extend(key_params(k, &key_defs));
        }
        let session = primary
            .change_sessions()
            .acquire()
            .await
            .map_err(|e| Error::Primary(format!("change set sessions: {e}")))?;
        let mut lease = primary.pool().lease().await.map_err(err)?;
        batch(&mut lease, &create, || {
            format!("creating the change set of {} on its session", schema.id)
        })
        .await
        .map_err(err)?;
        let copy = query_rows(&mut lease, &fill, params, || {
            format!("copying the changes of {} since version {since}", schema.id)
        });
        let rows = match tokio::time::timeout(primary.copy_timeout(), copy).await {
            Ok(rows) => rows.map_err(refused_snapshot)?,
            Err(_) => {
                // The server abandons the copy (and rolls it back) when the
                // connection closes.
                lease.discard();
                metrics::counter!(
                    ctsync_actors::telemetry::COPY_TIMEOUTS,
                    "table" => schema.id.to_string()
                )
                .increment(1);
                return Err(Error::Primary(format!(
                    "copying the changes of {} since version {since} took longer than {} s \
                     (CTSYNC_CHANGE_COPY_TIMEOUT_SECS) and was abandoned; each cycle starts it \
                     over: raise CTSYNC_CHANGE_COPY_TIMEOUT_SECS for this backlog, or force a \
                     full load of the table",
                    schema.id,
                    primary.copy_timeout().as_secs()
                )));
            }
        };
        let row = rows.first().ok_or_else(|| {
            Error::Primary(format!(
                "opening the change set of {}: no row came back",
                schema.id
            ))
        })?;
        let target = big(row, 0).map_err(err)?.ok_or_else(|| {
            Error::Primary(
                "CHANGE_TRACKING_CURRENT_VERSION() is NULL: change tracking is not enabled on the primary database \
                 (ALTER DATABASE … SET CHANGE_TRACKING = ON)"
                    .into(),
            )
        })?;
        let min_valid = big(row, 1).map_err(err)?;
        let total = big(row, 2).map_err(err)?.unwrap_or(0).max(0) as u64;
        // An empty set keeps nothing: its session goes back at once (the
        // empty table is replaced by the next open on that session).
        let (lease, session) = if total == 0 {
            (None, None)
        } else {
            (Some(lease), Some(session))
        };
        Ok(Self {
            primary,
            lease,
            _session: session,
            keys,
            opened: Opened {
                target,
                min_valid,
                keys: total,
            },
            read: 0,
            cursor: None,
        })
    }
}

fn key_defs(schema: &TableSchema) -> Result<Vec<&ColumnDef>> {
    schema
        .key_column_defs()
        .ok_or_else(|| Error::NoKey(schema.id.clone()))
}

#[async_trait]
impl ChangeSet for MssqlChangeSet<'_> {
    fn opened(&self) -> Opened {
        self.opened
    }

    async fn next_page(&mut self, schema: &TableSchema, limit: usize) -> Result<ChangePage> {
        let key_defs = key_defs(schema)?;
        let limit = limit.max(1);
        let last = self.read + limit as u64 >= self.opened.keys;
        let mut text = sql::change_set_page(schema, &self.keys, self.cursor.is_some());
        let mut params = vec![ColumnData::I64(Some(limit as i64))];
        if let Some(k) = &self.cursor {
            params.extend(key_params(k, &key_defs));
        }
        self.primary.check_columns(schema, &mut text, &mut params);
        let what = || format!("reading changes of {} from its change set", schema.id);
        let lease = self.lease.as_mut().ok_or_else(|| {
            Error::Primary(format!(
                "the change set of {} was lost with its connection",
                schema.id
            ))
        })?;
        let rows = match query_rows(lease, &text, params, what).await {
            Ok(rows) => rows,
            Err(e) => {
                // The connection was discarded, and the set with it; the
                // session goes back before the error is explained.
                self.lease = None;
                return Err(self.primary.explain(schema, e).await);
            }
        };
        let cols = schema.written_columns();
        let mut page = ChangePage::default();
        for row in rows {
            let mut cells = row.into_iter();
            let key = decode(cells.by_ref().take(key_defs.len()), &key_defs).map_err(err)?;
            let exists = matches!(cells.next(), Some(ColumnData::I32(Some(1))));
            if exists {
                page.rows.push(decode(cells, &cols).map_err(err)?);
            }
            page.keys.push(RowKey(key));
        }
        self.read += page.keys.len() as u64;
        if last {
            // The set is read: drop it and give the session back. A failed
            // drop discards the connection, and the table with it.
            if let Some(mut lease) = self.lease.take() {
                let dropped = batch(&mut lease, sql::DROP_CHANGE_SET, || {
                    format!("dropping the change set of {}", schema.id)
                })
                .await;
                if let Err(e) = dropped {
                    tracing::debug!(table = %schema.id, error = %e, "dropping a read change set failed; its connection was discarded");
                }
            }
            self._session = None;
        }
        if !last && page.keys.len() < limit {
            return Err(Error::Primary(format!(
                "the change set of {} ended after {} of {} keys",
                schema.id, self.read, self.opened.keys
            )));
        }
        self.cursor = page.keys.last().cloned();
        if !last {
            page.next_after = self.cursor.clone();
        }
        Ok(page)
    }
}
