//! Only operators can steer it: every write JSON only (415 for forms and
//! no-cors requests, on every write and action endpoint, in-process and
//! through `ctsync run`; the demo's own tests probe the demo), the API
//! token on every write (401 without; 403 in read-only mode and, by
//! default, when no token is set), the `Host` allowlist (421) that leaves
//! probes and metrics reachable by IP, verifies one per table and bounded
//! while health answers, hardening headers, log lines that never carry raw
//! control characters, a bounded `/readyz` with a hung SQL Server,
//! EVENTDATA bombs parked at once, and `rediss://` accepted.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
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
use ctsync_actors::verify::{Report, Verify};
use serde_json::json;
use support::daemon::Daemon;
use support::fixtures::*;
use support::http_client::{self, Request};
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
        verifies: Default::default(),
        known_tables: Default::default(),
        refusals: Default::default(),
        audit: Some(h.state.clone()),
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
        Some(""),
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
    // The scheme in any case (RFC 7235), as some clients send it.
    for scheme in ["bearer", "BEARER", "BeArEr"] {
        let resp = test::call_service(
            &app,
            test::TestRequest::post()
                .uri("/api/tables/User")
                .insert_header(("Host", "localhost"))
                .insert_header(("Authorization", format!("{scheme}  {TOKEN}")))
                .set_json(json!({"action": "disable"}))
                .to_request(),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::OK, "{scheme}");
    }
    assert_eq!(
        h.get("mssql_sync:enabled:User").await.as_deref(),
        Some("false")
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

/// The HTTP server the daemon runs, on a free loopback port.
fn serve(shared: HttpState) -> SocketAddr {
    let (addr, _handle) =
        ctsync::http::serve("127.0.0.1:0".parse().expect("addr"), shared).expect("bind");
    addr
}

/// The access rules `ctsync run` builds from these settings (and a bind
/// address of 127.0.0.1:8080).
fn access_from(settings: &[(&'static str, &str)]) -> Access {
    let source: BTreeMap<&'static str, String> =
        settings.iter().map(|(k, v)| (*k, v.to_string())).collect();
    ctsync::config::http_access(&source, &"127.0.0.1:8080".parse().expect("addr")).expect("access")
}

/// Counts the verifies that reached the sides.
struct Counted(Arc<AtomicUsize>, Arc<dyn Verify>);

#[async_trait::async_trait]
impl Verify for Counted {
    async fn verify(&self, table: &TableId) -> ctsync_actors::Result<Report> {
        self.0.fetch_add(1, Ordering::SeqCst);
        self.1.verify(table).await
    }
}

fn sides(h: &Harness) -> Arc<dyn Verify> {
    Arc::new(ctsync_actors::verify::Sides {
        primary: h.primary.clone(),
        replica: h.replica.clone(),
        options: ctsync_actors::verify::Options::default(),
    })
}

async fn flag(h: &Harness) -> (Option<String>, Option<String>) {
    (
        h.get("mssql_sync:enabled:User").await,
        h.get("mssql_sync:force_full_load:User").await,
    )
}

/// Issue 28 item 2: without a token (the default of `ctsync run`) every
/// write and action answers 403 naming the settings that open it, and the
/// table list says so for the page; with the opt-in set they work. Before,
/// writes needed nothing.
#[actix_rt::test]
async fn without_a_token_writes_are_refused_naming_the_settings_unless_opted_in() {
    let h = Harness::new();
    let run = started(&h).await;
    let verifies = Arc::new(AtomicUsize::new(0));
    let mut state = shared(&h, run.board.clone(), access_from(&[]));
    state.verify = Some(Arc::new(Counted(verifies.clone(), sides(&h))));
    let addr = serve(state);
    let before = flag(&h).await;
    for (path, body) in http_client::write_endpoints("User") {
        let r = Request::new(format!("POST {path} {body}"), "POST", &path)
            .json(&body)
            .send(addr)
            .await;
        assert_eq!(r.status, 403, "{path} {body}: {}", r.body);
        for setting in [
            "CTSYNC_API_TOKEN",
            "CTSYNC_API_TOKEN_FILE",
            "CTSYNC_API_ALLOW_UNAUTHENTICATED_WRITES=true",
        ] {
            assert!(r.body.contains(setting), "{path}: {}", r.body);
        }
    }
    assert_eq!(flag(&h).await, before, "nothing written");
    assert_eq!(verifies.load(Ordering::SeqCst), 0, "no verify started");
    let list = Request::get("/api/tables").send(addr).await;
    let list: serde_json::Value = serde_json::from_str(&list.body).expect("json");
    assert_eq!(list["writes"]["enabled"], false, "{list}");
    assert_eq!(list["writes"]["disabled_reason"], ctsync::http::NO_TOKEN);

    let open = serve(shared(
        &h,
        run.board.clone(),
        access_from(&[("CTSYNC_API_ALLOW_UNAUTHENTICATED_WRITES", "true")]),
    ));
    let r = Request::new("opted-in enable", "POST", "/api/tables/User")
        .json(&json!({"action": "enable"}))
        .send(open)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        h.get("mssql_sync:enabled:User").await.as_deref(),
        Some("true")
    );
}

/// Issue 28 item 1: what a page of another origin can send (form posts,
/// multipart, `text/plain`, a no-cors fetch without a JSON content type)
/// and a rebound name (`Host: evil.example`) are refused on every write
/// and action endpoint, whichever the access rules, token or not; nothing
/// is written and no verify starts. Before, the verify endpoint took any
/// body and content type.
#[actix_rt::test]
async fn cross_site_requests_are_refused_on_every_write_and_action_endpoint() {
    let h = Harness::new();
    let run = started(&h).await;
    let verifies = Arc::new(AtomicUsize::new(0));
    let cases = [
        (
            "opted in, no token",
            access_from(&[("CTSYNC_API_ALLOW_UNAUTHENTICATED_WRITES", "true")]),
            None,
        ),
        (
            "token",
            access_from(&[("CTSYNC_API_TOKEN", TOKEN)]),
            Some(format!("Bearer {TOKEN}")),
        ),
        ("default", access_from(&[]), None),
    ];
    let before = flag(&h).await;
    for (what, access, authorization) in cases {
        let mut state = shared(&h, run.board.clone(), access);
        state.verify = Some(Arc::new(Counted(verifies.clone(), sides(&h))));
        let addr = serve(state);
        println!("{what}:");
        let probes = http_client::cross_site_probes("User", authorization.as_deref());
        assert_eq!(probes.len(), 24);
        http_client::refused(addr, &probes).await;
        assert_eq!(flag(&h).await, before, "{what}: nothing written");
        assert_eq!(verifies.load(Ordering::SeqCst), 0, "{what}: no verify");
    }
}

/// A verify that blocks the thread it runs on until released: what a
/// checksum of a whole table computed in process does to its thread.
struct Held {
    entered: tokio::sync::mpsc::UnboundedSender<String>,
    release: Mutex<std::sync::mpsc::Receiver<()>>,
    inner: Arc<dyn Verify>,
}

#[async_trait::async_trait]
impl Verify for Held {
    async fn verify(&self, table: &TableId) -> ctsync_actors::Result<Report> {
        let _ = self.entered.send(table.to_string());
        let _ = self
            .release
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .recv();
        self.inner.verify(table).await
    }
}

/// Issue 28 item 1: while a verify holds its thread, `/healthz` and
/// `/metrics` answer; a second verify of the same table gets 409 naming
/// it, one past the global limit 429 with `Retry-After`; the held ones
/// then finish. Before, the verify ran on the one HTTP worker, which
/// then answered nothing until it ended, and verifies were unbounded.
#[actix_rt::test]
async fn a_held_verify_leaves_health_and_metrics_answering_and_verifies_are_bounded() {
    assert_eq!(ctsync::http::WORKERS, 1);
    assert_eq!(ctsync::http::MAX_CONCURRENT, 2);
    let h = Harness::new();
    let users = user_table();
    h.enabled_table(users.clone(), [user(1, "Ann"), user(2, "Bob")])
        .await;
    h.enabled_table(order_line_table(), [order_line(1, 1, 5, None)])
        .await;
    h.enabled_table(all_types_table(), [all_types_row(1, false)])
        .await;
    let run = h.start(fast_config());
    for table in [user_table(), order_line_table(), all_types_table()] {
        h.wait_loaded(&table.id).await;
    }
    let (entered, mut entries) = tokio::sync::mpsc::unbounded_channel();
    let (release, held) = std::sync::mpsc::channel();
    let mut state = shared(
        &h,
        run.board.clone(),
        access_from(&[("CTSYNC_API_TOKEN", TOKEN)]),
    );
    state.verify = Some(Arc::new(Held {
        entered,
        release: Mutex::new(held),
        inner: sides(&h),
    }));
    let addr = serve(state);
    let verify = |table: &str| {
        Request::new(
            format!("verify {table}"),
            "POST",
            format!("/api/tables/{table}/verify"),
        )
        .bearer(TOKEN)
        .json(&json!({}))
    };
    let first = actix_rt::spawn(verify("User").sent(addr));
    let in_verify = tokio::time::timeout(http_client::FAILSAFE, entries.recv())
        .await
        .expect("the verify of User started");
    assert_eq!(in_verify.as_deref(), Some("dbo.User"));

    for path in ["/healthz", "/metrics"] {
        let r = Request::get(path).send(addr).await;
        assert_eq!(r.status, 200, "{path} while a verify is held: {}", r.body);
    }
    let again = verify("User").send(addr).await;
    assert_eq!(again.status, 409, "{}", again.body);
    assert!(
        again.body.contains("verify of User is already running"),
        "{}",
        again.body
    );
    // Two more tables at once: one takes the second slot (and waits behind
    // the held verify), the other is over the limit and answers at once.
    let mut b = actix_rt::spawn(verify("sales.OrderLine").sent(addr));
    let mut c = actix_rt::spawn(verify("AllTypes").sent(addr));
    let (busy, admitted) = tokio::select! {
        r = &mut b => (r.expect("OrderLine"), c),
        r = &mut c => (r.expect("AllTypes"), b),
    };
    assert_eq!(busy.status, 429, "{}", busy.body);
    assert_eq!(busy.header("retry-after"), Some("30"), "{busy:?}");
    assert!(
        busy.body.contains("2 verifies are already running"),
        "{}",
        busy.body
    );
    let r = Request::get("/healthz").send(addr).await;
    assert_eq!(r.status, 200);

    for _ in 0..3 {
        release.send(()).expect("release");
    }
    let first = first.await.expect("first verify");
    assert_eq!(first.status, 200, "{}", first.body);
    let report: serde_json::Value = serde_json::from_str(&first.body).expect("report");
    assert_eq!(report["rows_primary"], 2, "{report}");
    let admitted = admitted.await.expect("second verify");
    assert_eq!(admitted.status, 200, "{}", admitted.body);
    // Both slots are free again.
    let again = verify("User").send(addr).await;
    assert_eq!(again.status, 200, "{}", again.body);
}

/// Issue 28 items 1 and 2 through `ctsync run` itself: by default writes
/// are refused (403, naming the settings; the log says the API is
/// read-only); with a token a JSON write carrying it (any scheme case)
/// passes, and with the opt-in one without it does (a WARN says so);
/// in all three every cross-site probe is refused.
#[actix_rt::test]
async fn ctsync_run_refuses_cross_site_writes_and_is_read_only_without_a_token() {
    let redis = support::RedisServer::start();
    // Nothing listens there: discovery fails, the HTTP server runs.
    let nowhere = free_addr();
    let cases = [
        RunCase {
            what: "default",
            env: vec![],
            authorization: None,
            json_status: 403,
            said: "HTTP API and page are read-only",
        },
        RunCase {
            what: "token",
            env: vec![("CTSYNC_API_TOKEN", TOKEN)],
            authorization: Some(format!("bearer {TOKEN}")),
            json_status: 404,
            said: "HTTP server listening",
        },
        RunCase {
            what: "opted in",
            env: vec![("CTSYNC_API_ALLOW_UNAUTHENTICATED_WRITES", "true")],
            authorization: None,
            json_status: 404,
            said: "WARN",
        },
    ];
    for RunCase {
        what,
        env,
        authorization,
        json_status,
        said,
    } in cases
    {
        let http = free_addr();
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_ctsync"));
        for (k, _) in std::env::vars() {
            if k.starts_with("MSSQL_") || k.starts_with("CTSYNC_") || k == "REDIS_URL" {
                c.env_remove(k);
            }
        }
        let url = format!("mssql://sa:x@{nowhere}/testct");
        c.arg("run")
            .env("MSSQL_PRIMARY_URL", &url)
            .env("MSSQL_REPLICA_URL", &url)
            .env("REDIS_URL", redis.url())
            .env("CTSYNC_HTTP_ADDR", &http)
            .envs(env);
        let mut daemon = Daemon::spawn(c);
        daemon.wait_for_log("HTTP server listening");
        let addr: SocketAddr = http.parse().expect("addr");
        println!("ctsync run, {what}:");
        http_client::refused(
            addr,
            &http_client::cross_site_probes("User", authorization.as_deref()),
        )
        .await;
        for (path, body) in http_client::write_endpoints("User") {
            let mut r = Request::new(format!("{what}: JSON to {path}"), "POST", &path).json(&body);
            if let Some(a) = &authorization {
                r = r.header("Authorization", a.as_str());
            }
            let r = r.send(addr).await;
            // 404: past the access rules, to a table not discovered.
            assert_eq!(r.status, json_status, "{what} {path}: {}", r.body);
            if json_status == 403 {
                assert!(
                    r.body
                        .contains("CTSYNC_API_ALLOW_UNAUTHENTICATED_WRITES=true"),
                    "{}",
                    r.body
                );
            }
        }
        let (status, _, log) = daemon.terminate();
        assert!(status.success(), "{log}");
        assert!(log.contains(said), "{what}: {said:?} not in {log}");
        if what == "opted in" {
            assert!(
                log.lines().any(|l| l.contains("WARN")
                    && l.contains("CTSYNC_API_ALLOW_UNAUTHENTICATED_WRITES=true")),
                "{log}"
            );
        }
    }
}

/// One `ctsync run` of the test above: its settings, the `Authorization`
/// it sends, what a JSON write gets and the log line to wait for.
struct RunCase {
    what: &'static str,
    env: Vec<(&'static str, &'static str)>,
    authorization: Option<String>,
    json_status: u16,
    said: &'static str,
}

use support::daemon::free_addr;

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

/// Issue 28 item 4: a name with a space and `=` cannot forge a field of
/// its own in a text line (logfmt quoting), and bidirectional overrides
/// are escaped in both formats. Before, `table=dbo.x error=forged` read
/// as two fields and U+202E reached the log raw.
#[::core::prelude::v1::test]
fn a_hostile_name_forges_no_field_and_reorders_nothing() {
    let table = TableId::new("dbo", "x error=forged \"q\" \u{202e}txt.exe");
    for format in [LogFormat::Text, LogFormat::Json] {
        let out = Captured::default();
        let subscriber = ctsync::logging::subscriber("info", format, out.clone(), false);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(table = %table, reason = "plain", "tracking table");
        });
        let line = String::from_utf8(out.0.lock().expect("log").clone()).expect("utf-8");
        assert!(
            !line.contains('\u{202e}'),
            "{format:?}: raw U+202E in {line:?}"
        );
        match format {
            LogFormat::Text => {
                assert!(
                    line.contains(r#"table="dbo.x error=forged \"q\" \u{202e}txt.exe""#),
                    "{line}"
                );
                assert!(line.contains(" reason=plain"), "{line}");
                // Each field's value, read back by logfmt's rules.
                let fields = logfmt_fields(&line);
                assert_eq!(
                    fields.iter().filter(|(k, _)| k == "error").count(),
                    0,
                    "a forged field: {fields:?}"
                );
            }
            LogFormat::Json => {
                let v: serde_json::Value =
                    serde_json::from_str(line.trim()).expect("one JSON line");
                assert_eq!(v["fields"]["table"], table.to_string(), "{line}");
            }
        }
    }
}

/// `key=value` pairs of a logfmt line (quoted values with `\` escapes).
fn logfmt_fields(line: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = line.trim().chars().peekable();
    while chars.peek().is_some() {
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            chars.next();
            if c == '=' || c == ' ' {
                if c == ' ' {
                    key.clear();
                    continue;
                }
                break;
            }
            key.push(c);
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        if !key.is_empty() {
            out.push((key, value));
        }
    }
    out
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
    // logfmt: a value with a space is quoted, one without is bare.
    assert_eq!(said("value=\" TRUE\""), 1);
    assert_eq!(said("read_as=on"), 1);
    assert_eq!(said("value=1 "), 1);
    assert_eq!(said("read_as=off"), 1);
}
