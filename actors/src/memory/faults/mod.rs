//! Fault injection, one mechanism for every test: [`Faulty`] wraps any port
//! and consults a [`FaultPlan`], whose [`Rule`]s strike calls by site,
//! method and table (rejected calls, lost acknowledgements, hung and slow
//! calls, outages), and which can kill or freeze the whole process. The
//! wrappers are the ports' one declaration of their calls
//! (`ports::calls`), guarded by the plan (`guard.rs`).

mod coverage;
mod guard;
mod plan;

use std::sync::Arc;

pub use crate::ports::calls::forwarded;
pub use coverage::{Phase, Probe};
pub use plan::{Fault, FaultPlan, Port, Rule, RuleId, Site};

/// A port wrapped with a fault plan.
pub type Faulty<P> = crate::ports::Guarded<P, Arc<FaultPlan>>;

/// `ports` with each one wrapped with `plan`.
pub fn wrap(ports: crate::actors::Ports, plan: &Arc<FaultPlan>) -> crate::actors::Ports {
    crate::actors::Ports {
        primary: Arc::new(Faulty::new(ports.primary, plan.clone())),
        replica: Arc::new(Faulty::new(ports.replica, plan.clone())),
        state: Arc::new(Faulty::new(ports.state, plan.clone())),
        ddl_queue: ports.ddl_queue.map(|q| {
            let q: Arc<dyn crate::ports::DdlQueue> = Arc::new(Faulty::new(q, plan.clone()));
            q
        }),
    }
}
