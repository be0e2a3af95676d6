//! `ThrottleBudget`: what ARM says is left of this subscription's request budget
//! (`x-ms-ratelimit-remaining-subscription-{reads,writes,deletes}` and their `-global-`
//! variants, ARM.md §9), plus counters of requests sent and 429s received. Shared by every clone
//! of a client and cheap to read (atomics), so the fleet scheduler can pace itself on it.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use futures::future::BoxFuture;
use reqwest::header::HeaderMap;
use reqwest::{Method, Url};

const UNKNOWN: i64 = -1;

/// A request as the throttling it falls under counts it: ARM's subscription buckets, or
/// Resource Graph's per-user quota (its path names no subscription; ARM.md §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Read,
    Write,
    Delete,
    GraphQuery,
}

impl Operation {
    pub fn of(method: &Method) -> Operation {
        match *method {
            Method::GET | Method::HEAD => Operation::Read,
            Method::DELETE => Operation::Delete,
            _ => Operation::Write,
        }
    }

    /// `of`, except that a Resource Graph query is a `GraphQuery` whatever its method.
    pub fn classify(method: &Method, url: &Url) -> Operation {
        if url
            .path()
            .to_ascii_lowercase()
            .starts_with("/providers/microsoft.resourcegraph/")
        {
            Operation::GraphQuery
        } else {
            Operation::of(method)
        }
    }
}

/// The Compute RP's view of a request (ARM.md §9): its per-VM and per-subscription policies are
/// reported as `x-ms-ratelimit-remaining-resource: Microsoft.Compute/<policy>;<count>`. The
/// policy names are not hard-coded: what an answer reports is remembered for requests of the
/// same kind (`read`/`write`/`poll`) to the same VM.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ComputeTarget {
    /// `read`, `write` or `poll` (`locations/{l}/operations/{id}`).
    pub kind: &'static str,
    /// `resourcegroup/vm`, lower-cased; empty for subscription-level calls.
    pub vm: String,
}

impl ComputeTarget {
    pub fn of(method: &Method, url: &Url) -> Option<ComputeTarget> {
        let segs: Vec<String> = url.path_segments()?.map(str::to_ascii_lowercase).collect();
        let p = segs.iter().position(|s| s == "providers")?;
        if segs.get(p + 1).map(String::as_str) != Some("microsoft.compute") {
            return None;
        }
        let rest = &segs[p + 2..];
        if rest.first().map(String::as_str) == Some("locations") {
            return Some(ComputeTarget {
                kind: "poll",
                vm: String::new(),
            });
        }
        let group = segs
            .iter()
            .position(|s| s == "resourcegroups")
            .and_then(|g| segs.get(g + 1))
            .cloned()
            .unwrap_or_default();
        let vm = match rest {
            [t, name, ..] if t == "virtualmachines" => format!("{group}/{name}"),
            _ => String::new(),
        };
        let kind = match Operation::of(method) {
            Operation::Read => "read",
            _ => "write",
        };
        Some(ComputeTarget { kind, vm })
    }
}

/// The lowest count among `x-ms-ratelimit-remaining-resource` values (there may be several
/// headers, each a comma-separated list of `Microsoft.Compute/<policy>;<count>`).
pub fn compute_remaining(headers: &HeaderMap) -> Option<u64> {
    headers
        .get_all("x-ms-ratelimit-remaining-resource")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|item| item.rsplit_once(';')?.1.trim().parse::<u64>().ok())
        .min()
}

/// Decides when a request may be sent, so a busy caller (the fleet runner, `fleet::pacing`)
/// waits for tokens instead of collecting 429s. Installed with `ThrottleBudget::set_pacer`.
pub trait Pacer: Send + Sync {
    /// Waits until one request of this kind may go out.
    fn acquire(&self, op: Operation) -> BoxFuture<'_, ()>;
    /// ARM's remaining count for `op`, from an answer's headers.
    fn observe(&self, op: Operation, remaining: u64);
    /// Waits until the Compute RP's policies for this kind of request to this VM have room.
    fn acquire_compute<'a>(&'a self, _target: &'a ComputeTarget) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
    /// The lowest `x-ms-ratelimit-remaining-resource` count an answer reported.
    fn observe_compute(&self, _target: &ComputeTarget, _remaining: u64) {}
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

    /// Waits for the pacer, if one is installed, before a request is sent: ARM's bucket (or
    /// Resource Graph's quota) for its kind, then the Compute RP's policies for its VM.
    pub async fn before_send(&self, method: &Method, url: &Url) {
        if let Some(p) = self.inner.pacer.0.get() {
            p.acquire(Operation::classify(method, url)).await;
            if let Some(target) = ComputeTarget::of(method, url) {
                p.acquire_compute(&target).await;
            }
        }
    }

    /// `observe`, plus the Compute RP's and Resource Graph's counts, which only make sense for
    /// the request they answer.
    pub fn observe_for(&self, method: &Method, url: &Url, headers: &HeaderMap) {
        self.observe(headers);
        let Some(p) = self.inner.pacer.0.get() else {
            return;
        };
        if Operation::classify(method, url) == Operation::GraphQuery
            && let Some(left) = headers
                .get("x-ms-user-quota-remaining")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        {
            p.observe(Operation::GraphQuery, left);
        }
        if let (Some(target), Some(left)) =
            (ComputeTarget::of(method, url), compute_remaining(headers))
        {
            p.observe_compute(&target, left);
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
