//! Full loads on the SQL Server replica: the load's start (in place:
//! truncate or recreate; shadow: a fresh `[ctsync].[shadow_…]`), each page
//! with its recorded cursor, the swap that carries over what operators
//! added, and the pending-load record as JSON in `[ctsync].[sync_versions]`.

use ctsync_actors::fence::Claim;
use ctsync_actors::model::{Row, SyncVersion, TableId, TableSchema};
use ctsync_actors::modules::{ModuleKind, ModuleOp};
use ctsync_actors::ports::{
    CursorKind, LoadMode, LoadStart, PendingLoad, ReplicaRecord, Unreadable,
};
use ctsync_actors::{Error, Result};
use tiberius::ColumnData;

use super::version_record::{name_param, write_version};
use super::write_plan::load_page_plan;
use super::{bound_lock_waits, err, lock_waited, unbound_lock_waits, MssqlReplica};
use crate::mssql::conn::Lease;
use crate::mssql::pool::{batch, execute, query_rows};
use crate::mssql::sql::{self, CarriedIndex};
use crate::mssql::MssqlError;

/// Drops `table`'s shadow copy in `[ctsync]` if there is one (inside the
/// caller's transaction).
async fn drop_shadow(
    lease: &mut Lease<'_>,
    table: &TableId,
) -> std::result::Result<(), MssqlError> {
    execute(
        lease,
        &sql::drop_shadow_if_exists(table),
        vec![text(sql::object_name_param(&table.shadow()))],
        || format!("dropping the shadow table of {table}"),
    )
    .await
    .map(|_| ())
}

fn text(value: impl Into<String>) -> ColumnData<'static> {
    ColumnData::String(Some(value.into().into()))
}

fn load_text(table: &TableId, load: &PendingLoad) -> Result<String> {
    serde_json::to_string(load)
        .map_err(|e| Error::Replica(format!("encoding the pending load of {table}: {e}")))
}

fn load_json(table: &TableId, load: &PendingLoad) -> Result<ColumnData<'static>> {
    load_text(table, load).map(text)
}

/// A recorded cursor (JSON), or `None` with why it cannot be read in
/// `unreadable` (the first such cursor is kept).
fn decode<T: serde::de::DeserializeOwned>(
    json: Option<&str>,
    cursor: CursorKind,
    unreadable: &mut Option<Unreadable>,
) -> Option<T> {
    serde_json::from_str(json?)
        .map_err(|e| {
            unreadable.get_or_insert(Unreadable {
                cursor,
                error: e.to_string(),
            });
        })
        .ok()
}

impl MssqlReplica {
    pub(super) async fn begin_load(
        &self,
        schema: &TableSchema,
        start: &LoadStart,
        claim: &Claim,
    ) -> Result<()> {
        let table = &schema.id;
        let target = start.load.target(table);
        let mut created = schema.clone();
        created.id = target.clone();
        let create = (start.load.mode == LoadMode::Shadow || start.recreate)
            .then(|| {
                sql::create_table(&created).ok_or_else(|| {
                    Error::Replica(format!("table {table} has a column of an unsupported type"))
                })
            })
            .transpose()?;
        if create.is_some() {
            // CREATE SCHEMA is idempotent here and needs no transaction.
            let mut lease = self.pool.lease().await.map_err(err)?;
            Self::ensure_schema(&mut lease, &target.schema)
                .await
                .map_err(err)?;
        }
        let state = load_json(table, &start.load)?;
        let what = format!("starting a full load of {table} into {target}");
        let mut lease = self.begin_fenced(&what, table, claim).await?;
        let work = async {
            match &create {
                Some(create) => {
                    let name = vec![text(sql::object_name_param(&target))];
                    execute(
                        &mut lease,
                        &sql::drop_table_if_exists(&target),
                        name,
                        || format!("dropping {target} to create it again"),
                    )
                    .await?;
                    batch(&mut lease, create, || {
                        format!("creating {target} on the replica")
                    })
                    .await?;
                }
                None => {
                    batch(&mut lease, &sql::truncate(table), || {
                        format!("TRUNCATE TABLE {table}")
                    })
                    .await?;
                }
            }
            if start.load.mode == LoadMode::InPlace {
                // An earlier shadow load's copy (its swap blocked part-way,
                // or a shadow load started over in place) goes with it.
                drop_shadow(&mut lease, table).await?;
            }
            execute(
                &mut lease,
                sql::BEGIN_LOAD,
                vec![name_param(table), state],
                || format!("recording the pending full load of {table}"),
            )
            .await
            .map(|_| ())
        }
        .await;
        Self::finish(lease, work, &what).await
    }

    pub(super) async fn insert_page(
        &self,
        schema: &TableSchema,
        rows: &[Row],
        load: &PendingLoad,
        claim: &Claim,
    ) -> Result<()> {
        let mut target = schema.clone();
        target.id = load.target(&schema.id);
        let state = load_text(&schema.id, load)?;
        let what = format!("loading {} rows into {}", rows.len(), target.id);
        let path = super::write_path::choose(&self.paths, schema, load.mode == LoadMode::Shadow);
        let plan = load_page_plan(&schema.id, &target, rows, state, path);
        self.run_fenced(&what, &schema.id, claim, plan).await
    }

    pub(super) async fn finish_load(
        &self,
        schema: &TableSchema,
        version: SyncVersion,
        mode: LoadMode,
        claim: &Claim,
    ) -> Result<()> {
        let table = &schema.id;
        let grants = match mode {
            LoadMode::InPlace => Vec::new(),
            LoadMode::Shadow => self.prepare_swap(table).await.map_err(err)?,
        };
        let what = format!("finishing the full load of {table}");
        let change = format!("the swap of {table}");
        let mut lease = self.begin_fenced(&what, table, claim).await?;
        let work = async {
            if mode == LoadMode::Shadow {
                // First: the catalog reads below wait for locks too.
                bound_lock_waits(&mut lease, &change).await?;
                let live_exists = query_rows(
                    &mut lease,
                    sql::TABLE_OBJECT_ID,
                    vec![text(sql::object_name_param(table))],
                    || format!("looking up {table} on the replica"),
                )
                .await?
                .first()
                .and_then(|r| r.try_get::<i32, _>(0).ok().flatten())
                .is_some();
                let key_name = if live_exists {
                    query_rows(
                        &mut lease,
                        sql::PRIMARY_KEY_NAME,
                        vec![text(sql::object_name_param(table))],
                        || format!("reading the primary key's name of {table}"),
                    )
                    .await?
                    .first()
                    .and_then(|r| r.try_get::<&str, _>(0).ok().flatten().map(str::to_string))
                } else {
                    None
                };
                let statements = sql::swap_statements(table);
                let params = sql::swap_params(table);
                for (i, (statement, values)) in statements.iter().zip(params).enumerate() {
                    // Without a live table (dropped by hand) there is
                    // nothing to move aside or drop.
                    if !live_exists && (i == 0 || i == 3) {
                        continue;
                    }
                    let values = values.into_iter().map(text).collect();
                    execute(&mut lease, statement, values, || {
                        format!("swapping the shadow table of {table} in: {statement}")
                    })
                    .await?;
                }
                if let Some(name) = key_name {
                    let values = vec![
                        text(sql::object_name_param(table)),
                        text(table.schema.clone()),
                        text(name),
                    ];
                    execute(&mut lease, sql::RENAME_PRIMARY_KEY, values, || {
                        format!("carrying over the primary key's name of {table}")
                    })
                    .await?;
                }
                for grant in &grants {
                    batch(&mut lease, grant, || format!("carrying over {grant}")).await?;
                }
                unbound_lock_waits(&mut lease, &change).await?;
            }
            write_version(&mut lease, sql::FINISH_LOAD, table, version).await
        }
        .await
        .map_err(|e| {
            lock_waited(
                &change,
                "the load stays pending and its next cycle swaps again",
                e,
            )
        });
        Self::finish(lease, work, &what).await
    }

    /// Builds the live table's nonclustered indexes on the shadow (the
    /// load's time, not the swap's; each statement commits on its own, and
    /// one the shadow has already, from a swap that failed after it, is
    /// skipped) and returns the permission statements to run inside the
    /// swap.
    async fn prepare_swap(&self, table: &TableId) -> std::result::Result<Vec<String>, MssqlError> {
        let mut lease = self.pool.lease().await?;
        let live = vec![text(sql::object_name_param(table))];
        let rows = query_rows(&mut lease, sql::CARRIED_INDEXES, live.clone(), || {
            format!("reading the indexes of {table}")
        })
        .await?;
        let mut indexes: Vec<CarriedIndex> = Vec::new();
        for r in &rows {
            let get = |c: &str| r.try_get::<&str, _>(c).ok().flatten().map(str::to_string);
            let flag = |c: &str| r.try_get::<bool, _>(c).ok().flatten().unwrap_or(false);
            let name = get("index_name").unwrap_or_default();
            if indexes.last().map(|i| &i.name) != Some(&name) {
                indexes.push(CarriedIndex {
                    name: name.clone(),
                    unique: flag("is_unique"),
                    filter: get("filter_definition"),
                    ..CarriedIndex::default()
                });
            }
            if let (Some(index), Some(column)) = (indexes.last_mut(), get("column_name")) {
                if flag("is_included_column") {
                    index.included.push(column);
                } else {
                    index.keys.push((column, flag("is_descending_key")));
                }
            }
        }
        let shadow = table.shadow();
        for index in &indexes {
            let statement = sql::create_index(&shadow, index);
            let values = sql::create_index_params(&shadow, index)
                .into_iter()
                .map(text)
                .collect();
            execute(&mut lease, &statement, values, || {
                format!("building index {} of {table} on its shadow", index.name)
            })
            .await?;
        }
        let rows = query_rows(&mut lease, sql::CARRIED_PERMISSIONS, live, || {
            format!("reading the permissions on {table}")
        })
        .await?;
        let mut grants = Vec::new();
        for r in &rows {
            let get = |c: &str| r.try_get::<&str, _>(c).ok().flatten().unwrap_or_default();
            let statement = sql::grant(
                table,
                get("state_desc"),
                get("permission_name"),
                get("grantee"),
            )
            .ok_or_else(|| {
                MssqlError::Unexpected(format!(
                    "cannot carry over the permission {} {} on {table} to {}",
                    get("state_desc"),
                    get("permission_name"),
                    get("grantee")
                ))
            })?;
            grants.push(statement);
        }
        Ok(grants)
    }

    pub(super) async fn cancel(
        &self,
        table: &TableId,
        version: SyncVersion,
        claim: &Claim,
    ) -> Result<()> {
        let what = format!("cancelling the pending full load of {table}");
        let mut lease = self.begin_fenced(&what, table, claim).await?;
        let work = async {
            drop_shadow(&mut lease, table).await?;
            write_version(&mut lease, sql::FINISH_LOAD, table, version).await
        }
        .await;
        Self::finish(lease, work, &what).await
    }

    pub(super) async fn blockers(&self, table: &TableId) -> Result<Vec<String>> {
        let mut lease = self.pool.lease().await.map_err(err)?;
        let rows = query_rows(
            &mut lease,
            sql::SWAP_BLOCKERS,
            vec![text(sql::object_name_param(table))],
            || format!("looking for what blocks a swap of {table}"),
        )
        .await
        .map_err(err)?;
        Ok(rows
            .iter()
            .filter_map(|r| r.try_get::<&str, _>(0).ok().flatten().map(str::to_string))
            .collect())
    }

    pub(super) async fn schema_bound(&self, table: &TableId) -> Result<Vec<ModuleOp>> {
        let mut lease = self.pool.lease().await.map_err(err)?;
        let rows = query_rows(
            &mut lease,
            sql::SCHEMA_BOUND_DEPENDENTS,
            vec![text(sql::object_name_param(table))],
            || format!("looking for the modules schema-bound to {table}"),
        )
        .await
        .map_err(err)?;
        rows.iter()
            .map(|r| {
                let get = |c: &str| r.try_get::<&str, _>(c).ok().flatten().unwrap_or_default();
                let kind = ModuleKind::from_type_code(get("type")).ok_or_else(|| {
                    Error::Replica(format!(
                        "{}.{} is schema-bound to {table} but is of type {:?}, not a module ctsync knows",
                        get("schema_name"),
                        get("name"),
                        get("type")
                    ))
                })?;
                Ok(ModuleOp::Drop {
                    schema: get("schema_name").to_string(),
                    name: get("name").to_string(),
                    kind,
                })
            })
            .collect()
    }

    pub(super) async fn read_record(&self, table: &TableId) -> Result<ReplicaRecord> {
        let mut lease = self.pool.lease().await.map_err(err)?;
        self.ensure_migrated(&mut lease).await.map_err(err)?;
        let rows = query_rows(
            &mut lease,
            sql::SELECT_RECORD,
            vec![name_param(table)],
            || format!("reading the replica's record of {table}"),
        )
        .await
        .map_err(err)?;
        let Some(row) = rows.first() else {
            return Ok(ReplicaRecord::default());
        };
        // A cursor that cannot be decoded is reported as such, never as a
        // failed read: the core decides what to do (see `Unreadable`).
        let mut unreadable = None;
        let text = |column: usize| row.try_get::<&str, _>(column).ok().flatten();
        let load = decode(text(1), CursorKind::Load, &mut unreadable);
        let backlog = decode(text(2), CursorKind::Backlog, &mut unreadable);
        Ok(ReplicaRecord {
            version: row.try_get::<i64, _>(0).ok().flatten(),
            load,
            backlog,
            unreadable,
        })
    }
}
