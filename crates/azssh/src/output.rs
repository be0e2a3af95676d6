//! The one place that prints. Data goes to stdout (in the chosen format), logs, progress and
//! errors to stderr. `NO_COLOR` is honoured; colour only on a terminal. Every text is scrubbed
//! of registered secret values (`secret::scrub`) on its way out, and a failed write to stdout
//! is remembered so the run ends with exit 1 instead of reporting success for lost output.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;

use crate::error::AppError;
use azssh_core::error::kind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Json,
    Jsonl,
    Table,
    /// JUnit XML (fleet runs: one test case per VM); other commands print JSON instead.
    Junit,
}

impl OutputFormat {
    /// `table` on a terminal, `json` otherwise, unless asked.
    pub fn resolve(asked: Option<OutputFormat>) -> OutputFormat {
        asked.unwrap_or(if std::io::stdout().is_terminal() {
            OutputFormat::Table
        } else {
            OutputFormat::Json
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

/// Why stdout could not be written: the run fails (exit 1) once it is over.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OutputError {
    #[error("cannot write output: {0}")]
    Write(String),
}

impl crate::error::UserError for OutputError {
    fn kind(&self) -> &'static str {
        kind::output::WRITE
    }
    fn hint(&self) -> Option<String> {
        Some("check where stdout goes (a full disk, a file you cannot write)".into())
    }
}

/// The first stdout failure other than a closed pipe; later writes are skipped.
static WRITE_FAILURE: Mutex<Option<OutputError>> = Mutex::new(None);
/// The reader went away (`azssh ... | head -1`): like `ssh` and coreutils with SIGPIPE, the
/// rest of the output is dropped quietly; the run itself goes on and keeps its exit code, so a
/// script is never stopped half-way through changing a VM because a pager closed.
static PIPE_CLOSED: AtomicBool = AtomicBool::new(false);

/// `io::Error`'s text without the `(os error N)` tail, lower-case as our messages are.
fn io_reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = match text.rfind(" (os error ") {
        Some(i) => text[..i].to_string(),
        None => text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => "unknown error".into(),
    }
}

/// Writes `text` (scrubbed) to stdout and flushes, remembering a failure.
fn write_stdout(text: &str) {
    if PIPE_CLOSED.load(Ordering::Relaxed) || write_failed() {
        return;
    }
    let text = crate::secret::scrub(text);
    let mut out = std::io::stdout().lock();
    let result = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    if let Err(e) = result {
        record_write_error(&e);
    }
}

fn record_write_error(e: &std::io::Error) {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        PIPE_CLOSED.store(true, Ordering::Relaxed);
        return;
    }
    let mut slot = match WRITE_FAILURE.lock() {
        Ok(s) => s,
        Err(poisoned) => poisoned.into_inner(),
    };
    if slot.is_none() {
        *slot = Some(OutputError::Write(io_reason(e)));
    }
}

fn write_failed() -> bool {
    match WRITE_FAILURE.lock() {
        Ok(s) => s.is_some(),
        Err(poisoned) => poisoned.into_inner().is_some(),
    }
}

/// The stdout failure met during the run, if any (checked once, when the command ends).
pub fn write_failure() -> Option<OutputError> {
    match WRITE_FAILURE.lock() {
        Ok(s) => s.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

fn color_enabled() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

fn paint(text: &str, code: &str) -> String {
    if color_enabled() {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// One log line on stderr.
pub fn log(level: Level, message: &str) {
    let prefix = match level {
        Level::Debug => paint("debug:", "2"),
        Level::Info => paint("info:", "36"),
        Level::Warn => paint("warning:", "33"),
        Level::Error => paint("error:", "31"),
    };
    let message = crate::secret::scrub(message);
    suspended(|| {
        let mut err = std::io::stderr().lock();
        // Nowhere left to report a failure to write stderr itself.
        let _ = writeln!(err, "{prefix} {message}");
    });
}

/// A line of data on stdout (a script's `print`).
pub fn data_line(text: &str) {
    suspended(|| write_stdout(&format!("{text}\n")));
}

/// Text on stderr as is (transcripts, summaries).
pub fn status(text: &str) {
    let text = crate::secret::scrub(text);
    suspended(|| {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(text.as_bytes());
    });
}

/// Prints a result value in the chosen format (after `--query`); `null` (a script's unit
/// value) prints nothing.
pub fn print_value(value: &Value, format: OutputFormat) {
    clear_shown();
    let Some(value) = queried(value) else { return };
    if value.is_null() {
        return;
    }
    write_stdout(&render(&value, format));
}

/// `--query` (JMESPath, as `az --query`), set once by `commands::dispatch`.
static QUERY: std::sync::OnceLock<crate::query::Query> = std::sync::OnceLock::new();
/// The first `--query` failure on an output: the run ends with exit 1.
static QUERY_FAILURE: Mutex<Option<crate::query::QueryError>> = Mutex::new(None);

pub fn set_query(query: crate::query::Query) {
    let _ = QUERY.set(query);
}

/// `value` with `--query` applied (itself without one); `None` after a failed query, which is
/// remembered for the exit code.
pub fn queried(value: &Value) -> Option<Value> {
    let Some(query) = QUERY.get() else {
        return Some(value.clone());
    };
    match query.apply(value) {
        Ok(v) => Some(v),
        Err(e) => {
            let mut slot = QUERY_FAILURE.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert(e);
            None
        }
    }
}

/// Whether `--query` was given.
pub fn query_active() -> bool {
    QUERY.get().is_some()
}

/// The `--query` failure met during the run, if any.
pub fn query_failure() -> Option<crate::query::QueryError> {
    QUERY_FAILURE
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

pub fn render(value: &Value, format: OutputFormat) -> String {
    match format {
        OutputFormat::Json => {
            let mut s = serde_json::to_string_pretty(value).unwrap_or_default();
            s.push('\n');
            s
        }
        OutputFormat::Jsonl => match value {
            Value::Array(items) => items.iter().map(|i| format!("{i}\n")).collect(),
            other => format!("{other}\n"),
        },
        OutputFormat::Table => render_table(value),
        OutputFormat::Junit => render(value, OutputFormat::Json),
    }
}

/// Whether progress may be drawn in place (a bar) rather than as plain lines.
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// A progress bar drawn on stderr (fleet runs): done/total, ETA and a message (which carries
/// the rate at a fixed one decimal: indicatif's `{per_sec}` changes its width as it goes).
pub fn progress_bar(total: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} eta {eta}  {msg}")
    {
        bar.set_style(style);
    }
    bar
}

/// Raw text on stdout (a structured document such as JUnit XML).
pub fn data(text: &str) {
    write_stdout(text);
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) if s.starts_with("/subscriptions/") => short_id(s),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
            items.iter().map(cell).collect::<Vec<_>>().join(", ")
        }
        // A nested value in a table cell is summarised; `-o json` shows it whole.
        Value::Array(items) => format!("[{} items]", items.len()),
        Value::Object(map) => summarise(map),
        other => other.to_string(),
    }
}

/// An ARM resource id shortened to its last `type/name` pair (the group is its own column).
fn short_id(id: &str) -> String {
    let parts: Vec<&str> = id.trim_end_matches('/').split('/').collect();
    match parts.as_slice() {
        [.., kind, name] if parts.len() > 4 => format!("{kind}/{name}"),
        _ => id.to_string(),
    }
}

/// `{a: 1, b: "x"}` as `a=1 b=x`, nested maps as `k={…}`, cut to 60 characters.
fn summarise(map: &serde_json::Map<String, Value>) -> String {
    let text = map
        .iter()
        .map(|(k, v)| match v {
            Value::Object(_) => format!("{k}={{…}}"),
            Value::Array(items) if items.iter().any(|i| i.is_object() || i.is_array()) => {
                format!("{k}=[{}]", items.len())
            }
            other => format!("{k}={}", cell(other)),
        })
        .collect::<Vec<_>>()
        .join(" ");
    truncate_cell(&text, 60)
}

fn truncate_cell(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut t: String = text.chars().take(max.saturating_sub(1)).collect();
    t.push('…');
    t
}

/// Where a column goes: names first, then the rest as given, ids last.
fn column_rank(name: &str) -> u8 {
    match name {
        "name" | "vm" => 0,
        "resource_group" => 1,
        _ if name == "id" || name.ends_with("_id") || name.ends_with("_ids") => 3,
        _ => 2,
    }
}

/// The terminal's width for table output, when stdout is one.
fn table_width() -> Option<usize> {
    if !std::io::stdout().is_terminal() {
        return None;
    }
    match crossterm::terminal::size() {
        Ok((w, _)) if w > 0 => Some(usize::from(w)),
        _ => None,
    }
}

/// Narrows the widest columns until the line fits `max` (no column under 8 characters).
fn fit_widths(widths: &mut [usize], max: usize) {
    let total = |w: &[usize]| w.iter().sum::<usize>() + 2 * w.len().saturating_sub(1);
    while total(widths) > max {
        let Some((i, &w)) = widths.iter().enumerate().max_by_key(|(_, w)| **w) else {
            return;
        };
        if w <= 8 {
            return;
        }
        widths[i] = w - 1;
    }
}

/// Arrays of maps as aligned columns, a map as a key/value block, scalars raw.
pub fn render_table(value: &Value) -> String {
    match value {
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object) => {
            let mut columns: Vec<String> = Vec::new();
            for item in items {
                if let Value::Object(map) = item {
                    for k in map.keys() {
                        if !columns.contains(k) {
                            columns.push(k.clone());
                        }
                    }
                }
            }
            // Stable: within a rank, the order the data gave.
            columns.sort_by_key(|c| column_rank(c));
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|item| columns.iter().map(|c| cell(&item[c])).collect())
                .collect();
            let widths: Vec<usize> = columns
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    rows.iter()
                        .map(|r| r[i].chars().count())
                        .chain([c.chars().count()])
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let mut widths = widths;
            if let Some(max) = table_width() {
                fit_widths(&mut widths, max);
            }
            let line = |cells: &[String]| -> String {
                let mut s = cells
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{:<w$}", truncate_cell(c, *w)))
                    .collect::<Vec<_>>()
                    .join("  ");
                s.truncate(s.trim_end().len());
                s.push('\n');
                s
            };
            let header: Vec<String> = columns.iter().map(|c| c.to_uppercase()).collect();
            let mut out = line(&header);
            for r in &rows {
                out.push_str(&line(r));
            }
            out
        }
        Value::Array(items) => items.iter().map(|i| format!("{}\n", cell(i))).collect(),
        Value::Object(map) => {
            let width = map.keys().map(|k| k.chars().count()).max().unwrap_or(0);
            map.iter()
                .map(|(k, v)| format!("{k:<width$}  {}\n", cell(v)))
                .collect()
        }
        other => format!("{}\n", cell(other)),
    }
}

/// A spinner on stderr for a long wait (the REPL's running evaluations); hidden when stderr is
/// not a terminal.
pub fn spinner() -> indicatif::ProgressBar {
    spinner_with("{spinner} {msg} ({elapsed})")
}

fn spinner_with(template: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let target = indicatif::ProgressDrawTarget::term_like(Box::new(SpinnerTerm));
    let bar = indicatif::ProgressBar::with_draw_target(None, target);
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(std::time::Duration::from_millis(100));
    bar
}

/// Stderr for indicatif, a few columns narrower than the terminal: indicatif pads its line to
/// the full width, so the terminal's `^C` echo would wrap and strand a copy of the spinner.
#[derive(Debug)]
struct SpinnerTerm;

impl SpinnerTerm {
    fn put(&self, text: &str) -> std::io::Result<()> {
        std::io::stderr()
            .lock()
            .write_all(crate::secret::scrub(text).as_bytes())
    }
}

impl indicatif::TermLike for SpinnerTerm {
    // A pseudo-terminal nobody sized reports 0 × 0: take the classic 80 × 24 then, or
    // indicatif draws nothing.
    fn width(&self) -> u16 {
        let width = crossterm::terminal::size().map_or(0, |(w, _)| w);
        if width == 0 { 80 } else { width }
            .saturating_sub(4)
            .max(20)
    }
    fn height(&self) -> u16 {
        let height = crossterm::terminal::size().map_or(0, |(_, h)| h);
        if height == 0 { 24 } else { height }
    }
    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        if n == 0 {
            Ok(())
        } else {
            self.put(&format!("\x1b[{n}A"))
        }
    }
    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        if n == 0 {
            Ok(())
        } else {
            self.put(&format!("\x1b[{n}B"))
        }
    }
    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        if n == 0 {
            Ok(())
        } else {
            self.put(&format!("\x1b[{n}C"))
        }
    }
    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        if n == 0 {
            Ok(())
        } else {
            self.put(&format!("\x1b[{n}D"))
        }
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.put(&format!("{s}\n"))
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.put(s)
    }
    fn clear_line(&self) -> std::io::Result<()> {
        self.put("\r\x1b[2K")
    }
    fn flush(&self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// The one place errors are printed.
pub fn print_error(err: &AppError) {
    let text = err.render();
    let text = if color_enabled() {
        text.lines()
            .map(|l| {
                if let Some(rest) = l.strip_prefix("hint: ") {
                    format!("{} {rest}", paint("hint:", "32"))
                } else if let Some(idx) = l.find("error: ") {
                    format!("{}{} {}", &l[..idx], paint("error:", "1;31"), &l[idx + 7..])
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    } else {
        text
    };
    status(&text);
}

/// Whether verbs may draw progress: off with an explicit `-o json`/`jsonl` (set once by
/// `commands::dispatch`) and whenever stderr is not a terminal.
static PROGRESS_ALLOWED: AtomicBool = AtomicBool::new(true);
/// The progress line drawn now, so other stderr text can clear it before writing.
static SHOWN: Mutex<Option<indicatif::ProgressBar>> = Mutex::new(None);
/// Questions on the terminal in progress (host keys, passphrases): no progress drawn meanwhile.
static HELD: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

pub fn allow_progress(allowed: bool) {
    PROGRESS_ALLOWED.store(allowed, Ordering::Relaxed);
}

/// Runs `f` with the progress line (if any) cleared, then draws it again.
fn suspended<R>(f: impl FnOnce() -> R) -> R {
    let bar = SHOWN.lock().unwrap_or_else(|p| p.into_inner()).clone();
    match bar {
        Some(bar) => bar.suspend(f),
        None => f(),
    }
}

fn clear_shown() {
    if let Some(bar) = SHOWN.lock().unwrap_or_else(|p| p.into_inner()).take() {
        bar.finish_and_clear();
    }
}

/// While alive, the terminal belongs to a question (or a shell): the progress line is cleared
/// and not drawn again until the guard drops.
#[derive(Debug)]
pub struct HoldProgress(());

pub fn hold_progress() -> HoldProgress {
    HELD.fetch_add(1, Ordering::SeqCst);
    clear_shown();
    HoldProgress(())
}

impl Drop for HoldProgress {
    fn drop(&mut self) {
        HELD.fetch_sub(1, Ordering::SeqCst);
    }
}

pub fn progress_held() -> bool {
    HELD.load(Ordering::SeqCst) > 0
}

/// A person is waiting on a verb: after `AFTER`, a spinner on stderr names the current step
/// (`what` returns it; `None` hides the line, e.g. while a shell owns the terminal) and how long
/// that step has run. Drawn only on a terminal and without `-o json`; cleared on `finish`/drop.
#[derive(Debug)]
pub struct Progress {
    stop: std::sync::Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    message: std::sync::Arc<Mutex<String>>,
}

impl Progress {
    const AFTER: std::time::Duration = std::time::Duration::from_millis(300);

    /// A spinner whose step is set with `step`.
    pub fn start(first: &str) -> Progress {
        let message = std::sync::Arc::new(Mutex::new(first.to_string()));
        let shared = message.clone();
        let mut p =
            Progress::watch(move || Some(shared.lock().unwrap_or_else(|p| p.into_inner()).clone()));
        p.message = message;
        p
    }

    /// A spinner that asks `what` for the current step ten times a second.
    pub fn watch(what: impl Fn() -> Option<String> + Send + 'static) -> Progress {
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let message = std::sync::Arc::new(Mutex::new(String::new()));
        let terminal = std::io::stderr().is_terminal();
        let thread = if !terminal {
            // A log file or CI: one timestamped line per step a person would wait on.
            let stop = stop.clone();
            Some(std::thread::spawn(move || step_lines(&stop, &what)))
        } else if PROGRESS_ALLOWED.load(Ordering::Relaxed) {
            let stop = stop.clone();
            Some(std::thread::spawn(move || ticker(&stop, &what)))
        } else {
            None
        };
        Progress {
            stop,
            thread,
            message,
        }
    }

    pub fn step(&self, what: &str) {
        *self.message.lock().unwrap_or_else(|p| p.into_inner()) = what.to_string();
    }

    /// Clears the line; results and questions come after.
    pub fn finish(mut self) {
        self.end();
    }

    fn end(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.end();
    }
}

/// A step is worth a line off a terminal once it has been waited on this long (quick steps
/// would only be noise in a log).
const STEP_LINE_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// Off a terminal: `2026-01-02T03:04:05Z enabling OpenSSH ...` on stderr for each step that
/// lasts `STEP_LINE_AFTER`, once per step.
fn step_lines(stop: &AtomicBool, what: &dyn Fn() -> Option<String>) {
    let mut step: Option<(String, std::time::Instant, bool)> = None;
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let Some(current) = what() else { continue };
        match &mut step {
            Some((s, _, _)) if *s == current => {}
            _ => step = Some((current, std::time::Instant::now(), false)),
        }
        if let Some((s, since, printed)) = &mut step
            && !*printed
            && since.elapsed() >= STEP_LINE_AFTER
        {
            *printed = true;
            status(&format!("{} {s}\n", utc_timestamp()));
        }
    }
}

/// Now, as RFC 3339 UTC to the second (no local time zone: logs get compared across machines).
fn utc_timestamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    now.format(&format).unwrap_or_default()
}

fn ticker(stop: &AtomicBool, what: &dyn Fn() -> Option<String>) {
    let mut step: Option<(String, std::time::Instant)> = None;
    // Since when the line may be drawn: the start, or the moment a question or a shell gave the
    // terminal back (a step that ends right after it is not worth a flash of spinner).
    let mut visible_since: Option<std::time::Instant> = None;
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let current = if progress_held() { None } else { what() };
        let Some(current) = current else {
            clear_shown();
            visible_since = None;
            continue;
        };
        if step.as_ref().is_none_or(|(s, _)| *s != current) {
            step = Some((current.clone(), std::time::Instant::now()));
        }
        let now = std::time::Instant::now();
        if now.duration_since(*visible_since.get_or_insert(now)) < Progress::AFTER {
            continue;
        }
        let since = step.as_ref().map_or(now, |(_, t)| *t);
        let text = format!("{current} ({}s)", since.elapsed().as_secs());
        let mut shown = SHOWN.lock().unwrap_or_else(|p| p.into_inner());
        match &*shown {
            Some(bar) => bar.set_message(text),
            None => {
                // The message carries the step's own time: no `{elapsed}` of the whole run.
                let bar = spinner_with("{spinner} {msg}");
                bar.set_message(text);
                *shown = Some(bar);
            }
        }
    }
    clear_shown();
}

/// Standard input and output as one byte pipe, for `azssh proxy`: stdout then carries the SSH
/// stream of OpenSSH's `ProxyCommand`, so nothing else may print to it (logs go to stderr).
pub fn raw_stdio() -> (tokio::io::Stdin, tokio::io::Stdout) {
    (tokio::io::stdin(), tokio::io::stdout())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn table_aligns_columns_of_maps() {
        let v = json!([{"name": "web01", "power_state": "running"}, {"name": "db", "power_state": "deallocated"}]);
        assert_eq!(
            render_table(&v),
            "NAME   POWER_STATE\nweb01  running\ndb     deallocated\n"
        );
    }

    #[test]
    fn map_prints_as_key_value_block() {
        let v = json!({"a": 1, "long_key": "x"});
        assert_eq!(render_table(&v), "a         1\nlong_key  x\n");
    }

    #[test]
    fn jsonl_prints_one_line_per_item() {
        assert_eq!(
            render(&json!([1, {"a": 2}]), OutputFormat::Jsonl),
            "1\n{\"a\":2}\n"
        );
    }

    #[test]
    fn table_puts_names_first_ids_last_and_summarises_nesting() {
        let v = json!([{
            "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/web01",
            "location": "westeurope",
            "name": "web01",
            "resource_group": "rg",
            "tags": {"env": "prod"},
        }]);
        let text = render_table(&v);
        let header = text.lines().next().unwrap_or_default();
        assert!(
            header.starts_with("NAME   RESOURCE_GROUP  LOCATION"),
            "{text}"
        );
        assert!(header.trim_end().ends_with("ID"), "{text}");
        assert!(
            text.contains("virtualMachines/web01") && !text.contains("/subscriptions/"),
            "{text}"
        );
        assert!(text.contains("env=prod"), "{text}");
    }

    #[test]
    fn wide_columns_narrow_to_fit() {
        let mut w = vec![40, 10, 60];
        fit_widths(&mut w, 80);
        assert!(w.iter().sum::<usize>() + 4 <= 80, "{w:?}");
        assert_eq!(w[1], 10);
    }
}
