//! A few connections to one endpoint, handed out to concurrent callers
//! (tables read the primary independently). Each connection serves one
//! request at a time: tiberius has no MARS.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tiberius::{ColumnData, Row};

use super::conn::{Connection, Endpoint, Lease};
use super::session::Connector;
use super::{Context, MssqlError};

pub struct Pool {
    conns: Vec<Connection>,
    next: AtomicUsize,
    /// One permit per connection not leased: a caller waits for whichever
    /// connection frees first, never for one in particular.
    free: tokio::sync::Semaphore,
}

impl Pool {
    pub fn new(endpoint: Endpoint, size: usize) -> Self {
        Self::with_connector(Arc::new(endpoint), size)
    }

    /// A pool whose sessions `connector` opens (tests: a recording one).
    pub fn with_connector(connector: Arc<dyn Connector>, size: usize) -> Self {
        let size = size.max(1);
        Self {
            conns: (0..size)
                .map(|_| Connection::new(connector.clone()))
                .collect(),
            next: AtomicUsize::new(0),
            free: tokio::sync::Semaphore::new(size),
        }
    }

    /// How many connections the pool has.
    pub fn size(&self) -> usize {
        self.conns.len()
    }

    /// `SELECT 1` on one of the connections (readiness).
    pub async fn ping(&self, name: &str) -> Result<(), MssqlError> {
        let mut lease = self.lease().await?;
        query_rows(&mut lease, super::sql::PING, vec![], || {
            format!("SELECT 1 on the {name}")
        })
        .await
        .map(|_| ())
    }

    /// A connection of the pool, the first to be free (opened if it was
    /// not). Connections are tried in turn from a rotating start, so load
    /// spreads over them.
    pub async fn lease(&self) -> Result<Lease<'_>, MssqlError> {
        let permit = self
            .free
            .acquire()
            .await
            .map_err(|e| MssqlError::Unexpected(format!("connection pool closed: {e}")))?;
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.conns.len();
        // Every lease holds a permit, so a permit means one connection is
        // not leased; its lock is released just before its permit.
        loop {
            for i in 0..n {
                if let Some(lease) = self.conns[(start + i) % n].try_lease().await? {
                    return Ok(lease.holding(permit));
                }
            }
            tokio::task::yield_now().await;
        }
    }
}

/// A failed request can leave the TDS stream out of sync: the connection
/// is dropped, and the next lease opens a new one.
fn discard_on_error<T>(
    lease: &mut Lease<'_>,
    result: Result<T, MssqlError>,
) -> Result<T, MssqlError> {
    if result.is_err() {
        lease.discard();
    }
    result
}

/// Runs a query as an RPC (`sp_executesql`, with or without parameters)
/// and returns its first result set.
pub async fn query_rows(
    lease: &mut Lease<'_>,
    sql: &str,
    params: Vec<ColumnData<'static>>,
    what: impl Fn() -> String,
) -> Result<Vec<Row>, MssqlError> {
    let result = async { lease.session()?.rpc_rows(sql, params).await.context(&what) }.await;
    lease.answered();
    discard_on_error(lease, result)
}

/// How long a catalog or version read may go unanswered: these are small,
/// so a silent server is noticed in a minute instead of after the 10-minute
/// command timeout bulk work and ALTER COLUMN need.
pub const META_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// [`query_rows`] that gives up after `limit`; the connection, which may
/// still get the late answer, is discarded.
pub async fn query_rows_within(
    lease: &mut Lease<'_>,
    limit: std::time::Duration,
    sql: &str,
    params: Vec<ColumnData<'static>>,
    what: impl Fn() -> String,
) -> Result<Vec<Row>, MssqlError> {
    match tokio::time::timeout(limit, query_rows(lease, sql, params, &what)).await {
        Ok(result) => result,
        Err(_) => {
            lease.discard();
            Err(MssqlError::Unexpected(format!(
                "{}: no answer within {} s",
                what(),
                limit.as_secs()
            )))
        }
    }
}

/// Runs a statement as an RPC (`sp_executesql`); returns rows affected.
/// Whatever it creates at its own scope ends when it returns.
pub async fn execute(
    lease: &mut Lease<'_>,
    sql: &str,
    params: Vec<ColumnData<'static>>,
    what: impl Fn() -> String,
) -> Result<u64, MssqlError> {
    let result = async { lease.session()?.rpc_count(sql, params).await.context(&what) }.await;
    lease.answered();
    discard_on_error(lease, result)
}

/// Sends a SQL batch without parameters (session-scoped objects and
/// options, DDL, transaction control): what it creates lasts for the
/// session.
pub async fn batch(
    lease: &mut Lease<'_>,
    sql: &str,
    what: impl Fn() -> String,
) -> Result<(), MssqlError> {
    batch_rows(lease, sql, what).await.map(|_| ())
}

/// [`batch`] that returns its result sets.
pub async fn batch_rows(
    lease: &mut Lease<'_>,
    sql: &str,
    what: impl Fn() -> String,
) -> Result<Vec<Vec<Row>>, MssqlError> {
    let result = async { lease.session()?.batch(sql).await.context(&what) }.await;
    lease.answered();
    discard_on_error(lease, result)
}

/// Sends `sql`, a batch that opens a transaction. Until
/// [`end_transaction`] ends it, the lease is discarded if it is dropped:
/// an open transaction never goes back to the pool.
pub async fn begin_transaction(
    lease: &mut Lease<'_>,
    sql: &str,
    what: impl Fn() -> String,
) -> Result<(), MssqlError> {
    lease.transaction_begun();
    batch(lease, sql, what).await
}

/// Sends `sql`, the batch that commits or rolls back the lease's
/// transaction; once it answered, the lease may go back to the pool.
pub async fn end_transaction(
    lease: &mut Lease<'_>,
    sql: &str,
    what: impl Fn() -> String,
) -> Result<(), MssqlError> {
    batch(lease, sql, what).await?;
    lease.transaction_ended();
    Ok(())
}
