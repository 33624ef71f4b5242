//! The simulation's operations: what one step of a schedule does, and the
//! one-line text form saved schedules (`tests/schedules/*.sched`) are
//! written in, read back exactly.

use ctsync_actors::memory::faults::{Fault, Phase, Site};

#[derive(Debug, Clone)]
pub(crate) enum Op {
    Upsert {
        t: usize,
        key: u8,
        salt: u32,
    },
    Delete {
        t: usize,
        key: u8,
    },
    ChangeKey {
        t: usize,
        from: u8,
        to: u8,
        salt: u32,
    },
    Enable(usize),
    Disable(usize),
    Force(usize),
    /// A nullable column (no reload) or a NOT NULL one with a default
    /// (reload); `event`: its DDL event reaches the queue.
    AddColumn {
        t: usize,
        not_null: bool,
        event: bool,
    },
    RenameColumn {
        t: usize,
        event: bool,
    },
    /// Drops a non-key column (with or without its DDL event).
    DropColumn {
        t: usize,
        event: bool,
    },
    /// CT cleanup up to the current version.
    Cleanup(usize),
    Truncate(usize),
    Fault(Site, Fault),
    RedisDown,
    RedisUp,
    /// Redis restarts without persistence: every key is gone.
    RedisFlush,
    /// The process dies (no graceful stop) and a new one starts.
    Kill,
    /// Graceful stop (the daemon's sequence) and a new start.
    Restart,
    /// A burst of changes to table `t` (or the next enabled one), several
    /// change pages of them, then the process stops (killed, or gracefully
    /// if `graceful`) as soon as the replica records the backlog part-way
    /// applied: the next incarnation has to continue it from its cursor.
    /// Kills and restarts at other steps find a backlog part-way too
    /// seldom (one of the 300 CI seeds did) to test that path by chance.
    StopMidBacklog {
        t: usize,
        salt: u32,
        graceful: bool,
    },
    /// A second instance starts (if none runs), sharing the tables.
    Join,
    /// The second instance stops gracefully (its leases given back).
    Leave,
    /// The second instance dies (its leases run out on their own).
    KillSecond,
    /// An instance freezes (GC pause, stopped VM, partition) for `ms`,
    /// longer than its lease at times; `at`: just as its next call at that
    /// site leaves (a replica write, a Redis write), so that call arrives
    /// after a takeover; `None`: at once.
    Pause {
        second: bool,
        ms: u64,
        at: Option<Site>,
    },
    Advance(u64),
    /// The next keyspace notification (an operator's flag write) is lost,
    /// duplicated, delayed or reordered.
    Keyspace(crate::keyspace::Fate),
    /// The next bulk load of table `t`'s rows fails part-way through its
    /// page (`connection`: the connection drops mid-stream, else the load
    /// itself is refused); `lasting`: every bulk load of the table fails
    /// from now on (a table bulk copy cannot take), for good.
    BulkFail {
        t: usize,
        lasting: bool,
        connection: bool,
    },
    /// Table `t` (or the next enabled one) gets a full load (`load`, asked
    /// for by `force_full_load`) or a burst of changes, the process dies
    /// as soon as the replica records the load's or the backlog's cursor
    /// part-way, and that cursor is made unreadable before the next process
    /// starts (edited by hand, or written by another ctsync version).
    /// `!forced`: the flag is back to "false" by then, as for a load no
    /// flag asked for (a reload after a column change, a rebuilt table).
    CorruptCursor {
        t: usize,
        load: bool,
        forced: bool,
        salt: u32,
    },
    /// An operator sets table `t`'s `force_full_load` back to "false" by
    /// hand (withdrawing a request not yet acted on, or leaving a forced
    /// load to go on as a load of its own).
    Unforce(usize),
    /// Force Load on table `t`, the flag set back to "false" once that
    /// load copies, and "true" again once the load has read the "false":
    /// a second request, which must start the load over.
    Reforce(usize),
    /// An operator adds a swap blocker to table `t`'s replica table (if it
    /// has one): a trigger, or a foreign key (`foreign_key`). `mid_load`:
    /// first a Force Load, and the blocker comes as soon as that load
    /// copies into its shadow (a load under way at a random step is rare).
    BlockSwap {
        t: usize,
        foreign_key: bool,
        mid_load: bool,
    },
    /// An operator drops the swap blockers added by hand on table `t`.
    UnblockSwap(usize),
    /// Table `t` is renamed on the primary (`sp_rename`; its RENAME event
    /// sent). `mid_load`: first a Force Load, and the rename comes as soon
    /// as that load copies into its shadow.
    RenameTable {
        t: usize,
        mid_load: bool,
    },
    /// Module `n` of the simulated catalogue (`tests/simulation/modules.rs`)
    /// is created or altered on the primary (its text varies with `salt`),
    /// or dropped (`drop`).
    Module {
        n: usize,
        drop: bool,
        salt: u32,
    },
    /// The next call of module sync at `site` (the primary's or the
    /// replica's module list, or a module write) meets `fault`.
    ModuleFault(Site, Fault),
    /// Change tracking is disabled on table `t` of the primary.
    CtOff(usize),
    /// Change tracking is enabled again on table `t` of the primary.
    CtOn(usize),
    /// The next scout fails (`partial: None`), or answers without its entry
    /// `n` (`partial: Some(n)`, modulo the tables asked).
    ScoutFault {
        partial: Option<u32>,
    },
    /// The next call at `site` never answers (`effect`: after its request
    /// ran, else before): only the core's call limit, or the process's
    /// death, ends it.
    Hang {
        site: Site,
        effect: bool,
    },
    /// The next call at `site` takes effect `ms` late (within the call
    /// limit; at times longer than a lease).
    Slow {
        site: Site,
        ms: u64,
    },
    /// The next call at `site` made while a table it is about is in
    /// `phase` (a swap runs, a column change is applied) meets `fault`
    /// (`module`: only module sync's calls there): a fault aimed at a
    /// window too short for a random step to hit often.
    During {
        phase: Phase,
        site: Site,
        fault: Fault,
        module: bool,
    },
}

/// The faults a directed step draws from, by the names the figures count
/// them under.
pub(crate) fn fault_name(fault: Fault) -> String {
    match fault {
        Fault::Reject => "reject".into(),
        Fault::LostAck => "lost_ack".into(),
        Fault::Hang { effect: false } => "hang_before".into(),
        Fault::Hang { effect: true } => "hang_after".into(),
        Fault::Slow { ms } => format!("slow:{ms}"),
        Fault::Partial(n) => format!("partial:{n}"),
    }
}

fn parse_fault_name(v: &str) -> Result<Fault, String> {
    Ok(match v.split_once(':') {
        None if v == "reject" => Fault::Reject,
        None if v == "lost_ack" => Fault::LostAck,
        None if v == "hang_before" => Fault::Hang { effect: false },
        None if v == "hang_after" => Fault::Hang { effect: true },
        Some(("slow", ms)) => Fault::Slow {
            ms: ms
                .parse()
                .map_err(|_| format!("fault={v}: not slow:<ms>"))?,
        },
        _ => return Err(format!("fault={v}: not a directed fault")),
    })
}

fn parse_phase(v: &str) -> Result<Phase, String> {
    Phase::ALL
        .into_iter()
        .find(|p| p.name() == v)
        .ok_or_else(|| format!("phase={v}: not a pipeline state"))
}

pub(crate) const SITES: [Site; 9] = [
    Site::PrimaryMeta,
    Site::PrimaryPage,
    Site::PrimaryChanges,
    Site::ReplicaWrite,
    Site::ReplicaRead,
    Site::StateRead,
    Site::StateWrite,
    Site::QueueReceive,
    Site::QueueCommit,
];

impl Op {
    /// The operation's name in saved schedules (and the generator's kind).
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Op::Upsert { .. } => "upsert",
            Op::Delete { .. } => "delete",
            Op::ChangeKey { .. } => "change-key",
            Op::Enable(_) => "enable",
            Op::Disable(_) => "disable",
            Op::Force(_) => "force",
            Op::Unforce(_) => "unforce",
            Op::Reforce(_) => "reforce",
            Op::AddColumn { .. } => "add-column",
            Op::RenameColumn { .. } => "rename-column",
            Op::DropColumn { .. } => "drop-column",
            Op::Cleanup(_) => "cleanup",
            Op::Truncate(_) => "truncate",
            Op::Fault(..) => "fault",
            Op::RedisDown => "redis-down",
            Op::RedisUp => "redis-up",
            Op::RedisFlush => "redis-flush",
            Op::Kill => "kill",
            Op::Restart => "restart",
            Op::StopMidBacklog { .. } => "stop-mid-backlog",
            Op::Join => "join",
            Op::Leave => "leave",
            Op::KillSecond => "kill-second",
            Op::Pause { .. } => "pause",
            Op::Advance(_) => "advance",
            Op::Keyspace(_) => "keyspace",
            Op::BulkFail { .. } => "bulk-fail",
            Op::CorruptCursor { .. } => "corrupt-cursor",
            Op::BlockSwap { .. } => "block-swap",
            Op::UnblockSwap(_) => "unblock-swap",
            Op::RenameTable { .. } => "rename-table",
            Op::Module { .. } => "module",
            Op::ModuleFault(..) => "module-fault",
            Op::CtOff(_) => "ct-off",
            Op::CtOn(_) => "ct-on",
            Op::ScoutFault { .. } => "scout-fault",
            Op::Hang { .. } => "hang",
            Op::Slow { .. } => "slow",
            Op::During { .. } => "during",
        }
    }
}

/// One line: the name, then `key=value` pairs (e.g. `upsert t=0 key=3
/// salt=17`, `fault site=ReplicaWrite fault=LostAck`, `pause second=true
/// ms=588 at=none`, `hang site=StateWrite effect=true`).
impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.name())?;
        match self {
            Op::Upsert { t, key, salt } => write!(f, " t={t} key={key} salt={salt}"),
            Op::Delete { t, key } => write!(f, " t={t} key={key}"),
            Op::ChangeKey { t, from, to, salt } => {
                write!(f, " t={t} from={from} to={to} salt={salt}")
            }
            Op::Enable(t) | Op::Disable(t) | Op::Force(t) | Op::Cleanup(t) | Op::Truncate(t) => {
                write!(f, " t={t}")
            }
            Op::Unforce(t) | Op::Reforce(t) => write!(f, " t={t}"),
            Op::AddColumn { t, not_null, event } => {
                write!(f, " t={t} not_null={not_null} event={event}")
            }
            Op::RenameColumn { t, event } | Op::DropColumn { t, event } => {
                write!(f, " t={t} event={event}")
            }
            Op::Fault(site, fault) => write!(f, " site={site:?} fault={fault:?}"),
            Op::StopMidBacklog { t, salt, graceful } => {
                write!(f, " t={t} salt={salt} graceful={graceful}")
            }
            Op::Pause { second, ms, at } => match at {
                Some(site) => write!(f, " second={second} ms={ms} at={site:?}"),
                None => write!(f, " second={second} ms={ms} at=none"),
            },
            Op::Advance(ms) => write!(f, " ms={ms}"),
            Op::Keyspace(fate) => write!(f, " {fate}"),
            Op::BulkFail {
                t,
                lasting,
                connection,
            } => write!(f, " t={t} lasting={lasting} connection={connection}"),
            Op::CorruptCursor {
                t,
                load,
                forced,
                salt,
            } => write!(f, " t={t} load={load} forced={forced} salt={salt}"),
            Op::BlockSwap {
                t,
                foreign_key,
                mid_load,
            } => write!(f, " t={t} fk={foreign_key} mid_load={mid_load}"),
            Op::UnblockSwap(t) | Op::CtOff(t) | Op::CtOn(t) => write!(f, " t={t}"),
            Op::RenameTable { t, mid_load } => write!(f, " t={t} mid_load={mid_load}"),
            Op::Module { n, drop, salt } => write!(f, " n={n} drop={drop} salt={salt}"),
            Op::ModuleFault(site, fault) => write!(f, " site={site:?} fault={fault:?}"),
            Op::ScoutFault { partial } => match partial {
                Some(n) => write!(f, " partial={n}"),
                None => write!(f, " partial=none"),
            },
            Op::Hang { site, effect } => write!(f, " site={site:?} effect={effect}"),
            Op::Slow { site, ms } => write!(f, " site={site:?} ms={ms}"),
            Op::During {
                phase,
                site,
                fault,
                module,
            } => write!(
                f,
                " phase={} site={site:?} fault={} module={module}",
                phase.name(),
                fault_name(*fault)
            ),
            Op::RedisDown
            | Op::RedisUp
            | Op::RedisFlush
            | Op::Kill
            | Op::Restart
            | Op::Join
            | Op::Leave
            | Op::KillSecond => Ok(()),
        }
    }
}

/// The `key=value` pairs of one line, each taken once.
struct Fields<'a>(Vec<(&'a str, &'a str)>);

impl<'a> Fields<'a> {
    fn take(&mut self, key: &str) -> Result<&'a str, String> {
        let i = self
            .0
            .iter()
            .position(|(k, _)| *k == key)
            .ok_or_else(|| format!("missing {key}="))?;
        Ok(self.0.remove(i).1)
    }
    fn num<T: std::str::FromStr>(&mut self, key: &str) -> Result<T, String> {
        let v = self.take(key)?;
        v.parse().map_err(|_| format!("{key}={v}: not a number"))
    }
    fn flag(&mut self, key: &str) -> Result<bool, String> {
        match self.take(key)? {
            "true" => Ok(true),
            "false" => Ok(false),
            v => Err(format!("{key}={v}: not true or false")),
        }
    }
    fn fault(&mut self, key: &str) -> Result<Fault, String> {
        match self.take(key)? {
            "Reject" => Ok(Fault::Reject),
            "LostAck" => Ok(Fault::LostAck),
            v => Err(format!("{key}={v}: not Reject or LostAck")),
        }
    }
    fn site(&mut self, key: &str) -> Result<Option<Site>, String> {
        let v = self.take(key)?;
        if v == "none" {
            return Ok(None);
        }
        SITES
            .iter()
            .find(|s| format!("{s:?}") == v)
            .map(|s| Some(*s))
            .ok_or_else(|| format!("{key}={v}: not a site"))
    }
}

impl std::str::FromStr for Op {
    type Err = String;

    fn from_str(line: &str) -> Result<Op, String> {
        let mut words = line.split_whitespace();
        let name = words.next().ok_or("an empty line")?;
        let pairs = words
            .map(|w| w.split_once('=').ok_or(format!("{w}: not key=value")))
            .collect::<Result<Vec<_>, _>>()?;
        let mut f = Fields(pairs);
        let op = match name {
            "upsert" => Op::Upsert {
                t: f.num("t")?,
                key: f.num("key")?,
                salt: f.num("salt")?,
            },
            "delete" => Op::Delete {
                t: f.num("t")?,
                key: f.num("key")?,
            },
            "change-key" => Op::ChangeKey {
                t: f.num("t")?,
                from: f.num("from")?,
                to: f.num("to")?,
                salt: f.num("salt")?,
            },
            "enable" => Op::Enable(f.num("t")?),
            "disable" => Op::Disable(f.num("t")?),
            "force" => Op::Force(f.num("t")?),
            "unforce" => Op::Unforce(f.num("t")?),
            "reforce" => Op::Reforce(f.num("t")?),
            "cleanup" => Op::Cleanup(f.num("t")?),
            "truncate" => Op::Truncate(f.num("t")?),
            "add-column" => Op::AddColumn {
                t: f.num("t")?,
                not_null: f.flag("not_null")?,
                event: f.flag("event")?,
            },
            "rename-column" => Op::RenameColumn {
                t: f.num("t")?,
                event: f.flag("event")?,
            },
            "drop-column" => Op::DropColumn {
                t: f.num("t")?,
                event: f.flag("event")?,
            },
            "fault" => {
                let site = f.site("site")?.ok_or("fault site=none")?;
                Op::Fault(site, f.fault("fault")?)
            }
            "redis-down" => Op::RedisDown,
            "redis-up" => Op::RedisUp,
            "redis-flush" => Op::RedisFlush,
            "kill" => Op::Kill,
            "restart" => Op::Restart,
            "stop-mid-backlog" => Op::StopMidBacklog {
                t: f.num("t")?,
                salt: f.num("salt")?,
                graceful: f.flag("graceful")?,
            },
            "join" => Op::Join,
            "leave" => Op::Leave,
            "kill-second" => Op::KillSecond,
            "pause" => Op::Pause {
                second: f.flag("second")?,
                ms: f.num("ms")?,
                at: f.site("at")?,
            },
            "advance" => Op::Advance(f.num("ms")?),
            "keyspace" => {
                let fate = f.take("fate")?;
                Op::Keyspace(crate::keyspace::Fate::parse(fate, f.num("ms")?)?)
            }
            "bulk-fail" => Op::BulkFail {
                t: f.num("t")?,
                lasting: f.flag("lasting")?,
                connection: f.flag("connection")?,
            },
            "corrupt-cursor" => Op::CorruptCursor {
                t: f.num("t")?,
                load: f.flag("load")?,
                forced: f.flag("forced")?,
                salt: f.num("salt")?,
            },
            "block-swap" => Op::BlockSwap {
                t: f.num("t")?,
                foreign_key: f.flag("fk")?,
                mid_load: f.flag("mid_load")?,
            },
            "unblock-swap" => Op::UnblockSwap(f.num("t")?),
            "rename-table" => Op::RenameTable {
                t: f.num("t")?,
                mid_load: f.flag("mid_load")?,
            },
            "module" => Op::Module {
                n: f.num("n")?,
                drop: f.flag("drop")?,
                salt: f.num("salt")?,
            },
            "module-fault" => {
                let site = f.site("site")?.ok_or("module-fault site=none")?;
                Op::ModuleFault(site, f.fault("fault")?)
            }
            "ct-off" => Op::CtOff(f.num("t")?),
            "ct-on" => Op::CtOn(f.num("t")?),
            "scout-fault" => Op::ScoutFault {
                partial: match f.take("partial")? {
                    "none" => None,
                    v => Some(
                        v.parse()
                            .map_err(|_| format!("partial={v}: not a number"))?,
                    ),
                },
            },
            "hang" => Op::Hang {
                site: f.site("site")?.ok_or("hang site=none")?,
                effect: f.flag("effect")?,
            },
            "slow" => Op::Slow {
                site: f.site("site")?.ok_or("slow site=none")?,
                ms: f.num("ms")?,
            },
            "during" => Op::During {
                phase: parse_phase(f.take("phase")?)?,
                site: f.site("site")?.ok_or("during site=none")?,
                fault: parse_fault_name(f.take("fault")?)?,
                module: f.flag("module")?,
            },
            other => return Err(format!("{other}: no such operation")),
        };
        match f.0.first() {
            Some((k, _)) => Err(format!("{name}: unexpected {k}=")),
            None => Ok(op),
        }
    }
}
