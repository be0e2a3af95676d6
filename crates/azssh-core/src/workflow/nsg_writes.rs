//! How `open_port` writes to one NSG when many VMs behind it ask at once (a fleet run): the
//! writes are serialised per NSG, process-wide (the network RP answers a concurrent write to a
//! locked NSG with 429 `RetryableErrorDueToAnotherOperation`, ARM.md §8/§9), and they are
//! grouped: every VM registers the destination it needs before waiting for the NSG's turn, and
//! the VM whose turn it is writes one rule holding every destination registered so far. The
//! VMs behind it then find their destination already admitted and write nothing. With a NIC
//! NSG (destination `*`) the first VM writes and every other VM reads; with a subnet NSG (one
//! `/32` per VM) one write covers all the VMs that queued while the previous write ran.
//!
//! Across processes (another azssh, a colleague, the portal) nothing is serialised: there every
//! update or deletion is conditional on the etag read (`If-Match`, `nsg.rs`/`nsg_close.rs`) and
//! a 412 makes the caller read and decide again.
//!
//! The rules of an NSG are also remembered for a short time after we read or wrote them, so
//! the VMs of a run do not list the same NSG once each. A cached rule only ever answers "this
//! source is already admitted"; a write always starts from a fresh list.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::azure::client::ArmClient;
use crate::azure::error::Result;
use crate::azure::network::{SecurityRule, list_security_rules};

/// How long a list of rules read (or written) by this process is trusted for "already
/// admitted" decisions.
const RULES_FRESH_FOR: Duration = Duration::from_secs(30);

#[derive(Default)]
struct NsgState {
    turn: Arc<tokio::sync::Mutex<()>>,
    /// Destinations waiting for a rule, by lower-cased rule name.
    pending: Mutex<HashMap<String, Vec<String>>>,
    rules: Mutex<Option<(Instant, Vec<SecurityRule>)>>,
}

type States = Mutex<HashMap<String, Weak<NsgState>>>;
static STATES: LazyLock<States> = LazyLock::new(States::default);

/// One VM's turn at an NSG: held while it decides and (maybe) writes.
pub struct NsgTurn {
    state: Arc<NsgState>,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

/// The state of `nsg_id` at `client`'s endpoint. Keyed by endpoint too, as `jit_policies` is:
/// two clouds (or two emulators in one test process) may hold the very same ids, and one's
/// remembered rules must never answer for the other's, nor its writes queue behind the other's.
fn state(client: &ArmClient, nsg_id: &str) -> Arc<NsgState> {
    let mut map = STATES.lock().unwrap_or_else(|e| e.into_inner());
    map.retain(|_, w| w.strong_count() > 0);
    let key = format!(
        "{}|{}",
        client.endpoint(),
        nsg_id.trim_end_matches('/').to_ascii_lowercase()
    );
    if let Some(s) = map.get(&key).and_then(Weak::upgrade) {
        return s;
    }
    let s = Arc::new(NsgState::default());
    map.insert(key, Arc::downgrade(&s));
    s
}

/// Registers `destination` for rule `name` on `nsg_id`, then waits for the NSG's turn.
pub async fn turn(client: &ArmClient, nsg_id: &str, name: &str, destination: &str) -> NsgTurn {
    let state = state(client, nsg_id);
    {
        let mut pending = state.pending.lock().unwrap_or_else(|e| e.into_inner());
        let list = pending.entry(name.to_ascii_lowercase()).or_default();
        if !list.iter().any(|d| d.eq_ignore_ascii_case(destination)) {
            list.push(destination.to_string());
        }
    }
    let guard = state.turn.clone().lock_owned().await;
    NsgTurn {
        state,
        _guard: guard,
    }
}

impl NsgTurn {
    /// The NSG's rules: remembered ones when `cached_ok` and recent, else a new list
    /// (remembered).
    /// The second value says whether the list was just read (a write may start from it).
    pub async fn rules(
        &self,
        client: &ArmClient,
        nsg_id: &str,
        cached_ok: bool,
    ) -> Result<(Vec<SecurityRule>, bool)> {
        if cached_ok {
            let cached = self.state.rules.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, rules)) = &*cached
                && at.elapsed() < RULES_FRESH_FOR
            {
                return Ok((rules.clone(), false));
            }
        }
        let rules = list_security_rules(client, nsg_id).await?;
        *self.state.rules.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), rules.clone()));
        Ok((rules, true))
    }

    /// Every destination queued for rule `name` (ours included), taken off the queue: the
    /// caller writes them in one rule.
    pub fn take_pending(&self, name: &str) -> Vec<String> {
        let mut pending = self.state.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending
            .remove(&name.to_ascii_lowercase())
            .unwrap_or_default()
    }

    /// Withdraws our destination (we found it admitted without writing).
    pub fn withdraw(&self, name: &str, destination: &str) {
        let mut pending = self.state.pending.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(list) = pending.get_mut(&name.to_ascii_lowercase()) {
            list.retain(|d| !d.eq_ignore_ascii_case(destination));
        }
    }

    /// Puts destinations back on the queue (the write failed; the next turn retries them).
    pub fn requeue(&self, name: &str, destinations: &[String]) {
        let mut pending = self.state.pending.lock().unwrap_or_else(|e| e.into_inner());
        let list = pending.entry(name.to_ascii_lowercase()).or_default();
        for d in destinations {
            if !list.iter().any(|x| x.eq_ignore_ascii_case(d)) {
                list.push(d.clone());
            }
        }
    }

    /// Records a rule we just wrote in the remembered list.
    pub fn wrote(&self, rule: &SecurityRule) {
        let mut cached = self.state.rules.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, rules)) = &mut *cached {
            let same = |r: &SecurityRule| {
                r.name
                    .as_deref()
                    .zip(rule.name.as_deref())
                    .is_some_and(|(a, b)| a.eq_ignore_ascii_case(b))
            };
            rules.retain(|r| !same(r));
            rules.push(rule.clone());
        }
    }
}

/// The NSG's rules for a report (which rules admit the VM), from what this process read or
/// wrote in the last moments, else a fresh list. Takes no turn: nothing is written.
pub async fn rules_for_report(client: &ArmClient, nsg_id: &str) -> Result<Vec<SecurityRule>> {
    let state = state(client, nsg_id);
    {
        let cached = state.rules.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, rules)) = &*cached
            && at.elapsed() < RULES_FRESH_FOR
        {
            return Ok(rules.clone());
        }
    }
    let rules = list_security_rules(client, nsg_id).await?;
    *state.rules.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), rules.clone()));
    Ok(rules)
}

/// Drops what this process remembers of an NSG's rules (after a delete), so no later
/// `open_port` takes a removed rule for standing access.
pub fn forget(client: &ArmClient, nsg_id: &str) {
    let state = state(client, nsg_id);
    *state.rules.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client for `endpoint` (nothing is sent: the queue and the cache are local).
    fn client(endpoint: &str) -> ArmClient {
        let config = crate::azure::config::ArmConfig::with_static_token(endpoint, "s", "token");
        ArmClient::new(config.unwrap()).unwrap()
    }

    #[tokio::test]
    async fn the_vm_whose_turn_it_is_writes_every_queued_destination() {
        let nsg = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/grouped";
        let arm = client("http://127.0.0.1:1");
        let first = turn(&arm, nsg, "k", "10.0.0.4/32").await;
        // A second VM queues behind the first one's turn.
        let second = arm.clone();
        let waiting = tokio::spawn(async move {
            let t = turn(&second, nsg, "k", "10.0.0.5/32").await;
            t.take_pending("k")
        });
        tokio::task::yield_now().await;
        while state(&arm, nsg)
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get("k")
            .is_none_or(|l| l.len() != 2)
        {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            first.take_pending("K"),
            vec!["10.0.0.4/32".to_string(), "10.0.0.5/32".to_string()],
            "one write carries both"
        );
        drop(first);
        let left = waiting.await.unwrap_or_default();
        assert!(left.is_empty(), "nothing left for the second VM to write");
    }

    #[tokio::test]
    async fn a_failed_write_requeues_the_others_destinations() {
        let nsg = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/requeue";
        let t = turn(&client("http://127.0.0.1:1"), nsg, "k", "a").await;
        let taken = t.take_pending("k");
        t.requeue("k", &taken);
        t.withdraw("k", "a");
        assert!(t.take_pending("k").is_empty());
    }

    /// Two emulators in one test process hold the very same NSG ids: when the queue and the
    /// remembered rules were keyed by the id alone, one test's rule write was taken by a
    /// parallel test for "already admitted" on its own emulator, which then refused the
    /// connection (the session tests failed so even without added load).
    #[tokio::test]
    async fn the_same_nsg_id_at_two_endpoints_shares_no_queue_and_no_rules() {
        let nsg = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/twice";
        let (one, two) = (client("http://127.0.0.1:1"), client("http://127.0.0.1:2"));
        let held = turn(&one, nsg, "k", "10.0.0.4/32").await;
        *held.state.rules.lock().unwrap() = Some((Instant::now(), Vec::new()));
        // Not queued behind the other endpoint's turn: the lock is free at once.
        let other =
            tokio::time::timeout(Duration::from_secs(30), turn(&two, nsg, "k", "10.0.0.5/32"))
                .await
                .expect("the other endpoint's turn is not ours to wait for");
        assert!(
            other.state.rules.lock().unwrap().is_none(),
            "no rules remembered there"
        );
        assert_eq!(other.take_pending("k"), vec!["10.0.0.5/32".to_string()]);
        assert_eq!(held.take_pending("k"), vec!["10.0.0.4/32".to_string()]);
    }
}
