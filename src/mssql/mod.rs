//! The SQL Server adapter: connection settings and connections (`conn`,
//! `pool`, the `session` seam), all T-SQL text (`sql`, used by both sides),
//! value conversions (`convert`), and one folder per side: the primary's
//! ports (`primary/`: catalog reads, change sets, the DDL queue) and the
//! replica's (`replica/`: writes, loads, bulk copy) on tiberius. The recording session and
//! the session rules (`recording`, `sql::session_rules`) are test tools,
//! behind the `testkit` feature the crate's own tests enable: the binary
//! holds neither.

pub mod ado;
mod catalog;
pub mod checksums;
pub mod conn;
pub mod convert;
mod pool;
mod preflight;
pub mod primary;
#[cfg(feature = "testkit")]
pub mod recording;
pub mod replica;
pub mod session;
pub mod sql;
mod tds_session;

pub use conn::{Endpoint, TlsSettings};
pub use pool::Pool;
pub use primary::change_set::{
    CLOSE_REQUESTS as CHANGE_SET_CLOSE_REQUESTS, OPEN_REQUESTS as CHANGE_SET_OPEN_REQUESTS,
};
pub use primary::ddl_queue::MssqlDdlQueue;
pub use primary::{ChangeIsolation, MssqlPrimary};
pub use replica::MssqlReplica;

/// Errors of the SQL Server adapter; the message names what was being done.
#[derive(Debug, thiserror::Error)]
pub enum MssqlError {
    #[error("{context}: {source}")]
    Sql {
        context: String,
        #[source]
        source: tiberius::error::Error,
    },
    #[error("connecting to {endpoint}: {message}")]
    Connect { endpoint: String, message: String },
    #[error("invalid connection string for {name}: {message}")]
    Config { name: String, message: String },
    #[error("{0}")]
    Conversion(String),
    #[error("{0}")]
    Unexpected(String),
    /// A statement that waited past its `LOCK_TIMEOUT` (Msg 1222), said as
    /// what it is; nothing of its transaction stayed (the replica's
    /// `lock_waited`). Becomes `Error::Blocked` in the core.
    #[error("{0}")]
    LockWait(String),
}

pub(crate) trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, MssqlError>;
}

impl<T> Context<T> for Result<T, tiberius::error::Error> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, MssqlError> {
        self.map_err(|source| MssqlError::Sql {
            context: what(),
            source,
        })
    }
}
