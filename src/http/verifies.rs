//! Verifies started over HTTP: one per table at a time, at most
//! [`MAX_CONCURRENT`] in all, each run on a thread of its own beside the
//! HTTP worker (a checksum of a whole table must never hold up `/healthz`).

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::{mpsc, Semaphore};

/// Verifies running at once over HTTP. Each reads a whole table on both
/// servers (a connection of each pool for its length), so a few at most.
pub const MAX_CONCURRENT: usize = 2;

/// Seconds a refused verify is told to wait (`Retry-After`).
pub const RETRY_AFTER_SECS: u64 = 30;

/// Why a verify was not started.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    #[error("a verify of {0} is already running; its result shows on the page (and in /api/tables/{0}) when it ends")]
    Running(String),
    #[error("{limit} verifies are already running (the limit): retry in {RETRY_AFTER_SECS} s")]
    Busy { limit: usize },
}

type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The running verifies and the thread they run on.
pub struct Verifies {
    limit: usize,
    permits: Arc<Semaphore>,
    running: Arc<Mutex<BTreeSet<String>>>,
    runner: OnceLock<mpsc::UnboundedSender<Job>>,
}

impl Default for Verifies {
    fn default() -> Self {
        Self::new(MAX_CONCURRENT)
    }
}

/// A started verify's claim on its table and on one of the permits;
/// released when dropped.
pub struct Slot {
    table: String,
    running: Arc<Mutex<BTreeSet<String>>>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.table);
    }
}

impl Verifies {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            permits: Arc::new(Semaphore::new(limit)),
            running: Default::default(),
            runner: OnceLock::new(),
        }
    }

    /// Claims `table`, or says why not (it runs already, or the limit is
    /// reached); never waits.
    pub fn claim(&self, table: &str) -> Result<Slot, Refused> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if running.contains(table) {
            return Err(Refused::Running(table.to_string()));
        }
        let permit = self
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refused::Busy { limit: self.limit })?;
        running.insert(table.to_string());
        Ok(Slot {
            table: table.to_string(),
            running: self.running.clone(),
            _permit: permit,
        })
    }

    /// Runs `work` on the verify thread (started at the first verify; it
    /// lives as long as this), holding `slot` until it ends, even if the
    /// client that asked has gone.
    pub fn run<T: Send + 'static>(
        &self,
        slot: Slot,
        work: impl Future<Output = T> + Send + 'static,
    ) -> tokio::sync::oneshot::Receiver<T> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::pin(async move {
            let out = work.await;
            drop(slot);
            // The client may have gone; the work is done either way.
            let _ = done.send(out);
        });
        // A runner that stopped (it cannot, but if it did) drops the job,
        // and the caller sees its result channel closed.
        let _ = self.runner().send(job);
        result
    }

    fn runner(&self) -> &mpsc::UnboundedSender<Job> {
        self.runner.get_or_init(|| {
            let (jobs, mut next) = mpsc::unbounded_channel::<Job>();
            let started = std::thread::Builder::new()
                .name("ctsync-verify".into())
                .spawn(move || {
                    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    else {
                        tracing::error!("cannot start the verify runtime: verifies over HTTP fail");
                        return;
                    };
                    runtime.block_on(async move {
                        while let Some(job) = next.recv().await {
                            tokio::spawn(job);
                        }
                    });
                });
            if let Err(e) = started {
                tracing::error!(error = %e, "cannot start the verify thread: verifies over HTTP fail");
            }
            jobs
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_per_table_and_a_global_limit() {
        let v = Verifies::new(2);
        let a = v.claim("A").expect("A");
        assert_eq!(v.claim("A").err(), Some(Refused::Running("A".into())));
        let _b = v.claim("B").expect("B");
        assert_eq!(v.claim("C").err(), Some(Refused::Busy { limit: 2 }));
        drop(a);
        assert!(v.claim("A").is_ok());
    }
}
