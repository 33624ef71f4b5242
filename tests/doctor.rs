//! `ctsync doctor` against the in-memory primary and replica: a clean setup
//! passes (exit 0); every problem is found, with the T-SQL that fixes it.

use ctsync_actors::doctor::{check, render, PrimaryFacts, ReplicaFacts, Severity};
use ctsync_actors::memory::{MemoryPrimary, MemoryReplica};
use ctsync_actors::model::*;

const QUEUE: Option<&str> = Some("dbo.SyncDDLQueue");

fn table(schema: &str, name: &str, pk: bool) -> TableSchema {
    TableSchema {
        id: TableId::new(schema, name),
        columns: vec![ColumnDef::new("Id", SqlType::Int, false)],
        primary_key: if pk {
            vec![KeyColumn {
                name: "Id".into(),
                descending: false,
            }]
        } else {
            Vec::new()
        },
    }
}

#[actix_rt::test]
async fn a_clean_setup_passes() {
    let primary = MemoryPrimary::new();
    primary.create_table(table("dbo", "User", true), true);
    let replica = MemoryReplica::new();
    let (findings, code) = check(
        &primary,
        &replica,
        QUEUE,
        true,
        &[],
        &ctsync::mssql::sql::fix_sql,
    )
    .await
    .expect("doctor");
    assert_eq!(code, 0);
    assert!(
        findings.iter().all(|f| f.severity == Severity::Info),
        "{findings:?}"
    );
    let text = render(&findings);
    assert!(text.ends_with("doctor: 0 blockers, 0 warnings\n"), "{text}");
}

#[actix_rt::test]
async fn every_problem_is_found_with_its_fix() {
    let primary = MemoryPrimary::new();
    primary.create_table(table("dbo", "User", true), true);
    primary.create_table(table("dbo", "Untracked", true), false);
    primary.create_table(table("dbo", "NoKey", false), false);
    primary.set_doctor_facts(PrimaryFacts {
        change_tracking: false,
        snapshot_isolation: false,
        broker_enabled: false,
        queue: Some(false),
        user: "ctsync_reader".into(),
        missing_permissions: vec![("VIEW CHANGE TRACKING".into(), "OBJECT::[dbo].[User]".into())],
        unsupported: vec![(
            TableId::new("dbo", "User"),
            "Shape".into(),
            "geometry".into(),
        )],
        version: "12.0.6024.0".into(),
        ..PrimaryFacts::default()
    });
    let replica = MemoryReplica::new();
    replica.set_doctor_facts(ReplicaFacts {
        user: "ctsync_writer".into(),
        missing_permissions: vec![("CREATE TABLE".into(), "DATABASE::[testct]".into())],
        compatibility_level: Some(120),
        ..ReplicaFacts::default()
    });
    let (findings, code) = check(
        &primary,
        &replica,
        QUEUE,
        true,
        &[],
        &ctsync::mssql::sql::fix_sql,
    )
    .await
    .expect("doctor");
    assert_eq!(code, 1, "blockers make doctor fail");
    let fix = |needle: &str| {
        findings
            .iter()
            .find(|f| f.message.contains(needle))
            .unwrap_or_else(|| panic!("no finding about {needle}: {findings:#?}"))
            .fix
            .clone()
            .unwrap_or_default()
    };
    assert_eq!(
        fix("compatibility level is 120"),
        "ALTER DATABASE CURRENT SET COMPATIBILITY_LEVEL = 130;"
    );
    assert_eq!(
        fix("change tracking is off"),
        "ALTER DATABASE [testct] SET CHANGE_TRACKING = ON (CHANGE_RETENTION = 2 DAYS, AUTO_CLEANUP = ON);"
    );
    assert_eq!(
        fix("snapshot isolation is off"),
        "ALTER DATABASE [testct] SET ALLOW_SNAPSHOT_ISOLATION ON;"
    );
    assert_eq!(
        fix("Service Broker is off"),
        "ALTER DATABASE [testct] SET ENABLE_BROKER WITH ROLLBACK IMMEDIATE;"
    );
    assert_eq!(
        fix("is disabled"),
        "ALTER QUEUE [dbo].[SyncDDLQueue] WITH STATUS = ON;"
    );
    assert_eq!(
        fix("lacks VIEW CHANGE TRACKING"),
        "GRANT VIEW CHANGE TRACKING ON OBJECT::[dbo].[User] TO [ctsync_reader];"
    );
    assert_eq!(
        fix("lacks CREATE TABLE"),
        "GRANT CREATE TABLE ON DATABASE::[testct] TO [ctsync_writer];"
    );
    assert!(
        fix("has type geometry").starts_with("ALTER TABLE [dbo].[User] DISABLE CHANGE_TRACKING;")
    );
    assert_eq!(
        fix("dbo.Untracked is not change-tracked"),
        "ALTER TABLE [dbo].[Untracked] ENABLE CHANGE_TRACKING WITH (TRACK_COLUMNS_UPDATED = OFF);"
    );
    assert!(fix("dbo.NoKey has no primary key").contains("PRIMARY KEY"));
    assert!(findings
        .iter()
        .any(|f| f.message.contains("SQL Server 12.0") && f.severity == Severity::Warning));
    assert_eq!(findings[0].severity, Severity::Blocker, "blockers first");

    // A missing queue gets the whole setup; a queue without a notification
    // gets the notification.
    primary.set_doctor_facts(PrimaryFacts {
        queue: None,
        ..PrimaryFacts::default()
    });
    let (findings, code) = check(
        &primary,
        &replica,
        QUEUE,
        true,
        &[],
        &ctsync::mssql::sql::fix_sql,
    )
    .await
    .expect("doctor");
    assert_eq!(
        code, 1,
        "the replica's missing permission is still a blocker"
    );
    let missing = findings
        .iter()
        .find(|f| f.message.contains("does not exist"))
        .and_then(|f| f.fix.clone())
        .unwrap_or_default();
    assert!(
        missing.contains("CREATE QUEUE [dbo].[SyncDDLQueue];")
            && missing.contains("CREATE EVENT NOTIFICATION"),
        "{missing}"
    );
    primary.set_doctor_facts(PrimaryFacts {
        notification: false,
        ..PrimaryFacts::default()
    });
    let (findings, _) = check(
        &primary,
        &replica,
        QUEUE,
        true,
        &[],
        &ctsync::mssql::sql::fix_sql,
    )
    .await
    .expect("doctor");
    assert!(findings
        .iter()
        .any(|f| f.message.contains("no event notification")));
}

#[actix_rt::test]
async fn a_table_lagging_towards_the_retention_period_is_reported() {
    let primary = MemoryPrimary::new();
    let replica = MemoryReplica::new();
    // Retention 2 days: 30 h behind is a warning, 40 h a blocker.
    let lags = [
        ("User".to_string(), 30.0 * 3_600.0),
        ("Big".to_string(), 40.0 * 3_600.0),
    ];
    let (findings, code) = check(
        &primary,
        &replica,
        QUEUE,
        true,
        &lags,
        &ctsync::mssql::sql::fix_sql,
    )
    .await
    .expect("doctor");
    assert_eq!(code, 1);
    let about = |t: &str| {
        findings
            .iter()
            .find(|f| f.message.starts_with(&format!("{t} is ")))
            .expect(t)
    };
    assert_eq!(about("User").severity, Severity::Warning);
    assert_eq!(about("Big").severity, Severity::Blocker);
    assert!(about("Big")
        .fix
        .as_deref()
        .unwrap_or_default()
        .contains("CHANGE_RETENTION = 4 DAYS"));
}

/// With `CTSYNC_CHANGE_ISOLATION=snapshot` (the default) a primary without
/// snapshot isolation cannot sync incrementally: a blocker. With
/// `read-committed` the operator accepted the exposure: a warning.
#[actix_rt::test]
async fn snapshot_isolation_off_blocks_unless_read_committed_was_chosen() {
    let primary = MemoryPrimary::new();
    primary.set_doctor_facts(PrimaryFacts {
        snapshot_isolation: false,
        ..PrimaryFacts::default()
    });
    let replica = MemoryReplica::new();
    for (required, severity, code) in [(true, Severity::Blocker, 1), (false, Severity::Warning, 0)]
    {
        let (findings, exit) = check(
            &primary,
            &replica,
            QUEUE,
            required,
            &[],
            &ctsync::mssql::sql::fix_sql,
        )
        .await
        .expect("doctor");
        let finding = findings
            .iter()
            .find(|f| f.message.contains("snapshot isolation is off"))
            .expect("the snapshot finding");
        assert_eq!(finding.severity, severity, "{finding:?}");
        assert!(
            finding.message.contains("CTSYNC_CHANGE_ISOLATION"),
            "{finding:?}"
        );
        assert_eq!(exit, code, "{findings:?}");
    }
}
