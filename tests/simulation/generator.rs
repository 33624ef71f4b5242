//! The schedule generator: a seed becomes a list of operations.

use crate::ops::{Op, SITES};
use crate::rows::table_defs;
use ctsync_actors::memory::faults::{Fault, Site};

/// Steps per schedule.
pub const STEPS: usize = 120;
/// Keys 0..KEYS are touched by the workload.
pub const KEYS: u64 = 30;

/// splitmix64: small, fast, and the same on every machine.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub(crate) fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

pub(crate) fn schedule(seed: u64) -> Vec<Op> {
    let mut rng = Rng(seed);
    let tables = table_defs().len();
    let mut ops = Vec::with_capacity(STEPS);
    // Most tables start enabled, so there is something to replicate.
    for t in 0..tables {
        if rng.chance(80) {
            ops.push(Op::Enable(t));
        }
    }
    for _ in 0..STEPS {
        let t = rng.below(tables as u64) as usize;
        let key = rng.below(KEYS) as u8;
        let salt = rng.next() as u32;
        let op = match rng.below(100) {
            0..=29 => Op::Upsert { t, key, salt },
            30..=39 => Op::Delete { t, key },
            40..=43 => Op::ChangeKey {
                t,
                from: key,
                to: rng.below(KEYS) as u8,
                salt,
            },
            44..=46 => Op::Enable(t),
            47 => Op::Disable(t),
            48..=50 => Op::Force(t),
            51 => Op::AddColumn {
                t,
                not_null: rng.chance(40),
                event: rng.chance(80),
            },
            52 => {
                if rng.chance(50) {
                    Op::RenameColumn {
                        t,
                        event: rng.chance(80),
                    }
                } else {
                    Op::DropColumn {
                        t,
                        event: rng.chance(80),
                    }
                }
            }
            53 => Op::Cleanup(t),
            54 => Op::Truncate(t),
            55..=69 => {
                let site = SITES[rng.below(SITES.len() as u64) as usize];
                let fault = if rng.chance(50) {
                    Fault::Reject
                } else {
                    Fault::LostAck
                };
                Op::Fault(site, fault)
            }
            70..=71 => Op::RedisDown,
            72..=73 => Op::RedisUp,
            74 => Op::RedisFlush,
            75..=76 => Op::Kill,
            77 => Op::Restart,
            78..=79 => Op::Join,
            80 => Op::Leave,
            81 => Op::KillSecond,
            82..=83 => Op::Pause {
                second: rng.chance(50),
                ms: 50 + rng.below(700),
                at: match rng.below(10) {
                    0..=3 => None,
                    4..=6 => Some(Site::ReplicaWrite),
                    _ => Some(Site::StateWrite),
                },
            },
            _ => Op::Advance(1 + rng.below(120)),
        };
        ops.push(op);
    }
    ops
}
