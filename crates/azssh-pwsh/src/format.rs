//! Rendering: the console's default formatter (Out-Default / Out-String) and
//! ConvertTo-Json / ConvertFrom-Json as Windows PowerShell 5.1 writes and reads JSON.

use crate::value::{format_double, Hashtable, PsObject, Value};

/// Line ending of console output on Windows.
pub const NL: &str = "\r\n";

fn is_scalar(v: &Value) -> bool {
    matches!(
        v,
        Value::Null
            | Value::Bool(_)
            | Value::Int(_)
            | Value::Double(_)
            | Value::Str(_)
            | Value::Char(_)
            | Value::ScriptBlock(_)
            | Value::Type(_)
            | Value::Version(_)
            | Value::DateTime(_)
            | Value::Encoding(_)
    )
}

fn cell(v: &Value) -> String {
    match v {
        Value::Array(a) => {
            let a = a.borrow();
            let parts: Vec<String> = a.iter().take(4).map(Value::to_str).collect();
            if a.len() > 4 {
                format!("{{{}...}}", parts.join(", "))
            } else {
                format!("{{{}}}", parts.join(", "))
            }
        }
        Value::Hashtable(_) => "{}".to_string(),
        Value::Object(o) if o.borrow().type_name.ends_with("PSCustomObject") => v.to_str(),
        other => other.to_str(),
    }
}

fn numeric(v: &Value) -> bool {
    matches!(v, Value::Int(_) | Value::Double(_))
}

fn table(headers: &[String], rows: &[Vec<Value>], fixed: &[usize], out: &mut String) {
    // A host object's view may fix column widths (`__widths`), as 5.1's format.ps1xml views do
    // (Get-Service: Status 8, Name 18).
    let mut widths: Vec<usize> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| h.chars().count().max(fixed.get(i).copied().unwrap_or(0)))
        .collect();
    let cells: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(cell).collect()).collect();
    for r in &cells {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count()).min(120);
            }
        }
    }
    let right: Vec<bool> = (0..headers.len())
        .map(|i| rows.iter().all(|r| r.get(i).is_some_and(numeric)) && !rows.is_empty())
        .collect();
    let line = |parts: Vec<String>| -> String {
        let n = parts.len();
        let mut s = String::new();
        for (i, p) in parts.into_iter().enumerate() {
            let w = widths[i];
            let len = p.chars().count();
            let pad = w.saturating_sub(len);
            if right[i] {
                s.push_str(&" ".repeat(pad));
                s.push_str(&p);
            } else {
                s.push_str(&p);
                if i + 1 < n {
                    s.push_str(&" ".repeat(pad));
                }
            }
            if i + 1 < n {
                s.push(' ');
            }
        }
        s.trim_end().to_string()
    };
    out.push_str(NL);
    out.push_str(&line(headers.to_vec()));
    out.push_str(NL);
    out.push_str(&line(
        headers
            .iter()
            .map(|h| "-".repeat(h.chars().count()))
            .collect(),
    ));
    out.push_str(NL);
    for r in cells {
        out.push_str(&line(r));
        out.push_str(NL);
    }
    out.push_str(NL);
}

fn list(obj: &PsObject, out: &mut String) {
    let props = display_props(obj);
    let w = props
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    out.push_str(NL);
    for (k, v) in props {
        out.push_str(&format!("{k:<w$} : {}{NL}", cell(&v)));
    }
    out.push_str(NL);
}

/// Properties shown by default: those named in a `__display` property (a host object's
/// default view, like Get-Service's `Status Name DisplayName`), else all but `__*`/`ToString`.
fn display_props(obj: &PsObject) -> Vec<(String, Value)> {
    if let Some(view) = obj.get("__display") {
        let names = view.enumerate();
        if !names.is_empty() {
            return names
                .iter()
                .map(|n| {
                    let n = n.to_str();
                    let v = obj.get(&n).unwrap_or_default();
                    (n, v)
                })
                .collect();
        }
    }
    data_props(obj)
}

/// Every data property (JSON, Format-List): all but `__*` and `ToString`.
fn data_props(obj: &PsObject) -> Vec<(String, Value)> {
    obj.props
        .iter()
        .filter(|(k, _)| !k.starts_with("__") && k != "ToString")
        .cloned()
        .collect()
}

fn hashtable_rows(h: &Hashtable) -> Vec<Vec<Value>> {
    h.entries
        .iter()
        .map(|(k, v)| vec![k.clone(), v.clone()])
        .collect()
}

/// Type name of the marker Write-Host leaves in a statement's console-bound output, so its
/// text keeps its place among the objects.
pub(crate) const HOST_TEXT: &str = "pwsh.HostText";

/// Whether `v` is a Write-Host marker; its text.
pub(crate) fn host_text(v: &Value) -> Option<String> {
    match v {
        Value::Object(o) if o.borrow().type_name == HOST_TEXT => Some(
            o.borrow()
                .get("Text")
                .map(|t| t.to_str())
                .unwrap_or_default(),
        ),
        _ => None,
    }
}

/// Renders values as the console would print them (Out-String).
pub fn out_string(values: &[Value]) -> String {
    let mut out = String::new();
    let mut start = 0;
    for (i, v) in values.iter().enumerate() {
        if let Some(t) = host_text(v) {
            out.push_str(&out_string_run(&values[start..i]));
            out.push_str(&t);
            start = i + 1;
        }
    }
    out.push_str(&out_string_run(&values[start..]));
    out
}

fn out_string_run(values: &[Value]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < values.len() {
        let v = &values[i];
        match v {
            Value::Null => {}
            Value::DateTime(d) => {
                out.push_str(NL);
                out.push_str(&d.long());
                out.push_str(NL);
                out.push_str(NL);
            }
            Value::Error(e) => out.push_str(&e.render(None)),
            _ if is_scalar(v) => {
                out.push_str(&v.to_str());
                out.push_str(NL);
            }
            Value::Array(a) => {
                let inner = a.borrow().clone();
                out.push_str(&out_string(&inner));
            }
            Value::Hashtable(_) => {
                let mut rows = Vec::new();
                while let Some(Value::Hashtable(h)) = values.get(i) {
                    rows.extend(hashtable_rows(&h.borrow()));
                    i += 1;
                }
                let headers = ["Name".to_string(), "Value".to_string()];
                // Windows PowerShell gives the Name column a fixed width of 30.
                let mut t = String::new();
                let name_w = rows
                    .iter()
                    .map(|r| r[0].to_str().chars().count())
                    .max()
                    .unwrap_or(0)
                    .max(30);
                t.push_str(NL);
                t.push_str(&format!("{:<name_w$} {}{NL}", headers[0], headers[1]));
                t.push_str(&format!("{:<name_w$} {}{NL}", "----", "-----"));
                for r in rows {
                    let line = format!("{:<name_w$} {}", r[0].to_str(), cell(&r[1]));
                    t.push_str(line.trim_end());
                    t.push_str(NL);
                }
                t.push_str(NL);
                out.push_str(&t);
                continue;
            }
            Value::Object(o) if o.borrow().get("__text").is_some() => {
                // Objects that print as one line (MatchInfo).
                out.push_str(
                    &o.borrow()
                        .get("__text")
                        .map(|t| t.to_str())
                        .unwrap_or_default(),
                );
                out.push_str(NL);
            }
            Value::Object(o) => {
                let (type_name, props) = {
                    let b = o.borrow();
                    (b.type_name.clone(), display_props(&b))
                };
                // `__list`: a host object whose 5.1 view is a list (DISM's ImageObject).
                let list_view = o.borrow().get("__list").is_some();
                if props.len() > 4 || props.is_empty() || list_view {
                    if props.is_empty() {
                        out.push_str(&v.to_str());
                        out.push_str(NL);
                    } else {
                        list(&o.borrow(), &mut out);
                    }
                    i += 1;
                    continue;
                }
                // A table for a run of objects of the same type and shape.
                let headers: Vec<String> = props.iter().map(|(k, _)| k.clone()).collect();
                let fixed: Vec<usize> = o
                    .borrow()
                    .get("__widths")
                    .map(|w| {
                        w.enumerate()
                            .iter()
                            .map(|x| x.as_i64().unwrap_or(0).max(0) as usize)
                            .collect()
                    })
                    .unwrap_or_default();
                let mut rows = Vec::new();
                while let Some(Value::Object(o2)) = values.get(i) {
                    let b = o2.borrow();
                    let p = display_props(&b);
                    if b.type_name != type_name
                        || p.len() != headers.len()
                        || !p.iter().zip(&headers).all(|((k, _), h)| k == h)
                    {
                        break;
                    }
                    rows.push(p.into_iter().map(|(_, v)| v).collect());
                    i += 1;
                }
                table(&headers, &rows, &fixed, &mut out);
                continue;
            }
            _ => {
                out.push_str(&v.to_str());
                out.push_str(NL);
            }
        }
        i += 1;
    }
    out
}

/// JSON string escaping as Windows PowerShell 5.1 does it (HTML-sensitive characters too).
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\'' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

enum J {
    Scalar(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

fn to_j(v: &Value, depth: usize, max: usize) -> J {
    match v {
        Value::Null => J::Scalar("null".into()),
        Value::Bool(b) => J::Scalar(if *b { "true" } else { "false" }.into()),
        Value::Int(i) => J::Scalar(i.to_string()),
        Value::Double(d) => J::Scalar(if d.is_finite() {
            format_double(*d)
        } else {
            json_string(&format_double(*d))
        }),
        Value::Str(s) => J::Scalar(json_string(s)),
        Value::Char(c) => J::Scalar(json_string(&c.to_string())),
        Value::DateTime(d) => {
            let ms = d.ticks.saturating_sub(621_355_968_000_000_000) / 10_000;
            J::Scalar(json_string(&format!("\\/Date({ms})\\/")).replace("\\\\/", "\\/"))
        }
        Value::Array(a) => {
            if depth > max {
                return J::Scalar(json_string(&v.to_str()));
            }
            J::Arr(a.borrow().iter().map(|x| to_j(x, depth + 1, max)).collect())
        }
        Value::Hashtable(h) => {
            if depth > max {
                return J::Scalar(json_string(&v.to_str()));
            }
            J::Obj(
                h.borrow()
                    .entries
                    .iter()
                    .map(|(k, x)| (k.to_str(), to_j(x, depth + 1, max)))
                    .collect(),
            )
        }
        Value::Object(o) => {
            if depth > max {
                return J::Scalar(json_string(&v.to_str()));
            }
            let b = o.borrow();
            J::Obj(
                data_props(&b)
                    .iter()
                    .map(|(k, x)| (k.clone(), to_j(x, depth + 1, max)))
                    .collect(),
            )
        }
        Value::Version(p) => {
            let names = ["Major", "Minor", "Build", "Revision"];
            J::Obj(
                names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| {
                        (
                            n.to_string(),
                            J::Scalar(p.get(i).copied().unwrap_or(-1).to_string()),
                        )
                    })
                    .collect(),
            )
        }
        other => J::Scalar(json_string(&other.to_str())),
    }
}

fn write_j(j: &J, col: usize, out: &mut String) {
    match j {
        J::Scalar(s) => out.push_str(s),
        J::Arr(items) => {
            if items.is_empty() {
                out.push_str("[\r\n\r\n");
                out.push_str(&" ".repeat(col));
                out.push(']');
                return;
            }
            out.push_str("[\r\n");
            for (i, it) in items.iter().enumerate() {
                out.push_str(&" ".repeat(col + 4));
                write_j(it, col + 4, out);
                if i + 1 < items.len() {
                    out.push(',');
                }
                out.push_str("\r\n");
            }
            out.push_str(&" ".repeat(col));
            out.push(']');
        }
        J::Obj(entries) => {
            if entries.is_empty() {
                out.push_str("{\r\n\r\n");
                out.push_str(&" ".repeat(col));
                out.push('}');
                return;
            }
            out.push_str("{\r\n");
            for (i, (k, v)) in entries.iter().enumerate() {
                out.push_str(&" ".repeat(col + 4));
                let key = format!("{}:  ", json_string(k));
                out.push_str(&key);
                write_j(v, col + 4 + key.chars().count(), out);
                if i + 1 < entries.len() {
                    out.push(',');
                }
                out.push_str("\r\n");
            }
            out.push_str(&" ".repeat(col));
            out.push('}');
        }
    }
}

fn write_compact(j: &J, out: &mut String) {
    match j {
        J::Scalar(s) => out.push_str(s),
        J::Arr(items) => {
            out.push('[');
            for (i, it) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_compact(it, out);
            }
            out.push(']');
        }
        J::Obj(entries) => {
            out.push('{');
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&json_string(k));
                out.push(':');
                write_compact(v, out);
            }
            out.push('}');
        }
    }
}

/// `ConvertTo-Json` as Windows PowerShell 5.1 writes it: `"key":  value` with two spaces,
/// nested containers indented from their opening bracket; `-Depth` (default 2) and `-Compress`.
pub fn to_json(v: &Value, depth: usize, compress: bool) -> String {
    let j = to_j(v, 0, depth.min(100));
    let mut out = String::new();
    if compress {
        write_compact(&j, &mut out);
    } else {
        write_j(&j, 0, &mut out);
    }
    out
}

fn from_serde(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Double(n.as_f64().unwrap_or(0.0)),
        },
        serde_json::Value::String(s) => match s
            .strip_prefix("/Date(")
            .and_then(|r| r.strip_suffix(")/"))
            .and_then(|ms| ms.parse::<i64>().ok())
        {
            Some(ms) => Value::DateTime(crate::value::DateTime {
                ticks: ms
                    .saturating_mul(10_000)
                    .saturating_add(621_355_968_000_000_000),
            }),
            None => Value::Str(s.clone()),
        },
        serde_json::Value::Array(a) => Value::array(a.iter().map(from_serde).collect()),
        serde_json::Value::Object(o) => {
            let mut obj = PsObject::custom();
            for (k, v) in o {
                obj.set(k, from_serde(v));
            }
            obj.into()
        }
    }
}

/// `ConvertFrom-Json`: objects become `[pscustomobject]`s.
pub fn from_json(text: &str) -> Result<Value, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    Ok(from_serde(&v))
}
