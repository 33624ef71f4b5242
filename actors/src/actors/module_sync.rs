//! ModuleSyncActor: every interval compares views, procedures and functions
//! between primary and replica and writes the differences through the
//! SinkActor — drops first, then creates/alters in passes until no more
//! succeed, so dependencies (a view over a view) sort themselves out. A
//! module that cannot be created is reported without blocking the others.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tracing::{info, warn};

use super::ownership::SingletonLease;

use crate::error::Result;
use crate::modules::{plan, ModuleOp};
use crate::ports::Primary;
use crate::sink::SinkHandle;
use crate::status::StatusBoard;
use crate::telemetry;

pub struct ModuleSyncActor {
    primary: Arc<dyn Primary>,
    sink: SinkHandle,
    board: StatusBoard,
    interval: Duration,
    /// Encrypted modules already warned about.
    warned: BTreeSet<String>,
    /// Modules are synced only while this instance holds this lease.
    lease: SingletonLease,
    /// When the last round started.
    last: Option<tokio::time::Instant>,
}

/// The result of one round.
#[derive(Debug, Default)]
struct Round {
    encrypted: Vec<String>,
    failures: BTreeMap<String, String>,
}

async fn write(sink: &SinkHandle, op: &ModuleOp) -> Result<()> {
    let (action, name) = op.label();
    let result = sink.apply_module(op.clone()).await;
    telemetry::module_sync(action, result.is_ok());
    if result.is_ok() {
        info!(module = %name, action, "module synced to the replica");
    }
    result
}

async fn sync_round(primary: Arc<dyn Primary>, sink: SinkHandle) -> Result<Round> {
    let on_primary = primary.modules().await?;
    let on_replica = sink.modules().await?;
    let plan = plan(&on_primary, &on_replica);
    let mut round = Round {
        encrypted: plan.encrypted,
        ..Round::default()
    };
    // Drops can depend on each other too (schema-bound views): retry them.
    let mut pending = plan.drops;
    for _ in 0..2 {
        let mut failed = Vec::new();
        for op in pending {
            if let Err(e) = write(&sink, &op).await {
                round.failures.insert(op.label().1, e.to_string());
                failed.push(op);
            }
        }
        pending = failed;
    }
    let mut pending = plan.writes;
    loop {
        let before = pending.len();
        let mut failed = Vec::new();
        for op in pending {
            match write(&sink, &op).await {
                Ok(()) => {
                    round.failures.remove(&op.label().1);
                }
                Err(e) => {
                    round.failures.insert(op.label().1, e.to_string());
                    failed.push(op);
                }
            }
        }
        if failed.is_empty() || failed.len() == before {
            break;
        }
        pending = failed;
    }
    Ok(round)
}

impl ModuleSyncActor {
    pub fn new(
        primary: Arc<dyn Primary>,
        sink: SinkHandle,
        board: StatusBoard,
        interval: Duration,
        lease: SingletonLease,
    ) -> Self {
        Self {
            primary,
            sink,
            board,
            interval,
            lease,
            last: None,
            warned: BTreeSet::new(),
        }
    }

    fn run(&mut self, ctx: &mut Context<Self>) {
        if !self.lease.held() {
            // Another instance syncs the modules (or none may right now).
            return;
        }
        let now = tokio::time::Instant::now();
        if self.last.is_some_and(|last| now < last + self.interval) {
            return;
        }
        self.last = Some(now);
        let work = sync_round(self.primary.clone(), self.sink.clone());
        ctx.wait(work.into_actor(self).map(|result, act, _ctx| match result {
            Ok(round) => {
                act.board.set_modules_skipped(round.encrypted.clone());
                for name in round.encrypted {
                    if act.warned.insert(name.clone()) {
                        warn!(module = %name, "module is encrypted on the primary (WITH ENCRYPTION); it cannot be copied and is skipped");
                    }
                }
                let known = act.board.module_errors();
                for (name, error) in &round.failures {
                    if known.get(name) != Some(error) {
                        warn!(module = %name, %error, "module could not be synced to the replica; will retry");
                    }
                }
                telemetry::modules_failing(round.failures.len());
                act.board.set_module_errors(round.failures);
            }
            Err(e) => {
                telemetry::error("module_sync");
                warn!(error = %e, "module sync failed; will retry");
            }
        }));
    }
}

impl Actor for ModuleSyncActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Checked often, run every `interval` while this instance holds
        // the lease (so a new holder starts within a second).
        let tick = self.interval.min(Duration::from_secs(1));
        ctx.run_interval(tick, |act, ctx| act.run(ctx));
    }
}

impl Supervised for ModuleSyncActor {}
