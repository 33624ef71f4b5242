//! A few connections to one endpoint, handed out to concurrent callers
//! (tables read the primary independently). Each connection serves one
//! request at a time: tiberius has no MARS.

use std::sync::atomic::{AtomicUsize, Ordering};

use tiberius::{ColumnData, Query, Row};

use super::conn::{Connection, Endpoint, Lease};
use super::{Context, MssqlError};

pub struct Pool {
    conns: Vec<Connection>,
    next: AtomicUsize,
}

impl Pool {
    pub fn new(endpoint: Endpoint, size: usize) -> Self {
        Self {
            conns: (0..size.max(1))
                .map(|_| Connection::new(endpoint.clone()))
                .collect(),
            next: AtomicUsize::new(0),
        }
    }

    pub fn endpoint(&self) -> &Endpoint {
        self.conns[0].endpoint()
    }

    pub async fn lease(&self) -> Result<Lease<'_>, MssqlError> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.conns.len();
        for i in 0..n {
            if let Some(lease) = self.conns[(start + i) % n].try_lease().await? {
                return Ok(lease);
            }
        }
        self.conns[start % n].lease().await
    }
}

/// Runs a parameterized query and returns its first result set.
pub async fn query_rows(
    lease: &mut Lease<'_>,
    sql: &str,
    params: Vec<ColumnData<'static>>,
    what: impl Fn() -> String,
) -> Result<Vec<Row>, MssqlError> {
    let result = async {
        let mut q = Query::new(sql.to_string());
        for p in params {
            q.bind(p);
        }
        let client = lease.client()?;
        let stream = q.query(client).await.context(&what)?;
        stream.into_first_result().await.context(&what)
    }
    .await;
    if result.is_err() {
        lease.discard();
    }
    result
}

/// Runs a parameterized statement; returns rows affected.
pub async fn execute(
    lease: &mut Lease<'_>,
    sql: &str,
    params: Vec<ColumnData<'static>>,
    what: impl Fn() -> String,
) -> Result<u64, MssqlError> {
    let result = async {
        let mut q = Query::new(sql.to_string());
        for p in params {
            q.bind(p);
        }
        let client = lease.client()?;
        let done = q.execute(client).await.context(&what)?;
        Ok(done.total())
    }
    .await;
    if result.is_err() {
        lease.discard();
    }
    result
}

/// Sends a batch without parameters (DDL, SET, transaction control).
pub async fn batch(
    lease: &mut Lease<'_>,
    sql: &str,
    what: impl Fn() -> String,
) -> Result<(), MssqlError> {
    let result = async {
        let client = lease.client()?;
        let stream = client.simple_query(sql.to_string()).await.context(&what)?;
        stream.into_results().await.context(&what).map(|_| ())
    }
    .await;
    if result.is_err() {
        lease.discard();
    }
    result
}
