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
/// one slot, so `renew` reaches the copy inside the engine's hook too (the REPL keeps one engine).
#[derive(Clone, Debug)]
pub struct Cancel {
    token: Arc<RwLock<CancellationToken>>,
    deadline: Option<Instant>,
}

impl Cancel {
    pub fn new(timeout: Option<Duration>) -> Self {
        Cancel {
            token: Arc::new(RwLock::new(CancellationToken::new())),
            deadline: timeout.map(|t| Instant::now() + t),
        }
    }

    fn token(&self) -> CancellationToken {
        self.token
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn cancel(&self) {
        self.token().cancel();
    }

    /// Why the run must stop now, if it must.
    pub fn reason(&self) -> Option<ScriptError> {
        let cancelled = self
            .token
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_cancelled();
        if cancelled {
            Some(ScriptError::Cancelled)
        } else if self.deadline.is_some_and(|d| Instant::now() >= d) {
            Some(ScriptError::DeadlineExceeded)
        } else {
            None
        }
    }

    /// A fresh token for the next REPL evaluation, seen by every clone: the old one stays
    /// cancelled for whoever still waits on it.
    pub fn renew(&self) {
        *self.token.write().unwrap_or_else(PoisonError::into_inner) = CancellationToken::new();
    }

    async fn stopped(&self) -> ScriptError {
        let deadline = async {
            match self.deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        let token = self.token();
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
