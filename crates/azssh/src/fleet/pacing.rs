//! Pacing against ARM's throttling, at two levels:
//!
//! - `TokenPacer`, installed on the shared client's `ThrottleBudget`, is the one budget for
//!   everything Azure throttles. It holds each request until ARM's token bucket for its kind
//!   should have a token: a local estimate of the bucket (ARM's documented per-subscription
//!   defaults: reads 250 refilled at 25/s, writes and deletes 200 at 10/s; Resource Graph's
//!   per-user quota of 15 queries per 5 s), spent as requests go out and lowered to the
//!   `remaining` count each answer reports (`x-ms-ratelimit-remaining-subscription-*`,
//!   `x-ms-user-quota-remaining`). A larger bucket reported by ARM raises the estimate's
//!   capacity; an endpoint that never reports a count is not paced. The Compute RP's per-VM
//!   and per-subscription policies are paced from `x-ms-ratelimit-remaining-resource`: a kind
//!   of request to a VM whose policy reads 0 waits, one probe per second. Under `--shard I/N`
//!   each process takes 1/N of every bucket (`TokenPacer::with_share`).
//! - `BudgetGate`: VM runs wait here before starting while ARM says the subscription's read or
//!   write budget (`x-ms-ratelimit-remaining-subscription-*`) is below a reserve, so a blocking
//!   thread is not taken by a run that would only wait for tokens.
//!
//! The remaining counts only change when an answer arrives, so a gate that held everybody back
//! would never see the bucket refill: one run is let through per probe interval while the budget
//! is low, and its answers refresh the counts. The ARM client still retries any 429 that gets
//! through (after `Retry-After`).

use std::collections::HashMap;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::time::Instant;

use crate::azure::budget::{ComputeTarget, Operation, Pacer, ThrottleBudget};

/// Tokens left for everyone else using the subscription (the portal, other tools).
const FLOOR: f64 = 5.0;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    capacity: f64,
    refill_per_sec: f64,
    at: Instant,
    /// Whether ARM ever reported a remaining count: an endpoint that never does (an emulator
    /// with throttling off, a proxy stripping headers) is not paced on a guess.
    reported: bool,
    /// Tokens left for others (`FLOOR` for ARM's buckets; none for Resource Graph's small
    /// per-user quota, which is ours alone).
    floor: f64,
}

impl Bucket {
    fn new(capacity: f64, refill_per_sec: f64) -> Bucket {
        Bucket {
            tokens: capacity,
            capacity,
            refill_per_sec,
            at: Instant::now(),
            reported: false,
            floor: FLOOR,
        }
    }

    fn without_floor(mut self) -> Bucket {
        self.floor = 0.0;
        self
    }

    fn refill(&mut self, now: Instant) {
        let secs = now.duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + secs * self.refill_per_sec).min(self.capacity);
        self.at = now;
    }

    /// Takes a token, or says how long until one is there.
    fn take(&mut self, now: Instant) -> Option<Duration> {
        self.refill(now);
        if self.tokens >= self.floor + 1.0 || !self.reported {
            self.tokens = (self.tokens - 1.0).max(0.0);
            None
        } else {
            Some(Duration::from_secs_f64(
                (self.floor + 1.0 - self.tokens) / self.refill_per_sec,
            ))
        }
    }

    /// ARM's count is the truth but lags the requests still in flight, so it may only lower
    /// the estimate; a count above our capacity means a bigger bucket than we assumed.
    fn observe(&mut self, remaining: u64, now: Instant) {
        self.refill(now);
        self.reported = true;
        let r = remaining as f64;
        if r > self.capacity {
            self.capacity = r;
        }
        self.tokens = self.tokens.min(r);
    }
}

/// The per-request pacer (see the module doc).
#[derive(Debug)]
pub struct TokenPacer {
    reads: std::sync::Mutex<Bucket>,
    writes: std::sync::Mutex<Bucket>,
    deletes: std::sync::Mutex<Bucket>,
    /// Resource Graph's per-user quota: 15 queries every 5 s (ARM.md §9).
    graph: std::sync::Mutex<Bucket>,
    /// The Compute RP's lowest reported count per kind of request and VM, and when a request
    /// last went out while it was exhausted (one probe per `COMPUTE_PROBE`).
    compute: std::sync::Mutex<HashMap<ComputeTarget, (u64, Option<Instant>)>>,
    /// This process's part of the subscription's budget (`--shard I/N`: 1/N).
    share: f64,
}

/// While the Compute RP reports a policy exhausted for a VM, one request of that kind per
/// this interval goes through (its answer refreshes the count); the ARM client still retries a
/// 429 after its `Retry-After`.
const COMPUTE_PROBE: Duration = Duration::from_secs(1);

impl Default for TokenPacer {
    fn default() -> Self {
        TokenPacer::with_share(1.0)
    }
}

impl TokenPacer {
    /// A pacer that spends `share` (0 < share <= 1) of every bucket: N shard processes on one
    /// subscription each take 1/N, so together they stay inside ARM's limits instead of racing
    /// each other into 429s. ARM's reported remaining counts are the whole subscription's, so
    /// they are scaled by the same share.
    pub fn with_share(share: f64) -> TokenPacer {
        let share = if share.is_finite() && share > 0.0 {
            share.min(1.0)
        } else {
            1.0
        };
        let b = |cap: f64, refill: f64| Bucket::new(cap * share, refill * share);
        TokenPacer {
            reads: std::sync::Mutex::new(b(250.0, 25.0)),
            writes: std::sync::Mutex::new(b(200.0, 10.0)),
            deletes: std::sync::Mutex::new(b(200.0, 10.0)),
            // At least one query per window, whatever the share.
            graph: std::sync::Mutex::new(
                Bucket::new((15.0 * share).max(1.0), (3.0 * share).max(0.2)).without_floor(),
            ),
            compute: std::sync::Mutex::new(HashMap::new()),
            share,
        }
    }

    fn bucket(&self, op: Operation) -> std::sync::MutexGuard<'_, Bucket> {
        let m = match op {
            Operation::Read => &self.reads,
            Operation::Write => &self.writes,
            Operation::Delete => &self.deletes,
            Operation::GraphQuery => &self.graph,
        };
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// None when a request may go; else how long to wait before asking again.
    fn compute_wait(&self, target: &ComputeTarget, now: Instant) -> Option<Duration> {
        let mut map = self.compute.lock().unwrap_or_else(|e| e.into_inner());
        let (left, probe) = map.get_mut(target)?;
        if *left > 0 {
            *left -= 1;
            return None;
        }
        match probe {
            Some(t) if now.duration_since(*t) < COMPUTE_PROBE => {
                Some(COMPUTE_PROBE - now.duration_since(*t))
            }
            _ => {
                *probe = Some(now);
                None
            }
        }
    }
}

impl Pacer for TokenPacer {
    fn acquire(&self, op: Operation) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            loop {
                let wait = self.bucket(op).take(Instant::now());
                match wait {
                    None => return,
                    Some(d) => tokio::time::sleep(d).await,
                }
            }
        })
    }

    fn observe(&self, op: Operation, remaining: u64) {
        let mine = (remaining as f64 * self.share).floor() as u64;
        self.bucket(op).observe(mine, Instant::now());
    }

    fn acquire_compute<'a>(&'a self, target: &'a ComputeTarget) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            while let Some(d) = self.compute_wait(target, Instant::now()) {
                tokio::time::sleep(d).await;
            }
        })
    }

    fn observe_compute(&self, target: &ComputeTarget, remaining: u64) {
        let mine = (remaining as f64 * self.share).floor() as u64;
        let mut map = self.compute.lock().unwrap_or_else(|e| e.into_inner());
        let e = map.entry(target.clone()).or_insert((mine, None));
        e.0 = mine;
    }
}

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

    /// The gate of a fleet run whose requests go through a `TokenPacer`. The pacer already
    /// holds every request for its token, so the gate only stops new runs when the subscription
    /// is nearly dry (someone else spends it too). A reserve sized to the concurrency held new
    /// VMs back while a write-bound run kept ARM's write bucket low on purpose: VMs then started
    /// at the probe rate (2/s) rather than at the bucket's refill (10 writes/s).
    pub fn for_concurrency(budget: ThrottleBudget, _concurrency: usize) -> BudgetGate {
        let mut gate = BudgetGate::new(budget, 2, 2);
        gate.probe_every = Duration::from_millis(100);
        gate
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

    #[tokio::test(start_paused = true)]
    async fn pacer_spends_the_bucket_then_follows_the_refill_rate() {
        let pacer = TokenPacer::default();
        pacer.observe(Operation::Write, 200);
        let start = Instant::now();
        for _ in 0..194 {
            pacer.acquire(Operation::Write).await;
        }
        assert_eq!(
            Instant::now(),
            start,
            "a full bucket (less the floor) goes at once"
        );
        for _ in 0..10 {
            pacer.acquire(Operation::Write).await;
        }
        let waited = Instant::now().duration_since(start);
        assert!(waited >= Duration::from_millis(900), "{waited:?}");
        // Reads are a separate bucket, and never reported: not paced.
        let t = Instant::now();
        for _ in 0..1000 {
            pacer.acquire(Operation::Read).await;
        }
        assert_eq!(Instant::now(), t);
    }

    #[tokio::test(start_paused = true)]
    async fn reported_remaining_lowers_the_estimate() {
        let pacer = TokenPacer::default();
        pacer.observe(Operation::Read, 6);
        let t = Instant::now();
        pacer.acquire(Operation::Read).await;
        pacer.acquire(Operation::Read).await;
        assert!(
            Instant::now() > t,
            "only one token above the floor was left"
        );
    }
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
