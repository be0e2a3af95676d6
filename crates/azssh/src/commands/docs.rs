//! `azssh docs`: the function reference rendered from the script catalog (the engine's own
//! metadata, read once), so it can never drift from what is registered nor from what the REPL
//! completes; `--definitions DIR` writes rhai's `.d.rhai` files for editors.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::cli::{DocsArgs, GlobalArgs};
use crate::error::AppError;
use crate::output;
use crate::script::bridge::{Bridge, Cancel};
use crate::script::catalog::{Catalog, Origin};
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
    output::data_line(&markdown(&Catalog::from_engine(&engine, None)));
    Ok(())
}

/// One section per function name: its signatures, then its doc comment (which carries the example).
pub fn markdown(catalog: &Catalog) -> String {
    let mut out = String::from(
        "# azssh function reference\n\nGenerated from the engine's registered functions (`azssh docs`).\n",
    );
    out.push_str(&properties(catalog));
    let mut last = "";
    for f in catalog.functions().iter().filter(|f| f.is_documented()) {
        if f.name != last {
            out.push_str(&format!("\n## `{}`\n\n", f.name));
            last = &f.name;
        }
        out.push_str(&format!("```rhai\n{}\n```\n", f.signature));
        if !f.doc.is_empty() {
            let text: Vec<String> = f
                .doc
                .lines()
                .map(|l| match l.strip_prefix("# ") {
                    Some(heading) => format!("**{heading}**"),
                    None => l.to_string(),
                })
                .collect();
            out.push('\n');
            out.push_str(&text.join("\n"));
            out.push('\n');
        }
    }
    out
}

/// azssh's getters as one "Properties" line per type: `Vm`: `id`, `name`, ...
fn properties(catalog: &Catalog) -> String {
    let mut by_type: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for f in catalog.functions() {
        if let (Origin::Azssh, Some(prop), Some(ty)) = (f.origin, f.property(), &f.receiver) {
            by_type.entry(ty).or_default().insert(prop);
        }
    }
    let mut out = String::new();
    if !by_type.is_empty() {
        out.push_str("\n## Properties\n\nRead them as `value.name`, e.g. `v.power_state`.\n\n");
        for (ty, props) in by_type {
            let props: Vec<String> = props.iter().map(|p| format!("`{p}`")).collect();
            out.push_str(&format!("- `{ty}`: {}\n", props.join(", ")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use rhai::Scope;

    use crate::repl::complete::{self, Context};
    use crate::repl::names::NameCache;

    use crate::script::catalog::tests::product_catalog;

    /// Docs and REPL completion once read the metadata separately and drifted: the functions
    /// `azssh docs` has a section for are exactly azssh's functions Tab offers (less the
    /// `to_string`/`to_debug` hooks `print` uses, which docs leaves out on purpose).
    #[test]
    fn docs_and_completion_offer_the_same_functions() {
        let catalog = product_catalog();
        let text = markdown(&catalog);
        let documented: BTreeSet<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("## `")?.strip_suffix('`'))
            .collect();
        assert!(documented.len() >= 40, "{documented:?}");
        let (scope, names) = (Scope::new(), NameCache::default());
        let cx = Context {
            catalog: &catalog,
            scope: &scope,
            names: &names,
        };
        let mut completed = BTreeSet::new();
        for first in ('a'..='z').chain(['_']) {
            let typed = first.to_string();
            for candidate in complete::complete(&typed, typed.len(), &cx).1 {
                let Some(name) = candidate.replacement.strip_suffix('(') else {
                    continue;
                };
                let own = catalog
                    .overloads(name)
                    .iter()
                    .any(|f| f.origin == Origin::Azssh);
                if own && !matches!(name, "to_string" | "to_debug") {
                    completed.insert(name.to_string());
                }
            }
        }
        let completed: BTreeSet<&str> = completed.iter().map(String::as_str).collect();
        assert_eq!(documented, completed);
    }

    /// rhai's function tables iterate in an order that changes from run to run; the reference
    /// lists overloads by parameter count, then by signature, so it does not.
    #[test]
    fn overloads_are_listed_in_a_fixed_order() {
        let text = markdown(&product_catalog());
        let signatures: Vec<&str> = text
            .split("\n## `")
            .find(|s| s.starts_with("close_port`"))
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("close_port(vm: "))
            .collect();
        assert_eq!(
            signatures,
            [
                "close_port(vm: Vm, name: string) -> bool",
                "close_port(vm: Vm, options: map) -> bool"
            ]
        );
    }

    #[test]
    fn properties_are_listed_by_type() {
        let text = markdown(&product_catalog());
        let vm = text.lines().find(|l| l.starts_with("- `Vm`: ")).unwrap();
        assert!(vm.contains("`power_state`"), "{vm}");
        assert!(text.contains("- `Session`: "), "{text}");
        assert!(!text.contains("get$"), "getters are not sections");
    }
}
