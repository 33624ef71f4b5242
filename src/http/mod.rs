//! The daemon's one HTTP server: `/metrics`, `/healthz`, `/readyz`, the JSON
//! API under `/api`, and the sync-controller page at `/`. The API changes
//! exactly the Redis keys an operator would.

mod access;
mod api;
mod audit;
mod health;
mod page;
pub mod refusals;
pub mod tokens;
mod verifies;

use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::{web, App, HttpServer};
use ctsync_actors::ports::StateStore;
use ctsync_actors::status::StatusBoard;
use metrics_exporter_prometheus::PrometheusHandle;

pub use access::{Access, Caller, Writes, ALLOW_UNAUTHENTICATED, CSP, NO_TOKEN, READ_ROLE};
pub use health::{check_all, spawn_dependency_checks, Probe};
pub use refusals::Refusals;
pub use tokens::{Role, Tokens, TokensError};
pub use verifies::{Refused, Verifies, MAX_CONCURRENT, RETRY_AFTER_SECS};

/// What the handlers share.
pub struct HttpState {
    pub state: Arc<dyn StateStore>,
    pub board: StatusBoard,
    /// This instance's id (`CTSYNC_INSTANCE_ID`).
    pub instance: String,
    pub probes: Vec<Arc<dyn Probe>>,
    /// `host:port/db` of each endpoint, never credentials.
    pub primary: String,
    pub replica: String,
    pub metrics: Option<PrometheusHandle>,
    /// Token, read-only mode and allowed hosts.
    pub access: Access,
    /// Runs `POST /api/tables/<T>/verify`; `None`: not offered.
    pub verify: Option<Arc<dyn ctsync_actors::verify::Verify>>,
    /// The verifies running (one per table, [`MAX_CONCURRENT`] in all).
    pub verifies: Verifies,
    /// The tables the last `GET /api/tables` listed (whose keys the next
    /// one reads with the statuses, in one round trip).
    pub known_tables: KnownTables,
    /// Where accepted writes and actions are recorded (`mssql_sync:audit`);
    /// `None`: only logged.
    pub audit: Option<Arc<crate::state::RedisState>>,
    /// This minute's refused requests, stored in `mssql_sync:audit:refused`
    /// once it is over (and at shutdown: keep a clone to flush).
    pub refusals: Refusals,
}

/// Table key names remembered between API calls.
#[derive(Debug, Clone, Default)]
pub struct KnownTables(Arc<std::sync::Mutex<Vec<String>>>);

impl KnownTables {
    pub fn names(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set(&self, names: Vec<String>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = names;
    }
}

/// Registers every route; used by the server and by in-process tests.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("")
            .wrap(actix_web::middleware::from_fn(access::guard))
            .route("/metrics", web::get().to(health::metrics))
            .route("/healthz", web::get().to(health::healthz))
            .route("/readyz", web::get().to(health::readyz))
            .route("/api/info", web::get().to(api::info))
            .route("/api/tables", web::get().to(api::list))
            .route("/api/tables/{table}", web::get().to(api::one))
            .route("/api/tables/{table}", web::post().to(api::act))
            .route("/api/tables/{table}/verify", web::post().to(api::verify))
            .route("/", web::get().to(page::index))
            .route("/app.js", web::get().to(page::script))
            .route("/style.css", web::get().to(page::style)),
    );
}

/// HTTP workers (threads). One suffices: every handler is a short async
/// call (Redis, the probes bounded to 1 s), and the one long action, a
/// verify, runs on its own thread, so health and metrics never wait behind
/// it. More workers would not fix a handler that holds its thread: some
/// connections would still be handed to the busy one.
pub const WORKERS: usize = 1;

/// Binds `addr` and starts the server on the current actix system; returns
/// the bound address (useful with port 0) and the server handle.
pub fn serve(
    addr: SocketAddr,
    shared: HttpState,
) -> std::io::Result<(SocketAddr, actix_web::dev::ServerHandle)> {
    refusals::spawn_flusher(shared.refusals.clone(), shared.audit.clone());
    let data = web::Data::new(shared);
    let server = HttpServer::new(move || App::new().app_data(data.clone()).configure(routes))
        .workers(WORKERS)
        .disable_signals()
        .bind(addr)?;
    let bound = server.addrs().first().copied().unwrap_or(addr);
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    Ok((bound, handle))
}
