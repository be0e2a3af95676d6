//! Tab completion, as a pure function of the line, the cursor and what the session knows:
//! functions and variables; methods, getters and map keys after `.`; module functions after
//! `alias::`; stdlib modules inside `import "`; resource groups and VM names inside `vm("`;
//! file paths inside other strings; meta commands after `:`. Nothing here evaluates code or
//! touches the network.

use std::path::Path;

use rhai::{Dynamic, Map, Scope};

use crate::repl::input::{self, OpenString};
use crate::repl::meta;
use crate::repl::names::NameCache;
use crate::script::catalog::{self, Catalog};
use crate::script::resolver::{STDLIB_PREFIX, stdlib_names};

const KEYWORDS: &[&str] = &[
    "let", "const", "fn", "if", "else", "for", "in", "while", "loop", "do", "until", "break",
    "continue", "return", "throw", "try", "catch", "import", "export", "as", "true", "false",
    "switch", "private", "this", "global",
];

/// One proposal: what the list shows, and what replaces the word being completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub display: String,
    pub replacement: String,
}

impl Candidate {
    fn same(text: &str) -> Self {
        Candidate {
            display: text.to_string(),
            replacement: text.to_string(),
        }
    }

    fn function(name: &str) -> Self {
        Candidate {
            display: name.to_string(),
            replacement: format!("{name}("),
        }
    }
}

/// What completion may read.
pub struct Context<'a> {
    pub catalog: &'a Catalog,
    pub scope: &'a Scope<'static>,
    pub names: &'a NameCache,
}

/// Candidates for the word ending at byte `pos` of `line`, and the byte where that word starts.
pub fn complete(line: &str, pos: usize, cx: &Context) -> (usize, Vec<Candidate>) {
    let Some(before) = line.get(..pos) else {
        return (pos, Vec::new());
    };
    if before.trim_start().starts_with(':') {
        return complete_meta(before, cx);
    }
    let scan = input::scan(before);
    if let Some(string) = scan.string {
        return complete_in_string(before, &scan, string, cx);
    }
    if scan.in_comment {
        return (pos, Vec::new());
    }
    let start = word_start(before);
    let word = &before[start..];
    let head = &before[..start];
    let mut out = if let Some(receiver) = head.strip_suffix('.') {
        members(receiver, word, cx)
    } else if let Some(alias) = head.strip_suffix("::") {
        module_functions(alias, word, cx)
    } else if word.is_empty() {
        Vec::new()
    } else {
        identifiers(word, cx)
    };
    out.sort_by(|a, b| a.display.cmp(&b.display));
    out.dedup_by(|a, b| a.display == b.display);
    (start, out)
}

fn word_start(text: &str) -> usize {
    text.char_indices()
        .rev()
        .take_while(|(_, c)| c.is_alphanumeric() || *c == '_')
        .last()
        .map_or(text.len(), |(i, _)| i)
}

fn identifiers(word: &str, cx: &Context) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = cx
        .scope
        .iter_raw()
        .map(|(name, ..)| name)
        .filter(|n| n.starts_with(word))
        .map(Candidate::same)
        .collect();
    let names = cx.catalog.function_names();
    let first = names.partition_point(|n| n.as_str() < word);
    out.extend(
        names[first..]
            .iter()
            .take_while(|n| n.starts_with(word))
            .map(|n| Candidate::function(n)),
    );
    out.extend(
        KEYWORDS
            .iter()
            .filter(|k| k.starts_with(word))
            .map(|k| Candidate::same(k)),
    );
    out.extend(
        cx.catalog
            .modules()
            .filter(|(alias, _)| alias.starts_with(word))
            .map(|(alias, _)| Candidate::same(&format!("{alias}::"))),
    );
    out
}

fn module_functions(alias: &str, word: &str, cx: &Context) -> Vec<Candidate> {
    let alias = &alias[word_start(alias)..];
    cx.catalog
        .modules()
        .filter(|(a, _)| *a == alias)
        .flat_map(|(_, functions)| functions)
        .filter(|f| f.starts_with(word))
        .map(|f| Candidate::function(f))
        .collect()
}

/// `receiver.word`: the receiver is a variable, possibly followed by map fields (`v.tags.`).
fn members(receiver: &str, word: &str, cx: &Context) -> Vec<Candidate> {
    let start = receiver
        .char_indices()
        .rev()
        .take_while(|(_, c)| c.is_alphanumeric() || *c == '_' || *c == '.')
        .last()
        .map_or(receiver.len(), |(i, _)| i);
    let mut path = receiver[start..].split('.');
    let Some(root) = path.next().and_then(|var| cx.scope.get(var)) else {
        return Vec::new();
    };
    // Clone only nested fields: the root may be a 10 000-VM array.
    let mut nested: Option<Dynamic> = None;
    for field in path {
        match field_of(nested.as_ref().unwrap_or(root), field) {
            Some(v) => nested = Some(v),
            None => return Vec::new(),
        }
    }
    let value = nested.as_ref().unwrap_or(root);
    let typ = cx.catalog.type_of(value);
    let mut out = Vec::new();
    if let Some(map) = value.read_lock::<Map>() {
        out.extend(
            map.keys()
                .filter(|k| k.starts_with(word) && is_plain_key(k))
                .map(|k| Candidate::same(k)),
        );
    }
    out.extend(
        cx.catalog
            .getters_of(&typ)
            .filter(|g| g.starts_with(word))
            .map(Candidate::same),
    );
    out.extend(
        cx.catalog
            .methods_of(&typ)
            .filter(|m| m.starts_with(word))
            .map(Candidate::function),
    );
    out
}

fn field_of(value: &Dynamic, field: &str) -> Option<Dynamic> {
    if let Some(map) = value.read_lock::<Map>() {
        return map.get(field).cloned();
    }
    crate::script::api::as_map(value).and_then(|m| m.get(field).cloned())
}

fn is_plain_key(key: &str) -> bool {
    key.chars().all(|c| c.is_alphanumeric() || c == '_')
        && !key.starts_with(|c: char| c.is_ascii_digit())
}

fn complete_meta(before: &str, cx: &Context) -> (usize, Vec<Candidate>) {
    let trimmed = before.trim_start();
    let offset = before.len() - trimmed.len();
    match trimmed.split_once(char::is_whitespace) {
        None => (
            offset,
            meta::commands_starting(trimmed)
                .into_iter()
                .map(Candidate::same)
                .collect(),
        ),
        Some((":help" | ":h", arg)) => {
            let arg = arg.trim_start();
            let start = before.len() - arg.len();
            // What `:help` answers: functions, then stdlib modules and globals.
            let mut out: Vec<Candidate> = cx
                .catalog
                .function_names()
                .iter()
                .cloned()
                .chain(catalog::help_topics())
                .filter(|n| n.starts_with(arg))
                .map(|n| Candidate::same(&n))
                .collect();
            out.sort_by(|a, b| a.display.cmp(&b.display));
            out.dedup();
            (start, out)
        }
        Some((":load" | ":save" | ":l", arg)) => {
            let arg = arg.trim_start();
            (before.len() - arg.len(), paths(arg))
        }
        Some(_) => (before.len(), Vec::new()),
    }
}

fn complete_in_string(
    before: &str,
    scan: &input::Scan,
    string: OpenString,
    cx: &Context,
) -> (usize, Vec<Candidate>) {
    let start = string.content_start;
    let typed = &before[start..];
    let ahead = before[..start - 1].trim_end();
    if ahead.ends_with("import") {
        let out = stdlib_names()
            .into_iter()
            .map(|n| format!("{STDLIB_PREFIX}{n}"))
            .filter(|n| n.starts_with(typed))
            .map(|n| Candidate::same(&n))
            .collect();
        return (start, out);
    }
    if let Some(paren) = scan.innermost_paren()
        && let Some(callee) = input::callee(before, paren)
        && matches!(callee, "vm" | "vms")
    {
        let (index, args) = input::arguments(before, paren, start - 1);
        let names: Vec<&str> = match (index, args.first().and_then(|a| input::string_literal(a))) {
            (0, _) => cx.names.groups(typed),
            (1, Some(group)) if callee == "vm" => cx.names.vms(group, typed),
            _ => Vec::new(),
        };
        let mut out: Vec<Candidate> = names.into_iter().map(Candidate::same).collect();
        // A VM's name typed where its group goes (`vm("web-st`): complete both arguments.
        if index == 0 && callee == "vm" && !typed.is_empty() {
            let quote = &before[start - 1..start];
            out.extend(
                cx.names
                    .vms_anywhere(typed)
                    .into_iter()
                    .map(|(group, vm)| Candidate {
                        display: format!("{vm} (in {group})"),
                        replacement: format!("{group}{quote}, {quote}{vm}{quote}"),
                    }),
            );
        }
        return (start, out);
    }
    (start, paths(typed))
}

/// Files and directories whose path starts with `typed` (directories end with `/`).
fn paths(typed: &str) -> Vec<Candidate> {
    let (dir, prefix) = match typed.rfind('/') {
        Some(i) => (&typed[..=i], &typed[i + 1..]),
        None => ("", typed),
    };
    let expanded = match dir.strip_prefix("~/") {
        Some(rest) => dirs::home_dir().map(|h| h.join(rest)),
        None => Some(Path::new(if dir.is_empty() { "." } else { dir }).to_path_buf()),
    };
    let Some(Ok(entries)) = expanded.map(std::fs::read_dir) else {
        return Vec::new();
    };
    let mut out: Vec<Candidate> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            if !name.starts_with(prefix) || (prefix.is_empty() && name.starts_with('.')) {
                return None;
            }
            let slash = if e.path().is_dir() { "/" } else { "" };
            Some(Candidate {
                display: format!("{name}{slash}"),
                replacement: format!("{dir}{name}{slash}"),
            })
        })
        .collect();
    out.sort_by(|a, b| a.display.cmp(&b.display));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two script functions, and the stdlib's `retry` imported as `retry` (as the REPL does).
    fn catalog() -> Catalog {
        let mut engine = rhai::Engine::new();
        let depth = crate::script::engine::Limits::DEFAULT.max_expr_depth;
        engine.set_max_expr_depths(depth, depth);
        let retry = engine
            .compile(crate::script::bundled::stdlib("retry").unwrap())
            .unwrap();
        let module = rhai::Module::eval_ast_as_new(Scope::new(), &retry, &engine).unwrap();
        engine.register_static_module("retry", module.into());
        let ast = engine
            .compile("fn parse_json(text) { text } fn parse_jump() {}")
            .unwrap();
        Catalog::from_engine(&engine, Some(&ast))
    }

    fn run(line: &str, scope: &Scope<'static>, names: &NameCache) -> (usize, Vec<String>) {
        let catalog = catalog();
        let cx = Context {
            catalog: &catalog,
            scope,
            names,
        };
        let (start, c) = complete(line, line.len(), &cx);
        (start, c.into_iter().map(|c| c.replacement).collect())
    }

    #[test]
    fn function_names_complete_with_an_open_paren() {
        let (start, c) = run("let x = parse_j", &Scope::new(), &NameCache::default());
        assert_eq!(start, 8);
        assert_eq!(c, vec!["parse_json(", "parse_jump("]);
    }

    #[test]
    fn map_keys_and_map_methods_after_a_dot() {
        let mut scope = Scope::new();
        let mut m = Map::new();
        m.insert("power_state".into(), "running".into());
        m.insert("name".into(), "web01".into());
        scope.push("v", m);
        let (_, c) = run("v.po", &scope, &NameCache::default());
        assert_eq!(c, vec!["power_state"]);
        let (_, c) = run("v.ke", &scope, &NameCache::default());
        assert_eq!(c, vec!["keys("]);
    }

    #[derive(Clone)]
    struct Probe;

    #[test]
    fn custom_type_getters_and_methods_come_from_metadata() {
        let mut engine = rhai::Engine::new();
        engine
            .register_type_with_name::<Probe>("Probe")
            .register_get("power_state", |_: &mut Probe| "running".to_string())
            .register_fn("refresh", |_: &mut Probe| ());
        let catalog = Catalog::from_engine(&engine, None);
        let mut scope = Scope::new();
        scope.push("p", Probe);
        let names = NameCache::default();
        let cx = Context {
            catalog: &catalog,
            scope: &scope,
            names: &names,
        };
        let got = |line: &str| -> Vec<String> {
            complete(line, line.len(), &cx)
                .1
                .into_iter()
                .map(|c| c.replacement)
                .collect()
        };
        assert_eq!(got("p.po"), vec!["power_state"]);
        assert_eq!(got("p.ref"), vec!["refresh("]);
    }

    #[test]
    fn nested_map_fields_resolve() {
        let mut scope = Scope::new();
        let mut inner = Map::new();
        inner.insert("env".into(), "prod".into());
        let mut m = Map::new();
        m.insert("tags".into(), inner.into());
        scope.push("v", m);
        let (_, c) = run("v.tags.e", &scope, &NameCache::default());
        assert_eq!(c, vec!["env"]);
    }

    #[test]
    fn vm_arguments_come_from_the_name_cache() {
        let mut names = NameCache::default();
        names.insert("rg-web", "web01");
        names.insert("rg-web", "web02");
        names.insert("rg-db", "db01");
        let (start, c) = run("vm(\"rg-w", &Scope::new(), &names);
        assert_eq!((start, c), (4, vec!["rg-web".to_string()]));
        let (_, c) = run("let v = vm(\"rg-web\", \"web", &Scope::new(), &names);
        assert_eq!(c, vec!["web01", "web02"]);
    }

    #[test]
    fn a_vm_name_in_the_first_argument_completes_group_and_name() {
        let mut names = NameCache::default();
        names.insert("rg-web", "web-staging");
        names.insert("rg-db", "db01");
        let (start, c) = run("vm(\"web-st", &Scope::new(), &names);
        assert_eq!(start, 4);
        assert_eq!(c, vec!["rg-web\", \"web-staging\"".to_string()]);
    }

    #[test]
    fn stdlib_modules_after_import() {
        let (_, c) = run("import \"azssh/re", &Scope::new(), &NameCache::default());
        assert_eq!(c, vec!["azssh/retry"]);
        let (_, c) = run("retry::re", &Scope::new(), &NameCache::default());
        assert_eq!(c, vec!["retry("]);
        let (_, c) = run("let r = ret", &Scope::new(), &NameCache::default());
        assert!(c.contains(&"retry::".to_string()), "{c:?}");
    }

    #[test]
    fn meta_commands_and_help_topics() {
        let (_, c) = run(":he", &Scope::new(), &NameCache::default());
        assert_eq!(c, vec![":help"]);
        let (start, c) = run(":help parse_ju", &Scope::new(), &NameCache::default());
        assert_eq!((start, c), (6, vec!["parse_jump".to_string()]));
        let (_, c) = run(":help AR", &Scope::new(), &NameCache::default());
        assert_eq!(c, vec!["ARGS"]);
    }

    #[test]
    fn file_paths_inside_strings() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("deploy.rhai"), "").unwrap();
        let typed = format!("{}/dep", dir.path().display());
        let (_, c) = run(
            &format!("let f = \"{typed}"),
            &Scope::new(),
            &NameCache::default(),
        );
        assert_eq!(c, vec![format!("{}/deploy.rhai", dir.path().display())]);
    }
}
