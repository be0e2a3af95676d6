//! `:help` beyond the engine's own functions: the stdlib modules (`:help retry`, `:help
//! retry::retry`, `:help azssh/retry`) and the globals a script may find set (`ARGS`, `vm`),
//! rendered from the script catalog's topics.

use crate::script::catalog::{self, GLOBALS};

/// Help for `name`: a global, a stdlib module, or `module::function`.
pub fn help(name: &str) -> Option<String> {
    let name = name.trim();
    if let Some((_, text)) = GLOBALS.iter().find(|(n, _)| *n == name) {
        return Some((*text).to_string());
    }
    let name = name
        .strip_prefix(crate::script::resolver::STDLIB_PREFIX)
        .unwrap_or(name);
    match name.split_once("::") {
        Some((module, function)) => function_help(module, function),
        None => module_help(name),
    }
}

fn module(name: &str) -> Option<&'static catalog::StdlibModule> {
    catalog::stdlib().iter().find(|m| m.name == name)
}

fn module_help(name: &str) -> Option<String> {
    let module = module(name)?;
    let mut out = format!(
        "module `azssh/{name}`: {}\n\n    import \"azssh/{name}\" as {name};\n\n",
        module.description
    );
    for f in &module.functions {
        let first = f.doc.lines().next().unwrap_or_default();
        out.push_str(&format!("  {name}::{}\n      {first}\n", f.signature));
    }
    Some(out.trim_end().to_string())
}

fn function_help(module_name: &str, function: &str) -> Option<String> {
    let function = function.trim_end_matches("()");
    let f = module(module_name)?
        .functions
        .iter()
        .find(|f| f.name == function)?;
    let mut out = format!("{module_name}::{}", f.signature);
    if !f.doc.is_empty() {
        out.push_str("\n\n");
        out.push_str(&f.doc);
    }
    out.push_str(&format!(
        "\n\n(from `import \"azssh/{module_name}\" as {module_name};`)"
    ));
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stdlib_function_shows_its_signature_and_doc() {
        let text = help("retry::retry").unwrap();
        assert!(
            text.starts_with("retry::retry(f, attempts, delay_seconds)"),
            "{text}"
        );
        assert!(
            text.contains("exponential") || text.contains("doubling"),
            "{text}"
        );
    }

    #[test]
    fn a_module_lists_its_functions() {
        let text = help("azssh/target").unwrap();
        assert!(
            text.contains("import \"azssh/target\" as target;"),
            "{text}"
        );
        assert!(text.contains("target::vm_from(args)"), "{text}");
    }

    #[test]
    fn globals_are_explained() {
        assert!(help("ARGS").unwrap().contains("--arg key=value"));
        assert!(help("nope").is_none());
        assert!(catalog::help_topics().contains(&"retry::retry".to_string()));
    }
}
