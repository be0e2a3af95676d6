//! The one place that blocks on async work: scripts run on a blocking thread, and every
//! async-backed Rhai function hands its future to `Bridge::block_on`, which runs it on the tokio
//! runtime and gives up as soon as the run is cancelled (Ctrl-C, a deadline, the REPL's Ctrl-C).

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use rhai::EvalAltResult;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use crate::error::UserError;
use crate::script::error::{ScriptError, to_rhai};

/// Cancellation shared by the engine's `on_progress` hook and every blocking call. Clones share
/// one slot, so `renew` reaches the copy inside the engine's hook too (the REPL keeps one engine),
/// and so does `follow` (a fleet worker keeps one engine for many VMs, each with its own token
/// and deadline).
#[derive(Clone, Debug)]
pub struct Cancel {
    slot: Arc<RwLock<Slot>>,
}

#[derive(Debug)]
struct Slot {
    token: CancellationToken,
    deadline: Option<Instant>,
}

impl Cancel {
    pub fn new(timeout: Option<Duration>) -> Self {
        Cancel {
            slot: Arc::new(RwLock::new(Slot {
                token: CancellationToken::new(),
                deadline: timeout.map(|t| Instant::now() + t),
            })),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Slot> {
        self.slot.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn token(&self) -> CancellationToken {
        self.read().token.clone()
    }

    pub fn cancel(&self) {
        self.token().cancel();
    }

    /// Why the run must stop now, if it must.
    pub fn reason(&self) -> Option<ScriptError> {
        let slot = self.read();
        if slot.token.is_cancelled() {
            Some(ScriptError::Cancelled)
        } else if slot.deadline.is_some_and(|d| Instant::now() >= d) {
            Some(ScriptError::DeadlineExceeded)
        } else {
            None
        }
    }

    /// A fresh token for the next REPL evaluation, seen by every clone: the old one stays
    /// cancelled for whoever still waits on it.
    pub fn renew(&self) {
        self.slot
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .token = CancellationToken::new();
    }

    /// Makes this slot (and every clone of it, such as the one in an engine's `on_progress`
    /// hook) stop when `owner` stops: its token (cancelling `owner` cancels this one) and its
    /// deadline. A fleet worker follows each VM's `Cancel` for that VM's evaluation, then
    /// `detach`es.
    pub fn follow(&self, owner: &Cancel) {
        let (token, deadline) = {
            let o = owner.read();
            (o.token.clone(), o.deadline)
        };
        let mut slot = self.slot.write().unwrap_or_else(PoisonError::into_inner);
        slot.token = token;
        slot.deadline = deadline;
    }

    /// Forgets whatever `follow` tied this slot to: a fresh token and no deadline, so one
    /// VM's cancellation or deadline never reaches the next evaluation on the same engine.
    pub fn detach(&self) {
        let mut slot = self.slot.write().unwrap_or_else(PoisonError::into_inner);
        slot.token = CancellationToken::new();
        slot.deadline = None;
    }

    async fn stopped(&self) -> ScriptError {
        let (token, deadline) = {
            let s = self.read();
            (s.token.clone(), s.deadline)
        };
        let deadline = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = token.cancelled() => ScriptError::Cancelled,
            _ = deadline => ScriptError::DeadlineExceeded,
        }
    }
}

/// What script threads are waiting for right now ("sleeping 30 s", "waiting for RunCommand on
/// web01"), for progress displays such as the REPL's spinner. Several waits can overlap (`parallel`).
#[derive(Clone, Debug, Default)]
pub struct Activity {
    waits: Arc<Mutex<Vec<(u64, String)>>>,
    next: Arc<AtomicU64>,
    terminal: Arc<AtomicUsize>,
}

impl Activity {
    /// The most recent wait still running, and how many others run beside it.
    pub fn current(&self) -> Option<(String, usize)> {
        let waits = self.waits.lock().unwrap_or_else(PoisonError::into_inner);
        waits
            .last()
            .map(|(_, what)| (what.clone(), waits.len() - 1))
    }

    /// Hands the terminal to the script (an interactive `shell()`): progress displays such as
    /// the REPL's spinner stay off until the guard drops.
    pub fn hand_over_terminal(&self) -> TerminalGuard {
        self.terminal.fetch_add(1, Ordering::SeqCst);
        TerminalGuard(self.terminal.clone())
    }

    pub fn terminal_handed_over(&self) -> bool {
        self.terminal.load(Ordering::SeqCst) > 0
    }

    fn enter(&self, what: &str) -> ActivityGuard {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.waits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((id, what.to_string()));
        ActivityGuard {
            activity: self.clone(),
            id,
        }
    }
}

/// Keeps the terminal with the script while alive (see `Activity::hand_over_terminal`).
#[derive(Debug)]
pub struct TerminalGuard(Arc<AtomicUsize>);

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

struct ActivityGuard {
    activity: Activity,
    id: u64,
}

impl Drop for ActivityGuard {
    fn drop(&mut self) {
        self.activity
            .waits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(id, _)| *id != self.id);
    }
}

/// Runs futures for natives called from a script thread.
#[derive(Clone, Debug)]
pub struct Bridge {
    handle: Handle,
    cancel: Cancel,
    activity: Activity,
}

impl Bridge {
    pub fn new(handle: Handle, cancel: Cancel) -> Self {
        Bridge {
            handle,
            cancel,
            activity: Activity::default(),
        }
    }

    /// What this bridge's callers are waiting for now.
    pub fn activity(&self) -> &Activity {
        &self.activity
    }

    pub fn cancel(&self) -> &Cancel {
        &self.cancel
    }

    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Blocks the script thread on `fut`, mapping its domain error into a catchable script error.
    /// `what` names the wait for progress displays ("waiting for RunCommand on web01").
    pub fn block_on<T, E, F>(&self, what: &str, fut: F) -> Result<T, Box<EvalAltResult>>
    where
        E: UserError,
        F: Future<Output = Result<T, E>>,
    {
        tracing::debug!(target: "azssh::bridge", "{what}");
        if let Some(reason) = self.cancel.reason() {
            return Err(to_rhai(&reason));
        }
        let _waiting = self.activity.enter(what);
        let cancel = self.cancel.clone();
        self.handle.block_on(async move {
            tokio::select! {
                biased;
                reason = cancel.stopped() => Err(to_rhai(&reason)),
                result = fut => result.map_err(|e| to_rhai(&e)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_on_returns_cancelled_when_token_fires() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let cancel = Cancel::new(None);
        let bridge = Bridge::new(rt.handle().clone(), cancel.clone());
        let c2 = cancel.clone();
        rt.spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            c2.cancel();
        });
        let err = std::thread::spawn(move || {
            bridge.block_on("sleeping", async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok::<_, ScriptError>(())
            })
        })
        .join()
        .unwrap()
        .unwrap_err();
        assert!(
            matches!(*err, EvalAltResult::ErrorTerminated(ref v, _) if v.to_string().contains("cancelled")),
            "{err:?}"
        );
    }

    #[test]
    fn renew_reaches_every_clone() {
        let cancel = Cancel::new(None);
        let in_engine = cancel.clone();
        cancel.cancel();
        assert!(in_engine.reason().is_some());
        cancel.renew();
        assert!(in_engine.reason().is_none(), "a clone kept the old token");
    }

    /// A fleet worker's engine follows one VM's `Cancel` at a time: the VM's abort and
    /// deadline reach it, and after `detach` neither reaches the next VM.
    #[test]
    fn follow_takes_the_owners_token_and_deadline_and_detach_drops_them() {
        let worker = Cancel::new(None);
        let in_engine = worker.clone();
        let a = Cancel::new(None);
        worker.follow(&a);
        assert!(in_engine.reason().is_none());
        a.cancel();
        assert!(matches!(in_engine.reason(), Some(ScriptError::Cancelled)));
        worker.detach();
        assert!(
            in_engine.reason().is_none(),
            "VM A's cancel reached the next VM"
        );
        let b = Cancel::new(Some(Duration::ZERO));
        worker.follow(&b);
        assert!(matches!(
            in_engine.reason(),
            Some(ScriptError::DeadlineExceeded)
        ));
        worker.detach();
        assert!(
            in_engine.reason().is_none(),
            "VM B's deadline reached the next VM"
        );
        assert!(
            a.reason().is_some() && b.reason().is_some(),
            "the owners keep theirs"
        );
    }

    #[test]
    fn activity_names_the_running_wait() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let bridge = Bridge::new(rt.handle().clone(), Cancel::new(None));
        let activity = bridge.activity().clone();
        assert_eq!(activity.current(), None);
        let seen = std::thread::spawn(move || {
            let inner = bridge.activity().clone();
            bridge.block_on("sleeping 1 s", async move {
                Ok::<_, ScriptError>(inner.current())
            })
        })
        .join()
        .unwrap()
        .unwrap();
        assert_eq!(seen, Some(("sleeping 1 s".to_string(), 0)));
        assert_eq!(activity.current(), None);
        let shell = activity.hand_over_terminal();
        assert!(activity.terminal_handed_over());
        drop(shell);
        assert!(!activity.terminal_handed_over());
    }

    #[test]
    fn deadline_stops_a_wait() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let bridge = Bridge::new(
            rt.handle().clone(),
            Cancel::new(Some(Duration::from_millis(20))),
        );
        let err = std::thread::spawn(move || {
            bridge.block_on("sleeping", async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok::<_, ScriptError>(())
            })
        })
        .join()
        .unwrap()
        .unwrap_err();
        assert!(
            matches!(*err, EvalAltResult::ErrorTerminated(ref v, _) if v.to_string().contains("deadline")),
            "{err:?}"
        );
    }
}
