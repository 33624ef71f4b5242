//! Full loads on the in-memory replica, as the SQL Server adapter does
//! them: in place or into a shadow table that is swapped with the live one
//! at the end (indexes and grants added by hand carried over), with the
//! pending-load record written in the same transaction as every page.

use std::collections::BTreeMap;

use super::replica_paths::PageRows;
use super::replica_table::{references, RowEdits, Table};
use super::replica_tx::Tx;
use crate::error::{Error, Result};
use crate::model::{Row, SyncVersion, TableId, TableSchema};
use crate::modules::ModuleDef;
use crate::ports::{LoadMode, LoadStart, PendingLoad, ReplicaRecord};

/// Starts a load: empties (or drops and creates) the live table in place,
/// or creates the shadow. SQL Server refuses to drop a table a
/// schema-bound module references.
pub(super) fn begin(
    tx: &mut Tx<'_>,
    modules: &[ModuleDef],
    schema: &TableSchema,
    start: &LoadStart,
) -> Result<()> {
    let id = &schema.id;
    match start.load.mode {
        LoadMode::InPlace if start.recreate => {
            if tx.table(id).is_some() {
                if let Some(m) = schema_bound_over(modules, id).first() {
                    return Err(Error::Replica(format!(
                        "Cannot DROP TABLE '{id}' because it is being referenced by object '{}'",
                        m.name
                    )));
                }
            }
            tx.put(id, Table::new(schema.clone()));
            tx.take(&id.shadow());
        }
        LoadMode::InPlace => {
            tx.table_mut(id)?.rows.clear();
            // An earlier shadow load's copy (its swap blocked part-way, or
            // a load begun in shadow mode started over in place).
            tx.take(&id.shadow());
        }
        LoadMode::Shadow => {
            let mut shadow = schema.clone();
            shadow.id = id.shadow();
            tx.put(&shadow.id.clone(), Table::new(shadow));
        }
    }
    *tx.record_mut(id) = ReplicaRecord {
        version: None,
        load: Some(start.load.clone()),
        backlog: None,
        unreadable: None,
    };
    Ok(())
}

pub(super) fn page(
    edits: &mut RowEdits<'_>,
    page: &mut PageRows<'_>,
    record: &mut ReplicaRecord,
    rows: &[Row],
    load: &PendingLoad,
) -> Result<()> {
    page.insert(edits, rows)?;
    record.load = Some(load.clone());
    Ok(())
}

/// Swaps the shadow table in (for a shadow load) and records `version`.
pub(super) fn finish(
    tx: &mut Tx<'_>,
    modules: &[ModuleDef],
    schema: &TableSchema,
    version: SyncVersion,
    mode: LoadMode,
) -> Result<()> {
    let id = &schema.id;
    if mode == LoadMode::Shadow {
        let found = blockers(tx.table(id), modules, id);
        if !found.is_empty() {
            return Err(Error::Replica(format!(
                "cannot swap the shadow table of {id}: {}",
                found.join("; ")
            )));
        }
        let mut new = tx
            .take(&id.shadow())
            .ok_or_else(|| Error::Replica(format!("the shadow table of {id} is missing")))?;
        new.schema.id = id.clone();
        // The indexes were built on the shadow before ([`build_indexes`]).
        if let Some(old) = tx.take(id) {
            new.grants = old.grants;
        }
        tx.put(id, new);
    }
    *tx.record_mut(id) = ReplicaRecord {
        version: Some(version),
        load: None,
        backlog: None,
        unreadable: None,
    };
    Ok(())
}

/// Builds the live table's indexes on its shadow, as the SQL Server
/// adapter does before the swap's transaction (each `CREATE INDEX` commits
/// on its own, so a swap that fails afterwards leaves them built): one the
/// shadow has already is skipped, the others are created.
pub(super) fn build_indexes(tables: &mut BTreeMap<TableId, Table>, id: &TableId) -> Result<()> {
    let Some(live) = tables.get(id).map(|t| t.indexes.clone()) else {
        return Ok(());
    };
    let Some(shadow) = tables.get_mut(&id.shadow()) else {
        return Ok(());
    };
    for name in &live {
        if !shadow.indexes.contains(name) {
            create_index(shadow, name)?;
        }
    }
    Ok(())
}

/// `CREATE INDEX` on a table: SQL Server refuses a second index of one
/// name on a table (Msg 1913).
pub(super) fn create_index(table: &mut Table, name: &str) -> Result<()> {
    if !table.indexes.insert(name.to_string()) {
        return Err(Error::Replica(format!(
            "Msg 1913: The operation failed because an index or statistics with name '{name}' \
             already exists on table '{}'.",
            table.schema.id
        )));
    }
    Ok(())
}

/// Moves a table's shadow, if it has one, to the new name's (a rename of
/// a table whose shadow load runs); a copy already under the new name is
/// dropped first.
pub(super) fn move_shadow(tx: &mut Tx<'_>, from: &TableId, to: &TableId) {
    tx.take(&to.shadow());
    let Some(mut shadow) = tx.take(&from.shadow()) else {
        return;
    };
    shadow.schema.id = to.shadow();
    tx.put(&to.shadow(), shadow);
}

pub(super) fn cancel(tx: &mut Tx<'_>, id: &TableId, version: SyncVersion) -> Result<()> {
    tx.take(&id.shadow());
    *tx.record_mut(id) = ReplicaRecord {
        version: Some(version),
        load: None,
        backlog: None,
        unreadable: None,
    };
    Ok(())
}

/// What blocks a swap: schema-bound modules over the table, and triggers
/// and foreign keys on it (they cannot be carried over).
pub(super) fn blockers(live: Option<&Table>, modules: &[ModuleDef], id: &TableId) -> Vec<String> {
    let mut found: Vec<String> = schema_bound_over(modules, id)
        .into_iter()
        .map(|m| {
            format!(
                "schema-bound {} [{}].[{}] references the table",
                m.kind.drop_keyword().to_lowercase(),
                m.schema,
                m.name
            )
        })
        .collect();
    if let Some(live) = live {
        found.extend(
            live.triggers
                .iter()
                .map(|t| format!("trigger [{t}] on the table cannot be carried over")),
        );
        found.extend(
            live.foreign_keys
                .iter()
                .map(|k| format!("foreign key [{k}] references or belongs to the table")),
        );
    }
    found
}

/// The schema-bound modules that reference the table.
pub(super) fn schema_bound_over<'m>(modules: &'m [ModuleDef], id: &TableId) -> Vec<&'m ModuleDef> {
    modules
        .iter()
        .filter(|m| {
            m.definition.as_deref().is_some_and(|d| {
                d.to_ascii_uppercase().contains("SCHEMABINDING")
                    && references(d)
                        .iter()
                        .any(|(s, n)| s == &id.schema && n == &id.name)
            })
        })
        .collect()
}
