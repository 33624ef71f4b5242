//! The fault plan: rules that strike port calls chosen by site, method and
//! the table (or module) a call is about, plus process-wide switches (kill,
//! freeze) and the counts of what reached the ports and what struck.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

pub use crate::ports::calls::{Port, Site};

use super::coverage::{Coverage, Flight, Phase, Probe};
use crate::error::{Error, Result};
use crate::model::TableId;
use crate::ports::Call;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Fails without effect (the request never reached the server).
    Reject,
    /// Takes effect, then reports an error (a crash or a dropped connection
    /// between the commit, or the read, and its answer).
    LostAck,
    /// Answers, without entry `n` (modulo the answer's length) of the list
    /// it returns: a partial answer. Strikes only calls that answer with a
    /// list, one entry per thing asked (`forward!`'s `entries` marker).
    Partial(u32),
    /// Never answers: it waits on the clock until the core's call limit
    /// drops it or the process dies. `effect: false`: the request never
    /// ran (a server that accepted it and froze, a lock that never comes);
    /// `true`: it ran, and its answer never came (a partition after the
    /// commit).
    Hang { effect: bool },
    /// Takes `ms` longer before it takes effect (a lock wait, a busy
    /// server), then answers at once: late, within the call limit.
    Slow { ms: u64 },
}

impl Fault {
    /// The name a strike is counted under in [`FaultPlan::injected`].
    fn kind(self) -> &'static str {
        match self {
            Fault::Reject => "reject",
            Fault::LostAck => "lost_ack",
            Fault::Hang { effect: false } => "hang_before",
            Fault::Hang { effect: true } => "hang_after",
            Fault::Slow { .. } => "slow",
            Fault::Partial(_) => "partial",
        }
    }
}

/// Which calls a rule strikes: every condition set must hold.
#[derive(Debug, Clone, Default)]
struct Filter {
    port: Option<Port>,
    site: Option<Site>,
    method: Option<&'static str>,
    /// The table or module (`schema.name`) the call is about.
    object: Option<TableId>,
    /// Only while a table the call is about is in this state (a swap
    /// runs, a column change is applied): a fault directed at a window.
    during: Option<Phase>,
}

/// One injected fault: which calls it strikes, how often, with what.
#[derive(Debug, Clone)]
pub struct Rule {
    filter: Filter,
    fault: Fault,
    /// Matching calls let through before the first strike.
    skip: u64,
    /// Strikes left; `None`: every matching call until lifted (an outage).
    times: Option<u64>,
    /// Said in the error (default: which site and method refused).
    message: Option<String>,
    /// The name the strike is counted under in [`FaultPlan::injected`].
    label: Option<&'static str>,
    /// The states of the tables the struck call was about (coverage).
    phases: std::collections::BTreeSet<Phase>,
}

impl Rule {
    fn new(fault: Fault) -> Self {
        Self {
            filter: Filter::default(),
            fault,
            skip: 0,
            times: Some(1),
            message: None,
            label: None,
            phases: Default::default(),
        }
    }
    /// The next matching call fails without effect.
    pub fn reject() -> Self {
        Self::new(Fault::Reject)
    }
    /// The next matching call takes effect, then reports an error.
    pub fn lost_ack() -> Self {
        Self::new(Fault::LostAck)
    }
    pub fn fault(fault: Fault) -> Self {
        Self::new(fault)
    }
    /// Only calls at `site`.
    pub fn at(mut self, site: Site) -> Self {
        self.filter.site = Some(site);
        self
    }
    /// Only calls of the dependency `port` (any of its sites).
    pub fn port(mut self, port: Port) -> Self {
        self.filter.port = Some(port);
        self
    }
    /// Only calls of the port method `name` (e.g. `"apply_changes"`).
    pub fn method(mut self, name: &'static str) -> Self {
        self.filter.method = Some(name);
        self
    }
    /// Only calls about this table (or module `schema.name`).
    pub fn object(mut self, id: &TableId) -> Self {
        self.filter.object = Some(id.clone());
        self
    }
    /// Only calls made while a table they are about (every table, for a
    /// call about none) is in `phase`.
    pub fn during(mut self, phase: Phase) -> Self {
        self.filter.during = Some(phase);
        self
    }
    /// The `n`th next matching call (1-based) is the first one struck.
    pub fn nth(mut self, n: u64) -> Self {
        self.skip = n.saturating_sub(1);
        self
    }
    /// Strikes `n` matching calls in a row.
    pub fn times(mut self, n: u64) -> Self {
        self.times = Some(n);
        self
    }
    /// Strikes every matching call until lifted.
    pub fn always(mut self) -> Self {
        self.times = None;
        self
    }
    pub fn message(mut self, message: &str) -> Self {
        self.message = Some(message.to_string());
        self
    }
    /// The name the strike is counted under (default: the fault's kind).
    pub fn label(mut self, label: &'static str) -> Self {
        self.label = Some(label);
        self
    }

    /// `now`: the states a strike on `call` would count under, if a rule
    /// in force asks (see [`Rule::during`]).
    fn matches(&self, call: &Call<'_>, now: Option<&BTreeSet<Phase>>) -> bool {
        let f = &self.filter;
        f.during
            .is_none_or(|p| now.is_some_and(|now| now.contains(&p)))
            && (call.entries || !matches!(self.fault, Fault::Partial(_)))
            && f.port.is_none_or(|p| p == call.site.port())
            && f.site.is_none_or(|s| s == call.site)
            && f.method.is_none_or(|m| m == call.method)
            && f.object.as_ref().is_none_or(|id| call.is_about(id))
    }

    /// The name the strike is counted under.
    fn kind(&self) -> &'static str {
        self.label.unwrap_or(self.fault.kind())
    }
}

/// A rule in force, as [`FaultPlan::inject`] returned it (to lift it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RuleId(u64);

#[derive(Debug, Default)]
struct Book {
    rules: Vec<(RuleId, Rule)>,
    next_id: u64,
    /// The rule `set_state_down(true)` put in force.
    state_down: Option<RuleId>,
    /// Faults that struck, by site and kind.
    injected: BTreeMap<(Site, &'static str), u64>,
    /// Faults that struck, by site and kind and the state of the tables
    /// the call was about (see [`Coverage::phases_of`]).
    by_phase: BTreeMap<(String, Phase), u64>,
    /// Every call that reached a wrapped port, by site and port method
    /// (one port call is one request or round trip in the adapters).
    calls: BTreeMap<(Site, &'static str), u64>,
}

/// The faults of one pipeline incarnation, shared by its wrapped ports
/// ([`super::Faulty`]). A call meets the first rule in force that matches
/// it: outages (rules without a count) first, as a server that cannot be
/// reached sees none of the calls other rules wait for; then counted rules
/// in the order injected, each counting every matching call it lets by.
#[derive(Debug)]
pub struct FaultPlan {
    book: Mutex<Book>,
    killed: AtomicBool,
    /// While `true`, every call waits at its start (the process is frozen:
    /// a GC pause, a stopped VM, a partition).
    paused: AtomicBool,
    /// Wakes the calls waiting on a freeze in the order they began to
    /// wait. Not a `watch` channel: each of its waiters waits on one of
    /// eight notifiers picked by the runtime's random generator (seeded
    /// afresh per runtime), so the frozen tasks would resume in another
    /// order each run and a seed would not replay.
    resumed: tokio::sync::Notify,
    /// The next call at this site freezes the process, itself included
    /// (frozen just before its request reached the server).
    pause_at: Mutex<Option<Site>>,
    /// The calls in flight and each table's state, for the figures.
    coverage: Coverage,
    /// Wakes the hung calls when the process dies (see [`Fault::Hang`]).
    died: tokio::sync::Notify,
    /// Calls hung or slowed by a fault now (see [`FaultPlan::held_calls`]).
    held: std::sync::atomic::AtomicUsize,
}

impl Default for FaultPlan {
    fn default() -> Self {
        Self {
            book: Mutex::default(),
            killed: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            resumed: tokio::sync::Notify::new(),
            pause_at: Mutex::new(None),
            coverage: Coverage::default(),
            died: tokio::sync::Notify::new(),
            held: std::sync::atomic::AtomicUsize::new(0),
        }
    }
}

impl FaultPlan {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn lock(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts `rule` in force.
    pub fn inject(&self, rule: Rule) -> RuleId {
        let mut book = self.lock();
        book.next_id += 1;
        let id = RuleId(book.next_id);
        book.rules.push((id, rule));
        id
    }

    /// Ends a rule (an outage is over, a broken table healed).
    pub fn lift(&self, id: RuleId) {
        self.lock().rules.retain(|(r, _)| *r != id);
    }

    /// The next call at `site` meets `fault`.
    pub fn push(&self, site: Site, fault: Fault) {
        self.inject(Rule::fault(fault).at(site));
    }

    /// Every later call fails (the process died), and so does every hung
    /// call.
    pub fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        self.died.notify_waiters();
    }

    pub(super) fn is_killed(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }

    /// A hung call's end: waits until the process dies (only the core's
    /// call limit, which drops the call, ends it sooner).
    async fn until_killed(&self) -> Error {
        let _held = Held::new(&self.held);
        loop {
            // Waiting before looking: a kill in between is not missed.
            let mut died = std::pin::pin!(self.died.notified());
            died.as_mut().enable();
            if self.is_killed() {
                return died_error();
            }
            died.await;
        }
    }

    /// Calls go through again: the process is back with the state it had
    /// (a paused VM resumed, a partition healed).
    pub fn revive(&self) {
        self.killed.store(false, Ordering::SeqCst);
    }

    /// Freezes the process: every call waits at its start until `resume`.
    pub fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
    }

    /// The next call at `site` freezes the process (and waits itself).
    pub fn pause_on_next(&self, site: Site) {
        *self.pause_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(site);
    }

    pub fn resume(&self) {
        *self.pause_at.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.paused.store(false, Ordering::SeqCst);
        self.resumed.notify_waiters();
    }

    /// Whether the process is frozen now.
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    /// Redis unreachable (`true`) or back (`false`); its data stays.
    pub fn set_state_down(&self, down: bool) {
        let current = self.lock().state_down.take();
        if let Some(id) = current {
            self.lift(id);
        }
        if down {
            let rule = Rule::reject()
                .port(Port::State)
                .always()
                .message("Redis is unreachable")
                .label("down");
            let id = self.inject(rule);
            self.lock().state_down = Some(id);
        }
    }

    /// Whether `set_state_down(true)` is in force.
    pub fn state_is_down(&self) -> bool {
        self.lock().state_down.is_some()
    }

    /// Drops every rule in force (the simulation quiesces).
    pub fn clear(&self) {
        let mut book = self.lock();
        book.rules.clear();
        book.state_down = None;
    }

    /// Whether a rule in force may strike a call about `table` (one naming
    /// it, or naming no table).
    pub fn may_strike(&self, table: &TableId) -> bool {
        self.lock()
            .rules
            .iter()
            .any(|(_, r)| r.filter.object.as_ref().is_none_or(|id| id == table))
    }

    /// How many calls a hang or a slow fault holds now (a struck rule is
    /// used up, but the call it struck may still be waiting).
    pub fn held_calls(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }

    /// Faults that struck so far, by site and kind.
    pub fn injected(&self) -> BTreeMap<(Site, &'static str), u64> {
        self.lock().injected.clone()
    }

    /// Calls that reached the wrapped ports so far, by site: what a poll
    /// costs the primary, the replica and Redis, countable without them.
    pub fn calls(&self) -> BTreeMap<(Site, &'static str), u64> {
        self.lock().calls.clone()
    }

    /// Faults that struck so far, by `site/kind` and the pipeline state of
    /// the tables the call was about.
    pub fn injected_by_phase(&self) -> BTreeMap<(String, Phase), u64> {
        self.lock().by_phase.clone()
    }

    /// Installs what tells each table's state from its record (coverage).
    pub fn set_probe(&self, probe: Probe) {
        self.coverage.set_probe(probe);
    }

    /// Each table's pipeline state now, as a fault striking now counts it.
    pub fn phases(&self) -> BTreeMap<TableId, Phase> {
        self.coverage.phases()
    }

    /// Marks `call` in flight until the returned guard drops.
    pub(super) fn fly(&self, call: &Call<'_>) -> Flight<'_> {
        self.coverage.fly(self.coverage.about(call), call.method)
    }

    fn count(&self, site: Site, kind: &'static str, phases: &std::collections::BTreeSet<Phase>) {
        let mut book = self.lock();
        *book.injected.entry((site, kind)).or_insert(0) += 1;
        for phase in phases {
            *book
                .by_phase
                .entry((format!("{site:?}/{kind}"), *phase))
                .or_insert(0) += 1;
        }
    }

    /// The states a strike on `call` counts under.
    fn phases_of(&self, call: &Call<'_>) -> std::collections::BTreeSet<Phase> {
        self.coverage.phases_of(&self.coverage.about(call))
    }

    /// The rule `call` meets, if any, used up by one strike.
    fn strike(&self, call: &Call<'_>) -> Option<Rule> {
        // The states now, only when a rule asks (the probe reads every
        // table's record).
        let directed = self
            .lock()
            .rules
            .iter()
            .any(|(_, r)| r.filter.during.is_some());
        let now = directed.then(|| self.phases_of(call));
        let now = now.as_ref();
        let mut book = self.lock();
        if let Some((_, rule)) = book
            .rules
            .iter()
            .find(|(_, r)| r.times.is_none() && r.matches(call, now))
        {
            return Some(rule.clone());
        }
        let mut struck = None;
        for (id, rule) in book.rules.iter_mut() {
            if rule.times.is_none() || !rule.matches(call, now) {
                continue;
            }
            if rule.skip > 0 {
                rule.skip -= 1;
            } else if struck.is_none() {
                struck = Some((*id, rule.clone()));
                rule.times = rule.times.map(|n| n.saturating_sub(1));
            }
        }
        let (id, rule) = struck?;
        book.rules
            .retain(|(r, rule)| *r != id || rule.times != Some(0));
        Some(rule)
    }

    /// A fault striking inside a port call, at `site` (see
    /// [`Site::ReplicaBulk`]): counts the call and the strike, and returns
    /// the fault. The process being frozen or dead was checked as the call
    /// began.
    pub(crate) fn strike_inside(
        &self,
        site: Site,
        method: &'static str,
        table: &TableId,
    ) -> Option<Fault> {
        *self.lock().calls.entry((site, method)).or_insert(0) += 1;
        let about = |visit: &mut dyn FnMut(&TableId) -> bool| visit(table);
        let call = Call::new(site, method, &about);
        let rule = self.strike(&call)?;
        let kind = rule.kind();
        // Inside a write, the write's method says what runs.
        let phases = match Phase::of_method(method) {
            Some(p) => std::iter::once(p).collect(),
            None => self.phases_of(&call),
        };
        self.count(site, kind, &phases);
        Some(rule.fault)
    }

    /// Before a call: counts it, waits while the process is frozen, and
    /// fails it if the process died or a rejecting rule strikes it. Returns
    /// the rule to apply after the call (a lost acknowledgement).
    pub(super) async fn before(&self, call: Call<'_>) -> Result<Option<Rule>> {
        let site = call.site;
        *self.lock().calls.entry((site, call.method)).or_insert(0) += 1;
        {
            let mut at = self.pause_at.lock().unwrap_or_else(|e| e.into_inner());
            if *at == Some(site) {
                *at = None;
                self.count(site, "paused", &self.phases_of(&call));
                self.paused.store(true, Ordering::SeqCst);
            }
        }
        loop {
            // Waiting before looking: a resume in between is not missed.
            let mut resumed = std::pin::pin!(self.resumed.notified());
            resumed.as_mut().enable();
            if !self.is_paused() {
                break;
            }
            resumed.await;
        }
        if self.is_killed() {
            return Err(died_error());
        }
        let Some(mut rule) = self.strike(&call) else {
            return Ok(None);
        };
        let phases = self.phases_of(&call);
        match rule.fault {
            Fault::Reject => {
                self.count(site, rule.kind(), &phases);
                Err(injected(site, call.method, &rule, "rejected"))
            }
            Fault::Hang { effect: false } => {
                self.count(site, rule.kind(), &phases);
                Err(self.until_killed().await)
            }
            Fault::Slow { ms } => {
                self.count(site, rule.kind(), &phases);
                {
                    let _held = Held::new(&self.held);
                    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                }
                if self.is_killed() {
                    return Err(died_error());
                }
                Ok(None)
            }
            Fault::LostAck | Fault::Hang { effect: true } | Fault::Partial(_) => {
                rule.phases = phases;
                Ok(Some(rule))
            }
        }
    }

    /// After a call: the process may have died meanwhile, a lost
    /// acknowledgement turns its success into an error, and a call hung
    /// after its effect never answers.
    pub(super) async fn after<T>(
        &self,
        site: Site,
        method: &'static str,
        rule: Option<Rule>,
        result: Result<T>,
    ) -> Result<T> {
        if self.is_killed() {
            return Err(died_error());
        }
        match (rule, result) {
            // Only `after_entries` can shorten an answer (and only calls
            // with entries meet the rule).
            (Some(rule), r) if matches!(rule.fault, Fault::Partial(_)) => r,
            (Some(rule), _) if matches!(rule.fault, Fault::Hang { .. }) => {
                self.count(site, rule.kind(), &rule.phases);
                Err(self.until_killed().await)
            }
            (Some(rule), Ok(_)) => {
                self.count(site, rule.kind(), &rule.phases);
                Err(injected(
                    site,
                    method,
                    &rule,
                    "applied, acknowledgement lost",
                ))
            }
            (_, r) => r,
        }
    }
}

impl FaultPlan {
    /// After a call that answers with a list: as [`FaultPlan::after`], and
    /// a partial answer drops one entry of it.
    pub(super) async fn after_entries<T>(
        &self,
        site: Site,
        method: &'static str,
        rule: Option<Rule>,
        result: Result<Vec<T>>,
    ) -> Result<Vec<T>> {
        match rule {
            Some(Rule {
                fault: Fault::Partial(n),
                label,
                phases,
                ..
            }) => {
                let mut entries = self.after(site, method, None, result).await?;
                if !entries.is_empty() {
                    entries.remove(n as usize % entries.len());
                    self.count(site, label.unwrap_or("partial"), &phases);
                }
                Ok(entries)
            }
            rule => self.after(site, method, rule, result).await,
        }
    }
}

/// One call held by a hang or a slow fault, until dropped (answered, or
/// abandoned at its call limit).
struct Held<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Held<'a> {
    fn new(count: &'a std::sync::atomic::AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What every call of a process that died reports.
pub(super) fn died_error() -> Error {
    Error::Sink("injected: the process died".into())
}

/// The error a struck call reports, of its dependency's kind.
fn injected(site: Site, method: &str, rule: &Rule, what: &str) -> Error {
    let message = match &rule.message {
        Some(m) => format!("injected failure at {site:?} ({method}): {m}"),
        None => format!("injected failure at {site:?} ({method}): {what}"),
    };
    match site.port() {
        Port::Primary | Port::Queue => Error::Primary(message),
        Port::Replica => Error::Replica(message),
        Port::State => Error::State(message),
    }
}
