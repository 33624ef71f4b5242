//! The ports the pipeline talks to, one file per group: the primary (CT
//! reads), the replica (transactional writes and its own version record),
//! the DDL queue, the state store (operator flags and versions), and the
//! checks `verify` and `doctor` run on both databases. Adapters live in the
//! root crate; in-memory doubles live in `memory` (feature `testkit`).
//! `calls` declares every call once for the wrappers around the ports;
//! `limits` is the core's per-call time limit.

pub mod calls;
mod checks;
mod ddl_queue;
pub mod limits;
mod preflight;
mod primary;
mod replica;
mod state;

pub use calls::{Call, Guard, Guarded, Port, Site};
pub use checks::{
    CaughtUp, Checksums, ChunkSum, Difference, DifferenceKind, KeyRange, Report, Verify,
};
pub use ddl_queue::{DdlQueue, InboxMessage, InboxOutcome, QueueMessage};
pub use limits::CallLimits;
pub use preflight::{PrimaryFacts, PrimaryPreflight, ReplicaFacts, ReplicaPreflight};
pub use primary::{ChangeSet, Opened, Primary, Scouted};
pub use replica::{
    Advance, CursorKind, LoadMode, LoadStart, PendingLoad, Replica, ReplicaRecord, Unreadable,
};
pub use state::{CycleKeys, LeaseGrant, LoadProgress, Marker, StateStore, TableFlags};
