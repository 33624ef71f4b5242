//! The Redis adapter of the state-store port: operator flags, versions,
//! full-load progress and the sanitized endpoint keys, under the public
//! `mssql_sync:*` key names; and the keyspace-notification listener that
//! makes flags act at once; the audit trail of operators' writes.

pub mod audit;
mod flags;
pub mod keyspace;
mod redis_store;
mod scripts;

pub use redis_store::RedisState;
