//! Operators: arithmetic, comparison (case-insensitive by default, array filtering), `-like`,
//! `-match`, `-replace`, `-split`, `-join`, `-f`, `-is`/`-as`, ranges.

use std::cmp::Ordering;

use regex::{Regex, RegexBuilder};

use crate::error::ErrorRecord;
use crate::value::Value;

/// Result of an operator.
pub type OpResult = Result<Value, ErrorRecord>;

fn invalid_op(message: String, fqid: &str) -> ErrorRecord {
    ErrorRecord::new(
        message,
        "System.Management.Automation.RuntimeException",
        fqid,
        "InvalidOperation",
    )
}

/// Builds a .NET-flavoured regex (case-insensitive unless `case`); errors as PowerShell words them.
pub fn regex(pattern: &str, case_sensitive: bool) -> Result<Regex, ErrorRecord> {
    RegexBuilder::new(pattern)
        .case_insensitive(!case_sensitive)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| {
            invalid_op(
                format!(
                    "The regular expression pattern {pattern} is not valid: {}",
                    e.to_string().lines().last().unwrap_or("")
                ),
                "InvalidRegularExpression",
            )
        })
}

/// `-like` wildcard matching (`*`, `?`, `[abc]`).
pub fn wildcard(pattern: &str, text: &str, case_sensitive: bool) -> bool {
    let norm = |s: &str| -> Vec<char> {
        if case_sensitive {
            s.chars().collect()
        } else {
            s.to_lowercase().chars().collect()
        }
    };
    let p = norm(pattern);
    let t = norm(text);
    let (mut pi, mut ti) = (0usize, 0usize);
    let (mut star, mut mark) = (None::<usize>, 0usize);
    while ti < t.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some(pi);
                    mark = ti;
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                '[' => {
                    if let Some(end) = p[pi + 1..].iter().position(|c| *c == ']') {
                        let set = &p[pi + 1..pi + 1 + end];
                        let mut ok = false;
                        let mut k = 0;
                        while k < set.len() {
                            if k + 2 < set.len() && set[k + 1] == '-' {
                                if set[k] <= t[ti] && t[ti] <= set[k + 2] {
                                    ok = true;
                                }
                                k += 3;
                            } else {
                                if set[k] == t[ti] {
                                    ok = true;
                                }
                                k += 1;
                            }
                        }
                        if ok {
                            pi += end + 2;
                            ti += 1;
                            continue;
                        }
                    } else if t[ti] == '[' {
                        pi += 1;
                        ti += 1;
                        continue;
                    }
                }
                '`' if pi + 1 < p.len() && p[pi + 1] == t[ti] => {
                    pi += 2;
                    ti += 1;
                    continue;
                }
                c if c == t[ti] => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some(s) => {
                pi = s + 1;
                mark += 1;
                ti = mark;
            }
            None => return false,
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Compares two scalars as PowerShell does: the left operand's type decides.
pub fn compare(l: &Value, r: &Value, case_sensitive: bool) -> Option<Ordering> {
    match (l, r) {
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        (Value::Null, _) => Some(Ordering::Less),
        (_, Value::Null) => Some(Ordering::Greater),
        (Value::Str(a), _) => {
            let b = r.to_str();
            if case_sensitive {
                Some(a.as_str().cmp(b.as_str()))
            } else {
                Some(a.to_lowercase().cmp(&b.to_lowercase()))
            }
        }
        (Value::Char(a), _) => {
            let b = r.to_str();
            let a = a.to_string();
            if case_sensitive {
                Some(a.as_str().cmp(b.as_str()))
            } else {
                Some(a.to_lowercase().cmp(&b.to_lowercase()))
            }
        }
        (Value::Bool(a), _) => Some(a.cmp(&r.truthy())),
        (Value::Int(a), Value::Int(b)) => Some(a.cmp(b)),
        (Value::Int(_) | Value::Double(_), _) => {
            let a = l.as_f64()?;
            let b = r.as_f64()?;
            a.partial_cmp(&b)
        }
        (Value::DateTime(a), Value::DateTime(b)) => Some(a.cmp(b)),
        (Value::Version(a), Value::Version(b)) => Some(a.cmp(b)),
        (Value::Version(a), _) => {
            let b = parse_version(&r.to_str())?;
            Some(a.cmp(&b))
        }
        _ => {
            let a = l.to_str();
            let b = r.to_str();
            if a == b || std::ptr::eq(l, r) {
                Some(Ordering::Equal)
            } else {
                match (l, r) {
                    (Value::Object(x), Value::Object(y)) if std::rc::Rc::ptr_eq(x, y) => {
                        Some(Ordering::Equal)
                    }
                    (Value::Hashtable(x), Value::Hashtable(y)) if std::rc::Rc::ptr_eq(x, y) => {
                        Some(Ordering::Equal)
                    }
                    (Value::Object(_), _) | (Value::Hashtable(_), _) => None,
                    _ => Some(a.to_lowercase().cmp(&b.to_lowercase())),
                }
            }
        }
    }
}

/// Equality as `-eq` sees it.
pub fn equals(l: &Value, r: &Value, case_sensitive: bool) -> bool {
    if let (Value::Str(_), Value::Null) | (Value::Int(_), Value::Null) = (l, r) {
        return false;
    }
    if let Value::Bool(_) = r {
        if let Value::Str(s) = l {
            return s.eq_ignore_ascii_case(&r.to_str());
        }
    }
    if let (Value::Int(_) | Value::Double(_), Value::Str(s)) = (l, r) {
        if s.trim().is_empty() {
            return false;
        }
        return match r.as_f64() {
            Some(b) => l.as_f64() == Some(b),
            None => false,
        };
    }
    compare(l, r, case_sensitive) == Some(Ordering::Equal)
}

/// Parses `1.2.3.4`.
pub fn parse_version(s: &str) -> Option<Vec<i64>> {
    let parts: Option<Vec<i64>> = s.trim().split('.').map(|p| p.parse().ok()).collect();
    let parts = parts?;
    if (2..=4).contains(&parts.len()) {
        Some(parts)
    } else {
        None
    }
}

fn add(l: &Value, r: &Value) -> OpResult {
    match l {
        Value::Null => Ok(match r {
            Value::Array(_) => Value::array(r.enumerate()),
            other => other.clone(),
        }),
        Value::Str(s) => Ok(Value::Str(format!("{s}{}", r.to_str()))),
        Value::Char(c) => Ok(Value::Str(format!("{c}{}", r.to_str()))),
        Value::Array(a) => {
            let mut v = a.borrow().clone();
            match r {
                Value::Array(b) => v.extend(b.borrow().iter().cloned()),
                other => v.push(other.clone()),
            }
            Ok(Value::array(v))
        }
        Value::Hashtable(h) => match r {
            Value::Hashtable(h2) => {
                let mut n = h.borrow().clone();
                for (k, v) in h2.borrow().entries.iter() {
                    if n.index_of(k).is_some() {
                        return Err(invalid_op(
                            format!("Item has already been added. Key in dictionary: '{}'  Key being added: '{}'", k.to_str(), k.to_str()),
                            "System.ArgumentException",
                        ));
                    }
                    n.entries.push((k.clone(), v.clone()));
                }
                Ok(Value::hashtable(n))
            }
            _ => Err(invalid_op(
                "A hash table can only be added to another hash table.".into(),
                "AddHashTableToNonHashTable",
            )),
        },
        Value::DateTime(_) => Err(invalid_op(
            "Adding to a DateTime needs a TimeSpan; use .AddSeconds()/.AddDays().".into(),
            "MethodNotFound",
        )),
        _ => arith(l, r, '+'),
    }
}

fn to_num(v: &Value, other: &Value, op: char) -> Result<Value, ErrorRecord> {
    v.to_number().ok_or_else(|| {
        let s = v.to_str();
        if matches!(v, Value::Str(_)) {
            ErrorRecord::new(
                format!(
                    "Cannot convert value \"{s}\" to type \"System.Int32\". Error: \"Input string was not in a correct format.\""
                ),
                "System.Management.Automation.RuntimeException",
                "InvalidCastFromStringToInteger",
                "InvalidArgument",
            )
        } else {
            invalid_op(
                format!(
                    "Method invocation failed because [{}] does not contain a method named 'op_{}'.",
                    if matches!(v, Value::Null) { other.type_name() } else { v.type_name() },
                    match op {
                        '+' => "Addition",
                        '-' => "Subtraction",
                        '*' => "Multiply",
                        '/' => "Division",
                        _ => "Modulus",
                    }
                ),
                "MethodNotFound",
            )
        }
    })
}

fn arith(l: &Value, r: &Value, op: char) -> OpResult {
    if let (Value::DateTime(a), Value::DateTime(b), '-') = (l, r, op) {
        return Ok(crate::dotnet::timespan(a.ticks.saturating_sub(b.ticks)));
    }
    let a = to_num(l, r, op)?;
    let b = to_num(r, l, op)?;
    if let (Value::Int(x), Value::Int(y)) = (&a, &b) {
        let (x, y) = (*x, *y);
        let res = match op {
            '+' => x.checked_add(y),
            '-' => x.checked_sub(y),
            '*' => x.checked_mul(y),
            '/' => {
                if y == 0 {
                    return Err(ErrorRecord::new(
                        "Attempted to divide by zero.",
                        "System.Management.Automation.RuntimeException",
                        "RuntimeException",
                        "NotSpecified",
                    ));
                }
                if x.checked_rem(y) == Some(0) {
                    x.checked_div(y)
                } else {
                    return Ok(Value::Double(x as f64 / y as f64));
                }
            }
            _ => {
                if y == 0 {
                    return Err(ErrorRecord::new(
                        "Attempted to divide by zero.",
                        "System.Management.Automation.RuntimeException",
                        "RuntimeException",
                        "NotSpecified",
                    ));
                }
                x.checked_rem(y)
            }
        };
        return Ok(match res {
            Some(v) => Value::Int(v),
            None => Value::Double(match op {
                '+' => x as f64 + y as f64,
                '-' => x as f64 - y as f64,
                '/' => x as f64 / y as f64,
                '%' => 0.0,
                _ => x as f64 * y as f64,
            }),
        });
    }
    let x = a.as_f64().unwrap_or(0.0);
    let y = b.as_f64().unwrap_or(0.0);
    Ok(Value::Double(match op {
        '+' => x + y,
        '-' => x - y,
        '*' => x * y,
        '/' => x / y,
        _ => x % y,
    }))
}

fn multiply(l: &Value, r: &Value) -> OpResult {
    match l {
        Value::Str(s) => {
            let n = r.as_i64().unwrap_or(0).max(0) as usize;
            if s.len().saturating_mul(n) > 16 << 20 {
                return Err(invalid_op("The string is too long.".into(), "OutOfMemory"));
            }
            Ok(Value::Str(s.repeat(n)))
        }
        Value::Array(a) => {
            let n = r.as_i64().unwrap_or(0).max(0) as usize;
            let a = a.borrow();
            if a.len().saturating_mul(n) > 1 << 20 {
                return Err(invalid_op("The array is too large.".into(), "OutOfMemory"));
            }
            let mut v = Vec::new();
            for _ in 0..n {
                v.extend(a.iter().cloned());
            }
            Ok(Value::array(v))
        }
        _ => arith(l, r, '*'),
    }
}

/// `-f`: .NET composite formatting, with the format specifiers scripts use.
pub fn format(fmt: &str, args: &[Value]) -> OpResult {
    let mut out = String::new();
    let chars: Vec<char> = fmt.chars().collect();
    let mut i = 0;
    let bad = || {
        ErrorRecord::new(
            "Error formatting a string: Input string was not in a correct format..",
            "System.FormatException",
            "FormatError",
            "InvalidOperation",
        )
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '{' {
            if chars.get(i + 1) == Some(&'{') {
                out.push('{');
                i += 2;
                continue;
            }
            let end = chars[i..].iter().position(|c| *c == '}').ok_or_else(bad)? + i;
            let spec: String = chars[i + 1..end].iter().collect();
            let (head, fmtspec) = match spec.split_once(':') {
                Some((h, f)) => (h.to_string(), Some(f.to_string())),
                None => (spec.clone(), None),
            };
            let (idx, align) = match head.split_once(',') {
                Some((a, b)) => (a.trim().to_string(), b.trim().parse::<i64>().ok()),
                None => (head.trim().to_string(), None),
            };
            let idx: usize = idx.parse().map_err(|_| bad())?;
            let arg = args.get(idx).ok_or_else(|| {
                ErrorRecord::new(
                    "Error formatting a string: Index (zero based) must be greater than or equal to zero and less than the size of the argument list..",
                    "System.FormatException",
                    "FormatError",
                    "InvalidOperation",
                )
            })?;
            let mut s = match fmtspec {
                Some(f) => format_spec(arg, &f),
                None => arg.to_str(),
            };
            if let Some(w) = align {
                let width = (w.unsigned_abs() as usize).min(10_000);
                let len = s.chars().count();
                if len < width {
                    let pad = " ".repeat(width - len);
                    s = if w < 0 { s + &pad } else { pad + &s };
                }
            }
            out.push_str(&s);
            i = end + 1;
        } else if c == '}' {
            if chars.get(i + 1) == Some(&'}') {
                i += 1;
            }
            out.push('}');
            i += 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    Ok(Value::Str(out))
}

/// One `{0:spec}` specifier: `x8`, `X`, `D3`, `N2`, `F2`, `P`, `yyyy-MM-dd`, ...
pub fn format_spec(arg: &Value, spec: &str) -> String {
    if let Value::DateTime(d) = arg {
        let (y, mo, day, hh, mi, ss, ms) = d.parts();
        let mut out = spec.to_string();
        for (pat, val) in [
            ("yyyy", format!("{y:04}")),
            ("MM", format!("{mo:02}")),
            ("dd", format!("{day:02}")),
            ("HH", format!("{hh:02}")),
            ("mm", format!("{mi:02}")),
            ("ss", format!("{ss:02}")),
            ("fff", format!("{ms:03}")),
        ] {
            out = out.replace(pat, &val);
        }
        return out;
    }
    let mut cs = spec.chars();
    let kind = cs.next().unwrap_or('G');
    let prec: Option<usize> = cs.as_str().parse().ok().map(|p: usize| p.min(100));
    match kind {
        'x' | 'X' => match arg.as_i64() {
            Some(n) => {
                let s = if i32::try_from(n).is_ok() {
                    format!("{:x}", n as i32 as u32)
                } else {
                    format!("{:x}", n)
                };
                let s = if kind == 'X' { s.to_uppercase() } else { s };
                format!("{:0>width$}", s, width = prec.unwrap_or(0))
            }
            None => arg.to_str(),
        },
        'd' | 'D' => match arg.as_i64() {
            Some(n) => {
                let w = prec.unwrap_or(0);
                if n < 0 {
                    format!("-{:0>w$}", n.unsigned_abs())
                } else {
                    format!("{:0>w$}", n)
                }
            }
            None => arg.to_str(),
        },
        'f' | 'F' | 'n' | 'N' => match arg.as_f64() {
            Some(x) => {
                let p = prec.unwrap_or(2);
                let s = format!("{:.*}", p, x);
                if kind == 'n' || kind == 'N' {
                    group_thousands(&s)
                } else {
                    s
                }
            }
            None => arg.to_str(),
        },
        'p' | 'P' => match arg.as_f64() {
            Some(x) => format!("{:.*} %", prec.unwrap_or(2), x * 100.0),
            None => arg.to_str(),
        },
        _ => {
            if spec.chars().all(|c| c == '0' || c == '#' || c == '.') {
                if let Some(x) = arg.as_f64() {
                    let decimals = spec.split('.').nth(1).map(str::len).unwrap_or(0);
                    let int_zeros = spec.split('.').next().unwrap_or("").matches('0').count();
                    let s = format!("{:.*}", decimals, x);
                    let (ip, fp) = s.split_once('.').map_or((s.clone(), None), |(a, b)| {
                        (a.to_string(), Some(b.to_string()))
                    });
                    let ip = format!("{:0>w$}", ip, w = int_zeros);
                    return match fp {
                        Some(f) => format!("{ip}.{f}"),
                        None => ip,
                    };
                }
            }
            arg.to_str()
        }
    }
}

fn group_thousands(s: &str) -> String {
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (ip, fp) = match s.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    let mut grouped = String::new();
    for (i, c) in ip.chars().enumerate() {
        if i > 0 && (ip.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let mut out = if neg { format!("-{grouped}") } else { grouped };
    if let Some(f) = fp {
        out.push('.');
        out.push_str(f);
    }
    out
}

/// Replaces `$1`, `${name}`, `$0`, `$$` in a `-replace` substitution, .NET style.
fn dotnet_replacement(rep: &str) -> String {
    // The regex crate uses the same `$1`/`${name}`/`$$` syntax; `$1abc` needs braces there.
    let mut out = String::new();
    let chars: Vec<char> = rep.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '$' && i + 1 < chars.len() && chars[i + 1].is_ascii_digit() {
            let mut j = i + 1;
            while j < chars.len() && chars[j].is_ascii_digit() {
                j += 1;
            }
            let n: String = chars[i + 1..j].iter().collect();
            out.push_str(&format!("${{{n}}}"));
            i = j;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

fn matches_table(re: &Regex, caps: &regex::Captures<'_>) -> Value {
    let mut h = crate::value::Hashtable::default();
    for (i, name) in re.capture_names().enumerate() {
        if let Some(m) = caps.get(i) {
            let key = match name {
                Some(n) => Value::Str(n.to_string()),
                None => Value::Int(i as i64),
            };
            h.entries.push((key, Value::Str(m.as_str().to_string())));
        }
    }
    h.entries.reverse();
    Value::hashtable(h)
}

/// Evaluates a binary operator (named as the grammar aliases it: `-eq`, `+`, ...). Returns the
/// value and, for `-match` on a scalar, the new `$Matches`.
pub fn binary(op: &str, l: &Value, r: &Value) -> Result<(Value, Option<Value>), ErrorRecord> {
    let op = op.to_ascii_lowercase();
    let plain = |v: Value| Ok((v, None));
    match op.as_str() {
        "+" => return plain(add(l, r)?),
        "-" => return plain(arith(l, r, '-')?),
        "*" => return plain(multiply(l, r)?),
        "/" => return plain(arith(l, r, '/')?),
        "%" => return plain(arith(l, r, '%')?),
        "-f" => return plain(format(&l.to_str(), &r.enumerate())?),
        "-and" => return plain(Value::Bool(l.truthy() && r.truthy())),
        "-or" => return plain(Value::Bool(l.truthy() || r.truthy())),
        "-xor" => return plain(Value::Bool(l.truthy() ^ r.truthy())),
        "-band" | "-bor" | "-bxor" => {
            let a = l.as_i64().unwrap_or(0);
            let b = r.as_i64().unwrap_or(0);
            return plain(Value::Int(match op.as_str() {
                "-band" => a & b,
                "-bor" => a | b,
                _ => a ^ b,
            }));
        }
        "-is" | "-isnot" => {
            let t = match r {
                Value::Type(t) => t.clone(),
                other => crate::dotnet::canonical_type(&other.to_str()),
            };
            let is = crate::dotnet::is_instance(l, &t);
            return plain(Value::Bool(if op == "-is" { is } else { !is }));
        }
        "-as" => {
            let t = match r {
                Value::Type(t) => t.clone(),
                other => crate::dotnet::canonical_type(&other.to_str()),
            };
            return plain(crate::dotnet::convert(l, &t).unwrap_or(Value::Null));
        }
        "-split" | "-csplit" | "-isplit" => {
            let case = op.starts_with("-c");
            let pats = r.enumerate();
            let pat = pats.first().map(Value::to_str).unwrap_or_default();
            let max = pats.get(1).and_then(Value::as_i64).unwrap_or(0);
            let re = regex(&pat, case)?;
            let mut out = Vec::new();
            for s in l.enumerate() {
                let s = s.to_str();
                if max > 0 {
                    out.extend(re.splitn(&s, max as usize).map(|p| Value::Str(p.into())));
                } else {
                    out.extend(re.split(&s).map(|p| Value::Str(p.into())));
                }
            }
            return plain(Value::array(out));
        }
        "-join" => {
            let sep = r.to_str();
            let parts: Vec<String> = l.enumerate().iter().map(Value::to_str).collect();
            return plain(Value::Str(parts.join(&sep)));
        }
        "-replace" | "-creplace" | "-ireplace" => {
            let case = op.starts_with("-c");
            let parts = r.enumerate();
            let pat = parts.first().map(Value::to_str).unwrap_or_default();
            let rep = parts.get(1).map(Value::to_str).unwrap_or_default();
            let re = regex(&pat, case)?;
            let rep = dotnet_replacement(&rep);
            let apply =
                |s: &Value| Value::Str(re.replace_all(&s.to_str(), rep.as_str()).into_owned());
            return plain(match l {
                Value::Array(a) => Value::array(a.borrow().iter().map(apply).collect()),
                other => apply(other),
            });
        }
        _ => {}
    }
    // Comparison operators.
    let (case, base) = if let Some(b) = op.strip_prefix("-c") {
        if matches!(
            b,
            "eq" | "ne"
                | "gt"
                | "ge"
                | "lt"
                | "le"
                | "like"
                | "notlike"
                | "match"
                | "notmatch"
                | "contains"
                | "notcontains"
                | "in"
                | "notin"
        ) {
            (true, b.to_string())
        } else {
            (false, op[1..].to_string())
        }
    } else if let Some(b) = op.strip_prefix("-i") {
        if matches!(
            b,
            "eq" | "ne"
                | "gt"
                | "ge"
                | "lt"
                | "le"
                | "like"
                | "notlike"
                | "match"
                | "notmatch"
                | "contains"
                | "notcontains"
                | "in"
                | "notin"
        ) {
            (false, b.to_string())
        } else {
            (false, op[1..].to_string())
        }
    } else {
        (false, op.trim_start_matches('-').to_string())
    };
    match base.as_str() {
        "contains" | "notcontains" => {
            let found = l.enumerate().iter().any(|x| equals(x, r, case));
            return plain(Value::Bool(found == (base == "contains")));
        }
        "in" | "notin" => {
            let found = r.enumerate().iter().any(|x| equals(x, l, case));
            return plain(Value::Bool(found == (base == "in")));
        }
        _ => {}
    }
    let regex_op = base == "match" || base == "notmatch";
    let re = if regex_op {
        Some(regex(&r.to_str(), case)?)
    } else {
        None
    };
    let test = |x: &Value| -> Result<(bool, Option<Value>), ErrorRecord> {
        Ok(match base.as_str() {
            "eq" => (equals(x, r, case), None),
            "ne" => (!equals(x, r, case), None),
            "gt" => (compare(x, r, case) == Some(Ordering::Greater), None),
            "ge" => (
                matches!(
                    compare(x, r, case),
                    Some(Ordering::Greater | Ordering::Equal)
                ),
                None,
            ),
            "lt" => (compare(x, r, case) == Some(Ordering::Less), None),
            "le" => (
                matches!(compare(x, r, case), Some(Ordering::Less | Ordering::Equal)),
                None,
            ),
            "like" => (wildcard(&r.to_str(), &x.to_str(), case), None),
            "notlike" => (!wildcard(&r.to_str(), &x.to_str(), case), None),
            "match" | "notmatch" => {
                let re = re
                    .as_ref()
                    .ok_or_else(|| invalid_op("regex".into(), "Regex"))?;
                let s = x.to_str();
                match re.captures(&s) {
                    Some(c) => (base == "match", Some(matches_table(re, &c))),
                    None => (base == "notmatch", None),
                }
            }
            _ => {
                return Err(ErrorRecord::new(
                    format!("Unexpected token '{op}' in expression or statement."),
                    "System.Management.Automation.ParseException",
                    "UnexpectedToken",
                    "ParserError",
                ))
            }
        })
    };
    match l {
        Value::Array(a) => {
            let items = a.borrow().clone();
            let mut out = Vec::new();
            for x in items {
                if test(&x)?.0 {
                    out.push(x);
                }
            }
            Ok((Value::array(out), None))
        }
        other => {
            let (b, m) = test(other)?;
            Ok((Value::Bool(b), m))
        }
    }
}

/// `a..b` (capped so a hostile range cannot exhaust memory).
pub fn range(a: &Value, b: &Value) -> OpResult {
    let (x, y) = match (a.as_i64(), b.as_i64()) {
        (Some(x), Some(y)) => (x, y),
        _ => {
            return Err(ErrorRecord::new(
                format!(
                    "Cannot convert value \"{}\" to type \"System.Int32\".",
                    if a.as_i64().is_none() {
                        a.to_str()
                    } else {
                        b.to_str()
                    }
                ),
                "System.Management.Automation.RuntimeException",
                "InvalidCastFromStringToInteger",
                "InvalidArgument",
            ))
        }
    };
    if x.abs_diff(y) > 10_000_000 {
        return Err(invalid_op(
            "The range is too large.".into(),
            "RangeTooLarge",
        ));
    }
    let v: Vec<Value> = if x <= y {
        (x..=y).map(Value::Int).collect()
    } else {
        (y..=x).rev().map(Value::Int).collect()
    };
    Ok(Value::array(v))
}

/// Unary minus.
pub fn negate(v: &Value) -> OpResult {
    match v.to_number() {
        Some(Value::Int(i)) => Ok(i
            .checked_neg()
            .map(Value::Int)
            .unwrap_or(Value::Double(-(i as f64)))),
        Some(Value::Double(d)) => Ok(Value::Double(-d)),
        _ => arith(&Value::Int(0), v, '-'),
    }
}
