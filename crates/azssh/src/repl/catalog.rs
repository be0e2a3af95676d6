//! What the engine can call, read from its own metadata (`gen_fn_metadata_with_ast_to_json`):
//! function names and signatures for completion, hints and `:help`, and the methods and getters
//! each type has. Built from metadata only, so functions other domains register appear by
//! themselves.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rhai::{AST, Engine};
use serde::Deserialize;

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Metadata {
    #[serde(default)]
    custom_types: Vec<CustomType>,
    #[serde(default)]
    functions: Vec<RawFn>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CustomType {
    type_name: String,
    display_name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawFn {
    #[serde(default)]
    full_hash: u64,
    name: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    params: Vec<RawParam>,
    #[serde(default)]
    signature: String,
    #[serde(default)]
    doc_comments: Vec<String>,
    #[serde(rename = "type", default)]
    kind: String,
}

#[derive(Debug, Deserialize)]
struct RawParam {
    #[serde(default)]
    name: Option<String>,
    #[serde(rename = "type", default)]
    typ: Option<String>,
}

/// One registered (or script-defined) function overload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FnInfo {
    pub name: String,
    pub signature: String,
    /// The doc comment without its `///` markers.
    pub doc: String,
    /// The normalised type of the first parameter, which method-call syntax passes as `this`.
    pub receiver: Option<String>,
    pub script: bool,
}

/// The functions an engine offers, indexed for completion.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    by_name: BTreeMap<String, Vec<FnInfo>>,
    /// Names callable as `name(...)`: no operators, getters, setters or indexers.
    callable: Vec<String>,
    /// Receiver type → property names (`get$x`) and method names.
    getters: HashMap<String, BTreeSet<String>>,
    methods: HashMap<String, BTreeSet<String>>,
    /// Rust type name → the name scripts see (`azssh::azure::vm::Vm` → `Vm`).
    type_names: HashMap<String, String>,
}

impl Catalog {
    /// Everything `engine` can call, plus the script functions defined in `ast`.
    pub fn from_engine(engine: &Engine, ast: Option<&AST>) -> Catalog {
        let json = match ast {
            Some(ast) => engine.gen_fn_metadata_with_ast_to_json(ast, true),
            None => engine.gen_fn_metadata_to_json(true),
        };
        match json {
            Ok(json) => Catalog::from_json(&json),
            Err(e) => {
                tracing::debug!("cannot read the engine's metadata: {e}");
                Catalog::default()
            }
        }
    }

    pub fn from_json(json: &str) -> Catalog {
        let meta: Metadata = serde_json::from_str(json).unwrap_or_default();
        let mut catalog = Catalog {
            type_names: meta
                .custom_types
                .into_iter()
                .map(|t| (t.type_name, t.display_name))
                .collect(),
            ..Catalog::default()
        };
        // A function can be listed twice (once per module that holds it): the first listing
        // carries the friendly parameter types.
        let mut seen = std::collections::HashSet::new();
        for f in meta.functions {
            if f.full_hash != 0 && !seen.insert(f.full_hash) {
                continue;
            }
            if f.name.starts_with("anon$") || f.namespace == "internal" && f.name.contains('$') {
                continue;
            }
            let receiver = f
                .params
                .first()
                .and_then(|p| p.typ.as_deref())
                .map(normalise_type)
                .filter(|t| t != "?");
            if let Some(property) = f.name.strip_prefix("get$") {
                if let Some(r) = &receiver {
                    catalog
                        .getters
                        .entry(r.clone())
                        .or_default()
                        .insert(property.to_string());
                }
                continue;
            }
            if f.name.contains('$') || !is_identifier(&f.name) {
                continue;
            }
            if let Some(r) = &receiver {
                catalog
                    .methods
                    .entry(r.clone())
                    .or_default()
                    .insert(f.name.clone());
            }
            let signature = if f.signature.is_empty() {
                describe(&f.name, &f.params)
            } else {
                f.signature.clone()
            };
            let info = FnInfo {
                name: f.name.clone(),
                signature,
                doc: doc_text(&f.doc_comments),
                receiver,
                script: f.kind == "script",
            };
            catalog.by_name.entry(f.name).or_default().push(info);
        }
        catalog.callable = catalog.by_name.keys().cloned().collect();
        catalog
    }

    /// Sorted names callable as `name(...)`.
    pub fn function_names(&self) -> &[String] {
        &self.callable
    }

    pub fn overloads(&self, name: &str) -> &[FnInfo] {
        self.by_name.get(name).map_or(&[], Vec::as_slice)
    }

    /// The name scripts see for a value's `type_name()`.
    pub fn display_type(&self, type_name: &str) -> String {
        match self.type_names.get(type_name) {
            Some(display) => display.clone(),
            None => normalise_type(type_name),
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

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_')
}

fn describe(name: &str, params: &[RawParam]) -> String {
    let list: Vec<String> = params
        .iter()
        .map(|p| match (&p.name, &p.typ) {
            (Some(n), Some(t)) => format!("{n}: {t}"),
            (Some(n), None) => n.clone(),
            (None, Some(t)) => t.clone(),
            (None, None) => "_".into(),
        })
        .collect();
    format!("{name}({})", list.join(", "))
}

fn doc_text(comments: &[String]) -> String {
    comments
        .iter()
        .flat_map(|c| c.lines())
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
mod tests {
    use super::*;

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

    #[test]
    fn registered_functions_carry_signature_and_doc() {
        let c = engine_catalog("");
        assert_eq!(c.overloads("parse_json").len(), 1, "listed once");
        let f = &c.overloads("parse_json")[0];
        assert!(f.signature.contains("text: string"), "{}", f.signature);
        assert!(f.doc.starts_with("Parses JSON text."), "{}", f.doc);
        assert!(c.function_names().iter().any(|n| n == "parse_json"));
        assert!(
            !c.function_names()
                .iter()
                .any(|n| n.contains('$') || n == "+")
        );
    }

    #[test]
    fn script_functions_are_listed() {
        let c = engine_catalog("/// Adds.\nfn add(a, b) { a + b }");
        let f = &c.overloads("add")[0];
        assert!(f.script);
        assert_eq!(f.doc, "Adds.");
    }

    #[test]
    fn maps_have_methods_and_strings_have_getters() {
        let c = engine_catalog("");
        assert!(
            c.methods_of("map").any(|m| m == "keys"),
            "{:?}",
            c.methods.get("map")
        );
        assert!(
            c.getters_of("string").any(|g| g == "len"),
            "{:?}",
            c.getters.keys()
        );
        assert_eq!(c.display_type("i64"), "int");
    }
}
