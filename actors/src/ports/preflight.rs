//! The preflight ports `ctsync doctor` runs: what the primary and the
//! replica say about themselves (settings, permissions, versions).

use async_trait::async_trait;
use serde::Serialize;

use crate::error::Result;
use crate::model::TableId;

/// What the primary says about itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrimaryFacts {
    pub database: String,
    pub version: String,
    pub edition: String,
    /// The login's database user (for GRANT statements).
    pub user: String,
    pub change_tracking: bool,
    /// CT retention in seconds; `None` when CT is off or auto cleanup is off.
    pub retention_secs: Option<u64>,
    pub snapshot_isolation: bool,
    pub broker_enabled: bool,
    /// `None`: the queue does not exist; `Some(receive_enabled)`.
    pub queue: Option<bool>,
    /// An event notification sends DDL events to the queue's service.
    pub notification: bool,
    /// User tables: (table, has a primary key, change tracking on).
    pub tables: Vec<(TableId, bool, bool)>,
    /// Columns of tracked tables whose type ctsync cannot replicate.
    pub unsupported: Vec<(TableId, String, String)>,
    /// Permissions the login lacks, as (permission, on what).
    pub missing_permissions: Vec<(String, String)>,
}

impl Default for PrimaryFacts {
    fn default() -> Self {
        Self {
            database: "testct".into(),
            version: "16.0.4135.4".into(),
            edition: "Developer Edition (64-bit)".into(),
            user: "dbo".into(),
            change_tracking: true,
            retention_secs: Some(2 * 86_400),
            snapshot_isolation: true,
            broker_enabled: true,
            queue: Some(true),
            notification: true,
            tables: Vec::new(),
            unsupported: Vec::new(),
            missing_permissions: Vec::new(),
        }
    }
}

/// What the replica says about itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplicaFacts {
    pub database: String,
    pub version: String,
    pub edition: String,
    pub user: String,
    pub missing_permissions: Vec<(String, String)>,
    /// The replica database's compatibility level (OPENJSON needs 130).
    pub compatibility_level: Option<i32>,
}

impl Default for ReplicaFacts {
    fn default() -> Self {
        Self {
            database: "testct".into(),
            version: "16.0.4135.4".into(),
            edition: "Developer Edition (64-bit)".into(),
            user: "dbo".into(),
            missing_permissions: Vec::new(),
            compatibility_level: Some(160),
        }
    }
}

/// Gathers the primary's facts; `queue` is the DDL queue (`schema.name`).
#[async_trait]
pub trait PrimaryPreflight: Send + Sync {
    async fn preflight(&self, queue: Option<&str>) -> Result<PrimaryFacts>;
}

#[async_trait]
pub trait ReplicaPreflight: Send + Sync {
    async fn preflight(&self) -> Result<ReplicaFacts>;
}
