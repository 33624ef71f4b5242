//! Brings ctsync's own objects on the replica (`[ctsync]`) to the schema
//! version this build expects: every migration newer than the recorded
//! version runs, in order, in one transaction under an exclusive
//! application lock, so concurrent instances never race and a failed
//! upgrade changes nothing. A replica newer than this build is refused.

use tiberius::ColumnData;
use tracing::info;

use crate::mssql::conn::Lease;
use crate::mssql::pool::{batch, begin_transaction, end_transaction, execute, query_rows};
use crate::mssql::sql;
use crate::mssql::MssqlError;

/// Runs the pending migrations; returns the schema version reached.
pub async fn migrate(lease: &mut Lease<'_>) -> Result<i32, MssqlError> {
    let result = run(lease).await;
    if result.is_err() && lease.is_open() {
        let _ = end_transaction(lease, sql::ROLLBACK, || "rolling back the migration".into()).await;
        lease.discard();
    }
    result
}

async fn run(lease: &mut Lease<'_>) -> Result<i32, MssqlError> {
    begin_transaction(lease, sql::MIGRATION_BEGIN, || {
        "locking and preparing the [ctsync] schema on the replica".into()
    })
    .await?;
    let rows = query_rows(lease, sql::SELECT_SCHEMA_VERSION, vec![], || {
        "reading [ctsync].[schema_version]".into()
    })
    .await?;
    let current = rows
        .first()
        .and_then(|r| r.try_get::<i32, _>(0).ok().flatten())
        .unwrap_or(0);
    let latest = sql::latest_schema_version();
    if current > latest {
        return Err(MssqlError::Unexpected(format!(
            "the replica's [ctsync] objects are at schema version {current}, newer than this \
             ctsync knows ({latest}); run a ctsync at least as new as the one that upgraded them"
        )));
    }
    for m in sql::MIGRATIONS.iter().filter(|m| m.version > current) {
        info!(
            version = m.version,
            what = m.description,
            "migrating the replica's [ctsync] schema"
        );
        for text in m.batches {
            batch(lease, text, || {
                format!("[ctsync] migration {}: {text}", m.version)
            })
            .await?;
        }
        execute(
            lease,
            sql::SET_SCHEMA_VERSION,
            vec![ColumnData::I32(Some(m.version))],
            || format!("recording [ctsync] schema version {}", m.version),
        )
        .await?;
    }
    end_transaction(lease, sql::COMMIT, || {
        "committing the [ctsync] migration".into()
    })
    .await?;
    Ok(latest)
}
