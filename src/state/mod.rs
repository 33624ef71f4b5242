//! The Redis adapter of the state-store port: operator flags, versions,
//! full-load progress and the sanitized endpoint keys, under the public
//! `mssql_sync:*` key names.

mod redis_store;

pub use redis_store::RedisState;
