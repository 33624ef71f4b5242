//! The SQL Server adapter: connection settings and connections (`conn`),
//! all T-SQL text (`sql`), value conversions (`convert`), and the primary
//! and replica ports implemented on tiberius. The recording session and
//! the session rules (`recording`, `sql::session_rules`) are test tools,
//! behind the `testkit` feature the crate's own tests enable: the binary
//! holds neither.

pub mod ado;
pub mod bulk;
mod catalog;
mod change_set;
pub mod checksums;
pub mod conn;
pub mod convert;
mod ddl_queue;
pub mod json_rows;
mod migrations;
mod pool;
mod preflight;
mod primary;
#[cfg(feature = "testkit")]
pub mod recording;
mod replica;
mod replica_load;
mod replica_writes;
pub mod session;
pub mod sql;
mod tds_session;
mod utf16;
mod write_path;
pub mod write_plan;

pub use change_set::{
    CLOSE_REQUESTS as CHANGE_SET_CLOSE_REQUESTS, OPEN_REQUESTS as CHANGE_SET_OPEN_REQUESTS,
};
pub use conn::{Endpoint, TlsSettings};
pub use ddl_queue::MssqlDdlQueue;
pub use pool::Pool;
pub use primary::MssqlPrimary;
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
