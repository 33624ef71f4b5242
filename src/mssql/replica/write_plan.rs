//! A page's replica transaction as data: the list of requests (statements
//! with their parameters, bulk loads) is built first and executed after, so
//! the requests a page costs can be counted without a server, and the SQL
//! text and declared parameter types can be checked for stability.

use ctsync_actors::model::{Backlog, ChangeBatch, Row, RowKey, SyncVersion, TableId, TableSchema};
use tiberius::ColumnData;

use super::bulk::{self, BULK_LOAD_REQUESTS};
use super::json_rows::{rows_document, stable_json};
use super::version_record::name_param;
use crate::mssql::conn::Lease;
use crate::mssql::pool::execute;
use crate::mssql::sql;
use crate::mssql::MssqlError;

/// How a table's rows are inserted, chosen once per schema (see
/// `super::write_path`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WritePath {
    /// TDS bulk load; `table_lock` only for a shadow table ctsync alone uses.
    Bulk { table_lock: bool },
    /// One `INSERT … SELECT … FROM OPENJSON(@P1)` per page.
    Json,
}

/// One step of a page's transaction.
pub enum Step<'a> {
    /// A parameterized statement: one request (an RPC).
    Execute {
        sql: String,
        params: Vec<ColumnData<'static>>,
        what: String,
    },
    /// A bulk load of `rows` into `target`: [`BULK_LOAD_REQUESTS`] requests.
    BulkLoad {
        target: &'a TableSchema,
        rows: &'a [Row],
        table_lock: bool,
    },
}

impl Step<'_> {
    /// Requests this step sends.
    pub fn requests(&self) -> usize {
        match self {
            Step::Execute { .. } => 1,
            Step::BulkLoad { .. } => BULK_LOAD_REQUESTS,
        }
    }

    /// The SQL text and the declared type of each parameter, as tiberius 0.13
    /// declares them (`None` for a bulk load, which declares nothing: its
    /// column list comes from the target's own metadata).
    pub fn shape(&self) -> Option<(String, Vec<&'static str>)> {
        match self {
            Step::Execute { sql, params, .. } => {
                Some((sql.clone(), params.iter().map(declared_type).collect()))
            }
            Step::BulkLoad { .. } => None,
        }
    }
}

/// The type tiberius 0.13 declares for a parameter (a copy of its internal
/// `ColumnData::type_name`, src/tds/codec/column_data.rs, for the stability
/// tests; only the variants ctsync binds are needed exactly).
pub fn declared_type(p: &ColumnData<'_>) -> &'static str {
    match p {
        ColumnData::U8(_) => "tinyint",
        ColumnData::I16(_) => "smallint",
        ColumnData::I32(_) => "int",
        ColumnData::I64(_) => "bigint",
        ColumnData::F32(_) => "float(24)",
        ColumnData::F64(_) => "float(53)",
        ColumnData::Bit(_) => "bit",
        ColumnData::String(Some(s)) if s.len() > 4_000 => "nvarchar(max)",
        ColumnData::String(_) => "nvarchar(4000)",
        ColumnData::Guid(_) => "uniqueidentifier",
        ColumnData::Binary(Some(b)) if b.len() > 8_000 => "varbinary(max)",
        ColumnData::Binary(_) => "varbinary(8000)",
        ColumnData::Numeric(_) => "numeric(p,s) of the value",
        ColumnData::Xml(_) => "xml",
        ColumnData::DateTime(_) => "datetime",
        ColumnData::SmallDateTime(_) => "smalldatetime",
        ColumnData::Time(_) => "time",
        ColumnData::Date(_) => "date",
        ColumnData::DateTime2(_) => "datetime2",
        ColumnData::DateTimeOffset(_) => "datetimeoffset",
    }
}

/// Requests of a fenced transaction besides its steps: BEGIN, the fence
/// check (`sql::CHECK_FENCE`) and COMMIT.
pub const FENCED_FRAME: usize = 3;

/// The steps of one page's replica transaction.
#[derive(Default)]
pub struct WritePlan<'a> {
    pub steps: Vec<Step<'a>>,
}

impl<'a> WritePlan<'a> {
    /// Requests the whole transaction sends, BEGIN, the fence check and
    /// COMMIT included.
    pub fn requests(&self) -> usize {
        FENCED_FRAME + self.steps.iter().map(Step::requests).sum::<usize>()
    }

    /// Inserts `rows` into `target` by `path`.
    pub fn insert(&mut self, target: &'a TableSchema, rows: &'a [Row], path: WritePath) {
        if rows.is_empty() {
            return;
        }
        self.steps.push(match path {
            WritePath::Bulk { table_lock } => Step::BulkLoad {
                target,
                rows,
                table_lock,
            },
            WritePath::Json => {
                let cols = target.written_columns();
                Step::Execute {
                    sql: sql::insert_json(target),
                    params: vec![stable_json(rows_document(
                        rows.iter().map(Vec::as_slice),
                        &cols,
                    ))],
                    what: format!("inserting {} rows into {}", rows.len(), target.id),
                }
            }
        });
    }

    /// Deletes the rows with `keys` from `schema`'s table.
    pub fn delete(&mut self, schema: &TableSchema, keys: &[RowKey]) -> Result<(), MssqlError> {
        if keys.is_empty() {
            return Ok(());
        }
        let key_defs = schema
            .key_column_defs()
            .ok_or_else(|| MssqlError::Unexpected(format!("table {} has no key", schema.id)))?;
        self.steps.push(Step::Execute {
            sql: sql::delete_json(schema, &key_defs),
            params: vec![stable_json(rows_document(
                keys.iter().map(|k| k.0.as_slice()),
                &key_defs,
            ))],
            what: format!("deleting {} keys from {}", keys.len(), schema.id),
        });
        Ok(())
    }

    /// Runs `statement` with `@P1` = the table's record name and `@P2` =
    /// `value` (the version record's statements).
    pub fn record(
        &mut self,
        statement: &str,
        table: &TableId,
        value: ColumnData<'static>,
        what: String,
    ) {
        self.steps.push(Step::Execute {
            sql: statement.to_string(),
            params: vec![name_param(table), value],
            what,
        });
    }

    /// Records `version` as the table's version on the replica.
    pub fn version(&mut self, table: &TableId, version: SyncVersion) {
        self.record(
            sql::UPSERT_VERSION,
            table,
            ColumnData::I64(Some(version)),
            format!("recording version {version} of {table} on the replica"),
        );
    }

    /// Records where a backlog stands (see [`sql::BACKLOG_PAGE`]).
    pub fn backlog(&mut self, table: &TableId, backlog: &Backlog) -> Result<(), MssqlError> {
        let json = serde_json::to_string(backlog).map_err(|e| {
            MssqlError::Unexpected(format!("encoding the backlog cursor of {table}: {e}"))
        })?;
        self.steps.push(Step::Execute {
            sql: sql::BACKLOG_PAGE.to_string(),
            params: vec![
                name_param(table),
                stable_json(json),
                ColumnData::I64(Some(backlog.since)),
            ],
            what: format!("recording the backlog cursor of {table}"),
        });
        Ok(())
    }

    /// Runs the steps in order on the lease's open transaction. An error
    /// says whether a bulk load failed.
    pub async fn run(self, lease: &mut Lease<'_>) -> Result<(), StepFailed> {
        for step in self.steps {
            let bulk = matches!(step, Step::BulkLoad { .. });
            let result = match step {
                Step::Execute { sql, params, what } => {
                    execute(lease, &sql, params, || what.clone())
                        .await
                        .map(|_| ())
                }
                Step::BulkLoad {
                    target,
                    rows,
                    table_lock,
                } => bulk::load(lease, target, rows, table_lock)
                    .await
                    .map(|_| ()),
            };
            result.map_err(|error| StepFailed { bulk, error })?;
        }
        Ok(())
    }
}

/// A step that failed, and whether it was a bulk load.
pub struct StepFailed {
    pub bulk: bool,
    pub error: MssqlError,
}

/// The plan of one incremental page: delete every changed key, insert the
/// rows that still exist, record the version if the page carries one.
pub fn change_plan<'a>(
    schema: &'a TableSchema,
    change: &'a ChangeBatch,
    path: WritePath,
) -> Result<WritePlan<'a>, MssqlError> {
    let mut plan = WritePlan::default();
    plan.delete(schema, &change.keys)?;
    plan.insert(schema, &change.rows, path);
    if let Some(v) = change.version {
        plan.version(&schema.id, v);
    }
    if let Some(backlog) = &change.backlog {
        plan.backlog(&schema.id, backlog)?;
    }
    Ok(plan)
}

/// One full-load page: the rows into `target` (the live table or its
/// shadow), then the load's new cursor `state` (JSON, padded to a stable
/// declaration; `sql::LOAD_PAGE` trims it) in the same transaction.
pub fn load_page_plan<'a>(
    table: &TableId,
    target: &'a TableSchema,
    rows: &'a [Row],
    state: String,
    path: WritePath,
) -> WritePlan<'a> {
    let mut plan = WritePlan::default();
    plan.insert(target, rows, path);
    plan.record(
        sql::LOAD_PAGE,
        table,
        stable_json(state),
        format!("recording the load cursor of {table}"),
    );
    plan
}
