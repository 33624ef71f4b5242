//! The fault plan as the guard of the wrapped ports: every declared call
//! (`ports::calls`) meets the plan before its request (counted, frozen,
//! refused, hung, slowed) and after it (a lost answer, a hang after the
//! effect).

use std::future::Future;
use std::sync::Arc;

use super::plan::{died_error, FaultPlan};
use crate::error::Result;
use crate::ports::{Call, Guard};

impl Guard for Arc<FaultPlan> {
    async fn run<'a, T: Send + 'a>(
        &'a self,
        call: Call<'a>,
        request: impl Future<Output = Result<T>> + Send + 'a,
    ) -> Result<T> {
        if !call.refusable {
            // No rule strikes it; a dead process sends nothing.
            if self.is_killed() {
                return Err(died_error());
            }
            return request.await;
        }
        let (site, method) = (call.site, call.method);
        // In flight until answered, failed or dropped (coverage).
        let _flight = self.fly(&call);
        let rule = self.before(call).await?;
        let result = request.await;
        self.after(site, method, rule, result).await
    }

    /// A partial answer drops one entry of the list.
    async fn run_entries<'a, T: Send + 'a>(
        &'a self,
        call: Call<'a>,
        request: impl Future<Output = Result<Vec<T>>> + Send + 'a,
    ) -> Result<Vec<T>> {
        let (site, method) = (call.site, call.method);
        let _flight = self.fly(&call);
        let rule = self.before(call).await?;
        let result = request.await;
        self.after_entries(site, method, rule, result).await
    }
}
