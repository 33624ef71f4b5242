//! Graceful stop for the daemon and the demo: one future that resolves on
//! SIGTERM or SIGINT, and the bounded stop sequence (the pipeline first,
//! then the HTTP server), so a stop takes seconds in every state — idle,
//! mid-load, mid-backlog, SQL Server hung, Redis down — and says in one
//! line what it interrupted.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use ctsync_actors::actors::Running;
use tracing::info;

/// How long the pipeline may take to stop: loads and backlogs stop at the
/// next page; whatever still waits on a dependency then is abandoned.
pub const PIPELINE_GRACE: Duration = Duration::from_secs(3);
/// How long the HTTP server may take to finish its requests.
pub const HTTP_GRACE: Duration = Duration::from_secs(1);

/// SIGTERM and SIGINT, caught from the moment [`Signals::install`]
/// returns: one that arrives before [`Signals::recv`] waits is kept, so a
/// stop requested while the daemon still starts is a graceful one too.
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers (inside a Tokio runtime).
    pub fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        })
    }

    /// Resolves on the first SIGTERM or SIGINT; returns its name.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// Resolves on the first SIGTERM or SIGINT after its first poll; returns
/// its name.
pub async fn signal() -> anyhow::Result<&'static str> {
    Ok(Signals::install()?.recv().await)
}

/// Stops the pipeline and then the HTTP server, each within its grace
/// period, and logs what was interrupted.
pub async fn stop(running: &Running, server: Option<actix_web::dev::ServerHandle>) {
    let began = Instant::now();
    let report = running.stop(PIPELINE_GRACE).await;
    if let Some(server) = server {
        let _ = tokio::time::timeout(HTTP_GRACE, server.stop(true)).await;
    }
    info!(
        seconds = began.elapsed().as_secs_f64(),
        "{}",
        report.summary()
    );
}
