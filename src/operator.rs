//! Operator commands of the CLI: they read and write exactly the Redis keys
//! documented for operators, say what they changed (`key = new (was old)`),
//! and refuse a table ctsync has never discovered unless told `--force`.
//! `tables` adds state, lag and progress from the daemon's API when it
//! answers, and says when it does not. Each write is recorded in the audit
//! trail (as `cli` with the OS user), which `audit` prints.

use anyhow::{bail, Context as _};
use ctsync_actors::keys;
use ctsync_actors::model::TableId;
use ctsync_actors::ports::StateStore;
use serde_json::{json, Value};

use crate::cli::Command;
use crate::state::audit::Entry;
use crate::state::RedisState;

/// The table an operator named, or an error saying how names are written.
fn table_id(name: &str) -> anyhow::Result<TableId> {
    TableId::from_key_name(name).with_context(|| {
        format!(
            "'{name}' is not a table name: write `Table` for dbo tables, `schema.Table` otherwise, \
             and bracket a part that contains '.', '[' or ']' (e.g. `[my.table]`)"
        )
    })
}

/// The table, if ctsync has discovered it (its `enabled` flag exists) or
/// the operator insists.
async fn known_table(state: &RedisState, name: &str, force: bool) -> anyhow::Result<TableId> {
    let id = table_id(name)?;
    if force || state.get(&keys::enabled(&id)).await?.is_some() {
        return Ok(id);
    }
    let known = state.table_names().await?;
    // A name typed in another case: SQL Server's names are usually
    // case-insensitive, the keys are not.
    if let Some(meant) = known.iter().find(|k| k.eq_ignore_ascii_case(name)) {
        bail!(
            "ctsync has never discovered a table '{name}' (there is no {}); did you mean \
             `{meant}`? Redis keys are case-sensitive: write the name as ctsync discovered it",
            keys::enabled(&id)
        );
    }
    let hint = if known.is_empty() {
        "no table has been discovered yet (is the daemon running against the primary?)".to_string()
    } else {
        format!("known tables: {}", known.join(", "))
    };
    bail!(
        "ctsync has never discovered a table '{name}' (there is no {}); {hint}. \
         Check the name, or pass --force to set the key anyway",
        keys::enabled(&id)
    )
}

fn changed(key: &str, new: &str, old: Option<String>) -> String {
    match old {
        Some(old) => format!("{key} = {new} (was {old})"),
        None => format!("{key} = {new} (was not set)"),
    }
}

/// Sets `key` to `value` and prints what changed.
async fn set(state: &RedisState, key: &str, value: &str) -> anyhow::Result<()> {
    let old = state.get(key).await?;
    state.set(key, value).await?;
    println!("{}", changed(key, value, old));
    Ok(())
}

/// The OS user running the command (`$USER`, `$LOGNAME`, else `unknown`).
fn os_user() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .map(|u| u.trim().to_string())
        .find(|u| !u.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Records a write done, as `cli` with the OS user; says on stderr when
/// the entry could not be stored (the write stands).
async fn audited(state: &RedisState, action: &str, table: &TableId, detail: String) {
    let entry = Entry::now("cli", &os_user(), action, &table.key_name()).detail(detail);
    if let Err(e) = state.audit(&entry).await {
        eprintln!(
            "ctsync: warning: the change was made but not recorded in {}: {e}",
            crate::state::audit::stream()
        );
    }
}

pub async fn run(redis_url: &str, command: Command) -> anyhow::Result<()> {
    let state = RedisState::new(redis_url).context("REDIS_URL is not a valid Redis URL")?;
    match command {
        Command::Enable { table, force } => {
            let id = known_table(&state, &table, force).await?;
            set(&state, &keys::enabled(&id), "true").await?;
            audited(
                &state,
                "enable",
                &id,
                format!("{}=true", keys::enabled(&id)),
            )
            .await;
        }
        Command::Disable { table, force } => {
            let id = known_table(&state, &table, force).await?;
            set(&state, &keys::enabled(&id), "false").await?;
            audited(
                &state,
                "disable",
                &id,
                format!("{}=false", keys::enabled(&id)),
            )
            .await;
        }
        Command::ForceFullLoad { table, force } => {
            let id = known_table(&state, &table, force).await?;
            let key = keys::force_full_load(&id);
            let old = state.get(&key).await?;
            state.request_full_load(&id).await?;
            println!("{}", changed(&key, "true", old));
            println!(
                "a running load of {} starts over; ctsync resets the flag when the load finished",
                id.key_name()
            );
            audited(&state, "force_full_load", &id, format!("{key}=true")).await;
        }
        Command::SetVersion {
            table,
            version,
            force,
        } => {
            if version < 0 {
                bail!("version must not be negative");
            }
            let id = known_table(&state, &table, force).await?;
            set(&state, &keys::version(&id), &version.to_string()).await?;
            // The copy came from the current primary: adopt its identity.
            state.del(&keys::primary_identity(&id)).await?;
            let detail = format!("{}={version}", keys::version(&id));
            audited(&state, "set_version", &id, detail).await;
        }
        Command::Audit { since, json } => audit(&state, since.as_deref(), json).await?,
        Command::Tables { json, api } => tables(&state, json, &api).await?,
        Command::Run
        | Command::CheckConfig { .. }
        | Command::Healthcheck
        | Command::Verify { .. }
        | Command::Doctor { .. } => {
            bail!("not an operator command")
        }
    }
    Ok(())
}

/// `ctsync audit`: the entries from `since` on, as text or JSON.
async fn audit(state: &RedisState, since: Option<&str>, as_json: bool) -> anyhow::Result<()> {
    let since = since
        .map(|s| crate::state::audit::since_ms(s, std::time::SystemTime::now()))
        .transpose()?;
    let entries = state.audit_entries(since).await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(());
    }
    if entries.is_empty() {
        println!(
            "no audit entries{} in {}",
            if since.is_some() { " in that time" } else { "" },
            crate::state::audit::stream()
        );
        return Ok(());
    }
    for e in &entries {
        let detail = if e.detail.is_empty() {
            String::new()
        } else {
            format!(" ({})", e.detail)
        };
        let token = if e.token.is_empty() {
            String::new()
        } else {
            format!(" (token {})", e.token)
        };
        println!(
            "{}  {} {}{}  {} {}{}  {}",
            e.at, e.actor, e.from, token, e.action, e.table, detail, e.outcome
        );
    }
    Ok(())
}

/// One table as `ctsync tables` shows it.
struct Row {
    name: String,
    enabled: bool,
    force: bool,
    version: String,
    daemon: Option<Value>,
}

async fn tables(state: &RedisState, as_json: bool, api: &str) -> anyhow::Result<()> {
    let daemon = crate::healthcheck::target(api)
        .and_then(|addr| crate::healthcheck::get_json(addr, "/api/tables"));
    // What every live instance published (state, lag, progress, owner):
    // shown when the daemon at `api` does not answer.
    let published =
        ctsync_actors::status::merge_published("", Default::default(), &state.statuses().await?);
    let mut rows = Vec::new();
    for name in state.table_names().await? {
        let id = table_id(&name)?;
        let flags = state.flags(&id).await?;
        let version = match state.version(&id).await {
            Ok(v) => v.map(|v| v.to_string()).unwrap_or_else(|| "-".into()),
            Err(e @ ctsync_actors::Error::BadValue { .. }) => format!("<{e}>"),
            Err(e) => return Err(e.into()),
        };
        let from_daemon = daemon
            .as_ref()
            .ok()
            .and_then(|body| {
                body["tables"]
                    .as_array()?
                    .iter()
                    .find(|t| t["name"] == name.as_str())
                    .cloned()
            })
            .or_else(|| {
                published.get(&name).map(|(s, instance)| {
                    json!({
                        "state": s.state.as_str(),
                        "lag_versions": s.lag_versions,
                        "lag_seconds": s.lag_seconds,
                        "progress": s.progress.map(|(synced, total)| json!({"synced": synced, "total": total})),
                        "instance": instance,
                    })
                })
            });
        rows.push(Row {
            name,
            enabled: flags.enabled,
            force: flags.force_full_load,
            version,
            daemon: from_daemon,
        });
    }
    if as_json {
        let out: Vec<Value> = rows
            .iter()
            .map(|r| {
                let d = r.daemon.as_ref();
                json!({
                    "name": r.name,
                    "enabled": r.enabled,
                    "force_full_load": r.force,
                    "version": r.version,
                    "state": d.map(|d| d["state"].clone()),
                    "lag_versions": d.map(|d| d["lag_versions"].clone()),
                    "lag_seconds": d.map(|d| d["lag_seconds"].clone()),
                    "progress": d.map(|d| d["progress"].clone()),
                    "instance": d.map(|d| d["instance"].clone()),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    match &daemon {
        Ok(_) => println!(
            "(flags and versions from Redis; state, lag and progress from the daemon at {api})"
        ),
        Err(e) if !published.is_empty() => println!(
            "(flags and versions from Redis; state, lag and progress as the instances published them: the daemon at {api} did not answer: {e:#})"
        ),
        Err(e) => println!(
            "(flags and versions from Redis only: the daemon at {api} did not answer: {e:#})"
        ),
    }
    if rows.is_empty() {
        println!("no tables known yet: ctsync has not discovered any (is the daemon running against the primary?)");
        return Ok(());
    }
    // Someone reports tables: a row nobody reports is not merely unknown.
    let reporting = daemon.is_ok() || !published.is_empty();
    let cells: Vec<[String; 8]> = rows.iter().map(|r| cells(r, reporting)).collect();
    let header = [
        "TABLE", "ENABLED", "FORCE", "VERSION", "STATE", "LAG", "PROGRESS", "INSTANCE",
    ];
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cols: Vec<String>| {
        cols.iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    println!("{}", line(header.iter().map(|h| h.to_string()).collect()));
    let unreported = reporting && rows.iter().any(|r| r.daemon.is_none());
    for row in cells {
        println!("{}", line(row.to_vec()));
    }
    if unreported {
        println!(
            "unreported: no running instance reports this table: its keys were set by hand \
             (a mistyped name, or --force) or the table is no longer on the primary"
        );
    }
    Ok(())
}

/// The row's cells; with `reporting`, a table nobody reports is marked
/// `unreported` (explained below the table) rather than unknown (`?`).
fn cells(r: &Row, reporting: bool) -> [String; 8] {
    let unknown = || if reporting { "-" } else { "?" }.to_string();
    let instance = r
        .daemon
        .as_ref()
        .and_then(|d| d["instance"].as_str())
        .map_or_else(unknown, str::to_string);
    let (state, lag, progress) = match &r.daemon {
        None if reporting => ("unreported".to_string(), unknown(), unknown()),
        None => (unknown(), unknown(), unknown()),
        Some(d) => {
            let state = d["state"].as_str().unwrap_or("?").to_string();
            let lag = match (d["lag_versions"].as_i64(), d["lag_seconds"].as_f64()) {
                (Some(v), Some(s)) => format!("{v} v, {s:.1} s"),
                (None, Some(s)) if s > 0.0 => format!("{s:.1} s"),
                _ => "-".into(),
            };
            let progress = match (
                d["progress"]["synced"].as_u64(),
                d["progress"]["total"].as_u64(),
            ) {
                (Some(s), Some(t)) => format!("{s} / {t}"),
                _ => "-".into(),
            };
            (state, lag, progress)
        }
    };
    [
        r.name.clone(),
        r.enabled.to_string(),
        r.force.to_string(),
        r.version.clone(),
        state,
        lag,
        progress,
        instance,
    ]
}
