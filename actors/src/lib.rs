//! ctsync's pipeline core: the model, the ports (primary, replica, state
//! store), the replication rules and the actors that run them, plus
//! in-memory port implementations for tests, demos and benchmarks. It knows
//! nothing of tiberius or Redis.

pub mod actors;
pub mod ddl;
pub mod doctor;
pub mod error;
pub mod fence;
pub mod keys;
pub mod memory;
pub mod model;
pub mod modules;
pub mod ports;
pub mod sink;
pub mod status;
pub mod sync;
pub mod telemetry;
pub mod verify;

pub use error::{Error, Result};
