//! Readiness probes for the real dependencies: the primary and the replica
//! (`SELECT 1`) and Redis (`PING`).

use std::sync::Arc;

use async_trait::async_trait;

use crate::http::Probe;
use crate::mssql::{MssqlPrimary, MssqlReplica};
use crate::state::RedisState;

pub struct PrimaryProbe(pub Arc<MssqlPrimary>);
pub struct ReplicaProbe(pub Arc<MssqlReplica>);
pub struct RedisProbe(pub Arc<RedisState>);

#[async_trait]
impl Probe for PrimaryProbe {
    fn name(&self) -> &'static str {
        "primary"
    }
    async fn check(&self) -> Result<(), String> {
        self.0.ping().await.map_err(|e| e.to_string())
    }
}

#[async_trait]
impl Probe for ReplicaProbe {
    fn name(&self) -> &'static str {
        "replica"
    }
    async fn check(&self) -> Result<(), String> {
        self.0.ping().await.map_err(|e| e.to_string())
    }
}

#[async_trait]
impl Probe for RedisProbe {
    fn name(&self) -> &'static str {
        "redis"
    }
    async fn check(&self) -> Result<(), String> {
        self.0.ping().await.map_err(|e| e.to_string())
    }
}

/// A dependency that is always there (the in-memory ports of the demo).
pub struct InProcess(pub &'static str);

#[async_trait]
impl Probe for InProcess {
    fn name(&self) -> &'static str {
        self.0
    }
    async fn check(&self) -> Result<(), String> {
        Ok(())
    }
}
