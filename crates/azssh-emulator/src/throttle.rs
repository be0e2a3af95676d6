//! ARM's token buckets per subscription (the 2024 throttling model): reads hold 250 tokens and
//! refill 25/s, writes and deletes hold 200 and refill 10/s. An empty bucket answers 429 with
//! `Retry-After`; every answer carries the remaining count in `x-ms-ratelimit-remaining-*`.

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

/// The three buckets of one subscription.
#[derive(Debug, Clone)]
pub struct Throttle {
    reads: Bucket,
    writes: Bucket,
    deletes: Bucket,
}

impl Throttle {
    pub fn new(now: Instant) -> Throttle {
        Throttle {
            reads: Bucket::new(250, 25, now),
            writes: Bucket::new(200, 10, now),
            deletes: Bucket::new(200, 10, now),
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

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
