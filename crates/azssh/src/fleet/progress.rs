//! Progress on stderr while a fleet runs: a bar (done / failed / running, rate, ETA) when stderr
//! is a terminal, a plain line every few seconds otherwise (CI logs, `kubectl logs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::output;

/// Counters the scheduler bumps; cheap to share.
#[derive(Debug, Default)]
pub struct Counters {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    pub running: AtomicU64,
}

impl Counters {
    pub fn done(&self) -> u64 {
        self.ok.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed)
    }
}

/// Draws until `stop` fires. `total` is the number of VMs this run will try.
pub fn spawn(
    total: u64,
    counters: Arc<Counters>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let started = std::time::Instant::now();
    if output::stderr_is_terminal() {
        let bar = output::progress_bar(total);
        tokio::spawn(async move {
            loop {
                bar.set_position(counters.done());
                bar.set_message(format!(
                    "ok {}  failed {}  running {}",
                    counters.ok.load(Ordering::Relaxed),
                    counters.failed.load(Ordering::Relaxed),
                    counters.running.load(Ordering::Relaxed)
                ));
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
            bar.finish_and_clear();
        })
    } else {
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
                output::log(
                    output::Level::Info,
                    &plain_line(total, &counters, started.elapsed()),
                );
            }
        })
    }
}

/// `fleet: 120/300 done (3 failed), 32 running, 4.1 VMs/s, eta 44s`
pub fn plain_line(total: u64, c: &Counters, elapsed: Duration) -> String {
    let done = c.done();
    let rate = done as f64 / elapsed.as_secs_f64().max(0.001);
    let eta = if rate > 0.0 {
        format!("{}s", ((total.saturating_sub(done)) as f64 / rate).round())
    } else {
        "unknown".into()
    };
    format!(
        "fleet: {done}/{total} done ({} failed), {} running, {rate:.1} VMs/s, eta {eta}",
        c.failed.load(Ordering::Relaxed),
        c.running.load(Ordering::Relaxed),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_line_shows_counts_rate_and_eta() {
        let c = Counters::default();
        c.ok.store(8, Ordering::Relaxed);
        c.failed.store(2, Ordering::Relaxed);
        c.running.store(4, Ordering::Relaxed);
        assert_eq!(
            plain_line(30, &c, Duration::from_secs(5)),
            "fleet: 10/30 done (2 failed), 4 running, 2.0 VMs/s, eta 10s"
        );
    }
}
