//! `verify` against the in-memory ports: equal tables pass; a changed
//! value, a missing row and an extra row are found with their key ranges;
//! rows that change during the check are not reported once the table has
//! caught up.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ctsync_actors::model::{RowKey, TableSchema};
use ctsync_actors::ports::Primary;
use ctsync_actors::verify::{
    verify_table, Checksums, ChunkSum, DifferenceKind, KeyRange, Options, RecordedVersion,
};
use support::fixtures::*;
use support::{fast_config, Harness};

fn options() -> Options {
    Options {
        chunk: 1_000,
        max_keys: 20,
        settle: Duration::from_secs(10),
    }
}

async fn loaded(h: &Harness, rows: i32) -> (TableSchema, ctsync_actors::actors::Running) {
    let users = user_table();
    h.enabled_table(users.clone(), (1..=rows).map(|i| user(i, "n")))
        .await;
    let run = h.start(fast_config());
    h.wait_loaded(&users.id).await;
    h.wait_equal(&users.id).await;
    (users, run)
}

async fn check(h: &Harness, schema: &TableSchema) -> ctsync_actors::verify::Report {
    let caught_up = RecordedVersion {
        primary: h.primary.as_ref(),
        replica: h.replica.as_ref(),
        table: schema.id.clone(),
    };
    let at = h.primary.current_version().await.expect("version");
    verify_table(
        h.primary.as_ref(),
        h.replica.as_ref(),
        &caught_up,
        schema,
        at,
        &options(),
    )
    .await
    .expect("verify")
}

#[actix_rt::test]
async fn equal_tables_pass() {
    let h = Harness::new();
    let (users, _run) = loaded(&h, 5_500).await;
    let report = check(&h, &users).await;
    assert!(report.equal(), "{report:?}");
    assert_eq!(report.chunks, 6);
    assert_eq!((report.rows_primary, report.rows_replica), (5_500, 5_500));
}

#[actix_rt::test]
async fn a_changed_a_missing_and_an_extra_row_are_found_with_their_ranges() {
    let h = Harness::new();
    let (users, run) = loaded(&h, 5_500).await;
    run.stop(Duration::from_secs(2)).await; // nothing repairs the drift
    h.replica
        .tamper(&users.id, &user_key(1_500), Some(user(1_500, "drifted")));
    h.replica.tamper(&users.id, &user_key(4_200), None);
    h.replica
        .tamper(&users.id, &user_key(9_999), Some(user(9_999, "stray")));
    let mut options = options();
    options.settle = Duration::from_millis(200);
    let caught_up = RecordedVersion {
        primary: h.primary.as_ref(),
        replica: h.replica.as_ref(),
        table: users.id.clone(),
    };
    let report = verify_table(
        h.primary.as_ref(),
        h.replica.as_ref(),
        &caught_up,
        &users,
        0,
        &options,
    )
    .await
    .expect("verify");
    assert!(!report.equal());
    assert_eq!(report.total_differences, 3);
    let kinds: Vec<(DifferenceKind, RowKey)> = report
        .differences
        .iter()
        .map(|d| (d.kind, d.key.clone()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (DifferenceKind::Changed, user_key(1_500)),
            (DifferenceKind::Missing, user_key(4_200)),
            (DifferenceKind::Extra, user_key(9_999)),
        ]
    );
    // Each difference is named with its chunk's key range.
    assert_eq!(report.ranges.len(), 3);
    assert_eq!(
        report.ranges[0],
        (Some(user_key(1_000)), Some(user_key(2_000)))
    );
    assert_eq!(
        report.ranges[2],
        (Some(user_key(5_500)), None),
        "beyond the primary's last key"
    );
}

/// The primary, changing a row as the check reads its first chunk.
struct ChangingPrimary {
    h: Arc<ctsync_actors::memory::MemoryPrimary>,
    chunks: AtomicUsize,
    drilled: AtomicUsize,
}

#[async_trait]
impl Checksums for ChangingPrimary {
    async fn chunk_sum(
        &self,
        schema: &TableSchema,
        range: &KeyRange,
        limit: usize,
    ) -> ctsync_actors::Result<ChunkSum> {
        if self.chunks.fetch_add(1, Ordering::SeqCst) == 0 {
            // The replica has not applied this yet when it is compared.
            self.h
                .upsert(&schema.id, user(10, "changed during the check"));
        }
        self.h.chunk_sum(schema, range, limit).await
    }
    async fn row_sums(
        &self,
        schema: &TableSchema,
        range: &KeyRange,
    ) -> ctsync_actors::Result<Vec<(RowKey, String)>> {
        self.drilled.fetch_add(1, Ordering::SeqCst);
        self.h.row_sums(schema, range).await
    }
}

#[actix_rt::test]
async fn rows_changing_during_the_check_are_not_reported_once_caught_up() {
    let h = Harness::new();
    let (users, _run) = loaded(&h, 3_000).await;
    let primary = ChangingPrimary {
        h: h.primary.clone(),
        chunks: AtomicUsize::new(0),
        drilled: AtomicUsize::new(0),
    };
    // A replica that lags: the row changed on the primary differs in the
    // first pass, and the re-check waits for the pipeline to apply it.
    let caught_up = RecordedVersion {
        primary: h.primary.as_ref(),
        replica: h.replica.as_ref(),
        table: users.id.clone(),
    };
    let at = h.primary.current_version().await.expect("version");
    let report = verify_table(
        &primary,
        h.replica.as_ref(),
        &caught_up,
        &users,
        at,
        &options(),
    )
    .await
    .expect("verify");
    assert!(report.equal(), "{report:?}");
    assert_eq!(
        primary.drilled.load(Ordering::SeqCst),
        1,
        "the first pass saw the changing chunk and checked it again"
    );
}
