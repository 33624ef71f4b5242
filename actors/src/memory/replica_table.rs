//! One in-memory replica table and the row and column operations on it,
//! with SQL Server's rules that matter to the tests (duplicate keys, row
//! width, NOT NULL columns on non-empty tables, name resolution).

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{Error, Result};
use crate::model::{ColumnOp, Row, RowKey, TableSchema, Value};

#[derive(Debug, Clone)]
pub(super) struct Table {
    pub(super) schema: TableSchema,
    pub(super) rows: BTreeMap<RowKey, Row>,
    /// What operators added by hand: indexes and grants (carried over by a
    /// swap), triggers and foreign keys (which block it; the keys'
    /// referential checks are not modelled).
    pub(super) indexes: BTreeSet<String>,
    pub(super) grants: BTreeSet<String>,
    pub(super) triggers: BTreeSet<String>,
    pub(super) foreign_keys: BTreeSet<String>,
}

impl Table {
    pub(super) fn new(schema: TableSchema) -> Self {
        Self {
            schema,
            rows: BTreeMap::new(),
            indexes: BTreeSet::new(),
            grants: BTreeSet::new(),
            triggers: BTreeSet::new(),
            foreign_keys: BTreeSet::new(),
        }
    }
}

/// Inserts one row of `width` values whose key is at `positions`, with SQL
/// Server's checks; returns its key (`duplicate` is set when the key
/// exists already).
fn insert_one(
    table: &mut Table,
    row: &Row,
    width: usize,
    positions: &[usize],
    duplicate: &mut bool,
) -> Result<RowKey> {
    if row.len() != width {
        return Err(Error::Replica(format!(
            "Column name or number of supplied values does not match table definition of {} ({} values for {width} columns)",
            table.schema.id,
            row.len()
        )));
    }
    let key = RowKey(
        positions
            .iter()
            .map(|&i| row.get(i).cloned().unwrap_or(Value::Null))
            .collect(),
    );
    match table.rows.entry(key) {
        std::collections::btree_map::Entry::Occupied(e) => {
            *duplicate = true;
            Err(Error::Replica(format!(
                "Violation of PRIMARY KEY constraint on {}: duplicate key {:?}",
                table.schema.id,
                e.key().0
            )))
        }
        std::collections::btree_map::Entry::Vacant(e) => {
            let key = e.key().clone();
            e.insert(row.clone());
            Ok(key)
        }
    }
}

/// Row changes made in place with an undo log, so a transaction costs what
/// it changes (not a copy of the table) and a failed one is undone.
pub(super) struct RowEdits<'a> {
    table: &'a mut Table,
    undo: Vec<(RowKey, Option<Row>)>,
    /// An insert was refused for a duplicate key.
    pub(super) duplicate: bool,
}

impl<'a> RowEdits<'a> {
    pub(super) fn new(table: &'a mut Table) -> Self {
        Self {
            table,
            undo: Vec::new(),
            duplicate: false,
        }
    }

    pub(super) fn remove(&mut self, key: &RowKey) {
        if let Some(old) = self.table.rows.remove(key) {
            self.undo.push((key.clone(), Some(old)));
        }
    }

    pub(super) fn insert(&mut self, rows: &[Row]) -> Result<()> {
        let width = self.table.schema.written_columns().len();
        let positions =
            self.table.schema.key_positions().ok_or_else(|| {
                Error::Replica(format!("table {} has no key", self.table.schema.id))
            })?;
        for row in rows {
            let key = insert_one(self.table, row, width, &positions, &mut self.duplicate)?;
            self.undo.push((key, None));
        }
        Ok(())
    }

    /// Puts every changed row back as it was.
    pub(super) fn rollback(&mut self) {
        for (key, old) in std::mem::take(&mut self.undo).into_iter().rev() {
            match old {
                Some(row) => self.table.rows.insert(key, row),
                None => self.table.rows.remove(&key),
            };
        }
    }
}

pub(super) fn alter(table: &mut Table, op: &ColumnOp) -> Result<()> {
    let id = table.schema.id.clone();
    let position = |t: &Table, name: &str| {
        t.schema
            .written_columns()
            .iter()
            .position(|c| c.name == name)
    };
    match op {
        ColumnOp::Add(c) => {
            if table.schema.columns.iter().any(|x| x.name == c.name) {
                return Err(Error::Replica(format!(
                    "Column names in each table must be unique: {id}.{}",
                    c.name
                )));
            }
            if !c.nullable && c.is_written() && !table.rows.is_empty() {
                return Err(Error::Replica(format!(
                    "ALTER TABLE only allows columns to be added that can contain nulls ({id}.{})",
                    c.name
                )));
            }
            table.schema.columns.push(c.clone());
            if c.is_written() {
                for row in table.rows.values_mut() {
                    row.push(Value::Null);
                }
            }
        }
        ColumnOp::Drop(name) => {
            if table.schema.primary_key.iter().any(|k| &k.name == name) {
                return Err(Error::Replica(format!(
                    "cannot drop key column {id}.{name}"
                )));
            }
            if let Some(pos) = position(table, name) {
                for row in table.rows.values_mut() {
                    row.remove(pos);
                }
            }
            let before = table.schema.columns.len();
            table.schema.columns.retain(|c| &c.name != name);
            if before == table.schema.columns.len() {
                return Err(Error::Replica(format!(
                    "Invalid column name '{name}' in {id}"
                )));
            }
        }
        ColumnOp::Alter(c) => {
            let slot = table
                .schema
                .columns
                .iter_mut()
                .find(|x| x.name == c.name)
                .ok_or_else(|| {
                    Error::Replica(format!("Invalid column name '{}' in {id}", c.name))
                })?;
            *slot = c.clone();
        }
    }
    Ok(())
}

/// Two-part bracketed names (`[s].[n]`) a module refers to.
pub(super) fn references(definition: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = definition;
    while let Some(start) = rest.find('[') {
        let tail = &rest[start + 1..];
        let Some(end) = tail.find(']') else { break };
        let first = &tail[..end];
        let after = &tail[end + 1..];
        if let Some(second) = after.strip_prefix(".[") {
            if let Some(e2) = second.find(']') {
                out.push((first.to_string(), second[..e2].to_string()));
                rest = &second[e2 + 1..];
                continue;
            }
        }
        rest = after;
    }
    out
}
