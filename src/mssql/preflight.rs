//! `doctor`'s facts from SQL Server (read-only queries of `sql::PREFLIGHT_*`).

use async_trait::async_trait;
use ctsync_actors::doctor::{PrimaryFacts, PrimaryPreflight, ReplicaFacts, ReplicaPreflight};
use ctsync_actors::model::TableId;
use ctsync_actors::{Error, Result};
use tiberius::ColumnData;

use super::pool::{query_rows, Pool};
use super::{sql, MssqlPrimary, MssqlReplica};

async fn rows(
    pool: &Pool,
    side: fn(String) -> Error,
    text: &str,
    params: Vec<ColumnData<'static>>,
) -> Result<Vec<tiberius::Row>> {
    let mut lease = pool.lease().await.map_err(|e| side(e.to_string()))?;
    query_rows(&mut lease, text, params, || "preflight".into())
        .await
        .map_err(|e| side(e.to_string()))
}

fn text(r: &tiberius::Row, col: &str) -> String {
    r.try_get::<&str, _>(col)
        .ok()
        .flatten()
        .unwrap_or_default()
        .to_string()
}

fn flag(r: &tiberius::Row, col: &str) -> bool {
    r.try_get::<bool, _>(col).ok().flatten().unwrap_or(false)
}

fn perm(r: &tiberius::Row, col: &str) -> bool {
    r.try_get::<i32, _>(col).ok().flatten() == Some(1)
}

/// Database, version, edition, user and (for the primary) CT settings.
struct Database {
    name: String,
    version: String,
    edition: String,
    user: String,
    row: Option<tiberius::Row>,
}

async fn database(pool: &Pool, side: fn(String) -> Error) -> Result<Database> {
    let mut found = rows(pool, side, sql::PREFLIGHT_DATABASE, vec![]).await?;
    let row = found.pop();
    Ok(Database {
        name: row
            .as_ref()
            .map(|r| text(r, "database_name"))
            .unwrap_or_default(),
        version: row.as_ref().map(|r| text(r, "version")).unwrap_or_default(),
        edition: row.as_ref().map(|r| text(r, "edition")).unwrap_or_default(),
        user: row
            .as_ref()
            .map(|r| text(r, "user_name"))
            .unwrap_or_default(),
        row,
    })
}

async fn missing_database_permissions(
    pool: &Pool,
    side: fn(String) -> Error,
    wanted: &[&str],
    db: &str,
) -> Result<Vec<(String, String)>> {
    let found = rows(pool, side, sql::PREFLIGHT_DATABASE_PERMISSIONS, vec![]).await?;
    Ok(found
        .iter()
        .filter(|r| wanted.contains(&text(r, "permission_name").as_str()) && !perm(r, "has_it"))
        .map(|r| {
            (
                text(r, "permission_name"),
                format!("DATABASE::[{}]", db.replace(']', "]]")),
            )
        })
        .collect())
}

#[async_trait]
impl PrimaryPreflight for MssqlPrimary {
    async fn preflight(&self, queue: Option<&str>) -> Result<PrimaryFacts> {
        let pool = self.pool();
        let db = database(pool, Error::Primary).await?;
        let row = db.row.as_ref();
        let retention_secs = row.and_then(|r| {
            let n = r.try_get::<i32, _>("retention_period").ok().flatten()? as u64;
            let unit = match text(r, "retention_units").as_str() {
                "MINUTES" => 60,
                "HOURS" => 3_600,
                _ => 86_400,
            };
            flag(r, "is_auto_cleanup_on").then_some(n * unit)
        });
        let mut facts = PrimaryFacts {
            database: db.name.clone(),
            version: db.version,
            edition: db.edition,
            user: db.user,
            change_tracking: row.is_some_and(|r| flag(r, "ct_on")),
            retention_secs,
            snapshot_isolation: row.is_some_and(|r| flag(r, "snapshot_on")),
            broker_enabled: row.is_some_and(|r| flag(r, "is_broker_enabled")),
            queue: None,
            notification: false,
            tables: Vec::new(),
            unsupported: Vec::new(),
            missing_permissions: Vec::new(),
        };
        if let Some(queue) = queue {
            let (schema, name) = queue.split_once('.').unwrap_or(("dbo", queue));
            let qname = sql::queue_name(schema, name);
            let found = rows(
                pool,
                Error::Primary,
                sql::PREFLIGHT_QUEUE,
                vec![ColumnData::String(Some(qname.clone().into()))],
            )
            .await?;
            if let Some(r) = found.first() {
                facts.queue = Some(flag(r, "is_receive_enabled"));
                facts.notification = flag(r, "notified");
                if !perm(r, "can_receive") {
                    facts
                        .missing_permissions
                        .push(("RECEIVE".into(), format!("OBJECT::{qname}")));
                }
            }
        }
        for r in rows(pool, Error::Primary, sql::PREFLIGHT_TABLES, vec![]).await? {
            let id = TableId::new(text(&r, "schema_name"), text(&r, "table_name"));
            let tracked = flag(&r, "tracked");
            if tracked {
                let on = format!("OBJECT::{}", sql::table(&id));
                if !perm(&r, "can_select") {
                    facts
                        .missing_permissions
                        .push(("SELECT".into(), on.clone()));
                }
                if !perm(&r, "can_view_ct") {
                    facts
                        .missing_permissions
                        .push(("VIEW CHANGE TRACKING".into(), on));
                }
            }
            facts.tables.push((id, flag(&r, "has_pk"), tracked));
        }
        for r in rows(pool, Error::Primary, sql::PREFLIGHT_UNSUPPORTED, vec![]).await? {
            facts.unsupported.push((
                TableId::new(text(&r, "schema_name"), text(&r, "table_name")),
                text(&r, "column_name"),
                text(&r, "type_name"),
            ));
        }
        facts.missing_permissions.extend(
            missing_database_permissions(pool, Error::Primary, &["VIEW DEFINITION"], &db.name)
                .await?,
        );
        Ok(facts)
    }
}

#[async_trait]
impl ReplicaPreflight for MssqlReplica {
    async fn preflight(&self) -> Result<ReplicaFacts> {
        let pool = &self.pool;
        let db = database(pool, Error::Replica).await?;
        let wanted = [
            "CREATE TABLE",
            "CREATE SCHEMA",
            "CREATE VIEW",
            "CREATE PROCEDURE",
            "CREATE FUNCTION",
            "SELECT",
            "INSERT",
            "DELETE",
            "ALTER",
        ];
        let missing = missing_database_permissions(pool, Error::Replica, &wanted, &db.name).await?;
        let compatibility_level = db
            .row
            .as_ref()
            .and_then(|r| r.try_get::<i32, _>("compatibility_level").ok().flatten());
        Ok(ReplicaFacts {
            compatibility_level,
            database: db.name,
            version: db.version,
            edition: db.edition,
            user: db.user,
            missing_permissions: missing,
        })
    }
}
