//! DEMO — the real actor pipeline and HTTP server against an IN-MEMORY
//! primary and replica, with a generator of changes and a real Redis
//! (`REDIS_URL`, default redis://127.0.0.1:6379/). No SQL Server involved;
//! nothing here touches a database.
//!
//! Run: `REDIS_URL=redis://127.0.0.1:6379/ CTSYNC_API_TOKEN=demo cargo run
//! --example demo`, then open http://127.0.0.1:8080/ (`CTSYNC_HTTP_ADDR` to
//! change it); the page asks for the token at the first change. The HTTP
//! access rules are the daemon's (`CTSYNC_API_*`, `CTSYNC_ALLOWED_HOSTS`):
//! without a token the page is read-only. Its tests probe them.
//!
//! Tables: `Customer` and `User` start enabled; `Product` (200,000 rows,
//! loaded slowly so the progress bar is visible) and `sales.Order` start
//! paused; `Flaky` fails now and then to show restarts and errors;
//! [`LONG_NAME`] (paused) has a long name without break points, with markup
//! in it, which the page must wrap in its cell and show as text.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ctsync::http::{self, HttpState, Probe};
use ctsync::probes::{InProcess, RedisProbe};
use ctsync::state::RedisState;
use ctsync_actors::actors::{self, Ports};
use ctsync_actors::config::{Backoff, Instance};
use ctsync_actors::memory::faults::{FaultPlan, Faulty, Port, Rule};
use ctsync_actors::memory::{MemoryDdlQueue, MemoryPrimary, MemoryReplica};
use ctsync_actors::model::*;
use ctsync_actors::modules::{ModuleDef, ModuleKind};
use ctsync_actors::sync::SyncConfig;

/// A table name as long and hostile as SQL Server allows a real one to be.
const LONG_NAME: &str = "LoyaltyProgrammeMembershipTierHistoryArchive2019Through2024<b>";

fn table(schema: &str, name: &str, extra: Vec<ColumnDef>) -> TableSchema {
    let mut columns = vec![ColumnDef::new("Id", SqlType::Int, false)];
    columns.extend(extra);
    TableSchema {
        id: TableId::new(schema, name),
        columns,
        primary_key: vec![KeyColumn {
            name: "Id".into(),
            descending: false,
        }],
    }
}

fn text(name: &str) -> ColumnDef {
    ColumnDef::new(name, SqlType::NVarChar(Len::N(200)), true)
}

/// An EVENTDATA document for the demo's queue.
fn event(event_type: &str, body: &str) -> String {
    format!(
        "<EVENT_INSTANCE><EventType>{event_type}</EventType><DatabaseName>testct</DatabaseName>\
         <SchemaName>dbo</SchemaName>{body}</EVENT_INSTANCE>"
    )
}

fn row(id: i32, label: &str) -> Row {
    vec![Value::I32(id), Value::String(format!("{label} {id}"))]
}

/// Starts the demo's pipeline and HTTP server at `addr`, with the daemon's
/// HTTP access rules from `settings` (`CTSYNC_API_*`, `CTSYNC_ALLOWED_HOSTS`).
async fn start(
    redis_url: &str,
    addr: SocketAddr,
    settings: &BTreeMap<&'static str, String>,
) -> anyhow::Result<Demo> {
    let access = ctsync::config::http_access(settings, &addr)?;
    let metrics = ctsync::telemetry::install()?;
    ctsync::telemetry::spawn_upkeep(metrics.clone());
    let state = Arc::new(RedisState::new(redis_url)?);
    let queue = Arc::new(MemoryDdlQueue::new());

    let primary = Arc::new(MemoryPrimary::new());
    let customer = table("dbo", "Customer", vec![text("Name")]);
    let user = table("dbo", "User", vec![text("Email")]);
    let product = table("dbo", "Product", vec![text("Title")]);
    let order = table("sales", "Order", vec![text("Note")]);
    let flaky = table("dbo", "Flaky", vec![text("Note")]);
    // Stays in `error` (a column type ctsync cannot replicate): the alert
    // for a table in error fires for it, and only for it.
    let legacy = table(
        "dbo",
        "Legacy",
        vec![ColumnDef::new(
            "Payload",
            SqlType::Unsupported("sql_variant".into()),
            true,
        )],
    );
    let long = table("dbo", LONG_NAME, vec![text("Note")]);
    for t in [&customer, &user, &product, &order, &flaky, &legacy, &long] {
        primary.create_table(t.clone(), true);
    }
    primary.insert_many(&customer.id, (1..=3).map(|i| row(i, "customer")));
    primary.insert_many(&user.id, (1..=4).map(|i| row(i, "user")));
    primary.insert_many(&product.id, (1..=200_000).map(|i| row(i, "product")));
    primary.insert_many(&flaky.id, (1..=10).map(|i| row(i, "flaky")));
    let module = |name: &str, kind: ModuleKind, definition: Option<&str>| {
        ModuleDef::new("dbo", name, kind, definition)
    };
    primary.set_module(module(
        "ActiveCustomers",
        ModuleKind::View,
        Some("CREATE VIEW [dbo].[ActiveCustomers] AS SELECT Id, Name FROM [dbo].[Customer]"),
    ));
    primary.set_module(module(
        "TopCustomers",
        ModuleKind::View,
        Some("CREATE VIEW [dbo].[TopCustomers] AS SELECT TOP 10 * FROM [dbo].[ActiveCustomers]"),
    ));
    primary.set_module(module(
        "CustomerCount",
        ModuleKind::Procedure,
        Some("CREATE PROCEDURE [dbo].[CustomerCount] AS SELECT COUNT(*) FROM [dbo].[Customer]"),
    ));
    primary.set_module(module(
        "AuditCustomer",
        ModuleKind::Trigger,
        Some("CREATE TRIGGER [dbo].[AuditCustomer] ..."),
    ));
    primary.set_module(module("Secret", ModuleKind::ScalarFunction, None));
    for name in ["Customer", "User", "Flaky", "Legacy"] {
        state
            .set(&format!("mssql_sync:enabled:{name}"), "true")
            .await?;
    }

    let replica = Arc::new(MemoryReplica::new());
    // Slow full-load pages so the page's progress bar can be seen.
    replica.set_insert_delay(Duration::from_millis(250));
    let config = SyncConfig {
        instance: Instance {
            id: "demo".into(),
            ..Instance::default()
        },
        poll_interval: Duration::from_secs(1),
        restarts: Backoff {
            first: Duration::from_millis(500),
            max: Duration::from_secs(5),
        },
        module_sync_interval: Duration::from_secs(5),
        ..SyncConfig::default()
    };
    let verify_replica = replica.clone();
    // Flaky's outages are injected between the pipeline and the primary.
    let faults = FaultPlan::new();
    let wrapped: Arc<dyn ctsync_actors::ports::Primary> = primary.clone();
    let running = actors::start(
        Ports {
            primary: Arc::new(Faulty::new(wrapped, faults.clone())),
            replica,
            state: state.clone(),
            ddl_queue: Some(queue.clone()),
        },
        config,
    );

    let probes: Vec<Arc<dyn Probe>> = vec![
        Arc::new(InProcess("primary")),
        Arc::new(InProcess("replica")),
        Arc::new(RedisProbe(state.clone())),
    ];
    ctsync::http::spawn_dependency_checks(probes.clone(), Duration::from_secs(5));
    let shared = HttpState {
        state,
        board: running.board.clone(),
        instance: "demo".into(),
        probes,
        primary: "demo-primary (in memory):1433/testct".into(),
        replica: "demo-replica (in memory):1433/testct".into(),
        metrics: Some(metrics),
        access: access.clone(),
        verify: Some(Arc::new(ctsync_actors::verify::Sides {
            primary: primary.clone(),
            replica: verify_replica,
            options: ctsync_actors::verify::Options::default(),
        })),
        verifies: Default::default(),
        known_tables: Default::default(),
    };
    let (bound, server) = http::serve(addr, shared)?;
    access.log_at_start(bound);
    Ok(Demo {
        bound,
        server,
        running,
        primary,
        queue,
        faults,
    })
}

#[cfg_attr(test, allow(dead_code))]
fn main() -> anyhow::Result<()> {
    // The daemon's log output: colour only on a terminal, names escaped.
    ctsync::logging::init("info", ctsync::config::LogFormat::Text);
    let redis_url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let addr: SocketAddr = std::env::var("CTSYNC_HTTP_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:8080".into())
        .parse()?;
    let settings = ctsync::config::env_settings();
    actix::System::new().block_on(run(redis_url, addr, settings))
}

/// The demo's pipeline and HTTP server, running.
#[cfg_attr(test, allow(dead_code))]
struct Demo {
    bound: SocketAddr,
    server: actix_web::dev::ServerHandle,
    running: actors::Running,
    primary: Arc<MemoryPrimary>,
    queue: Arc<MemoryDdlQueue>,
    faults: Arc<FaultPlan>,
}

#[cfg_attr(test, allow(dead_code))]
async fn run(
    redis_url: String,
    addr: SocketAddr,
    settings: BTreeMap<&'static str, String>,
) -> anyhow::Result<()> {
    let Demo {
        bound,
        server,
        running,
        primary,
        queue,
        faults,
    } = start(&redis_url, addr, &settings).await?;
    println!("DEMO: ctsync pipeline over an in-memory primary/replica; page at http://{bound}/");
    let [customer, user, order, flaky] = [
        ("dbo", "Customer"),
        ("dbo", "User"),
        ("sales", "Order"),
        ("dbo", "Flaky"),
    ]
    .map(|(schema, name)| TableId::new(schema, name));
    // The change generator: a few changes every half second.
    let mut n: i32 = 0;
    let mut broken = None;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let signal = ctsync::shutdown::signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            // SIGTERM or SIGINT: the daemon's own stop sequence.
            _ = &mut signal => break,
        }
        n += 1;
        primary.upsert(&customer, row(1 + n % 5, "customer"));
        primary.upsert(&user, row(1 + n % 7, "user v2"));
        primary.upsert(&order, row(n, "order"));
        if n % 6 == 0 {
            primary.delete(&user, &RowKey(vec![Value::I32(1 + n % 7)]));
        }
        // DDL events: an ignored index event, a malformed (parked) message,
        // and a column rename of Flaky back and forth.
        if n % 20 == 5 {
            queue.push_event(&event("CREATE_INDEX", "<ObjectType>INDEX</ObjectType>"));
        }
        if n % 60 == 10 {
            queue.push_event("<EVENT_INSTANCE><EventType>ALTER_TABLE</EventType>");
        }
        if n % 40 == 20 {
            let (from, to) = if (n / 40) % 2 == 0 {
                ("Note", "Remark")
            } else {
                ("Remark", "Note")
            };
            primary.rename_column(&flaky, from, to);
            queue.push_event(&event(
                "RENAME",
                &format!(
                    "<ObjectName>{from}</ObjectName><ObjectType>COLUMN</ObjectType><NewObjectName>{to}</NewObjectName>\
                     <TargetObjectName>Flaky</TargetObjectName><TargetObjectType>TABLE</TargetObjectType>"
                ),
            ));
        }
        // Flaky breaks for 3 s out of every 15 s.
        match n % 30 {
            0 => {
                broken = Some(
                    faults.inject(
                        Rule::reject()
                            .port(Port::Primary)
                            .object(&flaky)
                            .always()
                            .message("demo: simulated connection loss"),
                    ),
                )
            }
            6 => {
                if let Some(rule) = broken.take() {
                    faults.lift(rule);
                }
            }
            _ => {
                primary.upsert(&flaky, row(n % 10, "flaky"));
            }
        }
    }
    ctsync::shutdown::stop(&running, Some(server)).await;
    println!("DEMO: stopped");
    Ok(())
}

#[cfg(test)]
#[path = "../tests/support/mod.rs"]
mod support;

/// Issue 28 items 1 and 2 for the demo: its HTTP server follows the
/// daemon's access rules, read from the same settings: every cross-site
/// probe (forms, `text/plain`, a no-cors fetch, `Host: evil.example`) is
/// refused on every write and action endpoint, without a token writes are
/// off (403) and the page is told so, and with one a JSON write carrying
/// it acts. Before, the demo took writes from anyone and any `Host`.
#[cfg(test)]
mod tests {
    use super::support::http_client::{self, Request};
    use super::support::RedisServer;
    use super::*;

    const TOKEN: &str = "demo-T0ken";

    fn settings(pairs: &[(&'static str, &str)]) -> BTreeMap<&'static str, String> {
        pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
    }

    async fn flags(redis: &RedisState) -> Vec<Option<String>> {
        let mut out = Vec::new();
        for key in [
            "mssql_sync:enabled:Product",
            "mssql_sync:force_full_load:Product",
        ] {
            out.push(redis.get(key).await.expect("GET"));
        }
        out
    }

    #[actix_rt::test]
    async fn the_demo_refuses_cross_site_writes_and_is_read_only_without_a_token() {
        let redis = RedisServer::start();
        let state = RedisState::new(&redis.url()).expect("url");
        let addr: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        for (what, pairs, authorization) in [
            ("no token", vec![], None),
            (
                "token",
                vec![("CTSYNC_API_TOKEN", TOKEN)],
                Some(format!("Bearer {TOKEN}")),
            ),
        ] {
            let demo = start(&redis.url(), addr, &settings(&pairs))
                .await
                .expect("demo");
            let before = flags(&state).await;
            println!("demo, {what}:");
            http_client::refused(
                demo.bound,
                &http_client::cross_site_probes("Product", authorization.as_deref()),
            )
            .await;
            assert_eq!(flags(&state).await, before, "{what}: nothing written");
            let list = Request::get("/api/tables").send(demo.bound).await;
            let list: serde_json::Value = serde_json::from_str(&list.body).expect("json");
            let enable = Request::new("enable Product", "POST", "/api/tables/Product")
                .json(&serde_json::json!({"action": "enable"}));
            match authorization {
                None => {
                    assert_eq!(list["writes"]["enabled"], false, "{list}");
                    let r = enable.send(demo.bound).await;
                    assert_eq!(r.status, 403, "{}", r.body);
                    assert!(r.body.contains("CTSYNC_API_TOKEN"), "{}", r.body);
                    assert_eq!(flags(&state).await, before);
                }
                Some(a) => {
                    assert_eq!(list["writes"]["enabled"], true, "{list}");
                    assert_eq!(list["writes"]["token_required"], true, "{list}");
                    let r = enable.header("Authorization", a).send(demo.bound).await;
                    assert_eq!(r.status, 200, "{}", r.body);
                    assert_eq!(
                        state
                            .get("mssql_sync:enabled:Product")
                            .await
                            .expect("GET")
                            .as_deref(),
                        Some("true")
                    );
                }
            }
            ctsync::shutdown::stop(&demo.running, Some(demo.server)).await;
        }
    }
}
