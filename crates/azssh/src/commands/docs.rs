//! `azssh docs`: the function reference generated from the engine's own metadata, so it can
//! never drift from what is registered; `--definitions DIR` writes `.d.rhai` files for editors.

use std::sync::Arc;

use serde_json::Value;

use crate::cli::{DocsArgs, GlobalArgs};
use crate::error::AppError;
use crate::output;
use crate::script::bridge::{Bridge, Cancel};
use crate::script::context::ScriptContext;
use crate::script::engine::{self, Limits};

pub fn docs(global: &GlobalArgs, args: DocsArgs) -> Result<(), AppError> {
    let ctx = Arc::new(ScriptContext::new(
        Bridge::new(tokio::runtime::Handle::current(), Cancel::new(None)),
        super::settings(global),
        Limits::default(),
    ));
    let engine = engine::build(&ctx);
    if let Some(dir) = args.definitions {
        std::fs::create_dir_all(&dir)
            .and_then(|_| engine.definitions().write_to_dir(&dir))
            .map_err(|e| {
                AppError::usage(
                    format!(
                        "cannot write definitions to `{}`: {}",
                        dir.display(),
                        e.to_string().to_lowercase()
                    ),
                    Some("pass a directory you can write to".into()),
                )
            })?;
        output::log(
            output::Level::Info,
            &format!("wrote Rhai definition files to {}", dir.display()),
        );
        return Ok(());
    }
    let json = engine
        .gen_fn_metadata_to_json(false)
        .map_err(|e| AppError::usage(format!("cannot read the engine's metadata: {e}"), None))?;
    let meta: Value = serde_json::from_str(&json).unwrap_or(Value::Null);
    output::data_line(&markdown(&meta));
    Ok(())
}

/// One section per function name: its signatures, then its doc comment (which carries the example).
pub fn markdown(meta: &Value) -> String {
    let mut functions: Vec<&Value> = meta["functions"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    functions.retain(|f| f["namespace"] != "internal" || f["access"] != "private");
    functions.retain(|f| !f["name"].as_str().unwrap_or("").starts_with("anon$"));
    functions.sort_by_key(|f| f["name"].as_str().unwrap_or("").to_string());
    let mut out = String::from(
        "# azssh function reference\n\nGenerated from the engine's registered functions (`azssh docs`).\n",
    );
    out.push_str(&properties(&functions));
    // Getters are listed above by type; `to_string`/`to_debug` are what `print` uses.
    functions.retain(|f| {
        let name = f["name"].as_str().unwrap_or("");
        !name.starts_with("get$") && name != "to_string" && name != "to_debug"
    });
    let mut last = "";
    for f in &functions {
        let name = f["name"].as_str().unwrap_or("");
        if name != last {
            out.push_str(&format!("\n## `{name}`\n\n"));
            last = name;
        }
        let sig = f["signature"].as_str().unwrap_or(name);
        out.push_str(&format!("```rhai\n{sig}\n```\n"));
        if let Some(comments) = f["docComments"].as_array() {
            for c in comments {
                let text: Vec<&str> = c
                    .as_str()
                    .unwrap_or("")
                    .lines()
                    .map(|l| {
                        l.trim_start()
                            .trim_start_matches("///")
                            .strip_prefix(' ')
                            .unwrap_or(l.trim_start().trim_start_matches("///"))
                    })
                    .collect();
                out.push('\n');
                let text: Vec<String> = text
                    .iter()
                    .map(|l| match l.strip_prefix("# ") {
                        Some(heading) => format!("**{heading}**"),
                        None => l.to_string(),
                    })
                    .collect();
                out.push_str(&text.join("\n"));
                out.push('\n');
            }
        }
    }
    out
}

/// `get$x(_: &mut Vm)` entries as one "Properties" line per type: `Vm`: `id`, `name`, ...
fn properties(functions: &[&Value]) -> String {
    let mut by_type: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for f in functions {
        let name = f["name"].as_str().unwrap_or("");
        let Some(prop) = name.strip_prefix("get$") else {
            continue;
        };
        let ty = f["params"][0]["type"]
            .as_str()
            .unwrap_or("")
            .trim_start_matches("&mut ")
            .rsplit("::")
            .next()
            .unwrap_or("")
            .to_string();
        by_type.entry(ty).or_default().push(format!("`{prop}`"));
    }
    let mut out = String::new();
    if !by_type.is_empty() {
        out.push_str("\n## Properties\n\nRead them as `value.name`, e.g. `v.power_state`.\n\n");
        for (ty, props) in by_type {
            out.push_str(&format!("- `{ty}`: {}\n", props.join(", ")));
        }
    }
    out
}
