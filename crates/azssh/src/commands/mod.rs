//! One file per subcommand; `dispatch` picks one. Shared plumbing for commands that run scripts
//! (settings, limits, `--arg` parsing, running on a blocking thread with Ctrl-C) lives here.

use std::sync::Arc;

use rhai::{Dynamic, Map};

use crate::cli::{Cli, Command, GlobalArgs, LimitArgs};
use crate::error::AppError;
use crate::output::{self, OutputFormat};
use crate::script::bridge::{Bridge, Cancel};
use crate::script::context::{ScriptContext, Settings};
use crate::script::engine::Limits;
use crate::script::error::Diagnostic;
use crate::script::run::Script;
use azssh_core::error::kind;

pub mod completions;
#[cfg(feature = "emulator")]
pub mod demo;
pub mod docs;
#[cfg(feature = "emulator")]
pub mod emulator;
pub mod fleet;
pub mod keys;
pub mod proxy;
pub mod repl;
pub mod run;
pub mod runbooks;
pub mod session;
pub mod ssh_config;
pub mod vms;
pub mod workflow;

pub async fn dispatch(cli: Cli) -> Result<(), AppError> {
    let global = cli.global;
    let mut command = cli.command;
    if let Some(text) = &global.query {
        query_flag(text, &mut command)?;
    }
    // A person who asked for JSON on stderr's terminal is piping or scripting: no spinner.
    output::allow_progress(!matches!(
        global.output,
        Some(OutputFormat::Json | OutputFormat::Jsonl)
    ));
    match command {
        Command::Run(args) => run::run(&global, args).await,
        Command::Runbooks(args) => runbooks::runbooks(&global, args),
        Command::Vms(args) => vms::vms(&global, args).await,
        Command::Docs(args) => docs::docs(&global, args),
        Command::EnableSsh(args) => workflow::enable_ssh(&global, args).await,
        Command::OpenPort(args) => workflow::open_port(&global, args).await,
        Command::CopyKey(args) => workflow::copy_key(&global, args).await,
        Command::Setup(args) => workflow::setup(&global, args).await,
        Command::Pin(args) => workflow::pin(&global, args).await,
        Command::ClosePort(args) => workflow::close_port(&global, args).await,
        Command::Jit(args) => workflow::jit(&global, args).await,
        Command::Fleet(args) => fleet::fleet(&global, args).await,
        Command::Keys(command) => keys::keys(&global, command).await,
        Command::Audit(args) => keys::audit(&global, args).await,
        Command::Repair(args) => keys::repair(&global, args).await,
        Command::Connect(args) => session::connect(&global, args).await,
        Command::Tunnel(args) => session::tunnel(&global, args).await,
        Command::Rdp(args) => session::rdp(&global, args).await,
        Command::Cp(args) => session::cp(&global, args).await,
        Command::Proxy(args) => proxy::proxy(&global, args).await,
        Command::SshConfig(args) => ssh_config::ssh_config(&global, args).await,
        #[cfg(feature = "emulator")]
        Command::Demo(args) => demo::demo(&global, args).await,
        #[cfg(feature = "emulator")]
        Command::Emulator(args) => emulator::serve(args).await,
        Command::Repl(args) => repl::repl(&global, args).await,
        Command::Completions(args) => completions::completions(&args),
        Command::Man(args) => completions::man(&args),
    }
}

/// Compiles `--query` for `output`. `vms` and `fleet` took a Resource Graph query in `--query`
/// before it meant JMESPath (now `--graph-query`): KQL there, which never compiles as JMESPath
/// (`Resources | where ...`), is still taken as the graph query, with a warning.
fn query_flag(text: &str, command: &mut Command) -> Result<(), AppError> {
    let error = match crate::query::Query::compile(text) {
        Ok(query) => {
            output::set_query(query);
            return Ok(());
        }
        Err(e) => e,
    };
    let graph = match command {
        Command::Vms(args) => Some(&mut args.query),
        Command::Fleet(args) => Some(&mut args.run.query),
        _ => None,
    };
    // KQL starts with a table and a pipe (`Resources | where ...`); anything else is a JMESPath
    // typo, and its syntax error is what helps.
    let kql = text.split_once('|').is_some_and(|(table, _)| {
        let table = table.trim();
        !table.is_empty() && table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    });
    match graph {
        Some(slot @ None) if kql => {
            output::log(
                output::Level::Warn,
                "`--query` takes a JMESPath expression now, as in `az`; pass a Resource Graph query with `--graph-query`",
            );
            *slot = Some(text.to_string());
            Ok(())
        }
        _ => Err(AppError::usage_from(&error)),
    }
}

pub fn settings(global: &GlobalArgs) -> Settings {
    Settings {
        subscription: global.subscription.clone(),
        cloud: global.cloud.clone(),
        arm_endpoint: global.arm_endpoint.clone(),
    }
}

pub fn limits(args: &LimitArgs) -> Limits {
    Limits {
        max_operations: args.max_operations,
        max_call_depth: args.max_call_depth,
        max_expr_depth: args.max_expr_depth,
        max_string_size: args.max_string_size,
        max_array_size: args.max_array_size,
        max_map_size: args.max_map_size,
    }
}

/// The limits of a verb without `--max-*` flags (the workflow and session verbs run bundled
/// runbooks): the same `AZSSH_MAX_*` variables and defaults as `LimitArgs`, read by clap from the
/// environment so a malformed value is refused the same way.
pub fn env_limits() -> Result<Limits, AppError> {
    #[derive(clap::Parser)]
    #[command(name = "azssh")]
    struct EnvOnly {
        #[command(flatten)]
        limits: LimitArgs,
    }
    use clap::Parser;
    EnvOnly::try_parse_from(["azssh"])
        .map(|e| limits(&e.limits))
        .map_err(|e| {
            use clap::error::{ContextKind, ContextValue};
            let context = |k| match e.get(k) {
                Some(ContextValue::String(s)) => s.clone(),
                _ => String::new(),
            };
            // clap names the flag (`--max-operations <MAX_OPERATIONS>`); these verbs have no
            // such flag, so name the variable the value came from.
            let flag = context(ContextKind::InvalidArg);
            let var = flag
                .trim_start_matches("--")
                .split(' ')
                .next()
                .unwrap_or_default()
                .replace('-', "_")
                .to_uppercase();
            AppError::usage(
                format!(
                    "`AZSSH_{var}` is `{}`, not a valid limit",
                    context(ContextKind::InvalidValue)
                ),
                Some("set it to a positive whole number, or unset it for the default".into()),
            )
        })
}

/// `key=value` pairs into the `ARGS` map: JSON when the value parses as JSON, else the string.
pub fn parse_args(pairs: &[String]) -> Result<Map, AppError> {
    let mut map = Map::new();
    for pair in pairs {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(AppError::usage(
                format!("`--arg {pair}` has no `=`"),
                Some("write `--arg key=value`, e.g. `--arg port=22` or `--arg 'tags={\"env\":\"prod\"}'`".into()),
            ));
        };
        let key = key.trim();
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(AppError::usage(
                format!("`--arg {pair}`: `{key}` is not a valid key"),
                Some("keys use letters, digits, `_` and `-`".into()),
            ));
        }
        let parsed = serde_json::from_str::<serde_json::Value>(value)
            .map(|v| crate::script::value::from_json(&v))
            .unwrap_or_else(|_| Dynamic::from(value.to_string()));
        map.insert(key.into(), parsed);
    }
    Ok(map)
}

/// Loads a script by path or runbook name; a missing or unreadable one is a usage error.
pub fn load_script(spec: &str) -> Result<Script, AppError> {
    Script::load(spec).map_err(|e| AppError::usage_from(&e))
}

/// Runs `job` on a blocking thread with a fresh context; Ctrl-C (or the deadline) cancels it.
pub async fn run_blocking<T: Send + 'static>(
    settings: Settings,
    limits: Limits,
    timeout: Option<std::time::Duration>,
    job: impl FnOnce(Arc<ScriptContext>) -> Result<T, Box<Diagnostic>> + Send + 'static,
) -> Result<T, AppError> {
    let cancel = Cancel::new(timeout);
    let bridge = Bridge::new(tokio::runtime::Handle::current(), cancel.clone());
    // Progress for the person waiting: the step the script waits on now (the REPL's spinner
    // shows the same), hidden while a shell or a question owns the terminal.
    let activity = bridge.activity().clone();
    let progress = output::Progress::watch(move || {
        if activity.terminal_handed_over() {
            return None;
        }
        Some(match activity.current() {
            Some((what, 0)) => what,
            Some((what, more)) => format!("{what} (and {more} more)"),
            None => "running".into(),
        })
    });
    let ctx = Arc::new(ScriptContext::new(bridge, settings, limits));
    let mut task = tokio::task::spawn_blocking(move || job(ctx));
    let joined = tokio::select! {
        r = &mut task => r,
        _ = tokio::signal::ctrl_c() => {
            output::log(output::Level::Warn, "interrupted: cancelling (press Ctrl-C again to quit at once)");
            cancel.cancel();
            tokio::select! {
                r = &mut task => r,
                _ = tokio::signal::ctrl_c() => std::process::exit(130),
            }
        }
    };
    progress.finish();
    match joined {
        Ok(result) => result.map_err(AppError::Failed),
        Err(e) => Err(AppError::Failed(Box::new(Diagnostic::plain(
            "internal",
            format!("the script thread failed: {e}"),
            Some("this is a bug in azssh; please report it".into()),
        )))),
    }
}

/// Prints a script's final value in the chosen format.
pub fn print_result(global: &GlobalArgs, value: &Dynamic) -> Result<(), AppError> {
    let json = crate::script::value::to_json(value).map_err(|e| {
        AppError::Failed(Box::new(Diagnostic::plain(
            kind::script::OUTPUT,
            format!("cannot print the script's result: {e}"),
            Some("end the script with a map, array, string or number".into()),
        )))
    })?;
    output::print_value(&json, OutputFormat::resolve(global.output));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_parse_json_else_string() {
        let m = parse_args(&[
            "n=3".into(),
            "s=web01".into(),
            "t={\"a\":1}".into(),
            "e=".into(),
        ])
        .unwrap();
        assert_eq!(m["n"].as_int().unwrap(), 3);
        assert_eq!(m["s"].clone().into_string().unwrap(), "web01");
        assert!(m["t"].is_map());
        assert_eq!(m["e"].clone().into_string().unwrap(), "");
    }

    #[test]
    fn arg_without_equals_is_usage_error() {
        let err = parse_args(&["oops".into()]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.render().contains("`--arg oops` has no `=`"));
    }
}
