//! The seam under the SQL Server adapter: every request goes through a
//! [`Session`] by one of three calls, named for how it reaches the server —
//! a plain SQL batch, an RPC to `sp_executesql`, or a bulk load. tiberius
//! implements it in production (`tds_session`); `recording` in tests, so the
//! sequence of requests a session really sends can be checked
//! (`sql::session_rules`).

use async_trait::async_trait;
use tiberius::{ColumnData, Row, SqlBulkCopyOptions, TokenRow};

use super::MssqlError;

pub type SqlResult<T> = Result<T, tiberius::error::Error>;

/// How a request is sent. tiberius 0.13 sends `simple_query` as a SQL
/// batch and every `query`/`execute` — with or without parameters — as an
/// RPC to `sp_executesql` (`src/client.rs`, `RpcProcId::ExecuteSQL`).
/// Whatever an RPC creates at its own scope (a `#temp` table, a `SET`
/// option) ends when it returns; a batch's lasts for the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Call {
    /// `Client::simple_query`: a SQL batch, no parameters.
    Batch,
    /// `Client::query`/`Client::execute`: `sp_executesql @stmt, @params, …`.
    Rpc,
    /// The rows of a bulk load (one bulk-load message after its
    /// `INSERT BULK` batch).
    BulkRows,
}

/// One bulk load as tiberius's `bulk_insert_with_options` takes it.
pub struct BulkLoad {
    /// The target, quoted (`[s].[t]`).
    pub table: String,
    /// The target's columns, quoted, in the order of each row's cells.
    pub columns: Vec<String>,
    pub options: SqlBulkCopyOptions,
    pub rows: Vec<TokenRow<'static>>,
}

/// One connection's requests. A failed request can leave the TDS stream out
/// of sync: callers discard the session after any error.
#[async_trait]
pub trait Session: Send {
    /// A SQL batch (`simple_query`): every result set, drained.
    async fn batch(&mut self, sql: &str) -> SqlResult<Vec<Vec<Row>>>;
    /// An RPC (`query`): the first result set.
    async fn rpc_rows(
        &mut self,
        sql: &str,
        params: Vec<ColumnData<'static>>,
    ) -> SqlResult<Vec<Row>>;
    /// An RPC (`execute`): the rows affected, summed over its statements.
    async fn rpc_count(&mut self, sql: &str, params: Vec<ColumnData<'static>>) -> SqlResult<u64>;
    /// A bulk load (`bulk_insert_with_options`): `SELECT TOP 0 …` and
    /// `INSERT BULK …` as batches, then the rows. Returns the rows stored.
    async fn bulk(&mut self, load: BulkLoad) -> SqlResult<u64>;
}

/// Opens sessions to one endpoint.
#[async_trait]
pub trait Connector: Send + Sync {
    async fn open(&self) -> Result<Box<dyn Session>, MssqlError>;
}
