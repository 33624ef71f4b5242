//! `ctsync doctor`: a preflight of the primary and the replica. The
//! adapters gather the facts (database settings, the DDL queue and its
//! notification, tables and their keys, column types, the logins'
//! permissions, versions); `diagnose` turns them into findings, each with
//! the exact T-SQL that fixes it. A blocker stops replication; a warning
//! costs a feature or safety; info is for the record.

use serde::Serialize;

use crate::error::Result;
use crate::model::TableId;
/// The ports `doctor` runs on, at their old paths.
pub use crate::ports::{PrimaryFacts, PrimaryPreflight, ReplicaFacts, ReplicaPreflight};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Blocker,
    Warning,
    Info,
}

/// What fixes a finding, as data: the SQL Server adapter writes its T-SQL
/// (`ctsync::mssql::sql::fix_sql`), so all T-SQL stays in one place and
/// goes through Microsoft's parser with the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fix {
    EnableChangeTracking {
        database: String,
    },
    /// Retention of `days`; `behind`: a table is behind (lengthen, or fix
    /// what keeps it behind).
    Retention {
        database: String,
        days: u64,
        behind: bool,
    },
    AllowSnapshot {
        database: String,
    },
    EnableBroker {
        database: String,
    },
    /// The DDL queue, its service and the event notification.
    CreateQueue {
        schema: String,
        name: String,
    },
    EnableQueue {
        schema: String,
        name: String,
    },
    CreateNotification,
    /// `permission` and `on` as the catalog names them.
    Grant {
        permission: String,
        on: String,
        user: String,
    },
    CompatibilityLevel,
    DisableTracking {
        table: TableId,
    },
    EnableTracking {
        table: TableId,
    },
    /// A template: the operator names the key columns.
    AddPrimaryKey {
        table: TableId,
    },
}

/// Writes a fix's T-SQL.
pub type FixText<'a> = &'a dyn Fn(&Fix) -> String;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// Which side: `primary` or `replica`.
    pub side: &'static str,
    pub message: String,
    /// The T-SQL that fixes it, to run on that side.
    pub fix: Option<String>,
}

fn major(version: &str) -> u32 {
    version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0)
}

/// The findings for these facts, blockers first. `queue` is the DDL queue
/// ctsync listens on (`None`: the listener is off); `snapshot_required`:
/// change sets must be copied under SNAPSHOT (`CTSYNC_CHANGE_ISOLATION`,
/// the default); `lags` are the tables' current lags in seconds (from the
/// daemon, when it answers), compared with the CT retention period.
pub fn diagnose(
    p: &PrimaryFacts,
    r: &ReplicaFacts,
    queue: Option<&str>,
    snapshot_required: bool,
    lags: &[(String, f64)],
    fix_text: FixText<'_>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut add = |severity, side, message: String, fix: Option<Fix>| {
        out.push(Finding {
            severity,
            side,
            message,
            fix: fix.as_ref().map(fix_text),
        })
    };
    let db = p.database.clone();
    if !p.change_tracking {
        add(
            Severity::Blocker,
            "primary",
            format!("change tracking is off for database {}", p.database),
            Some(Fix::EnableChangeTracking {
                database: db.clone(),
            }),
        );
    } else if let Some(secs) = p.retention_secs {
        let severity = if secs < 86_400 {
            Severity::Warning
        } else {
            Severity::Info
        };
        add(
            severity,
            "primary",
            format!(
                "change tracking keeps changes for {} h: a table behind for longer (an outage, a full load) goes stale",
                secs / 3_600
            ),
            (severity == Severity::Warning).then(|| Fix::Retention {
                database: db.clone(),
                days: 2,
                behind: false,
            }),
        );
    }
    if let Some(secs) = p.retention_secs.filter(|_| p.change_tracking) {
        for (table, lag) in lags {
            if *lag > 0.5 * secs as f64 {
                add(
                    if *lag > 0.8 * secs as f64 { Severity::Blocker } else { Severity::Warning },
                    "primary",
                    format!(
                        "{table} is {:.0} h behind, {:.0}% of the CT retention period: cleanup will soon remove changes it has not applied",
                        lag / 3_600.0,
                        100.0 * lag / secs as f64
                    ),
                    Some(Fix::Retention {
                        database: db.clone(),
                        days: (secs / 86_400).max(1) * 2,
                        behind: true,
                    }),
                );
            }
        }
    }
    if !p.snapshot_isolation && snapshot_required {
        add(
            Severity::Blocker,
            "primary",
            "snapshot isolation is off: no table can sync incrementally, because change sets are copied in SNAPSHOT transactions (CTSYNC_CHANGE_ISOLATION=snapshot); allow it, or set CTSYNC_CHANGE_ISOLATION=read-committed to accept the exposure docs/consistency.md describes".into(),
            Some(Fix::AllowSnapshot { database: db.clone() }),
        );
    } else if !p.snapshot_isolation {
        add(
            Severity::Warning,
            "primary",
            "snapshot isolation is off: change sets are copied under READ COMMITTED (CTSYNC_CHANGE_ISOLATION=read-committed; changes may be applied twice, and CT cleanup running during the copy of a table near its retention limit may go unnoticed)".into(),
            Some(Fix::AllowSnapshot { database: db.clone() }),
        );
    }
    if let Some(queue) = queue {
        let (schema, name) = queue.split_once('.').unwrap_or(("dbo", queue));
        if !p.broker_enabled {
            add(
                Severity::Warning,
                "primary",
                "Service Broker is off: no DDL events (column renames will pause tables)".into(),
                Some(Fix::EnableBroker {
                    database: db.clone(),
                }),
            );
        }
        match p.queue {
            None => add(
                Severity::Warning,
                "primary",
                format!("the DDL queue {queue} does not exist"),
                Some(Fix::CreateQueue {
                    schema: schema.to_string(),
                    name: name.to_string(),
                }),
            ),
            Some(false) => add(
                Severity::Warning,
                "primary",
                format!("the DDL queue {queue} is disabled (poison messages from another reader?)"),
                Some(Fix::EnableQueue {
                    schema: schema.to_string(),
                    name: name.to_string(),
                }),
            ),
            Some(true) if !p.notification => add(
                Severity::Warning,
                "primary",
                format!("no event notification sends DDL events to {queue}"),
                Some(Fix::CreateNotification),
            ),
            Some(true) => {}
        }
    }
    for (perm, on) in &p.missing_permissions {
        add(
            Severity::Blocker,
            "primary",
            format!("the login's user {} lacks {perm} on {on}", p.user),
            Some(Fix::Grant {
                permission: perm.clone(),
                on: on.clone(),
                user: p.user.clone(),
            }),
        );
    }
    if let Some(level) = r.compatibility_level.filter(|l| *l < 130) {
        add(
            Severity::Blocker,
            "replica",
            format!(
                "the replica database's compatibility level is {level}: ctsync deletes and \
                 inserts pages with OPENJSON, which needs 130 (SQL Server 2016) or later"
            ),
            Some(Fix::CompatibilityLevel),
        );
    }
    for (perm, on) in &r.missing_permissions {
        add(
            Severity::Blocker,
            "replica",
            format!("the login's user {} lacks {perm} on {on}", r.user),
            Some(Fix::Grant {
                permission: perm.clone(),
                on: on.clone(),
                user: r.user.clone(),
            }),
        );
    }
    for (table, column, ty) in &p.unsupported {
        add(
            Severity::Warning,
            "primary",
            format!("{table}: column {column} has type {ty}, which ctsync cannot replicate: the table will stay in error"),
            Some(Fix::DisableTracking {
                table: table.clone(),
            }),
        );
    }
    for (table, has_pk, tracked) in &p.tables {
        match (has_pk, tracked) {
            (true, false) => add(
                Severity::Info,
                "primary",
                format!("{table} is not change-tracked: it is not replicated"),
                Some(Fix::EnableTracking {
                    table: table.clone(),
                }),
            ),
            (false, _) => add(
                Severity::Info,
                "primary",
                format!("{table} has no primary key: change tracking (and ctsync) cannot track it"),
                Some(Fix::AddPrimaryKey {
                    table: table.clone(),
                }),
            ),
            (true, true) => {}
        }
    }
    for (side, version, edition) in [
        ("primary", &p.version, &p.edition),
        ("replica", &r.version, &r.edition),
    ] {
        if major(version) < 13 {
            add(
                Severity::Warning,
                side,
                format!("SQL Server {version} ({edition}): CREATE OR ALTER and parts of ctsync need SQL Server 2016 SP1 or later"),
                None,
            );
        } else {
            add(
                Severity::Info,
                side,
                format!("SQL Server {version} ({edition})"),
                None,
            );
        }
    }
    out.sort_by_key(|f| f.severity);
    out
}

/// Gathers both sides' facts and diagnoses them; the exit code is 1 when a
/// blocker was found.
pub async fn check(
    primary: &dyn PrimaryPreflight,
    replica: &dyn ReplicaPreflight,
    queue: Option<&str>,
    snapshot_required: bool,
    lags: &[(String, f64)],
    fix_text: FixText<'_>,
) -> Result<(Vec<Finding>, i32)> {
    let p = primary.preflight(queue).await?;
    let r = replica.preflight().await?;
    let findings = diagnose(&p, &r, queue, snapshot_required, lags, fix_text);
    let code = i32::from(findings.iter().any(|f| f.severity == Severity::Blocker));
    Ok((findings, code))
}

/// The findings as text: one per line, each fix-up indented below it.
pub fn render(findings: &[Finding]) -> String {
    let mut out = String::new();
    for f in findings {
        let label = match f.severity {
            Severity::Blocker => "BLOCKER",
            Severity::Warning => "WARNING",
            Severity::Info => "info",
        };
        out.push_str(&format!("{label:<7} {}: {}\n", f.side, f.message));
        if let Some(fix) = &f.fix {
            for line in fix.lines() {
                out.push_str(&format!("        fix: {line}\n"));
            }
        }
    }
    let blockers = findings
        .iter()
        .filter(|f| f.severity == Severity::Blocker)
        .count();
    let warnings = findings
        .iter()
        .filter(|f| f.severity == Severity::Warning)
        .count();
    out.push_str(&format!(
        "doctor: {blockers} blockers, {warnings} warnings\n"
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_setup_has_no_blocker_or_warning() {
        let findings = diagnose(
            &PrimaryFacts::default(),
            &ReplicaFacts::default(),
            Some("dbo.SyncDDLQueue"),
            true,
            &[("User".into(), 60.0)],
            &|f| format!("{f:?}"),
        );
        assert!(
            findings.iter().all(|f| f.severity == Severity::Info),
            "{findings:?}"
        );
    }
}
