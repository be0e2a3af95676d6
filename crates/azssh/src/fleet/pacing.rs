//! Pacing against ARM's throttling, at two levels:
//!
//! - `TokenPacer`, installed on the shared client's `ThrottleBudget`, is the one budget for
//!   everything Azure throttles. It holds each request until ARM's token bucket for its kind
//!   should have a token: a local estimate of the subscription's bucket (ARM's documented
//!   per-subscription defaults: reads 250 refilled at 25/s, writes and deletes 200 at 10/s;
//!   Resource Graph's per-user quota of 15 queries per 5 s), spent as requests go out and
//!   lowered to the `remaining` count each answer reports (`x-ms-ratelimit-remaining-subscription-*`,
//!   `x-ms-user-quota-remaining`). A larger bucket reported by ARM raises the estimate's
//!   capacity; an endpoint that never reports a count is not paced. The Compute RP's per-VM
//!   and per-subscription policies are paced from `x-ms-ratelimit-remaining-resource`: a kind
//!   of request to a VM whose policy reads 0 waits, one probe per second.
//! - `BudgetGate`: VM runs wait here before starting while ARM says the subscription's read or
//!   write budget (`x-ms-ratelimit-remaining-subscription-*`) is below a reserve, so a blocking
//!   thread is not taken by a run that would only wait for tokens.
//!
//! Shards (`--shard I/N`, `TokenPacer::for_shards`): ARM's remaining counts are the
//! subscription's, shared by every process that spends it, so each shard paces on what ARM
//! reports is left. Above a reserve that grows with N (`Bucket::reserve`: one second of refill
//! per other shard, plus the floor left for others) each count lets a shard spend 1/(2N) of the
//! excess it shows, until the next count: every shard sees the same count and has up to
//! `--concurrency` requests in flight that it does not show yet, so none may spend the whole
//! excess (4 shards × 64 writes once drew 46 429s that way), and counts arrive every few
//! milliseconds, so a finished or idle shard's part is still used by the ones still busy. Before
//! the first count a shard spends 1/(2N) of the bucket: the shards start together. Below the
//! reserve each shard falls back to its 1/N share of the refill, so N busy shards together spend
//! the refill rate and no more: the bucket stops draining at the reserve instead of reaching 0.
//! A 429 that still gets through is retried by the ARM client after its `Retry-After`.
//!
//! The remaining counts only change when an answer arrives, so a gate that held everybody back
//! would never see the bucket refill: one run is let through per probe interval while the budget
//! is low, and its answers refresh the counts.

use std::collections::HashMap;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::time::Instant;

use crate::azure::budget::{ComputeTarget, Operation, Pacer, ThrottleBudget};

/// Tokens left for everyone else using the subscription (the portal, other tools).
const FLOOR: f64 = 5.0;

#[derive(Debug)]
struct Bucket {
    /// The estimate of what the subscription's bucket holds (not this process's part of it).
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
    /// Processes sharing the bucket (`--shard I/N`: N; else 1).
    shards: f64,
    /// Kept per other shard in the reserve (see `reserve`).
    per_shard: f64,
    /// This process's 1/N share of the refill, spent while the bucket is below the reserve.
    share_tokens: f64,
    share_capacity: f64,
    /// Sharded: what this shard may spend above the reserve until the next count, its 1/N of
    /// the excess that count showed. Every shard sees the same count, and each has up to
    /// `--concurrency` requests in flight that the count does not show yet, so none may spend
    /// the whole excess (4 shards × 64 writes against ARM's 200 drew 46 429s when they did).
    free: f64,
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
            shards: 1.0,
            per_shard: refill_per_sec,
            share_tokens: 1.0,
            share_capacity: 1.0,
            free: f64::INFINITY,
        }
    }

    fn without_floor(mut self) -> Bucket {
        self.floor = 0.0;
        self
    }

    /// Shared by `shards` processes, keeping `per_shard` tokens in the reserve for each other.
    fn shared(mut self, shards: u64, per_shard: f64) -> Bucket {
        self.shards = shards.max(1) as f64;
        self.per_shard = per_shard;
        // One second of this process's share may go at once.
        self.share_capacity = (self.refill_per_sec / self.shards).max(1.0);
        self.share_tokens = self.share_capacity;
        if shards > 1 {
            // Before the first count too: the shards start together.
            self.free = (self.capacity - self.reserve()) / (DAMPING * self.shards);
        }
        self
    }

    /// Below this reported count every shard spends only its share of the refill. Alone
    /// (N = 1) it is the floor, and the share is the whole refill: the single-process pacing.
    fn reserve(&self) -> f64 {
        (self.floor + (self.shards - 1.0) * self.per_shard).min(self.capacity - 1.0)
    }

    fn refill(&mut self, now: Instant) {
        let secs = now.duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + secs * self.refill_per_sec).min(self.capacity);
        self.share_tokens =
            (self.share_tokens + secs * self.refill_per_sec / self.shards).min(self.share_capacity);
        self.at = now;
    }

    /// Takes a token, or says how long until one may be there.
    fn take(&mut self, now: Instant) -> Option<Duration> {
        self.refill(now);
        if !self.reported && self.shards <= 1.0 {
            self.tokens = (self.tokens - 1.0).max(0.0);
            return None;
        }
        if self.tokens >= self.reserve() + 1.0 && self.free >= 1.0 {
            self.tokens = (self.tokens - 1.0).max(0.0);
            self.free -= 1.0;
            return None;
        }
        if self.tokens >= self.floor + 1.0 && self.share_tokens >= 1.0 {
            self.tokens -= 1.0;
            self.share_tokens -= 1.0;
            return None;
        }
        // The sooner of: our share has a token (and the bucket is above the floor), or the
        // bucket is back above the reserve.
        let rate = self.refill_per_sec;
        let above_floor = (self.floor + 1.0 - self.tokens).max(0.0) / rate;
        let share = (1.0 - self.share_tokens).max(0.0) / (rate / self.shards);
        let above_reserve = if self.tokens >= self.reserve() + 1.0 {
            // Above the reserve with this shard's part spent: the next count (answers arrive
            // every few milliseconds while a run is busy) brings a new part.
            RECOUNT_WAIT
        } else {
            (self.reserve() + 1.0 - self.tokens) / rate
        };
        let secs = above_floor.max(share).min(above_reserve).max(0.001);
        Some(Duration::from_secs_f64(secs))
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
        if self.shards > 1.0 {
            self.free = ((self.tokens - self.reserve()) / (DAMPING * self.shards)).max(0.0);
        }
    }
}

/// A shard spends 1/(DAMPING × N) of the excess a count shows: the counts of N shards are
/// staggered (each answer shows the bucket before the other shards' latest requests), so with
/// 1/N each the sum overshoots by what the others spent meanwhile; halving it keeps the
/// overshoot inside the reserve while the counts still arrive every few milliseconds.
const DAMPING: f64 = 2.0;

/// How often a shard that spent its part of the excess looks for a newer count (seconds).
const RECOUNT_WAIT: f64 = 0.05;

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
    /// Processes sharing the subscription (`--shard I/N`: N).
    shards: u64,
}

/// While the Compute RP reports a policy exhausted for a VM, one request of that kind per
/// this interval goes through (its answer refreshes the count); the ARM client still retries a
/// 429 after its `Retry-After`.
const COMPUTE_PROBE: Duration = Duration::from_secs(1);

/// Kept per other shard below a Compute RP count before a shard falls back to its share of it.
const COMPUTE_RESERVE_PER_SHARD: u64 = 2;

impl Default for TokenPacer {
    fn default() -> Self {
        TokenPacer::for_shards(1)
    }
}

impl TokenPacer {
    /// A pacer for one of `shards` processes spending one subscription (1: alone). Each spends
    /// freely while ARM reports enough left above a reserve for the others, and its 1/N share
    /// of the refill below it (see the module doc), so N shards together stay inside ARM's
    /// limits and a finished shard's part is not left unused.
    pub fn for_shards(shards: u64) -> TokenPacer {
        let n = shards.max(1);
        TokenPacer {
            reads: std::sync::Mutex::new(Bucket::new(250.0, 25.0).shared(n, 25.0)),
            writes: std::sync::Mutex::new(Bucket::new(200.0, 10.0).shared(n, 10.0)),
            deletes: std::sync::Mutex::new(Bucket::new(200.0, 10.0).shared(n, 10.0)),
            // One query per other shard in the reserve: each needs only a few pages.
            graph: std::sync::Mutex::new(Bucket::new(15.0, 3.0).without_floor().shared(n, 1.0)),
            compute: std::sync::Mutex::new(HashMap::new()),
            shards: n,
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

    /// This process's part of a Compute RP count: all of it above a reserve for the other
    /// shards, its 1/N share below. A per-VM policy is only ever spent by the shard owning the
    /// VM, so it rarely gets near the reserve; the subscription-wide ones are shared.
    fn compute_part(&self, remaining: u64) -> u64 {
        let n = self.shards;
        let reserve = COMPUTE_RESERVE_PER_SHARD * (n - 1);
        if remaining > reserve {
            remaining - reserve + reserve / n
        } else {
            remaining / n
        }
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
        self.bucket(op).observe(remaining, Instant::now());
    }

    fn acquire_compute<'a>(&'a self, target: &'a ComputeTarget) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            while let Some(d) = self.compute_wait(target, Instant::now()) {
                tokio::time::sleep(d).await;
            }
        })
    }

    fn observe_compute(&self, target: &ComputeTarget, remaining: u64) {
        let mine = self.compute_part(remaining);
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
    #[tokio::test(start_paused = true)]
    async fn shard_spends_freely_while_reported_remaining_is_above_the_reserve() {
        let pacer = TokenPacer::for_shards(4);
        pacer.observe(Operation::Write, 200);
        let start = Instant::now();
        // The others are idle, so each answer's count is 200 minus ours. The reserve for 3
        // other shards is 5 + 3 × 10 = 35, and each count lets 1/8 of what is above it go:
        // 150 go at once, where a fixed quarter of the bucket allowed 50.
        for spent in 1..=150u64 {
            pacer.acquire(Operation::Write).await;
            pacer.observe(Operation::Write, 200 - spent);
        }
        assert_eq!(Instant::now(), start);
    }

    #[tokio::test(start_paused = true)]
    async fn shard_falls_back_to_its_share_when_reported_remaining_is_low() {
        let pacer = TokenPacer::for_shards(4);
        let start = Instant::now();
        for _ in 0..11 {
            // The other shards keep the subscription's count low.
            pacer.observe(Operation::Write, 30);
            pacer.acquire(Operation::Write).await;
        }
        // 1/4 of 10 writes/s, 2.5 at once: 11 writes take about 3.4 s.
        let took = Instant::now().duration_since(start);
        assert!(
            took >= Duration::from_secs(3) && took <= Duration::from_secs(4),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shard_left_alone_spends_the_whole_refill_not_its_quarter() {
        let pacer = TokenPacer::for_shards(4);
        pacer.observe(Operation::Write, 36);
        let start = Instant::now();
        let mut n = 0u64;
        while Instant::now().duration_since(start) < Duration::from_secs(10) {
            pacer.acquire(Operation::Write).await;
            n += 1;
            // The other shards are done: ARM's count is the refill less our writes.
            let refilled = 36.0 + 10.0 * Instant::now().duration_since(start).as_secs_f64();
            pacer.observe(
                Operation::Write,
                (refilled.min(200.0) as u64).saturating_sub(n),
            );
        }
        // About 10 s of the full refill (10/s), not 1/4 of it (25).
        assert!((85..=110).contains(&n), "{n}");
    }

    /// N shard pacers against one simulated ARM write bucket (200, 10/s), answers arriving
    /// one 10 ms step after their request, with an uneven split (one shard finishes early).
    fn simulate_shards(demand: &[u32], concurrency: u32) -> (u32, f64) {
        let n = demand.len();
        let t0 = Instant::now();
        let mut shards: Vec<Bucket> = (0..n)
            .map(|_| Bucket::new(200.0, 10.0).shared(n as u64, 10.0))
            .collect();
        let mut truth = 200.0_f64;
        let mut throttled = 0;
        let mut spent = vec![0u32; n];
        let mut answers: Vec<(usize, u64)> = Vec::new();
        let step = Duration::from_millis(10);
        for k in 1..=30_000u32 {
            let now = t0 + step * k;
            truth = (truth + 0.1).min(200.0);
            for (i, left) in std::mem::take(&mut answers) {
                shards[i].observe(left, now);
            }
            for i in 0..n {
                // Up to `concurrency` requests per shard per step.
                for _ in 0..concurrency {
                    if spent[i] >= demand[i] || shards[i].take(now).is_some() {
                        break;
                    }
                    if truth < 1.0 {
                        throttled += 1;
                        answers.push((i, 0));
                        continue;
                    }
                    truth -= 1.0;
                    spent[i] += 1;
                    answers.push((i, truth as u64));
                }
            }
            if spent.iter().zip(demand).all(|(s, d)| s >= d) {
                return (throttled, (step * k).as_secs_f64());
            }
        }
        (throttled, f64::INFINITY)
    }

    #[test]
    fn shards_on_one_bucket_draw_no_429_and_finish_near_the_floor() {
        // 1300 writes: the floor is (1300 − 200) / 10 = 110 s. A fixed quarter each took
        // (400 − 50) / 2.5 = 140 s for the largest shard.
        let (throttled, secs) = simulate_shards(&[100, 400, 400, 400], 8);
        assert_eq!(throttled, 0);
        assert!(secs <= 118.0, "{secs}");
        let (throttled, secs) = simulate_shards(&[272, 247, 250, 231], 8);
        assert_eq!(throttled, 0);
        assert!(secs <= 85.0, "{secs}");
    }

    /// The bench's 4 shards at `--concurrency 64` each sent 64 writes before ARM's first
    /// answer (256 against a bucket of 200), and each spent the whole excess it was shown.
    #[test]
    fn shards_at_full_concurrency_spend_only_their_part_of_what_arm_reports() {
        let (throttled, secs) = simulate_shards(&[272, 247, 250, 231], 64);
        assert_eq!(throttled, 0);
        assert!(secs <= 85.0, "{secs}");
        let (throttled, secs) = simulate_shards(&[100, 400, 400, 400], 64);
        assert_eq!(throttled, 0);
        assert!(secs <= 118.0, "{secs}");
    }

    #[test]
    fn compute_counts_are_shared_only_near_the_reserve() {
        let alone = TokenPacer::for_shards(1);
        assert_eq!(alone.compute_part(12), 12);
        let four = TokenPacer::for_shards(4);
        assert_eq!(four.compute_part(1500), 1500 - 6 + 1);
        assert_eq!(four.compute_part(5), 1);
        assert_eq!(four.compute_part(0), 0);
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
