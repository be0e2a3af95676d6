//! PowerShell values: the dynamic type the interpreter computes with, and its conversions.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::rc::Rc;

use crate::error::ErrorRecord;
use crate::parse::Source;

/// Windows-1252's characters for bytes 0x80..=0x9F (unassigned bytes map to U+FFFD).
const CP1252_HIGH: [char; 32] = [
    '\u{20AC}', '\u{FFFD}', '\u{201A}', '\u{0192}', '\u{201E}', '\u{2026}', '\u{2020}', '\u{2021}',
    '\u{02C6}', '\u{2030}', '\u{0160}', '\u{2039}', '\u{0152}', '\u{FFFD}', '\u{017D}', '\u{FFFD}',
    '\u{FFFD}', '\u{2018}', '\u{2019}', '\u{201C}', '\u{201D}', '\u{2022}', '\u{2013}', '\u{2014}',
    '\u{02DC}', '\u{2122}', '\u{0161}', '\u{203A}', '\u{0153}', '\u{FFFD}', '\u{017E}', '\u{0178}',
];

/// Decodes a `.ps1` file as Windows PowerShell 5.1 reads it: a UTF-8 or UTF-16LE BOM wins,
/// otherwise the ANSI code page (Windows-1252), so BOM-less UTF-8 becomes mojibake.
pub fn decode_script_file(bytes: &[u8]) -> String {
    Encoding::Ansi.decode_file(bytes)
}

/// A text encoding object (`[Text.Encoding]::UTF8`, `New-Object Text.UTF8Encoding $false`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// UTF-8; `bom` says whether its preamble is the byte-order mark.
    Utf8 { bom: bool },
    /// 7-bit ASCII (`?` for anything else).
    Ascii,
    /// UTF-16LE (`[Text.Encoding]::Unicode`).
    Unicode,
    /// Windows-1252, Windows PowerShell 5.1's "Default"/ANSI on en-US guests.
    Ansi,
}

impl Encoding {
    /// Encodes text (without preamble).
    pub fn encode(self, text: &str) -> Vec<u8> {
        match self {
            Encoding::Utf8 { .. } => text.as_bytes().to_vec(),
            Encoding::Ascii => text
                .chars()
                .map(|c| if c.is_ascii() { c as u8 } else { b'?' })
                .collect(),
            Encoding::Unicode => text.encode_utf16().flat_map(u16::to_le_bytes).collect(),
            Encoding::Ansi => text
                .chars()
                .map(|c| {
                    if let Some(i) = CP1252_HIGH.iter().position(|h| *h == c && c != '\u{FFFD}') {
                        0x80 + i as u8
                    } else if (c as u32) < 0x80 || (0xA0..0x100).contains(&(c as u32)) {
                        c as u32 as u8
                    } else {
                        b'?'
                    }
                })
                .collect(),
        }
    }

    /// The byte-order mark this encoding writes before text (files), if any.
    pub fn preamble(self) -> &'static [u8] {
        match self {
            Encoding::Utf8 { bom: true } => &[0xEF, 0xBB, 0xBF],
            Encoding::Unicode => &[0xFF, 0xFE],
            _ => &[],
        }
    }

    /// Decodes bytes (no preamble handling).
    pub fn decode(self, bytes: &[u8]) -> String {
        match self {
            Encoding::Utf8 { .. } => String::from_utf8_lossy(bytes).into_owned(),
            Encoding::Ascii => bytes
                .iter()
                .map(|b| if *b < 128 { *b as char } else { '?' })
                .collect(),
            Encoding::Unicode => {
                let units: Vec<u16> = bytes
                    .chunks_exact(2)
                    .map(|p| u16::from_le_bytes([p[0], p[1]]))
                    .collect();
                String::from_utf16_lossy(&units)
            }
            Encoding::Ansi => bytes
                .iter()
                .map(|b| match b {
                    0x80..=0x9F => CP1252_HIGH[(*b - 0x80) as usize],
                    _ => *b as char,
                })
                .collect(),
        }
    }

    /// Reads a file's bytes as .NET does: a BOM wins, else this encoding.
    pub fn decode_file(self, bytes: &[u8]) -> String {
        if let Some(rest) = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
            return String::from_utf8_lossy(rest).into_owned();
        }
        if let Some(rest) = bytes.strip_prefix(&[0xFF, 0xFE]) {
            return Encoding::Unicode.decode(rest);
        }
        self.decode(bytes)
    }

    fn type_name(self) -> &'static str {
        match self {
            Encoding::Utf8 { .. } => "System.Text.UTF8Encoding",
            Encoding::Ascii => "System.Text.ASCIIEncoding",
            Encoding::Unicode => "System.Text.UnicodeEncoding",
            Encoding::Ansi => "System.Text.SBCSCodePageEncoding",
        }
    }
}

/// `@{}` or `[ordered]@{}`: insertion-ordered, string keys compared case-insensitively.
#[derive(Debug, Clone, Default)]
pub struct Hashtable {
    /// `[ordered]` (an OrderedDictionary) rather than a Hashtable.
    pub ordered: bool,
    /// Entries in insertion order.
    pub entries: Vec<(Value, Value)>,
}

impl Hashtable {
    /// The index of `key`, if present.
    pub fn index_of(&self, key: &Value) -> Option<usize> {
        self.entries.iter().position(|(k, _)| keys_equal(k, key))
    }

    /// The value stored under `key`.
    pub fn get(&self, key: &Value) -> Option<Value> {
        self.index_of(key).map(|i| self.entries[i].1.clone())
    }

    /// Sets or adds `key`.
    pub fn set(&mut self, key: Value, value: Value) {
        match self.index_of(&key) {
            Some(i) => self.entries[i].1 = value,
            None => self.entries.push((key, value)),
        }
    }

    /// Removes `key` if present.
    pub fn remove(&mut self, key: &Value) {
        if let Some(i) = self.index_of(key) {
            self.entries.remove(i);
        }
    }
}

fn keys_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Str(x), Value::Str(y)) => x.eq_ignore_ascii_case(y),
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Str(_), _) | (_, Value::Str(_)) => false,
        _ => a.to_str().eq_ignore_ascii_case(&b.to_str()),
    }
}

/// A property bag: `[pscustomobject]`, and the objects host cmdlets return (services,
/// firewall rules, ...). `type_name` is what `.GetType().FullName`/`-is` see.
#[derive(Debug, Clone, Default)]
pub struct PsObject {
    /// The .NET type name (e.g. `System.ServiceProcess.ServiceController`).
    pub type_name: String,
    /// Properties in display order; names compared case-insensitively.
    pub props: Vec<(String, Value)>,
}

impl PsObject {
    /// A `[pscustomobject]`.
    pub fn custom() -> Self {
        PsObject {
            type_name: "System.Management.Automation.PSCustomObject".into(),
            props: Vec::new(),
        }
    }

    /// An object of the given type name.
    pub fn typed(type_name: &str) -> Self {
        PsObject {
            type_name: type_name.into(),
            props: Vec::new(),
        }
    }

    /// Builder: adds a property.
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.set(name, value.into());
        self
    }

    /// A property's value.
    pub fn get(&self, name: &str) -> Option<Value> {
        self.props
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }

    /// Sets or adds a property.
    pub fn set(&mut self, name: &str, value: Value) {
        match self
            .props
            .iter_mut()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
        {
            Some(slot) => slot.1 = value,
            None => self.props.push((name.to_string(), value)),
        }
    }
}

/// A script block value: its source and the byte range of its `{ ... }` node.
#[derive(Debug)]
pub struct ScriptBlock {
    /// The parsed script it comes from.
    pub source: Rc<Source>,
    /// Byte range of the `script_block_expression` (or function) node.
    pub start: usize,
    /// End of that range.
    pub end: usize,
    /// Node kind at that range.
    pub kind: &'static str,
}

impl ScriptBlock {
    /// The text between the braces.
    pub fn text(&self) -> String {
        let t = self.source.text.get(self.start..self.end).unwrap_or("");
        let t = t.strip_prefix('{').unwrap_or(t);
        t.strip_suffix('}').unwrap_or(t).to_string()
    }
}

/// A date and time, as ticks (100 ns) since 0001-01-01 UTC-agnostic, like `System.DateTime`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DateTime {
    /// 100-ns ticks since 0001-01-01T00:00:00.
    pub ticks: i64,
}

const TICKS_PER_SEC: i64 = 10_000_000;
const DAYS_TO_1970: i64 = 719_162;

impl DateTime {
    /// From Unix seconds.
    pub fn from_unix(secs: i64, nanos: u32) -> Self {
        DateTime {
            ticks: (secs + DAYS_TO_1970 * 86_400) * TICKS_PER_SEC + i64::from(nanos / 100),
        }
    }

    /// The current UTC time.
    pub fn now_utc() -> Self {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Self::from_unix(d.as_secs() as i64, d.subsec_nanos())
    }

    /// (year, month, day, hour, minute, second, millisecond)
    pub fn parts(self) -> (i64, u32, u32, u32, u32, u32, u32) {
        let secs = self.ticks.div_euclid(TICKS_PER_SEC);
        let ms = (self.ticks.rem_euclid(TICKS_PER_SEC) / 10_000) as u32;
        let days = secs.div_euclid(86_400) - DAYS_TO_1970;
        let sod = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        (
            y,
            m,
            d,
            (sod / 3600) as u32,
            ((sod % 3600) / 60) as u32,
            (sod % 60) as u32,
            ms,
        )
    }

    /// From civil parts.
    pub fn from_parts(y: i64, m: u32, d: u32, hh: u32, mm: u32, ss: u32) -> Self {
        let days = days_from_civil(y, m, d) + DAYS_TO_1970;
        DateTime {
            ticks: (days * 86_400 + i64::from(hh) * 3600 + i64::from(mm) * 60 + i64::from(ss))
                * TICKS_PER_SEC,
        }
    }

    /// Parses `yyyy-MM-dd[THH:mm:ss[.fff][Z]]` and `MM/dd/yyyy [HH:mm:ss]`.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim().trim_end_matches('Z');
        let (date, time) = match s.split_once(['T', ' ']) {
            Some((d, t)) => (d, Some(t)),
            None => (s, None),
        };
        let (y, m, d) = if date.contains('-') {
            let mut it = date.split('-');
            (
                it.next()?.parse().ok()?,
                it.next()?.parse().ok()?,
                it.next()?.parse().ok()?,
            )
        } else {
            let mut it = date.split('/');
            let m = it.next()?.parse().ok()?;
            let d = it.next()?.parse().ok()?;
            (it.next()?.parse().ok()?, m, d)
        };
        if !(1..=12).contains(&m) || !(1..=31).contains(&d) || !(1..=9999).contains(&y) {
            return None;
        }
        let (mut hh, mut mm, mut ss) = (0, 0, 0);
        if let Some(t) = time {
            let t = t.split('.').next().unwrap_or("");
            let mut it = t.split(':');
            hh = it.next()?.parse().ok()?;
            mm = it.next().unwrap_or("0").parse().ok()?;
            ss = it.next().unwrap_or("0").parse().ok()?;
            if hh > 23 || mm > 59 || ss > 59 {
                return None;
            }
        }
        Some(Self::from_parts(y, m, d, hh, mm, ss))
    }

    /// `MM/dd/yyyy HH:mm:ss`, as PowerShell converts a date to a string.
    pub fn invariant(self) -> String {
        let (y, m, d, hh, mi, ss, _) = self.parts();
        format!("{m:02}/{d:02}/{y:04} {hh:02}:{mi:02}:{ss:02}")
    }

    /// ISO 8601 round-trip form.
    pub fn iso(self) -> String {
        let (y, m, d, hh, mi, ss, ms) = self.parts();
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mi:02}:{ss:02}.{ms:03}Z")
    }

    /// The console's default rendering: `Sunday, November 29, 2026 8:35:11 AM`.
    pub fn long(self) -> String {
        const DAYS: [&str; 7] = [
            "Monday",
            "Tuesday",
            "Wednesday",
            "Thursday",
            "Friday",
            "Saturday",
            "Sunday",
        ];
        const MONTHS: [&str; 12] = [
            "January",
            "February",
            "March",
            "April",
            "May",
            "June",
            "July",
            "August",
            "September",
            "October",
            "November",
            "December",
        ];
        let (y, m, d, hh, mi, ss, _) = self.parts();
        let days = self.ticks.div_euclid(TICKS_PER_SEC * 86_400);
        let dow = DAYS[days.rem_euclid(7) as usize];
        let (h12, ampm) = match hh {
            0 => (12, "AM"),
            1..=11 => (hh, "AM"),
            12 => (12, "PM"),
            _ => (hh - 12, "PM"),
        };
        format!(
            "{dow}, {} {d}, {y} {h12}:{mi:02}:{ss:02} {ampm}",
            MONTHS[(m as usize).saturating_sub(1) % 12]
        )
    }
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A PowerShell value.
#[derive(Debug, Clone, Default)]
pub enum Value {
    /// `$null` (also AutomationNull: "nothing").
    #[default]
    Null,
    /// `$true` / `$false`.
    Bool(bool),
    /// Int32/Int64 (and bytes).
    Int(i64),
    /// Double.
    Double(f64),
    /// String.
    Str(String),
    /// `[char]`.
    Char(char),
    /// `object[]` (reference semantics, like .NET arrays).
    Array(Rc<RefCell<Vec<Value>>>),
    /// Hashtable / OrderedDictionary.
    Hashtable(Rc<RefCell<Hashtable>>),
    /// A property bag with a type name.
    Object(Rc<RefCell<PsObject>>),
    /// `{ ... }`.
    ScriptBlock(Rc<ScriptBlock>),
    /// A type literal such as `[IO.File]`, by canonical full name.
    Type(String),
    /// `System.DateTime`.
    DateTime(DateTime),
    /// `System.Version`.
    Version(Vec<i64>),
    /// A `System.Text.Encoding`.
    Encoding(Encoding),
    /// An `ErrorRecord` (`$_` in catch, `$Error[0]`).
    Error(Rc<ErrorRecord>),
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_string())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}
impl From<i32> for Value {
    fn from(i: i32) -> Self {
        Value::Int(i64::from(i))
    }
}
impl From<PsObject> for Value {
    fn from(o: PsObject) -> Self {
        Value::Object(Rc::new(RefCell::new(o)))
    }
}
impl From<Vec<Value>> for Value {
    fn from(v: Vec<Value>) -> Self {
        Value::array(v)
    }
}

/// Formats a double as .NET's default ToString does (15 significant digits, no trailing zeros).
pub fn format_double(d: f64) -> String {
    if d.is_nan() {
        return "NaN".into();
    }
    if d.is_infinite() {
        return if d > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if d == d.trunc() && d.abs() < 1e15 {
        return format!("{}", d as i64);
    }
    let s = format!("{:.14e}", d);
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mant = mant.trim_end_matches('0').trim_end_matches('.');
    if (-5..15).contains(&exp) {
        let v: f64 = format!("{mant}e{exp}").parse().unwrap_or(d);
        let mut out = format!("{v}");
        if out.contains('e') {
            out = format!("{:.*}", (-exp).max(0) as usize + 14, v);
            out = out.trim_end_matches('0').trim_end_matches('.').to_string();
        }
        out
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mant}E{sign}{:02}", exp.abs())
    }
}

impl Value {
    /// A new array value.
    pub fn array(v: Vec<Value>) -> Value {
        Value::Array(Rc::new(RefCell::new(v)))
    }

    /// A new hashtable value.
    pub fn hashtable(h: Hashtable) -> Value {
        Value::Hashtable(Rc::new(RefCell::new(h)))
    }

    /// Whether this is `$null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The .NET type name, as `.GetType().FullName` reports it.
    pub fn type_name(&self) -> String {
        match self {
            Value::Null => "null".into(),
            Value::Bool(_) => "System.Boolean".into(),
            Value::Int(i) => {
                if i32::try_from(*i).is_ok() {
                    "System.Int32".into()
                } else {
                    "System.Int64".into()
                }
            }
            Value::Double(_) => "System.Double".into(),
            Value::Str(_) => "System.String".into(),
            Value::Char(_) => "System.Char".into(),
            Value::Array(_) => "System.Object[]".into(),
            Value::Hashtable(h) => {
                if h.borrow().ordered {
                    "System.Collections.Specialized.OrderedDictionary".into()
                } else {
                    "System.Collections.Hashtable".into()
                }
            }
            Value::Object(o) => o.borrow().type_name.clone(),
            Value::ScriptBlock(_) => "System.Management.Automation.ScriptBlock".into(),
            Value::Type(_) => "System.RuntimeType".into(),
            Value::DateTime(_) => "System.DateTime".into(),
            Value::Version(_) => "System.Version".into(),
            Value::Encoding(e) => e.type_name().into(),
            Value::Error(_) => "System.Management.Automation.ErrorRecord".into(),
        }
    }

    /// The elements PowerShell enumerates (a scalar is one element, `$null` none).
    pub fn enumerate(&self) -> Vec<Value> {
        match self {
            Value::Null => Vec::new(),
            Value::Array(a) => a.borrow().clone(),
            other => vec![other.clone()],
        }
    }

    /// Conversion to string, as in `"$x"` and `[string]$x`.
    pub fn to_str(&self) -> String {
        match self {
            Value::Null => String::new(),
            Value::Bool(b) => if *b { "True" } else { "False" }.into(),
            Value::Int(i) => i.to_string(),
            Value::Double(d) => format_double(*d),
            Value::Str(s) => s.clone(),
            Value::Char(c) => c.to_string(),
            Value::Array(a) => a
                .borrow()
                .iter()
                .map(Value::to_str)
                .collect::<Vec<_>>()
                .join(" "),
            Value::Hashtable(_) => self.type_name(),
            Value::Object(o) => {
                let o = o.borrow();
                if o.type_name == "System.Management.Automation.PSCustomObject" {
                    let mut s = String::from("@{");
                    for (i, (k, v)) in o.props.iter().enumerate() {
                        if i > 0 {
                            s.push_str("; ");
                        }
                        let _ = write!(s, "{k}={}", v.to_str());
                    }
                    s.push('}');
                    s
                } else if let Some(v) = o.get("ToString") {
                    v.to_str()
                } else if let Some(v) = o.get("Name") {
                    v.to_str()
                } else {
                    o.type_name.clone()
                }
            }
            Value::ScriptBlock(sb) => sb.text(),
            Value::Type(t) => t.clone(),
            Value::DateTime(d) => d.invariant(),
            Value::Version(v) => v
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("."),
            Value::Encoding(e) => e.type_name().into(),
            Value::Error(e) => e.message.clone(),
        }
    }

    /// PowerShell truthiness.
    pub fn truthy(&self) -> bool {
        match self {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Double(d) => *d != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::Char(c) => *c != '\0',
            Value::Array(a) => {
                let a = a.borrow();
                match a.len() {
                    0 => false,
                    1 => a[0].truthy(),
                    _ => true,
                }
            }
            _ => true,
        }
    }

    /// A number view, if this converts to one (strings are parsed as PowerShell does).
    pub fn to_number(&self) -> Option<Value> {
        match self {
            Value::Null => Some(Value::Int(0)),
            Value::Bool(b) => Some(Value::Int(i64::from(*b))),
            Value::Int(_) | Value::Double(_) => Some(self.clone()),
            Value::Char(c) => Some(Value::Int(i64::from(u32::from(*c)))),
            Value::Str(s) => parse_number(s.trim()),
            Value::Array(a) => {
                let a = a.borrow();
                if a.len() == 1 {
                    a[0].to_number()
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    /// As f64, if numeric.
    pub fn as_f64(&self) -> Option<f64> {
        match self.to_number()? {
            Value::Int(i) => Some(i as f64),
            Value::Double(d) => Some(d),
            _ => None,
        }
    }

    /// As i64, rounding doubles to even as .NET does.
    pub fn as_i64(&self) -> Option<i64> {
        match self.to_number()? {
            Value::Int(i) => Some(i),
            Value::Double(d) => {
                if d.is_finite() && d.abs() < 9.2e18 {
                    let r = d.round();
                    let r = if (d - d.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
                        r - d.signum()
                    } else {
                        r
                    };
                    Some(r as i64)
                } else {
                    None
                }
            }
            _ => None,
        }
    }
}

/// Parses a PowerShell numeric literal or numeric string: decimal, hex `0x`, `1KB`..`1PB`,
/// `L`/`D` suffixes, reals with exponents.
pub fn parse_number(s: &str) -> Option<Value> {
    let t = s.trim();
    if t.is_empty() {
        return None;
    }
    let (neg, body) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let lower = body.to_ascii_lowercase();
    let mut core = lower.as_str();
    let mut mult: i64 = 1;
    for (suffix, m) in [
        ("kb", 1i64 << 10),
        ("mb", 1 << 20),
        ("gb", 1 << 30),
        ("tb", 1 << 40),
        ("pb", 1 << 50),
    ] {
        if let Some(c) = core.strip_suffix(suffix) {
            core = c;
            mult = m;
            break;
        }
    }
    let mut force_long = false;
    let mut force_decimal = false;
    if !core.starts_with("0x") {
        if let Some(c) = core.strip_suffix('l') {
            core = c;
            force_long = true;
        } else if let Some(c) = core.strip_suffix('d') {
            core = c;
            force_decimal = true;
        }
    } else if let Some(c) = core.strip_suffix('l') {
        core = c;
        force_long = true;
    }
    let _ = force_long;
    if core.is_empty() {
        return None;
    }
    let sign = if neg { -1 } else { 1 };
    if let Some(hex) = core.strip_prefix("0x") {
        if hex.is_empty() || hex.len() > 16 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        let v = u64::from_str_radix(hex, 16).ok()?;
        // 0xFFFFFFFF is Int32 -1 in PowerShell.
        let v = if hex.len() <= 8 && v > i32::MAX as u64 {
            i64::from(v as u32 as i32)
        } else {
            v as i64
        };
        return v.checked_mul(mult)?.checked_mul(sign).map(Value::Int);
    }
    if core.chars().all(|c| c.is_ascii_digit()) && !force_decimal {
        return match core.parse::<i64>() {
            Ok(v) => match v.checked_mul(mult).and_then(|v| v.checked_mul(sign)) {
                Some(v) => Some(Value::Int(v)),
                None => Some(Value::Double(v as f64 * mult as f64 * sign as f64)),
            },
            Err(_) => core
                .parse::<f64>()
                .ok()
                .map(|d| Value::Double(d * mult as f64 * sign as f64)),
        };
    }
    if core
        .chars()
        .all(|c| c.is_ascii_digit() || c == '.' || c == 'e' || c == '+' || c == '-')
        && core
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit() || c == '.')
    {
        let d: f64 = core.parse().ok()?;
        return Some(Value::Double(d * mult as f64 * sign as f64));
    }
    None
}
