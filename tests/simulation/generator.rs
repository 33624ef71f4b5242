//! The schedule generator: a seed becomes a list of operations, each
//! step's kind drawn from a weight table and its parameters from a stream
//! of its own, so adding a kind leaves the other kinds' steps alone.

use crate::modules::MODULES;
use crate::ops::{Op, SITES};
use crate::rows::table_defs;
use ctsync_actors::memory::faults::{Fault, Phase, Site};

/// Steps per schedule.
pub const STEPS: usize = 120;
/// Keys 0..KEYS are touched by the workload.
pub const KEYS: u64 = 30;
/// The tables `rename-table` draws: `dbo.AllTypes` and `dbo.[x.y]`.
const RENAMEABLE: [usize; 2] = [2, 3];

/// splitmix64: small, fast, and the same on every machine.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub(crate) fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// splitmix64's finalizer.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A kind's name as a number (FNV-1a): streams are keyed by the name, not
/// by the kind's place in the table.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
    })
}

/// A generator of its own for `parts` of `seed` (setup, one ticket, one
/// step's parameters of one kind).
fn stream(seed: u64, parts: &[u64]) -> Rng {
    Rng(parts
        .iter()
        .fold(mix(seed), |h, p| mix(h ^ mix(p.wrapping_add(1)))))
}

/// Draws one operation of a kind from its parameter stream, given the
/// number of tables.
pub(crate) type Draw = fn(&mut Rng, usize) -> Op;

fn table(r: &mut Rng, tables: usize) -> usize {
    r.below(tables as u64) as usize
}

fn key(r: &mut Rng) -> u8 {
    r.below(KEYS) as u8
}

/// Each kind of operation (named as in saved schedules), its weight and how
/// its parameters are drawn.
///
/// A step's kind is the kind holding the lowest of that step's tickets: a
/// kind of weight `w` holds `w` tickets, ticket `i` being a number drawn
/// from (seed, step, the kind's name, `i`); its parameters come from a
/// stream of (seed, step, the kind's name). So, for every seed:
/// - adding a kind of weight `w` (total `W` before) changes only the steps
///   the new kind wins (about `w / (W + w)` of them): every other step
///   keeps its kind, its parameters and its place in the schedule;
/// - raising a kind's weight changes only the steps it now wins; lowering
///   it only those it loses; reordering the table changes nothing;
/// - changing how one kind draws its parameters changes only that kind's
///   steps; renaming a kind redraws its tickets and parameters (as removing
///   it and adding another).
///
/// What does change everything: the number of simulated tables (every `t`
/// is drawn below it), `KEYS`, `SITES` for faults, and the ticket scheme
/// itself. Saved schedules (`tests/schedules`) depend on none of it.
pub(crate) const WEIGHTS: &[(&str, u64, Draw)] = &[
    ("upsert", 30, |r, n| Op::Upsert {
        t: table(r, n),
        key: key(r),
        salt: r.next() as u32,
    }),
    ("delete", 10, |r, n| Op::Delete {
        t: table(r, n),
        key: key(r),
    }),
    ("change-key", 4, |r, n| Op::ChangeKey {
        t: table(r, n),
        from: key(r),
        to: key(r),
        salt: r.next() as u32,
    }),
    ("enable", 3, |r, n| Op::Enable(table(r, n))),
    ("disable", 1, |r, n| Op::Disable(table(r, n))),
    ("force", 3, |r, n| Op::Force(table(r, n))),
    ("unforce", 1, |r, n| Op::Unforce(table(r, n))),
    ("reforce", 2, |r, n| Op::Reforce(table(r, n))),
    ("add-column", 3, |r, n| Op::AddColumn {
        t: table(r, n),
        not_null: r.chance(40),
        event: r.chance(80),
    }),
    ("rename-column", 3, |r, n| Op::RenameColumn {
        t: table(r, n),
        event: r.chance(80),
    }),
    ("drop-column", 2, |r, n| Op::DropColumn {
        t: table(r, n),
        event: r.chance(80),
    }),
    ("cleanup", 1, |r, n| Op::Cleanup(table(r, n))),
    ("truncate", 1, |r, n| Op::Truncate(table(r, n))),
    ("fault", 15, |r, _| {
        let site = SITES[r.below(SITES.len() as u64) as usize];
        let fault = if r.chance(50) {
            Fault::Reject
        } else {
            Fault::LostAck
        };
        Op::Fault(site, fault)
    }),
    ("redis-down", 2, |_, _| Op::RedisDown),
    ("redis-up", 2, |_, _| Op::RedisUp),
    ("redis-flush", 1, |_, _| Op::RedisFlush),
    ("kill", 2, |_, _| Op::Kill),
    ("restart", 1, |_, _| Op::Restart),
    ("stop-mid-backlog", 1, |r, n| Op::StopMidBacklog {
        t: table(r, n),
        salt: r.next() as u32,
        graceful: r.chance(30),
    }),
    ("join", 2, |_, _| Op::Join),
    ("leave", 1, |_, _| Op::Leave),
    ("kill-second", 1, |_, _| Op::KillSecond),
    ("pause", 2, |r, _| Op::Pause {
        second: r.chance(50),
        ms: 50 + r.below(700),
        at: match r.below(10) {
            0..=3 => None,
            4..=6 => Some(Site::ReplicaWrite),
            _ => Some(Site::StateWrite),
        },
    }),
    ("advance", 16, |r, _| Op::Advance(1 + r.below(120))),
    ("keyspace", 4, |r, _| {
        use crate::keyspace::Fate;
        Op::Keyspace(match r.below(4) {
            0 => Fate::Lost,
            1 => Fate::Duplicated,
            2 => Fate::Delayed(1 + r.below(300)),
            _ => Fate::Reordered,
        })
    }),
    ("bulk-fail", 3, |r, n| {
        let lasting = r.chance(30);
        Op::BulkFail {
            t: table(r, n),
            lasting,
            // A connection that drops on every bulk load of the table
            // demotes it after two in a row (see WritePaths).
            connection: r.chance(30),
        }
    }),
    ("corrupt-cursor", 1, |r, n| {
        let load = r.chance(50);
        Op::CorruptCursor {
            t: table(r, n),
            load,
            forced: load && r.chance(50),
            salt: r.next() as u32,
        }
    }),
    ("block-swap", 2, |r, n| Op::BlockSwap {
        t: table(r, n),
        foreign_key: r.chance(50),
        mid_load: r.chance(50),
    }),
    ("unblock-swap", 1, |r, n| Op::UnblockSwap(table(r, n))),
    // Only tables no module of the catalogue names (a rename would leave
    // the module's text naming a table gone, on both sides).
    ("rename-table", 2, |r, _| Op::RenameTable {
        t: RENAMEABLE[r.below(RENAMEABLE.len() as u64) as usize],
        mid_load: r.chance(60),
    }),
    ("module", 4, |r, _| Op::Module {
        n: r.below(MODULES as u64) as usize,
        drop: r.chance(25),
        salt: r.next() as u32,
    }),
    ("module-fault", 2, |r, _| {
        let site = [Site::PrimaryMeta, Site::ReplicaRead, Site::ReplicaWrite][r.below(3) as usize];
        let fault = if r.chance(50) {
            Fault::Reject
        } else {
            Fault::LostAck
        };
        Op::ModuleFault(site, fault)
    }),
    ("ct-off", 1, |r, n| Op::CtOff(table(r, n))),
    ("ct-on", 1, |r, n| Op::CtOn(table(r, n))),
    ("scout-fault", 3, |r, _| Op::ScoutFault {
        partial: r.chance(70).then(|| r.next() as u32 % 8),
    }),
    ("hang", 4, |r, _| Op::Hang {
        site: SITES[r.below(SITES.len() as u64) as usize],
        effect: r.chance(50),
    }),
    // Up to 810 ms: within the call limit, often longer than a lease.
    ("slow", 4, |r, _| Op::Slow {
        site: SITES[r.below(SITES.len() as u64) as usize],
        ms: 10 + r.below(800),
    }),
    // Windows a random step seldom meets: a swap (its Redis and replica
    // halves), a column change applied to the replica.
    ("during", 3, |r, _| {
        let phase = [Phase::Swap, Phase::DdlApply][r.below(2) as usize];
        let site = SITES[r.below(SITES.len() as u64) as usize];
        let fault = match r.below(5) {
            0 => Fault::Reject,
            1 => Fault::LostAck,
            2 => Fault::Hang { effect: false },
            3 => Fault::Hang { effect: true },
            _ => Fault::Slow {
                ms: 10 + r.below(800),
            },
        };
        Op::During {
            phase,
            site,
            fault,
            module: site == Site::ReplicaWrite && r.chance(30),
        }
    }),
];

const SETUP: u64 = 0;
const TICKET: u64 = 1;
const PARAMS: u64 = 2;

/// The kind step `step` of `seed` draws from `table`: the one holding the
/// lowest ticket (ties go to the earlier kind).
fn kind_of(table: &[(&'static str, u64, Draw)], seed: u64, step: u64) -> usize {
    let mut best = (u64::MAX, 0);
    for (k, (name, weight, _)) in table.iter().enumerate() {
        let name = name_hash(name);
        for i in 0..*weight {
            let ticket = stream(seed, &[TICKET, step, name, i]).next();
            if ticket < best.0 {
                best = (ticket, k);
            }
        }
    }
    best.1
}

/// The schedule of `seed` under `table`: each operation with its kind.
pub(crate) fn schedule_with(
    table: &[(&'static str, u64, Draw)],
    seed: u64,
) -> Vec<(&'static str, Op)> {
    let tables = table_defs().len();
    let mut ops = Vec::with_capacity(STEPS + tables);
    // Most tables start enabled, so there is something to replicate.
    let mut setup = stream(seed, &[SETUP]);
    for t in 0..tables {
        if setup.chance(80) {
            ops.push(("enable", Op::Enable(t)));
        }
    }
    for step in 0..STEPS as u64 {
        let (name, _, draw) = table[kind_of(table, seed, step)];
        let mut params = stream(seed, &[PARAMS, step, name_hash(name)]);
        let op = draw(&mut params, tables);
        ops.push((name, op));
    }
    ops
}

pub(crate) fn schedule(seed: u64) -> Vec<Op> {
    schedule_with(WEIGHTS, seed)
        .into_iter()
        .map(|(_, op)| op)
        .collect()
}
