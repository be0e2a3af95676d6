//! Azure Resource Graph `POST /providers/Microsoft.ResourceGraph/resources`: a small KQL subset
//! over the world's VMs, NICs, public IPs and NSGs — the shapes a client sends to find VMs by
//! type, tag, name, resource group or power state:
//!
//! `Resources | where type =~ 'microsoft.compute/virtualmachines' and tags['env'] == 'prod'
//!  | where resourceGroup in~ ('a', 'b') | project id, name, power = tostring(properties.extended.instanceView.powerState.code)
//!  | order by name asc | limit 50`
//!
//! Anything else (joins, summarize, extend, ...) gets Resource Graph's own 400 body, never a
//! made-up answer.

use std::sync::Arc;

use base64::Engine;
use serde_json::{Map, Value, json};

use super::compute::{render_vm, tags};
use super::network::{render_nic, render_nsg, render_public_ip};
use super::reply::{ArmError, Reply, now};
use super::server::{App, Req, lock};
use super::world::World;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    Sym(&'static str),
}

fn tokenize(q: &str) -> Result<Vec<(Tok, usize)>, (usize, String)> {
    let chars: Vec<char> = q.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '\'' || c == '"' {
            let mut s = String::new();
            i += 1;
            while i < chars.len() && chars[i] != c {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    i += 1;
                }
                s.push(chars[i]);
                i += 1;
            }
            if i >= chars.len() {
                return Err((start, "unterminated string".into()));
            }
            i += 1;
            out.push((Tok::Str(s), start));
            continue;
        }
        if c.is_ascii_digit() {
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            let n: String = chars[start..i].iter().collect();
            out.push((Tok::Num(n.parse().map_err(|_| (start, n.clone()))?), start));
            continue;
        }
        if c.is_alphabetic() || c == '_' || c == '$' {
            while i < chars.len()
                && (chars[i].is_alphanumeric()
                    || chars[i] == '_'
                    || chars[i] == '-'
                    || chars[i] == '$')
            {
                i += 1;
            }
            // `in~`, `!in~` and friends glue a `~` to the word.
            if i < chars.len() && chars[i] == '~' {
                i += 1;
            }
            out.push((Tok::Ident(chars[start..i].iter().collect()), start));
            continue;
        }
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        let sym = ["==", "!=", "=~", "!~"].into_iter().find(|s| *s == two);
        if let Some(s) = sym {
            out.push((Tok::Sym(s), start));
            i += 2;
            continue;
        }
        if c == '!' && i + 1 < chars.len() && chars[i + 1].is_alphabetic() {
            let mut j = i + 1;
            while j < chars.len()
                && (chars[j].is_alphanumeric() || chars[j] == '_' || chars[j] == '~')
            {
                j += 1;
            }
            out.push((Tok::Ident(chars[i..j].iter().collect()), start));
            i = j;
            continue;
        }
        let sym = ["|", "(", ")", ",", "[", "]", ".", "="]
            .into_iter()
            .find(|s| s.starts_with(c));
        match sym {
            Some(s) => out.push((Tok::Sym(s), start)),
            None => return Err((start, c.to_string())),
        }
        i += 1;
    }
    Ok(out)
}

#[derive(Debug, Clone)]
enum Expr {
    Lit(Value),
    Path(Vec<String>),
    Func(String, Box<Expr>),
    Cmp(Box<Expr>, String, Box<Expr>),
    In(Box<Expr>, bool, bool, Vec<Value>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
}

#[derive(Debug)]
enum Stage {
    Where(Expr),
    Project(Vec<(String, Expr)>),
    Limit(usize),
    Order(Expr, bool),
}

/// Why a query was refused: a parse error at a position, or an operator we do not model.
struct QueryError {
    position: usize,
    token: String,
    unsupported: bool,
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.0)
    }
    fn err(&self) -> QueryError {
        let (token, position) = match self.toks.get(self.pos) {
            Some((t, p)) => (format!("{t:?}"), *p),
            None => ("<EOF>".into(), self.end),
        };
        QueryError {
            position,
            token,
            unsupported: false,
        }
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|t| t.0.clone());
        self.pos += 1;
        t
    }
    fn eat_sym(&mut self, s: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Sym(x)) if *x == s) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn word(&self) -> Option<String> {
        match self.peek() {
            Some(Tok::Ident(w)) => Some(w.to_ascii_lowercase()),
            _ => None,
        }
    }
    fn eat_word(&mut self, w: &str) -> bool {
        if self.word().as_deref() == Some(w) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn query(&mut self) -> Result<Vec<Stage>, QueryError> {
        if !self.eat_word("resources") {
            return Err(QueryError {
                unsupported: true,
                ..self.err()
            });
        }
        let mut stages = Vec::new();
        while self.eat_sym("|") {
            let Some(op) = self.word() else {
                return Err(self.err());
            };
            self.pos += 1;
            stages.push(match op.as_str() {
                "where" => Stage::Where(self.or()?),
                "project" => Stage::Project(self.projections()?),
                "limit" | "take" => match self.next() {
                    Some(Tok::Num(n)) if n >= 0.0 => Stage::Limit(n as usize),
                    _ => return Err(self.err()),
                },
                "order" | "sort" => {
                    if !self.eat_word("by") {
                        return Err(self.err());
                    }
                    let key = self.value()?;
                    // KQL sorts descending unless told `asc`.
                    let desc = if self.eat_word("asc") {
                        false
                    } else {
                        self.eat_word("desc");
                        true
                    };
                    Stage::Order(key, desc)
                }
                _ => {
                    self.pos -= 1;
                    return Err(QueryError {
                        unsupported: true,
                        ..self.err()
                    });
                }
            });
        }
        if self.pos < self.toks.len() {
            return Err(self.err());
        }
        Ok(stages)
    }

    fn projections(&mut self) -> Result<Vec<(String, Expr)>, QueryError> {
        let mut out = Vec::new();
        loop {
            let alias = match (self.toks.get(self.pos), self.toks.get(self.pos + 1)) {
                (Some((Tok::Ident(a), _)), Some((Tok::Sym("="), _))) => {
                    let a = a.clone();
                    self.pos += 2;
                    Some(a)
                }
                _ => None,
            };
            let e = self.value()?;
            let name = alias.unwrap_or_else(|| match &e {
                Expr::Path(p) => p.last().cloned().unwrap_or_default(),
                _ => format!("Column{}", out.len() + 1),
            });
            out.push((name, e));
            if !self.eat_sym(",") {
                return Ok(out);
            }
        }
    }

    fn or(&mut self) -> Result<Expr, QueryError> {
        let mut e = self.and()?;
        while self.eat_word("or") {
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }
    fn and(&mut self) -> Result<Expr, QueryError> {
        let mut e = self.cmp()?;
        while self.eat_word("and") {
            e = Expr::And(Box::new(e), Box::new(self.cmp()?));
        }
        Ok(e)
    }
    fn cmp(&mut self) -> Result<Expr, QueryError> {
        if self.eat_sym("(") {
            let e = self.or()?;
            return if self.eat_sym(")") {
                Ok(e)
            } else {
                Err(self.err())
            };
        }
        let left = self.value()?;
        let op = match self.peek() {
            Some(Tok::Sym(s)) if ["==", "!=", "=~", "!~"].contains(s) => s.to_string(),
            Some(Tok::Ident(w)) => w.to_ascii_lowercase(),
            _ => return Err(self.err()),
        };
        self.pos += 1;
        if let Some(ci) = match op.as_str() {
            "in" | "!in" => Some(false),
            "in~" | "!in~" => Some(true),
            _ => None,
        } {
            if !self.eat_sym("(") {
                return Err(self.err());
            }
            let mut items = Vec::new();
            loop {
                match self.next() {
                    Some(Tok::Str(s)) => items.push(json!(s)),
                    Some(Tok::Num(n)) => items.push(json!(n)),
                    _ => {
                        self.pos -= 1;
                        return Err(self.err());
                    }
                }
                if self.eat_sym(")") {
                    break;
                }
                if !self.eat_sym(",") {
                    return Err(self.err());
                }
            }
            return Ok(Expr::In(Box::new(left), ci, op.starts_with('!'), items));
        }
        const OPS: [&str; 12] = [
            "==",
            "!=",
            "=~",
            "!~",
            "contains",
            "!contains",
            "contains_cs",
            "startswith",
            "endswith",
            "has",
            "!has",
            "!startswith",
        ];
        if !OPS.contains(&op.as_str()) {
            self.pos -= 1;
            return Err(QueryError {
                unsupported: true,
                ..self.err()
            });
        }
        Ok(Expr::Cmp(Box::new(left), op, Box::new(self.value()?)))
    }

    fn value(&mut self) -> Result<Expr, QueryError> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(Expr::Lit(json!(s))),
            Some(Tok::Num(n)) => Ok(Expr::Lit(json!(n))),
            Some(Tok::Ident(w)) => {
                let lw = w.to_ascii_lowercase();
                if ["tostring", "tolower", "toupper"].contains(&lw.as_str()) && self.eat_sym("(") {
                    let inner = self.value()?;
                    return if self.eat_sym(")") {
                        Ok(Expr::Func(lw, Box::new(inner)))
                    } else {
                        Err(self.err())
                    };
                }
                let mut path = vec![w];
                loop {
                    if self.eat_sym(".") {
                        match self.next() {
                            Some(Tok::Ident(p)) => path.push(p),
                            _ => {
                                self.pos -= 1;
                                return Err(self.err());
                            }
                        }
                    } else if self.eat_sym("[") {
                        match self.next() {
                            Some(Tok::Str(p)) => path.push(p),
                            Some(Tok::Num(n)) => path.push(format!("{}", n as usize)),
                            _ => {
                                self.pos -= 1;
                                return Err(self.err());
                            }
                        }
                        if !self.eat_sym("]") {
                            return Err(self.err());
                        }
                    } else {
                        return Ok(Expr::Path(path));
                    }
                }
            }
            _ => {
                self.pos -= 1;
                Err(self.err())
            }
        }
    }
}

fn lookup<'a>(row: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = row;
    for p in path {
        cur = match cur {
            Value::Object(m) => m.get(p).or_else(|| {
                m.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(p))
                    .map(|(_, v)| v)
            })?,
            Value::Array(a) => a.get(p.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn eval(e: &Expr, row: &Value) -> Value {
    match e {
        Expr::Lit(v) => v.clone(),
        Expr::Path(p) => lookup(row, p).cloned().unwrap_or(Value::Null),
        Expr::Func(f, inner) => {
            let t = text(&eval(inner, row));
            json!(match f.as_str() {
                "tolower" => t.to_lowercase(),
                "toupper" => t.to_uppercase(),
                _ => t,
            })
        }
        Expr::And(a, b) => json!(truthy(&eval(a, row)) && truthy(&eval(b, row))),
        Expr::Or(a, b) => json!(truthy(&eval(a, row)) || truthy(&eval(b, row))),
        Expr::In(v, ci, negate, items) => {
            let t = text(&eval(v, row));
            let hit = items.iter().any(|i| {
                if *ci {
                    text(i).eq_ignore_ascii_case(&t)
                } else {
                    text(i) == t
                }
            });
            json!(hit != *negate)
        }
        Expr::Cmp(a, op, b) => {
            let (x, y) = (text(&eval(a, row)), text(&eval(b, row)));
            let (lx, ly) = (x.to_lowercase(), y.to_lowercase());
            json!(match op.as_str() {
                "==" => x == y,
                "!=" => x != y,
                "=~" => lx == ly,
                "!~" => lx != ly,
                "contains" | "has" => lx.contains(&ly),
                "!contains" | "!has" => !lx.contains(&ly),
                "contains_cs" => x.contains(&y),
                "startswith" => lx.starts_with(&ly),
                "!startswith" => !lx.starts_with(&ly),
                "endswith" => lx.ends_with(&ly),
                _ => false,
            })
        }
    }
}

fn truthy(v: &Value) -> bool {
    v.as_bool().unwrap_or(false)
}

/// The `type =~ '...'` the first `where` pins, so a query over VMs does not render every NIC.
fn pinned_type(stages: &[Stage]) -> Option<String> {
    fn find(e: &Expr) -> Option<String> {
        match e {
            Expr::And(a, b) => find(a).or_else(|| find(b)),
            Expr::Cmp(l, op, r) if op == "==" || op == "=~" => match (&**l, &**r) {
                (Expr::Path(p), Expr::Lit(Value::String(t)))
                    if p.len() == 1 && p[0].eq_ignore_ascii_case("type") =>
                {
                    Some(t.to_lowercase())
                }
                _ => None,
            },
            _ => None,
        }
    }
    match stages.first() {
        Some(Stage::Where(e)) => find(e),
        _ => None,
    }
}

/// A Resource Graph row: the resource as ARM renders it plus ARG's own columns.
fn row(world: &World, group: u16, kind: &str, mut resource: Value, tags: Value) -> Value {
    let props = resource
        .get_mut("properties")
        .map(Value::take)
        .unwrap_or(Value::Null);
    json!({
        "id": resource["id"], "name": resource["name"], "type": kind,
        "tenantId": world.tenant, "kind": "", "location": resource["location"],
        "resourceGroup": world.groups[group as usize].name.to_lowercase(),
        "subscriptionId": world.subscription, "managedBy": "", "sku": resource.get("sku").cloned().unwrap_or(Value::Null),
        "plan": null, "properties": props, "tags": tags, "identity": null, "zones": null, "extendedLocation": null,
    })
}

/// The rows of the given type (or all) that pass `keep`, filtered as they are rendered so a
/// query over a big world never holds every row at once.
fn rows(world: &World, only: Option<&str>, keep: impl Fn(&Value) -> bool) -> Vec<Value> {
    let want = |t: &str| only.is_none_or(|o| o == t);
    let mut out = Vec::new();
    let mut push = |r: Value| {
        if keep(&r) {
            out.push(r);
        }
    };
    for vm in 0..world.vms.len() {
        let v = &world.vms[vm];
        if want("microsoft.compute/virtualmachines") {
            let mut r = row(
                world,
                v.group,
                "microsoft.compute/virtualmachines",
                render_vm(world, vm, false),
                tags(world, vm),
            );
            r["properties"]["extended"] = json!({"instanceView": {"powerState": {"code": v.power.code(), "level": "Info", "displayStatus": v.power.display()}, "osName": v.release.os_name(), "osVersion": v.os_version(), "computerName": v.computer_name()}});
            push(r);
        }
        if want("microsoft.network/networkinterfaces") {
            push(row(
                world,
                v.group,
                "microsoft.network/networkinterfaces",
                render_nic(world, vm),
                json!({}),
            ));
        }
        if v.public_ip.is_some() && want("microsoft.network/publicipaddresses") {
            push(row(
                world,
                v.group,
                "microsoft.network/publicipaddresses",
                render_public_ip(world, vm),
                json!({}),
            ));
        }
    }
    if want("microsoft.network/networksecuritygroups") {
        for n in 0..world.nsgs.len() {
            push(row(
                world,
                world.nsgs[n].group,
                "microsoft.network/networksecuritygroups",
                render_nsg(world, n as u32),
                json!({}),
            ));
        }
    }
    out
}

fn graph_error(q: &str, e: QueryError) -> ArmError {
    let line = q[..e.position.min(q.len())].matches('\n').count() + 1;
    let second = if e.unsupported {
        json!({"code": "UnsupportedQuery", "message": format!("The azssh emulator does not model the query operator at position {} (`{}`); it supports `Resources | where ... | project ... | order by ... | limit N`.", e.position, e.token)})
    } else {
        json!({"code": "ParserFailure", "message": "ParserFailure", "line": line, "characterPositionInLine": e.position, "token": e.token})
    };
    let mut err = ArmError::bad_request("BadRequest", "");
    err.raw_body = Some(Box::new(json!({"error": {
        "code": "BadRequest",
        "message": format!("Please provide below info when asking for support: timestamp = {}, correlationId = {}.", now(), uuid::Uuid::new_v4()),
        "details": [{"code": "InvalidQuery", "message": "Query is invalid. Please refer to the documentation for the Azure Resource Graph service and fix the error before retrying."}, second],
    }})));
    err
}

pub fn query(app: &Arc<App>, req: &Req) -> Result<Reply, ArmError> {
    let body = req.json()?;
    let Some(q) = body.get("query").and_then(Value::as_str) else {
        return Err(graph_error(
            "",
            QueryError {
                position: 0,
                token: "<EOF>".into(),
                unsupported: false,
            },
        ));
    };
    let toks = tokenize(q).map_err(|(position, token)| {
        graph_error(
            q,
            QueryError {
                position,
                token,
                unsupported: false,
            },
        )
    })?;
    let mut parser = Parser {
        toks,
        pos: 0,
        end: q.len(),
    };
    let stages = parser.query().map_err(|e| graph_error(q, e))?;
    let options = body.get("options").cloned().unwrap_or(Value::Null);
    let world = lock(&app.world);
    let subs: Vec<String> = body
        .get("subscriptions")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_lowercase))
                .collect()
        })
        .unwrap_or_default();
    // Leading `where` stages run while rows are rendered; the rest on what survives.
    let leading = stages
        .iter()
        .take_while(|s| matches!(s, Stage::Where(_)))
        .count();
    let keep = |r: &Value| {
        stages[..leading]
            .iter()
            .all(|s| matches!(s, Stage::Where(e) if truthy(&eval(e, r))))
    };
    let mut data = if subs.is_empty() || subs.contains(&world.subscription.to_lowercase()) {
        rows(&world, pinned_type(&stages).as_deref(), keep)
    } else {
        Vec::new()
    };
    drop(world);
    let mut columns: Option<Vec<String>> = None;
    for stage in &stages[leading..] {
        match stage {
            Stage::Where(e) => data.retain(|r| truthy(&eval(e, r))),
            Stage::Limit(n) => data.truncate(*n),
            Stage::Order(key, desc) => {
                data.sort_by_cached_key(|r| text(&eval(key, r)));
                if *desc {
                    data.reverse();
                }
            }
            Stage::Project(cols) => {
                data = data
                    .iter()
                    .map(|r| {
                        Value::Object(
                            cols.iter()
                                .map(|(n, e)| (n.clone(), eval(e, r)))
                                .collect::<Map<_, _>>(),
                        )
                    })
                    .collect();
                columns = Some(cols.iter().map(|(n, _)| n.clone()).collect());
            }
        }
    }
    let total = data.len();
    let top = options
        .get("$top")
        .and_then(Value::as_u64)
        .unwrap_or(100)
        .clamp(1, 1000) as usize;
    let b64 = base64::engine::general_purpose::STANDARD;
    let skip = options
        .get("$skipToken")
        .and_then(Value::as_str)
        .and_then(|t| b64.decode(t).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix("offset:").and_then(|n| n.parse().ok()))
        .unwrap_or_else(|| options.get("$skip").and_then(Value::as_u64).unwrap_or(0) as usize);
    let page: Vec<Value> = data.into_iter().skip(skip).take(top).collect();
    let count = page.len();
    let data = if options.get("resultFormat").and_then(Value::as_str) == Some("table") {
        let cols = columns.unwrap_or_else(|| {
            page.first()
                .and_then(Value::as_object)
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default()
        });
        json!({
            "columns": cols.iter().map(|c| json!({"name": c, "type": page.first().and_then(|r| r.get(c)).map(kql_type).unwrap_or("string")})).collect::<Vec<_>>(),
            "rows": page.iter().map(|r| cols.iter().map(|c| r.get(c).cloned().unwrap_or(Value::Null)).collect::<Vec<_>>()).collect::<Vec<_>>(),
        })
    } else {
        Value::Array(page)
    };
    let mut out = json!({"totalRecords": total, "count": count, "data": data, "facets": [], "resultTruncated": "false"});
    if skip + count < total {
        out["$skipToken"] = json!(b64.encode(format!("offset:{}", skip + count)));
    }
    Ok(Reply::ok(out)
        .header("x-ms-user-quota-remaining", "14")
        .header("x-ms-user-quota-resets-after", "00:00:05"))
}

fn kql_type(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "string",
        Value::Number(n) if n.is_i64() => "integer",
        Value::Number(_) => "real",
        Value::Bool(_) => "boolean",
        _ => "object",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(q: &str) -> Result<Vec<Stage>, QueryError> {
        let toks = tokenize(q).map_err(|(position, token)| QueryError {
            position,
            token,
            unsupported: false,
        })?;
        Parser {
            toks,
            pos: 0,
            end: q.len(),
        }
        .query()
    }

    #[test]
    fn client_query_shapes_parse() {
        for q in [
            "Resources | where type =~ 'microsoft.compute/virtualmachines' | project id, name",
            "resources | where type == 'microsoft.compute/virtualmachines' and tags['env'] == 'prod' and resourceGroup in~ ('a','b')",
            "Resources | where tags.team =~ \"data\" or name startswith 'web' | order by name desc | take 5",
            "Resources | where (name !~ 'x') | project power = tostring(properties.extended.instanceView.powerState.code), id",
        ] {
            assert!(parse(q).is_ok(), "{q}");
        }
    }

    #[test]
    fn unmodelled_operators_are_refused() {
        assert!(
            parse("Resources | summarize count() by type")
                .err()
                .is_some_and(|e| e.unsupported)
        );
        assert!(
            parse("Resources | where where")
                .err()
                .is_some_and(|e| !e.unsupported)
        );
        assert!(
            parse("ResourceContainers | project id")
                .err()
                .is_some_and(|e| e.unsupported)
        );
    }

    #[test]
    fn where_filters_vms_by_tag() {
        let w = World::generate(30, 4);
        let stages = parse(
            "Resources | where type =~ 'Microsoft.Compute/virtualMachines' and tags.env == 'prod'",
        )
        .ok()
        .unwrap();
        let Stage::Where(e) = &stages[0] else {
            panic!()
        };
        let all = rows(&w, pinned_type(&stages).as_deref(), |_| true);
        let hits = all.iter().filter(|r| truthy(&eval(e, r))).count();
        assert_eq!(hits, w.vms.iter().filter(|v| v.env == 0).count());
        assert!(hits > 0);
    }
}
