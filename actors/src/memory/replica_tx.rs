//! One in-memory replica transaction: the tables and records it touches
//! are copied on first touch and written back only if the whole call
//! succeeds, so a failed call leaves the replica unchanged.

use std::collections::BTreeMap;

use super::replica_table::Table;
use crate::error::{Error, Result};
use crate::model::TableId;
use crate::ports::ReplicaRecord;

pub(super) struct Tx<'a> {
    tables: &'a BTreeMap<TableId, Table>,
    records: &'a BTreeMap<TableId, ReplicaRecord>,
    /// Staged tables: `None` means dropped.
    staged: BTreeMap<TableId, Option<Table>>,
    /// Staged records: `None` means deleted.
    staged_records: BTreeMap<TableId, Option<ReplicaRecord>>,
}

/// What a committed transaction changes (`None`: dropped, deleted).
pub(super) struct Changes {
    pub(super) tables: BTreeMap<TableId, Option<Table>>,
    pub(super) records: BTreeMap<TableId, Option<ReplicaRecord>>,
}

impl<'a> Tx<'a> {
    pub(super) fn new(
        tables: &'a BTreeMap<TableId, Table>,
        records: &'a BTreeMap<TableId, ReplicaRecord>,
    ) -> Self {
        Self {
            tables,
            records,
            staged: BTreeMap::new(),
            staged_records: BTreeMap::new(),
        }
    }

    /// The table as this transaction sees it.
    pub(super) fn table(&self, id: &TableId) -> Option<&Table> {
        match self.staged.get(id) {
            Some(staged) => staged.as_ref(),
            None => self.tables.get(id),
        }
    }

    pub(super) fn table_mut(&mut self, id: &TableId) -> Result<&mut Table> {
        if !self.staged.contains_key(id) {
            let copy = self.tables.get(id).cloned();
            self.staged.insert(id.clone(), copy);
        }
        self.staged
            .get_mut(id)
            .and_then(Option::as_mut)
            .ok_or_else(|| Error::Replica(format!("Invalid object name '{id}' on the replica")))
    }

    /// Creates (or replaces) a table.
    pub(super) fn put(&mut self, id: &TableId, table: Table) {
        self.staged.insert(id.clone(), Some(table));
    }

    /// Drops a table, if it exists; returns it.
    pub(super) fn take(&mut self, id: &TableId) -> Option<Table> {
        let current = self.table(id).cloned();
        self.staged.insert(id.clone(), None);
        current
    }

    pub(super) fn record_mut(&mut self, id: &TableId) -> &mut ReplicaRecord {
        let records = self.records;
        self.staged_records
            .entry(id.clone())
            .or_insert_with(|| Some(records.get(id).cloned().unwrap_or_default()))
            .get_or_insert_with(ReplicaRecord::default)
    }

    /// Deletes a table's record, if it has one; returns it.
    pub(super) fn take_record(&mut self, id: &TableId) -> Option<ReplicaRecord> {
        let current = match self.staged_records.get(id) {
            Some(staged) => staged.clone(),
            None => self.records.get(id).cloned(),
        };
        self.staged_records.insert(id.clone(), None);
        current
    }

    pub(super) fn into_changes(self) -> Changes {
        Changes {
            tables: self.staged,
            records: self.staged_records,
        }
    }
}
