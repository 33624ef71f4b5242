//! DEMO — the real actor pipeline and HTTP server against an IN-MEMORY
//! primary and replica, with a generator of changes and a Redis of its own:
//! it starts `redis-server` on a free loopback port (no persistence) and
//! stops it on exit. `--redis URL` (or `REDIS_URL`) uses that Redis instead;
//! one holding another deployment's `mssql_sync:marker` is refused, since
//! the demo enables tables there. No SQL Server involved; nothing here
//! touches a database.
//!
//! Run: `CTSYNC_API_TOKEN=demo cargo run --example demo`, then open
//! http://127.0.0.1:8080/ (`CTSYNC_HTTP_ADDR` to change it); the page asks
//! for the token at the first change. The HTTP access rules are the
//! daemon's (`CTSYNC_API_*`, `CTSYNC_ALLOWED_HOSTS`): without a token the
//! page is read-only. Its tests probe them.
//!
//! Tables: `Customer` and `User` start enabled; `Product` (200,000 rows,
//! loaded slowly so the progress bar is visible) and `sales.Order` start
//! paused; `Flaky` fails now and then to show restarts and errors;
//! [`LONG_NAME`] (paused) has a long name without break points, with markup
//! and a right-to-left override in it, which the page must wrap in its cell
//! and show as text (the override as a visible mark).

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
const LONG_NAME: &str = "LoyaltyProgrammeMembershipTierHistoryArchive2019Through2024\u{202E}<b>";

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
    claim(redis_url).await?;
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
        state: state.clone(),
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
        refusals: Default::default(),
        audit: Some(state.clone()),
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

/// The marker value of a Redis the demo writes to.
const DEMO_MARKER: &str = "ctsync-demo";

/// Claims the Redis for the demo: its marker is set unless present, and a
/// marker another deployment created (ctsync's own is `ctsync`) refuses
/// the Redis before anything is written there.
async fn claim(redis_url: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let key = ctsync_actors::keys::MARKER;
    let client = redis::Client::open(redis_url).context("the Redis URL")?;
    let where_ = client.get_connection_info().addr().to_string();
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .with_context(|| format!("connecting to Redis at {where_}"))?;
    let found: Option<String> = redis::cmd("GET").arg(key).query_async(&mut con).await?;
    match found.as_deref() {
        Some(DEMO_MARKER) => return Ok(()),
        Some(_) => anyhow::bail!(
            "the Redis at {where_} holds {key}: another ctsync deployment's state lives here, and the \
             demo would enable tables in it; run the demo without --redis (it starts a \
             redis-server of its own) or give it an empty Redis"
        ),
        None => {}
    }
    let set: Option<String> = redis::cmd("SET")
        .arg(key)
        .arg(DEMO_MARKER)
        .arg("NX")
        .query_async(&mut con)
        .await?;
    if set.is_none() {
        anyhow::bail!(
            "{key} appeared while the demo claimed this Redis: another deployment uses it"
        );
    }
    Ok(())
}

/// A `redis-server` the demo started (no persistence, loopback only),
/// killed when dropped.
struct OwnRedis {
    child: std::process::Child,
    dir: std::path::PathBuf,
    port: u16,
}

impl OwnRedis {
    fn start() -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir =
            std::env::temp_dir().join(format!("ctsync-demo-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .context("starting redis-server (install it, or pass --redis URL)")?;
        let mut own = Self { child, dir, port };
        // Up when it answers PING (not merely when the port is open).
        let client = redis::Client::open(own.url())?;
        for _ in 0..200 {
            if let Some(status) = own.child.try_wait()? {
                anyhow::bail!("redis-server exited at start ({status})");
            }
            if let Ok(mut con) = client.get_connection() {
                if redis::cmd("PING").query::<String>(&mut con).is_ok() {
                    return Ok(own);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        own.stop();
        anyhow::bail!("redis-server did not answer on port {port} within 10 s")
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The Redis to use: `--redis URL`, else `REDIS_URL`, else one the demo
/// starts (returned with it, to be stopped on exit).
fn redis_for(args: &[String], env: Option<String>) -> anyhow::Result<(String, Option<OwnRedis>)> {
    let given = match args {
        [] => env,
        [flag, url] if flag == "--redis" => Some(url.clone()),
        _ => anyhow::bail!("usage: demo [--redis redis://host:port/db]"),
    };
    match given {
        Some(url) => Ok((url, None)),
        None => {
            let own = OwnRedis::start()?;
            Ok((own.url(), Some(own)))
        }
    }
}

#[cfg_attr(test, allow(dead_code))]
fn main() -> anyhow::Result<()> {
    // The daemon's log output: colour only on a terminal, names escaped.
    ctsync::logging::init("info", ctsync::config::LogFormat::Text);
    let args: Vec<String> = std::env::args().skip(1).collect();
    // REDIS_URL (or REDIS_URL_FILE), as the daemon reads it.
    let settings = ctsync::config::with_secret_files(&ctsync::config::env_settings())?;
    let (redis_url, own) = redis_for(&args, settings.get("REDIS_URL").cloned())?;
    if let Some(own) = &own {
        println!("DEMO: Redis of its own at {} (stopped on exit)", own.url());
    }
    let addr: SocketAddr = std::env::var("CTSYNC_HTTP_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:8080".into())
        .parse()?;
    let settings = ctsync::config::env_settings();
    let outcome = actix::System::new().block_on(run(redis_url, addr, settings));
    drop(own);
    outcome
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

    /// Issue 28 item 11: the demo enables four tables in the Redis it is
    /// given; one holding another deployment's marker is refused before
    /// anything is written, and the demo's own marker lets it start again.
    #[actix_rt::test]
    async fn the_demo_refuses_a_redis_holding_another_deployments_marker() {
        let redis = RedisServer::start();
        let state = RedisState::new(&redis.url()).expect("url");
        state
            .set(ctsync_actors::keys::MARKER, "ctsync")
            .await
            .expect("SET");
        let addr: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let refused = start(&redis.url(), addr, &settings(&[])).await;
        let message = refused.err().map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(message.contains("holds mssql_sync:marker"), "{message}");
        assert!(
            message.contains(&redis.url()[8..redis.url().len() - 1]),
            "{message}"
        );
        assert_eq!(
            state.get("mssql_sync:enabled:Customer").await.expect("GET"),
            None,
            "nothing enabled there"
        );

        let own = RedisServer::start();
        for _ in 0..2 {
            let demo = start(&own.url(), addr, &settings(&[]))
                .await
                .expect("the demo's own Redis, again");
            ctsync::shutdown::stop(&demo.running, Some(demo.server)).await;
        }
    }

    /// Issue 28 item 11: without `--redis` or `REDIS_URL` the demo starts
    /// a redis-server of its own (never 127.0.0.1:6379) and stops it.
    #[test]
    fn without_a_redis_given_the_demo_starts_its_own_and_stops_it() {
        let (url, own) = redis_for(&[], None).expect("own redis");
        assert!(own.is_some());
        assert_ne!(url, "redis://127.0.0.1:6379/");
        let client = redis::Client::open(url.as_str()).expect("url");
        let mut con = client.get_connection().expect("it answers");
        let pong: String = redis::cmd("PING").query(&mut con).expect("PING");
        assert_eq!(pong, "PONG");
        drop(con);
        drop(own);
        assert!(
            client.get_connection().is_err(),
            "stopped with the demo: {url}"
        );

        let given = "redis://127.0.0.1:1/".to_string();
        let (url, own) = redis_for(&["--redis".into(), given.clone()], None).expect("given");
        assert_eq!((url, own.is_none()), (given.clone(), true));
        let (url, own) = redis_for(&[], Some(given.clone())).expect("env");
        assert_eq!((url, own.is_none()), (given, true));
        assert!(redis_for(&["--bogus".into()], None).is_err());
    }
}
