//! The retention guard: whether CT cleanup (or a TRUNCATE) removed changes
//! a table's stored version has not seen, and how that is said.

use super::Pipeline;
use crate::error::{Error, Result};
use crate::model::{SyncVersion, TableId};

/// `Some(reason)` when CT cleanup (or a TRUNCATE) removed changes after
/// `version`: the stored version is below the table's min valid version.
pub(super) async fn cleanup_passed(
    p: &Pipeline,
    table: &TableId,
    version: SyncVersion,
) -> Result<Option<String>> {
    let min_valid = p
        .primary
        .min_valid_version(table)
        .await?
        .ok_or_else(|| Error::MinValidVersionNull(table.clone()))?;
    if version >= min_valid {
        return Ok(None);
    }
    Ok(Some(cleanup_reason(table, version, min_valid)))
}

/// Why a table whose stored `version` is below `min_valid` is stale.
pub(super) fn cleanup_reason(
    table: &TableId,
    version: SyncVersion,
    min_valid: SyncVersion,
) -> String {
    let key = table.key_name();
    format!(
        "stored version {version} is below the min valid version {min_valid}: change tracking \
         cleanup or a TRUNCATE removed changes that were never applied; force a full load \
         (mssql_sync:force_full_load:{key} = \"true\") or set mssql_sync:version:{key} after a \
         manual copy"
    )
}
