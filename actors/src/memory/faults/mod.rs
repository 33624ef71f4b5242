//! Fault injection, one mechanism for every test: [`Faulty`] wraps any port
//! and consults a [`FaultPlan`], whose [`Rule`]s strike calls by site,
//! method and table (rejected calls, lost acknowledgements, outages), and
//! which can kill or freeze the whole process. The wrappers' forwarding is
//! generated from one declaration per port (`forward.rs`).

mod forward;
mod plan;

use std::sync::Arc;

pub use forward::forwarded;
pub use plan::{Fault, FaultPlan, Port, Rule, RuleId, Site};

/// A port wrapped with a fault plan.
pub struct Faulty<P: ?Sized> {
    inner: Arc<P>,
    plan: Arc<FaultPlan>,
}

impl<P: ?Sized> Faulty<P> {
    pub fn new(inner: Arc<P>, plan: Arc<FaultPlan>) -> Self {
        Self { inner, plan }
    }
}
