//! `azssh demo`: the whole workflow against an in-process emulator (no Azure account needed),
//! by running the bundled runbook `demo`.

use crate::cli::{DemoArgs, GlobalArgs};
use crate::error::AppError;

pub async fn demo(global: &GlobalArgs, args: DemoArgs) -> Result<(), AppError> {
    let _ = (global, args);
    Err(AppError::usage(
        "`azssh demo` needs the emulator's guests, which this build does not wire yet",
        None,
    ))
}
