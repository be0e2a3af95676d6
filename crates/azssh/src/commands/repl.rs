//! `azssh repl`: the interactive session (the loop itself lives in `crate::repl`).

use crate::cli::{GlobalArgs, ReplArgs};
use crate::error::AppError;
use crate::output::OutputFormat;
use crate::repl::ReplOptions;
use crate::script::error::Diagnostic;

pub async fn repl(global: &GlobalArgs, args: ReplArgs) -> Result<(), AppError> {
    let options = ReplOptions {
        settings: super::settings(global),
        limits: super::limits(&args.limits),
        // Results are for reading: tables unless `-o` asks for JSON.
        format: global.output.unwrap_or(OutputFormat::Table),
        args: super::parse_args(&args.args)?,
    };
    let handle = tokio::runtime::Handle::current();
    let joined = tokio::task::spawn_blocking(move || crate::repl::run(handle, options)).await;
    match joined {
        Ok(result) => result.map_err(|e| AppError::failed(&e)),
        Err(e) => Err(AppError::Failed(Box::new(Diagnostic::plain(
            "internal",
            format!("the repl thread failed: {e}"),
            Some("this is a bug in azssh; please report it".into()),
        )))),
    }
}
