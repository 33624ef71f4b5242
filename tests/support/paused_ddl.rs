//! The `User` table loaded and syncing on a paused clock, with the DDL
//! listener on the daemon's pauses and one-second rounds: what the tests of
//! blocked renames and of the inbox's order start from.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use ctsync_actors::actors::{self, ListenerConfig, Ports, Running};
use ctsync_actors::memory::faults::{self, FaultPlan};
use ctsync_actors::memory::{MemoryDdlQueue, MemoryPrimary, MemoryReplica, MemoryState};
use ctsync_actors::model::TableId;

use super::fast_config;
use super::fixtures::{user, user_table};

/// An actix system on a current-thread runtime whose clock is paused.
pub fn paused_system() -> actix_rt::SystemRunner {
    actix_rt::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a current-thread runtime")
    })
}

/// Sleeps (simulated time) in small steps until `check` holds, at most `limit`.
pub async fn until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A DDL event of `dbo` as EVENTDATA.
pub fn event(event_type: &str, body: &str) -> String {
    format!(
        "<EVENT_INSTANCE><EventType>{event_type}</EventType><DatabaseName>testct</DatabaseName>\
         <SchemaName>dbo</SchemaName>{body}</EVENT_INSTANCE>"
    )
}

pub fn rename_table_event(from: &str, to: &str) -> String {
    event(
        "RENAME",
        &format!(
            "<ObjectName>{from}</ObjectName><ObjectType>TABLE</ObjectType>\
             <NewObjectName>{to}</NewObjectName>"
        ),
    )
}

pub fn rename_column_event(table: &str, from: &str, to: &str) -> String {
    event(
        "RENAME",
        &format!(
            "<ObjectName>{from}</ObjectName><ObjectType>COLUMN</ObjectType>\
             <NewObjectName>{to}</NewObjectName><TargetObjectName>{table}</TargetObjectName>\
             <TargetObjectType>TABLE</TargetObjectType>"
        ),
    )
}

/// The pipeline over in-memory ports with `User` (3 rows) loaded.
pub struct Users {
    pub primary: Arc<MemoryPrimary>,
    pub replica: Arc<MemoryReplica>,
    pub state: Arc<MemoryState>,
    pub queue: Arc<MemoryDdlQueue>,
    pub users_id: TableId,
    /// The name the tests rename `User` to.
    pub member: TableId,
    pub run: Running,
}

impl Users {
    /// Starts the pipeline (its ports wrapped in `plan`'s faults, if any)
    /// and waits until `User` is loaded.
    pub async fn loaded(plan: Option<&Arc<FaultPlan>>) -> Self {
        let primary = Arc::new(MemoryPrimary::new());
        let replica = Arc::new(MemoryReplica::new());
        let state = Arc::new(MemoryState::new());
        let queue = Arc::new(MemoryDdlQueue::new());
        let users = user_table();
        let users_id = users.id.clone();
        primary.create_table(users, true);
        primary.insert_many(&users_id, (1..=3).map(|i| user(i, "n")));
        state.set("mssql_sync:enabled:User", "true");
        let mut config = fast_config();
        // The daemon's pauses (30 s doubling up to 10 min), one-second rounds.
        config.ddl_listener = ListenerConfig {
            wait: Duration::from_secs(1),
            ..ListenerConfig::default()
        };
        config.poll_interval = Duration::from_secs(1);
        let ports = Ports {
            primary: primary.clone(),
            replica: replica.clone(),
            state: state.clone(),
            ddl_queue: Some(queue.clone()),
        };
        let ports = match plan {
            Some(plan) => faults::wrap(ports, plan),
            None => ports,
        };
        let run = actors::start(ports, config);
        until(Duration::from_secs(60), "loaded", || {
            replica.rows(&users_id).len() == 3
        })
        .await;
        Self {
            primary,
            replica,
            state,
            queue,
            users_id,
            member: TableId::new("dbo", "Member"),
            run,
        }
    }
}
