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
    /// The VMs running now, by name, with how many runs of that name (names repeat across
    /// resource groups), so the bar can say which ones it waits on.
    names: std::sync::Mutex<std::collections::BTreeMap<String, usize>>,
}

impl Counters {
    pub fn done(&self) -> u64 {
        self.ok.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed)
    }

    pub fn started(&self, name: &str) {
        let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        *names.entry(name.to_string()).or_default() += 1;
    }

    pub fn finished(&self, name: &str) {
        let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = names.get_mut(name) {
            *n -= 1;
            if *n == 0 {
                names.remove(name);
            }
        }
    }

    /// `web01, web02, db01 +29`: the first running VMs by name, then how many more.
    pub fn running_names(&self, shown: usize) -> String {
        let names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        let total: usize = names.values().sum();
        let first: Vec<&str> = names.keys().take(shown).map(String::as_str).collect();
        let more = total.saturating_sub(first.len());
        match (first.is_empty(), more) {
            (true, _) => String::new(),
            (false, 0) => first.join(", "),
            (false, more) => format!("{} +{more}", first.join(", ")),
        }
    }
}

/// VMs finished per second so far, to one decimal (a rate that keeps its width as it changes).
fn rate(done: u64, elapsed: Duration) -> f64 {
    done as f64 / elapsed.as_secs_f64().max(0.001)
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
                let names = counters.running_names(3);
                bar.set_message(format!(
                    "ok {}  failed {}  {:>5.1} VMs/s  running {}{}",
                    counters.ok.load(Ordering::Relaxed),
                    counters.failed.load(Ordering::Relaxed),
                    rate(counters.done(), started.elapsed()),
                    counters.running.load(Ordering::Relaxed),
                    if names.is_empty() {
                        String::new()
                    } else {
                        format!(": {names}")
                    }
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
    let rate = rate(done, elapsed);
    let eta = if rate > 0.0 {
        format!("{}s", ((total.saturating_sub(done)) as f64 / rate).round())
    } else {
        "unknown".into()
    };
    let names = c.running_names(5);
    format!(
        "fleet: {done}/{total} done ({} failed), {} running{}, {rate:.1} VMs/s, eta {eta}",
        c.failed.load(Ordering::Relaxed),
        c.running.load(Ordering::Relaxed),
        if names.is_empty() {
            String::new()
        } else {
            format!(" ({names})")
        },
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

    #[test]
    fn running_vms_are_named_first_few_then_a_count() {
        let c = Counters::default();
        for n in ["web02", "web01", "db01", "web01", "app01"] {
            c.started(n);
        }
        assert_eq!(c.running_names(3), "app01, db01, web01 +2");
        c.finished("web01");
        c.finished("app01");
        c.finished("db01");
        assert_eq!(c.running_names(3), "web01, web02");
        c.running.store(2, Ordering::Relaxed);
        assert_eq!(
            plain_line(4, &c, Duration::from_secs(1)),
            "fleet: 0/4 done (0 failed), 2 running (web01, web02), 0.0 VMs/s, eta unknown"
        );
    }
}
