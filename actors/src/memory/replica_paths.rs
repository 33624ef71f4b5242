//! How the in-memory replica inserts a page's rows: by the path the core's
//! [`WritePaths`] chooses, as the SQL Server adapter does. Its bulk copy can
//! fail part-way through a page (a [`Site::ReplicaBulk`] rule of the plan it
//! is given): the rows sent so far are in the transaction, which then rolls
//! back whole; a failure of the load itself demotes the table to INSERT.

use std::sync::Arc;

use super::faults::{Fault, FaultPlan, Site};
use super::replica_table::RowEdits;
use crate::error::{Error, Result};
use crate::model::{Row, TableId};
use crate::write_path::{BulkFailure, RowPath, WritePaths};

/// The rows of one page's transaction, on their way in.
pub(super) struct PageRows<'a> {
    pub(super) table: &'a TableId,
    /// The port method (what a rule may name).
    pub(super) method: &'static str,
    pub(super) path: RowPath,
    /// The writer's choices (`path` is one of them).
    pub(super) paths: Arc<WritePaths>,
    /// Where bulk faults come from.
    pub(super) plan: Option<&'a FaultPlan>,
    /// Set when the bulk load failed, with what failed.
    pub(super) failed: Option<BulkFailure>,
    /// Rows went in (the page counts in `MemoryReplica::row_paths`).
    pub(super) inserted: bool,
}

impl PageRows<'_> {
    /// Inserts `rows` into the transaction's table by the page's path. A
    /// bulk failure is an error (the caller rolls the transaction back).
    pub(super) fn insert(&mut self, edits: &mut RowEdits<'_>, rows: &[Row]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        self.inserted = true;
        if self.path == RowPath::Insert {
            return edits.insert(rows);
        }
        let strike = self
            .plan
            .and_then(|p| p.strike_inside(Site::ReplicaBulk, self.method, self.table));
        let Some(fault) = strike else {
            // A bulk load fails whole on a row it cannot store (a
            // duplicate key among them): the load's own failure.
            return edits.insert(rows).inspect_err(|_| {
                self.failed = Some(BulkFailure::Load);
            });
        };
        let sent = rows.len().div_ceil(2);
        let (class, what) = match fault {
            // A partial answer strikes only calls answering a list; the
            // simulation draws only rejects and lost connections here.
            Fault::Reject | Fault::Partial(_) | Fault::Slow { .. } => {
                (BulkFailure::Load, "the server refused the bulk load")
            }
            Fault::LostAck | Fault::Hang { .. } => {
                (BulkFailure::Connection, "the connection dropped")
            }
        };
        self.failed = Some(class);
        edits.insert(&rows[..sent])?;
        Err(Error::Replica(format!(
            "injected failure at ReplicaBulk ({}): {what} after {sent} of {} rows of {}",
            self.method,
            rows.len(),
            self.table
        )))
    }

    /// After the transaction: a failed bulk load demotes the table (unless
    /// the connection failed).
    pub(super) fn settle<T>(&self, result: &Result<T>) {
        match (self.failed, result) {
            (Some(class), Err(e)) => self.paths.demote(self.table, class, e),
            (_, Ok(_)) => self.paths.committed(self.table),
            (None, Err(_)) => {}
        }
    }
}
