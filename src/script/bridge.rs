//! The one place that blocks on async work: scripts run on a blocking thread, and every
//! async-backed Rhai function hands its future to `Bridge::block_on`, which runs it on the tokio
//! runtime and gives up as soon as the run is cancelled (Ctrl-C, a deadline, the REPL's Ctrl-C).

use std::future::Future;
use std::time::{Duration, Instant};

use rhai::EvalAltResult;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use crate::error::UserError;
use crate::script::error::{ScriptError, to_rhai};

/// Cancellation shared by the engine's `on_progress` hook and every blocking call.
#[derive(Clone, Debug)]
pub struct Cancel {
    token: CancellationToken,
    deadline: Option<Instant>,
}

impl Cancel {
    pub fn new(timeout: Option<Duration>) -> Self {
        Cancel {
            token: CancellationToken::new(),
            deadline: timeout.map(|t| Instant::now() + t),
        }
    }

    pub fn cancel(&self) {
        self.token.cancel();
    }

    /// Why the run must stop now, if it must.
    pub fn reason(&self) -> Option<ScriptError> {
        if self.token.is_cancelled() {
            Some(ScriptError::Cancelled)
        } else if self.deadline.is_some_and(|d| Instant::now() >= d) {
            Some(ScriptError::DeadlineExceeded)
        } else {
            None
        }
    }

    /// A fresh token for the next REPL evaluation: the old one stays cancelled.
    pub fn renew(&mut self) {
        self.token = CancellationToken::new();
    }

    async fn stopped(&self) -> ScriptError {
        let deadline = async {
            match self.deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.token.cancelled() => ScriptError::Cancelled,
            _ = deadline => ScriptError::DeadlineExceeded,
        }
    }
}

/// Runs futures for natives called from a script thread.
#[derive(Clone, Debug)]
pub struct Bridge {
    handle: Handle,
    cancel: Cancel,
}

impl Bridge {
    pub fn new(handle: Handle, cancel: Cancel) -> Self {
        Bridge { handle, cancel }
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
