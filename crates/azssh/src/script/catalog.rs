//! One catalog of what scripts can call, read once from the engine's own metadata: every
//! function (name, module, parameters with types, return type, signature, doc comment, where it
//! comes from), the properties and methods of each type, and the `:help` topics that are not
//! functions (the stdlib modules and the globals a script finds set). `azssh docs`, REPL
//! completion, hints and `:help`, and the "did you mean" of error messages all read this one
//! catalog, so they cannot disagree about what exists.

use std::any::TypeId;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::OnceLock;

use rhai::{AST, Dynamic, Engine};

use crate::script::bundled;

/// Where a function comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// Registered by azssh (`script/api/`).
    Azssh,
    /// Rhai's standard packages (`len`, `keys`, `+`...).
    Standard,
    /// Defined in Rhai: a script, a REPL input, or a module imported as a static module.
    Script,
}

/// One parameter as the registration (or the script) names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub name: Option<String>,
    pub typ: Option<String>,
}

/// One function overload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    pub name: String,
    /// `""` for the global namespace; the alias of a static module (`retry`) otherwise.
    pub namespace: String,
    pub params: Vec<Param>,
    /// Empty when the registration does not say (script functions).
    pub return_type: String,
    /// As rhai's metadata renders it: `parse_json(text: string) -> ?`.
    pub signature: String,
    /// The doc comment without its `///` markers.
    pub doc: String,
    /// The normalised type of the first parameter, which method-call syntax passes as `this`.
    pub receiver: Option<String>,
    pub origin: Origin,
}

impl Function {
    /// `retry::retry` for a module function, the bare name otherwise.
    pub fn qualified_name(&self) -> String {
        if self.namespace.is_empty() {
            self.name.clone()
        } else {
            format!("{}::{}", self.namespace, self.name)
        }
    }

    /// The property a getter (`get$power_state`) reads.
    pub fn property(&self) -> Option<&str> {
        self.name.strip_prefix("get$")
    }

    /// Callable as `name(...)`: no operator, getter, setter, indexer or anonymous closure.
    pub fn is_callable(&self) -> bool {
        is_identifier(&self.name)
    }

    /// What `azssh docs` documents: azssh's own callable functions, less the `to_string` /
    /// `to_debug` overloads that `print` uses.
    pub fn is_documented(&self) -> bool {
        self.origin == Origin::Azssh
            && self.namespace.is_empty()
            && self.is_callable()
            && !matches!(self.name.as_str(), "to_string" | "to_debug")
    }
}

/// Everything an engine (and optionally the script functions of an AST) offers, indexed.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Sorted by name, then by number of parameters, then by signature.
    functions: Vec<Function>,
    /// Global callable name → indexes into `functions`.
    by_name: BTreeMap<String, Vec<usize>>,
    /// The keys of `by_name`, sorted, for prefix search.
    callable: Vec<String>,
    /// Receiver type → property names (`get$x`) and method names.
    getters: HashMap<String, BTreeSet<String>>,
    methods: HashMap<String, BTreeSet<String>>,
    /// A value's type → the receiver type its functions are registered under (`Vm`, `string`).
    types: HashMap<TypeId, String>,
    /// Static module alias → the names of its functions.
    modules: BTreeMap<String, BTreeSet<String>>,
}

impl Catalog {
    /// Everything `engine` can call, plus the script functions defined in `ast`.
    pub fn from_engine(engine: &Engine, ast: Option<&AST>) -> Catalog {
        // rhai's metadata does not say which package a function comes from, only whether the
        // standard packages are included: the first pass names azssh's own (and the static
        // modules'), the second adds the rest as standard.
        let own: HashSet<(String, u64)> = engine
            .collect_fn_metadata(
                None,
                |f| Some((f.namespace.to_string(), f.metadata.hash)),
                false,
            )
            .into_iter()
            .collect();
        // A value's TypeId → the receiver its functions name, by vote: a registration may name
        // its first parameter for what it accepts (`vm: Vm` on a `Map`), the many others do not.
        let mut votes: HashMap<(TypeId, String), usize> = HashMap::new();
        // A package can hold a function another already holds (rhai's packages nest).
        let mut seen = HashSet::new();
        let mut functions: Vec<(usize, Function)> = engine
            .collect_fn_metadata(
                None,
                |f| {
                    let m = f.metadata;
                    let namespace = f.namespace.to_string();
                    let key = (namespace.clone(), m.hash, f.script.is_some());
                    let script = f.script.as_ref();
                    let origin = if script.is_some() {
                        Origin::Script
                    } else if own.contains(&(namespace.clone(), m.hash)) {
                        Origin::Azssh
                    } else {
                        Origin::Standard
                    };
                    let params: Vec<Param> = m.params_info.iter().map(|p| param(p)).collect();
                    let receiver = params
                        .first()
                        .and_then(|p| p.typ.as_deref())
                        .map(normalise_type)
                        .filter(|t| t != "?");
                    let type_id = m.param_types.first().copied();
                    let doc = match script {
                        Some(s) => doc_text(s.comments.iter().copied()),
                        None => doc_text(m.comments.iter().map(|c| c.as_str())),
                    };
                    let function = Function {
                        name: m.name.to_string(),
                        namespace,
                        params,
                        return_type: m.return_type.to_string(),
                        signature: m.gen_signature(Into::into),
                        doc,
                        receiver,
                        origin,
                    };
                    Some((key, m.num_params, function, type_id))
                },
                true,
            )
            .into_iter()
            .filter(|(key, ..)| seen.insert(key.clone()))
            .map(|(_, n, function, type_id)| {
                if let (Some(id), Some(r)) = (type_id, &function.receiver) {
                    *votes.entry((id, r.clone())).or_default() += 1;
                }
                (n, function)
            })
            .collect();
        let mut types: HashMap<TypeId, (String, usize)> = HashMap::new();
        for ((id, receiver), n) in votes {
            let best = types.entry(id).or_insert_with(|| (receiver.clone(), n));
            if n > best.1 || n == best.1 && receiver < best.0 {
                *best = (receiver, n);
            }
        }
        let types = types.into_iter().map(|(id, (r, _))| (id, r)).collect();
        if let Some(ast) = ast {
            functions.extend(ast.iter_functions().map(|s| {
                let params: Vec<Param> = s
                    .params
                    .iter()
                    .map(|p| Param {
                        name: Some((*p).to_string()),
                        typ: None,
                    })
                    .collect();
                let function = Function {
                    name: s.name.to_string(),
                    namespace: String::new(),
                    signature: format!("{}({})", s.name, s.params.join(", ")),
                    params,
                    return_type: String::new(),
                    doc: doc_text(s.comments.iter().copied()),
                    receiver: s.this_type.map(normalise_type),
                    origin: Origin::Script,
                };
                (s.params.len(), function)
            }));
        }
        // rhai's function tables are hash maps whose order changes from run to run: without the
        // signature as the last key, `azssh docs` listed overloads differently on every run.
        functions
            .sort_by(|(n, a), (m, b)| (&a.name, n, &a.signature).cmp(&(&b.name, m, &b.signature)));
        let mut catalog = Catalog {
            types,
            ..Catalog::default()
        };
        for (_, f) in functions {
            catalog.add(f);
        }
        catalog.callable = catalog.by_name.keys().cloned().collect();
        catalog
    }

    /// The catalog of the API `engine::build` registers, built once per process from the first
    /// engine asked about: every engine it builds registers the same functions (settings and
    /// limits change what they do, not what exists), so an error in the 500th fleet run does
    /// not walk the metadata again.
    pub fn api(engine: &Engine) -> &'static Catalog {
        static API: OnceLock<Catalog> = OnceLock::new();
        API.get_or_init(|| Catalog::from_engine(engine, None))
    }

    fn add(&mut self, f: Function) {
        let index = self.functions.len();
        if let Some(property) = f.property() {
            if let Some(r) = &f.receiver {
                self.getters
                    .entry(r.clone())
                    .or_default()
                    .insert(property.to_string());
            }
        } else if f.is_callable() {
            if !f.namespace.is_empty() {
                self.modules
                    .entry(f.namespace.clone())
                    .or_default()
                    .insert(f.name.clone());
            } else {
                if let Some(r) = &f.receiver {
                    self.methods
                        .entry(r.clone())
                        .or_default()
                        .insert(f.name.clone());
                }
                self.by_name.entry(f.name.clone()).or_default().push(index);
            }
        }
        self.functions.push(f);
    }

    /// Every overload, operators and getters included, sorted by name.
    pub fn functions(&self) -> &[Function] {
        &self.functions
    }

    /// Sorted names callable as `name(...)` in the global namespace.
    pub fn function_names(&self) -> &[String] {
        &self.callable
    }

    /// The overloads of a callable name: `sleep`, or `retry::retry` for a module's.
    pub fn overloads(&self, name: &str) -> Vec<&Function> {
        match name.rsplit_once("::") {
            Some((namespace, name)) => self
                .functions
                .iter()
                .filter(|f| f.namespace == namespace && f.name == name && f.is_callable())
                .collect(),
            None => self
                .by_name
                .get(name)
                .into_iter()
                .flatten()
                .filter_map(|&i| self.functions.get(i))
                .collect(),
        }
    }

    /// Names a mistyped call may have meant: every callable function but rhai's standard
    /// library (its many short names would drown azssh's), module functions qualified.
    pub fn suggestible(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .functions
            .iter()
            .filter(|f| f.origin != Origin::Standard && f.is_callable())
            .map(Function::qualified_name)
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// The type a value's functions are registered under, as scripts name it: `Vm`, `map`,
    /// `string`. rhai names its own types (`i64`, `map`, `Fn`) but a custom type by its Rust
    /// path (`azssh::…::ScriptSession`), which only the registrations translate (`Session`).
    pub fn type_of(&self, value: &Dynamic) -> String {
        let rust_name = value.type_name();
        match self.types.get(&value.type_id()) {
            Some(t) if rust_name.contains("::") => t.clone(),
            _ => normalise_type(rust_name),
        }
    }

    /// Properties readable as `value.name` on a value of (normalised) type `typ`.
    pub fn getters_of(&self, typ: &str) -> impl Iterator<Item = &str> {
        self.getters
            .get(typ)
            .into_iter()
            .flatten()
            .map(String::as_str)
    }

    /// Functions callable as `value.name(...)` on a value of (normalised) type `typ`.
    pub fn methods_of(&self, typ: &str) -> impl Iterator<Item = &str> {
        self.methods
            .get(typ)
            .into_iter()
            .flatten()
            .map(String::as_str)
    }

    /// Static modules (`import "azssh/retry" as retry;` in the REPL) and their functions.
    pub fn modules(&self) -> impl Iterator<Item = (&str, &BTreeSet<String>)> {
        self.modules
            .iter()
            .map(|(alias, names)| (alias.as_str(), names))
    }
}

/// The globals scripts see without declaring them, and what sets them (`:help ARGS`).
pub const GLOBALS: &[(&str, &str)] = &[
    (
        "ARGS",
        "ARGS: map (constant)\n\nThe script's arguments: `azssh run FILE --arg key=value` (values are JSON when they parse, else strings),\n`azssh repl --arg key=value` here, and under `azssh fleet` also `ARGS.vm`. Empty when none were given.\n\n    let port = ARGS.port ?? 22;",
    ),
    (
        "vm",
        "vm: Vm (fleet runs only)\n\nUnder `azssh fleet`, the VM this run is for (also `ARGS.vm`). In the REPL and under `azssh run`,\n`vm(resource_group, name)` is the function that looks one up (`:help vm()`).",
    ),
];

/// A bundled stdlib module (`azssh/retry`), for `:help retry` before anything imports it.
#[derive(Debug, Clone)]
pub struct StdlibModule {
    pub name: &'static str,
    /// Its `//!` line.
    pub description: String,
    /// Its functions, namespace set to the module's name.
    pub functions: Vec<Function>,
}

/// The stdlib modules with their functions, parsed (never run) from the embedded sources once.
pub fn stdlib() -> &'static [StdlibModule] {
    static STDLIB: OnceLock<Vec<StdlibModule>> = OnceLock::new();
    STDLIB.get_or_init(|| {
        let engine = parser();
        bundled::STDLIB
            .iter()
            .map(|(name, source)| StdlibModule {
                name,
                description: bundled::description(source),
                functions: match engine.compile(source) {
                    Ok(ast) => Catalog::from_engine(&engine, Some(&ast))
                        .functions
                        .into_iter()
                        .filter(|f| f.origin == Origin::Script)
                        .map(|f| Function {
                            namespace: (*name).to_string(),
                            ..f
                        })
                        .collect(),
                    Err(e) => {
                        tracing::debug!("stdlib module `{name}` does not parse: {e}");
                        Vec::new()
                    }
                },
            })
            .collect()
    })
}

/// A bare engine to parse the embedded modules, with the script limits' expression depth (the
/// raw engine's own default is shallower than the product's).
fn parser() -> Engine {
    let mut engine = Engine::new_raw();
    let depth = crate::script::engine::Limits::DEFAULT.max_expr_depth;
    engine.set_max_expr_depths(depth, depth);
    engine
}

/// Every `:help` topic that is not a function of the engine: globals, stdlib modules and their
/// `module::function`s (for completion and "did you mean").
pub fn help_topics() -> Vec<String> {
    let mut names: Vec<String> = GLOBALS.iter().map(|(n, _)| (*n).to_string()).collect();
    for module in stdlib() {
        names.push(module.name.to_string());
        names.extend(module.functions.iter().map(Function::qualified_name));
    }
    names
}

/// rhai spells one type several ways (`&mut Map`, `Map`, `map`; `i64`, `INT`, `int`...).
pub fn normalise_type(t: &str) -> String {
    let t = t.trim().trim_start_matches("&mut ").trim_start_matches('&');
    match t {
        "Map" | "map" | "rhai::Map" => "map".into(),
        "Array" | "array" | "rhai::Array" => "array".into(),
        "str" | "String" | "ImmutableString" | "string" | "&str | ImmutableString | String" => {
            "string".into()
        }
        "INT" | "i64" | "int" => "int".into(),
        "FLOAT" | "f64" | "float" => "float".into(),
        "Dynamic" | "?" | "" => "?".into(),
        "Blob" | "blob" => "blob".into(),
        other => other.rsplit("::").next().unwrap_or(other).to_string(),
    }
}

/// `"text: string"`, `"_: &mut Vm"`, `"?"`: a registration's parameter description.
fn param(info: &str) -> Param {
    let (name, typ) = info.split_once(':').unwrap_or((info, ""));
    let some = |s: &str| match s.trim() {
        "" | "?" | "_" => None,
        s => Some(s.to_string()),
    };
    Param {
        name: some(name),
        typ: some(typ),
    }
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_')
}

fn doc_text<'a>(comments: impl Iterator<Item = &'a str>) -> String {
    comments
        .flat_map(str::lines)
        .map(|l| {
            let l = l.trim_start();
            let l = l
                .strip_prefix("///")
                .or_else(|| l.strip_prefix("/**"))
                .unwrap_or(l);
            l.strip_prefix(' ').unwrap_or(l).trim_end_matches("*/")
        })
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::script::bridge::{Bridge, Cancel};
    use crate::script::context::{ScriptContext, Settings};
    use crate::script::engine::{self, Limits};

    fn engine_catalog(script: &str) -> Catalog {
        let mut engine = Engine::new();
        rhai::FuncRegistration::new("parse_json")
            .with_comments([
                "/// Parses JSON text.\n/// # Example\n/// ```rhai\n/// parse_json(\"1\")\n/// ```",
            ])
            .with_params_info(["text: string", "?"])
            .register_into_engine(&mut engine, |_t: &str| rhai::Dynamic::UNIT);
        let ast = engine.compile(script).unwrap();
        Catalog::from_engine(&engine, Some(&ast))
    }

    /// The product's engine, as `azssh run` builds it (also used by `commands::docs`' tests).
    pub(crate) fn product_catalog() -> Catalog {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let ctx = Arc::new(ScriptContext::new(
            Bridge::new(rt.handle().clone(), Cancel::new(None)),
            Settings::default(),
            Limits::default(),
        ));
        Catalog::from_engine(&engine::build(&ctx), None)
    }

    #[test]
    fn registered_functions_carry_signature_and_doc() {
        let c = engine_catalog("");
        assert_eq!(c.overloads("parse_json").len(), 1, "listed once");
        let f = c.overloads("parse_json")[0];
        assert!(
            f.signature.starts_with("parse_json(text: string)"),
            "{}",
            f.signature
        );
        assert_eq!(f.origin, Origin::Azssh);
        assert_eq!(f.params[0].name.as_deref(), Some("text"));
        assert!(f.doc.starts_with("Parses JSON text."), "{}", f.doc);
        assert!(c.function_names().iter().any(|n| n == "parse_json"));
        assert!(
            !c.function_names()
                .iter()
                .any(|n| n.contains('$') || n == "+")
        );
        assert!(
            c.overloads("len")
                .iter()
                .all(|f| f.origin == Origin::Standard)
        );
    }

    #[test]
    fn script_functions_are_listed() {
        let c = engine_catalog("/// Adds.\nfn add(a, b) { a + b }");
        let f = c.overloads("add")[0];
        assert_eq!(f.origin, Origin::Script);
        assert_eq!(f.doc, "Adds.");
        assert_eq!(f.signature, "add(a, b)");
        assert!(c.suggestible().contains(&"add".to_string()));
        assert!(
            !c.suggestible().contains(&"len".to_string()),
            "no standard names"
        );
    }

    #[test]
    fn maps_have_methods_and_strings_have_getters() {
        let c = engine_catalog("");
        assert!(c.methods_of("map").any(|m| m == "keys"));
        assert!(c.getters_of("string").any(|g| g == "len"));
        assert_eq!(c.type_of(&Dynamic::from(3_i64)), "int");
        assert_eq!(c.type_of(&Dynamic::from("x")), "string");
    }

    #[test]
    fn static_modules_are_listed_under_their_alias() {
        let mut engine = Engine::new();
        let ast = engine.compile("/// Twice.\nfn twice(n) { n * 2 }").unwrap();
        let module = rhai::Module::eval_ast_as_new(rhai::Scope::new(), &ast, &engine).unwrap();
        engine.register_static_module("maths", module.into());
        let c = Catalog::from_engine(&engine, None);
        let names: Vec<&String> = c.modules().flat_map(|(_, n)| n).collect();
        assert_eq!(c.modules().map(|(a, _)| a).collect::<Vec<_>>(), ["maths"]);
        assert_eq!(names, ["twice"]);
        assert_eq!(c.overloads("maths::twice")[0].doc, "Twice.");
        assert!(c.overloads("twice").is_empty(), "not global");
    }

    /// Every function azssh registers (rhai's own signature list is the independent witness)
    /// is in the catalog, and every one `azssh docs` documents has a doc comment.
    #[test]
    fn every_registered_function_appears_with_its_doc_comment() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let ctx = Arc::new(ScriptContext::new(
            Bridge::new(rt.handle().clone(), Cancel::new(None)),
            Settings::default(),
            Limits::default(),
        ));
        let engine = engine::build(&ctx);
        let c = Catalog::from_engine(&engine, None);
        let registered = engine.gen_fn_signatures(false);
        assert!(registered.len() > 40, "{}", registered.len());
        for sig in &registered {
            let name = sig.split('(').next().unwrap_or(sig);
            assert!(
                c.functions()
                    .iter()
                    .any(|f| f.name == name && f.origin == Origin::Azssh),
                "`{sig}` is missing from the catalog, or not as azssh's"
            );
        }
        // Overloads share one comment (`sleep(int)` carries it, `sleep(float)` does not).
        let documented: BTreeSet<&str> = c
            .functions()
            .iter()
            .filter(|f| f.is_documented())
            .map(|f| f.name.as_str())
            .collect();
        assert!(documented.len() >= 40, "{}", documented.len());
        for name in documented {
            let overloads = c.overloads(name);
            let doc = overloads.iter().map(|f| &f.doc).find(|d| !d.is_empty());
            let Some(doc) = doc else {
                panic!("`{name}` has no doc comment");
            };
            assert!(!doc.contains("///"), "{name}: markers left in\n{doc}");
        }
    }

    #[test]
    fn vm_has_a_method_and_a_property() {
        let c = product_catalog();
        assert!(c.getters_of("Vm").any(|p| p == "power_state"));
        assert!(c.methods_of("Vm").any(|m| m == "audit_ssh"));
        assert!(
            c.getters_of("Session").any(|p| p == "host"),
            "display name, not ScriptSession"
        );
        let audit = c.overloads("audit_ssh");
        assert!(
            audit
                .iter()
                .any(|f| f.signature.starts_with("audit_ssh(vm: Vm"))
        );
    }

    #[test]
    fn stdlib_topics_are_parsed_with_their_docs() {
        let retry = stdlib().iter().find(|m| m.name == "retry").unwrap();
        assert!(!retry.description.is_empty());
        let f = retry.functions.iter().find(|f| f.name == "retry").unwrap();
        assert_eq!(f.qualified_name(), "retry::retry");
        assert!(!f.doc.is_empty());
        for module in stdlib() {
            assert!(
                !module.functions.is_empty(),
                "{} parsed to nothing",
                module.name
            );
        }
        let topics = help_topics();
        assert!(topics.contains(&"ARGS".to_string()));
        assert!(topics.contains(&"retry::retry".to_string()));
    }
}
