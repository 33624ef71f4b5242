//! ctsync's pipeline core: the model, the ports (primary, replica, state
//! store), the replication rules and the actors that run them, plus
//! in-memory port implementations for tests, demos and benchmarks. It knows
//! nothing of tiberius or Redis.
//!
//! The in-memory doubles (`memory`) are behind the `testkit` feature: the
//! `ctsync` binary holds none of them. The root crate enables it through
//! its dev-dependency on this crate, so its tests, benchmarks and the demo
//! (and `cargo test --workspace`, `cargo clippy --all-targets`) build them.

pub mod actors;
pub mod clock;
pub mod config;
pub mod ddl;
pub mod doctor;
pub mod error;
pub mod fence;
pub mod keys;
#[cfg(feature = "testkit")]
pub mod memory;
pub mod model;
pub mod modules;
pub mod ports;
pub mod sink;
pub mod status;
pub mod sync;
pub mod telemetry;
pub mod verify;
pub mod write_path;

pub use error::{Error, Result};
