//! The seeded fault simulation: the real actors (supervisor, tables, sink,
//! DDL listener, module sync) over the in-memory ports, on one
//! current-thread runtime with a paused clock, driven by a schedule derived
//! from one u64 seed: workload on several tables (composite keys, every
//! value type, names with dots), operator flag changes, schema changes with
//! and without their DDL events, table renames (some mid shadow load), CT
//! cleanup and TRUNCATE, faults at every
//! port (rejected calls, lost acknowledgements, calls that hang before or
//! after their effect until the core's call limit ends them, calls that
//! take effect late), Redis outages and data
//! loss, process kills and graceful restarts (some just as a table's
//! backlog is part-way applied), bulk loads failing part-way through a page
//! (once, or for good on a table), a load's or backlog's cursor on the
//! replica made unreadable between two processes, and a second instance that
//! joins, leaves, dies, or freezes past its lease (at times just as a write
//! leaves, so the write arrives after the takeover). Leases run on the
//! simulated clock. After every step no stored version may be ahead of what
//! the replica holds, no table's commit tokens may go down (no table is
//! written by two owners) and no write may have been refused for a
//! duplicate key (none left part of itself behind) and every shadow table
//! must be a pending shadow load's copy (and every such load have one); at
//! the end the run
//! quiesces (the "operator" re-enables and force-loads what needs it) and
//! every enabled table must equal the primary row for row, every held table
//! must say why, every live instance must still run its discovery and DDL
//! listener once every hung call has met its limit (and one of them module
//! sync and the receive), no two
//! cycles of a table may have overlapped, and a change committed just
//! after an idle scout must be applied one poll after the next scout.
//!
//! `CTSYNC_SIM_SEEDS=N` runs N seeds (default: the fixed CI set),
//! `CTSYNC_SIM_SEED=S` replays one seed. A failing seed is shrunk to the
//! shortest schedule that still fails, and both are printed.

mod support;

#[path = "simulation/coverage.rs"]
mod coverage;
#[path = "simulation/force_requests.rs"]
mod force_requests;
#[path = "simulation/generator.rs"]
mod generator;
#[path = "simulation/invariants.rs"]
mod invariants;
#[path = "simulation/keyspace.rs"]
mod keyspace;
#[path = "simulation/liveness.rs"]
mod liveness;
#[path = "simulation/modules.rs"]
mod modules;
#[path = "simulation/ops.rs"]
mod ops;
#[path = "simulation/promptness.rs"]
mod promptness;
#[path = "simulation/renames.rs"]
mod renames;
#[path = "simulation/replica_faults.rs"]
mod replica_faults;
#[path = "simulation/report.rs"]
mod report;
#[path = "simulation/rows.rs"]
mod rows;
#[path = "simulation/saved.rs"]
mod saved;
#[path = "simulation/scout.rs"]
mod scout;
#[path = "simulation/swap_blockers.rs"]
mod swap_blockers;
#[path = "simulation/world.rs"]
mod world;

use std::time::Duration;

use generator::{schedule, STEPS};
use ops::Op;
use world::{Divergence, RunStats, World};

/// The fixed seeds `.ci/run` runs (see the README for soak runs): 1..=this,
/// and [`COVERING_SEEDS`].
const CI_SEEDS: u64 = 300;

/// Seeds past [`CI_SEEDS`] that the CI mix runs too, because each reaches
/// a state × kind pair the seeds before it miss, so that no reachable pair
/// is left at 0. Found by `CTSYNC_SIM_COVER=N` (docs/testing.md): a change
/// to the generator or the pipeline that moves what they reach fails the
/// CI test, which names the pairs and the command that picks them again.
///
/// Picked by a search over seeds 1..=20000 (release) with the directed
/// `during` step and the `rename-table` step in the generator
/// (`CTSYNC_SIM_COVER_FRESH=1`; every pair was reached by seed 7748).
const COVERING_SEEDS: &[u64] = &[
    373, 381, 420, 446, 449, 455, 478, 481, 483, 490, 543, 557, 559, 595, 735, 889, 891, 903, 1034,
    1476, 3810, 4630, 7748,
];

/// Pairs the code can reach that no seed searched reached, each with the
/// reason (none today; the rarest, a Redis read hung before its effect
/// while a swap runs, needs a later cycle reading while a retired cycle's
/// swap is still in the SinkActor: the lease lost mid-swap). Said, not
/// hidden; the CI test fails on any other pair at 0.
const NOT_YET_REACHED: &[&str] = &[];

/// Runs one schedule on a fresh world, on a current-thread runtime with a
/// paused clock.
fn run(ops: &[Op]) -> Result<RunStats, Divergence> {
    let system = actix_rt::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a current-thread runtime")
    });
    let ops = ops.to_vec();
    system.block_on(async move {
        let began = tokio::time::Instant::now();
        let mut world = World::new();
        for op in &ops {
            world.note_op(op);
            tracing::info!(target: "sim", "step: {op}");
            world.apply(op).await;
            // Let the pipeline move between steps.
            tokio::time::sleep(Duration::from_millis(10)).await;
            world.check_versions()?;
            world.check_tokens()?;
            world.check_no_duplicates()?;
            world.check_untracked()?;
            world.check_shadows()?;
        }
        let liveness = world.watch_liveness();
        world.quiesce().await?;
        world.check_promptness().await?;
        world.check_in_place_loads()?;
        liveness.check().await?;
        let overlaps = world.overlaps();
        if overlaps > 0 {
            return Err(Divergence(format!(
                "{overlaps} overlapping cycles of one table"
            )));
        }
        world.held(invariants::OVERLAPS);
        let mut stats = RunStats {
            ops: ops.len(),
            op_phases: world.op_phases.clone(),
            fault_phases: world.fault_phases(),
            checks: world.checks.borrow().clone(),
            ..RunStats::default()
        };
        stats
            .faults
            .insert("stop mid-backlog".into(), world.stopped_mid_backlog);
        world
            .figures
            .insert("module writes", world.replica.module_writes() as u64);
        world.figures.insert("scouts", world.scouts());
        world.figures.insert(
            "untracked tables scouted",
            world.primary.untracked_scouted() as u64,
        );
        for (name, n) in &world.figures {
            stats.faults.insert(name.to_string(), *n);
        }
        coverage::add(&mut stats.fault_phases, &world.world_fault_phases);
        for plan in &world.plans {
            for ((site, kind), n) in plan.injected() {
                *stats.faults.entry(format!("{site:?}/{kind}")).or_insert(0) += n;
            }
        }
        for (figure, n) in world.replica_fault_figures() {
            *stats.faults.entry(figure).or_insert(0) += n;
        }
        stats.fingerprint = format!(
            "v{} t{:?} {:?}",
            world.primary.version(),
            began.elapsed(),
            world
                .tables
                .iter()
                .map(|id| {
                    // A pending load's start is wall-clock time (unix ms),
                    // the one thing a replay does not repeat.
                    let mut record = world.replica.table_record(id);
                    if let Some(load) = record.load.as_mut() {
                        load.started_at = 0;
                    }
                    (record, world.replica.loads_started(id))
                })
                .collect::<Vec<_>>()
        );
        let second = world.second.as_ref().map(|(r, _, _)| r);
        for r in std::iter::once(&world.running)
            .chain(second)
            .chain(&world.incarnations)
        {
            let _ = tokio::time::timeout(Duration::from_secs(5), r.shutdown()).await;
        }
        Ok(stats)
    })
}

/// Deletes ops while the run still fails: the shortest failing schedule
/// this greedy pass finds.
fn shrink(mut ops: Vec<Op>) -> Vec<Op> {
    let mut chunk = ops.len() / 2;
    while chunk >= 1 {
        let mut i = 0;
        while i < ops.len() {
            let mut candidate = ops.clone();
            let end = (i + chunk).min(candidate.len());
            candidate.drain(i..end);
            if run(&candidate).is_err() {
                ops = candidate;
            } else {
                i += chunk;
            }
        }
        chunk /= 2;
    }
    ops
}

fn seeds() -> Vec<u64> {
    if let Some(seed) = std::env::var("CTSYNC_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![seed];
    }
    match std::env::var("CTSYNC_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(n) => (1..=n).collect(),
        None => ci_mix(),
    }
}

fn ci_mix() -> Vec<u64> {
    (1..=CI_SEEDS)
        .chain(COVERING_SEEDS.iter().copied())
        .collect()
}

/// `CTSYNC_SIM_COVER=N`: runs the CI mix, then seeds up to `N`, and
/// prints the seeds to add to [`COVERING_SEEDS`]: each reaches a pair the
/// mix (with the seeds picked before it) leaves at 0. Ignored unless asked
/// for (`-- --ignored`): it runs for minutes.
#[test]
#[ignore = "a search of minutes: CTSYNC_SIM_COVER=N cargo test --release --test simulation covering_seeds_search -- --ignored"]
fn covering_seeds_search() {
    let n = std::env::var("CTSYNC_SIM_COVER")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(20_000);
    let mut mix = report::Figures::default();
    // `CTSYNC_SIM_COVER_FRESH=1`: pick the covering seeds again from
    // nothing (after a change to the generator), not on top of today's.
    let fresh = std::env::var_os("CTSYNC_SIM_COVER_FRESH").is_some();
    let ci: Vec<u64> = if fresh {
        (1..=CI_SEEDS).collect()
    } else {
        ci_mix()
    };
    for &seed in &ci {
        mix.add(
            run(&schedule(seed)).unwrap_or_else(|Divergence(why)| panic!("seed {seed}: {why}")),
        );
    }
    let mut picked = Vec::new();
    let mut diverged = Vec::new();
    // `CTSYNC_SIM_COVER_FROM=S`: search from seed S on (the seeds before
    // it were searched already).
    let from = std::env::var("CTSYNC_SIM_COVER_FROM")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(1);
    for seed in (from..=n).filter(|s| !ci.contains(s)) {
        let (_, zero) = mix.coverage();
        if zero.is_empty() {
            break;
        }
        let stats = match run(&schedule(seed)) {
            Ok(stats) => stats,
            Err(Divergence(why)) => {
                println!("seed {seed} diverged: {why}");
                diverged.push(seed);
                continue;
            }
        };
        let reached = |(kind, phase): &(String, ctsync_actors::memory::faults::Phase)| {
            let key = (kind.clone(), *phase);
            stats.op_phases.get(&key).is_some_and(|n| *n > 0)
                || stats.fault_phases.get(&key).is_some_and(|n| *n > 0)
        };
        let new: Vec<String> = zero
            .iter()
            .filter(|p| reached(p))
            .map(|(kind, phase)| format!("{kind} × {}", phase.name()))
            .collect();
        if !new.is_empty() {
            println!("seed {seed} reaches {new:?}");
            picked.push(seed);
            mix.add(stats);
        }
    }
    let (_, zero) = mix.coverage();
    let kept = if fresh { &[][..] } else { COVERING_SEEDS };
    let all: Vec<u64> = kept.iter().copied().chain(picked).collect();
    println!("COVERING_SEEDS: &[u64] = &{all:?};");
    println!(
        "still at 0 after seed {n}: {:?}",
        zero.iter()
            .map(|(kind, phase)| format!("{kind} × {}", phase.name()))
            .collect::<Vec<_>>()
    );
    assert!(diverged.is_empty(), "seeds that diverged: {diverged:?}");
}

#[test]
fn seeded_fault_simulation_keeps_every_invariant() {
    let started = std::time::Instant::now();
    let mut figures = report::Figures::default();
    let seeds = seeds();
    for &seed in &seeds {
        let ops = schedule(seed);
        match run(&ops) {
            Ok(stats) => figures.add(stats),
            Err(Divergence(why)) => {
                let shortest = shrink(ops.clone());
                let header = [
                    format!("seed {seed} diverged: {why}"),
                    format!("shrunk to {} of {} ops", shortest.len(), ops.len()),
                ];
                let text = saved::render(&header, &shortest);
                // Where to save it as a schedule file (tests/schedules/).
                if let Ok(path) = std::env::var("CTSYNC_SIM_SAVE") {
                    std::fs::write(&path, &text).expect("write the schedule");
                }
                panic!(
                    "seed {seed} diverged: {why}\nreplay: CTSYNC_SIM_SEED={seed} cargo test --test simulation\n\
                     shortest failing schedule ({} of {} ops), as a tests/schedules/*.sched file:\n{text}",
                    shortest.len(),
                    ops.len()
                );
            }
        }
    }
    let faults = &figures.faults;
    assert!(
        faults.get("stop mid-backlog").is_some_and(|n| *n > 0),
        "no seed stopped a process mid-backlog: the resume path went untested ({faults:?})"
    );
    if seeds.len() >= 50 {
        for figure in [
            "ReplicaBulk/reject",
            "corrupt load cursor",
            "corrupt backlog cursor",
            "unreadable cursor reads",
        ] {
            assert!(
                faults.get(figure).is_some_and(|n| *n > 0),
                "no seed reached {figure:?} ({faults:?})"
            );
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let (tables, zero) = figures.coverage();
    println!(
        "simulation: {} seeds x {STEPS}+ ops ({} ops) in {seconds:.1} s; faults injected: {faults:?}",
        seeds.len(),
        figures.ops,
    );
    println!("simulation coverage:\n{tables}");
    let never: Vec<String> = zero
        .iter()
        .map(|(kind, phase)| format!("{kind} × {}", phase.name()))
        .collect();
    println!(
        "simulation: {} reachable state x kind pairs never reached: {never:?}",
        never.len()
    );
    // The CI seeds are the report's; a replay or a soak writes its own.
    let custom = std::env::var_os("CTSYNC_SIM_SEED").is_some()
        || std::env::var_os("CTSYNC_SIM_SEEDS").is_some();
    let name = if custom {
        "simulation-custom.md"
    } else {
        "simulation.md"
    };
    report::write(name, &figures.markdown(seconds, &zero, NOT_YET_REACHED));
    let unexpected: Vec<&String> = never
        .iter()
        .filter(|p| !NOT_YET_REACHED.contains(&p.as_str()))
        .collect();
    let reached: Vec<&&str> = NOT_YET_REACHED
        .iter()
        .filter(|p| !never.iter().any(|n| n == *p))
        .collect();
    if !custom {
        assert!(
            unexpected.is_empty(),
            "state x kind pairs at 0 in the CI mix that the code can reach: {unexpected:?}; \
             pick covering seeds again (docs/testing.md, CTSYNC_SIM_COVER) or say why a pair \
             cannot happen (report::unreachable)"
        );
        assert!(
            reached.is_empty(),
            "NOT_YET_REACHED lists pairs the CI mix now reaches: {reached:?}; take them off"
        );
    }
}

/// One seed replays to the same final state and the same faults: the
/// runtime is single-threaded with a paused clock and the doubles iterate
/// in a fixed order.
#[test]
fn a_seed_replays_exactly() {
    for seed in [3, 17, 44] {
        let ops = schedule(seed);
        let a = run(&ops).expect("a passing seed");
        let b = run(&ops).expect("a passing seed");
        assert_eq!(a.faults, b.faults, "seed {seed}");
        assert_eq!(a.fingerprint, b.fingerprint, "seed {seed}");
    }
}

/// Each kind in the weight table draws operations of its own name (the
/// name keys its streams and names its lines in saved schedules).
#[test]
fn each_kind_draws_operations_of_its_name() {
    let mut drawn = std::collections::BTreeSet::new();
    for seed in 1..=50 {
        for (kind, op) in generator::schedule_with(generator::WEIGHTS, seed) {
            assert_eq!(kind, op.name(), "{op}");
            drawn.insert(kind);
        }
    }
    assert_eq!(drawn.len(), generator::WEIGHTS.len(), "{drawn:?}");
}

/// Adding a kind to the weight table changes only the steps the new kind
/// wins: every other step keeps its operation and its place.
#[test]
fn adding_a_kind_leaves_the_other_kinds_steps_alone() {
    let mut table = generator::WEIGHTS.to_vec();
    table.push(("a-new-kind", 10, |_, _| Op::Advance(1)));
    let (mut won, mut kept) = (0, 0);
    for seed in 1..=50 {
        let before = generator::schedule_with(generator::WEIGHTS, seed);
        let after = generator::schedule_with(&table, seed);
        assert_eq!(before.len(), after.len());
        for ((_, old), (kind, new)) in before.iter().zip(&after) {
            if *kind == "a-new-kind" {
                won += 1;
            } else {
                assert_eq!(format!("{new}"), format!("{old}"), "seed {seed}");
                kept += 1;
            }
        }
    }
    // About 10 in 112 steps go to the new kind.
    assert!(won > 0 && kept > 8 * won, "{won} won, {kept} kept");
}

#[test]
fn a_schedule_is_a_function_of_its_seed() {
    let a = format!("{:?}", schedule(42));
    assert_eq!(a, format!("{:?}", schedule(42)));
    assert_ne!(a, format!("{:?}", schedule(43)));
}

/// Every saved schedule (`tests/schedules/*.sched`: failing schedules the
/// simulation found, each named with its defect and fix) keeps every
/// invariant, replayed through the same runner without the generator.
#[test]
fn every_saved_schedule_keeps_every_invariant() {
    if let Some(path) = std::env::var_os("CTSYNC_SIM_REPLAY") {
        return replay_one(std::path::Path::new(&path));
    }
    let all = saved::all();
    assert!(!all.is_empty(), "no saved schedules in tests/schedules");
    let mut lines = String::from(
        "### Regression corpus\n\nEvery schedule in `tests/schedules/` replayed without the generator; each kept every invariant.\n\n| schedule | ops | what it found |\n|---|---:|---|\n",
    );
    for schedule in &all {
        if let Err(Divergence(why)) = run(&schedule.ops) {
            panic!(
                "{} diverged: {why}\n{}",
                schedule.path.display(),
                schedule.header.join("\n")
            );
        }
        let name = schedule
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // The header's first sentence names the defect.
        let header = schedule.header.join(" ");
        let about = header.split(". ").next().unwrap_or_default().to_string();
        lines.push_str(&format!(
            "| {name} | {} | {} |\n",
            schedule.ops.len(),
            about.replace('|', "\\|")
        ));
    }
    report::write("corpus.md", &lines);
}

/// `CTSYNC_SIM_REPLAY=file`: replays one schedule file (a saved one, or
/// one a failing seed printed), with the pipeline's log lines when
/// `CTSYNC_SIM_LOG` holds a filter (`ctsync_actors=debug`).
fn replay_one(path: &std::path::Path) {
    if let Ok(filter) = std::env::var("CTSYNC_SIM_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .without_time()
            .try_init();
    }
    let schedule = saved::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if let Err(Divergence(why)) = run(&schedule.ops) {
        panic!("{} diverged: {why}", path.display());
    }
}

/// Every operation the generator draws is saved as a line that reads back
/// as the same operation.
#[test]
fn an_operation_reads_back_from_its_saved_line() {
    for seed in 1..=50 {
        for op in schedule(seed) {
            let line = op.to_string();
            let back: Op = line.parse().unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(format!("{back:?}"), format!("{op:?}"), "{line}");
        }
    }
    assert!("upsert t=0 key=1".parse::<Op>().is_err(), "salt is missing");
    assert!(
        "advance ms=1 t=2".parse::<Op>().is_err(),
        "t is not advance's"
    );
}
