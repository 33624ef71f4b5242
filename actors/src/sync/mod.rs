//! The replication rules, as plain async functions over the ports: one table
//! cycle (flags → schema → version bookkeeping → full load or incremental
//! sync, with the retention and identity guards). TableActor runs them.

mod board;
mod cycle;
mod full_load;
pub mod idle;
mod incremental;
mod pipeline;
pub mod reconcile;
mod retention;
mod schema_cache;
mod schema_change;
mod unreadable;

pub(crate) use board::hold;
pub use cycle::{run_cycle, Outcome};
pub use pipeline::{Guards, Known, Pipeline, PrimaryFacts};
pub use schema_cache::{SchemaCache, REFRESH_CYCLES};
pub use schema_change::apply_schema_change;
pub use unreadable::UnreadableCursors;

pub use crate::clock::now_millis;
pub use crate::config::SyncConfig;
