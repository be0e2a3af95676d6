//! `azssh runbooks`: the bundled runbooks with their one-line descriptions.

use crate::cli::GlobalArgs;
use crate::error::AppError;
use crate::output::{self, OutputFormat};
use crate::script::bundled;

pub fn list(global: &GlobalArgs) -> Result<(), AppError> {
    let rows: Vec<serde_json::Value> = bundled::RUNBOOKS
        .iter()
        .map(|(name, src)| serde_json::json!({"name": name, "description": bundled::description(src)}))
        .collect();
    output::print_value(
        &serde_json::Value::Array(rows),
        OutputFormat::resolve(global.output),
    );
    Ok(())
}
