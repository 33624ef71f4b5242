//! One place that names every metric ctsync emits (`ctsync_` prefix, base
//! units, counters ending in `_total`, low-cardinality labels) and the small
//! helpers that record them, so actors never spell a metric name themselves.

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

pub const SYNCED_VERSION: &str = "ctsync_table_synced_version";
pub const PRIMARY_VERSION: &str = "ctsync_primary_current_version";
pub const LAG_VERSIONS: &str = "ctsync_replication_lag_versions";
pub const LAG_SECONDS: &str = "ctsync_replication_lag_seconds";
pub const ROWS_APPLIED: &str = "ctsync_rows_applied_total";
pub const BATCHES: &str = "ctsync_batches_total";
pub const BATCH_DURATION: &str = "ctsync_batch_duration_seconds";
pub const FULL_LOAD_ROWS: &str = "ctsync_full_load_rows_total";
pub const FULL_LOAD_PROGRESS: &str = "ctsync_full_load_progress_ratio";
pub const TABLE_STATE: &str = "ctsync_table_state";
pub const ACTOR_RESTARTS: &str = "ctsync_actor_restarts_total";
pub const ERRORS: &str = "ctsync_errors_total";
pub const RETENTION: &str = "ctsync_change_retention_seconds";
pub const DDL_EVENTS: &str = "ctsync_ddl_events_total";
pub const DDL_PARKED: &str = "ctsync_ddl_parked_total";
pub const MODULE_SYNC: &str = "ctsync_module_sync_total";
pub const MODULE_FAILING: &str = "ctsync_modules_failing";
pub const RETENTION_AT_RISK: &str = "ctsync_retention_at_risk";
pub const TRACKED_TABLES: &str = "ctsync_tracked_tables";
pub const DISCOVERY_RUNS: &str = "ctsync_discovery_runs_total";
pub const FENCED_WRITES: &str = "ctsync_fenced_writes_total";
pub const REDIS_DATA_LOSS: &str = "ctsync_redis_data_loss_total";
pub const DDL_CAPTURE_STOPPED: &str = "ctsync_ddl_capture_stopped";
pub const DEPENDENCY_UP: &str = "ctsync_dependency_up";
pub const VERIFY_DIFFERENCES: &str = "ctsync_verify_differences";
pub const VERIFY_TIMESTAMP: &str = "ctsync_verify_timestamp_seconds";
pub const LEASES_HELD: &str = "ctsync_leases_held";
pub const TAKEOVERS: &str = "ctsync_lease_takeovers_total";
pub const LEASES_LOST: &str = "ctsync_leases_lost_total";
pub const SCOUT_FAILURES: &str = "ctsync_scout_failures_total";
pub const COPY_TIMEOUTS: &str = "ctsync_change_copy_timeouts_total";
pub const BULK_FALLBACKS: &str = "ctsync_bulk_fallbacks_total";
pub const UNREADABLE_CURSORS: &str = "ctsync_unreadable_cursors_total";
pub const CALL_TIMEOUTS: &str = "ctsync_call_timeouts_total";
pub const HTTP_REFUSED: &str = "ctsync_http_refused_total";

/// Every metric ctsync exports (the README's metric table lists exactly these).
pub const ALL: &[&str] = &[
    SYNCED_VERSION,
    PRIMARY_VERSION,
    LAG_VERSIONS,
    LAG_SECONDS,
    ROWS_APPLIED,
    BATCHES,
    BATCH_DURATION,
    FULL_LOAD_ROWS,
    FULL_LOAD_PROGRESS,
    TABLE_STATE,
    ACTOR_RESTARTS,
    ERRORS,
    RETENTION,
    DDL_EVENTS,
    DDL_PARKED,
    MODULE_SYNC,
    MODULE_FAILING,
    RETENTION_AT_RISK,
    TRACKED_TABLES,
    DISCOVERY_RUNS,
    FENCED_WRITES,
    REDIS_DATA_LOSS,
    DDL_CAPTURE_STOPPED,
    DEPENDENCY_UP,
    VERIFY_DIFFERENCES,
    VERIFY_TIMESTAMP,
    LEASES_HELD,
    TAKEOVERS,
    LEASES_LOST,
    SCOUT_FAILURES,
    COPY_TIMEOUTS,
    BULK_FALLBACKS,
    UNREADABLE_CURSORS,
    CALL_TIMEOUTS,
    HTTP_REFUSED,
];

/// Registers help texts; call once after installing a recorder.
pub fn describe() {
    describe_gauge!(
        SYNCED_VERSION,
        "Last CT version applied to the replica, per table."
    );
    describe_gauge!(
        PRIMARY_VERSION,
        "CHANGE_TRACKING_CURRENT_VERSION() on the primary at the table's last cycle."
    );
    describe_gauge!(
        LAG_VERSIONS,
        "Primary current version minus the table's synced version."
    );
    describe_gauge!(
        LAG_SECONDS,
        "Seconds since the table was last fully caught up (0 while caught up); not derived from commit times."
    );
    describe_counter!(
        ROWS_APPLIED,
        "Rows applied to the replica, by table and op (delete, insert, load)."
    );
    describe_counter!(BATCHES, "Replica batches, by table and result (ok, error).");
    describe_histogram!(BATCH_DURATION, "Duration of one replica batch in seconds.");
    describe_counter!(FULL_LOAD_ROWS, "Rows copied by full loads, per table.");
    describe_gauge!(
        FULL_LOAD_PROGRESS,
        "Progress of the running full load (0..1), per table."
    );
    describe_gauge!(
        TABLE_STATE,
        "1 for the table's current state (paused, full_load, incremental, stale, error), else 0."
    );
    describe_counter!(
        ACTOR_RESTARTS,
        "Supervised restarts of an actor, by actor and table."
    );
    describe_counter!(
        ERRORS,
        "Errors by component (table, discovery, sink, state)."
    );
    describe_gauge!(
        RETENTION,
        "The primary's change tracking retention period in seconds (absent when auto cleanup is off)."
    );
    describe_gauge!(
        RETENTION_AT_RISK,
        "1 when a table has not caught up for more than 80% of the CT retention period: cleanup may soon remove changes it has not applied."
    );
    describe_gauge!(
        TRACKED_TABLES,
        "Change-tracked tables found by the last discovery."
    );
    describe_counter!(DISCOVERY_RUNS, "Discovery runs, by result (ok, error).");
    describe_counter!(
        DDL_EVENTS,
        "DDL queue messages, by event type and result (applied, ignored, parked)."
    );
    describe_counter!(
        DDL_PARKED,
        "DDL messages parked in mssql_sync:ddl_failed because they could not be applied."
    );
    describe_counter!(
        MODULE_SYNC,
        "Module sync writes on the replica, by action (create, alter, drop) and result."
    );
    describe_counter!(
        FENCED_WRITES,
        "Table writes refused because their owner no longer owns the table (retired here, lease lost, or a higher claim on the replica's [ctsync].[fence]), per table."
    );
    describe_counter!(
        REDIS_DATA_LOSS,
        "Times ctsync found that Redis lost its data (its marker key vanished): tables pause until re-enabled."
    );
    describe_counter!(
        HTTP_REFUSED,
        "HTTP requests refused by the access rules, per status (401 no or wrong token, 403 writes off, 415 not JSON, 421 Host not allowed)."
    );
    describe_gauge!(
        DEPENDENCY_UP,
        "1 when the dependency (primary, replica, redis) answered its last readiness check within 1 s, else 0."
    );
    describe_gauge!(
        VERIFY_DIFFERENCES,
        "Rows that differed between primary and replica at the table's last verify (0: equal)."
    );
    describe_gauge!(VERIFY_TIMESTAMP, "Unix time of the table's last verify.");
    describe_gauge!(
        DDL_CAPTURE_STOPPED,
        "1 when Service Broker ended the DDL event notification's conversation: schema changes are no longer received until it is recreated."
    );
    describe_gauge!(
        LEASES_HELD,
        "Leases this instance holds: its tables plus the singletons (module sync, DDL listener)."
    );
    describe_counter!(
        TAKEOVERS,
        "Tables this instance took over after the lease of another instance expired or was given back."
    );
    describe_counter!(
        LEASES_LOST,
        "Table leases this instance lost while running the table (expired, taken, or Redis lost them)."
    );
    describe_counter!(
        BULK_FALLBACKS,
        "Tables switched from bulk copy to INSERT … OPENJSON after a bulk load failed (until their schema changes or the process restarts)."
    );
    describe_counter!(
        UNREADABLE_CURSORS,
        "Cursors of ctsync's record on the replica found unreadable, by table and cursor (load: the load starts over; backlog: the backlog starts over from the stored version)."
    );
    describe_counter!(
        CALL_TIMEOUTS,
        "Port calls the core abandoned after their call limit, by port and method (a hung primary, replica, Redis or DDL queue); each is a transient error of its caller."
    );
    describe_counter!(
        COPY_TIMEOUTS,
        "Change-set copies abandoned after CTSYNC_CHANGE_COPY_TIMEOUT_SECS, per table (each starts over at the next cycle)."
    );
    describe_counter!(
        SCOUT_FAILURES,
        "Times the per-poll scout could not check a table (dropped, or change tracking disabled): the table reads its own changes instead."
    );
    describe_gauge!(
        MODULE_FAILING,
        "Views, procedures and functions that could not be created on the replica."
    );
}

pub fn rows_applied(table: &str, op: &'static str, n: u64) {
    counter!(ROWS_APPLIED, "table" => table.to_string(), "op" => op).increment(n);
}

pub fn batch(table: &str, ok: bool, seconds: f64) {
    let result = if ok { "ok" } else { "error" };
    counter!(BATCHES, "table" => table.to_string(), "result" => result).increment(1);
    histogram!(BATCH_DURATION, "table" => table.to_string()).record(seconds);
}

pub fn versions(table: &str, synced: i64, primary: i64) {
    gauge!(SYNCED_VERSION, "table" => table.to_string()).set(synced as f64);
    gauge!(PRIMARY_VERSION, "table" => table.to_string()).set(primary as f64);
    gauge!(LAG_VERSIONS, "table" => table.to_string()).set((primary - synced).max(0) as f64);
}

pub fn lag_seconds(table: &str, seconds: f64) {
    gauge!(LAG_SECONDS, "table" => table.to_string()).set(seconds);
}

pub fn full_load(table: &str, added: u64, synced: u64, total: u64) {
    counter!(FULL_LOAD_ROWS, "table" => table.to_string()).increment(added);
    let ratio = if total == 0 {
        1.0
    } else {
        (synced as f64 / total as f64).min(1.0)
    };
    gauge!(FULL_LOAD_PROGRESS, "table" => table.to_string()).set(ratio);
}

pub fn table_state(table: &str, current: &str) {
    for state in crate::status::TableState::ALL {
        let v = if state.as_str() == current { 1.0 } else { 0.0 };
        gauge!(TABLE_STATE, "table" => table.to_string(), "state" => state.as_str()).set(v);
    }
}

pub fn actor_restart(actor: &'static str, table: &str) {
    counter!(ACTOR_RESTARTS, "actor" => actor, "table" => table.to_string()).increment(1);
}

/// Records how long the table has not been caught up, and whether CT cleanup
/// could soon overtake it.
pub fn lag(table: &str, seconds: f64, retention: Option<std::time::Duration>) {
    lag_seconds(table, seconds);
    let at_risk = retention.is_some_and(|r| seconds > 0.8 * r.as_secs_f64());
    gauge!(RETENTION_AT_RISK, "table" => table.to_string()).set(if at_risk { 1.0 } else { 0.0 });
}

pub fn retention(retention: Option<std::time::Duration>) {
    if let Some(r) = retention {
        gauge!(RETENTION).set(r.as_secs_f64());
    }
}

pub fn discovery(ok: bool, tables: usize) {
    let result = if ok { "ok" } else { "error" };
    counter!(DISCOVERY_RUNS, "result" => result).increment(1);
    if ok {
        gauge!(TRACKED_TABLES).set(tables as f64);
    }
}

pub fn ddl_event(event_type: &str, result: &'static str) {
    counter!(DDL_EVENTS, "event_type" => event_type.to_string(), "result" => result).increment(1);
    if result == "parked" {
        counter!(DDL_PARKED).increment(1);
    }
}

pub fn module_sync(action: &'static str, ok: bool) {
    let result = if ok { "ok" } else { "error" };
    counter!(MODULE_SYNC, "action" => action, "result" => result).increment(1);
}

pub fn modules_failing(n: usize) {
    gauge!(MODULE_FAILING).set(n as f64);
}

pub fn error(component: &'static str) {
    counter!(ERRORS, "component" => component).increment(1);
}

pub fn fenced_write(e: &crate::error::Error) {
    let table = match e {
        crate::error::Error::Fenced { table, .. } => table.key_name(),
        _ => String::new(),
    };
    counter!(FENCED_WRITES, "table" => table).increment(1);
}

/// A port call abandoned after its call limit (`ports::limits`).
pub fn call_timeout(port: &'static str, method: &'static str) {
    counter!(CALL_TIMEOUTS, "port" => port, "method" => method).increment(1);
}

pub fn redis_data_loss() {
    counter!(REDIS_DATA_LOSS).increment(1);
}

pub fn ddl_capture_stopped(stopped: bool) {
    gauge!(DDL_CAPTURE_STOPPED).set(if stopped { 1.0 } else { 0.0 });
}

pub fn http_refused(status: u16) {
    counter!(HTTP_REFUSED, "status" => status.to_string()).increment(1);
}

pub fn dependency_up(dependency: &'static str, up: bool) {
    gauge!(DEPENDENCY_UP, "dependency" => dependency).set(if up { 1.0 } else { 0.0 });
}

pub fn verified(table: &str, differences: u64, at_millis: u64) {
    gauge!(VERIFY_DIFFERENCES, "table" => table.to_string()).set(differences as f64);
    gauge!(VERIFY_TIMESTAMP, "table" => table.to_string()).set(at_millis as f64 / 1000.0);
}

/// A table's rows switched from bulk copy to INSERT (see
/// [`crate::write_path`]); labelled `schema.table` as it always was.
pub fn bulk_fallback(table: &crate::model::TableId) {
    counter!(BULK_FALLBACKS, "table" => table.to_string()).increment(1);
}

pub fn unreadable_cursor(table: &str, cursor: &'static str) {
    counter!(UNREADABLE_CURSORS, "table" => table.to_string(), "cursor" => cursor).increment(1);
}

pub fn leases_held(n: usize) {
    gauge!(LEASES_HELD).set(n as f64);
}

pub fn takeover() {
    counter!(TAKEOVERS).increment(1);
}

pub fn lease_lost() {
    counter!(LEASES_LOST).increment(1);
}

/// This instance stopped running the table: its per-table gauges go to
/// their neutral values (state all 0, no lag, not at risk), so alerts see
/// only the owning instance's values. (The `metrics` facade cannot delete a
/// series; the counters keep their totals.)
pub fn forget_table(table: &str) {
    for state in crate::status::TableState::ALL {
        gauge!(TABLE_STATE, "table" => table.to_string(), "state" => state.as_str()).set(0.0);
    }
    gauge!(LAG_SECONDS, "table" => table.to_string()).set(0.0);
    gauge!(LAG_VERSIONS, "table" => table.to_string()).set(0.0);
    gauge!(RETENTION_AT_RISK, "table" => table.to_string()).set(0.0);
}
