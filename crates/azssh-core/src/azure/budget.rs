//! `ThrottleBudget`: what ARM says is left of this subscription's request budget
//! (`x-ms-ratelimit-remaining-subscription-{reads,writes,deletes}` and their `-global-`
//! variants, ARM.md §9), plus counters of requests sent and 429s received. Shared by every clone
//! of a client and cheap to read (atomics), so the fleet scheduler can pace itself on it.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use futures::future::BoxFuture;
use reqwest::Method;
use reqwest::header::HeaderMap;

const UNKNOWN: i64 = -1;

/// A request as ARM's token buckets count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Read,
    Write,
    Delete,
}

impl Operation {
    pub fn of(method: &Method) -> Operation {
        match *method {
            Method::GET | Method::HEAD => Operation::Read,
            Method::DELETE => Operation::Delete,
            _ => Operation::Write,
        }
    }
}

/// Decides when a request may be sent, so a busy caller (the fleet runner, `fleet::pacing`)
/// waits for tokens instead of collecting 429s. Installed with `ThrottleBudget::set_pacer`.
pub trait Pacer: Send + Sync {
    /// Waits until one request of this kind may go out.
    fn acquire(&self, op: Operation) -> BoxFuture<'_, ()>;
    /// ARM's remaining count for `op`, from an answer's headers.
    fn observe(&self, op: Operation, remaining: u64);
}

#[derive(Default)]
struct PacerSlot(OnceLock<Arc<dyn Pacer>>);

impl std::fmt::Debug for PacerSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "PacerSlot(set)"
        } else {
            "PacerSlot(none)"
        })
    }
}

#[derive(Clone, Default, Debug)]
pub struct ThrottleBudget {
    inner: Arc<Counters>,
}

#[derive(Debug)]
struct Counters {
    reads: AtomicI64,
    writes: AtomicI64,
    deletes: AtomicI64,
    global_reads: AtomicI64,
    global_writes: AtomicI64,
    global_deletes: AtomicI64,
    requests_sent: AtomicU64,
    throttled: AtomicU64,
    retries: AtomicU64,
    pacer: PacerSlot,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            reads: AtomicI64::new(UNKNOWN),
            writes: AtomicI64::new(UNKNOWN),
            deletes: AtomicI64::new(UNKNOWN),
            global_reads: AtomicI64::new(UNKNOWN),
            global_writes: AtomicI64::new(UNKNOWN),
            global_deletes: AtomicI64::new(UNKNOWN),
            requests_sent: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            pacer: PacerSlot::default(),
        }
    }
}

/// A consistent-enough copy of the budget for display and decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct BudgetSnapshot {
    /// The lower of the per-region and the global remaining count; `None` until ARM told us.
    pub remaining_reads: Option<u64>,
    pub remaining_writes: Option<u64>,
    pub remaining_deletes: Option<u64>,
    /// HTTP requests sent (retries and LRO polls included).
    pub requests_sent: u64,
    /// 429 answers received.
    pub throttled: u64,
    /// Requests repeated for any reason (429, 5xx, reset, RunCommand busy).
    pub retries: u64,
}

fn load(a: &AtomicI64) -> Option<u64> {
    u64::try_from(a.load(Ordering::Relaxed)).ok()
}

fn min_known(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

impl ThrottleBudget {
    pub fn remaining_reads(&self) -> Option<u64> {
        min_known(load(&self.inner.reads), load(&self.inner.global_reads))
    }
    pub fn remaining_writes(&self) -> Option<u64> {
        min_known(load(&self.inner.writes), load(&self.inner.global_writes))
    }
    pub fn remaining_deletes(&self) -> Option<u64> {
        min_known(load(&self.inner.deletes), load(&self.inner.global_deletes))
    }
    pub fn requests_sent(&self) -> u64 {
        self.inner.requests_sent.load(Ordering::Relaxed)
    }
    pub fn throttled(&self) -> u64 {
        self.inner.throttled.load(Ordering::Relaxed)
    }
    pub fn retries(&self) -> u64 {
        self.inner.retries.load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> BudgetSnapshot {
        BudgetSnapshot {
            remaining_reads: self.remaining_reads(),
            remaining_writes: self.remaining_writes(),
            remaining_deletes: self.remaining_deletes(),
            requests_sent: self.requests_sent(),
            throttled: self.throttled(),
            retries: self.retries(),
        }
    }

    /// Installs a pacer for every clone of this budget; false if one was installed already.
    pub fn set_pacer(&self, pacer: Arc<dyn Pacer>) -> bool {
        self.inner.pacer.0.set(pacer).is_ok()
    }

    /// Waits for the pacer, if one is installed, before a request is sent.
    pub async fn before_send(&self, method: &Method) {
        if let Some(p) = self.inner.pacer.0.get() {
            p.acquire(Operation::of(method)).await;
        }
    }

    pub(crate) fn count_request(&self) {
        self.inner.requests_sent.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn count_throttled(&self) {
        self.inner.throttled.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn count_retry(&self) {
        self.inner.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Records whatever remaining-request headers a response carries. Each header only comes on
    /// the matching kind of request (reads on GETs, writes on PUT/POST...), so absent ones keep
    /// their last value.
    pub fn observe(&self, headers: &HeaderMap) {
        let c = &self.inner;
        let slots: [(&str, &AtomicI64); 6] = [
            ("x-ms-ratelimit-remaining-subscription-reads", &c.reads),
            ("x-ms-ratelimit-remaining-subscription-writes", &c.writes),
            ("x-ms-ratelimit-remaining-subscription-deletes", &c.deletes),
            (
                "x-ms-ratelimit-remaining-subscription-global-reads",
                &c.global_reads,
            ),
            (
                "x-ms-ratelimit-remaining-subscription-global-writes",
                &c.global_writes,
            ),
            (
                "x-ms-ratelimit-remaining-subscription-global-deletes",
                &c.global_deletes,
            ),
        ];
        for (name, slot) in slots {
            let value = headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<i64>().ok());
            if let Some(v) = value.filter(|v| *v >= 0) {
                slot.store(v, Ordering::Relaxed);
            }
        }
        if let Some(p) = self.inner.pacer.0.get() {
            let seen = |name: &str| headers.contains_key(name);
            let kinds = [
                (Operation::Read, "reads", self.remaining_reads()),
                (Operation::Write, "writes", self.remaining_writes()),
                (Operation::Delete, "deletes", self.remaining_deletes()),
            ];
            for (op, word, remaining) in kinds {
                let regional = format!("x-ms-ratelimit-remaining-subscription-{word}");
                let global = format!("x-ms-ratelimit-remaining-subscription-global-{word}");
                if let Some(r) = remaining.filter(|_| seen(&regional) || seen(&global)) {
                    p.observe(op, r);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn remaining_counts_take_the_lower_of_regional_and_global() {
        let b = ThrottleBudget::default();
        assert_eq!(b.remaining_reads(), None);
        let mut h = HeaderMap::new();
        h.insert(
            "x-ms-ratelimit-remaining-subscription-reads",
            HeaderValue::from_static("249"),
        );
        h.insert(
            "x-ms-ratelimit-remaining-subscription-global-reads",
            HeaderValue::from_static("3749"),
        );
        h.insert(
            "x-ms-ratelimit-remaining-subscription-writes",
            HeaderValue::from_static("1195"),
        );
        b.observe(&h);
        assert_eq!(b.remaining_reads(), Some(249));
        assert_eq!(b.remaining_writes(), Some(1195));
        let mut h = HeaderMap::new();
        h.insert(
            "x-ms-ratelimit-remaining-subscription-global-reads",
            HeaderValue::from_static("12"),
        );
        b.observe(&h);
        assert_eq!(b.remaining_reads(), Some(12));
        assert_eq!(b.remaining_deletes(), None);
    }

    #[test]
    fn clones_share_counters() {
        let a = ThrottleBudget::default();
        let b = a.clone();
        a.count_request();
        a.count_throttled();
        assert_eq!(b.snapshot().requests_sent, 1);
        assert_eq!(b.throttled(), 1);
    }
}
