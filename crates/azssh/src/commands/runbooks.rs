//! `azssh runbooks [NAME]`: the runbooks `azssh run NAME` can find (name, source, description),
//! or one runbook's description and declared arguments.

use crate::cli::{GlobalArgs, RunbooksArgs};
use crate::error::AppError;
use crate::output::{self, OutputFormat};
use crate::script::runbook;

pub fn runbooks(global: &GlobalArgs, args: RunbooksArgs) -> Result<(), AppError> {
    let format = OutputFormat::resolve(global.output);
    let Some(name) = args.name else {
        let rows: Vec<serde_json::Value> = runbook::list()
            .iter()
            .map(|l| {
                serde_json::json!({
                    "name": l.name,
                    "source": l.origin.shown(),
                    "description": runbook::header(&l.source).description,
                })
            })
            .collect();
        output::print_value(&serde_json::Value::Array(rows), format);
        return Ok(());
    };
    let script = super::load_script(&name)?;
    let header = script.header();
    let source = match runbook::find(&name) {
        Some(origin) => origin.shown(),
        None => script.name.clone(),
    };
    let value = serde_json::json!({
        "name": name.strip_suffix(".rhai").unwrap_or(&name),
        "source": source,
        "description": header.description,
        "details": header.details.join(" "),
        "arguments": header.args,
    });
    if format != OutputFormat::Table {
        output::print_value(&value, format);
        return Ok(());
    }
    output::data(&render(&name, &source, &header));
    Ok(())
}

/// The text form: description, then one line per argument, like a `--help`.
fn render(name: &str, source: &str, h: &runbook::Header) -> String {
    let mut out = format!("{name} ({source})\n  {}\n", h.description);
    for d in &h.details {
        out.push_str(&format!("  {d}\n"));
    }
    if h.args.is_empty() {
        out.push_str(
            "\nno declared arguments (add `//! arg NAME: type — meaning (default)` lines)\n",
        );
        return out;
    }
    out.push_str("\narguments (`--arg NAME=VALUE`):\n");
    let width = h
        .args
        .iter()
        .map(|a| a.name.len() + a.ty.len() + 2)
        .max()
        .unwrap_or(0);
    for a in &h.args {
        let left = format!("{}: {}", a.name, a.ty);
        out.push_str(&format!("  {left:<width$}  {}", a.meaning));
        if let Some(d) = &a.default {
            out.push_str(&format!(" ({d})"));
        }
        out.push('\n');
    }
    out
}
