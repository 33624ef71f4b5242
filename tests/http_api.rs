//! The HTTP surface in-process: the JSON API writes exactly the operator's
//! Redis keys (real redis-server), rejects unknown tables/actions without
//! writing, never shows credentials; `/readyz` follows Redis going away and
//! coming back; `/metrics` and the page are served.

mod support;

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{test, web, App};
use ctsync::http::{routes, HttpState, Probe};
use ctsync::mssql::{Endpoint, TlsSettings};
use ctsync::probes::{InProcess, RedisProbe};
use serde_json::{json, Value};
use support::fixtures::*;
use support::{eventually, fast_config, Harness};

const SECRET: &str = "Sup3r-Secret";

fn shared(h: &Harness, board: ctsync_actors::status::StatusBoard) -> HttpState {
    let tls = TlsSettings::default();
    let primary = Endpoint::parse(
        "MSSQL_PRIMARY_URL",
        &format!("mssql://sa:{SECRET}@mssql_primary:1433/testct"),
        tls,
    )
    .expect("url");
    let replica = Endpoint::parse(
        "MSSQL_REPLICA_URL",
        &format!("mssql://sa:{SECRET}@mssql_replica:1433/testct"),
        tls,
    )
    .expect("url");
    let probes: Vec<Arc<dyn Probe>> = vec![
        Arc::new(InProcess("primary")),
        Arc::new(InProcess("replica")),
        Arc::new(RedisProbe(h.state.clone())),
    ];
    HttpState {
        state: h.state.clone(),
        board,
        instance: "test".into(),
        probes,
        primary: primary.to_string(),
        replica: replica.to_string(),
        metrics: Some(ctsync::telemetry::install().expect("recorder")),
        // Writes open without a token: access is tests/security.rs's.
        access: ctsync::http::Access::with_writes(None, false, true, &[]),
        verify: Some(Arc::new(ctsync_actors::verify::Sides {
            primary: h.primary.clone(),
            replica: h.replica.clone(),
            options: ctsync_actors::verify::Options::default(),
        })),
        verifies: Default::default(),
        known_tables: Default::default(),
        refusals: Default::default(),
        audit: Some(h.state.clone()),
    }
}

macro_rules! app {
    ($shared:expr) => {
        test::init_service(
            App::new()
                .app_data(web::Data::new($shared))
                .configure(routes),
        )
        .await
    };
}

/// While it returns true, the loops below go on reading until what they
/// wait for shows up: a failsafe, not a time anything must happen within.
fn failsafe() -> impl Fn() -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    move || std::time::Instant::now() < deadline
}

async fn body_text(resp: actix_web::dev::ServiceResponse) -> String {
    String::from_utf8_lossy(&test::read_body(resp).await).to_string()
}

#[actix_rt::test]
async fn api_lists_tables_and_actions_write_exactly_the_operator_keys() {
    let h = Harness::new();
    let users = user_table();
    h.primary.create_table(users.clone(), true);
    h.primary.create_table(order_line_table(), true);
    h.primary.upsert(&users.id, user(1, "Ann"));
    let run = h.start(fast_config());
    let app = app!(shared(&h, run.board.clone()));
    eventually(Duration::from_secs(10), "tables discovered", || async {
        run.board.get("User").is_some() && run.board.get("sales.OrderLine").is_some()
    })
    .await;

    let resp = test::call_service(
        &app,
        test::TestRequest::get().uri("/api/tables").to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let text = body_text(resp).await;
    assert!(!text.contains(SECRET), "credentials in {text}");
    let body: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(body["primary"], "mssql_primary:1433/testct");
    let names: Vec<&str> = body["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["User", "sales.OrderLine"]);
    assert_eq!(body["tables"][0]["enabled"], false);
    assert_eq!(body["tables"][0]["state"], "paused");
    assert_eq!(body["tables"][0]["enabled_key"], "mssql_sync:enabled:User");
    assert!(
        body["modules"]["failing"].is_object() && body["modules"]["skipped_encrypted"].is_array()
    );

    let post = |table: &str, action: Value| {
        test::TestRequest::post()
            .uri(&format!("/api/tables/{table}"))
            .set_json(action)
            .to_request()
    };
    let resp = test::call_service(&app, post("User", json!({"action": "enable"}))).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        h.get("mssql_sync:enabled:User").await.as_deref(),
        Some("true")
    );
    eventually(Duration::from_secs(10), "enabled table loads", || async {
        h.replica.rows(&users.id) == h.primary.rows(&users.id)
    })
    .await;

    let resp = test::call_service(
        &app,
        post("sales.OrderLine", json!({"action": "force_full_load"})),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        h.get("mssql_sync:force_full_load:sales.OrderLine")
            .await
            .as_deref(),
        Some("true")
    );
    assert_eq!(
        h.get("mssql_sync:enabled:sales.OrderLine").await.as_deref(),
        Some("false")
    );

    let resp = test::call_service(&app, post("User", json!({"action": "disable"}))).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        h.get("mssql_sync:enabled:User").await.as_deref(),
        Some("false")
    );

    // One table's detail view carries versions and progress.
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/api/tables/User")
            .to_request(),
    )
    .await;
    let one: Value = serde_json::from_str(&body_text(resp).await).expect("json");
    assert_eq!(one["progress"]["synced"], 1);
    assert!(one["version"].as_i64().is_some());
}

#[actix_rt::test]
async fn unknown_tables_and_actions_get_4xx_and_write_nothing() {
    let h = Harness::new();
    h.primary.create_table(user_table(), true);
    let run = h.start(fast_config());
    let app = app!(shared(&h, run.board.clone()));
    eventually(Duration::from_secs(10), "discovered", || async {
        run.board.get("User").is_some()
    })
    .await;

    let cases = [
        (
            "Nope",
            Some(json!({"action": "enable"})),
            StatusCode::NOT_FOUND,
        ),
        (
            "User",
            Some(json!({"action": "drop_table"})),
            StatusCode::BAD_REQUEST,
        ),
        (
            "User",
            Some(json!({"verb": "enable"})),
            StatusCode::BAD_REQUEST,
        ),
        // No body says no content type: not a JSON write (415).
        ("User", None, StatusCode::UNSUPPORTED_MEDIA_TYPE),
    ];
    for (table, body, expected) in cases {
        let mut req = test::TestRequest::post().uri(&format!("/api/tables/{table}"));
        if let Some(b) = &body {
            req = req.set_json(b);
        }
        let resp = test::call_service(&app, req.to_request()).await;
        assert_eq!(resp.status(), expected, "{table} {body:?}");
        let text = body_text(resp).await;
        if expected != StatusCode::BAD_REQUEST || body.is_some() {
            let err: Value =
                serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON error body: {text}"));
            assert!(
                err["error"].as_str().is_some_and(|e| !e.is_empty()),
                "{text}"
            );
        }
    }
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/api/tables/Nope")
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(h.get("mssql_sync:enabled:Nope").await, None);
    assert_eq!(
        h.get("mssql_sync:enabled:User").await.as_deref(),
        Some("false")
    );
    assert_eq!(
        h.get("mssql_sync:force_full_load:User").await.as_deref(),
        Some("false")
    );
}

#[actix_rt::test]
async fn readyz_follows_redis_going_away_and_coming_back() {
    let mut h = Harness::new();
    let board = ctsync_actors::status::StatusBoard::default();
    let app = app!(shared(&h, board));
    let ready = |app_status: StatusCode| app_status == StatusCode::OK;

    let resp = test::call_service(&app, test::TestRequest::get().uri("/readyz").to_request()).await;
    assert!(ready(resp.status()));

    h.redis.stop();
    let resp = test::call_service(&app, test::TestRequest::get().uri("/readyz").to_request()).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = serde_json::from_str(&body_text(resp).await).expect("json");
    assert_eq!(body["failing"], json!(["redis"]));
    assert_eq!(body["checks"]["primary"], "ok");

    let resp =
        test::call_service(&app, test::TestRequest::get().uri("/healthz").to_request()).await;
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "liveness does not depend on Redis"
    );

    h.redis.restart();
    let mut ok = false;
    let trying = failsafe();
    while trying() {
        let resp =
            test::call_service(&app, test::TestRequest::get().uri("/readyz").to_request()).await;
        if ready(resp.status()) {
            ok = true;
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "ready again after Redis came back");
}

#[actix_rt::test]
async fn metrics_and_page_are_served() {
    let h = Harness::new();
    let users = user_table();
    h.enabled_table(users.clone(), [user(1, "Ann")]).await;
    let shared = shared(&h, Default::default());
    let run = h.start(fast_config());
    let app = app!(HttpState {
        board: run.board.clone(),
        instance: "test".into(),
        ..shared
    });
    h.wait_loaded(&users.id).await;
    h.primary.upsert(&users.id, user(2, "Bob"));
    eventually(Duration::from_secs(10), "synced", || async {
        h.replica.rows(&users.id).len() == 2
    })
    .await;

    // Gauges are set every cycle; other tests in this process run tables
    // named User too (the recorder is process-wide), so read until the
    // next cycle has set them.
    let mut text = String::new();
    let trying = failsafe();
    while trying() {
        let resp =
            test::call_service(&app, test::TestRequest::get().uri("/metrics").to_request()).await;
        assert_eq!(resp.status(), StatusCode::OK);
        text = body_text(resp).await;
        if text.contains("ctsync_table_state{table=\"User\",state=\"incremental\"} 1") {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    for metric in [
        "ctsync_rows_applied_total{table=\"User\",op=\"insert\"}",
        "ctsync_table_synced_version{table=\"User\"}",
        "ctsync_replication_lag_seconds{table=\"User\"}",
        "ctsync_batch_duration_seconds_bucket",
        "ctsync_table_state{table=\"User\",state=\"incremental\"} 1",
    ] {
        assert!(
            text.contains(metric),
            "{metric} missing from /metrics:\n{text}"
        );
    }

    let resp = test::call_service(&app, test::TestRequest::get().uri("/").to_request()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let page = body_text(resp).await;
    assert!(page.contains("Tracked Tables") && page.contains("/app.js"));
    for asset in ["/app.js", "/style.css"] {
        let resp = test::call_service(&app, test::TestRequest::get().uri(asset).to_request()).await;
        assert_eq!(resp.status(), StatusCode::OK, "{asset}");
    }
}

#[actix_rt::test]
async fn retention_warning_fires_before_cleanup_can_overtake_a_stuck_table() {
    let h = Harness::new();
    let mut risky = user_table();
    risky.id = ctsync_actors::model::TableId::new("dbo", "Risky");
    h.enabled_table(risky.clone(), [user(1, "a")]).await;
    h.primary.set_retention(Some(Duration::from_secs(1)));
    let shared = shared(&h, Default::default());
    let run = h.start(fast_config());
    let app = app!(HttpState {
        board: run.board.clone(),
        instance: "test".into(),
        ..shared
    });
    eventually(Duration::from_secs(10), "loaded", || async {
        h.get("mssql_sync:version:Risky").await.is_some()
    })
    .await;

    // The table stops catching up; 80% of the 1 s retention passes.
    let broken = h.faults.inject(
        ctsync_actors::memory::faults::Rule::reject()
            .port(ctsync_actors::memory::faults::Port::Primary)
            .object(&risky.id)
            .always()
            .message("replica unreachable"),
    );
    let metrics = || async {
        let resp =
            test::call_service(&app, test::TestRequest::get().uri("/metrics").to_request()).await;
        body_text(resp).await
    };
    let mut text = String::new();
    let trying = failsafe();
    while trying() {
        text = metrics().await;
        if text.contains("ctsync_retention_at_risk{table=\"Risky\"} 1") {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        text.contains("ctsync_retention_at_risk{table=\"Risky\"} 1"),
        "{text}"
    );
    // (ctsync_change_retention_seconds is process-wide; other tests here set it too.)
    assert!(text.contains("ctsync_change_retention_seconds"), "{text}");
    let lag = run
        .board
        .get("Risky")
        .map(|s| s.lag_seconds)
        .unwrap_or_default();
    assert!(lag > 0.8, "lag {lag}");

    h.faults.lift(broken);
    let trying = failsafe();
    while trying() {
        text = metrics().await;
        if text.contains("ctsync_retention_at_risk{table=\"Risky\"} 0") {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        text.contains("ctsync_retention_at_risk{table=\"Risky\"} 0"),
        "cleared once caught up: {text}"
    );
}

#[actix_rt::test]
async fn one_bad_version_key_shows_every_table_with_the_key_named() {
    let h = Harness::new();
    h.primary.create_table(user_table(), true);
    h.primary.create_table(order_line_table(), true);
    let run = h.start(fast_config());
    let app = app!(shared(&h, run.board.clone()));
    eventually(Duration::from_secs(10), "discovered", || async {
        run.board.get("User").is_some() && run.board.get("sales.OrderLine").is_some()
    })
    .await;
    for bad in ["abc", "-5"] {
        h.set("mssql_sync:version:User", bad).await;
        let resp = test::call_service(
            &app,
            test::TestRequest::get().uri("/api/tables").to_request(),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::OK, "value {bad}");
        let body: Value = serde_json::from_str(&body_text(resp).await).expect("json");
        let tables = body["tables"].as_array().expect("tables");
        assert_eq!(tables.len(), 2, "{body}");
        let user = tables.iter().find(|t| t["name"] == "User").expect("User");
        let error = user["last_error"].as_str().unwrap_or_default();
        assert!(
            error.contains("mssql_sync:version:User") && error.contains(bad),
            "{error}"
        );
        assert!(user["version"].is_null());
        let other = tables
            .iter()
            .find(|t| t["name"] == "sales.OrderLine")
            .expect("OrderLine");
        assert!(other["last_error"].is_null(), "{other}");
    }
}

#[actix_rt::test]
async fn the_api_says_why_discovery_fails_instead_of_showing_no_tables() {
    use ctsync_actors::memory::faults::{Fault, FaultPlan, Faulty, Site};
    use ctsync_actors::ports::{Primary, Replica};
    let h = Harness::new();
    h.primary.create_table(user_table(), true);
    let plan = FaultPlan::new();
    for _ in 0..1_000 {
        plan.push(Site::PrimaryMeta, Fault::Reject);
    }
    let primary: Arc<dyn Primary> = h.primary.clone();
    let replica: Arc<dyn Replica> = h.replica.clone();
    let run = ctsync_actors::actors::start(
        ctsync_actors::actors::Ports {
            primary: Arc::new(Faulty::new(primary, plan.clone())),
            replica,
            state: h.state.clone(),
            ddl_queue: None,
        },
        fast_config(),
    );
    let app = app!(shared(&h, run.board.clone()));
    let mut body = Value::Null;
    let trying = failsafe();
    while trying() {
        body = test::call_and_read_body_json(
            &app,
            test::TestRequest::get().uri("/api/tables").to_request(),
        )
        .await;
        if !body["discovery_error"].is_null() {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        body["discovery_error"]
            .as_str()
            .is_some_and(|e| e.contains("injected")),
        "{body}"
    );
    assert_eq!(body["tables"], json!([]));
    plan.clear();
    eventually(Duration::from_secs(10), "discovery works again", || async {
        run.board.get("User").is_some() && run.board.discovery_error().is_none()
    })
    .await;
}

#[actix_rt::test]
async fn verify_through_the_api_reports_and_records_the_result() {
    let h = Harness::new();
    let users = user_table();
    h.enabled_table(users.clone(), (1..=300).map(|i| user(i, "n")))
        .await;
    let run = h.start(fast_config());
    h.wait_loaded(&users.id).await;
    h.wait_equal(&users.id).await;
    let app = app!(shared(&h, run.board.clone()));
    let report: Value = test::call_and_read_body_json(
        &app,
        test::TestRequest::post()
            .uri("/api/tables/User/verify")
            .set_json(json!({}))
            .to_request(),
    )
    .await;
    assert_eq!(report["total_differences"], 0, "{report}");
    assert_eq!(report["rows_primary"], 300);
    let view: Value = test::call_and_read_body_json(
        &app,
        test::TestRequest::get()
            .uri("/api/tables/User")
            .to_request(),
    )
    .await;
    assert_eq!(view["verified"]["equal"], true, "{view}");
    let metrics = body_text(
        test::call_service(&app, test::TestRequest::get().uri("/metrics").to_request()).await,
    )
    .await;
    assert!(
        metrics.contains("ctsync_verify_differences{table=\"User\"} 0"),
        "{metrics}"
    );
}

/// `GET /api/tables` reads Redis once: every instance's statuses together
/// with the keys of the tables it knows (a table seen for the first time
/// costs one more read, once).
#[actix_rt::test]
async fn the_table_list_is_one_redis_round_trip() {
    use ctsync_actors::memory::faults::{FaultPlan, Faulty, Site};
    let h = Harness::new();
    let users = user_table();
    h.primary.create_table(users.clone(), true);
    h.primary.create_table(order_line_table(), true);
    let run = h.start(fast_config());
    eventually(Duration::from_secs(10), "tables discovered", || async {
        run.board.get("User").is_some() && run.board.get("sales.OrderLine").is_some()
    })
    .await;
    let plan = FaultPlan::new();
    let inner: Arc<dyn ctsync_actors::ports::StateStore> = h.state.clone();
    let counted: Arc<dyn ctsync_actors::ports::StateStore> =
        Arc::new(Faulty::new(inner, plan.clone()));
    let app = app!(HttpState {
        state: counted,
        ..shared(&h, run.board.clone())
    });
    let mut per_call = Vec::new();
    for _ in 0..3 {
        let before: u64 = plan.calls().values().sum();
        let resp = test::call_service(
            &app,
            test::TestRequest::get().uri("/api/tables").to_request(),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::OK);
        let body: Value = serde_json::from_str(&body_text(resp).await).expect("json");
        assert_eq!(body["tables"].as_array().map(Vec::len), Some(2));
        per_call.push(plan.calls().values().sum::<u64>() - before);
    }
    assert_eq!(per_call, [1, 1, 1], "{:?}", plan.calls());
    assert_eq!(
        plan.calls()
            .get(&(Site::StateRead, "statuses_and_keys"))
            .copied(),
        Some(3)
    );
}
