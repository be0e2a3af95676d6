//! The ARM budget gate: VM runs wait here before starting while ARM says the subscription's
//! read or write budget (`x-ms-ratelimit-remaining-subscription-*`, through the shared client's
//! `ThrottleBudget`) is below a reserve, instead of starting and collecting 429s.
//!
//! The remaining counts only change when an answer arrives, so a gate that held everybody back
//! would never see the bucket refill: one run is let through per probe interval while the budget
//! is low, and its answers refresh the counts. The ARM client still retries any 429 that gets
//! through (after `Retry-After`), so the gate is an economy, not a guarantee.

use std::time::Duration;

use tokio::time::Instant;

use crate::azure::budget::ThrottleBudget;

#[derive(Debug)]
pub struct BudgetGate {
    budget: ThrottleBudget,
    reserve_reads: u64,
    reserve_writes: u64,
    probe_every: Duration,
    last_probe: std::sync::Mutex<Option<Instant>>,
}

impl BudgetGate {
    /// `reserve_*`: the remaining count below which new runs wait.
    pub fn new(budget: ThrottleBudget, reserve_reads: u64, reserve_writes: u64) -> BudgetGate {
        BudgetGate {
            budget,
            reserve_reads,
            reserve_writes,
            probe_every: Duration::from_millis(500),
            last_probe: std::sync::Mutex::new(None),
        }
    }

    /// The reserve for `concurrency` runs in flight: each running VM may spend a few more calls
    /// before its answers lower the counts, so keep that many back (bounded: ARM's buckets hold
    /// a few hundred tokens).
    pub fn for_concurrency(budget: ThrottleBudget, concurrency: usize) -> BudgetGate {
        let c = u64::try_from(concurrency).unwrap_or(u64::MAX);
        BudgetGate::new(budget, c.saturating_mul(2).min(100), c.min(60))
    }

    fn low(&self) -> bool {
        self.budget
            .remaining_reads()
            .is_some_and(|r| r < self.reserve_reads)
            || self
                .budget
                .remaining_writes()
                .is_some_and(|w| w < self.reserve_writes)
    }

    /// Returns when a new VM run may start. Whether it had to wait is returned for the counters.
    pub async fn admit(&self) -> bool {
        let mut waited = false;
        loop {
            if !self.low() {
                return waited;
            }
            {
                let mut last = self.last_probe.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                if last.is_none_or(|t| now.duration_since(t) >= self.probe_every) {
                    *last = Some(now);
                    return waited;
                }
            }
            waited = true;
            tokio::time::sleep(self.probe_every / 5).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    fn budget_with(reads: &'static str) -> ThrottleBudget {
        let b = ThrottleBudget::default();
        let mut h = HeaderMap::new();
        h.insert(
            "x-ms-ratelimit-remaining-subscription-reads",
            HeaderValue::from_static(reads),
        );
        b.observe(&h);
        b
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_or_ample_budget_admits_at_once() {
        assert!(
            !BudgetGate::new(ThrottleBudget::default(), 10, 10)
                .admit()
                .await
        );
        assert!(!BudgetGate::new(budget_with("200"), 10, 10).admit().await);
    }

    #[tokio::test(start_paused = true)]
    async fn low_budget_lets_one_probe_through_per_interval() {
        let gate = BudgetGate::new(budget_with("3"), 10, 10);
        let start = Instant::now();
        assert!(!gate.admit().await, "the first run probes");
        assert!(
            gate.admit().await,
            "the second waits for the next probe slot"
        );
        assert!(Instant::now().duration_since(start) >= Duration::from_millis(500));
    }
}
