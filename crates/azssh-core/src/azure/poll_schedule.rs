//! When to poll a long-running operation. ARM's `Retry-After` is the least wait ("the number of
//! seconds to wait before checking the status", ARM.md §1.3), not a promise that the operation
//! is done by then: a RunCommand takes ~20 s on Azure whatever the hint says, and every early
//! poll spends a read token and a Compute `GetOperation` token for nothing. So the client learns
//! how long each kind of operation takes (`runCommand`, `start`, a rule PUT ...), shared by every
//! clone of the client (a whole fleet run), and waits that long before its first poll; later
//! polls follow `Retry-After`, else a quarter of the expected duration.
//!
//! The duration is learnt from the operation's own `startTime`/`endTime` (the Compute RP's
//! status body carries both, recorded in ARM.md §1.3) when present, which does not drift with
//! our polling; otherwise from the time we saw it finish, shrunk a little so an estimate that
//! only ever observes its own poll times comes back down.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::{Method, Url};
use serde_json::Value;

/// How much a new sample moves the estimate.
const WEIGHT: f64 = 0.3;
/// A completion seen at our own poll says only "done by now": count it as a bit earlier.
const SEEN_AT_POLL: f64 = 0.85;
/// Never wait longer than this for a first poll on a learnt estimate.
const MAX_FIRST_WAIT: Duration = Duration::from_secs(120);

#[derive(Debug, Default)]
pub struct PollSchedule {
    expected: Mutex<HashMap<String, f64>>,
}

impl PollSchedule {
    /// The kind of operation a request starts: provider, resource type and, for actions, the
    /// action's name (`microsoft.compute/virtualmachines/runcommand`), lower-cased. Names of
    /// resources are left out so every VM's RunCommand teaches the same estimate.
    pub fn kind(method: &Method, url: &Url) -> String {
        let segs: Vec<String> = url
            .path_segments()
            .map(|s| s.map(str::to_ascii_lowercase).collect())
            .unwrap_or_default();
        let Some(p) = segs.iter().rposition(|s| s == "providers") else {
            return format!("{method} ?");
        };
        let rest = &segs[p + 1..];
        // providers/{namespace}/{type}/{name}[/{subtype}/{name}]*[/{action}]
        let mut parts = vec![rest.first().cloned().unwrap_or_default()];
        let mut i = 1;
        while i < rest.len() {
            parts.push(rest[i].clone());
            i += 2;
        }
        format!("{method} {}", parts.join("/"))
    }

    /// How long this kind of operation has taken, once it has been seen to finish.
    pub fn expected(&self, kind: &str) -> Option<Duration> {
        let map = self.expected.lock().unwrap_or_else(|e| e.into_inner());
        map.get(kind)
            .map(|s| Duration::from_secs_f64(*s).min(MAX_FIRST_WAIT))
    }

    /// Learns from a finished operation: its status body's `startTime`/`endTime` when both are
    /// there, else `elapsed` (from our first request to the poll that saw it done).
    pub fn learn(&self, kind: &str, status_body: Option<&Value>, elapsed: Duration) {
        let sample = status_body
            .and_then(reported_duration)
            .unwrap_or(elapsed.as_secs_f64() * SEEN_AT_POLL);
        let mut map = self.expected.lock().unwrap_or_else(|e| e.into_inner());
        let e = map.entry(kind.to_string()).or_insert(sample);
        *e = *e * (1.0 - WEIGHT) + sample * WEIGHT;
    }
}

/// `endTime - startTime` of an operation status body (RFC 3339).
fn reported_duration(body: &Value) -> Option<f64> {
    let parse = |k: &str| {
        let s = body.get(k)?.as_str()?;
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
    };
    let d = parse("endTime")? - parse("startTime")?;
    let secs = d.as_seconds_f64();
    (secs >= 0.0).then_some(secs)
}

/// The wait before poll number `polls` (0 = the first): the larger of ARM's `Retry-After` and
/// what remains of the expected duration for the first poll; later polls take `Retry-After`,
/// else a quarter of the expected duration, else `fallback` (the caller's own back-off).
pub fn next_wait(
    retry_after: Option<Duration>,
    expected: Option<Duration>,
    since_start: Duration,
    polls: u32,
    fallback: Duration,
    floor: Duration,
) -> Duration {
    match (polls, retry_after, expected) {
        (0, ra, Some(e)) => {
            let left = e.saturating_sub(since_start);
            ra.map_or(left, |r| r.max(left)).max(floor.min(e))
        }
        (_, Some(r), _) => r,
        (_, None, Some(e)) => (e / 4).max(floor),
        (_, None, None) => fallback,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kind_names_the_action_not_the_vm() {
        let a = Url::parse("https://m/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/web1/runCommand?api-version=1").unwrap_or_else(|_| unreachable!());
        let b = Url::parse("https://m/subscriptions/s/resourceGroups/rg2/providers/Microsoft.Compute/virtualMachines/db9/runCommand").unwrap_or_else(|_| unreachable!());
        assert_eq!(
            PollSchedule::kind(&Method::POST, &a),
            PollSchedule::kind(&Method::POST, &b)
        );
        assert_eq!(
            PollSchedule::kind(&Method::POST, &a),
            "POST microsoft.compute/virtualmachines/runcommand"
        );
        let rule = Url::parse("https://m/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/n/securityRules/r").unwrap_or_else(|_| unreachable!());
        assert_eq!(
            PollSchedule::kind(&Method::PUT, &rule),
            "PUT microsoft.network/networksecuritygroups/securityrules"
        );
    }

    #[test]
    fn estimate_follows_reported_start_and_end_times() {
        let s = PollSchedule::default();
        assert_eq!(s.expected("k"), None);
        let body = json!({"startTime": "2026-01-01T00:00:00Z", "endTime": "2026-01-01T00:00:20Z"});
        s.learn("k", Some(&body), Duration::from_secs(31));
        assert_eq!(s.expected("k"), Some(Duration::from_secs(20)));
        // Without timestamps, a completion seen at a late poll counts as a bit earlier.
        s.learn("k", None, Duration::from_secs(20));
        assert!(s.expected("k").is_some_and(|d| d < Duration::from_secs(20)));
    }

    #[test]
    fn first_poll_waits_for_the_expected_duration_later_ones_for_retry_after() {
        let ra = Some(Duration::from_secs(1));
        let e = Some(Duration::from_secs(20));
        let fb = Duration::from_secs(2);
        let floor = Duration::from_millis(250);
        assert_eq!(
            next_wait(ra, e, Duration::from_secs(2), 0, fb, floor),
            Duration::from_secs(18)
        );
        assert_eq!(
            next_wait(ra, e, Duration::from_secs(19), 1, fb, floor),
            Duration::from_secs(1)
        );
        assert_eq!(
            next_wait(None, e, Duration::ZERO, 1, fb, floor),
            Duration::from_secs(5)
        );
        // Retry-After is the least wait, even past the expected duration.
        assert_eq!(
            next_wait(
                Some(Duration::from_secs(30)),
                e,
                Duration::ZERO,
                0,
                fb,
                floor
            ),
            Duration::from_secs(30)
        );
        assert_eq!(next_wait(None, None, Duration::ZERO, 0, fb, floor), fb);
    }
}
