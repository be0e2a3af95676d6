//! Runs one compiled script over many VMs: bounded concurrency, the ARM budget gate, per-VM
//! deadlines and retries, the journal, max-fail and Ctrl-C.
//!
//! Each VM's script runs on one of the run's script threads (`worker`): Rhai evaluation is
//! synchronous and every async-backed native blocks its thread on the runtime
//! (`script::bridge`), so a running VM holds one OS thread for its whole run. The `Semaphore`
//! bounds the VMs running (and with them the ARM calls in flight); there are no more threads
//! than `--concurrency`.
//!
//! All VM runs share one `ArmClient` (one connection pool, one `ThrottleBudget`) and one compiled
//! AST (Rhai's `sync` feature makes `AST` `Send + Sync`); each thread keeps one engine across
//! its VMs, and each VM gets its own `Cancel` deadline and a fresh scope with `vm` and `ARGS`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rhai::{AST, Map};
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::journal::{self, Entry, ErrorInfo, Journal, Status};
use super::pacing::BudgetGate;
use super::progress::Counters;
use super::targets::Target;
use super::worker::Workers;
use crate::azure::client::ArmClient;
use crate::output;
use crate::script::bridge::Cancel;
use crate::script::context::Settings;
use crate::script::engine::Limits;
use crate::script::run::Script;
use azssh_core::error::kind;

/// What every VM run shares.
pub struct FleetJob {
    pub script: Script,
    pub ast: Arc<AST>,
    pub args: Map,
    pub settings: Settings,
    pub limits: Limits,
    pub arm: ArmClient,
    pub concurrency: usize,
    /// Per VM, across its attempts.
    pub timeout: Option<Duration>,
    /// Extra attempts after a transient failure (throttling, 5xx, resets, failed operations).
    pub retries: u32,
    /// Stop starting new VMs once more than this percentage of all targets failed.
    pub max_fail_percent: Option<f64>,
    /// The VMs as the run's inventory query read them (by lower-cased id), read again from the
    /// graph when old: a VM found here is not read on its own; one missing (another
    /// subscription, not in the graph yet) is.
    pub inventory: Arc<super::inventory::RunInventory>,
}

/// Ctrl-C and max-fail: `stop` ends the starting of new VMs, `abort` cancels running ones.
#[derive(Debug, Clone, Default)]
pub struct Controls {
    pub stop: CancellationToken,
    pub abort: CancellationToken,
    reason: Arc<std::sync::Mutex<Option<String>>>,
}

impl Controls {
    /// Stops starting new VMs; the first reason given is kept.
    pub fn stop(&self, reason: &str) {
        let mut r = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if r.is_none() {
            *r = Some(reason.to_string());
        }
        self.stop.cancel();
    }
    pub fn reason(&self) -> Option<String> {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The run's end state (the report adds resumed entries and the budget).
#[derive(Debug, Default)]
pub struct Outcome {
    /// Finished VMs in target order.
    pub entries: Vec<Entry>,
    pub not_started: Vec<Target>,
    pub stopped: Option<String>,
}

struct Shared {
    job: Arc<FleetJob>,
    journal: Option<Arc<Journal>>,
    counters: Arc<Counters>,
    controls: Controls,
    gate: BudgetGate,
    total: usize,
    /// The script threads, one engine each (`worker`).
    workers: Workers,
}

/// Runs the job over `targets` (already filtered by shard and journal).
pub async fn run(
    job: Arc<FleetJob>,
    targets: Vec<Target>,
    journal: Option<Arc<Journal>>,
    counters: Arc<Counters>,
    controls: Controls,
) -> Outcome {
    let concurrency = job.concurrency.max(1);
    let workers = Workers::start(
        job.clone(),
        concurrency.min(targets.len()),
        &tokio::runtime::Handle::current(),
    );
    let shared = Arc::new(Shared {
        gate: BudgetGate::for_concurrency(job.arm.budget().clone(), concurrency),
        total: targets.len(),
        workers,
        job,
        journal,
        counters,
        controls: controls.clone(),
    });
    let semaphore = Arc::new(Semaphore::new(concurrency));
    let mut running = JoinSet::new();
    let mut finished: Vec<(usize, Result<Entry, Target>)> = Vec::with_capacity(targets.len());
    let mut not_started = Vec::new();
    let mut pending = targets.into_iter().enumerate();
    for (i, target) in pending.by_ref() {
        let permit = tokio::select! {
            biased;
            _ = controls.stop.cancelled() => None,
            p = semaphore.clone().acquire_owned() => p.ok(),
        };
        while let Some(done) = running.try_join_next() {
            collect(done, &mut finished);
        }
        let Some(permit) = permit.filter(|_| !controls.stop.is_cancelled()) else {
            not_started.push(target);
            break;
        };
        let s = shared.clone();
        running.spawn(async move { (i, run_vm(&s, target, permit).await) });
    }
    let mut never_ran: Vec<Target> = pending.map(|(_, t)| t).collect();
    while let Some(done) = running.join_next().await {
        collect(done, &mut finished);
    }
    finished.sort_by_key(|(i, _)| *i);
    let mut entries = Vec::with_capacity(finished.len());
    for (_, f) in finished {
        match f {
            Ok(e) => entries.push(e),
            Err(t) => not_started.push(t),
        }
    }
    not_started.append(&mut never_ran);
    Outcome {
        entries,
        not_started,
        stopped: controls.reason(),
    }
}

fn collect(
    done: Result<(usize, Result<Entry, Target>), tokio::task::JoinError>,
    finished: &mut Vec<(usize, Result<Entry, Target>)>,
) {
    match done {
        Ok(pair) => finished.push(pair),
        // run_vm catches the script thread's failures itself; this is a bug in azssh.
        Err(e) => output::log(output::Level::Error, &format!("a fleet task failed: {e}")),
    }
}

/// One VM, start to journal line; `Err` gives the target back when it was not started.
/// `permit` (a slot of `--concurrency`) is given back once the script is done: the VM's last
/// line is then still being synced, and a crash meanwhile leaves it `running`, which `--resume`
/// treats as interrupted, never as done.
async fn run_vm(
    s: &Shared,
    target: Target,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Result<Entry, Target> {
    s.gate.admit().await;
    let started = Instant::now();
    // Without its `running` line on disk, a crash mid-script would let `--resume` run the VM
    // again: a VM whose line cannot be written is not started (nor is any other).
    if s.controls.stop.is_cancelled() && s.controls.reason().as_deref() == Some(JOURNAL_BROKEN)
        || !write_journal(
            s,
            entry(&target, Status::Running, Ok(Value::Null), 0, started),
        )
        .await
    {
        return Err(target);
    }
    s.counters.running.fetch_add(1, Ordering::Relaxed);
    s.counters.started(&target.name);
    let cancel = Cancel::new(s.job.timeout);
    let mut attempts = 0;
    let outcome = loop {
        attempts += 1;
        let result = attempt(s, &target, &cancel).await;
        match result {
            Err(e)
                if attempts <= s.job.retries
                    && is_transient(&e.kind)
                    && cancel.reason().is_none()
                    && !s.controls.abort.is_cancelled() =>
            {
                tracing::debug!(vm = %target.name, kind = %e.kind, attempts, "retrying VM");
                let pause = Duration::from_millis(500 * u64::from(attempts));
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = s.controls.abort.cancelled() => {}
                }
            }
            other => break other,
        }
    };
    s.counters.running.fetch_sub(1, Ordering::Relaxed);
    s.counters.finished(&target.name);
    let status = if outcome.is_ok() {
        s.counters.ok.fetch_add(1, Ordering::Relaxed);
        Status::Ok
    } else {
        let failed = s.counters.failed.fetch_add(1, Ordering::Relaxed) + 1;
        check_max_fail(s, failed);
        Status::Failed
    };
    let done = entry(&target, status, outcome, attempts, started);
    drop(permit);
    write_journal(s, done.clone()).await;
    Ok(done)
}

fn check_max_fail(s: &Shared, failed: u64) {
    if let Some(pct) = s.job.max_fail_percent {
        let share = failed as f64 * 100.0 / s.total.max(1) as f64;
        if share > pct {
            s.controls.stop(&format!(
                "{failed} of {} VMs failed, past `--max-fail {pct}`",
                s.total
            ));
        }
    }
}

const JOURNAL_BROKEN: &str = "the journal cannot be written";

/// A journal that cannot be written makes `--resume` unsafe: stop starting VMs. False when the
/// line is not on disk. The append waits for a sync, so it runs on a blocking thread: on a
/// runtime worker it stalled every SSH session and ARM call of that worker for milliseconds.
async fn write_journal(s: &Shared, e: Entry) -> bool {
    let Some(j) = s.journal.clone() else {
        return true;
    };
    let path = j.path().display().to_string();
    let appended = tokio::task::spawn_blocking(move || j.append(&e))
        .await
        .unwrap_or_else(|join| {
            Err(crate::fleet::FleetError::Journal {
                path,
                reason: format!("the journal thread failed: {join}"),
            })
        });
    match appended {
        Ok(()) => true,
        Err(err) => {
            output::log(output::Level::Error, &err.to_string());
            s.controls.stop(JOURNAL_BROKEN);
            false
        }
    }
}

fn entry(
    target: &Target,
    status: Status,
    outcome: Result<Value, ErrorInfo>,
    attempts: u32,
    started: Instant,
) -> Entry {
    let (result, error) = match outcome {
        Ok(Value::Null) => (None, None),
        Ok(v) => (Some(v), None),
        Err(e) => (None, Some(e)),
    };
    Entry {
        id: target.id.clone(),
        name: target.name.clone(),
        status,
        result,
        error,
        attempts,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        finished_at: journal::now_rfc3339(),
    }
}

/// Failures worth running the VM's script again for (`--retries`); the ARM client already retried
/// these inside the call, so reaching the script means its own retries ran out. The list lives
/// beside the kinds (`azssh_core::error::kind::is_transient`).
pub fn is_transient(kind: &str) -> bool {
    kind::is_transient(kind)
}

async fn attempt(s: &Shared, target: &Target, cancel: &Cancel) -> Result<Value, ErrorInfo> {
    let evaluation = s.workers.evaluate(&target.id, cancel);
    tokio::pin!(evaluation);
    tokio::select! {
        r = &mut evaluation => r,
        _ = s.controls.abort.cancelled() => {
            cancel.cancel();
            evaluation.await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_failures_are_retried() {
        assert!(is_transient("azure.throttled"));
        assert!(!is_transient("azure.not_found"));
        assert!(!is_transient("script.runtime"));
    }

    /// Every kind `is_transient` names must be one ARM errors really carry, and 5xx answers
    /// (with or without an ARM envelope) and resets must be among them.
    #[test]
    fn retries_cover_5xx_and_resets() {
        use crate::azure::error::AzureError;
        use crate::error::UserError;
        let gateway = AzureError::UnexpectedResponse {
            status: 502,
            method: "GET".into(),
            path: "/x".into(),
            excerpt: "<html>bad gateway</html>".into(),
        };
        let envelope = AzureError::from_response(
            "GET",
            "/x",
            503,
            br#"{"error":{"code":"ServiceUnavailable","message":"try later"}}"#,
            None,
        );
        let reset = AzureError::Transport {
            endpoint: "https://management.azure.com".into(),
            reason: "connection reset by peer".into(),
        };
        let timeout = AzureError::Timeout {
            method: "GET".into(),
            path: "/x".into(),
        };
        for e in [&gateway, &envelope, &reset, &timeout] {
            assert!(is_transient(e.kind()), "{} not retried", e.kind());
        }
        let bad = AzureError::UnexpectedResponse {
            status: 400,
            method: "GET".into(),
            path: "/x".into(),
            excerpt: "nope".into(),
        };
        assert!(!is_transient(bad.kind()));
        // An accepted operation that failed ran on Azure: rerunning would repeat it.
        assert!(!is_transient("azure.operation_failed"));
        assert!(!is_transient("azure.operation_timeout"));
    }

    #[test]
    fn controls_keep_the_first_stop_reason() {
        let c = Controls::default();
        c.stop("max-fail");
        c.stop("interrupted");
        assert!(c.stop.is_cancelled());
        assert!(!c.abort.is_cancelled());
        assert_eq!(c.reason().as_deref(), Some("max-fail"));
    }
}
