//! Liveness, readiness and the Prometheus text. `/readyz` asks every probe
//! (primary, replica, Redis) and names each one that failed.

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

async fn run(probe: Arc<dyn Probe>) -> (&'static str, Result<(), String>) {
    let name = probe.name();
    let result = match tokio::time::timeout(Duration::from_secs(3), probe.check()).await {
        Ok(r) => r,
        Err(_) => Err("no answer within 3 s".into()),
    };
    (name, result)
}

pub async fn readyz(shared: web::Data<HttpState>) -> HttpResponse {
    let mut checks = serde_json::Map::new();
    let mut failing = Vec::new();
    for probe in &shared.probes {
        let (name, result) = run(probe.clone()).await;
        match result {
            Ok(()) => {
                checks.insert(name.into(), json!("ok"));
            }
            Err(e) => {
                failing.push(name);
                checks.insert(name.into(), json!(e));
            }
        }
    }
    // Problems that do not make ctsync unready but need an operator.
    let warnings: Vec<String> = shared.board.ddl_problem().into_iter().collect();
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
