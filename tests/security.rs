//! Only operators can steer it: the API token on every write (401 without,
//! 403 in read-only mode), the `Host` allowlist (421) that leaves probes
//! and metrics reachable by IP, hardening headers, log lines that never
//! carry raw control characters, a bounded `/readyz` with a hung SQL
//! Server, EVENTDATA bombs parked at once, and `rediss://` accepted.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{test, web, App};
use ctsync::config::LogFormat;
use ctsync::http::{routes, Access, HttpState, Probe};
use ctsync::mssql::{Endpoint, MssqlPrimary, Pool, TlsSettings};
use ctsync::probes::{PrimaryProbe, RedisProbe};
use ctsync::state::RedisState;
use ctsync_actors::model::TableId;
use serde_json::json;
use support::fixtures::*;
use support::{eventually, fast_config, Harness};

const TOKEN: &str = "0p3rator-T0ken";

fn shared(h: &Harness, board: ctsync_actors::status::StatusBoard, access: Access) -> HttpState {
    HttpState {
        state: h.state.clone(),
        board,
        instance: "test".into(),
        probes: vec![Arc::new(RedisProbe(h.state.clone())) as Arc<dyn Probe>],
        primary: "p:1433/testct".into(),
        replica: "r:1433/testct".into(),
        metrics: Some(ctsync::telemetry::install().expect("recorder")),
        access,
        verify: None,
        known_tables: Default::default(),
    }
}

fn hosts() -> Vec<String> {
    vec!["localhost".into(), "127.0.0.1".into()]
}

async fn started(h: &Harness) -> ctsync_actors::actors::Running {
    h.primary.create_table(user_table(), true);
    let run = h.start(fast_config());
    eventually(Duration::from_secs(10), "discovered", || async {
        run.board.get("User").is_some()
    })
    .await;
    run
}

fn enable(token: Option<&str>, host: &str) -> test::TestRequest {
    let mut req = test::TestRequest::post()
        .uri("/api/tables/User")
        .insert_header(("Host", host))
        .set_json(json!({"action": "enable"}));
    if let Some(t) = token {
        req = req.insert_header(("Authorization", format!("Bearer {t}")));
    }
    req
}

#[actix_rt::test]
async fn writes_need_the_token_and_nothing_is_written_without_it() {
    let h = Harness::new();
    let run = started(&h).await;
    let access = Access::new(Some(TOKEN.into()), false, &hosts());
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(shared(&h, run.board.clone(), access)))
            .configure(routes),
    )
    .await;
    for token in [
        None,
        Some("wrong"),
        Some("0p3rator-T0ke"),
        Some("0p3rator-T0ken!"),
    ] {
        let resp = test::call_service(&app, enable(token, "localhost:8080").to_request()).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{token:?}");
        assert!(resp.headers().contains_key("www-authenticate"));
        assert_eq!(
            h.get("mssql_sync:enabled:User").await.as_deref(),
            Some("false")
        );
    }
    // Reads need no token.
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/api/tables")
            .insert_header(("Host", "localhost"))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = test::call_service(&app, enable(Some(TOKEN), "localhost:8080").to_request()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        h.get("mssql_sync:enabled:User").await.as_deref(),
        Some("true")
    );
}

#[actix_rt::test]
async fn read_only_mode_refuses_every_write() {
    let h = Harness::new();
    let run = started(&h).await;
    let access = Access::new(Some(TOKEN.into()), true, &hosts());
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(shared(&h, run.board.clone(), access)))
            .configure(routes),
    )
    .await;
    let resp = test::call_service(&app, enable(Some(TOKEN), "localhost").to_request()).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        h.get("mssql_sync:enabled:User").await.as_deref(),
        Some("false")
    );
}

#[actix_rt::test]
async fn a_foreign_host_gets_421_on_the_page_and_api_but_probes_and_metrics_answer() {
    let h = Harness::new();
    let run = started(&h).await;
    let access = Access::new(None, false, &hosts());
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(shared(&h, run.board.clone(), access)))
            .configure(routes),
    )
    .await;
    for path in ["/", "/api/tables", "/api/tables/User", "/app.js"] {
        let resp = test::call_service(
            &app,
            test::TestRequest::get()
                .uri(path)
                .insert_header(("Host", "rebind.evil.example"))
                .to_request(),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::MISDIRECTED_REQUEST, "{path}");
        let body = String::from_utf8_lossy(&test::read_body(resp).await).to_string();
        assert!(body.contains("CTSYNC_ALLOWED_HOSTS"), "{body}");
    }
    let resp = test::call_service(&app, enable(None, "rebind.evil.example").to_request()).await;
    assert_eq!(resp.status(), StatusCode::MISDIRECTED_REQUEST);
    assert_eq!(
        h.get("mssql_sync:enabled:User").await.as_deref(),
        Some("false")
    );
    for path in ["/metrics", "/healthz", "/readyz"] {
        let resp = test::call_service(
            &app,
            test::TestRequest::get()
                .uri(path)
                .insert_header(("Host", "10.1.2.3:8080"))
                .to_request(),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
    }
    // The page and its hardening headers.
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/")
            .insert_header(("Host", "127.0.0.1:8080"))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(header("x-frame-options"), "DENY");
    assert_eq!(header("x-content-type-options"), "nosniff");
    let csp = header("content-security-policy");
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    let page = String::from_utf8_lossy(&test::read_body(resp).await).to_string();
    assert!(
        !page.contains("<script>") && !page.contains("style=\""),
        "no inline script or style"
    );
}

/// Collects log output.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[::core::prelude::v1::test]
fn a_table_named_with_newline_and_escape_gives_one_escaped_log_line() {
    let table = TableId::new("dbo", "evil\nINFO forged line\u{1b}[31mred");
    for format in [LogFormat::Text, LogFormat::Json] {
        let out = Captured::default();
        let subscriber = ctsync::logging::subscriber("info", format, out.clone(), false);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(table = %table, "tracking table");
            tracing::warn!("cycle of {table} failed");
        });
        let text = String::from_utf8(out.0.lock().expect("log").clone()).expect("utf-8");
        assert_eq!(text.lines().count(), 2, "{format:?}: {text}");
        assert!(!text.contains('\u{1b}'), "{format:?}: raw ESC in {text:?}");
        assert!(
            text.contains("evil\\nINFO forged line"),
            "{format:?}: {text}"
        );
        println!("{format:?}: {}", text.lines().next().unwrap_or_default());
    }
}

#[actix_rt::test]
async fn readyz_answers_503_in_time_when_sql_server_hangs() {
    let h = Harness::new();
    let (_server, addr) = support::hung::hung_server();
    let url = format!("mssql://sa:x@{}:{}/testct", addr.ip(), addr.port());
    let endpoint = Endpoint::parse("MSSQL_PRIMARY_URL", &url, TlsSettings::default()).expect("url");
    let primary = Arc::new(MssqlPrimary::new(Pool::new(endpoint, 1)));
    let mut state = shared(&h, Default::default(), Access::default());
    state.probes = vec![
        Arc::new(PrimaryProbe(primary)),
        Arc::new(RedisProbe(h.state.clone())),
    ];
    let app =
        test::init_service(App::new().app_data(web::Data::new(state)).configure(routes)).await;
    let began = Instant::now();
    let resp = test::call_service(&app, test::TestRequest::get().uri("/readyz").to_request()).await;
    let took = began.elapsed();
    println!(
        "/readyz with a hung SQL Server: {:.3} s",
        took.as_secs_f64()
    );
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value =
        serde_json::from_str(&String::from_utf8_lossy(&test::read_body(resp).await)).expect("json");
    assert_eq!(body["failing"], json!(["primary"]));
    // What ended the wait on the hung server is the probe's own 1 s bound
    // (the login would have waited 30 s), whatever a busy machine adds.
    assert_eq!(body["checks"]["primary"], "no answer within 1 s", "{body}");
    assert_eq!(body["checks"]["redis"], "ok", "{body}");
}

#[actix_rt::test]
async fn a_megabyte_of_nested_eventdata_is_parked_at_once() {
    let h = Harness::new();
    let _run = h.start(fast_config());
    let bomb = format!(
        "<EVENT_INSTANCE>{}{}</EVENT_INSTANCE>",
        "<a>".repeat(150_000),
        "</a>".repeat(150_000)
    );
    assert!(bomb.len() > 1_000_000);
    let began = Instant::now();
    h.queue.push_event(&bomb);
    eventually(Duration::from_secs(60), "the message is parked", || async {
        !h.replica.inbox_parked().is_empty()
    })
    .await;
    let took = began.elapsed();
    println!(
        "1 MB nested EVENTDATA parked in {:.3} s",
        took.as_secs_f64()
    );
    // At once because unread: refused by its size before any parsing.
    let reason = &h.replica.inbox_parked()[0].1;
    assert!(
        reason.contains("more than the") && reason.contains("not parsed"),
        "{reason}"
    );
}

#[::core::prelude::v1::test]
fn rediss_urls_are_accepted() {
    assert!(RedisState::new("rediss://:secret@redis.example:6380/").is_ok());
}

/// Issue 28 item 12: flags stay lenient ("true" in any case, spaces
/// ignored, is on; anything else is off) but a value written otherwise
/// than "true" or "false" is said once per key and value, with how it is
/// read, so " TRUE" (on) or "1" (off) never acts silently. Before, both
/// were read without a word.
#[actix_rt::test]
async fn a_flag_written_otherwise_than_documented_is_said_once() {
    use ctsync_actors::ports::StateStore;
    let redis = support::RedisServer::start();
    let state = RedisState::new(&redis.url()).expect("url");
    let table = TableId::new("dbo", "User");
    let out = Captured::default();
    let subscriber = ctsync::logging::subscriber("warn", LogFormat::Text, out.clone(), false);
    let _guard = tracing::subscriber::set_default(subscriber);
    let said = |needle: &str| {
        let text = String::from_utf8(out.0.lock().expect("log").clone()).expect("utf-8");
        text.lines().filter(|l| l.contains(needle)).count()
    };
    for (value, on) in [
        ("true", true),
        (" TRUE", true),
        ("1", false),
        ("false", false),
    ] {
        state
            .set("mssql_sync:enabled:User", value)
            .await
            .expect("SET");
        for _ in 0..3 {
            let flags = state.flags(&table).await.expect("flags");
            assert_eq!(flags.enabled, on, "{value:?}");
            let keys = state.cycle_keys(&table).await.expect("keys");
            assert_eq!(keys.flags.enabled, on, "{value:?}");
        }
    }
    assert_eq!(said("mssql_sync:enabled:User"), 2, "one line per odd value");
    assert_eq!(said("\" TRUE\""), 1);
    assert_eq!(said("read_as=\"on\""), 1);
    assert_eq!(said("\"1\""), 1);
    assert_eq!(said("read_as=\"off\""), 1);
}
