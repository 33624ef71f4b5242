//! What each caller sees and may do once API tokens are configured, through
//! the HTTP API: without a token, tables, states, versions, lag and
//! progress but no error text, reasons or host names; a `read` token sees
//! them and cannot act (403 naming the role); an `operate` token acts; an
//! unknown token is refused (401). Without tokens configured everything is
//! shown, as before. The table of fields is docs/operating.md's.

mod support;

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{test, web, App};
use ctsync::http::{routes, Access, Probe, Tokens};
use ctsync_actors::status::{StatusBoard, TableState};
use serde_json::{json, Value};
use support::Harness;

const OPERATE: &str = "alice-0perate-T0ken-xyz";
const READ: &str = "bob-r3ad-T0ken-xyz-123";
const SECRET_HOST: &str = "sql-primary.corp.internal";
const SECRET_ERROR: &str = "Login failed for user 'svc_ctsync'";

/// A probe that fails naming a host.
struct Failing;

#[async_trait::async_trait]
impl Probe for Failing {
    fn name(&self) -> &'static str {
        "primary"
    }
    async fn check(&self) -> Result<(), String> {
        Err(format!("{SECRET_HOST}:1433: {SECRET_ERROR}"))
    }
}

fn tokens() -> Tokens {
    Tokens::parse(&format!(
        "# operators\nalice operate {OPERATE}\nbob read {READ}\n"
    ))
    .expect("tokens")
}

/// A board whose `User` row carries an error and a reason, and whose
/// discovery, DDL capture and modules have problems that name a host.
fn troubled_board() -> StatusBoard {
    let board = StatusBoard::default();
    board.update("User", |s| {
        s.state = TableState::Error;
        s.last_error = Some(format!("{SECRET_HOST}: {SECRET_ERROR}"));
        s.reason = Some(format!("retrying against {SECRET_HOST}"));
        s.primary_version = Some(42);
        s.lag_versions = Some(2);
        s.progress = Some((10, 20));
    });
    board.set_discovery_error(Some(format!("{SECRET_HOST}: {SECRET_ERROR}")));
    board.set_ddl_problem(Some(format!("queue on {SECRET_HOST} disabled")));
    board.set_module_errors(
        [(
            "dbo.v".to_string(),
            format!("{SECRET_HOST}: {SECRET_ERROR}"),
        )]
        .into(),
    );
    board
}

/// The HTTP service over `h`'s Redis and a troubled board, with `access`.
macro_rules! app {
    ($h:expr, $access:expr) => {{
        let mut shared = $h.http_state(troubled_board());
        shared.access = $access;
        shared.instance = format!("{SECRET_HOST}-4242");
        shared.primary = format!("{SECRET_HOST}:1433/testct");
        shared.probes = vec![Arc::new(Failing) as Arc<dyn Probe>];
        test::init_service(
            App::new()
                .app_data(web::Data::new(shared))
                .configure(routes),
        )
        .await
    }};
}

fn get(path: &str, token: Option<&str>) -> test::TestRequest {
    let mut req = test::TestRequest::get().uri(path);
    if let Some(t) = token {
        req = req.insert_header(("Authorization", format!("Bearer {t}")));
    }
    req
}

fn post(token: Option<&str>, action: &str) -> test::TestRequest {
    let mut req = test::TestRequest::post()
        .uri("/api/tables/User")
        .set_json(json!({ "action": action }));
    if let Some(t) = token {
        req = req.insert_header(("Authorization", format!("Bearer {t}")));
    }
    req
}

/// The status and JSON body of `req` sent to `app`.
macro_rules! body_of {
    ($app:expr, $req:expr) => {{
        let resp = test::call_service($app, $req.to_request()).await;
        let status = resp.status();
        let bytes = test::read_body(resp).await;
        (
            status,
            serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
        )
    }};
}

fn access_with_tokens() -> Access {
    Access::new(None, false, &[]).with_tokens(tokens())
}

#[actix_rt::test]
async fn without_a_token_a_caller_sees_states_but_no_error_text_or_host_names() {
    let h = Harness::new();
    h.set("mssql_sync:version:User", "40").await;
    let app = app!(h, access_with_tokens());
    for path in ["/api/tables", "/api/tables/User", "/api/info", "/readyz"] {
        let (_, body) = body_of!(&app, get(path, None));
        let text = body.to_string();
        assert!(
            !text.contains(SECRET_HOST) && !text.contains(SECRET_ERROR),
            "{path}: {text}"
        );
    }
    let (status, list) = body_of!(&app, get("/api/tables", None));
    assert_eq!(status, StatusCode::OK);
    let row = &list["tables"][0];
    // What anyone may see.
    assert_eq!(row["name"], "User");
    assert_eq!(row["state"], "error");
    assert_eq!(row["version"], 40);
    assert_eq!(row["primary_version"], 42);
    assert_eq!(row["lag_versions"], 2);
    assert_eq!(row["progress"], json!({"synced": 10, "total": 20}));
    // What it may not.
    assert_eq!(row["last_error"], Value::Null);
    assert_eq!(row["reason"], Value::Null);
    assert_eq!(row["instance"], "");
    assert_eq!(list["primary"], Value::Null);
    assert_eq!(list["instance"], Value::Null);
    assert_eq!(list["discovery_error"], Value::Null);
    assert_eq!(list["ddl_capture_problem"], Value::Null);
    assert_eq!(list["modules"]["failing_count"], 1);
    assert_eq!(
        list["caller"],
        json!({"token": null, "role": null, "details": false})
    );
    assert_eq!(list["writes"]["enabled"], true, "with an operate token");
    let (status, ready) = body_of!(&app, get("/readyz", None));
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        ready["failing"],
        json!(["primary"]),
        "which one fails is public"
    );
}

#[actix_rt::test]
async fn a_read_token_sees_error_messages_and_cannot_act() {
    let h = Harness::new();
    h.set("mssql_sync:enabled:User", "false").await;
    let app = app!(h, access_with_tokens());
    let (_, list) = body_of!(&app, get("/api/tables", Some(READ)));
    let row = &list["tables"][0];
    assert!(
        row["last_error"]
            .as_str()
            .is_some_and(|e| e.contains(SECRET_ERROR)),
        "{row}"
    );
    assert!(
        row["reason"]
            .as_str()
            .is_some_and(|e| e.contains(SECRET_HOST)),
        "{row}"
    );
    assert!(list["primary"]
        .as_str()
        .is_some_and(|p| p.contains(SECRET_HOST)));
    assert!(list["discovery_error"].as_str().is_some());
    assert!(list["modules"]["failing"]["dbo.v"].as_str().is_some());
    assert_eq!(
        list["caller"],
        json!({"token": "bob", "role": "read", "details": true})
    );
    // The page's controls are off for it, in the API's words.
    assert_eq!(list["writes"]["enabled"], false);
    let reason = list["writes"]["disabled_reason"]
        .as_str()
        .unwrap_or_default();
    assert!(
        reason.contains("bob") && reason.contains("read role"),
        "{reason}"
    );
    let (_, ready) = body_of!(&app, get("/readyz", Some(READ)));
    assert!(
        ready["checks"]["primary"]
            .as_str()
            .is_some_and(|e| e.contains(SECRET_ERROR)),
        "{ready}"
    );

    let (status, body) = body_of!(&app, post(Some(READ), "enable"));
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("operate")),
        "{body}"
    );
    assert_eq!(
        h.get("mssql_sync:enabled:User").await.as_deref(),
        Some("false")
    );
    assert!(h
        .state
        .audit_entries(None)
        .await
        .expect("entries")
        .is_empty());
}

#[actix_rt::test]
async fn an_operate_token_acts_and_is_named_in_the_audit_trail() {
    let h = Harness::new();
    h.set("mssql_sync:enabled:User", "false").await;
    let app = app!(h, access_with_tokens());
    let (status, body) = body_of!(&app, post(Some(OPERATE), "enable"));
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        h.get("mssql_sync:enabled:User").await.as_deref(),
        Some("true")
    );
    let (_, list) = body_of!(&app, get("/api/tables", Some(OPERATE)));
    assert_eq!(list["caller"]["role"], "operate");
    assert!(list["tables"][0]["last_error"].as_str().is_some());
    let entries = h.state.audit_entries(None).await.expect("entries");
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].token, "alice");
    assert_eq!(entries[0].action, "enable");
    let stored = format!("{entries:?}");
    assert!(
        !stored.contains(OPERATE) && !stored.contains(READ),
        "{stored}"
    );
}

#[actix_rt::test]
async fn an_unknown_token_is_refused_even_for_reads_but_not_by_probes() {
    let h = Harness::new();
    let app = app!(h, access_with_tokens());
    for path in ["/api/tables", "/api/info", "/readyz"] {
        let resp =
            test::call_service(&app, get(path, Some("not-a-token-at-all-xyz")).to_request()).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    for path in ["/healthz", "/metrics"] {
        let resp =
            test::call_service(&app, get(path, Some("not-a-token-at-all-xyz")).to_request()).await;
        assert_ne!(resp.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    let (status, _) = body_of!(&app, post(Some("not-a-token-at-all-xyz"), "enable"));
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = body_of!(&app, post(None, "enable"));
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[actix_rt::test]
async fn without_tokens_configured_everything_is_shown_as_before() {
    let h = Harness::new();
    let app = app!(h, Access::with_writes(None, false, true, &[]));
    let (_, list) = body_of!(&app, get("/api/tables", None));
    assert!(list["tables"][0]["last_error"].as_str().is_some(), "{list}");
    assert!(list["primary"].as_str().is_some());
    assert_eq!(list["caller"]["details"], true);
    // A stray header changes nothing where no token is configured.
    let (status, _) = body_of!(&app, get("/api/tables", Some("whatever-it-is-123456")));
    assert_eq!(status, StatusCode::OK);
}
