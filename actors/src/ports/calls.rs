//! Every port call declared once: its site (which dependency, what kind of
//! call), the tables it is about and how long it waits on the server by
//! design. A [`Guarded`] port runs each call through a [`Guard`]: the
//! core's call limits (`ports::limits`) and the doubles' fault plan
//! (`memory::faults`) are both guards, so both meet every method.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::ddl::ParkedDdl;
use crate::error::Result;
use crate::fence::Claim;
use crate::model::{
    ChangeBatch, ChangePage, ColumnOp, PrimaryIdentity, Row, RowKey, SyncVersion, TableId,
    TableSchema,
};
use crate::modules::{ModuleDef, ModuleOp};
use crate::ports::{
    Advance, ChangeSet, CycleKeys, DdlQueue, InboxMessage, InboxOutcome, LeaseGrant, LoadMode,
    LoadProgress, LoadStart, Marker, Opened, PendingLoad, Primary, QueueMessage, Replica,
    ReplicaRecord, Scouted, StateStore, TableFlags,
};

/// What kind of call a port call is, and on which dependency: the unit of
/// call limits and of fault rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Site {
    /// Catalog, versions, counts and the scout on the primary.
    PrimaryMeta,
    /// A full-load page.
    PrimaryPage,
    /// A change set's open (its copy) and its pages.
    PrimaryChanges,
    /// Any replica write transaction.
    ReplicaWrite,
    /// Replica reads (catalog, records, inbox).
    ReplicaRead,
    /// Inside a replica write: the bulk load of a page's rows, struck
    /// part-way through them (some rows are in the transaction). Only the
    /// in-memory replica's injected faults meet it
    /// (`MemoryReplica::set_inner_faults`); no port call is of this kind.
    ReplicaBulk,
    StateRead,
    StateWrite,
    QueueReceive,
    QueueCommit,
}

/// The dependency a site belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    Primary,
    Replica,
    State,
    Queue,
}

impl Site {
    pub fn port(self) -> Port {
        match self {
            Site::PrimaryMeta | Site::PrimaryPage | Site::PrimaryChanges => Port::Primary,
            Site::ReplicaWrite | Site::ReplicaRead | Site::ReplicaBulk => Port::Replica,
            Site::StateRead | Site::StateWrite => Port::State,
            Site::QueueReceive | Site::QueueCommit => Port::Queue,
        }
    }
}

impl Port {
    /// The port as metric labels name it.
    pub fn label(self) -> &'static str {
        match self {
            Port::Primary => "primary",
            Port::Replica => "replica",
            Port::State => "state",
            Port::Queue => "ddl_queue",
        }
    }
}

impl std::fmt::Display for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Port::Primary => "the primary",
            Port::Replica => "the replica",
            Port::State => "the state store",
            Port::Queue => "the DDL queue",
        })
    }
}

/// Visits the tables (or modules, as `schema.name`) a call is about until
/// the visitor says stop (`true`); says whether it stopped.
pub type About<'a> = &'a (dyn Fn(&mut dyn FnMut(&TableId) -> bool) -> bool + Sync);

/// One port call as a guard sees it.
#[derive(Clone, Copy)]
pub struct Call<'a> {
    pub site: Site,
    /// The port method (`"apply_changes"`).
    pub method: &'static str,
    about: About<'a>,
    /// How long the call waits on the server by design (a receive's
    /// `WAITFOR`), on top of its kind's limit.
    pub waits: Duration,
    /// `false` for a call no fault can refuse (a rollback: a dropped
    /// connection rolls back too).
    pub refusable: bool,
    /// The call answers with a list, one entry per thing asked (the
    /// scout): a test's fault may shorten it (a partial answer).
    pub entries: bool,
}

impl<'a> Call<'a> {
    pub fn new(site: Site, method: &'static str, about: About<'a>) -> Self {
        Self {
            site,
            method,
            about,
            waits: Duration::ZERO,
            refusable: true,
            entries: false,
        }
    }

    /// Whether the call is about this table or module.
    pub fn is_about(&self, id: &TableId) -> bool {
        (self.about)(&mut |t| t == id)
    }

    /// The tables the call is about, in the order the call names them.
    pub fn tables(&self) -> Vec<TableId> {
        let mut found = Vec::new();
        (self.about)(&mut |t| {
            found.push(t.clone());
            false
        });
        found
    }
}

/// What every call of a [`Guarded`] port goes through.
pub trait Guard: Clone + Send + Sync + 'static {
    /// Runs `request`, the wrapped port's answer to `call`. `request` is
    /// the wrapped call's future, not started yet: a guard may wait before
    /// it, refuse it, bound it, or change its answer.
    fn run<'a, T: Send + 'a>(
        &'a self,
        call: Call<'a>,
        request: impl Future<Output = Result<T>> + Send + 'a,
    ) -> impl Future<Output = Result<T>> + Send + 'a;

    /// [`Guard::run`] for a call answering a list, one entry per thing
    /// asked (`entries` in `forward!`): a guard may also shorten it.
    fn run_entries<'a, T: Send + 'a>(
        &'a self,
        call: Call<'a>,
        request: impl Future<Output = Result<Vec<T>>> + Send + 'a,
    ) -> impl Future<Output = Result<Vec<T>>> + Send + 'a {
        self.run(call, request)
    }
}

/// A port whose every call goes through `guard`.
pub struct Guarded<P: ?Sized, G> {
    inner: Arc<P>,
    guard: G,
}

impl<P: ?Sized, G> Guarded<P, G> {
    pub fn new(inner: Arc<P>, guard: G) -> Self {
        Self { inner, guard }
    }
}

/// `impl Port as LIST { fn m(&self, a: A) -> R = how(Site; about EXPR;
/// waits EXPR) then HOOK; … }` writes the port's impl for every
/// `Guarded<dyn Port, G>` and `LIST`, the names of the methods declared.
/// `how` is `guard` or `unrefused` (a call no fault may refuse); `about`
/// lists the tables the call is about (for rules on one table and for
/// errors); `waits` is how long it waits on the server by design;
/// `then HOOK` is an async method of the wrapper given the result. `how`
/// `listing` is `guard` for a call answering a list, one entry per thing
/// asked (see [`Guard::run_entries`]).
macro_rules! forward {
    (
        impl $port:ident as $list:ident {
            $(
                fn $name:ident $(<$lt:lifetime>)? (& $($slt:lifetime)? self $(, $arg:ident : $argty:ty)* $(,)?)
                    -> $ret:ty = $how:ident ( $site:ident $(; about $about:expr)? $(; waits $waits:expr)? )
                    $(then $hook:ident)? ;
            )*
        }
    ) => {
        /// The port methods the wrapper declares (see `forward!`).
        pub const $list: &[&str] = &[$(stringify!($name)),*];

        #[async_trait]
        impl<G: Guard> $port for Guarded<dyn $port, G> {
            $(
                async fn $name $(<$lt>)? (& $($slt)? self $(, $arg: $argty)*) -> $ret {
                    let about = |_visit: &mut dyn FnMut(&TableId) -> bool| -> bool {
                        false $(|| IntoIterator::into_iter($about)
                            .any(|t| _visit(std::borrow::Borrow::<TableId>::borrow(&t))))?
                    };
                    let call = Call {
                        waits: Duration::ZERO $(+ $waits)?,
                        refusable: forward!(@refusable $how),
                        entries: forward!(@entries $how),
                        ..Call::new(Site::$site, stringify!($name), &about)
                    };
                    let result = forward!(@run $how, (&self.guard), call, self.inner.$name($($arg),*));
                    $(let result = self.$hook(result).await;)?
                    result
                }
            )*
        }
    };
    (@refusable guard) => { true };
    (@refusable unrefused) => { false };
    (@refusable listing) => { true };
    (@entries listing) => { true };
    (@entries $how:ident) => { false };
    (@run listing, $guard:expr, $call:ident, $request:expr) => {
        $guard.run_entries($call, $request).await
    };
    (@run $how:ident, $guard:expr, $call:ident, $request:expr) => {
        $guard.run($call, $request).await
    };
}

forward! {
    impl Primary as PRIMARY {
        fn identity(&self) -> Result<PrimaryIdentity> = guard(PrimaryMeta);
        fn tracked_tables(&self) -> Result<Vec<TableId>> = guard(PrimaryMeta);
        fn table_schema(&self, table: &TableId) -> Result<TableSchema> =
            guard(PrimaryMeta; about [table]);
        fn current_version(&self) -> Result<SyncVersion> = guard(PrimaryMeta);
        fn min_valid_version(&self, table: &TableId) -> Result<Option<SyncVersion>> =
            guard(PrimaryMeta; about [table]);
        fn row_count(&self, table: &TableId) -> Result<u64> = guard(PrimaryMeta; about [table]);
        fn modules(&self) -> Result<Vec<ModuleDef>> = guard(PrimaryMeta);
        fn change_retention(&self) -> Result<Option<Duration>> = guard(PrimaryMeta);
        fn read_page(&self, schema: &TableSchema, after: Option<&RowKey>, limit: usize)
            -> Result<Vec<Row>> = guard(PrimaryPage; about [&schema.id]);
        fn open_changes<'a>(&'a self, schema: &TableSchema, since: SyncVersion, after: Option<&RowKey>)
            -> Result<Box<dyn ChangeSet + 'a>> =
            guard(PrimaryChanges; about [&schema.id]) then guarded_pages;
        fn scout(&self, tables: &[(TableId, SyncVersion)]) -> Result<Vec<Scouted>> =
            listing(PrimaryMeta; about tables.iter().map(|(t, _)| t));
    }
}

impl<G: Guard> Guarded<dyn Primary, G> {
    /// A change set whose page reads go through the same guard.
    async fn guarded_pages<'a>(
        &'a self,
        opened: Result<Box<dyn ChangeSet + 'a>>,
    ) -> Result<Box<dyn ChangeSet + 'a>> {
        Ok(Box::new(GuardedChangeSet {
            inner: opened?,
            guard: self.guard.clone(),
        }))
    }
}

/// The `ChangeSet` methods [`GuardedChangeSet`] forwards (written by hand:
/// `opened` is not async and `next_page` takes `&mut self`).
pub const CHANGE_SET: &[&str] = &["opened", "next_page"];

struct GuardedChangeSet<'a, G> {
    inner: Box<dyn ChangeSet + 'a>,
    guard: G,
}

#[async_trait]
impl<G: Guard> ChangeSet for GuardedChangeSet<'_, G> {
    fn opened(&self) -> Opened {
        self.inner.opened()
    }
    async fn next_page(&mut self, schema: &TableSchema, limit: usize) -> Result<ChangePage> {
        let about = |visit: &mut dyn FnMut(&TableId) -> bool| visit(&schema.id);
        let call = Call::new(Site::PrimaryChanges, "next_page", &about);
        self.guard
            .run(call, self.inner.next_page(schema, limit))
            .await
    }
}

/// The table a module operation names, as rules on one object see it.
fn module_object(op: &ModuleOp) -> TableId {
    match op {
        ModuleOp::Create(m) | ModuleOp::Alter(m) => TableId::new(m.schema.clone(), m.name.clone()),
        ModuleOp::Drop { schema, name, .. } => TableId::new(schema.clone(), name.clone()),
    }
}

forward! {
    impl Replica as REPLICA {
        fn begin_full_load(&self, schema: &TableSchema, start: &LoadStart, claim: &Claim)
            -> Result<()> = guard(ReplicaWrite; about [&schema.id]);
        fn insert_rows(&self, schema: &TableSchema, rows: &[Row], load: &PendingLoad, claim: &Claim)
            -> Result<()> = guard(ReplicaWrite; about [&schema.id]);
        fn apply_changes(&self, schema: &TableSchema, batch: &ChangeBatch, claim: &Claim)
            -> Result<()> = guard(ReplicaWrite; about [&schema.id]);
        fn finish_full_load(&self, schema: &TableSchema, version: SyncVersion, mode: LoadMode, claim: &Claim)
            -> Result<()> = guard(ReplicaWrite; about [&schema.id]);
        fn cancel_load(&self, table: &TableId, version: SyncVersion, claim: &Claim) -> Result<()> =
            guard(ReplicaWrite; about [table]);
        fn advance_versions(&self, advances: &[Advance]) -> Result<Vec<TableId>> =
            guard(ReplicaWrite; about advances.iter().map(|a| &a.table));
        fn swap_blockers(&self, table: &TableId) -> Result<Vec<String>> =
            guard(ReplicaRead; about [table]);
        fn schema_bound_dependents(&self, table: &TableId) -> Result<Vec<ModuleOp>> =
            guard(ReplicaRead; about [table]);
        fn record(&self, table: &TableId) -> Result<ReplicaRecord> =
            guard(ReplicaRead; about [table]);
        fn table_schema(&self, table: &TableId) -> Result<Option<TableSchema>> =
            guard(ReplicaRead; about [table]);
        fn alter_columns(&self, table: &TableId, ops: &[ColumnOp], claim: &Claim) -> Result<()> =
            guard(ReplicaWrite; about [table]);
        fn rename_column(&self, table: &TableId, from: &str, to: &str, claim: &Claim)
            -> Result<()> = guard(ReplicaWrite; about [table]);
        fn rename_table(&self, from: &TableId, to: &TableId, claim: &Claim) -> Result<()> =
            guard(ReplicaWrite; about [from, to]);
        fn claim(&self, table: &TableId, owner: &str) -> Result<u64> =
            guard(ReplicaWrite; about [table]);
        fn modules(&self) -> Result<Vec<ModuleDef>> = guard(ReplicaRead);
        fn inbox_add(&self, messages: &[QueueMessage]) -> Result<()> = guard(ReplicaWrite);
        fn inbox_pending(&self) -> Result<Vec<InboxMessage>> = guard(ReplicaRead);
        fn inbox_settle(&self, id: &str, outcome: &InboxOutcome) -> Result<()> =
            guard(ReplicaWrite);
        fn apply_module(&self, op: &ModuleOp) -> Result<()> =
            guard(ReplicaWrite; about [module_object(op)]);
    }
}

forward! {
    impl StateStore as STATE_STORE {
        fn ensure_flags(&self, tables: &[TableId]) -> Result<Marker> =
            guard(StateWrite; about tables);
        fn publish(&self, pairs: &[(String, String)]) -> Result<()> = guard(StateWrite);
        fn flags(&self, table: &TableId) -> Result<TableFlags> = guard(StateRead; about [table]);
        fn cycle_keys(&self, table: &TableId) -> Result<CycleKeys> =
            guard(StateRead; about [table]);
        fn set_enabled(&self, table: &TableId, enabled: bool) -> Result<()> =
            guard(StateWrite; about [table]);
        fn set_force_full_load(&self, table: &TableId, force: bool) -> Result<()> =
            guard(StateWrite; about [table]);
        fn request_full_load(&self, table: &TableId) -> Result<()> =
            guard(StateWrite; about [table]);
        fn version(&self, table: &TableId) -> Result<Option<SyncVersion>> =
            guard(StateRead; about [table]);
        fn set_version(&self, table: &TableId, version: SyncVersion, claim: &Claim) -> Result<()> =
            guard(StateWrite; about [table]);
        fn finish_full_load(&self, table: &TableId, version: SyncVersion, identity: &PrimaryIdentity,
            forced: bool, claim: &Claim) -> Result<()> = guard(StateWrite; about [table]);
        fn primary_identity(&self, table: &TableId) -> Result<Option<PrimaryIdentity>> =
            guard(StateRead; about [table]);
        fn set_primary_identity(&self, table: &TableId, identity: &PrimaryIdentity, claim: &Claim)
            -> Result<()> = guard(StateWrite; about [table]);
        fn set_progress(&self, table: &TableId, progress: &LoadProgress, claim: &Claim)
            -> Result<()> = guard(StateWrite; about [table]);
        fn park_ddl(&self, entry: &ParkedDdl) -> Result<()> = guard(StateWrite);
        fn rename_table(&self, from: &TableId, to: &TableId, claim: &Claim) -> Result<()> =
            guard(StateWrite; about [from, to]);
        fn heartbeat(&self, instance: &str, ttl: Duration) -> Result<Vec<String>> =
            guard(StateWrite);
        fn leave(&self, instance: &str) -> Result<()> = guard(StateWrite);
        fn acquire_leases(&self, leases: &[String], owner: &str, ttl: Duration)
            -> Result<Vec<LeaseGrant>> = guard(StateWrite);
        fn set_lease_claim(&self, lease: &str, claim: &Claim) -> Result<bool> = guard(StateWrite);
        fn release_leases(&self, leases: &[String], owner: &str) -> Result<()> = guard(StateWrite);
        fn publish_status(&self, instance: &str, json: &str, ttl: Duration) -> Result<()> =
            guard(StateWrite);
        fn statuses(&self) -> Result<Vec<(String, String)>> = guard(StateRead);
        fn table_keys(&self, tables: &[TableId]) -> Result<Vec<(TableFlags, Option<String>)>> =
            guard(StateRead; about tables);
        fn discovery_start(&self, new: Option<&[TableId]>, instance: &str, ttl: Duration)
            -> Result<(Option<Marker>, Vec<String>)> =
            guard(StateWrite; about new.into_iter().flatten());
        fn discovery_finish(&self, leases: &[String], owner: &str, ttl: Duration, statuses: &str,
            advances: &[Advance]) -> Result<(Vec<LeaseGrant>, Vec<TableId>)> =
            guard(StateWrite; about advances.iter().map(|a| &a.table));
        fn advance_versions(&self, advances: &[Advance]) -> Result<Vec<TableId>> =
            guard(StateWrite; about advances.iter().map(|a| &a.table));
        fn statuses_and_keys(&self, tables: &[TableId])
            -> Result<(Vec<(String, String)>, Vec<(TableFlags, Option<String>)>)> =
            guard(StateRead; about tables);
    }
}

forward! {
    impl DdlQueue as DDL_QUEUE {
        fn receive(&self, max: usize, wait: Duration) -> Result<Vec<QueueMessage>> =
            guard(QueueReceive; waits wait) then settle;
        fn end_conversation(&self, conversation: &str) -> Result<()> =
            guard(QueueCommit) then settle;
        fn commit(&self) -> Result<()> = guard(QueueCommit) then settle;
        // A rollback cannot be refused: a dropped connection rolls back too.
        fn rollback(&self) -> Result<()> = unrefused(QueueCommit);
    }
}

impl<G: Guard> Guarded<dyn DdlQueue, G> {
    /// A call of the receive transaction that failed (refused, timed out,
    /// its answer lost) leaves the transaction in doubt: it is rolled back,
    /// so its messages return to the queue. The SQL Server adapter has
    /// discarded the connection by then (the server rolled back), and the
    /// rollback finds nothing open.
    async fn settle<T: Send>(&self, result: Result<T>) -> Result<T> {
        if result.is_err() {
            let _ = DdlQueue::rollback(self).await;
        }
        result
    }
}

/// Every port trait and the methods its wrapper forwards, for the test
/// that holds them to their traits in `ports/`.
pub fn forwarded() -> [(&'static str, &'static [&'static str]); 5] {
    [
        ("Primary", PRIMARY),
        ("ChangeSet", CHANGE_SET),
        ("Replica", REPLICA),
        ("StateStore", STATE_STORE),
        ("DdlQueue", DDL_QUEUE),
    ]
}
