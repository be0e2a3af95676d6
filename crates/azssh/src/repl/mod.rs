//! `azssh repl`: an interactive session over one engine and one scope. This file holds the
//! read–evaluate–print loop; `session` evaluates, `helper` completes and hints, `meta` holds the
//! `:commands`, `render` formats results, `input` scans unfinished input.
//!
//! Evaluation runs on a worker thread while this thread watches for Ctrl-C (the terminal is in
//! cooked mode then, so Ctrl-C arrives as SIGINT) and draws a spinner after 300 ms; at the prompt
//! rustyline has the terminal in raw mode and Ctrl-C is just a key that clears the line.

pub mod complete;
/// The script catalog is what completion reads; `benches/completion.rs` (not this branch's file)
/// still names it `azssh::repl::catalog`.
pub use crate::script::catalog;
pub mod error;
pub mod helper;
pub mod history;
pub mod input;
pub mod meta;
pub mod module_help;
pub mod names;
pub mod progress;
pub mod render;
pub mod session;

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;

use rustyline::error::ReadlineError;
use rustyline::history::FileHistory;
use rustyline::{CompletionType, Config, Editor};
use tokio::runtime::Handle;

use crate::error::AppError;
use crate::output::{self, Level, OutputFormat};
use crate::repl::error::ReplError;
use crate::repl::helper::ReplHelper;
use crate::repl::meta::Meta;
use crate::repl::progress::Interrupts;
use crate::repl::session::{Session, lock};
use crate::script::bridge::{Bridge, Cancel};
use crate::script::context::{ScriptContext, Settings};
use crate::script::engine::Limits;
use crate::script::error::Diagnostic;

#[derive(Debug, Clone)]
pub struct ReplOptions {
    pub settings: Settings,
    pub limits: Limits,
    pub format: OutputFormat,
    /// `ARGS` for the session (`azssh repl --arg k=v`).
    pub args: rhai::Map,
}

/// The prompt shows the subscription (first 8 characters) and the cloud when they are set.
pub fn prompt(settings: &Settings) -> String {
    let sub = settings
        .subscription
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| s.chars().take(8).collect::<String>());
    let cloud = settings.cloud.as_deref().filter(|c| !c.is_empty());
    match (sub, cloud) {
        (Some(s), Some(c)) => format!("azssh:{s}@{c}> "),
        (Some(s), None) => format!("azssh:{s}> "),
        (None, Some(c)) => format!("azssh@{c}> "),
        (None, None) => "azssh> ".into(),
    }
}

fn continuation(prompt: &str) -> String {
    let width = prompt.chars().count();
    format!("{}...> ", " ".repeat(width.saturating_sub(5)))
}

enum Read {
    Input(String),
    Cleared,
    Eof,
}

/// Runs the REPL until `:quit` or Ctrl-D. Call on a thread that may block.
pub fn run(handle: Handle, options: ReplOptions) -> Result<(), ReplError> {
    let bridge = Bridge::new(handle.clone(), Cancel::new(None));
    let ctx = Arc::new(ScriptContext::new(
        bridge,
        options.settings.clone(),
        options.limits.clone(),
    ));
    let interrupts = Interrupts::listen(&handle);
    let mut session = Session::new(ctx);
    session.set_args(options.args.clone());
    let color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::io::stdout().is_terminal();
    let config = Config::builder()
        .auto_add_history(false)
        .history_ignore_space(true)
        .max_history_size(10_000)
        .map_err(|e| ReplError::Terminal(e.to_string()))?
        .completion_type(CompletionType::List)
        .build();
    let mut rl: Editor<ReplHelper, FileHistory> =
        Editor::with_config(config).map_err(|e| ReplError::Terminal(e.to_string()))?;
    rl.set_helper(Some(ReplHelper::new(session.shared().clone(), color)));
    let history = history::path();
    if let Some(path) = &history {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if path.exists()
            && let Err(e) = rl.load_history(path)
        {
            output::log(
                Level::Warn,
                &format!("cannot read history `{}`: {e}", path.display()),
            );
        }
    }
    let main_prompt = prompt(&options.settings);
    let cont_prompt = continuation(&main_prompt);
    output::status("azssh repl: `:help` for help, Tab to complete, Ctrl-D to leave\n");
    'session: loop {
        let text = match read_input(&mut rl, &main_prompt, &cont_prompt)? {
            Read::Input(text) => text,
            Read::Cleared => continue,
            Read::Eof => break,
        };
        // A paste (or lines typed ahead while something ran) may hold several inputs: each
        // runs in order, as if typed and entered alone.
        for text in input::split_inputs(&text) {
            let command = text
                .trim_start()
                .starts_with(':')
                .then(|| meta::parse(&text));
            // `:quit` is not worth recalling: Up in the next session should give real work.
            if !matches!(command, Some(Ok(Meta::Quit))) {
                let _ = rl.add_history_entry(text.as_str());
                if let Some(path) = &history
                    && let Err(e) = rl.append_history(path)
                {
                    tracing::debug!("cannot append to history `{}`: {e}", path.display());
                }
            }
            if let Some(command) = command {
                match command {
                    Ok(Meta::Quit) => break 'session,
                    Ok(command) => run_meta(&mut session, command, &interrupts, options.format),
                    Err(e) => output::print_error(&AppError::failed(&e)),
                }
                continue;
            }
            evaluate(&mut session, &text, None, &interrupts, options.format);
        }
    }
    Ok(())
}

/// One input: a line, plus continuation lines while brackets or a string stay open.
fn read_input(
    rl: &mut Editor<ReplHelper, FileHistory>,
    main: &str,
    cont: &str,
) -> Result<Read, ReplError> {
    let mut buffer = String::new();
    loop {
        let prompt = if buffer.is_empty() { main } else { cont };
        match rl.readline(prompt) {
            Ok(line) => {
                if !buffer.is_empty() {
                    buffer.push('\n');
                }
                buffer.push_str(&line);
                let is_meta = buffer.trim_start().starts_with(':');
                if is_meta || !input::scan(&buffer).is_incomplete() {
                    return Ok(Read::Input(buffer));
                }
            }
            Err(ReadlineError::Interrupted) => return Ok(Read::Cleared),
            Err(ReadlineError::Eof) if buffer.is_empty() => return Ok(Read::Eof),
            // Ctrl-D inside a continuation abandons the unfinished input, not the session.
            Err(ReadlineError::Eof) => return Ok(Read::Cleared),
            Err(e) => return Err(ReplError::Terminal(e.to_string())),
        }
    }
}

fn evaluate(
    session: &mut Session,
    text: &str,
    name: Option<&str>,
    interrupts: &Interrupts,
    format: OutputFormat,
) {
    let prepared = match session.prepare(text, name) {
        Ok(p) => p,
        Err(diag) => return print_diagnostic(diag),
    };
    let bridge = session.context().bridge.clone();
    bridge.cancel().renew();
    let progress = session.progress().clone();
    let outcome = std::thread::scope(|threads| {
        let (tx, rx) = mpsc::channel();
        let (session, prepared) = (&*session, &prepared);
        threads.spawn(move || {
            let _ = tx.send(session.evaluate(prepared));
        });
        progress.wait(&rx, bridge.cancel(), bridge.activity(), interrupts)
    });
    match session.finish(prepared, &outcome) {
        Ok(()) => {
            if let Ok(value) = &outcome
                && let Some(text) = render::render(value, format)
            {
                output::data_line(text.trim_end_matches('\n'));
            }
        }
        Err(diag) => print_diagnostic(diag),
    }
}

fn print_diagnostic(mut diag: Box<Diagnostic>) {
    if diag.kind == "cancelled" {
        // Where Ctrl-C struck is noise: say only that it did.
        diag.source_line = None;
        diag.message = "cancelled (Ctrl-C)".into();
    }
    output::print_error(&AppError::Failed(diag));
}

fn run_meta(session: &mut Session, command: Meta, interrupts: &Interrupts, format: OutputFormat) {
    match command {
        Meta::Help(None) => output::data_line(&meta::overview()),
        Meta::Help(Some(name)) => {
            let shared = lock(session.shared());
            let text = meta::help_for(&shared.catalog, &name).or_else(|| module_help::help(&name));
            let known: Vec<String> = shared
                .catalog
                .function_names()
                .iter()
                .cloned()
                .chain(crate::script::catalog::help_topics())
                .collect();
            drop(shared);
            match text {
                Some(text) => output::data_line(&text),
                None => {
                    let near = azssh_core::suggest::nearest(
                        name.trim().trim_end_matches("()"),
                        known.iter().map(String::as_str),
                    );
                    let hint = if near.is_empty() {
                        "type the start of a name and press Tab to see what exists; `:help retry` shows a stdlib module".into()
                    } else {
                        format!("did you mean {}?", azssh_core::suggest::one_of(&near))
                    };
                    print_diagnostic(Box::new(Diagnostic::plain(
                        "repl.unknown_function",
                        format!("no function, module or global named `{name}`"),
                        Some(hint),
                    )))
                }
            }
        }
        Meta::Load(path) => load(session, &path, interrupts, format),
        Meta::Vars => output::data_line(vars(session).trim_end_matches('\n')),
        Meta::Reset => {
            session.reset();
            output::log(
                Level::Info,
                "session reset: variables, functions and imports forgotten",
            );
        }
        Meta::Save(path) => match save(session, &path) {
            Ok(n) => output::log(
                Level::Info,
                &format!("saved {n} input(s) to {}", path.display()),
            ),
            Err(e) => output::print_error(&AppError::failed(&e)),
        },
        Meta::Quit => {}
    }
}

fn load(session: &mut Session, path: &Path, interrupts: &Interrupts, format: OutputFormat) {
    let spec = path.display().to_string();
    match crate::script::run::Script::load(&spec) {
        Ok(script) => evaluate(
            session,
            &script.text,
            Some(&script.name),
            interrupts,
            format,
        ),
        Err(e) => output::print_error(&AppError::failed(&e)),
    }
}

fn save(session: &Session, path: &Path) -> Result<usize, ReplError> {
    let inputs = session.saved_inputs();
    let mut text = String::from("//! Saved from an `azssh repl` session.\n\n");
    for input in inputs {
        text.push_str(input.trim_end());
        if !input.trim_end().ends_with([';', '}']) {
            text.push(';');
        }
        text.push('\n');
    }
    std::fs::write(path, text).map_err(|e| ReplError::Write {
        path: path.display().to_string(),
        reason: e.to_string().to_lowercase(),
    })?;
    Ok(inputs.len())
}

/// `:vars`: name, type and a short preview of each variable, as a table.
fn vars(session: &Session) -> String {
    let shared = lock(session.shared());
    let rows: Vec<serde_json::Value> = shared
        .scope
        .iter_raw()
        .map(|(name, constant, value)| {
            let preview = crate::script::value::to_json(value)
                .map(|j| match j {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                })
                .unwrap_or_else(|_| value.to_string());
            let preview = if preview.chars().count() > 60 {
                format!("{}…", preview.chars().take(59).collect::<String>())
            } else {
                preview
            };
            serde_json::json!({
                "name": if constant { format!("{name} (const)") } else { name.to_string() },
                "type": shared.catalog.type_of(value),
                "value": preview,
            })
        })
        .collect();
    if rows.is_empty() {
        return "no variables yet: `let x = ...;` makes one\n".into();
    }
    output::render_table(&serde_json::Value::Array(rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_shows_short_subscription_and_cloud() {
        let mut s = Settings::default();
        assert_eq!(prompt(&s), "azssh> ");
        s.subscription = Some("0123456789abcdef".into());
        assert_eq!(prompt(&s), "azssh:01234567> ");
        s.cloud = Some("AzureUSGovernment".into());
        assert_eq!(prompt(&s), "azssh:01234567@AzureUSGovernment> ");
        assert_eq!(continuation("azssh> "), "  ...> ");
    }
}
