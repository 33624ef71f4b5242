//! The JSON API behind the page. `GET /api/tables` lists every discovered
//! table, whichever instance runs it (their statuses are published in
//! Redis), with its flags (read from Redis), versions, lag, state, progress,
//! last error and owning instance; `POST /api/tables/{table}` with
//! `{"action": …}` sets exactly the operator's Redis key. Unknown tables or
//! actions get a 4xx and write nothing. Where tokens are configured, a
//! caller without one sees no error text, reasons or host names.

use actix_web::{web, HttpRequest, HttpResponse};
use ctsync_actors::keys;
use ctsync_actors::model::TableId;
use ctsync_actors::status::TableStatus;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::HttpState;

#[derive(Serialize)]
struct Progress {
    synced: u64,
    total: u64,
}

#[derive(Serialize)]
struct TableView {
    name: String,
    schema: String,
    table: String,
    enabled: bool,
    force_full_load: bool,
    version: Option<i64>,
    primary_version: Option<i64>,
    lag_versions: Option<i64>,
    lag_seconds: f64,
    state: &'static str,
    progress: Option<Progress>,
    last_error: Option<String>,
    reason: Option<String>,
    restarts: u64,
    rows_applied: u64,
    enabled_key: String,
    verified: Option<ctsync_actors::verify::Summary>,
    /// The instance that runs the table.
    instance: String,
}

impl TableView {
    /// The row as a caller without a token sees it: no error text, no
    /// reason, no instance (a host name, by default).
    fn public(mut self) -> Self {
        self.last_error = None;
        self.reason = None;
        self.instance = String::new();
        self
    }
}

/// The rows as `caller` may see them.
fn shown(caller: &super::Caller, views: Vec<TableView>) -> Vec<TableView> {
    if caller.details {
        views
    } else {
        views.into_iter().map(TableView::public).collect()
    }
}

/// What every caller may see of a text: it when details are shown, else
/// nothing.
fn detail<T>(caller: &super::Caller, value: T) -> Option<T> {
    caller.details.then_some(value)
}

/// A failure as `caller` may see it: a 503's text names Redis's address,
/// so a caller without details gets the fact only.
fn guarded(caller: &super::Caller, response: HttpResponse) -> HttpResponse {
    if caller.details || response.status() != actix_web::http::StatusCode::SERVICE_UNAVAILABLE {
        return response;
    }
    error(
        response.status(),
        "Redis is unreachable (a token shows why)".into(),
    )
}

fn error(status: actix_web::http::StatusCode, message: String) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": message }))
}

fn redis_unavailable(e: ctsync_actors::Error) -> HttpResponse {
    error(
        actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
        format!("Redis is unreachable: {e}"),
    )
}

/// Every table any live instance runs, with its status and instance.
async fn known(
    shared: &HttpState,
) -> Result<std::collections::BTreeMap<String, (TableStatus, String)>, HttpResponse> {
    let published = shared.state.statuses().await.map_err(redis_unavailable)?;
    Ok(ctsync_actors::status::merge_published(
        &shared.instance,
        shared.board.snapshot(),
        &published,
    ))
}

/// The table's status and instance, from this instance's board or, for a
/// table another instance runs, from what that one published.
async fn find(shared: &HttpState, name: &str) -> Result<(TableStatus, String), HttpResponse> {
    if let Some(status) = shared.board.get(name) {
        return Ok((status, shared.instance.clone()));
    }
    known(shared)
        .await?
        .remove(name)
        .ok_or_else(|| unknown_table(name))
}

/// One table's row, from its status and its keys (read for many tables at
/// once by `StateStore::table_keys`).
fn view(
    name: &str,
    id: &TableId,
    (status, instance): (TableStatus, String),
    (flags, raw_version): (ctsync_actors::ports::TableFlags, Option<String>),
) -> TableView {
    // One table's unreadable version key is that table's error, shown on
    // its row; it never hides the other tables.
    let (version, key_error) = match keys::parse_version(&keys::version(id), raw_version.as_deref())
    {
        Ok(v) => (v, None),
        Err(e) => (None, Some(e.to_string())),
    };
    TableView {
        name: name.to_string(),
        schema: id.schema.clone(),
        table: id.name.clone(),
        enabled: flags.enabled,
        force_full_load: flags.force_full_load,
        version,
        primary_version: status.primary_version,
        lag_versions: status.lag_versions,
        lag_seconds: status.lag_seconds,
        state: status.state.as_str(),
        progress: status
            .progress
            .map(|(synced, total)| Progress { synced, total }),
        last_error: key_error.or(status.last_error),
        reason: status.reason,
        restarts: status.restarts,
        rows_applied: status.rows_applied,
        enabled_key: keys::enabled(id),
        verified: status.verified,
        instance,
    }
}

/// The rows of `found` tables, with every table's keys read in one round
/// trip.
async fn views(
    shared: &HttpState,
    found: Vec<(String, (TableStatus, String))>,
) -> Result<Vec<TableView>, HttpResponse> {
    let found: Vec<(String, TableId, (TableStatus, String))> = found
        .into_iter()
        .filter_map(|(name, f)| TableId::from_key_name(&name).map(|id| (name, id, f)))
        .collect();
    let ids: Vec<TableId> = found.iter().map(|(_, id, _)| id.clone()).collect();
    let keys = shared
        .state
        .table_keys(&ids)
        .await
        .map_err(redis_unavailable)?;
    Ok(found
        .into_iter()
        .zip(keys)
        .map(|((name, id, f), k)| view(&name, &id, f, k))
        .collect())
}

/// Every table's row in one Redis round trip: the statuses every instance
/// published, read together with the keys of the tables known from the
/// last call (and this instance's own); a table seen for the first time
/// costs one more read of its keys.
async fn all_views(shared: &HttpState) -> Result<Vec<TableView>, HttpResponse> {
    let board = shared.board.snapshot();
    let guess: Vec<(String, TableId)> = shared
        .known_tables
        .names()
        .into_iter()
        .chain(board.keys().cloned())
        .collect::<std::collections::BTreeSet<String>>()
        .into_iter()
        .filter_map(|name| TableId::from_key_name(&name).map(|id| (name, id)))
        .collect();
    let ids: Vec<TableId> = guess.iter().map(|(_, id)| id.clone()).collect();
    let (published, keys) = shared
        .state
        .statuses_and_keys(&ids)
        .await
        .map_err(redis_unavailable)?;
    let all = ctsync_actors::status::merge_published(&shared.instance, board, &published);
    let mut by_name: std::collections::HashMap<String, _> =
        guess.into_iter().map(|(name, _)| name).zip(keys).collect();
    let missing: Vec<(String, TableId)> = all
        .keys()
        .filter(|name| !by_name.contains_key(*name))
        .filter_map(|name| TableId::from_key_name(name).map(|id| (name.clone(), id)))
        .collect();
    if !missing.is_empty() {
        let ids: Vec<TableId> = missing.iter().map(|(_, id)| id.clone()).collect();
        let more = shared
            .state
            .table_keys(&ids)
            .await
            .map_err(redis_unavailable)?;
        by_name.extend(missing.into_iter().map(|(name, _)| name).zip(more));
    }
    shared.known_tables.set(all.keys().cloned().collect());
    Ok(all
        .into_iter()
        .filter_map(|(name, found)| {
            let id = TableId::from_key_name(&name)?;
            let keys = by_name.remove(&name)?;
            Some(view(&name, &id, found, keys))
        })
        .collect())
}

pub async fn info(req: HttpRequest, shared: web::Data<HttpState>) -> HttpResponse {
    let caller = super::Caller::of(&req);
    HttpResponse::Ok().json(json!({
        "primary": detail(&caller, &shared.primary),
        "replica": detail(&caller, &shared.replica),
        "writes": shared.access.writes_for(&caller),
        "caller": caller,
    }))
}

pub async fn list(req: HttpRequest, shared: web::Data<HttpState>) -> HttpResponse {
    let caller = super::Caller::of(&req);
    let tables = match all_views(&shared).await {
        Ok(tables) => shown(&caller, tables),
        Err(response) => return guarded(&caller, response),
    };
    let modules = if caller.details {
        json!({
            "failing": shared.board.module_errors(),
            "skipped_encrypted": shared.board.modules_skipped(),
        })
    } else {
        json!({
            "failing_count": shared.board.module_errors().len(),
            "skipped_encrypted_count": shared.board.modules_skipped().len(),
        })
    };
    HttpResponse::Ok().json(json!({
        "primary": detail(&caller, &shared.primary),
        "replica": detail(&caller, &shared.replica),
        // The instance that answered (each shows every instance's tables).
        "instance": detail(&caller, &shared.instance),
        // Whether the page's controls can act, and why not.
        "writes": shared.access.writes_for(&caller),
        // The token's name and role, and whether details are shown.
        "caller": caller,
        "tables": tables,
        // Unix ms when ctsync last found that Redis had lost its data.
        "redis_data_lost_at": shared.board.redis_data_lost_at(),
        // Why the last discovery failed (e.g. the primary cannot be reached).
        "discovery_error": detail(&caller, shared.board.discovery_error()).flatten(),
        // Why DDL events are no longer received (with the fix-up SQL), and
        // renames that wait for a lock on the replica.
        "ddl_capture_problem": detail(&caller, shared.board.ddl_problem()).flatten(),
        "modules": modules,
    }))
}

fn unknown_table(name: &str) -> HttpResponse {
    error(
        actix_web::http::StatusCode::NOT_FOUND,
        format!("unknown table '{name}': it is not change-tracked on the primary (or not discovered yet)"),
    )
}

pub async fn one(
    req: HttpRequest,
    shared: web::Data<HttpState>,
    path: web::Path<String>,
) -> HttpResponse {
    let caller = super::Caller::of(&req);
    let name = path.into_inner();
    let found = match find(&shared, &name).await {
        Ok(found) => found,
        Err(response) => return guarded(&caller, response),
    };
    match views(&shared, vec![(name.clone(), found)]).await {
        Ok(v) if v.len() == 1 => HttpResponse::Ok().json(shown(&caller, v).remove(0)),
        Ok(_) => unknown_table(&name),
        Err(response) => guarded(&caller, response),
    }
}

#[derive(Deserialize)]
pub struct ActionBody {
    action: String,
}

pub async fn act(
    req: HttpRequest,
    shared: web::Data<HttpState>,
    path: web::Path<String>,
    body: Option<web::Json<ActionBody>>,
) -> HttpResponse {
    let name = path.into_inner();
    let Some(body) = body else {
        return error(
            actix_web::http::StatusCode::BAD_REQUEST,
            "expected a JSON body {\"action\": \"enable\" | \"disable\" | \"force_full_load\"}"
                .into(),
        );
    };
    let action = body.action.as_str();
    if !matches!(action, "enable" | "disable" | "force_full_load") {
        return error(
            actix_web::http::StatusCode::BAD_REQUEST,
            format!("unknown action '{action}'; use enable, disable or force_full_load"),
        );
    }
    if let Err(response) = find(&shared, &name).await {
        return response;
    }
    let Some(id) = TableId::from_key_name(&name) else {
        return unknown_table(&name);
    };
    let (result, key, value) = match action {
        "enable" => (
            shared.state.set_enabled(&id, true).await,
            keys::enabled(&id),
            "true",
        ),
        "disable" => (
            shared.state.set_enabled(&id, false).await,
            keys::enabled(&id),
            "false",
        ),
        _ => (
            shared.state.request_full_load(&id).await,
            keys::force_full_load(&id),
            "true",
        ),
    };
    super::audit::record(
        &shared,
        &req,
        action,
        &name,
        format!("{key}={value}"),
        &result,
    )
    .await;
    match result {
        Ok(()) => HttpResponse::Ok()
            .json(json!({ "table": name, "action": action, "key": key, "value": value })),
        Err(e) => error(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("Redis is unreachable: {e}"),
        ),
    }
}

/// `POST /api/tables/<T>/verify`: compares the table between primary and
/// replica (see `ctsync verify`) on the verify thread, records the result
/// on the board and in the metrics, and answers the report. A second
/// verify of the table meanwhile gets 409; one past the global limit, 429
/// with `Retry-After`.
pub async fn verify(
    req: HttpRequest,
    shared: web::Data<HttpState>,
    path: web::Path<String>,
) -> HttpResponse {
    use actix_web::http::StatusCode;
    let name = path.into_inner();
    if let Err(response) = find(&shared, &name).await {
        return response;
    }
    let (Some(verify), Some(id)) = (shared.verify.clone(), TableId::from_key_name(&name)) else {
        return error(
            StatusCode::NOT_IMPLEMENTED,
            "this ctsync does not offer verify".into(),
        );
    };
    let slot = match shared.verifies.claim(&name) {
        Ok(slot) => slot,
        Err(refused @ super::verifies::Refused::Running(_)) => {
            return error(StatusCode::CONFLICT, refused.to_string())
        }
        Err(refused @ super::verifies::Refused::Busy { .. }) => {
            return HttpResponse::TooManyRequests()
                .insert_header((
                    actix_web::http::header::RETRY_AFTER,
                    super::verifies::RETRY_AFTER_SECS.to_string(),
                ))
                .json(json!({ "error": refused.to_string() }))
        }
    };
    let board = shared.board.clone();
    let table = name.clone();
    // Recorded by the verify itself, so a client that leaves early still
    // gets its result on the page.
    let done = shared.verifies.run(slot, async move {
        let report = verify.verify(&id).await?;
        let summary = ctsync_actors::verify::Summary::of(&report);
        ctsync_actors::telemetry::verified(&table, summary.differences, summary.at);
        // Shown on the board of the instance that runs the table (on
        // another instance's, the metric and this answer carry it).
        if board.get(&table).is_some() {
            board.update(&table, |s| s.verified = Some(summary));
        }
        Ok::<_, ctsync_actors::Error>(report)
    });
    let done = done.await;
    let (detail, outcome) = match &done {
        Ok(Ok(report)) => (
            format!(
                "{} differences",
                ctsync_actors::verify::Summary::of(report).differences
            ),
            Ok(()),
        ),
        Ok(Err(e)) => (String::new(), Err(e.to_string())),
        Err(_) => (
            String::new(),
            Err("the verify thread is not running".into()),
        ),
    };
    super::audit::record(&shared, &req, "verify", &name, detail, &outcome).await;
    match done {
        Ok(Ok(report)) => HttpResponse::Ok().json(report),
        Ok(Err(e)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("verify of {name} failed: {e}"),
        ),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "verify of {name} did not finish: the verify thread is not running (see the log)"
            ),
        ),
    }
}
