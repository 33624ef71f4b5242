//! The real SQL Server adapter (`MssqlPrimary`, `MssqlReplica`) driven over
//! the recording session: which call sends each request (batch, RPC, bulk),
//! in which order on which session, checked by `sql::session_rules`. These
//! tests pin the defects a review found against Microsoft's documentation
//! and tiberius 0.13's source; no SQL Server is needed.

mod support;

use std::sync::Arc;

use ctsync::mssql::recording::{row, Recorder, Reply, Request};
use ctsync::mssql::session::Call;
use ctsync::mssql::sql::{self, session_rules};
use ctsync::mssql::{MssqlPrimary, MssqlReplica, Pool};
use ctsync_actors::fence::Claim;
use ctsync_actors::model::{ColumnDef, KeyColumn, Len, Row, SqlType, TableId, TableSchema, Value};
use ctsync_actors::ports::{LoadMode, PendingLoad, Primary, Replica};
use support::fixtures::*;
use tiberius::ColumnData;

/// Answers a change set's open with (target, min valid, keys) and each
/// page with `page` rows of the user table.
fn change_set_script(keys: i64, page: usize) -> impl Fn(&Request) -> Option<Reply> {
    let served = std::sync::atomic::AtomicI64::new(0);
    move |r: &Request| {
        if r.sql.contains("[changed_keys]") {
            return Some(Reply::Rows(vec![vec![row(vec![
                ("target_version", ColumnData::I64(Some(10))),
                ("min_valid_version", ColumnData::I64(Some(1))),
                ("changed_keys", ColumnData::I64(Some(keys))),
            ])]]));
        }
        if r.sql.contains("[__ctsync_row_exists]") {
            let from = served.load(std::sync::atomic::Ordering::SeqCst);
            let n = (keys - from).clamp(0, page as i64);
            served.store(from + n, std::sync::atomic::Ordering::SeqCst);
            let rows = (from..from + n)
                .map(|i| {
                    row(vec![
                        ("Id", ColumnData::I32(Some(i as i32 + 1))),
                        ("__ctsync_row_exists", ColumnData::I32(Some(1))),
                        ("Id", ColumnData::I32(Some(i as i32 + 1))),
                        ("Name", ColumnData::String(Some("n".into()))),
                        ("Email", ColumnData::String(None)),
                    ])
                })
                .collect();
            return Some(Reply::Rows(vec![rows]));
        }
        None
    }
}

fn violations(log: &[Request]) -> Vec<String> {
    session_rules::check(log)
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// Defect 1: the change set's temp table must live at session scope. It
/// is created by a batch on the leased session, filled by the
/// parameterized copy (an RPC, which may use its caller's temp table), and
/// every page is read on that same session.
#[tokio::test]
async fn the_change_set_lives_on_the_session_that_reads_its_pages() {
    let recorder = Recorder::new(change_set_script(4, 2));
    let primary = MssqlPrimary::new(Pool::with_connector(Arc::new(recorder.clone()), 2));
    let users = user_table();
    let mut set = primary.open_changes(&users, 3, None).await.expect("open");
    assert_eq!(set.opened().keys, 4);
    let first = set.next_page(&users, 2).await.expect("page 1");
    let last = set.next_page(&users, 2).await.expect("page 2");
    assert_eq!(first.keys.len() + last.keys.len(), 4);
    drop(set);

    let log = recorder.log();
    let calls: Vec<(usize, Call, bool)> = log
        .iter()
        .map(|r| (r.session, r.call, r.sql.contains("#ctsync_changes")))
        .collect();
    assert!(
        violations(&log).is_empty(),
        "{:#?}\n{:#?}",
        violations(&log),
        log.iter().map(|r| (&r.call, &r.sql)).collect::<Vec<_>>()
    );
    // One session; the table is created by a batch before the copy.
    assert!(
        calls.iter().all(|(s, _, _)| *s == log[0].session),
        "{calls:?}"
    );
    let create = log
        .iter()
        .position(|r| r.sql.contains("CREATE TABLE #ctsync_changes"))
        .expect("created");
    assert_eq!(log[create].call, Call::Batch, "{}", log[create].sql);
    let copy = log
        .iter()
        .position(|r| r.sql.contains("CHANGETABLE(CHANGES"))
        .expect("copied");
    assert!(create < copy);
    assert_eq!(log[copy].call, Call::Rpc);
    let pages: Vec<&Request> = log
        .iter()
        .filter(|r| r.sql.contains("FROM #ctsync_changes AS [c]"))
        .collect();
    assert_eq!(pages.len(), 2);
    // The set is dropped by a batch after its last page, and only then.
    let last = log.last().expect("requests");
    assert_eq!(
        (last.call, last.sql.as_str()),
        (Call::Batch, "DROP TABLE #ctsync_changes;")
    );
    assert_eq!(
        log.iter()
            .filter(|r| r.sql.contains("DROP TABLE #ctsync_changes"))
            .count(),
        2,
        "the create batch replaces a leftover, the last request drops the set"
    );
    // Requests: create + copy + 2 pages + drop.
    assert_eq!(
        log.len() as u64,
        ctsync::mssql::CHANGE_SET_OPEN_REQUESTS + 2 + ctsync::mssql::CHANGE_SET_CLOSE_REQUESTS
    );
}

/// The replica's script: every fence check passes.
fn replica_script(r: &Request) -> Option<Reply> {
    (r.sql == sql::CHECK_FENCE).then_some(Reply::Count(1))
}

fn replica_over(recorder: &Recorder) -> MssqlReplica {
    MssqlReplica::new(Pool::with_connector(Arc::new(recorder.clone()), 1))
}

fn one_column_table(name: &str, ty: SqlType, nullable: bool) -> TableSchema {
    TableSchema {
        id: TableId::new("dbo", name),
        columns: vec![
            ColumnDef::new("Id", SqlType::Int, false),
            ColumnDef::new("V", ty, nullable),
        ],
        primary_key: vec![KeyColumn {
            name: "Id".into(),
            descending: false,
        }],
    }
}

/// One full-load page of `rows` into `schema` (in place), over a fresh
/// recorder: the requests the replica sent.
async fn load_page(schema: &TableSchema, rows: Vec<Row>) -> Vec<Request> {
    let recorder = Recorder::new(replica_script);
    recorder.describe(schema);
    let replica = replica_over(&recorder);
    let load = PendingLoad {
        mode: LoadMode::InPlace,
        ..PendingLoad::default()
    };
    replica
        .insert_rows(schema, &rows, &load, &Claim::new("a", 1))
        .await
        .expect("page");
    recorder.log()
}

fn bulk_loaded(log: &[Request]) -> bool {
    log.iter().any(|r| r.call == Call::BulkRows)
}

/// Defect 3: xml written through INSERT … OPENJSON keeps insignificant
/// white space (CONVERT style 1; style 0, CAST's, discards it).
#[tokio::test]
async fn xml_keeps_its_white_space_on_the_insert_path() {
    let t = one_column_table("Docs", SqlType::Xml, true);
    let log = load_page(
        &t,
        vec![vec![Value::I32(1), Value::Xml("<a> <b/> </a>".into())]],
    )
    .await;
    assert!(!bulk_loaded(&log), "xml never goes through bulk copy");
    let insert = log
        .iter()
        .find(|r| r.call == Call::Rpc && r.sql.contains("OPENJSON"))
        .expect("the page's INSERT … OPENJSON");
    let at = insert.sql.find("CONVERT(xml, ").expect("converted to xml");
    let conversion = &insert.sql[at..at + insert.sql[at..].find(')').expect("closed") + 1];
    assert!(
        conversion.ends_with(", 1)"),
        "{conversion}: style 0 drops white space"
    );
    assert!(violations(&log).is_empty(), "{:#?}", violations(&log));
}

/// Defect 2: tiberius 0.13 renders the INSERT BULK column list from the
/// target's metadata and misstates these types; their tables are written
/// with INSERT … OPENJSON instead, and the bulk-columns rule finds no
/// misstated column in what is sent.
#[tokio::test]
async fn bulk_copy_never_sends_a_column_list_tiberius_misstates() {
    let cases = [
        (
            "Time3",
            SqlType::Time { scale: 3 },
            false,
            Value::Time {
                increments: 1,
                scale: 3,
            },
        ),
        (
            "Dto2",
            SqlType::DateTimeOffset { scale: 2 },
            false,
            Value::DateTimeOffset {
                days: 1,
                increments: 1,
                scale: 2,
                offset_minutes: 60,
            },
        ),
        (
            "NVarChar3000",
            SqlType::NVarChar(Len::N(6_000)),
            false,
            Value::String("x".into()),
        ),
        (
            "NVarChar4000",
            SqlType::NVarChar(Len::N(8_000)),
            false,
            Value::String("x".into()),
        ),
        (
            "NChar2001",
            SqlType::NChar(Len::N(4_002)),
            false,
            Value::String("x".into()),
        ),
        (
            "NChar10",
            SqlType::NChar(Len::N(20)),
            false,
            Value::String("x".into()),
        ),
        ("NullableMinute", SqlType::SmallDateTime, true, Value::Null),
    ];
    let mut wrong = Vec::new();
    for (name, ty, nullable, value) in cases {
        let t = one_column_table(name, ty, nullable);
        let log = load_page(&t, vec![vec![Value::I32(1), value]]).await;
        wrong.extend(violations(&log).into_iter().map(|v| format!("{name}: {v}")));
        if bulk_loaded(&log) {
            wrong.push(format!("{name} went through bulk copy"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    // What tiberius renders right still goes through bulk copy, including
    // nvarchar(n <= 2000) declared as nvarchar(2n) (the accepted widening).
    let fine = [
        (
            "Time7",
            SqlType::Time { scale: 7 },
            Value::Time {
                increments: 1,
                scale: 7,
            },
        ),
        (
            "NVarChar2000",
            SqlType::NVarChar(Len::N(4_000)),
            Value::String("x".into()),
        ),
        (
            "NVarChar50",
            SqlType::NVarChar(Len::N(100)),
            Value::String("x".into()),
        ),
        (
            "Minute",
            SqlType::SmallDateTime,
            Value::DateTime { days: 1, ticks: 0 },
        ),
    ];
    for (name, ty, value) in fine {
        let t = one_column_table(name, ty, false);
        let log = load_page(&t, vec![vec![Value::I32(1), value]]).await;
        assert!(bulk_loaded(&log), "{name} should go through bulk copy");
        assert!(
            violations(&log).is_empty(),
            "{name}: {:#?}",
            violations(&log)
        );
    }
}

/// What a change set costs the primary, counted at the session: 2 requests
/// to open, one per page, one to drop; an empty set 2 and no session kept.
#[tokio::test]
async fn a_change_set_costs_two_requests_to_open_one_per_page_and_one_to_drop() {
    use ctsync::mssql::{CHANGE_SET_CLOSE_REQUESTS as CLOSE, CHANGE_SET_OPEN_REQUESTS as OPEN};
    let users = user_table();
    for (keys, page) in [(12i64, 5usize), (10, 5), (1, 5), (0, 5)] {
        let recorder = Recorder::new(change_set_script(keys, page));
        let primary = MssqlPrimary::new(Pool::with_connector(Arc::new(recorder.clone()), 2));
        let mut set = primary.open_changes(&users, 3, None).await.expect("open");
        let mut read = 0u64;
        let mut pages = 0u64;
        while read < keys as u64 {
            let p = set.next_page(&users, page).await.expect("page");
            read += p.keys.len() as u64;
            pages += 1;
        }
        drop(set);
        let expected = if keys == 0 {
            OPEN
        } else {
            OPEN + pages + CLOSE
        };
        assert_eq!(pages, (keys as u64).div_ceil(page as u64), "{keys} keys");
        assert_eq!(
            recorder.log().len() as u64,
            expected,
            "{keys} keys: {:#?}",
            recorder.log()
        );
        assert!(violations(&recorder.log()).is_empty());
    }
}

/// A primary key declared NONCLUSTERED may take up to 1,700 bytes; the
/// change set's unique index over it must not be clustered (900 bytes at
/// most, Msg 1946 for every longer key).
#[tokio::test]
async fn a_wide_key_gets_a_nonclustered_change_set_index() {
    let wide = TableSchema {
        id: TableId::new("dbo", "Wide"),
        columns: vec![
            ColumnDef::new("Code", SqlType::NVarChar(Len::N(880)), false),
            ColumnDef::new("Region", SqlType::Char(Len::N(20)), false),
            ColumnDef::new("N", SqlType::Int, false),
        ],
        primary_key: ["Code", "Region", "N"]
            .iter()
            .map(|k| KeyColumn {
                name: k.to_string(),
                descending: false,
            })
            .collect(),
    };
    for (schema, kind) in [(wide, "NONCLUSTERED"), (user_table(), "CLUSTERED")] {
        let recorder = Recorder::new(change_set_script(0, 1));
        let primary = MssqlPrimary::new(Pool::with_connector(Arc::new(recorder.clone()), 2));
        let set = primary.open_changes(&schema, 3, None).await.expect("open");
        drop(set);
        let log = recorder.log();
        assert!(
            violations(&log).is_empty(),
            "{}: {:#?}",
            schema.id,
            violations(&log)
        );
        assert!(
            log[0].sql.contains(&format!("CREATE UNIQUE {kind} INDEX")),
            "{}",
            log[0].sql
        );
    }
}

/// `ctsync verify` hashes a datetimeoffset as its instant (style 127, in
/// UTC) and its offset: two values of the same instant at other offsets
/// differ, as the row on the primary and a row on the replica would.
#[tokio::test]
async fn verify_hashes_a_datetimeoffset_with_its_offset() {
    use ctsync_actors::verify::{Checksums, KeyRange};
    let t = one_column_table("Zoned", SqlType::DateTimeOffset { scale: 7 }, true);
    let recorder = Recorder::new(|_: &Request| None);
    let primary = MssqlPrimary::new(Pool::with_connector(Arc::new(recorder.clone()), 1));
    primary
        .row_sums(&t, &KeyRange::default())
        .await
        .expect("row sums");
    let log = recorder.log();
    let read = log
        .iter()
        .find(|r| r.sql.contains("HASHBYTES"))
        .expect("the hash read");
    assert_eq!(read.call, Call::Rpc);
    assert!(
        read.sql.contains("CONVERT(nvarchar(40), [V], 127) + N' ' + CONVERT(nvarchar(6), DATEPART(TZOFFSET, [V]))"),
        "{}",
        read.sql
    );
}

/// A caller waiting for a connection gets the first one to free up, not
/// the one it happened to try first.
#[tokio::test(start_paused = true)]
async fn a_waiting_caller_gets_whichever_connection_frees_first() {
    let recorder = Recorder::new(|_: &Request| None);
    let pool = Arc::new(Pool::with_connector(Arc::new(recorder), 2));
    let first = pool.lease().await.expect("first");
    let second = pool.lease().await.expect("second");
    let waiting = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.lease().await.map(|_| ()).map_err(|e| e.to_string()) })
    };
    tokio::task::yield_now().await;
    // The second connection frees; the first stays busy.
    drop(second);
    let got = tokio::time::timeout(std::time::Duration::from_secs(60), waiting).await;
    drop(first);
    assert!(
        matches!(got, Ok(Ok(Ok(())))),
        "the waiting caller never got the free connection: {got:?}"
    );
}

/// One table the server refuses in the scout (dropped, or its change
/// tracking disabled since discovery) costs the other tables nothing: the
/// failing chunk is split and asked again, and only that table is answered
/// "changed" (it reads its own changes).
#[tokio::test]
async fn one_bad_table_never_fails_the_scout_for_the_others() {
    let recorder = Recorder::new(|r: &Request| {
        if !r.sql.contains("AS [current_version]") {
            return None;
        }
        if r.sql.contains("[dbo].[T7]") {
            return Some(Reply::Fail("Invalid object name 'dbo.T7'".into()));
        }
        let tables = r.sql.matches("CHANGETABLE").count();
        let rows = (0..tables)
            .map(|i| {
                row(vec![
                    ("i", ColumnData::I32(Some(i as i32))),
                    ("changed", ColumnData::I32(Some(0))),
                    ("min_valid", ColumnData::I64(Some(1))),
                    ("current_version", ColumnData::I64(Some(10))),
                ])
            })
            .collect();
        Some(Reply::Rows(vec![rows]))
    });
    let primary = MssqlPrimary::new(Pool::with_connector(Arc::new(recorder.clone()), 2));
    let tables: Vec<(TableId, i64)> = (0..20)
        .map(|i| (TableId::new("dbo", format!("T{i}")), 5))
        .collect();
    let found = primary.scout(&tables).await.expect("the scout answers");
    assert_eq!(found.len(), 20);
    for (i, f) in found.iter().enumerate() {
        assert_eq!(f.changed, i == 7, "table T{i}: {f:?}");
        if i != 7 {
            assert_eq!((f.min_valid, f.current), (Some(1), 10), "T{i}");
        }
    }
    let queries = recorder
        .log()
        .iter()
        .filter(|r| r.sql.contains("AS [current_version]"))
        .count();
    // 1 + 2 per halving: 20 → 10 → 5 → 3 → 2 → 1.
    assert!(queries <= 1 + 2 * 5, "{queries} scout queries");
}

/// The swap's renames and drop wait for schema-modification locks: their
/// wait is bounded by a LOCK_TIMEOUT set at session scope (a batch: one
/// sent in its own RPC would revert when it returns) before the first of
/// them, and reset before the pooled session goes back.
#[tokio::test]
async fn the_swap_waits_for_its_locks_a_bounded_time() {
    let recorder = Recorder::new(replica_script);
    let users = user_table();
    recorder.describe(&users);
    let replica = replica_over(&recorder);
    replica
        .finish_full_load(&users, 10, LoadMode::Shadow, &Claim::new("a", 1))
        .await
        .expect("swap");
    let log = recorder.log();
    assert!(violations(&log).is_empty(), "{:#?}", violations(&log));
    let pos = |what: &str| log.iter().position(|r| r.sql.contains(what));
    let set = pos("SET LOCK_TIMEOUT 30000").expect("a bounded lock wait");
    assert_eq!(log[set].call, Call::Batch);
    let first_rename = pos("ALTER SCHEMA [dbo] TRANSFER").expect("the swap");
    let reset = pos("SET LOCK_TIMEOUT -1").expect("reset before the session goes back");
    let commit = log
        .iter()
        .rposition(|r| r.sql == sql::COMMIT)
        .expect("commit");
    assert!(set < first_rename && first_rename < reset && reset < commit);
}

/// A change-set copy that outlasts `CTSYNC_CHANGE_COPY_TIMEOUT_SECS` is
/// abandoned with an error that names the table, the setting and the way
/// out, and the session is discarded (the server rolls the copy back).
#[tokio::test(start_paused = true)]
async fn a_copy_longer_than_its_timeout_is_abandoned_and_says_what_to_do() {
    let recorder =
        Recorder::new(|r: &Request| r.sql.contains("CHANGETABLE(CHANGES").then_some(Reply::Hang));
    let primary = MssqlPrimary::new(Pool::with_connector(Arc::new(recorder.clone()), 2))
        .with_copy_timeout(std::time::Duration::from_secs(90));
    let users = user_table();
    let failed = tokio::time::timeout(
        std::time::Duration::from_secs(3_600),
        primary.open_changes(&users, 3, None),
    )
    .await
    .expect("the copy has a bound of its own")
    .err()
    .expect("abandoned");
    let message = failed.to_string();
    for needle in [
        "dbo.User",
        "longer than 90 s",
        "CTSYNC_CHANGE_COPY_TIMEOUT_SECS",
        "force a full load",
    ] {
        assert!(message.contains(needle), "{needle}: {message}");
    }
    // The next open starts on a new session.
    let recorder_log = recorder.log();
    let first_session = recorder_log[0].session;
    let _ = primary.open_changes(&users, 3, None).await;
    assert!(recorder.log().iter().any(|r| r.session != first_session));
}

/// Issue 26 item 7: the change set is copied in a SNAPSHOT transaction,
/// Microsoft's documented pattern, because without it CT cleanup can delete
/// changes between the min valid version check and the copy. Before, a
/// primary without snapshot isolation (or one whose identity had not been
/// read yet) was copied under READ COMMITTED; now that needs the operator's
/// `CTSYNC_CHANGE_ISOLATION=read-committed`, and without it the table's
/// error names the fix and nothing is sent.
#[tokio::test]
async fn a_change_set_is_copied_under_snapshot_or_refused_naming_the_fix() {
    fn with_snapshot_state(state: i32) -> impl Fn(&Request) -> Option<Reply> {
        let changes = change_set_script(0, 1);
        move |r: &Request| {
            if r.sql == sql::PRIMARY_IDENTITY {
                return Some(Reply::Rows(vec![vec![row(vec![
                    ("broker_guid", ColumnData::String(Some("g".into()))),
                    ("create_date", ColumnData::String(Some("d".into()))),
                    ("snapshot_state", ColumnData::I32(Some(state))),
                ])]]));
            }
            changes(r)
        }
    }
    fn fill(log: &[Request]) -> Option<&Request> {
        log.iter().find(|r| r.sql.contains("[changed_keys]"))
    }
    const SNAPSHOT: &str = "SET TRANSACTION ISOLATION LEVEL SNAPSHOT";
    let users = user_table();

    // Snapshot isolation off, the default isolation: refused before the
    // copy, with the statement to run and the setting that accepts the risk.
    let recorder = Recorder::new(with_snapshot_state(0));
    let primary = MssqlPrimary::new(Pool::with_connector(Arc::new(recorder.clone()), 2));
    primary.identity().await.expect("identity");
    let e = match primary.open_changes(&users, 3, None).await {
        Ok(_) => panic!("a change set opened without snapshot isolation"),
        Err(e) => e.to_string(),
    };
    for needed in [
        "ALLOW_SNAPSHOT_ISOLATION ON",
        "CTSYNC_CHANGE_ISOLATION=read-committed",
    ] {
        assert!(e.contains(needed), "{e}");
    }
    assert!(
        recorder
            .log()
            .iter()
            .all(|r| !r.sql.contains("#ctsync_changes")),
        "nothing of the change set is sent: {:?}",
        recorder.log()
    );

    // Being switched on (state 3): refused, saying it will continue.
    let recorder = Recorder::new(with_snapshot_state(3));
    let primary = MssqlPrimary::new(Pool::with_connector(Arc::new(recorder.clone()), 2));
    primary.identity().await.expect("identity");
    let e = match primary.open_changes(&users, 3, None).await {
        Ok(_) => panic!("a change set opened while snapshot isolation is switching on"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("being switched on"), "{e}");

    // The operator accepted READ COMMITTED: copied without SNAPSHOT.
    let recorder = Recorder::new(with_snapshot_state(0));
    let primary = MssqlPrimary::new(Pool::with_connector(Arc::new(recorder.clone()), 2))
        .with_change_isolation(ctsync::mssql::ChangeIsolation::ReadCommitted);
    primary.identity().await.expect("identity");
    drop(primary.open_changes(&users, 3, None).await.expect("open"));
    let log = recorder.log();
    assert!(!fill(&log).expect("the copy").sql.contains(SNAPSHOT));

    // Allowed, or not read yet: copied under SNAPSHOT (a server that does
    // not allow it refuses the copy, Msg 3952, with the same message).
    for identity_read in [true, false] {
        let recorder = Recorder::new(with_snapshot_state(1));
        let primary = MssqlPrimary::new(Pool::with_connector(Arc::new(recorder.clone()), 2));
        if identity_read {
            primary.identity().await.expect("identity");
        }
        drop(primary.open_changes(&users, 3, None).await.expect("open"));
        let log = recorder.log();
        assert!(
            fill(&log).expect("the copy").sql.contains(SNAPSHOT),
            "identity read: {identity_read}"
        );
        assert!(violations(&log).is_empty(), "{:?}", violations(&log));
    }
}

/// Issue 26 item 3: a swap gives the new table the live table's primary
/// key name (its own is a system name, `PK__shadow_…`, from the shadow's
/// `CREATE TABLE`): read before the live table moves aside, renamed in the
/// same transaction after the aside table (and its constraint) is dropped.
#[tokio::test]
async fn a_swap_carries_the_primary_key_name() {
    let recorder = Recorder::new(|r: &Request| {
        if r.sql == sql::TABLE_OBJECT_ID {
            return Some(Reply::Rows(vec![vec![row(vec![(
                "object_id",
                ColumnData::I32(Some(42)),
            )])]]));
        }
        if r.sql == sql::PRIMARY_KEY_NAME {
            return Some(Reply::Rows(vec![vec![row(vec![(
                "name",
                ColumnData::String(Some("PK_User".into())),
            )])]]));
        }
        replica_script(r)
    });
    let users = user_table();
    recorder.describe(&users);
    let replica = replica_over(&recorder);
    replica
        .finish_full_load(&users, 10, LoadMode::Shadow, &Claim::new("a", 1))
        .await
        .expect("swap");
    let log = recorder.log();
    assert!(violations(&log).is_empty(), "{:#?}", violations(&log));
    let pos = |what: &str| log.iter().position(|r| r.sql == what);
    let read = pos(sql::PRIMARY_KEY_NAME).expect("the live key's name is read");
    let rename = pos(sql::RENAME_PRIMARY_KEY).expect("the new key is renamed");
    let aside = log
        .iter()
        .position(|r| r.sql == sql::RENAME_OBJECT)
        .expect("the live table moves aside");
    let drop = log
        .iter()
        .position(|r| r.sql.starts_with("DROP TABLE [dbo].[ctsync_old_"))
        .expect("the aside table is dropped");
    let commit = log
        .iter()
        .rposition(|r| r.sql == sql::COMMIT)
        .expect("commit");
    assert!(read < aside && drop < rename && rename < commit, "{log:#?}");
    assert_eq!(log[rename].call, Call::Rpc);
    assert_eq!(log[rename].params.len(), 3);
}

/// Review of issue 26 item 8: tiberius sends every value of a
/// `decimal(p,p)` with the length of precision p + 1 (`Numeric::precision`
/// counts a digit for the zero integer part), one storage size too long
/// for p = 9, 19 and 28, which MS-TDS does not allow. Those columns go by
/// INSERT … OPENJSON; `decimal(p,p)` elsewhere stays on bulk copy.
#[tokio::test]
async fn a_decimal_whose_values_tiberius_sends_too_long_goes_by_insert() {
    for (precision, bulk) in [
        (8, true),
        (9, false),
        (18, true),
        (19, false),
        (28, false),
        (38, true),
    ] {
        let t = one_column_table(
            &format!("D{precision}"),
            SqlType::Decimal {
                precision,
                scale: precision,
            },
            true,
        );
        let value = Value::Decimal {
            value: 5 * 10i128.pow(u32::from(precision) - 1),
            scale: precision,
        };
        let log = load_page(&t, vec![vec![Value::I32(1), value]]).await;
        assert_eq!(bulk_loaded(&log), bulk, "decimal({precision},{precision})");
        assert!(violations(&log).is_empty(), "{:#?}", violations(&log));
    }
    let numeric = one_column_table(
        "N19",
        SqlType::Numeric {
            precision: 19,
            scale: 19,
        },
        true,
    );
    let refused = ctsync::mssql::replica::bulk::refusal(&numeric).expect("refused");
    assert!(refused.contains("numeric(19, 19)"), "{refused}");
}

/// `User` renamed to `Member` through the adapter over a recorder: the
/// requests (breaking no session rule) and the two names.
async fn renamed_user_to_member() -> (Vec<Request>, TableId, TableId) {
    let recorder = Recorder::new(replica_script);
    let replica = replica_over(&recorder);
    let (from, to) = (TableId::new("dbo", "User"), TableId::new("dbo", "Member"));
    replica
        .rename_table(&from, &to, &Claim::new("a", 1))
        .await
        .expect("rename");
    let log = recorder.log();
    assert!(violations(&log).is_empty(), "{:#?}", violations(&log));
    (log, from, to)
}

/// Issue 27 item 5b: a table renamed while its shadow load runs takes its
/// shadow along in the rename's own transaction (after the fence check,
/// with the table and before the record), so the load resumes under the
/// new name and no copy is left under the old one.
#[tokio::test]
async fn a_rename_moves_the_shadow_in_its_own_transaction() {
    let (log, from, to) = renamed_user_to_member().await;
    let pos = |what: &str| log.iter().position(|r| r.sql == what);
    let fence = pos(sql::CHECK_FENCE).expect("the fence is checked");
    let table = pos(sql::RENAME_OBJECT).expect("the table is renamed");
    let shadow = pos(&sql::move_shadow(&to)).expect("the shadow moves");
    let record = pos(sql::RENAME_RECORD).expect("the record moves");
    let commit = log
        .iter()
        .rposition(|r| r.sql == sql::COMMIT)
        .expect("commit");
    assert!(
        fence < table && table < shadow && shadow < record && record < commit,
        "{log:#?}"
    );
    assert_eq!(log[shadow].call, Call::Rpc);
    assert_eq!(log[shadow].params.len(), 3);
    assert!(log.iter().all(|r| r.session == log[fence].session));
    // The values sent are those `sql::table_rename` computes.
    let values = sql::table_rename(&from, &to);
    let sent = |i: usize| -> Vec<String> { log[i].texts.iter().flatten().cloned().collect() };
    assert_eq!(sent(table), values.object);
    assert_eq!(sent(shadow), values.shadow);
    assert_eq!(sent(record), values.record);
}

/// A table rename waits for its schema-modification locks a bounded time,
/// like the swap: the LOCK_TIMEOUT batch comes inside its fenced
/// transaction before the `sp_rename`, and the reset after the record
/// moved, before the commit, all on one session.
#[tokio::test]
async fn a_rename_waits_for_its_locks_a_bounded_time() {
    let (log, _, _) = renamed_user_to_member().await;
    let pos = |what: &str| log.iter().position(|r| r.sql == what);
    let fence = pos(sql::CHECK_FENCE).expect("the fence is checked");
    let set = pos(&sql::schema_lock_timeout()).expect("a bounded lock wait");
    let rename = pos(sql::RENAME_OBJECT).expect("the table is renamed");
    let record = pos(sql::RENAME_RECORD).expect("the record moves");
    let reset = pos(sql::UNBOUNDED_LOCK_WAIT).expect("reset before the session goes back");
    let commit = log
        .iter()
        .rposition(|r| r.sql == sql::COMMIT)
        .expect("commit");
    assert_eq!(log[set].call, Call::Batch);
    assert!(
        fence < set && set < rename && record < reset && reset < commit,
        "{log:#?}"
    );
    assert!(log.iter().all(|r| r.session == log[fence].session));
}

/// A swap that failed after the carried indexes were built on the shadow
/// (its lock timeout: only the swap's transaction rolls back, each index
/// build committed on its own) swaps at its retry: the server here keeps
/// the shadow's indexes, refuses a second one of a name (Msg 1913) and
/// skips a guarded build of one it has.
#[tokio::test]
async fn a_swap_retried_after_it_failed_builds_no_index_twice() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    let users = user_table();
    let shadow = sql::table(&users.id.shadow());
    let built: Arc<Mutex<Vec<String>>> = Arc::default();
    let renames = Arc::new(AtomicUsize::new(0));
    let (on_shadow, tries) = (built.clone(), renames.clone());
    let recorder = Recorder::new(move |r: &Request| {
        if r.sql == sql::TABLE_OBJECT_ID {
            return Some(Reply::Rows(vec![vec![row(vec![(
                "object_id",
                ColumnData::I32(Some(42)),
            )])]]));
        }
        if r.sql == sql::CARRIED_INDEXES {
            let cell = |s: &str| ColumnData::String(Some(s.to_string().into()));
            return Some(Reply::Rows(vec![vec![row(vec![
                ("index_name", cell("IX_Na]me")),
                ("is_unique", ColumnData::Bit(Some(false))),
                ("filter_definition", ColumnData::String(None)),
                ("column_name", cell("Name")),
                ("is_descending_key", ColumnData::Bit(Some(false))),
                ("is_included_column", ColumnData::Bit(Some(false))),
            ])]]));
        }
        if r.sql.contains("NONCLUSTERED INDEX [IX_Na]]me]") {
            let mut built = on_shadow.lock().unwrap_or_else(|e| e.into_inner());
            let guarded = r
                .sql
                .starts_with("IF NOT EXISTS (SELECT 1 FROM sys.indexes")
                && r.texts.first() == Some(&Some(shadow.clone()));
            let has = built.iter().any(|n| n == "IX_Na]me");
            if has && guarded && r.texts.get(1) == Some(&Some("IX_Na]me".to_string())) {
                return Some(Reply::Count(0));
            }
            if has {
                return Some(Reply::Fail(
                    "Msg 1913: The operation failed because an index or statistics with name \
                     'IX_Na]me' already exists"
                        .into(),
                ));
            }
            built.push("IX_Na]me".into());
            return Some(Reply::Count(0));
        }
        if r.sql == sql::RENAME_OBJECT && tries.fetch_add(1, Ordering::SeqCst) == 0 {
            return Some(Reply::ServerError(
                1222,
                "Lock request time out period exceeded.".into(),
            ));
        }
        replica_script(r)
    });
    recorder.describe(&users);
    let replica = replica_over(&recorder);
    let claim = Claim::new("a", 1);
    replica
        .finish_full_load(&users, 10, LoadMode::Shadow, &claim)
        .await
        .expect_err("the first swap waits too long");
    replica
        .finish_full_load(&users, 10, LoadMode::Shadow, &claim)
        .await
        .unwrap_or_else(|e| panic!("the retried swap: {e}"));
    let log = recorder.log();
    assert!(violations(&log).is_empty(), "{:#?}", violations(&log));
    let builds: Vec<&Request> = log
        .iter()
        .filter(|r| r.sql.contains("NONCLUSTERED INDEX"))
        .collect();
    assert_eq!(builds.len(), 2, "{log:#?}");
    assert!(builds.iter().all(|r| r.call == Call::Rpc));
    assert_eq!(built.lock().map(|b| b.len()).unwrap_or(0), 1);
}

/// A swap or a table rename whose sp_rename waited past its LOCK_TIMEOUT
/// (the server's Msg 1222, as tiberius decodes it) fails as
/// `Error::Blocked` (the DDL inbox does not count it), and its session,
/// left with `LOCK_TIMEOUT 30000`, is discarded: the retry runs on a new
/// session, and nothing after the failure reuses the old one.
#[tokio::test]
async fn a_lock_timeout_is_blocked_and_its_session_never_returns_to_the_pool() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let users = user_table();
    for change in ["swap", "rename"] {
        let renames = Arc::new(AtomicUsize::new(0));
        let tries = renames.clone();
        let recorder = Recorder::new(move |r: &Request| {
            if r.sql == sql::TABLE_OBJECT_ID {
                return Some(Reply::Rows(vec![vec![row(vec![(
                    "object_id",
                    ColumnData::I32(Some(42)),
                )])]]));
            }
            if r.sql == sql::RENAME_OBJECT && tries.fetch_add(1, Ordering::SeqCst) == 0 {
                return Some(Reply::ServerError(
                    1222,
                    "Lock request time out period exceeded.".into(),
                ));
            }
            replica_script(r)
        });
        recorder.describe(&users);
        let replica = replica_over(&recorder);
        let claim = Claim::new("a", 1);
        let member = TableId::new("dbo", "Member");
        let attempt = || async {
            match change {
                "swap" => {
                    replica
                        .finish_full_load(&users, 10, LoadMode::Shadow, &claim)
                        .await
                }
                _ => replica.rename_table(&users.id, &member, &claim).await,
            }
        };
        let failed = attempt().await;
        assert!(
            matches!(&failed, Err(ctsync_actors::Error::Blocked { .. })),
            "{change}: {failed:?}"
        );
        let message = failed.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            message.contains("waited more than 30 s") && message.contains("nothing changed"),
            "{change}: {message}"
        );
        let log = recorder.log();
        let at = log
            .iter()
            .position(|r| r.sql == sql::RENAME_OBJECT)
            .expect("the sp_rename that timed out");
        let session = log[at].session;
        assert!(
            log[..at]
                .iter()
                .any(|r| r.session == session && r.sql == sql::schema_lock_timeout()),
            "{change}: the failed session had bounded its lock waits: {log:#?}"
        );
        assert!(
            recorder.closed().contains(&session),
            "{change}: the session with LOCK_TIMEOUT 30000 is discarded"
        );
        assert_eq!(at + 1, log.len(), "{change}: nothing more on it: {log:#?}");
        recorder.clear();
        attempt()
            .await
            .unwrap_or_else(|e| panic!("{change}: the retry: {e}"));
        let log = recorder.log();
        assert!(violations(&log).is_empty(), "{:#?}", violations(&log));
        assert!(
            log.iter().all(|r| r.session != session),
            "{change}: the retry runs on a new session: {log:#?}"
        );
    }
}

/// Issue 27 item 5b: a load that starts in place drops the shadow an
/// earlier load left (its swap blocked part-way, or a shadow load begun
/// again in place), in the transaction that starts it.
#[tokio::test]
async fn an_in_place_load_start_drops_a_shadow_left_before() {
    let users = user_table();
    for recreate in [false, true] {
        let recorder = Recorder::new(replica_script);
        recorder.describe(&users);
        let replica = replica_over(&recorder);
        let start = ctsync_actors::ports::LoadStart {
            load: PendingLoad {
                mode: LoadMode::InPlace,
                in_place_reason: Some("a trigger blocks the swap".into()),
                ..PendingLoad::default()
            },
            recreate,
        };
        replica
            .begin_full_load(&users, &start, &Claim::new("a", 1))
            .await
            .expect("begin");
        let log = recorder.log();
        assert!(violations(&log).is_empty(), "{:#?}", violations(&log));
        let pos = |what: &str| log.iter().position(|r| r.sql == what);
        let fence = pos(sql::CHECK_FENCE).expect("the fence is checked");
        let drop = pos(&sql::drop_shadow_if_exists(&users.id))
            .unwrap_or_else(|| panic!("recreate {recreate}: the shadow is not dropped: {log:#?}"));
        let record = pos(sql::BEGIN_LOAD).expect("the load is recorded");
        let commit = log
            .iter()
            .rposition(|r| r.sql == sql::COMMIT)
            .expect("commit");
        assert!(fence < drop && drop < record && record < commit, "{log:#?}");
        assert_eq!(log[drop].params.len(), 1);
    }
}
