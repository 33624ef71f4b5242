//! Installs the Prometheus recorder behind the `metrics` facade (metric
//! names live in `ctsync_actors::telemetry`) and keeps it tidy.

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use ctsync_actors::telemetry::{self as names, BATCH_DURATION};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
static INSTALLING: Mutex<()> = Mutex::new(());

/// Installs the process-wide recorder once and returns its handle (later
/// calls return the same handle).
pub fn install() -> Result<PrometheusHandle, BuildError> {
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(BATCH_DURATION.to_string()),
            &[
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ],
        )?
        .install_recorder()?;
    names::describe();
    let _ = HANDLE.set(handle.clone());
    Ok(handle)
}

/// Runs the recorder's upkeep (histogram maintenance) every few seconds on
/// the current actix system.
pub fn spawn_upkeep(handle: PrometheusHandle) {
    actix_rt::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    });
}
