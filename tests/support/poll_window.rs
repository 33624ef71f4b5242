//! What a poll costs when the enabled tables are idle and the primary is
//! busy with another table, counted at the ports by method (one port call
//! is one request or round trip in the adapters). Shared by
//! `tests/poll_cost.rs` (which asserts the counts) and the bench (which
//! prints them).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ctsync_actors::actors::{self, Ports};
use ctsync_actors::memory::faults::{FaultPlan, Faulty, Site};
use ctsync_actors::memory::{MemoryPrimary, MemoryReplica, MemoryState};
use ctsync_actors::model::TableId;
use ctsync_actors::ports::{Primary, Replica, StateStore};
use ctsync_actors::status::TableState;
use ctsync_actors::sync::SyncConfig;

use super::generated::{row, schema};

/// A guard against a hang, not a time limit: the tables load on the
/// wall clock, and a debug build on a busy 2-core machine took over two
/// minutes to load a thousand (a CI run failed at the 120 s this once was).
const WAIT: Duration = Duration::from_secs(900);

pub type Calls = BTreeMap<(Site, &'static str), u64>;

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn diff(after: &Calls, before: &Calls) -> Calls {
    after
        .iter()
        .map(|(m, n)| (*m, n - before.get(m).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// The calls of `method` at `site`.
pub fn count(calls: &Calls, site: Site, method: &str) -> u64 {
    calls
        .iter()
        .filter(|((s, m), _)| *s == site && *m == method)
        .map(|(_, n)| *n)
        .sum()
}

/// The calls at any of `sites`.
pub fn at(calls: &Calls, sites: &[Site]) -> u64 {
    calls
        .iter()
        .filter(|((s, _), _)| sites.contains(s))
        .map(|(_, n)| n)
        .sum()
}

/// Each table's stored version (0 when none).
async fn versions(state: &MemoryState, ids: &[TableId]) -> Vec<i64> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push(state.version(id).await.ok().flatten().unwrap_or(0));
    }
    out
}

/// A window of idle polls: the port calls in it, the enabled tables'
/// cycles and the polls (discoveries).
pub struct Window {
    pub calls: Calls,
    pub cycles: u64,
    pub polls: u64,
    /// Each table's stored version at the window's start and end.
    pub versions_before: Vec<i64>,
    pub versions_after: Vec<i64>,
}

/// Runs `tables` enabled, loaded tables (on `config`) while another table
/// takes writes, and returns a window of about ten idle cycles per table
/// (after each table's first idle advance).
pub async fn idle_window(tables: usize, config: SyncConfig) -> Window {
    let primary = Arc::new(MemoryPrimary::new());
    let replica = Arc::new(MemoryReplica::new());
    let state = Arc::new(MemoryState::new());
    let ids: Vec<TableId> = (0..tables)
        .map(|i| TableId::new("dbo", format!("T{i}")))
        .collect();
    for id in &ids {
        let mut s = schema("T");
        s.id = id.clone();
        primary.create_table(s, true);
        primary.insert_many(id, (1..=2).map(row));
        state.set(&format!("mssql_sync:enabled:{}", id.key_name()), "true");
    }
    let busy = schema("Busy");
    primary.create_table(busy.clone(), true);
    let plan = FaultPlan::new();
    let (p, r, s): (Arc<dyn Primary>, Arc<dyn Replica>, Arc<dyn StateStore>) =
        (primary.clone(), replica.clone(), state.clone());
    let run = actors::start(
        Ports {
            primary: Arc::new(Faulty::new(p, plan.clone())),
            replica: Arc::new(Faulty::new(r, plan.clone())),
            state: Arc::new(Faulty::new(s, plan.clone())),
            ddl_queue: None,
        },
        config,
    );
    eventually("every table loaded and syncing", || async {
        ids.iter().all(|id| {
            run.board
                .get(&id.key_name())
                .is_some_and(|s| s.state == TableState::Incremental && s.version.is_some())
        })
    })
    .await;
    let cycles_now = |plan: &FaultPlan| count(&plan.calls(), Site::StateRead, "cycle_keys");
    // Each table's first idle cycle in this process moves its version
    // once (with the other tables'); then its schema is cached and the
    // scout knows its version.
    let loaded = versions(&state, &ids).await;
    let mut n = 0;
    eventually("every table's first idle advance", || {
        n += 1;
        primary.upsert(&busy.id, row(n));
        let (state, ids, loaded) = (&state, &ids, &loaded);
        async move {
            let now = versions(state, ids).await;
            now.iter().zip(loaded).all(|(now, then)| now > then)
        }
    })
    .await;
    let busy_for = |cycles: u64, what: &'static str| {
        let target = cycles_now(&plan) + cycles;
        let (primary, busy, plan) = (primary.clone(), busy.id.clone(), plan.clone());
        async move {
            eventually(what, || {
                n += 1;
                primary.upsert(&busy, row(n));
                let done = cycles_now(&plan) >= target;
                async move { done }
            })
            .await;
        }
    };
    busy_for(2 * (tables as u64 + 1), "a few idle cycles of every table").await;
    let versions_before = versions(&state, &ids).await;
    let calls0 = plan.calls();
    busy_for(10 * (tables as u64 + 1), "ten idle cycles per table").await;
    let calls = diff(&plan.calls(), &calls0);
    run.supervisor.do_send(actors::Shutdown);
    // The enabled tables' cycles (the busy table's paused cycles read only
    // their flags, one per poll).
    let polls = count(&calls, Site::StateWrite, "discovery_start");
    let cycles = count(&calls, Site::StateRead, "cycle_keys").saturating_sub(polls);
    let versions_after = versions(&state, &ids).await;
    Window {
        calls,
        cycles,
        polls,
        versions_before,
        versions_after,
    }
}
