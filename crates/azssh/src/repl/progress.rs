//! Watching a running evaluation: Ctrl-C (SIGINT, since the terminal is in cooked mode while
//! code runs) cancels it, a second Ctrl-C leaves azssh, and after 300 ms a spinner on stderr
//! says what the bridge waits for. A script's `print` suspends the spinner so lines stay whole.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use rhai::{Dynamic, EvalAltResult};
use tokio::runtime::Handle;

use crate::output::{self, Level};
use crate::repl::error::ReplError;
use crate::script::bridge::{Activity, Cancel};

/// A spinner appears once an evaluation has run this long.
const SPINNER_AFTER: Duration = Duration::from_millis(300);

pub type Outcome = Result<Dynamic, Box<EvalAltResult>>;

/// Counts SIGINTs for the whole session (once tokio listens, SIGINT no longer kills us).
#[derive(Clone, Debug)]
pub struct Interrupts(Arc<AtomicU64>);

impl Interrupts {
    pub fn listen(handle: &Handle) -> Self {
        let count = Arc::new(AtomicU64::new(0));
        let seen = count.clone();
        handle.spawn(async move {
            while tokio::signal::ctrl_c().await.is_ok() {
                seen.fetch_add(1, Ordering::SeqCst);
            }
        });
        Interrupts(count)
    }

    fn count(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The spinner of the evaluation running now, if one is shown.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    spinner: Arc<Mutex<Option<ProgressBar>>>,
}

impl Progress {
    /// Prints a script's `print` line without tearing the spinner.
    pub fn print(&self, text: &str) {
        let spinner = self
            .spinner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match spinner {
            Some(bar) => bar.suspend(|| output::data_line(text)),
            None => output::data_line(text),
        }
    }

    fn show(&self, bar: Option<ProgressBar>) {
        let old = std::mem::replace(
            &mut *self.spinner.lock().unwrap_or_else(PoisonError::into_inner),
            bar,
        );
        if let Some(old) = old {
            old.finish_and_clear();
        }
    }

    fn set_message(&self, message: String) {
        if let Some(bar) = &*self.spinner.lock().unwrap_or_else(PoisonError::into_inner) {
            bar.set_message(message);
        }
    }

    fn showing(&self) -> bool {
        self.spinner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Waits for the evaluation's outcome on `rx`; the first Ctrl-C cancels it, a second one
    /// leaves azssh.
    pub fn wait(
        &self,
        rx: &mpsc::Receiver<Outcome>,
        cancel: &Cancel,
        activity: &Activity,
        interrupts: &Interrupts,
    ) -> Outcome {
        let started = Instant::now();
        let seen = interrupts.count();
        let mut cancelled = false;
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(outcome) => {
                    self.show(None);
                    return outcome;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.show(None);
                    return Err(crate::script::error::to_rhai(&ReplError::EvaluationLost));
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            let pressed = interrupts.count().saturating_sub(seen);
            if pressed >= 1 && !cancelled {
                cancel.cancel();
                cancelled = true;
            }
            if pressed >= 2 {
                self.show(None);
                output::log(Level::Warn, "interrupted twice: leaving azssh");
                std::process::exit(130);
            }
            if activity.terminal_handed_over() || output::progress_held() {
                // An interactive `shell()` owns the screen: no spinner over it.
                self.show(None);
                continue;
            }
            if !self.showing() && started.elapsed() >= SPINNER_AFTER {
                self.show(Some(output::spinner()));
            }
            self.set_message(message(activity, cancelled));
        }
    }
}

fn message(activity: &Activity, cancelled: bool) -> String {
    if cancelled {
        return "cancelling (Ctrl-C again leaves azssh)".into();
    }
    match activity.current() {
        Some((what, 0)) => what,
        Some((what, more)) => format!("{what} (and {more} more)"),
        None => "running".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_comes_back_and_the_spinner_goes() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let progress = Progress::default();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(400));
            let _ = tx.send(Ok(Dynamic::from(7_i64)));
        });
        let out = progress.wait(
            &rx,
            &Cancel::new(None),
            &Activity::default(),
            &Interrupts::listen(rt.handle()),
        );
        assert_eq!(out.unwrap().as_int().unwrap(), 7);
        assert!(!progress.showing());
    }

    #[test]
    fn message_names_the_wait() {
        let activity = Activity::default();
        assert_eq!(message(&activity, false), "running");
        assert!(message(&activity, true).starts_with("cancelling"));
    }
}
