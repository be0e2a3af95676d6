//! The KQL subset Resource Graph queries are parsed into: `Resources` followed by `where`,
//! `project`, `extend`, `mv-expand`, `join`, `order by`/`sort by` and `limit`/`take` stages,
//! with `==`, `!=`, `=~`, `!~`, `contains`, `has`, `startswith`, `endswith`, `in`/`in~`,
//! `and`/`or`, paths such as `tags['env']` or `properties.extended.instanceView.powerState.code`
//! and `tostring()`/`tolower()`/`toupper()`.
//!
//! Resource Graph's own limits on top of KQL (learn.microsoft.com, "Understanding the Azure
//! Resource Graph query language", supported tabular operators): `join` flavors `innerunique`
//! (KQL's default), `inner`, `leftouter` and `fullouter` only; at most three `join`s in a query;
//! at most three `mv-expand`s, each expanding at most 2000 items (128 unless `limit` says more).
//! Anything else is a `QueryError` (a parse failure, a refused flavor or limit, or an operator we
//! do not model).

use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    Sym(&'static str),
}

pub fn tokenize(q: &str) -> Result<Vec<(Tok, usize)>, (usize, String)> {
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
pub enum Expr {
    Lit(Value),
    Path(Vec<String>),
    Func(String, Box<Expr>),
    Cmp(Box<Expr>, String, Box<Expr>),
    In(Box<Expr>, bool, bool, Vec<Value>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
}

#[derive(Debug)]
pub enum Stage {
    Where(Expr),
    Project(Vec<(String, Expr)>),
    /// `extend`: columns added to every row.
    Extend(Vec<(String, Expr)>),
    /// `mv-expand name = expr [limit N]`: one row per item of the array.
    MvExpand {
        name: String,
        expr: Expr,
        limit: usize,
    },
    /// `join kind=K (subquery) on key` / `on $left.a == $right.b`.
    Join {
        kind: JoinKind,
        right: Vec<Stage>,
        on: Vec<(String, String)>,
    },
    Limit(usize),
    Order(Expr, bool),
}

/// The join flavors Resource Graph accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    InnerUnique,
    Inner,
    LeftOuter,
    FullOuter,
}

/// Resource Graph's limits on one query (see the module doc).
pub const MAX_JOINS: usize = 3;
pub const MAX_MV_EXPANDS: usize = 3;
pub const MV_EXPAND_DEFAULT_LIMIT: usize = 128;
pub const MV_EXPAND_MAX_LIMIT: usize = 2000;

/// Why a query was refused: a parse error at a position, an operator we do not model, or one
/// of Resource Graph's own limits (`limit` holds the reason).
pub struct QueryError {
    pub position: usize,
    pub token: String,
    pub unsupported: bool,
    pub limit: Option<String>,
}

pub struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    end: usize,
    joins: usize,
    mv_expands: usize,
}

impl Parser {
    pub fn new(toks: Vec<(Tok, usize)>, end: usize) -> Parser {
        Parser {
            toks,
            pos: 0,
            end,
            joins: 0,
            mv_expands: 0,
        }
    }
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
            limit: None,
        }
    }
    fn limit_error(&self, reason: String) -> QueryError {
        QueryError {
            limit: Some(reason),
            ..self.err()
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

    pub fn query(&mut self) -> Result<Vec<Stage>, QueryError> {
        let stages = self.pipeline()?;
        if self.pos < self.toks.len() {
            return Err(self.err());
        }
        Ok(stages)
    }

    /// `Resources | stage | ...`, up to the end or a closing parenthesis.
    fn pipeline(&mut self) -> Result<Vec<Stage>, QueryError> {
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
                "extend" => Stage::Extend(self.projections()?),
                "mv-expand" => self.mv_expand()?,
                "join" => self.join()?,
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
        Ok(stages)
    }

    fn mv_expand(&mut self) -> Result<Stage, QueryError> {
        self.mv_expands += 1;
        if self.mv_expands > MAX_MV_EXPANDS {
            return Err(self.limit_error(format!(
                "a query may use at most {MAX_MV_EXPANDS} mv-expand operators"
            )));
        }
        let mut cols = self.projections()?;
        if cols.len() != 1 {
            return Err(QueryError {
                unsupported: true,
                ..self.err()
            });
        }
        let (name, expr) = cols.remove(0);
        let limit = if self.eat_word("limit") {
            match self.next() {
                Some(Tok::Num(n)) if n >= 0.0 && n as usize <= MV_EXPAND_MAX_LIMIT => n as usize,
                Some(Tok::Num(_)) => {
                    self.pos -= 1;
                    return Err(self.limit_error(format!(
                        "mv-expand expands at most {MV_EXPAND_MAX_LIMIT} items"
                    )));
                }
                _ => return Err(self.err()),
            }
        } else {
            MV_EXPAND_DEFAULT_LIMIT
        };
        Ok(Stage::MvExpand { name, expr, limit })
    }

    fn join(&mut self) -> Result<Stage, QueryError> {
        self.joins += 1;
        if self.joins > MAX_JOINS {
            self.pos -= 1;
            return Err(self.limit_error(format!(
                "a query may use at most {MAX_JOINS} join operators"
            )));
        }
        let mut kind = JoinKind::InnerUnique;
        if self.eat_word("kind") {
            if !self.eat_sym("=") {
                return Err(self.err());
            }
            kind = match self.word().as_deref() {
                Some("innerunique") => JoinKind::InnerUnique,
                Some("inner") => JoinKind::Inner,
                Some("leftouter") => JoinKind::LeftOuter,
                Some("fullouter") => JoinKind::FullOuter,
                Some(other) => {
                    return Err(self.limit_error(format!(
                        "join kind `{other}` is not supported; use innerunique, inner, leftouter or fullouter"
                    )));
                }
                None => return Err(self.err()),
            };
            self.pos += 1;
        }
        if !self.eat_sym("(") {
            return Err(self.err());
        }
        let right = self.pipeline()?;
        if !self.eat_sym(")") {
            return Err(self.err());
        }
        if !self.eat_word("on") {
            return Err(self.err());
        }
        let mut on = Vec::new();
        loop {
            let left = self.value()?;
            let pair = match left {
                Expr::Path(p) if p.len() == 2 && p[0].eq_ignore_ascii_case("$left") => {
                    if !self.eat_sym("==") {
                        return Err(self.err());
                    }
                    match self.value()? {
                        Expr::Path(r) if r.len() == 2 && r[0].eq_ignore_ascii_case("$right") => {
                            (p[1].clone(), r[1].clone())
                        }
                        _ => return Err(self.err()),
                    }
                }
                Expr::Path(p) if p.len() == 1 => (p[0].clone(), p[0].clone()),
                _ => return Err(self.err()),
            };
            on.push(pair);
            if !self.eat_sym(",") {
                break;
            }
        }
        Ok(Stage::Join { kind, right, on })
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
            // A boolean on its own (`isnull(x) or tobool(y)`).
            Some(Tok::Ident(w)) if ["and", "or"].contains(&w.to_ascii_lowercase().as_str()) => {
                return Ok(left);
            }
            None | Some(Tok::Sym("|")) | Some(Tok::Sym(")")) => return Ok(left),
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
                // Kusto's keywords are not column names (`where where` is a parse error).
                if KEYWORDS.contains(&lw.as_str()) {
                    self.pos -= 1;
                    return Err(self.err());
                }
                if FUNCTIONS.contains(&lw.as_str()) && self.eat_sym("(") {
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

/// Words that start or join query operators and so cannot name a column.
const KEYWORDS: [&str; 12] = [
    "where",
    "project",
    "extend",
    "join",
    "mv-expand",
    "order",
    "sort",
    "limit",
    "take",
    "summarize",
    "and",
    "or",
];

/// The scalar functions modelled, each of one argument.
const FUNCTIONS: [&str; 8] = [
    "tostring",
    "tolower",
    "toupper",
    "tobool",
    "isnull",
    "isnotnull",
    "isempty",
    "isnotempty",
];

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

pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

pub fn eval(e: &Expr, row: &Value) -> Value {
    match e {
        Expr::Lit(v) => v.clone(),
        Expr::Path(p) => lookup(row, p).cloned().unwrap_or(Value::Null),
        Expr::Func(f, inner) => {
            let v = eval(inner, row);
            match f.as_str() {
                "isnull" => return json!(v.is_null()),
                "isnotnull" => return json!(!v.is_null()),
                "isempty" => return json!(text(&v).is_empty()),
                "isnotempty" => return json!(!text(&v).is_empty()),
                // Kusto: true/false (any case) and non-zero numbers; anything else is null.
                "tobool" => {
                    return match &v {
                        Value::Bool(b) => json!(b),
                        Value::Number(n) => json!(n.as_f64().is_some_and(|x| x != 0.0)),
                        Value::String(s) if s.eq_ignore_ascii_case("true") => json!(true),
                        Value::String(s) if s.eq_ignore_ascii_case("false") => json!(false),
                        _ => Value::Null,
                    };
                }
                _ => {}
            }
            let t = text(&v);
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

pub fn truthy(v: &Value) -> bool {
    v.as_bool().unwrap_or(false)
}

/// Parses a whole query.
pub fn parse(q: &str) -> Result<Vec<Stage>, QueryError> {
    let toks = tokenize(q).map_err(|(position, token)| QueryError {
        position,
        token,
        unsupported: false,
        limit: None,
    })?;
    Parser::new(toks, q.len()).query()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
}
