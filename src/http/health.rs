//! Liveness, readiness and the Prometheus text. `/readyz` asks every probe
//! (primary, replica, Redis) at once, each bounded to 1 s, and names each
//! one that failed; the same checks run in the background and export
//! `ctsync_dependency_up` for alerting.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpResponse};
use async_trait::async_trait;
use serde_json::json;

use super::HttpState;

/// A dependency whose reachability decides readiness.
#[async_trait]
pub trait Probe: Send + Sync {
    fn name(&self) -> &'static str;
    async fn check(&self) -> Result<(), String>;
}

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// How long one dependency may take to answer a readiness check.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Runs every probe concurrently, each bounded by [`PROBE_TIMEOUT`], and
/// records `ctsync_dependency_up`; results in the probes' order.
pub async fn check_all(probes: &[Arc<dyn Probe>]) -> Vec<(&'static str, Result<(), String>)> {
    let running: Vec<_> = probes
        .iter()
        .map(|probe| {
            let probe = probe.clone();
            let name = probe.name();
            let handle = actix_rt::spawn(async move {
                match tokio::time::timeout(PROBE_TIMEOUT, probe.check()).await {
                    Ok(r) => r,
                    Err(_) => Err(format!("no answer within {} s", PROBE_TIMEOUT.as_secs())),
                }
            });
            (name, handle)
        })
        .collect();
    let mut results = Vec::with_capacity(running.len());
    for (name, handle) in running {
        let result = handle
            .await
            .unwrap_or_else(|e| Err(format!("the check failed: {e}")));
        ctsync_actors::telemetry::dependency_up(name, result.is_ok());
        results.push((name, result));
    }
    results
}

/// Re-checks the dependencies every `every`, so the gauge stays current
/// without anyone calling `/readyz`.
pub fn spawn_dependency_checks(probes: Vec<Arc<dyn Probe>>, every: Duration) {
    actix_rt::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            check_all(&probes).await;
        }
    });
}

/// Names each failing dependency, with why to a caller that sees details
/// (why names hosts; without a token configured, everyone does).
pub async fn readyz(req: actix_web::HttpRequest, shared: web::Data<HttpState>) -> HttpResponse {
    let details = super::Caller::of(&req).details;
    let mut checks = serde_json::Map::new();
    let mut failing = Vec::new();
    for (name, result) in check_all(&shared.probes).await {
        match result {
            Ok(()) => {
                checks.insert(name.into(), json!("ok"));
            }
            Err(e) => {
                failing.push(name);
                let shown = if details {
                    e
                } else {
                    "failing (a token shows why)".into()
                };
                checks.insert(name.into(), json!(shown));
            }
        }
    }
    // Problems that do not make ctsync unready but need an operator.
    let warnings: Vec<String> = shared
        .board
        .ddl_problem()
        .map(|p| {
            if details {
                p
            } else {
                "schema changes need attention (a token shows why)".into()
            }
        })
        .into_iter()
        .collect();
    let body = json!({
        "ready": failing.is_empty(),
        "failing": failing,
        "checks": checks,
        "warnings": warnings,
    });
    if failing.is_empty() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

pub async fn metrics(shared: web::Data<HttpState>) -> HttpResponse {
    match &shared.metrics {
        Some(handle) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4; charset=utf-8")
            .body(handle.render()),
        None => HttpResponse::ServiceUnavailable().body("metrics recorder not installed\n"),
    }
}
