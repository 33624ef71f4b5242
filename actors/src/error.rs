//! The one error type of the pipeline core. Adapters map their own errors
//! into `Primary`/`Replica`/`State` (worth asking again) or `Refused` (the
//! same answer until someone changes something) with context; the
//! table-level variants carry the table and what an operator should do;
//! `Blocked` is a change that gave up behind another session's locks.
//! `Error::kind` is how the actors decide what to do next, never the text.

use crate::model::TableId;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("primary: {0}")]
    Primary(String),
    #[error("replica: {0}")]
    Replica(String),
    #[error("state store: {0}")]
    State(String),
    #[error(
        "table {table}: column [{column}] has type {ty}, which ctsync cannot replicate; \
         exclude the table (set mssql_sync:enabled:{key} to \"false\") or change the column type"
    )]
    UnsupportedType {
        table: TableId,
        key: String,
        column: String,
        ty: String,
    },
    #[error(
        "table {0}: CHANGE_TRACKING_MIN_VALID_VERSION returned NULL (change tracking disabled, \
         table dropped, or the login lacks VIEW CHANGE TRACKING on it)"
    )]
    MinValidVersionNull(TableId),
    #[error("table {0}: no column can identify a row (no primary key and only LOB columns)")]
    NoKey(TableId),
    #[error("table {0} is not tracked by change tracking on the primary")]
    NotTracked(TableId),
    /// A key an operator can edit holds something ctsync cannot read.
    #[error(
        "{key} holds {value:?}, not a version number (a non-negative integer); \
         set it to the CT version the replica holds, or delete it to restore it from the replica"
    )]
    BadValue { key: String, value: String },
    /// A write of a table owner that no longer owns the table (retired in
    /// this process, its lease lost, or a higher token claimed on the
    /// replica by another instance), refused (see `crate::fence`).
    #[error(
        "table {table}: write refused by the fence ({detail}): another owner has the table now"
    )]
    Fenced { table: TableId, detail: String },
    /// A change read found other columns than the ones the cycle read
    /// from the catalog: the cycle stops before applying anything.
    #[error(
        "table {0}: its columns changed on the primary since the catalog was read (a DDL event \
         was missed or is on its way); the catalog is read again"
    )]
    ColumnsChanged(TableId),
    #[error("sink actor unavailable: {0}")]
    Sink(String),
    /// A port call that got no answer within its call limit: the core
    /// abandoned it (see `ports::limits`); whether a write in it took
    /// effect is unknown, as with any lost answer.
    #[error(
        "{port} did not answer {method}{about} within {limit:?}: the call was abandoned (a hung \
         server, network or lock) and the work is tried again"
    )]
    TimedOut {
        /// `the primary`, `the replica`, `the state store`, `the DDL queue`.
        port: String,
        method: &'static str,
        /// ` (table s.t)`, or empty for a call about no table.
        about: String,
        limit: std::time::Duration,
    },
    /// An adapter's answer that asking again cannot change until an
    /// operator or a DBA changes something (a setting, a permission, the
    /// database); the message says what.
    #[error("{side}: {message}")]
    Refused { side: Side, message: String },
    /// A change that waited past its bound for locks another session holds
    /// (a long reader of the replica table, an open transaction on it) and
    /// gave up whole: nothing of it changed, and the same change succeeds
    /// once those locks are gone. Transient; the DDL inbox tries it again
    /// without counting it as a failed attempt, so a table rename behind a
    /// reader is never parked for that.
    #[error("{side}: {message}")]
    Blocked { side: Side, message: String },
}

/// Which port an adapter error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Primary,
    Replica,
    State,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Primary => "primary",
            Side::Replica => "replica",
            Side::State => "state store",
        })
    }
}

/// What an error means for the work that met it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Asking again may succeed (a connection lost, a timeout, a lock wait,
    /// the sink restarting, columns that changed under a read): the table's
    /// actor restarts with exponential backoff.
    Transient,
    /// Asking again gets the same answer until someone acts on the reason
    /// (an unsupported column, no key, a bad operator value, a refused
    /// setting): the table is held in `error` with the reason, said once,
    /// and looked at again only every `restarts.max` or when one of
    /// its keys changes — no restart storm, no error line per poll.
    Definite,
    /// The writer no longer owns the table (see `crate::fence`).
    Fenced,
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Primary(_)
            | Error::Replica(_)
            | Error::State(_)
            | Error::Sink(_)
            | Error::TimedOut { .. }
            | Error::Blocked { .. }
            | Error::ColumnsChanged(_) => ErrorKind::Transient,
            Error::UnsupportedType { .. }
            | Error::MinValidVersionNull(_)
            | Error::NoKey(_)
            | Error::NotTracked(_)
            | Error::BadValue { .. }
            | Error::Refused { .. } => ErrorKind::Definite,
            Error::Fenced { .. } => ErrorKind::Fenced,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
