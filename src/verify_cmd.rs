//! `ctsync verify [TABLE…]`: compares tables between primary and replica
//! with chunked checksums (see `ctsync_actors::verify`), straight from the
//! databases (the daemon need not run). Exit codes: 0 every table equal,
//! 1 a difference persists after the replica caught up, 2 nothing could be
//! verified (no table named or enabled, a server unreachable).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use ctsync_actors::keys;
use ctsync_actors::model::TableId;
use ctsync_actors::verify::{Options, Sides, Verify};

use crate::config::Config;
use crate::mssql::{MssqlPrimary, MssqlReplica, Pool};
use crate::state::RedisState;

pub struct Args {
    pub tables: Vec<String>,
    pub options: Options,
    pub json: bool,
}

/// How a run ended; its exit code is [`Verdict::code`].
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every table verified is equal.
    Equal,
    /// At least one table differs.
    Differ,
    /// Nothing was verified; why, and what to do.
    NothingVerified(String),
}

impl Verdict {
    /// 0 equal, 1 differences, 2 could not run (an error also exits 2).
    pub fn code(&self) -> i32 {
        match self {
            Verdict::Equal => 0,
            Verdict::Differ => 1,
            Verdict::NothingVerified(_) => 2,
        }
    }
}

/// The exit code of a run that failed before it could verify everything.
pub const COULD_NOT_RUN: i32 = 2;

/// Runs the command: one line per table (or a JSON report), then, in text
/// mode, a line saying what was verified.
pub async fn run(config: &Config, args: Args) -> anyhow::Result<Verdict> {
    let sides = Sides {
        primary: Arc::new(MssqlPrimary::new(Pool::new(config.primary.clone(), 1))),
        replica: Arc::new(MssqlReplica::new(Pool::new(config.replica.clone(), 1))),
        options: args.options,
    };
    let tables = if args.tables.is_empty() {
        enabled_tables(config).await?
    } else {
        args.tables
            .iter()
            .map(|t| {
                TableId::from_key_name(t).with_context(|| format!("'{t}' is not a table name"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?
    };
    if tables.is_empty() {
        return Ok(Verdict::NothingVerified(format!(
            "nothing was verified: no table is enabled in Redis {} database {} \
             (name the tables to verify, or check REDIS_URL)",
            config.redis_url,
            redis_database(config.redis_url.expose())
        )));
    }
    let mut all_equal = true;
    let mut reports = Vec::new();
    for table in tables {
        let report = sides
            .verify(&table)
            .await
            .with_context(|| format!("verifying {}", table.key_name()))?;
        all_equal &= report.equal();
        if !args.json {
            println!("{}", describe(&report));
        }
        reports.push(report);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        let differ = reports.iter().filter(|r| !r.equal()).count();
        println!(
            "verified {} table{}: {} equal, {differ} differ{}",
            reports.len(),
            if reports.len() == 1 { "" } else { "s" },
            reports.len() - differ,
            if differ == 1 { "s" } else { "" }
        );
    }
    Ok(if all_equal {
        Verdict::Equal
    } else {
        Verdict::Differ
    })
}

/// The database number a Redis URL selects (`/N`, default 0).
fn redis_database(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .map(|u| u.path().trim_start_matches('/').to_string())
        .filter(|db| !db.is_empty())
        .unwrap_or_else(|| "0".into())
}

async fn enabled_tables(config: &Config) -> anyhow::Result<Vec<TableId>> {
    let state = RedisState::new(config.redis_url.expose()).context("REDIS_URL")?;
    let mut out = Vec::new();
    for name in state.table_names().await? {
        let Some(id) = TableId::from_key_name(&name) else {
            continue;
        };
        if keys::parse_flag(state.get(&keys::enabled(&id)).await?.as_deref()) {
            out.push(id);
        }
    }
    Ok(out)
}

/// One table's result as text.
pub fn describe(r: &ctsync_actors::verify::Report) -> String {
    if r.equal() {
        return format!(
            "{}: equal ({} rows in {} chunks, primary version {})",
            r.table, r.rows_primary, r.chunks, r.at_version
        );
    }
    let mut out = format!(
        "{}: DIFFERS: {} rows differ (primary {} rows, replica {} rows)",
        r.table, r.total_differences, r.rows_primary, r.rows_replica
    );
    for (after, upto) in &r.ranges {
        out.push_str(&format!("\n  key range ({after:?}, {upto:?}]"));
    }
    for d in &r.differences {
        out.push_str(&format!("\n  {:?} {:?}", d.kind, d.key.0));
    }
    out
}

pub fn options(chunk: usize, max_keys: usize, settle_secs: u64) -> Options {
    Options {
        chunk: chunk.max(1),
        max_keys,
        settle: Duration::from_secs(settle_secs),
    }
}
