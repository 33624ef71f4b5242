//! End-to-end contract against real SQL Server 2022: drives the real
//! `ctsync run` daemon through every behaviour users rely on and compares
//! primary and replica by row count and checksum. Runs only when
//! `CTSYNC_TEST_PRIMARY`, `CTSYNC_TEST_REPLICA` (connection strings) and
//! `REDIS_URL` are set; otherwise it prints a loud `skipped` line and runs
//! nothing. It works in its own schema `ctsync_e2e` and removes it first.
//!
//! A custom harness (no libtest): scenarios share one daemon and run in
//! order, each building on the previous one, as an operator's day would.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use ctsync::mssql::{Endpoint, TlsSettings};
use tiberius::EncryptionLevel;

const SCHEMA: &str = "ctsync_e2e";
const ORDERS: &str = "ctsync_e2e.Orders";
const BIG: &str = "ctsync_e2e.Big";
const WAIT: Duration = Duration::from_secs(120);
/// A daemon still running this long after SIGTERM hangs (a failsafe; the
/// stop itself is bounded by ctsync's grace periods, about 4 s).
const STOP_FAILSAFE: Duration = Duration::from_secs(60);

/// Where the daemon serving HTTP on `http` logs (stdout), afresh at each
/// start.
fn log_path(http: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "ctsync-e2e-{}-{}.log",
        std::process::id(),
        http.replace([':', '.'], "_")
    ))
}

type Client = ctsync::mssql::conn::TdsClient;

struct Env {
    primary_url: String,
    replica_url: String,
    redis_url: String,
    primary: Client,
    replica: Client,
    redis: redis::Connection,
    http: String,
    daemon: Option<Child>,
}

fn tls() -> TlsSettings {
    let trust = std::env::var("CTSYNC_TRUST_SERVER_CERTIFICATE")
        .map(|v| v == "true")
        .unwrap_or(true);
    TlsSettings {
        encrypt: EncryptionLevel::Required,
        trust_server_certificate: trust,
    }
}

async fn connect(name: &str, url: &str) -> Result<Client> {
    let endpoint = Endpoint::parse(name, url, tls())?;
    Ok(endpoint.connect().await?)
}

async fn exec(c: &mut Client, sql: &str) -> Result<()> {
    c.simple_query(sql.to_string())
        .await
        .with_context(|| format!("running: {sql}"))?
        .into_results()
        .await
        .with_context(|| format!("running: {sql}"))?;
    Ok(())
}

async fn scalar(c: &mut Client, sql: &str) -> Result<Option<i64>> {
    let row = c
        .simple_query(sql.to_string())
        .await
        .with_context(|| format!("running: {sql}"))?
        .into_row()
        .await?;
    Ok(match row {
        Some(r) => r
            .try_get::<i64, _>(0)
            .or_else(|_| r.try_get::<i32, _>(0).map(|v| v.map(i64::from)))?,
        None => None,
    })
}

/// Row count and checksum of a table, the same query on both sides.
async fn fingerprint(c: &mut Client, table: &str) -> Result<(i64, i64)> {
    let (s, t) = table.split_once('.').unwrap_or(("dbo", table));
    let count = scalar(c, &format!("SELECT COUNT_BIG(*) FROM [{s}].[{t}]"))
        .await?
        .unwrap_or(-1);
    let sum = scalar(
        c,
        &format!(
            "SELECT CAST(COALESCE(CHECKSUM_AGG(BINARY_CHECKSUM(*)), 0) AS bigint) FROM [{s}].[{t}]"
        ),
    )
    .await?
    .unwrap_or(0);
    Ok((count, sum))
}

impl Env {
    fn get(&mut self, key: &str) -> Result<Option<String>> {
        Ok(redis::cmd("GET").arg(key).query(&mut self.redis)?)
    }

    fn set(&mut self, key: &str, value: &str) -> Result<()> {
        Ok(redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query(&mut self.redis)?)
    }

    fn start_daemon(&mut self) -> Result<()> {
        self.start_daemon_with(&[])
    }

    /// The main daemon with settings of its own (`(name, value)`).
    fn start_daemon_with(&mut self, settings: &[(&str, &str)]) -> Result<()> {
        let child = self.spawn_daemon_with(&self.http, settings)?;
        self.daemon = Some(child);
        Ok(())
    }

    /// A `ctsync run` serving HTTP on `http` (each gets its own instance
    /// id; a short lease TTL so a crashed one's tables move in seconds).
    fn spawn_daemon(&self, http: &str) -> Result<Child> {
        self.spawn_daemon_with(http, &[])
    }

    fn spawn_daemon_with(&self, http: &str, settings: &[(&str, &str)]) -> Result<Child> {
        Command::new(env!("CARGO_BIN_EXE_ctsync"))
            .arg("run")
            .env("MSSQL_PRIMARY_URL", &self.primary_url)
            .env("MSSQL_REPLICA_URL", &self.replica_url)
            .env("REDIS_URL", &self.redis_url)
            .env("CTSYNC_POLL_INTERVAL_SECS", "1")
            .env("CTSYNC_MODULE_SYNC_SECS", "2")
            .env("CTSYNC_FULL_LOAD_PAGE_SIZE", "250")
            .env("CTSYNC_HTTP_ADDR", http)
            .env("CTSYNC_LEASE_TTL_SECS", "4")
            .env(
                "CTSYNC_TRUST_SERVER_CERTIFICATE",
                if tls().trust_server_certificate {
                    "true"
                } else {
                    "false"
                },
            )
            .envs(settings.iter().copied())
            .stdout(Stdio::from(std::fs::File::create(log_path(http))?))
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting ctsync")
    }

    /// SIGKILL: no chance to finish anything (a crash).
    fn crash_daemon(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn stop_daemon(&mut self) -> Result<()> {
        self.stop_daemon_log().map(|_| ())
    }

    /// SIGTERM to the main daemon; its log once it exited 0 (an error if it
    /// did not, or is still running [`STOP_FAILSAFE`] later).
    fn stop_daemon_log(&mut self) -> Result<String> {
        let Some(mut c) = self.daemon.take() else {
            return Ok(String::new());
        };
        Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()?;
        let sent = Instant::now();
        let status = loop {
            if let Some(status) = c.try_wait()? {
                break status;
            }
            if sent.elapsed() > STOP_FAILSAFE {
                let _ = c.kill();
                let _ = c.wait();
                bail!("ctsync did not exit within {STOP_FAILSAFE:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let log = std::fs::read_to_string(log_path(&self.http)).unwrap_or_default();
        if !status.success() {
            bail!("ctsync exited with {status:?} on SIGTERM: {log}");
        }
        Ok(log)
    }

    fn api(&self, path: &str) -> Result<serde_json::Value> {
        Self::api_at(&self.http, path)
    }

    fn api_at(http: &str, path: &str) -> Result<serde_json::Value> {
        let mut s = TcpStream::connect(http)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        let body = text
            .split("\r\n\r\n")
            .nth(1)
            .ok_or_else(|| anyhow!("no HTTP body"))?;
        Ok(serde_json::from_str(body)?)
    }

    async fn same(&mut self, table: &str) -> Result<bool> {
        let p = fingerprint(&mut self.primary, table).await?;
        let r = fingerprint(&mut self.replica, table)
            .await
            .unwrap_or((-2, 0));
        Ok(p == r)
    }

    async fn wait_same(&mut self, table: &str) -> Result<()> {
        let deadline = Instant::now() + WAIT;
        while !self.same(table).await? {
            if Instant::now() > deadline {
                let p = fingerprint(&mut self.primary, table).await?;
                let r = fingerprint(&mut self.replica, table)
                    .await
                    .unwrap_or((-2, 0));
                bail!("{table}: replica {r:?} never matched primary {p:?}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Ok(())
    }
}

async fn until(what: &str, mut check: impl AsyncFnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        if check().await? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Removes everything a previous run left and creates the test tables.
async fn prepare(env: &mut Env) -> Result<()> {
    for c in [&mut env.replica, &mut env.primary] {
        exec(
            c,
            &format!(
                "DECLARE @sql nvarchar(max) = N''; \
                 SELECT @sql += N'DROP ' + CASE o.type WHEN 'V' THEN N'VIEW' WHEN 'P' THEN N'PROCEDURE' ELSE N'FUNCTION' END \
                 + N' ' + QUOTENAME(s.name) + N'.' + QUOTENAME(o.name) + N'; ' \
                 FROM sys.objects o JOIN sys.schemas s ON s.schema_id = o.schema_id \
                 WHERE s.name = N'{SCHEMA}' AND o.type IN ('V','P','FN','IF','TF'); \
                 EXEC sp_executesql @sql; \
                 SET @sql = N''; \
                 SELECT @sql += N'DROP TABLE ' + QUOTENAME(s.name) + N'.' + QUOTENAME(t.name) + N'; ' \
                 FROM sys.tables t JOIN sys.schemas s ON s.schema_id = t.schema_id WHERE s.name = N'{SCHEMA}'; \
                 EXEC sp_executesql @sql; \
                 IF OBJECT_ID(N'[ctsync].[sync_versions]', N'U') IS NOT NULL \
                     DELETE FROM [ctsync].[sync_versions] WHERE [table_name] LIKE N'{SCHEMA}.%';"
            ),
        )
        .await?;
    }
    exec(
        &mut env.replica,
        &format!("IF SCHEMA_ID(N'{SCHEMA}') IS NOT NULL EXEC(N'DROP SCHEMA [{SCHEMA}]')"),
    )
    .await?;
    let p = &mut env.primary;
    exec(
        p,
        "IF NOT EXISTS (SELECT 1 FROM sys.change_tracking_databases WHERE database_id = DB_ID()) \
         ALTER DATABASE CURRENT SET CHANGE_TRACKING = ON (CHANGE_RETENTION = 2 DAYS, AUTO_CLEANUP = ON)",
    )
    .await?;
    exec(
        p,
        "IF (SELECT is_broker_enabled FROM sys.databases WHERE database_id = DB_ID()) = 0 \
         ALTER DATABASE CURRENT SET ENABLE_BROKER WITH ROLLBACK IMMEDIATE",
    )
    .await?;
    exec(
        p,
        "IF OBJECT_ID(N'dbo.SyncDDLQueue', N'SQ') IS NULL CREATE QUEUE dbo.SyncDDLQueue",
    )
    .await?;
    exec(
        p,
        "IF NOT EXISTS (SELECT 1 FROM sys.services WHERE name = N'SyncDDLService') \
         CREATE SERVICE SyncDDLService ON QUEUE dbo.SyncDDLQueue ([http://schemas.microsoft.com/SQL/Notifications/PostEventNotification])",
    )
    .await?;
    exec(
        p,
        "IF NOT EXISTS (SELECT 1 FROM sys.event_notifications WHERE name = N'SyncDDLNotification') \
         CREATE EVENT NOTIFICATION SyncDDLNotification ON DATABASE FOR DDL_TABLE_EVENTS, RENAME \
         TO SERVICE 'SyncDDLService', 'current database'",
    )
    .await?;
    exec(
        p,
        &format!("IF SCHEMA_ID(N'{SCHEMA}') IS NULL EXEC(N'CREATE SCHEMA [{SCHEMA}]')"),
    )
    .await?;
    exec(
        p,
        "CREATE TABLE ctsync_e2e.Orders (Id int IDENTITY(1,1) NOT NULL PRIMARY KEY, Customer nvarchar(100) NOT NULL, \
         Amount decimal(18,2) NOT NULL, Note nvarchar(max) NULL, At datetime2(3) NOT NULL, Tag uniqueidentifier NULL)",
    )
    .await?;
    exec(p, "ALTER TABLE ctsync_e2e.Orders ENABLE CHANGE_TRACKING").await?;
    exec(
        p,
        "INSERT INTO ctsync_e2e.Orders (Customer, Amount, Note, At, Tag) \
         SELECT TOP (100) N'Kunde ' + CAST(n AS nvarchar(10)) + N' ü', n * 1.25, CASE WHEN n % 3 = 0 THEN NULL ELSE REPLICATE(N'x', n) END, \
         DATEADD(MINUTE, n, '2026-01-01'), NEWID() \
         FROM (SELECT ROW_NUMBER() OVER (ORDER BY (SELECT NULL)) AS n FROM sys.all_objects) AS nums",
    )
    .await?;
    exec(
        p,
        "CREATE TABLE ctsync_e2e.Big (Id int NOT NULL, Part smallint NOT NULL, Payload varbinary(200) NULL, \
         CONSTRAINT PK_Big PRIMARY KEY (Id, Part))",
    )
    .await?;
    exec(p, "ALTER TABLE ctsync_e2e.Big ENABLE CHANGE_TRACKING").await?;
    exec(
        p,
        "INSERT INTO ctsync_e2e.Big (Id, Part, Payload) \
         SELECT n / 2, n % 2, CAST(REPLICATE(CHAR(65 + n % 26), 100) AS varbinary(200)) \
         FROM (SELECT TOP (20000) ROW_NUMBER() OVER (ORDER BY (SELECT NULL)) - 1 AS n \
               FROM sys.all_objects a CROSS JOIN sys.all_objects b) AS nums",
    )
    .await?;
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("mssql_sync:*:{SCHEMA}.*"))
        .query(&mut env.redis)?;
    keys.sort();
    if !keys.is_empty() {
        redis::cmd("DEL").arg(keys).query::<()>(&mut env.redis)?;
    }
    Ok(())
}

async fn enable_and_initial_load(env: &mut Env) -> Result<()> {
    env.start_daemon()?;
    until("default flags created as \"false\"", async || {
        let v = env.get(&format!("mssql_sync:enabled:{ORDERS}"));
        Ok(v?.as_deref() == Some("false"))
    })
    .await?;
    env.set(&format!("mssql_sync:enabled:{ORDERS}"), "true")?;
    env.wait_same(ORDERS).await?;
    if env.get(&format!("mssql_sync:version:{ORDERS}"))?.is_none() {
        bail!("no version stored after the initial load");
    }
    Ok(())
}

async fn inserts_updates_deletes(env: &mut Env) -> Result<()> {
    let p = &mut env.primary;
    exec(p, "INSERT INTO ctsync_e2e.Orders (Customer, Amount, Note, At) VALUES (N'新しい', 1.00, NULL, SYSUTCDATETIME())").await?;
    exec(
        p,
        "UPDATE ctsync_e2e.Orders SET Amount = Amount + 1, Note = N'changed' WHERE Id % 7 = 0",
    )
    .await?;
    exec(p, "DELETE FROM ctsync_e2e.Orders WHERE Id % 11 = 0").await?;
    exec(p, "UPDATE ctsync_e2e.Orders SET Note = NULL WHERE Id = 5").await?;
    env.wait_same(ORDERS).await
}

async fn forced_full_load_of_20000_rows(env: &mut Env) -> Result<()> {
    env.set(&format!("mssql_sync:enabled:{BIG}"), "true")?;
    env.wait_same(BIG).await?;
    env.set(&format!("mssql_sync:force_full_load:{BIG}"), "true")?;
    until("force flag reset by ctsync", async || {
        let v = env.get(&format!("mssql_sync:force_full_load:{BIG}"));
        Ok(v?.as_deref() == Some("false"))
    })
    .await?;
    env.wait_same(BIG).await?;
    let progress: serde_json::Value = serde_json::from_str(
        &env.get(&format!("mssql_sync:progress:{BIG}"))?
            .unwrap_or_default(),
    )?;
    if progress["synced"] != 20_000 {
        bail!("progress after the forced load: {progress}");
    }
    Ok(())
}

async fn manual_version_is_honoured(env: &mut Env) -> Result<()> {
    let current = scalar(&mut env.primary, "SELECT CHANGE_TRACKING_CURRENT_VERSION()")
        .await?
        .unwrap_or(0);
    let started = env.get(&format!("mssql_sync:progress:{ORDERS}"))?;
    env.set(
        &format!("mssql_sync:version:{ORDERS}"),
        &current.to_string(),
    )?;
    exec(
        &mut env.primary,
        "UPDATE ctsync_e2e.Orders SET Amount = 42 WHERE Id = 1",
    )
    .await?;
    env.wait_same(ORDERS).await?;
    if env.get(&format!("mssql_sync:progress:{ORDERS}"))? != started {
        bail!("setting the version by hand caused a reload");
    }
    Ok(())
}

async fn stale_after_truncate_then_recovered(env: &mut Env) -> Result<()> {
    exec(&mut env.primary, "TRUNCATE TABLE ctsync_e2e.Orders").await?;
    exec(&mut env.primary, "INSERT INTO ctsync_e2e.Orders (Customer, Amount, At) VALUES (N'after truncate', 3, SYSUTCDATETIME())").await?;
    until("table reported stale", async || {
        let state = env.api(&format!("/api/tables/{ORDERS}"));
        Ok(state?["state"] == "stale")
    })
    .await?;
    env.set(&format!("mssql_sync:force_full_load:{ORDERS}"), "true")?;
    env.wait_same(ORDERS).await
}

async fn ddl_events_follow(env: &mut Env) -> Result<()> {
    let p = &mut env.primary;
    exec(
        p,
        "ALTER TABLE ctsync_e2e.Orders ADD Phone nvarchar(30) NULL",
    )
    .await?;
    exec(p, "INSERT INTO ctsync_e2e.Orders (Customer, Amount, At, Phone) VALUES (N'phone', 1, SYSUTCDATETIME(), N'+49 30 1234')").await?;
    env.wait_same(ORDERS).await?;
    exec(
        &mut env.primary,
        "EXEC sp_rename N'ctsync_e2e.Orders.Phone', N'Mobile', N'COLUMN'",
    )
    .await?;
    until("column renamed on the replica", async || {
        let c = col_exists(&mut env.replica, "Mobile");
        c.await
    })
    .await?;
    exec(
        &mut env.primary,
        "UPDATE ctsync_e2e.Orders SET Mobile = N'+1 555' WHERE Mobile IS NOT NULL",
    )
    .await?;
    env.wait_same(ORDERS).await?;
    exec(
        &mut env.primary,
        "ALTER TABLE ctsync_e2e.Orders DROP COLUMN Mobile",
    )
    .await?;
    until("column dropped on the replica", async || {
        let c = col_exists(&mut env.replica, "Mobile");
        Ok(!c.await?)
    })
    .await?;
    env.wait_same(ORDERS).await
}

async fn col_exists(c: &mut Client, name: &str) -> Result<bool> {
    let sql = format!("SELECT COUNT_BIG(*) FROM sys.columns WHERE object_id = OBJECT_ID(N'ctsync_e2e.Orders') AND name = N'{name}'");
    Ok(scalar(c, &sql).await?.unwrap_or(0) > 0)
}

async fn modules_follow(env: &mut Env) -> Result<()> {
    let p = &mut env.primary;
    exec(p, "CREATE VIEW ctsync_e2e.BigOrders AS SELECT Id, Amount FROM ctsync_e2e.Orders WHERE Amount > 10").await?;
    exec(
        p,
        "CREATE VIEW ctsync_e2e.AaTop AS SELECT TOP 5 * FROM ctsync_e2e.BigOrders",
    )
    .await?;
    exec(
        p,
        "CREATE PROCEDURE ctsync_e2e.CountOrders AS SELECT COUNT(*) FROM ctsync_e2e.Orders",
    )
    .await?;
    exec(
        p,
        "CREATE FUNCTION ctsync_e2e.Twice(@x int) RETURNS int AS BEGIN RETURN @x * 2 END",
    )
    .await?;
    exec(
        p,
        "CREATE TRIGGER ctsync_e2e.OrdersAudit ON ctsync_e2e.Orders AFTER INSERT AS SET NOCOUNT ON",
    )
    .await?;
    let count =
        "SELECT COUNT_BIG(*) FROM sys.objects o JOIN sys.schemas s ON s.schema_id = o.schema_id \
                 WHERE s.name = N'ctsync_e2e' AND o.type IN ('V','P','FN')";
    until("views, procedure and function on the replica", async || {
        let n = scalar(&mut env.replica, count);
        Ok(n.await?.unwrap_or(0) == 4)
    })
    .await?;
    let triggers =
        "SELECT COUNT_BIG(*) FROM sys.triggers WHERE parent_id = OBJECT_ID(N'ctsync_e2e.Orders')";
    if scalar(&mut env.replica, triggers).await?.unwrap_or(0) != 0 {
        bail!("a trigger reached the replica");
    }
    exec(
        &mut env.primary,
        "ALTER PROCEDURE ctsync_e2e.CountOrders AS SELECT COUNT_BIG(*) AS n FROM ctsync_e2e.Orders",
    )
    .await?;
    let def = "SELECT CAST(CHARINDEX(N'COUNT_BIG', OBJECT_DEFINITION(OBJECT_ID(N'ctsync_e2e.CountOrders'))) AS bigint)";
    until("procedure recreated", async || {
        let n = scalar(&mut env.replica, def);
        Ok(n.await?.unwrap_or(0) > 0)
    })
    .await?;
    exec(&mut env.primary, "DROP VIEW ctsync_e2e.AaTop").await?;
    until("view dropped", async || {
        let n = scalar(
            &mut env.replica,
            "SELECT CAST(COALESCE(OBJECT_ID(N'ctsync_e2e.AaTop'), 0) AS bigint)",
        );
        Ok(n.await?.unwrap_or(0) == 0)
    })
    .await
}

async fn restart_mid_load_and_mid_batch(env: &mut Env) -> Result<()> {
    env.set(&format!("mssql_sync:force_full_load:{BIG}"), "true")?;
    // Small pages (see start_daemon) make the load last long enough to crash it midway.
    until("load under way", async || {
        let p = env.get(&format!("mssql_sync:progress:{BIG}"))?;
        let v: serde_json::Value = serde_json::from_str(&p.unwrap_or_default()).unwrap_or_default();
        let synced = v["synced"].as_i64().unwrap_or(0);
        Ok(synced > 0 && synced < 20_000)
    })
    .await?;
    env.crash_daemon();
    env.start_daemon()?;
    env.wait_same(BIG).await?;

    exec(
        &mut env.primary,
        "UPDATE ctsync_e2e.Big SET Payload = CAST(N'updated' AS varbinary(200)) WHERE Id % 2 = 0",
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    env.crash_daemon();
    env.start_daemon()?;
    env.wait_same(BIG).await?;
    env.wait_same(ORDERS).await
}

/// A backlog of 20,000 changes in pages of 100 is copied once into the
/// session's change set; a kill after some pages committed leaves the
/// backlog's cursor on the replica, and the restart continues from it
/// (the cursor is cleared when the backlog's last page commits).
async fn a_backlog_continues_after_a_kill(env: &mut Env) -> Result<()> {
    env.crash_daemon();
    env.start_daemon_with(&[("CTSYNC_CHANGE_PAGE_SIZE", "100")])?;
    env.wait_same(BIG).await?;
    exec(
        &mut env.primary,
        "UPDATE ctsync_e2e.Big SET Payload = CAST(N'backlog' AS varbinary(200))",
    )
    .await?;
    let recorded = "SELECT CAST(COUNT(*) AS bigint) FROM [ctsync].[sync_versions] \
                    WHERE [table_name] = N'ctsync_e2e.Big' AND [backlog] IS NOT NULL";
    until("a backlog page committed", async || {
        Ok(scalar(&mut env.replica, recorded).await?.unwrap_or(0) == 1)
    })
    .await?;
    env.crash_daemon();
    anyhow::ensure!(
        scalar(&mut env.replica, recorded).await?.unwrap_or(0) == 1,
        "the backlog of {BIG} is recorded after the kill"
    );
    env.start_daemon_with(&[("CTSYNC_CHANGE_PAGE_SIZE", "100")])?;
    env.wait_same(BIG).await?;
    until("the backlog finished", async || {
        Ok(scalar(&mut env.replica, recorded).await?.unwrap_or(1) == 0)
    })
    .await?;
    env.crash_daemon();
    env.start_daemon()
}

/// Idle tables' versions move while another table is busy, together (one
/// replica transaction per poll), and the replica's record moves with
/// Redis: BIG stays idle while ORDERS takes writes.
async fn idle_versions_move_together(env: &mut Env) -> Result<()> {
    env.crash_daemon();
    env.start_daemon_with(&[("CTSYNC_IDLE_ADVANCE_SECS", "1")])?;
    env.wait_same(BIG).await?;
    let stored = |env: &mut Env| -> Result<i64> {
        Ok(env
            .get(&format!("mssql_sync:version:{BIG}"))?
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0))
    };
    let before = stored(env)?;
    exec(
        &mut env.primary,
        "UPDATE ctsync_e2e.Orders SET Amount = Amount + 1",
    )
    .await?;
    let current = scalar(&mut env.primary, "SELECT CHANGE_TRACKING_CURRENT_VERSION()")
        .await?
        .ok_or_else(|| anyhow!("no CT version"))?;
    until(
        "the idle table's version moved past the busy table's change",
        async || Ok(stored(env)? >= current),
    )
    .await?;
    anyhow::ensure!(stored(env)? > before, "the idle version moved");
    let recorded = scalar(
        &mut env.replica,
        "SELECT [version] FROM [ctsync].[sync_versions] WHERE [table_name] = N'ctsync_e2e.Big'",
    )
    .await?
    .unwrap_or(0);
    anyhow::ensure!(
        recorded >= current,
        "the replica's record moved with Redis ({recorded} < {current})"
    );
    env.crash_daemon();
    env.start_daemon()
}

/// A forced load into the shadow table: a reader counting the live table
/// never sees fewer rows than before until the swap; an index and a grant
/// added by hand survive the swap.
async fn forced_load_readers_never_notice(env: &mut Env) -> Result<()> {
    exec(
        &mut env.replica,
        "IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE name = N'IX_e2e_Big_Id_desc') \
         CREATE NONCLUSTERED INDEX IX_e2e_Big_Id_desc ON ctsync_e2e.Big (Id DESC); \
         IF DATABASE_PRINCIPAL_ID(N'ctsync_e2e_readers') IS NULL CREATE ROLE ctsync_e2e_readers;",
    )
    .await?;
    exec(
        &mut env.replica,
        "GRANT SELECT ON ctsync_e2e.Big TO ctsync_e2e_readers",
    )
    .await?;
    let before = fingerprint(&mut env.replica, BIG).await?.0;
    env.set(&format!("mssql_sync:force_full_load:{BIG}"), "true")?;
    let mut lowest = i64::MAX;
    let deadline = Instant::now() + WAIT;
    while env
        .get(&format!("mssql_sync:force_full_load:{BIG}"))?
        .as_deref()
        != Some("false")
    {
        lowest = lowest.min(fingerprint(&mut env.replica, BIG).await?.0);
        if Instant::now() > deadline {
            bail!("the forced load never finished");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if lowest < before {
        bail!("a reader saw {lowest} rows during the load (before: {before})");
    }
    env.wait_same(BIG).await?;
    let index = scalar(
        &mut env.replica,
        "SELECT COUNT_BIG(*) FROM sys.indexes WHERE object_id = OBJECT_ID(N'ctsync_e2e.Big') AND name = N'IX_e2e_Big_Id_desc'",
    )
    .await?;
    let grant = scalar(
        &mut env.replica,
        "SELECT COUNT_BIG(*) FROM sys.database_permissions WHERE major_id = OBJECT_ID(N'ctsync_e2e.Big') \
         AND grantee_principal_id = DATABASE_PRINCIPAL_ID(N'ctsync_e2e_readers') AND permission_name = N'SELECT'",
    )
    .await?;
    if index != Some(1) || grant != Some(1) {
        bail!("after the swap: index {index:?}, grant {grant:?} (expected 1 and 1)");
    }
    Ok(())
}

/// SIGTERM in the middle of a load: exit 0 within seconds; the next start
/// resumes from the last committed page (`resumedAt` in the progress).
async fn sigterm_mid_load_then_restart_resumes(env: &mut Env) -> Result<()> {
    env.set(&format!("mssql_sync:force_full_load:{BIG}"), "true")?;
    until("load under way", async || {
        let p = env.get(&format!("mssql_sync:progress:{BIG}"))?;
        let v: serde_json::Value = serde_json::from_str(&p.unwrap_or_default()).unwrap_or_default();
        let synced = v["synced"].as_i64().unwrap_or(0);
        Ok((1_000..20_000).contains(&synced))
    })
    .await?;
    let sent = Instant::now();
    let log = env.stop_daemon_log()?;
    let took = sent.elapsed();
    println!(
        "e2e: SIGTERM mid-load: exit 0 in {:.2} s",
        took.as_secs_f64()
    );
    // The stop ended at a page boundary of the load and said so (not a
    // time bound a busy CI machine could miss).
    let stopped = format!("the full load of {BIG} stopped at");
    if !log.contains(&stopped) {
        let summary = log
            .lines()
            .filter(|l| l.contains("ctsync::shutdown"))
            .collect::<Vec<_>>()
            .join("\n");
        bail!("the stop summary does not say {stopped:?}: {summary}");
    }
    env.start_daemon()?;
    until("load finished", async || {
        Ok(env
            .get(&format!("mssql_sync:force_full_load:{BIG}"))?
            .as_deref()
            == Some("false"))
    })
    .await?;
    env.wait_same(BIG).await?;
    let progress: serde_json::Value = serde_json::from_str(
        &env.get(&format!("mssql_sync:progress:{BIG}"))?
            .unwrap_or_default(),
    )?;
    if progress["resumedAt"].as_i64().unwrap_or(0) < 1_000 {
        bail!("the load did not resume: {progress}");
    }
    Ok(())
}

/// A schema-bound view over the table on the replica blocks the swap: the
/// load runs in place and says why in /api/tables.
async fn schema_bound_view_falls_back_in_place(env: &mut Env) -> Result<()> {
    exec(
        &mut env.primary,
        "CREATE OR ALTER VIEW ctsync_e2e.BigIds WITH SCHEMABINDING AS SELECT Id FROM ctsync_e2e.Big",
    )
    .await?;
    until("the view reached the replica", async || {
        Ok(scalar(
            &mut env.replica,
            "SELECT COUNT_BIG(*) FROM sys.views WHERE name = N'BigIds'",
        )
        .await?
            == Some(1))
    })
    .await?;
    env.set(&format!("mssql_sync:force_full_load:{BIG}"), "true")?;
    let path = format!("/api/tables/{BIG}");
    until("the in-place reason is shown", async || {
        let v = env.api(&path)?;
        let reason = v["reason"].as_str().unwrap_or_default().to_string();
        Ok(reason.contains("in place") && reason.contains("BigIds"))
    })
    .await?;
    until("load finished", async || {
        Ok(env
            .get(&format!("mssql_sync:force_full_load:{BIG}"))?
            .as_deref()
            == Some("false"))
    })
    .await?;
    env.wait_same(BIG).await?;
    exec(&mut env.primary, "DROP VIEW ctsync_e2e.BigIds").await
}

/// The original tool's README, step by step, on the compose stack: its
/// setup SQL (where the compose init already ran it, only "already exists"
/// errors are accepted: 1801, 2714, 4996, 5088 and Service Broker's), its
/// INSERT and redis-cli SET, its Force Full Load of Product, and its manual
/// snapshot of a huge table (backup/restore simulated by a copy).
async fn original_readme_quick_start(env: &mut Env) -> Result<()> {
    let script = include_str!("../sql/00-original-setup.sql");
    for batch in script.split("\nGO") {
        let batch = batch.trim();
        if batch
            .lines()
            .all(|l| l.trim().is_empty() || l.trim().starts_with("--"))
        {
            continue;
        }
        if let Err(e) = exec(&mut env.primary, batch).await {
            if !format!("{e:#}").to_lowercase().contains("already") {
                bail!("the original setup SQL failed: {e:#}\n{batch}");
            }
        }
    }
    // Step 3, literally (an earlier run's row removed first).
    exec(&mut env.primary, "DELETE FROM [User] WHERE id = 1").await?;
    exec(
        &mut env.primary,
        "INSERT INTO [User] (id, username, email) VALUES (1, 'alice', 'alice@example.com');",
    )
    .await?;
    env.set("mssql_sync:enabled:User", "true")?;
    until("alice on the replica", async || {
        Ok(scalar(
            &mut env.replica,
            "IF OBJECT_ID(N'dbo.[User]') IS NULL SELECT CAST(0 AS bigint) ELSE SELECT COUNT_BIG(*) FROM [User] WHERE id = 1 AND username = 'alice'",
        )
        .await?
            == Some(1))
    })
    .await?;
    // Force Full Re-Sync of Product, as its README says.
    exec(
        &mut env.primary,
        "DELETE FROM [Product]; INSERT INTO [Product] (id, Name, Category, Price) \
         VALUES (1, 'Widget', 'tools', 9.99), (2, 'Gadget', NULL, 19.50), (3, NULL, 'misc', NULL)",
    )
    .await?;
    env.set("mssql_sync:force_full_load:Product", "true")?;
    env.set("mssql_sync:enabled:Product", "true")?;
    until("Product loaded and the flag reset", async || {
        Ok(env.get("mssql_sync:force_full_load:Product")?.as_deref() == Some("false"))
    })
    .await?;
    env.wait_same("Product").await?;
    // Huge tables: a manual copy, the version read before it, then the keys.
    exec(
        &mut env.primary,
        "IF OBJECT_ID(N'dbo.HugeTable', N'U') IS NULL BEGIN \
           CREATE TABLE dbo.HugeTable (id bigint NOT NULL PRIMARY KEY, v nvarchar(50) NULL); \
           ALTER TABLE dbo.HugeTable ENABLE CHANGE_TRACKING; END; \
         DELETE FROM dbo.HugeTable; \
         INSERT INTO dbo.HugeTable (id, v) SELECT TOP (500) ROW_NUMBER() OVER (ORDER BY (SELECT NULL)), N'copied' FROM sys.all_objects",
    )
    .await?;
    let version = scalar(&mut env.primary, "SELECT CHANGE_TRACKING_CURRENT_VERSION()")
        .await?
        .ok_or_else(|| anyhow!("no CT version"))?;
    exec(
        &mut env.replica,
        "IF OBJECT_ID(N'dbo.HugeTable', N'U') IS NOT NULL DROP TABLE dbo.HugeTable; \
         CREATE TABLE dbo.HugeTable (id bigint NOT NULL PRIMARY KEY, v nvarchar(50) NULL); \
         INSERT INTO dbo.HugeTable (id, v) SELECT TOP (500) ROW_NUMBER() OVER (ORDER BY (SELECT NULL)), N'copied' FROM sys.all_objects",
    )
    .await?;
    let _ = redis::cmd("DEL")
        .arg("mssql_sync:progress:HugeTable")
        .query::<()>(&mut env.redis);
    env.set("mssql_sync:version:HugeTable", &version.to_string())?;
    env.set("mssql_sync:enabled:HugeTable", "true")?;
    exec(
        &mut env.primary,
        "UPDATE dbo.HugeTable SET v = N'after' WHERE id <= 10",
    )
    .await?;
    env.wait_same("HugeTable").await?;
    if env.get("mssql_sync:progress:HugeTable")?.is_some() {
        bail!("the manual snapshot was loaded again instead of continuing from its version");
    }
    Ok(())
}

impl Env {
    /// Runs a ctsync command against the test databases; (exit code, stdout).
    fn ctsync(&self, args: &[&str]) -> Result<(i32, String)> {
        let out = Command::new(env!("CARGO_BIN_EXE_ctsync"))
            .args(args)
            .env("MSSQL_PRIMARY_URL", &self.primary_url)
            .env("MSSQL_REPLICA_URL", &self.replica_url)
            .env("REDIS_URL", &self.redis_url)
            .env(
                "CTSYNC_TRUST_SERVER_CERTIFICATE",
                if tls().trust_server_certificate {
                    "true"
                } else {
                    "false"
                },
            )
            .output()
            .context("running ctsync")?;
        Ok((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string(),
        ))
    }
}

/// `ctsync doctor` is clean on the compose setup and names a disabled queue
/// and a table without change tracking; `ctsync verify` finds every enabled
/// table equal after the whole scenario.
async fn doctor_and_verify(env: &mut Env) -> Result<()> {
    let (code, out) = env.ctsync(&["doctor"])?;
    if code != 0 || out.contains("BLOCKER") || out.contains("WARNING") {
        bail!("doctor on the compose setup (exit {code}):\n{out}");
    }
    if !out.contains("Customer is not change-tracked") {
        bail!("doctor did not name the untracked Customer table:\n{out}");
    }
    exec(
        &mut env.primary,
        "ALTER QUEUE dbo.SyncDDLQueue WITH STATUS = OFF",
    )
    .await?;
    let (_, out) = env.ctsync(&["doctor"])?;
    exec(
        &mut env.primary,
        "ALTER QUEUE dbo.SyncDDLQueue WITH STATUS = ON",
    )
    .await?;
    if !out.contains("is disabled")
        || !out.contains("ALTER QUEUE [dbo].[SyncDDLQueue] WITH STATUS = ON;")
    {
        bail!("doctor did not report the disabled queue with its fix:\n{out}");
    }
    env.wait_same(BIG).await?;
    env.wait_same(ORDERS).await?;
    let (code, out) = env.ctsync(&["verify", BIG, ORDERS, "--settle-secs", "30"])?;
    if code != 0 {
        bail!("verify found differences (exit {code}):\n{out}");
    }
    Ok(())
}

const EDGES: &str = "ctsync_e2e.Edges";
const SURROGATE: &str = "ctsync_e2e.Surrogate";

/// Every value the fidelity review found at risk, on both sides equal:
/// decimal(38,38), empty and large xml, money and smallmoney extremes, a
/// `_UTF8` varchar, a varchar key under another code page (Greek), a
/// case-sensitive key (`a`, `A`, …) in a case-insensitive database paged
/// across several keyset pages, a NUL inside nvarchar; then changes to all
/// of them. And an unpaired surrogate in nvarchar does what the README says:
/// its table goes to `error` naming the column and the key until the value
/// is fixed.
async fn fidelity_edges(env: &mut Env) -> Result<()> {
    let p = &mut env.primary;
    exec(
        p,
        "CREATE TABLE ctsync_e2e.Edges (\
         K varchar(10) COLLATE Latin1_General_CS_AS NOT NULL, \
         K2 varchar(10) COLLATE Greek_CI_AS NOT NULL, \
         D38 decimal(38,38) NULL, X xml NULL, M money NULL, SM smallmoney NULL, \
         U varchar(60) COLLATE Latin1_General_100_CI_AS_SC_UTF8 NULL, N nvarchar(60) NULL, \
         CONSTRAINT PK_Edges PRIMARY KEY (K, K2))",
    )
    .await?;
    exec(p, "ALTER TABLE ctsync_e2e.Edges ENABLE CHANGE_TRACKING").await?;
    exec(
        p,
        "INSERT INTO ctsync_e2e.Edges (K, K2, D38, X, M, SM, U, N) \
         SELECT CASE WHEN n % 2 = 0 THEN 'a' ELSE 'A' END + CAST(n / 2 AS varchar(6)), \
         CASE n % 3 WHEN 0 THEN N'α' WHEN 1 THEN N'Β' ELSE N'γ' END, \
         CASE n % 3 WHEN 0 THEN 0.99999999999999999999999999999999999999 \
         WHEN 1 THEN -0.00000000000000000000000000000000000001 \
         ELSE CAST(0 AS decimal(38,38)) END, \
         CASE n % 3 WHEN 0 THEN CAST(N'' AS xml) \
         WHEN 1 THEN CAST(N'<r>' + REPLICATE(CAST(N'ü' AS nvarchar(max)), 20000) + N'</r>' AS xml) ELSE NULL END, \
         CASE n % 2 WHEN 0 THEN 922337203685477.5807 ELSE -922337203685477.5808 END, \
         CASE n % 2 WHEN 0 THEN 214748.3647 ELSE -214748.3648 END, \
         N'日本語 ü 🙂 ' + CAST(n AS nvarchar(6)), N'a' + NCHAR(0) + N'b' \
         FROM (SELECT TOP (600) ROW_NUMBER() OVER (ORDER BY (SELECT NULL)) AS n FROM sys.all_objects) AS nums",
    )
    .await?;
    let edges_same = async |env: &mut Env| -> Result<bool> {
        let sql = "SELECT CAST(COALESCE(CHECKSUM_AGG(BINARY_CHECKSUM(K, K2, D38, M, SM, U, N, \
                   CAST(X AS nvarchar(max)))), 0) AS bigint) FROM ctsync_e2e.Edges";
        let p = scalar(&mut env.primary, sql).await?;
        let r = scalar(&mut env.replica, sql).await.unwrap_or(Some(-1));
        Ok(p == r && env.same(EDGES).await?)
    };
    env.set(&format!("mssql_sync:enabled:{EDGES}"), "true")?;
    until("the edge values equal on the replica", async || {
        edges_same(env).await
    })
    .await?;
    let p = &mut env.primary;
    exec(
        p,
        "UPDATE ctsync_e2e.Edges SET U = N'Ελληνικά ✓', X = CAST(N'' AS xml) WHERE K LIKE 'A%'",
    )
    .await?;
    exec(p, "DELETE FROM ctsync_e2e.Edges WHERE K IN ('a1', 'A2')").await?;
    exec(
        p,
        "INSERT INTO ctsync_e2e.Edges (K, K2, D38, M, U) VALUES ('a1', N'Δ', 0.5, 0.0001, N'ß')",
    )
    .await?;
    until("the changed edge values equal", async || {
        edges_same(env).await
    })
    .await?;

    let p = &mut env.primary;
    exec(
        p,
        "CREATE TABLE ctsync_e2e.Surrogate (Id int NOT NULL PRIMARY KEY, V nvarchar(10) NULL)",
    )
    .await?;
    exec(p, "ALTER TABLE ctsync_e2e.Surrogate ENABLE CHANGE_TRACKING").await?;
    exec(
        p,
        "INSERT INTO ctsync_e2e.Surrogate VALUES (1, N'ok'), (2, N'x' + NCHAR(0xD800))",
    )
    .await?;
    env.set(&format!("mssql_sync:enabled:{SURROGATE}"), "true")?;
    until(
        "the table with an unpaired surrogate is in error, named",
        async || {
            let t = env.api(&format!("/api/tables/{SURROGATE}"))?;
            Ok(t["state"] == "error"
                && t["last_error"].as_str().is_some_and(|e| {
                    e.contains("column [V] of the row with key [Id] = 2 is not valid UTF-16")
                }))
        },
    )
    .await?;
    exec(
        &mut env.primary,
        "UPDATE ctsync_e2e.Surrogate SET V = N'fixed' WHERE Id = 2",
    )
    .await?;
    env.wait_same(SURROGATE).await
}

const TYPES: &str = "ctsync_e2e.Types";
const SPEED: &str = "ctsync_e2e.Speed";
const SPEED_ROWS: i64 = 200_000;

/// Every column type bulk copy takes (xml and image always go by INSERT,
/// see `fidelity_edges`), with NULLs and extremes.
const TYPES_TABLE: &str = "CREATE TABLE ctsync_e2e.Types (\
 Id int IDENTITY(1,1) NOT NULL PRIMARY KEY, B bit NULL, TI tinyint NULL, SI smallint NULL, \
 BI bigint NULL, D decimal(38,10) NULL, NU numeric(9,0) NULL, M money NULL, SM smallmoney NULL, \
 R real NULL, F float NULL, C char(5) NULL, VC varchar(40) NULL, VCM varchar(max) NULL, \
 NC nchar(5) NULL, NV nvarchar(3000) NULL, NVM nvarchar(max) NULL, T text NULL, NT ntext NULL, \
 BIN binary(4) NULL, VB varbinary(50) NULL, VBM varbinary(max) NULL, G uniqueidentifier NULL, \
 DA date NULL, TM time(7) NULL, DT datetime NULL, SDT smalldatetime NULL, DT2 datetime2(7) NULL, \
 DTO datetimeoffset(7) NULL, RV rowversion NOT NULL)";

/// Rows `n` of `ctsync_e2e.Types`, every third value NULL-ish.
const TYPES_ROWS: &str = "INSERT INTO ctsync_e2e.Types (B, TI, SI, BI, D, NU, M, SM, R, F, C, VC, VCM, NC, NV, NVM, T, NT, BIN, VB, VBM, G, DA, TM, DT, SDT, DT2, DTO) \
 SELECT n % 2, n % 256, -n, n * 1000000007, CAST(n AS decimal(38,10)) / 7, n * 3, \
 CASE n % 3 WHEN 0 THEN 922337203685477.5807 WHEN 1 THEN -922337203685477.5808 ELSE NULL END, \
 CAST(n AS smallmoney) / 3, CAST(n AS real) / 3, CASE WHEN n % 3 = 2 THEN NULL ELSE 1.0 / n END, \
 'c' + CAST(n % 9 AS varchar(1)), REPLICATE('v', n % 40), REPLICATE(CAST('w' AS varchar(max)), n * 37), \
 N'ü' + CAST(n % 9 AS nvarchar(1)), REPLICATE(N'é', n % 3000), \
 CASE WHEN n % 3 = 2 THEN NULL ELSE REPLICATE(CAST(N'日本' AS nvarchar(max)), n * 11) END, \
 REPLICATE('t', n % 100), REPLICATE(N'ñ', n % 100), CAST(n AS binary(4)), CAST(REPLICATE('b', n % 50) AS varbinary(50)), \
 CASE WHEN n % 3 = 2 THEN NULL ELSE CAST(REPLICATE(CAST('z' AS varchar(max)), n * 53) AS varbinary(max)) END, \
 NEWID(), DATEADD(day, n, CAST('0001-01-01' AS date)), DATEADD(nanosecond, n * 100, CAST('23:59:59' AS time(7))), \
 DATEADD(millisecond, n * 3, CAST('1753-01-01T00:00:00' AS datetime)), DATEADD(minute, n, CAST('1900-01-01' AS smalldatetime)), \
 DATEADD(nanosecond, n * 100, CAST('9999-12-30T23:59:59' AS datetime2(7))), \
 TODATETIMEOFFSET(DATEADD(second, n, CAST('2024-01-01T00:30:00' AS datetime2(7))), (n % 1681) - 840) \
 FROM (SELECT TOP (@rows) ROW_NUMBER() OVER (ORDER BY (SELECT NULL)) AS n FROM sys.all_objects a CROSS JOIN sys.all_objects b) AS nums";

/// The replica's Types equal the primary's, column by column (the LOB
/// columns BINARY_CHECKSUM skips are compared through their hashes).
async fn types_same(env: &mut Env) -> Result<bool> {
    let sql = "SELECT CAST(COALESCE(CHECKSUM_AGG(BINARY_CHECKSUM(Id, B, TI, SI, BI, D, NU, M, SM, R, F, C, \
               VC, NC, NV, BIN, VB, G, DA, TM, DT, SDT, DT2, DTO, RV, \
               HASHBYTES('SHA2_256', VCM), HASHBYTES('SHA2_256', NVM), HASHBYTES('SHA2_256', VBM), \
               HASHBYTES('SHA2_256', CAST(T AS varchar(max))), HASHBYTES('SHA2_256', CAST(NT AS nvarchar(max))))), 0) AS bigint) \
               FROM ctsync_e2e.Types";
    let p = scalar(&mut env.primary, sql).await?;
    let r = scalar(&mut env.replica, sql).await.unwrap_or(Some(-1));
    Ok(p == r && env.same(TYPES).await?)
}

/// Runs a forced full load of `table` and returns its rows per second
/// (from the force flag being set to its reset by ctsync).
async fn timed_forced_load(env: &mut Env, table: &str) -> Result<f64> {
    let started = Instant::now();
    env.set(&format!("mssql_sync:force_full_load:{table}"), "true")?;
    until("force flag reset by ctsync", async || {
        let v = env.get(&format!("mssql_sync:force_full_load:{table}"));
        Ok(v?.as_deref() == Some("false"))
    })
    .await?;
    let secs = started.elapsed().as_secs_f64();
    env.wait_same(table).await?;
    Ok(SPEED_ROWS as f64 / secs)
}

/// Bulk copy and the INSERT path (CTSYNC_BULK_LOAD=off) store the same
/// values of every type bulk copy takes, in full loads and in changes;
/// prints the full-load speed of a 200,000-row table on each path.
async fn bulk_copy_and_insert_store_the_same_rows(env: &mut Env) -> Result<()> {
    let p = &mut env.primary;
    exec(p, TYPES_TABLE).await?;
    exec(p, "ALTER TABLE ctsync_e2e.Types ENABLE CHANGE_TRACKING").await?;
    exec(p, &TYPES_ROWS.replace("@rows", "3000")).await?;
    exec(
        p,
        "CREATE TABLE ctsync_e2e.Speed (Id int NOT NULL PRIMARY KEY, Name nvarchar(100) NOT NULL, \
         Amount decimal(18,2) NULL, At datetime2(3) NOT NULL, Flag bit NOT NULL)",
    )
    .await?;
    exec(p, "ALTER TABLE ctsync_e2e.Speed ENABLE CHANGE_TRACKING").await?;
    exec(
        p,
        &format!(
            "INSERT INTO ctsync_e2e.Speed SELECT n, N'customer ' + CAST(n AS nvarchar(10)), n * 1.25, \
             DATEADD(second, n, '2024-01-01'), n % 2 \
             FROM (SELECT TOP ({SPEED_ROWS}) ROW_NUMBER() OVER (ORDER BY (SELECT NULL)) AS n \
             FROM sys.all_objects a CROSS JOIN sys.all_objects b) AS nums"
        ),
    )
    .await?;
    let mut speeds = Vec::new();
    for (path, setting) in [("bulk copy", "on"), ("INSERT … OPENJSON", "off")] {
        env.stop_daemon()?;
        env.start_daemon_with(&[
            ("CTSYNC_BULK_LOAD", setting),
            ("CTSYNC_FULL_LOAD_PAGE_SIZE", "5000"),
        ])?;
        env.set(&format!("mssql_sync:enabled:{TYPES}"), "true")?;
        env.set(&format!("mssql_sync:enabled:{SPEED}"), "true")?;
        env.wait_same(SPEED).await?;
        until("Types equal after a full load", async || {
            types_same(env).await
        })
        .await?;
        let p = &mut env.primary;
        exec(p, &TYPES_ROWS.replace("@rows", "500")).await?;
        exec(p, "UPDATE ctsync_e2e.Types SET NV = N'changed ✓', D = -D, DTO = SYSDATETIMEOFFSET() WHERE Id % 4 = 0").await?;
        exec(p, "DELETE FROM ctsync_e2e.Types WHERE Id % 5 = 0").await?;
        until("Types equal after changes", async || types_same(env).await).await?;
        speeds.push((path, timed_forced_load(env, SPEED).await?));
        env.set(&format!("mssql_sync:force_full_load:{TYPES}"), "true")?;
        until("Types equal after a forced load", async || {
            Ok(env
                .get(&format!("mssql_sync:force_full_load:{TYPES}"))?
                .as_deref()
                == Some("false")
                && types_same(env).await?)
        })
        .await?;
    }
    for (path, rows_per_second) in speeds {
        println!("e2e: full load of {SPEED_ROWS} rows by {path}: {rows_per_second:.0} rows/s");
    }
    env.stop_daemon()?;
    env.start_daemon()
}

/// Two daemons share the tables through Redis leases and the replica's
/// fence; one is killed (its leases are not given back) and the other takes
/// its tables over within the TTL: the replica still matches, and every
/// table is listed by the survivor with the instance that runs it.
async fn two_daemons_share_and_survive_a_kill(env: &mut Env) -> Result<()> {
    let second_http = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .to_string();
    let mut second = env.spawn_daemon(&second_http)?;
    until("two live instances", async || {
        let live: i64 = redis::cmd("ZCARD")
            .arg("mssql_sync:instances")
            .query(&mut env.redis)?;
        Ok(live == 2)
    })
    .await?;
    exec(
        &mut env.primary,
        "UPDATE ctsync_e2e.Orders SET Amount = Amount + 2 WHERE Id % 5 = 0",
    )
    .await?;
    exec(
        &mut env.primary,
        "UPDATE ctsync_e2e.Big SET Payload = CAST(N'two daemons' AS varbinary(200)) WHERE Id % 9 = 0",
    )
    .await?;
    env.wait_same(ORDERS).await?;
    env.wait_same(BIG).await?;

    env.crash_daemon();
    exec(
        &mut env.primary,
        "INSERT INTO ctsync_e2e.Orders (Customer, Amount, Note, At) VALUES (N'after the kill', 3.00, NULL, SYSUTCDATETIME())",
    )
    .await?;
    exec(
        &mut env.primary,
        "DELETE FROM ctsync_e2e.Big WHERE Id % 13 = 0",
    )
    .await?;
    env.wait_same(ORDERS).await?;
    env.wait_same(BIG).await?;
    let survivor = Env::api_at(&second_http, "/api/tables")?;
    let listed = survivor["tables"].as_array().cloned().unwrap_or_default();
    for table in [ORDERS, BIG] {
        let row = listed
            .iter()
            .find(|t| t["name"] == table)
            .ok_or_else(|| anyhow!("{table} missing from the survivor's /api/tables"))?;
        if row["instance"] != survivor["instance"] {
            bail!("{table} is not run by the survivor: {row}");
        }
    }

    // The first daemon comes back for the scenarios that follow; the
    // second stops cleanly and gives its leases back.
    env.start_daemon()?;
    Command::new("kill")
        .args(["-TERM", &second.id().to_string()])
        .status()?;
    if !second.wait()?.success() {
        bail!("the second daemon did not stop cleanly on SIGTERM");
    }
    env.wait_same(ORDERS).await
}

type Scenario = for<'a> fn(
    &'a mut Env,
)
    -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + 'a>>;

macro_rules! scenario {
    ($f:ident) => {
        (stringify!($f), (|e| Box::pin($f(e))) as Scenario)
    };
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let vars = ["CTSYNC_TEST_PRIMARY", "CTSYNC_TEST_REPLICA", "REDIS_URL"];
    let values: Vec<Option<String>> = vars
        .iter()
        .map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .collect();
    if values.iter().any(Option::is_none) {
        println!("e2e: skipped: set CTSYNC_TEST_PRIMARY, CTSYNC_TEST_REPLICA and REDIS_URL to run the contract against real SQL Server 2022 (see docs/testing.md)");
        println!("e2e: 0 passed, 0 failed, 19 skipped");
        return;
    }
    let [primary_url, replica_url, redis_url] =
        [0, 1, 2].map(|i| values[i].clone().unwrap_or_default());
    let code = match run(primary_url, replica_url, redis_url).await {
        Ok(failed) => i32::from(failed > 0),
        Err(e) => {
            println!("e2e: setup failed: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

async fn run(primary_url: String, replica_url: String, redis_url: String) -> Result<usize> {
    let http = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .to_string();
    let mut env = Env {
        primary: connect("CTSYNC_TEST_PRIMARY", &primary_url).await?,
        replica: connect("CTSYNC_TEST_REPLICA", &replica_url).await?,
        redis: redis::Client::open(redis_url.as_str())?.get_connection()?,
        primary_url,
        replica_url,
        redis_url,
        http,
        daemon: None,
    };
    prepare(&mut env).await?;
    let scenarios = [
        scenario!(enable_and_initial_load),
        scenario!(inserts_updates_deletes),
        scenario!(forced_full_load_of_20000_rows),
        scenario!(manual_version_is_honoured),
        scenario!(stale_after_truncate_then_recovered),
        scenario!(ddl_events_follow),
        scenario!(modules_follow),
        scenario!(restart_mid_load_and_mid_batch),
        scenario!(a_backlog_continues_after_a_kill),
        scenario!(idle_versions_move_together),
        scenario!(forced_load_readers_never_notice),
        scenario!(sigterm_mid_load_then_restart_resumes),
        scenario!(schema_bound_view_falls_back_in_place),
        scenario!(original_readme_quick_start),
        scenario!(doctor_and_verify),
        scenario!(fidelity_edges),
        scenario!(bulk_copy_and_insert_store_the_same_rows),
        scenario!(two_daemons_share_and_survive_a_kill),
    ];
    let (mut passed, mut failed) = (0, 0);
    for (name, f) in scenarios {
        match f(&mut env).await {
            Ok(()) => {
                passed += 1;
                println!("e2e: ok     {name}");
            }
            Err(e) => {
                failed += 1;
                println!("e2e: FAILED {name}: {e:#}");
            }
        }
    }
    match env.stop_daemon() {
        Ok(()) => {
            passed += 1;
            println!("e2e: ok     sigterm_stops_cleanly");
        }
        Err(e) => {
            failed += 1;
            println!("e2e: FAILED sigterm_stops_cleanly: {e:#}");
        }
    }
    println!("e2e: {passed} passed, {failed} failed");
    Ok(failed)
}
