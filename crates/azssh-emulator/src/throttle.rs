//! ARM's token buckets per subscription (the 2024 throttling model): reads hold 250 tokens and
//! refill 25/s, writes and deletes hold 200 and refill 10/s. An empty bucket answers 429 with
//! `Retry-After`; every answer carries the remaining count in `x-ms-ratelimit-remaining-*`.

use std::collections::HashMap;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OperationType {
    Read,
    Write,
    Delete,
}

impl OperationType {
    pub fn from_method(method: &str) -> OperationType {
        match method {
            "GET" | "HEAD" => Self::Read,
            "DELETE" => Self::Delete,
            _ => Self::Write,
        }
    }
    /// The header naming what is left in the bucket.
    pub fn remaining_header(self) -> &'static str {
        match self {
            Self::Read => "x-ms-ratelimit-remaining-subscription-reads",
            Self::Write => "x-ms-ratelimit-remaining-subscription-writes",
            Self::Delete => "x-ms-ratelimit-remaining-subscription-deletes",
        }
    }
    /// How ARM names the operation type in its throttling message.
    pub fn label(self) -> &'static str {
        match self {
            Self::Read => "Read",
            Self::Write => "Write",
            Self::Delete => "Delete",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Bucket {
    capacity: f64,
    refill_per_sec: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    pub fn new(capacity: u32, refill_per_sec: u32, now: Instant) -> Bucket {
        Bucket {
            capacity: capacity as f64,
            refill_per_sec: refill_per_sec as f64,
            tokens: capacity as f64,
            last: now,
        }
    }

    /// What is left without taking: the remaining count, and the wait when empty.
    pub fn peek(&mut self, now: Instant) -> (u32, Option<u64>) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.refill_per_sec).min(self.capacity);
        self.last = now;
        if self.tokens >= 1.0 {
            (self.tokens.floor() as u32, None)
        } else {
            let wait = (1.0 - self.tokens) / self.refill_per_sec;
            (0, Some(wait.ceil().max(1.0) as u64))
        }
    }

    /// Takes one token: `Ok(remaining)` or `Err(retry_after_seconds)`.
    pub fn take(&mut self, now: Instant) -> Result<u32, u64> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.refill_per_sec).min(self.capacity);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(self.tokens.floor() as u32)
        } else {
            let wait = (1.0 - self.tokens) / self.refill_per_sec;
            Err(wait.ceil().max(1.0) as u64)
        }
    }
}

/// The three buckets of one subscription, the Compute RP's, and Resource Graph's user quota.
#[derive(Debug)]
pub struct Throttle {
    reads: Bucket,
    writes: Bucket,
    deletes: Bucket,
    pub compute: ComputeThrottle,
    pub graph: GraphQuota,
}

/// Resource Graph's per-user quota: `QUERIES` queries in every `WINDOW` (learn.microsoft.com
/// `guidance-for-throttled-requests`: "a user can send at most 15 queries within every 5-second
/// window"; the recorded headers read `x-ms-user-quota-remaining: 14`,
/// `x-ms-user-quota-resets-after: 00:00:05`). The emulator has one user (its token).
#[derive(Debug)]
pub struct GraphQuota {
    window_start: Instant,
    used: u32,
}

impl GraphQuota {
    pub const QUERIES: u32 = 15;
    pub const WINDOW: std::time::Duration = std::time::Duration::from_secs(5);

    pub fn new(now: Instant) -> GraphQuota {
        GraphQuota {
            window_start: now,
            used: 0,
        }
    }

    /// Takes one query: `Ok((remaining, resets_after))`, or `Err(resets_after)` when the window's
    /// quota is spent.
    pub fn take(
        &mut self,
        now: Instant,
    ) -> Result<(u32, std::time::Duration), std::time::Duration> {
        if now.saturating_duration_since(self.window_start) >= Self::WINDOW {
            self.window_start = now;
            self.used = 0;
        }
        let resets_after =
            Self::WINDOW.saturating_sub(now.saturating_duration_since(self.window_start));
        if self.used >= Self::QUERIES {
            return Err(resets_after);
        }
        self.used += 1;
        Ok((Self::QUERIES - self.used, resets_after))
    }
}

/// `hh:mm:ss`, rounded up, as `x-ms-user-quota-resets-after` spells a duration.
pub fn hh_mm_ss(d: std::time::Duration) -> String {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    format!(
        "{:02}:{:02}:{:02}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

impl Throttle {
    pub fn new(now: Instant) -> Throttle {
        Throttle {
            reads: Bucket::new(250, 25, now),
            writes: Bucket::new(200, 10, now),
            deletes: Bucket::new(200, 10, now),
            compute: ComputeThrottle::default(),
            graph: GraphQuota::new(now),
        }
    }
    pub fn take(&mut self, op: OperationType, now: Instant) -> Result<u32, u64> {
        match op {
            OperationType::Read => self.reads.take(now),
            OperationType::Write => self.writes.take(now),
            OperationType::Delete => self.deletes.take(now),
        }
    }
}

/// The Compute RP's policies for virtual machines (reference/ARM.md §9, from azure-compute-docs
/// `compute-throttling-limits.md`): token buckets per VM and per subscription, refilled every
/// minute, on top of ARM's own buckets above.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ComputePolicy {
    /// `runCommand`, extension PUT/DELETE, start, restart, VM PUT/PATCH: 12 / 4 per VM,
    /// 1500 / 500 per subscription.
    UpdateVm,
    /// VM GET, instanceView, extension GET: 36 / 12 per VM, 24000 / 8000 per subscription.
    LowCostGet,
    /// VM list / listAll: 900 / 300 per subscription.
    HighCostGet,
    /// `locations/{l}/operations/{id}` polls: 15000 / 5000 per subscription.
    GetOperation,
}

impl ComputePolicy {
    /// The operation group's name as the `x-ms-ratelimit-remaining-resource` header and the 429
    /// details' `target` spell it (`Microsoft.Compute/LowCostGet...`).
    pub fn group(self) -> &'static str {
        match self {
            Self::UpdateVm => "UpdateVM",
            Self::LowCostGet => "LowCostGet",
            Self::HighCostGet => "HighCostGet",
            Self::GetOperation => "GetOperation",
        }
    }
    /// (bucket, refill per minute) per VM, if the policy has a per-resource bucket.
    fn per_vm(self) -> Option<(u32, u32)> {
        match self {
            Self::UpdateVm => Some((12, 4)),
            Self::LowCostGet => Some((36, 12)),
            Self::HighCostGet | Self::GetOperation => None,
        }
    }
    /// (bucket, refill per minute) per subscription.
    fn per_subscription(self) -> (u32, u32) {
        match self {
            Self::UpdateVm => (1500, 500),
            Self::LowCostGet => (24000, 8000),
            Self::HighCostGet => (900, 300),
            Self::GetOperation => (15000, 5000),
        }
    }

    /// The policy a request falls under (method, path segments lower-cased), and the VM it is
    /// about. Requests outside Microsoft.Compute have none.
    pub fn classify(method: &str, segs: &[&str]) -> Option<(ComputePolicy, Option<String>)> {
        let i = segs.iter().position(|s| *s == "providers")?;
        if segs.get(i + 1) != Some(&"microsoft.compute") {
            return None;
        }
        let group = segs
            .iter()
            .position(|s| *s == "resourcegroups")
            .and_then(|g| segs.get(g + 1));
        match (&segs[i + 2..], method) {
            (["locations", _, "operations", ..], _) => Some((Self::GetOperation, None)),
            (["virtualmachines"], _) => Some((Self::HighCostGet, None)),
            (["virtualmachines", vm, ..], m) => {
                let key = format!("{}/{vm}", group.copied().unwrap_or_default());
                let policy = if m == "GET" || m == "HEAD" {
                    Self::LowCostGet
                } else {
                    Self::UpdateVm
                };
                Some((policy, Some(key)))
            }
            _ => None,
        }
    }
}

/// A Compute throttling refusal: the policy's bucket that is empty and when it has a token again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComputeThrottled {
    /// `UpdateVMResource` or `UpdateVMSubscriptionMaximum`, as in the remaining-resource header.
    pub target: String,
    pub allowed: u32,
    pub retry_after: u64,
    /// The header values to send with the 429.
    pub remaining: Vec<String>,
}

/// The Compute RP's buckets of one subscription, created on first use. Refill runs `speed`
/// times faster than Azure's, like every other emulated duration.
#[derive(Debug, Default)]
pub struct ComputeThrottle {
    subscription: HashMap<ComputePolicy, Bucket>,
    vms: HashMap<(ComputePolicy, String), Bucket>,
}

fn per_minute(capacity: u32, refill_per_min: u32, speed: f64, now: Instant) -> Bucket {
    let mut b = Bucket::new(capacity, 1, now);
    b.refill_per_sec = refill_per_min as f64 / 60.0 * speed;
    b
}

impl ComputeThrottle {
    /// Takes a token from the VM's bucket and the subscription's: `Ok` with the
    /// `x-ms-ratelimit-remaining-resource` values, or the refusal.
    pub fn take(
        &mut self,
        policy: ComputePolicy,
        vm: Option<&str>,
        speed: f64,
        now: Instant,
    ) -> Result<Vec<String>, ComputeThrottled> {
        let (cap, refill) = policy.per_subscription();
        let sub_name = format!("{}SubscriptionMaximum", policy.group());
        let sub = self
            .subscription
            .entry(policy)
            .or_insert_with(|| per_minute(cap, refill, speed, now));
        let sub_left = sub.peek(now);
        let mut vm_state = None;
        if let (Some(vm), Some((vcap, vrefill))) = (vm, policy.per_vm()) {
            let b = self
                .vms
                .entry((policy, vm.to_ascii_lowercase()))
                .or_insert_with(|| per_minute(vcap, vrefill, speed, now));
            vm_state = Some((b.peek(now), vcap));
        }
        let header = |name: &str, left: u32| format!("Microsoft.Compute/{name};{left}");
        let vm_name = format!("{}Resource", policy.group());
        let mut remaining = vec![header(&sub_name, sub_left.0)];
        if let Some(((left, _), _)) = vm_state {
            remaining.push(header(&vm_name, left));
        }
        // Either empty bucket refuses the call, and neither is charged for it.
        if let Some(((_, Some(wait)), vcap)) = vm_state {
            return Err(ComputeThrottled {
                target: vm_name,
                allowed: vcap,
                retry_after: wait,
                remaining,
            });
        }
        if let Some(wait) = sub_left.1 {
            return Err(ComputeThrottled {
                target: sub_name,
                allowed: cap,
                retry_after: wait,
                remaining,
            });
        }
        let mut remaining = Vec::new();
        if let Ok(left) = self
            .subscription
            .get_mut(&policy)
            .map_or(Ok(0), |b| b.take(now))
        {
            remaining.push(header(&sub_name, left));
        }
        if let Some(vm) = vm
            && let Some(b) = self.vms.get_mut(&(policy, vm.to_ascii_lowercase()))
            && let Ok(left) = b.take(now)
        {
            remaining.push(header(&vm_name, left));
        }
        Ok(remaining)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn compute_update_vm_bucket_is_per_vm() {
        let now = Instant::now();
        let mut t = ComputeThrottle::default();
        for i in (0..12).rev() {
            let left = t
                .take(ComputePolicy::UpdateVm, Some("g/vm1"), 1.0, now)
                .unwrap();
            assert_eq!(left[1], format!("Microsoft.Compute/UpdateVMResource;{i}"));
        }
        let e = t
            .take(ComputePolicy::UpdateVm, Some("g/vm1"), 1.0, now)
            .unwrap_err();
        assert_eq!(e.target, "UpdateVMResource");
        assert_eq!(e.retry_after, 15);
        // Another VM has its own bucket; the subscription's counted 12 calls.
        let left = t
            .take(ComputePolicy::UpdateVm, Some("g/vm2"), 1.0, now)
            .unwrap();
        assert_eq!(
            left[0],
            "Microsoft.Compute/UpdateVMSubscriptionMaximum;1487"
        );
        // 4 tokens a minute: one after 15 s.
        tokio::time::advance(Duration::from_secs(15)).await;
        assert!(
            t.take(ComputePolicy::UpdateVm, Some("g/vm1"), 1.0, Instant::now())
                .is_ok()
        );
    }

    #[test]
    fn compute_requests_are_classified() {
        let segs = |p: &str| -> Vec<String> {
            p.split('/')
                .filter(|s| !s.is_empty())
                .map(str::to_ascii_lowercase)
                .collect()
        };
        let c = |m: &str, p: &str| {
            let s = segs(p);
            let l: Vec<&str> = s.iter().map(String::as_str).collect();
            ComputePolicy::classify(m, &l).map(|(p, _)| p)
        };
        let vm = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/v";
        assert_eq!(
            c("POST", &format!("{vm}/runCommand")),
            Some(ComputePolicy::UpdateVm)
        );
        assert_eq!(c("GET", vm), Some(ComputePolicy::LowCostGet));
        assert_eq!(
            c(
                "GET",
                "/subscriptions/s/providers/Microsoft.Compute/virtualMachines"
            ),
            Some(ComputePolicy::HighCostGet)
        );
        assert_eq!(
            c(
                "GET",
                "/subscriptions/s/providers/Microsoft.Compute/locations/w/operations/1"
            ),
            Some(ComputePolicy::GetOperation)
        );
        assert_eq!(
            c(
                "GET",
                "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/networkSecurityGroups/n"
            ),
            None
        );
    }

    #[tokio::test(start_paused = true)]
    async fn bucket_empties_then_refills() {
        let now = Instant::now();
        let mut t = Throttle::new(now);
        for i in (0..200).rev() {
            assert_eq!(t.take(OperationType::Write, now), Ok(i));
        }
        assert_eq!(t.take(OperationType::Write, now), Err(1));
        // Reads are a separate bucket.
        assert_eq!(t.take(OperationType::Read, now), Ok(249));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(t.take(OperationType::Write, Instant::now()), Ok(9));
    }
}
