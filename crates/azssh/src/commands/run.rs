//! `azssh run SCRIPT|RUNBOOK [--arg k=v]...`: runs one script and prints its final value.

use crate::cli::{GlobalArgs, RunArgs};
use crate::error::AppError;

pub async fn run(global: &GlobalArgs, args: RunArgs) -> Result<(), AppError> {
    let script = super::load_script(&args.script)?;
    let script_args = super::parse_args(&args.args)?;
    let value = super::run_blocking(
        super::settings(global),
        super::limits(&args.limits),
        args.timeout,
        move |ctx| crate::script::run::run(&ctx, &script, script_args, |_| {}),
    )
    .await?;
    super::print_result(global, &value)
}
