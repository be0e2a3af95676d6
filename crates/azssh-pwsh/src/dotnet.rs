//! The .NET surface scripts use: type accelerators and casts, static members of `[IO.File]`,
//! `[IO.Path]`, `[Text.Encoding]`, `[Convert]`, `[Environment]`, `[DateTime]`, `[Math]`, and
//! instance members of strings, arrays, hashtables, dates, encodings and error records.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::error::ErrorRecord;
use crate::host::{FsError, Host};
use crate::ops;
use crate::value::{DateTime, Encoding, Hashtable, PsObject, Value};

const ACCELERATORS: &[(&str, &str)] = &[
    ("int", "System.Int32"),
    ("int32", "System.Int32"),
    ("long", "System.Int64"),
    ("int64", "System.Int64"),
    ("uint32", "System.UInt32"),
    ("byte", "System.Byte"),
    ("string", "System.String"),
    ("bool", "System.Boolean"),
    ("boolean", "System.Boolean"),
    ("char", "System.Char"),
    ("double", "System.Double"),
    ("float", "System.Single"),
    ("single", "System.Single"),
    ("decimal", "System.Decimal"),
    ("array", "System.Array"),
    ("object", "System.Object"),
    ("hashtable", "System.Collections.Hashtable"),
    ("ordered", "ordered"),
    (
        "pscustomobject",
        "System.Management.Automation.PSCustomObject",
    ),
    ("psobject", "System.Management.Automation.PSObject"),
    ("datetime", "System.DateTime"),
    ("timespan", "System.TimeSpan"),
    ("version", "System.Version"),
    ("regex", "System.Text.RegularExpressions.Regex"),
    ("scriptblock", "System.Management.Automation.ScriptBlock"),
    ("switch", "System.Management.Automation.SwitchParameter"),
    ("void", "System.Void"),
    ("guid", "System.Guid"),
    ("io.file", "System.IO.File"),
    ("io.path", "System.IO.Path"),
    ("io.directory", "System.IO.Directory"),
    ("text.encoding", "System.Text.Encoding"),
    ("text.utf8encoding", "System.Text.UTF8Encoding"),
    ("text.asciiencoding", "System.Text.ASCIIEncoding"),
    ("text.unicodeencoding", "System.Text.UnicodeEncoding"),
    ("convert", "System.Convert"),
    ("environment", "System.Environment"),
    ("math", "System.Math"),
    ("exception", "System.Exception"),
    (
        "management.automation.runtimeexception",
        "System.Management.Automation.RuntimeException",
    ),
    (
        "security.principal.securityidentifier",
        "System.Security.Principal.SecurityIdentifier",
    ),
    (
        "security.principal.ntaccount",
        "System.Security.Principal.NTAccount",
    ),
    ("collections.arraylist", "System.Collections.ArrayList"),
    (
        "security.principal.windowsidentity",
        "System.Security.Principal.WindowsIdentity",
    ),
    (
        "security.cryptography.sha256",
        "System.Security.Cryptography.SHA256",
    ),
    (
        "security.cryptography.sha256managed",
        "System.Security.Cryptography.SHA256Managed",
    ),
    (
        "collections.generic.list[string]",
        "System.Collections.Generic.List[string]",
    ),
];

/// The canonical full name of a type as written in a type literal (`int` → `System.Int32`,
/// `IO.File` → `System.IO.File`, `byte[]` → `System.Byte[]`).
pub fn canonical_type(name: &str) -> String {
    let n = name.trim();
    let n = match n.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
        Some(inner) => inner.trim(),
        None => n,
    };
    if let Some(elem) = n.strip_suffix("[]") {
        return format!("{}[]", canonical_type(elem));
    }
    let lower = n.to_ascii_lowercase();
    let short = lower.strip_prefix("system.").unwrap_or(&lower);
    for (k, v) in ACCELERATORS {
        if *k == lower || *k == short {
            return (*v).to_string();
        }
    }
    for (_, v) in ACCELERATORS {
        if v.eq_ignore_ascii_case(n) {
            return (*v).to_string();
        }
    }
    n.to_string()
}

/// Whether `v -is [t]`.
pub fn is_instance(v: &Value, t: &str) -> bool {
    let t = t.to_ascii_lowercase();
    match t.as_str() {
        "system.object" => !v.is_null(),
        "system.management.automation.psobject" => !v.is_null(),
        "system.array" | "system.object[]" => matches!(v, Value::Array(_)),
        "system.valuetype" => matches!(
            v,
            Value::Int(_) | Value::Double(_) | Value::Bool(_) | Value::Char(_) | Value::DateTime(_)
        ),
        "system.collections.idictionary" => matches!(v, Value::Hashtable(_)),
        "system.exception" => {
            matches!(v, Value::Object(o) if o.borrow().type_name.to_ascii_lowercase().ends_with("exception"))
        }
        "system.int64" => matches!(v, Value::Int(_)),
        _ => v.type_name().eq_ignore_ascii_case(&t),
    }
}

fn cast_error(v: &Value, t: &str, detail: &str) -> ErrorRecord {
    let shown = match v {
        Value::Null => "".to_string(),
        other => other.to_str(),
    };
    let mut msg = format!("Cannot convert value \"{shown}\" to type \"{t}\".");
    if !detail.is_empty() {
        msg.push_str(&format!(" Error: \"{detail}\""));
    }
    ErrorRecord::new(
        msg,
        "System.Management.Automation.RuntimeException",
        "InvalidCastFromStringToInteger",
        "InvalidArgument",
    )
}

fn to_int(v: &Value, t: &str, min: i64, max: i64) -> Result<Value, ErrorRecord> {
    match v.as_i64() {
        Some(i) if (min..=max).contains(&i) => Ok(Value::Int(i)),
        Some(_) => Err(cast_error(
            v,
            t,
            "Value was either too large or too small for the type.",
        )),
        None => Err(cast_error(
            v,
            t,
            "Input string was not in a correct format.",
        )),
    }
}

/// A cast `[t]v` (also used for typed parameters and `-as`).
pub fn convert(v: &Value, t: &str) -> Result<Value, ErrorRecord> {
    let lower = t.to_ascii_lowercase();
    if let Some(elem) = lower.strip_suffix("[]") {
        if elem == "system.byte" {
            if let Value::Str(s) = v {
                return Err(cast_error(&Value::Str(s.clone()), t, ""));
            }
        }
        if elem == "system.object" {
            return Ok(Value::array(v.enumerate()));
        }
        let items = v.enumerate();
        let mut out = Vec::with_capacity(items.len());
        for i in items {
            out.push(convert(&i, &t[..t.len() - 2])?);
        }
        return Ok(Value::array(out));
    }
    match lower.as_str() {
        "system.int32" => to_int(v, t, i32::MIN as i64, i32::MAX as i64),
        "system.int64" => to_int(v, t, i64::MIN, i64::MAX),
        "system.uint32" => to_int(v, t, 0, u32::MAX as i64),
        "system.byte" => to_int(v, t, 0, 255),
        "system.double" | "system.single" | "system.decimal" => v
            .as_f64()
            .map(Value::Double)
            .ok_or_else(|| cast_error(v, t, "Input string was not in a correct format.")),
        "system.string" => Ok(match v {
            Value::Null => Value::Str(String::new()),
            other => Value::Str(other.to_str()),
        }),
        "system.boolean" | "system.management.automation.switchparameter" => {
            Ok(Value::Bool(v.truthy()))
        }
        "system.char" => match v {
            Value::Char(c) => Ok(Value::Char(*c)),
            Value::Str(s) if s.chars().count() == 1 => {
                Ok(Value::Char(s.chars().next().unwrap_or(' ')))
            }
            Value::Int(i) => char::from_u32(*i as u32)
                .map(Value::Char)
                .ok_or_else(|| cast_error(v, t, "")),
            _ => Err(cast_error(
                v,
                t,
                "String must be exactly one character long.",
            )),
        },
        "system.array" => Ok(match v {
            Value::Null => Value::Null,
            other => Value::array(other.enumerate()),
        }),
        "system.object" | "system.management.automation.psobject" => Ok(v.clone()),
        "system.collections.hashtable" => match v {
            Value::Hashtable(h) => {
                let mut n = h.borrow().clone();
                n.ordered = false;
                Ok(Value::hashtable(n))
            }
            Value::Null => Ok(Value::Null),
            _ => Err(cast_error(v, t, "")),
        },
        "ordered" => match v {
            Value::Hashtable(h) => {
                let mut n = h.borrow().clone();
                n.ordered = true;
                Ok(Value::hashtable(n))
            }
            _ => Err(cast_error(v, t, "")),
        },
        "system.management.automation.pscustomobject" => match v {
            Value::Hashtable(h) => {
                let mut o = PsObject::custom();
                for (k, val) in h.borrow().entries.iter() {
                    o.set(&k.to_str(), val.clone());
                }
                Ok(o.into())
            }
            other => Ok(other.clone()),
        },
        "system.datetime" => match v {
            Value::DateTime(_) => Ok(v.clone()),
            other => DateTime::parse(&other.to_str())
                .map(Value::DateTime)
                .ok_or_else(|| {
                    cast_error(other, t, "String was not recognized as a valid DateTime.")
                }),
        },
        "system.version" => match v {
            Value::Version(_) => Ok(v.clone()),
            other => ops::parse_version(&other.to_str())
                .map(Value::Version)
                .ok_or_else(|| cast_error(other, t, "")),
        },
        "system.text.regularexpressions.regex" => {
            ops::regex(&v.to_str(), false)?;
            Ok(Value::Str(v.to_str()))
        }
        "system.void" => Ok(Value::Null),
        "system.management.automation.scriptblock" => match v {
            Value::ScriptBlock(_) => Ok(v.clone()),
            _ => Err(cast_error(v, t, "")),
        },
        "system.security.principal.securityidentifier" => Ok(PsObject::typed(
            "System.Security.Principal.SecurityIdentifier",
        )
        .with("Value", v.to_str())
        .into()),
        _ => {
            if v.type_name().eq_ignore_ascii_case(t) {
                Ok(v.clone())
            } else {
                Err(ErrorRecord::new(
                    format!("Unable to find type [{t}]."),
                    "System.Management.Automation.RuntimeException",
                    "TypeNotFound",
                    "InvalidOperation",
                ))
            }
        }
    }
}

/// A .NET exception surfacing from a method call: `Exception calling "X" with "N" argument(s): "..."`.
pub fn method_exception(
    method: &str,
    argc: usize,
    inner: &str,
    inner_type: &str,
    hresult: i32,
) -> ErrorRecord {
    let mut e = ErrorRecord::new(
        format!("Exception calling \"{method}\" with \"{argc}\" argument(s): \"{inner}\""),
        "System.Management.Automation.MethodInvocationException",
        inner_type
            .rsplit('.')
            .next()
            .unwrap_or("DotNetMethodException"),
        "NotSpecified",
    );
    e.inner = Some((inner_type.to_string(), inner.to_string(), hresult));
    e
}

fn fs_exception(method: &str, argc: usize, e: &FsError) -> ErrorRecord {
    let (t, hr) = match e {
        FsError::FileNotFound(_) => ("System.IO.FileNotFoundException", -2147024894),
        FsError::DirectoryNotFound(_) => ("System.IO.DirectoryNotFoundException", -2147024893),
        FsError::AccessDenied(_) => ("System.UnauthorizedAccessException", -2147024891),
        FsError::Other(_) => ("System.IO.IOException", -2146232800),
    };
    let mut rec = method_exception(method, argc, &e.to_string(), t, hr);
    rec.fqid = t.rsplit('.').next().unwrap_or("IOException").to_string();
    rec
}

fn no_method(type_name: &str, method: &str) -> ErrorRecord {
    ErrorRecord::new(
        format!("Method invocation failed because [{type_name}] does not contain a method named '{method}'."),
        "System.Management.Automation.RuntimeException",
        "MethodNotFound",
        "InvalidOperation",
    )
}

fn encoding_arg(v: Option<&Value>) -> Encoding {
    match v {
        Some(Value::Encoding(e)) => *e,
        _ => Encoding::Utf8 { bom: false },
    }
}

fn bytes_of(v: &Value) -> Vec<u8> {
    v.enumerate()
        .iter()
        .map(|b| b.as_i64().unwrap_or(0) as u8)
        .collect()
}

/// Bytes as a PowerShell `byte[]` value.
pub fn bytes_value(bytes: &[u8]) -> Value {
    Value::array(bytes.iter().map(|b| Value::Int(i64::from(*b))).collect())
}

/// Resolves a relative path against the host's working directory.
pub fn full_path(host: &dyn Host, p: &str) -> String {
    let p = p.replace('/', "\\");
    if p.len() >= 2 && p.as_bytes()[1] == b':' || p.starts_with("\\\\") {
        p
    } else if let Some(rest) = p.strip_prefix(".\\") {
        format!("{}\\{rest}", host.cwd().trim_end_matches('\\'))
    } else {
        format!("{}\\{p}", host.cwd().trim_end_matches('\\'))
    }
}

/// `[Type]::Member` (a static property).
pub fn static_property(host: &mut dyn Host, t: &str, name: &str) -> Result<Value, ErrorRecord> {
    let n = name.to_ascii_lowercase();
    let t_l = t.to_ascii_lowercase();
    let v = match (t_l.as_str(), n.as_str()) {
        ("system.text.encoding", "utf8") => Value::Encoding(Encoding::Utf8 { bom: true }),
        ("system.text.encoding", "ascii") => Value::Encoding(Encoding::Ascii),
        ("system.text.encoding", "unicode") => Value::Encoding(Encoding::Unicode),
        ("system.text.encoding", "default") => Value::Encoding(Encoding::Ansi),
        ("system.environment", "newline") => Value::Str("\r\n".into()),
        ("system.environment", "machinename") => Value::Str(host.computer_name()),
        ("system.environment", "username") => {
            Value::Str(host.env_var("USERNAME").unwrap_or_else(|| "SYSTEM".into()))
        }
        ("system.environment", "is64bitoperatingsystem") => Value::Bool(true),
        ("system.environment", "currentdirectory") => Value::Str(host.cwd()),
        ("system.environment", "osversion") => {
            let (a, b, c, d) = host.os_version();
            PsObject::typed("System.OperatingSystem")
                .with("Platform", "Win32NT")
                .with("ServicePack", "")
                .with("Version", Value::Version(vec![a, b, c, d]))
                .with(
                    "VersionString",
                    format!("Microsoft Windows NT {a}.{b}.{c}.{d}"),
                )
                .with("ToString", format!("Microsoft Windows NT {a}.{b}.{c}.{d}"))
                .into()
        }
        ("system.datetime", "utcnow") | ("system.datetime", "now") => {
            Value::DateTime(DateTime::now_utc())
        }
        ("system.datetime", "today") => {
            let (y, m, d, ..) = DateTime::now_utc().parts();
            Value::DateTime(DateTime::from_parts(y, m, d, 0, 0, 0))
        }
        ("system.datetime", "minvalue") => Value::DateTime(DateTime { ticks: 0 }),
        ("system.math", "pi") => Value::Double(std::f64::consts::PI),
        ("system.int32", "maxvalue") => Value::Int(i32::MAX as i64),
        ("system.int32", "minvalue") => Value::Int(i32::MIN as i64),
        ("system.int64", "maxvalue") => Value::Int(i64::MAX),
        ("system.string", "empty") => Value::Str(String::new()),
        ("system.io.path", "directoryseparatorchar") => Value::Char('\\'),
        _ => {
            return Ok(Value::Null);
        }
    };
    Ok(v)
}

/// `[Type]::Method(args)`.
pub fn static_method(
    host: &mut dyn Host,
    t: &str,
    name: &str,
    args: &[Value],
) -> Result<Value, ErrorRecord> {
    let n = name.to_ascii_lowercase();
    let t_l = t.to_ascii_lowercase();
    let argc = args.len();
    let s = |i: usize| args.get(i).map(Value::to_str).unwrap_or_default();
    let need = |k: usize| -> Result<(), ErrorRecord> {
        if argc < k {
            Err(ErrorRecord::new(
                format!(
                    "Cannot find an overload for \"{name}\" and the argument count: \"{argc}\"."
                ),
                "System.Management.Automation.MethodException",
                "MethodCountCouldNotFindBest",
                "NotSpecified",
            ))
        } else {
            Ok(())
        }
    };
    match (t_l.as_str(), n.as_str()) {
        ("system.io.file", "exists") => {
            need(1)?;
            let p = full_path(host, &s(0));
            Ok(Value::Bool(matches!(
                host.item(&p),
                Some(crate::host::ItemKind::File(_))
            )))
        }
        ("system.io.directory", "exists") => {
            need(1)?;
            let p = full_path(host, &s(0));
            Ok(Value::Bool(matches!(
                host.item(&p),
                Some(crate::host::ItemKind::Directory)
            )))
        }
        ("system.io.directory", "createdirectory") => {
            need(1)?;
            let p = full_path(host, &s(0));
            host.create_dir(&p)
                .map_err(|e| fs_exception(name, argc, &e))?;
            Ok(Value::Null)
        }
        ("system.io.file", "readallbytes") => {
            need(1)?;
            let p = full_path(host, &s(0));
            let b = host
                .read_file(&p)
                .map_err(|e| fs_exception("ReadAllBytes", argc, &e))?;
            Ok(bytes_value(&b))
        }
        ("system.io.file", "readalltext") | ("system.io.file", "readalllines") => {
            need(1)?;
            let p = full_path(host, &s(0));
            let b = host
                .read_file(&p)
                .map_err(|e| fs_exception(name, argc, &e))?;
            let enc = match args.get(1) {
                Some(Value::Encoding(e)) => *e,
                _ => Encoding::Utf8 { bom: false },
            };
            let text = enc.decode_file(&b);
            if n == "readalllines" {
                let mut lines: Vec<Value> = text
                    .split('\n')
                    .map(|l| Value::Str(l.trim_end_matches('\r').to_string()))
                    .collect();
                if text.ends_with('\n') {
                    lines.pop();
                }
                Ok(Value::array(lines))
            } else {
                Ok(Value::Str(text))
            }
        }
        ("system.io.file", "writealltext")
        | ("system.io.file", "appendalltext")
        | ("system.io.file", "writealllines") => {
            need(2)?;
            let p = full_path(host, &s(0));
            // .NET's default for these is UTF-8 without BOM.
            let enc = encoding_arg(args.get(2));
            let text = if n == "writealllines" {
                let mut t: String = args[1]
                    .enumerate()
                    .iter()
                    .map(|l| format!("{}\r\n", l.to_str()))
                    .collect();
                if t.is_empty() {
                    t = String::new();
                }
                t
            } else {
                s(1)
            };
            let mut bytes = Vec::new();
            if n == "appendalltext" {
                match host.read_file(&p) {
                    Ok(old) => bytes = old,
                    Err(FsError::FileNotFound(_)) => bytes.extend_from_slice(enc.preamble()),
                    Err(e) => return Err(fs_exception(name, argc, &e)),
                }
            } else {
                bytes.extend_from_slice(enc.preamble());
            }
            bytes.extend(enc.encode(&text));
            host.write_file(&p, &bytes)
                .map_err(|e| fs_exception(name, argc, &e))?;
            Ok(Value::Null)
        }
        ("system.io.file", "writeallbytes") => {
            need(2)?;
            let p = full_path(host, &s(0));
            host.write_file(&p, &bytes_of(&args[1]))
                .map_err(|e| fs_exception(name, argc, &e))?;
            Ok(Value::Null)
        }
        ("system.io.file", "getlastwritetimeutc") => {
            need(1)?;
            let p = full_path(host, &s(0));
            // .NET answers 1601-01-01 for a missing file rather than throwing.
            Ok(Value::DateTime(host.modified(&p).unwrap_or_else(|| {
                DateTime::from_parts(1601, 1, 1, 0, 0, 0)
            })))
        }
        ("system.io.file", "setlastwritetimeutc") => {
            need(2)?;
            let p = full_path(host, &s(0));
            let when = match convert(&args[1], "System.DateTime")? {
                Value::DateTime(d) => d,
                _ => DateTime::now_utc(),
            };
            host.set_modified(&p, when)
                .map_err(|e| fs_exception(name, argc, &e))?;
            Ok(Value::Null)
        }
        ("system.io.file", "delete") => {
            need(1)?;
            let p = full_path(host, &s(0));
            match host.remove(&p, false) {
                Ok(()) | Err(FsError::FileNotFound(_)) => Ok(Value::Null),
                Err(e) => Err(fs_exception(name, argc, &e)),
            }
        }
        ("system.io.path", "combine") => {
            let mut out = String::new();
            for a in args {
                let part = a.to_str();
                if part.is_empty() {
                    continue;
                }
                if part.starts_with('\\') || (part.len() >= 2 && part.as_bytes()[1] == b':') {
                    out = part;
                } else if out.is_empty() || out.ends_with('\\') {
                    out.push_str(&part);
                } else {
                    out.push('\\');
                    out.push_str(&part);
                }
            }
            Ok(Value::Str(out))
        }
        ("system.io.path", "getfilename") => Ok(Value::Str(
            s(0).rsplit(['\\', '/']).next().unwrap_or("").to_string(),
        )),
        ("system.io.path", "getdirectoryname") => Ok(Value::Str(
            crate::host::parent_dir(&s(0)).unwrap_or_default(),
        )),
        ("system.io.path", "getextension") => {
            let f = s(0);
            let f = f.rsplit(['\\', '/']).next().unwrap_or("").to_string();
            Ok(Value::Str(
                f.rfind('.').map(|i| f[i..].to_string()).unwrap_or_default(),
            ))
        }
        ("system.io.path", "gettemppath") => Ok(Value::Str(format!(
            "{}\\",
            host.env_var("TEMP")
                .unwrap_or_else(|| "C:\\Windows\\Temp".into())
        ))),
        ("system.convert", "tobase64string") => {
            need(1)?;
            Ok(Value::Str(STANDARD.encode(bytes_of(&args[0]))))
        }
        ("system.convert", "frombase64string") => {
            need(1)?;
            let text: String = s(0).chars().filter(|c| !c.is_whitespace()).collect();
            STANDARD
                .decode(text)
                .map(|b| bytes_value(&b))
                .map_err(|_| {
                    method_exception(
                        "FromBase64String",
                        argc,
                        "The input is not a valid Base-64 string as it contains a non-base 64 character, more than two padding characters, or an illegal character among the padding characters. ",
                        "System.FormatException",
                        -2146233033,
                    )
                })
        }
        ("system.convert", "toint32") | ("system.convert", "toint64") => {
            need(1)?;
            if let Some(base) = args.get(1).and_then(Value::as_i64) {
                let text = s(0);
                let text = text.trim_start_matches("0x").trim_start_matches("0X");
                return i64::from_str_radix(text, base as u32)
                    .map(Value::Int)
                    .map_err(|_| {
                        method_exception(
                            name,
                            argc,
                            "Could not find any recognizable digits.",
                            "System.FormatException",
                            -2146233033,
                        )
                    });
            }
            convert(&args[0], "System.Int64")
        }
        ("system.convert", "tostring") => {
            if let (Some(v), Some(base)) = (
                args.first().and_then(Value::as_i64),
                args.get(1).and_then(Value::as_i64),
            ) {
                return Ok(Value::Str(match base {
                    2 => format!("{v:b}"),
                    8 => format!("{v:o}"),
                    16 => format!("{v:x}"),
                    _ => v.to_string(),
                }));
            }
            Ok(Value::Str(s(0)))
        }
        ("system.environment", "getenvironmentvariable") => {
            need(1)?;
            Ok(host.env_var(&s(0)).map(Value::Str).unwrap_or(Value::Null))
        }
        ("system.environment", "setenvironmentvariable") => {
            need(2)?;
            let v = match &args[1] {
                Value::Null => None,
                other => Some(other.to_str()),
            };
            host.set_env_var(&s(0), v.as_deref().filter(|v| !v.is_empty()));
            Ok(Value::Null)
        }
        ("system.environment", "expandenvironmentvariables") => {
            let text = s(0);
            let mut out = String::new();
            let mut rest = text.as_str();
            while let Some(i) = rest.find('%') {
                out.push_str(&rest[..i]);
                let after = &rest[i + 1..];
                match after.find('%') {
                    Some(j) => {
                        let name = &after[..j];
                        match host.env_var(name) {
                            Some(v) => out.push_str(&v),
                            None => {
                                out.push('%');
                                out.push_str(name);
                                out.push('%');
                            }
                        }
                        rest = &after[j + 1..];
                    }
                    None => {
                        out.push('%');
                        rest = after;
                    }
                }
            }
            out.push_str(rest);
            Ok(Value::Str(out))
        }
        ("system.datetime", "parse") => {
            need(1)?;
            DateTime::parse(&s(0)).map(Value::DateTime).ok_or_else(|| {
                method_exception(
                    "Parse",
                    argc,
                    "String was not recognized as a valid DateTime.",
                    "System.FormatException",
                    -2146233033,
                )
            })
        }
        ("system.math", m) => {
            let x = args.first().and_then(Value::as_f64).unwrap_or(0.0);
            let y = args.get(1).and_then(Value::as_f64).unwrap_or(0.0);
            let r = match m {
                "abs" => x.abs(),
                "floor" => x.floor(),
                "ceiling" => x.ceil(),
                "round" => {
                    let digits = args
                        .get(1)
                        .and_then(Value::as_i64)
                        .unwrap_or(0)
                        .clamp(0, 15);
                    let f = 10f64.powi(digits as i32);
                    let v = x * f;
                    let r = v.round();
                    let r = if (v - v.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
                        r - v.signum()
                    } else {
                        r
                    };
                    r / f
                }
                "max" => x.max(y),
                "min" => x.min(y),
                "pow" => x.powf(y),
                "sqrt" => x.sqrt(),
                "truncate" => x.trunc(),
                _ => return Err(no_method(t, name)),
            };
            let ints = args.iter().all(|a| matches!(a, Value::Int(_)));
            if ints && matches!(m, "abs" | "max" | "min") {
                Ok(Value::Int(r as i64))
            } else {
                Ok(Value::Double(r))
            }
        }
        ("system.string", "isnullorempty") => Ok(Value::Bool(s(0).is_empty())),
        ("system.string", "isnullorwhitespace") => Ok(Value::Bool(s(0).trim().is_empty())),
        ("system.string", "join") => {
            let sep = s(0);
            let mut parts = Vec::new();
            for a in &args[1.min(argc)..] {
                parts.extend(a.enumerate().iter().map(Value::to_str));
            }
            Ok(Value::Str(parts.join(&sep)))
        }
        ("system.string", "format") => {
            need(1)?;
            let rest: Vec<Value> = if argc == 2 {
                args[1].enumerate()
            } else {
                args[1..].to_vec()
            };
            ops::format(&s(0), &rest)
        }
        ("system.text.regularexpressions.regex", "escape") => Ok(Value::Str(regex::escape(&s(0)))),
        ("system.text.regularexpressions.regex", "ismatch") => {
            Ok(Value::Bool(ops::regex(&s(1), false)?.is_match(&s(0))))
        }
        ("system.text.regularexpressions.regex", "replace") => {
            let re = ops::regex(&s(1), false)?;
            Ok(Value::Str(
                re.replace_all(&s(0), s(2).as_str()).into_owned(),
            ))
        }
        ("system.security.principal.windowsidentity", "getcurrent") => {
            let user = host.env_var("USERNAME").unwrap_or_else(|| "SYSTEM".into());
            let name = if user.eq_ignore_ascii_case("SYSTEM") {
                "NT AUTHORITY\\SYSTEM".to_string()
            } else {
                format!("{}\\{user}", host.computer_name())
            };
            Ok(PsObject::typed("System.Security.Principal.WindowsIdentity")
                .with("Name", name)
                .with("AuthenticationType", "NTLM")
                .with("IsSystem", user.eq_ignore_ascii_case("SYSTEM"))
                .into())
        }
        // .NET Framework 4.x's `SHA256.Create()` is CryptoConfig's default for "SHA256",
        // `SHA256Managed` (what `.GetType().FullName` shows in Windows PowerShell 5.1).
        ("system.security.cryptography.sha256", "create") => Ok(sha256_object()),
        ("system.guid", "newguid") => {
            let t = DateTime::now_utc().ticks as u128;
            let x = t.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835);
            let h = format!("{x:032x}");
            Ok(Value::Str(format!(
                "{}-{}-4{}-a{}-{}",
                &h[0..8],
                &h[8..12],
                &h[13..16],
                &h[17..20],
                &h[20..32]
            )))
        }
        _ => Err(ErrorRecord::new(
            format!(
                "Method invocation failed because [{t}] does not contain a method named '{name}'."
            ),
            "System.Management.Automation.RuntimeException",
            "MethodNotFound",
            "InvalidOperation",
        )),
    }
}

/// `New-Object TypeName args` for the types scripts construct.
pub fn new_object(t: &str, args: &[Value]) -> Result<Value, ErrorRecord> {
    let canon = canonical_type(t);
    match canon.to_ascii_lowercase().as_str() {
        "system.text.utf8encoding" => Ok(Value::Encoding(Encoding::Utf8 {
            bom: args.first().is_some_and(Value::truthy),
        })),
        "system.text.asciiencoding" => Ok(Value::Encoding(Encoding::Ascii)),
        "system.text.unicodeencoding" => Ok(Value::Encoding(Encoding::Unicode)),
        "system.collections.hashtable" => Ok(Value::hashtable(Hashtable::default())),
        "system.collections.arraylist" => Ok(PsObject::typed("System.Collections.ArrayList")
            .with("__items", Value::array(Vec::new()))
            .into()),
        l if l.starts_with("system.collections.generic.list") => {
            Ok(PsObject::typed("System.Collections.Generic.List`1")
                .with("__items", Value::array(Vec::new()))
                .into())
        }
        "system.management.automation.pscustomobject"
        | "system.management.automation.psobject"
        | "system.object" => Ok(PsObject::custom().into()),
        "system.security.principal.securityidentifier" => convert(
            args.first().unwrap_or(&Value::Null),
            "System.Security.Principal.SecurityIdentifier",
        ),
        "system.security.principal.ntaccount" => {
            Ok(PsObject::typed("System.Security.Principal.NTAccount")
                .with(
                    "Value",
                    args.iter()
                        .map(Value::to_str)
                        .collect::<Vec<_>>()
                        .join("\\"),
                )
                .into())
        }
        "system.version" => convert(args.first().unwrap_or(&Value::Null), "System.Version"),
        "system.security.cryptography.sha256managed" => Ok(sha256_object()),
        "system.datetime" => {
            let n = |i: usize| args.get(i).and_then(Value::as_i64).unwrap_or(0);
            Ok(Value::DateTime(DateTime::from_parts(
                n(0).clamp(1, 9999),
                n(1).clamp(1, 12) as u32,
                n(2).clamp(1, 31) as u32,
                n(3).clamp(0, 23) as u32,
                n(4).clamp(0, 59) as u32,
                n(5).clamp(0, 59) as u32,
            )))
        }
        "system.exception" | "system.management.automation.runtimeexception" => {
            Ok(exception_object(&ErrorRecord::new(
                args.first().map(Value::to_str).unwrap_or_default(),
                &canon,
                "",
                "NotSpecified",
            )))
        }
        _ => Err(ErrorRecord::new(
            format!(
                "Cannot find type [{t}]: verify that the assembly containing this type is loaded."
            ),
            "System.Management.Automation.PSArgumentException",
            "TypeNotFound,Microsoft.PowerShell.Commands.NewObjectCommand",
            "InvalidType",
        )),
    }
}

/// The `$_.Exception` object of an error record.
pub fn exception_object(e: &ErrorRecord) -> Value {
    let inner: Value = match &e.inner {
        Some((t, m, h)) => PsObject::typed(t)
            .with("Message", m.clone())
            .with("HResult", Value::Int(i64::from(*h)))
            .with("InnerException", Value::Null)
            .with("ToString", format!("{t}: {m}"))
            .into(),
        None => Value::Null,
    };
    PsObject::typed(&e.exception_type)
        .with("Message", e.message.clone())
        .with("HResult", Value::Int(i64::from(e.hresult)))
        .with("InnerException", inner)
        .with("ToString", format!("{}: {}", e.exception_type, e.message))
        .into()
}

/// A property of an error record (`$_.Exception`, `$_.FullyQualifiedErrorId`, ...).
pub fn error_property(e: &ErrorRecord, name: &str) -> Value {
    match name.to_ascii_lowercase().as_str() {
        "exception" => exception_object(e),
        "fullyqualifiederrorid" => Value::Str(e.fqid.clone()),
        "categoryinfo" => PsObject::typed("System.Management.Automation.ErrorCategoryInfo")
            .with("Category", e.category.clone())
            .with("Reason", e.exception_short().to_string())
            .with("TargetName", e.target.clone())
            .with(
                "ToString",
                format!(
                    "{}: ({}:{}) [{}], {}",
                    e.category,
                    e.target,
                    e.target_type,
                    e.activity,
                    e.exception_short()
                ),
            )
            .into(),
        "targetobject" => e.target_object.as_deref().cloned().unwrap_or_else(|| {
            if e.target.is_empty() {
                Value::Null
            } else {
                Value::Str(e.target.clone())
            }
        }),
        "invocationinfo" => {
            let p = e.position.clone().unwrap_or_default();
            PsObject::typed("System.Management.Automation.InvocationInfo")
                .with("ScriptLineNumber", Value::Int(p.line as i64))
                .with("OffsetInLine", Value::Int(p.column as i64))
                .with("Line", p.line_text.clone())
                .with("MyCommand", e.command.clone().unwrap_or_default())
                .with(
                    "PositionMessage",
                    format!("At line:{} char:{}\r\n+ {}", p.line, p.column, p.line_text),
                )
                .into()
        }
        "scriptstacktrace" => Value::Str(match &e.position {
            Some(p) => format!("at <ScriptBlock>, <No file>: line {}", p.line),
            None => String::new(),
        }),
        "errordetails" => Value::Null,
        _ => Value::Null,
    }
}

fn str_arg(args: &[Value], i: usize) -> String {
    args.get(i).map(Value::to_str).unwrap_or_default()
}

fn trim_set(args: &[Value]) -> Option<Vec<char>> {
    if args.is_empty() {
        return None;
    }
    let mut set = Vec::new();
    for a in args {
        match a {
            Value::Char(c) => set.push(*c),
            Value::Array(v) => set.extend(
                v.borrow()
                    .iter()
                    .flat_map(|x| x.to_str().chars().collect::<Vec<_>>()),
            ),
            other => set.extend(other.to_str().chars()),
        }
    }
    Some(set)
}

fn string_index(_s: &str, i: i64) -> Option<usize> {
    // .NET indexes UTF-16 units; ASCII scripts make chars and units the same.
    if i < 0 {
        None
    } else {
        Some(i as usize)
    }
}

fn out_of_range(method: &str, argc: usize, param: &str) -> ErrorRecord {
    method_exception(
        method,
        argc,
        &format!("Index and length must refer to a location within the string.\r\nParameter name: {param}"),
        "System.ArgumentOutOfRangeException",
        -2146233086,
    )
}

/// Calls a method on a string.
pub fn string_method(s: &str, name: &str, args: &[Value]) -> Result<Value, ErrorRecord> {
    let argc = args.len();
    let chars: Vec<char> = s.chars().collect();
    let case_insens = |i: usize| {
        args.get(i).is_some_and(|v| {
            let t = v.to_str().to_ascii_lowercase();
            t.contains("ignorecase")
                || v.as_i64() == Some(5)
                || v.as_i64() == Some(1)
                || v.as_i64() == Some(3)
        })
    };
    let v = match name.to_ascii_lowercase().as_str() {
        "trim" => match trim_set(args) {
            None => s.trim().to_string(),
            Some(set) => s.trim_matches(|c| set.contains(&c)).to_string(),
        },
        "trimstart" => match trim_set(args) {
            None => s.trim_start().to_string(),
            Some(set) => s.trim_start_matches(|c| set.contains(&c)).to_string(),
        },
        "trimend" => match trim_set(args) {
            None => s.trim_end().to_string(),
            Some(set) => s.trim_end_matches(|c| set.contains(&c)).to_string(),
        },
        "toupper" | "toupperinvariant" => s.to_uppercase(),
        "tolower" | "tolowerinvariant" => s.to_lowercase(),
        "tostring" => s.to_string(),
        "startswith" => {
            let p = str_arg(args, 0);
            return Ok(Value::Bool(if case_insens(1) {
                s.to_lowercase().starts_with(&p.to_lowercase())
            } else {
                s.starts_with(&p)
            }));
        }
        "endswith" => {
            let p = str_arg(args, 0);
            return Ok(Value::Bool(if case_insens(1) {
                s.to_lowercase().ends_with(&p.to_lowercase())
            } else {
                s.ends_with(&p)
            }));
        }
        "contains" => return Ok(Value::Bool(s.contains(&str_arg(args, 0)))),
        "equals" => {
            return Ok(Value::Bool(if case_insens(1) {
                s.eq_ignore_ascii_case(&str_arg(args, 0))
            } else {
                s == str_arg(args, 0)
            }))
        }
        "indexof" | "lastindexof" => {
            let p = str_arg(args, 0);
            let (hay, needle) = if case_insens(1) {
                (s.to_lowercase(), p.to_lowercase())
            } else {
                (s.to_string(), p)
            };
            let found = if name.eq_ignore_ascii_case("indexof") {
                hay.find(&needle)
            } else {
                hay.rfind(&needle)
            };
            return Ok(Value::Int(match found {
                Some(b) => hay[..b].chars().count() as i64,
                None => -1,
            }));
        }
        "substring" => {
            let start = args.first().and_then(Value::as_i64).unwrap_or(0);
            let start_u = string_index(s, start)
                .filter(|i| *i <= chars.len())
                .ok_or_else(|| out_of_range("Substring", argc, "startIndex"))?;
            match args.get(1).and_then(Value::as_i64) {
                Some(len) => {
                    let end = string_index(s, len)
                        .and_then(|l| l.checked_add(start_u))
                        .filter(|e| *e <= chars.len())
                        .ok_or_else(|| out_of_range("Substring", argc, "length"))?;
                    chars[start_u..end].iter().collect()
                }
                None => chars[start_u..].iter().collect(),
            }
        }
        "remove" => {
            let start = args.first().and_then(Value::as_i64).unwrap_or(0).max(0) as usize;
            let len = args
                .get(1)
                .and_then(Value::as_i64)
                .map(|l| l.max(0) as usize);
            if start > chars.len() {
                return Err(out_of_range("Remove", argc, "startIndex"));
            }
            let end = len
                .map(|l| (start + l).min(chars.len()))
                .unwrap_or(chars.len());
            let mut out: String = chars[..start].iter().collect();
            out.extend(&chars[end..]);
            out
        }
        "insert" => {
            let at = args
                .first()
                .and_then(Value::as_i64)
                .unwrap_or(0)
                .clamp(0, chars.len() as i64) as usize;
            let mut out: String = chars[..at].iter().collect();
            out.push_str(&str_arg(args, 1));
            out.extend(&chars[at..]);
            out
        }
        "replace" => {
            let from = str_arg(args, 0);
            if from.is_empty() {
                return Err(method_exception(
                    "Replace",
                    argc,
                    "String cannot be of zero length.\r\nParameter name: oldValue",
                    "System.ArgumentException",
                    -2147024809,
                ));
            }
            s.replace(&from, &str_arg(args, 1))
        }
        "split" => {
            let mut seps: Vec<String> = Vec::new();
            for a in args {
                match a {
                    Value::Char(c) => seps.push(c.to_string()),
                    Value::Array(v) => seps.extend(v.borrow().iter().map(Value::to_str)),
                    Value::Str(t) => seps.extend(t.chars().map(|c| c.to_string())),
                    _ => {}
                }
            }
            let parts: Vec<Value> = if seps.is_empty() {
                s.split(char::is_whitespace)
                    .map(|p| Value::Str(p.into()))
                    .collect()
            } else {
                let chars_set: Vec<char> = seps.iter().filter_map(|x| x.chars().next()).collect();
                s.split(|c| chars_set.contains(&c))
                    .map(|p| Value::Str(p.into()))
                    .collect()
            };
            return Ok(Value::array(parts));
        }
        "padleft" | "padright" => {
            let w = args
                .first()
                .and_then(Value::as_i64)
                .unwrap_or(0)
                .clamp(0, 100_000) as usize;
            let c = args
                .get(1)
                .map(|v| v.to_str().chars().next().unwrap_or(' '))
                .unwrap_or(' ');
            let n = chars.len();
            if n >= w {
                s.to_string()
            } else {
                let pad: String = std::iter::repeat_n(c, w - n).collect();
                if name.eq_ignore_ascii_case("padleft") {
                    pad + s
                } else {
                    s.to_string() + &pad
                }
            }
        }
        "tochararray" => {
            return Ok(Value::array(
                chars.iter().map(|c| Value::Char(*c)).collect(),
            ))
        }
        "gethashcode" => return Ok(Value::Int(s.len() as i64)),
        "compareto" => {
            return Ok(Value::Int(match s.cmp(&str_arg(args, 0)) {
                std::cmp::Ordering::Less => -1,
                std::cmp::Ordering::Equal => 0,
                std::cmp::Ordering::Greater => 1,
            }))
        }
        "normalize" => s.to_string(),
        _ => return Err(no_method("System.String", name)),
    };
    Ok(Value::Str(v))
}

/// Calls a method on any value. `None` means "not a built-in method" (the host may know it).
pub fn instance_method(
    v: &Value,
    name: &str,
    args: &[Value],
) -> Option<Result<Value, ErrorRecord>> {
    let n = name.to_ascii_lowercase();
    if n == "gettype" {
        let t = v.type_name();
        let short = t.rsplit('.').next().unwrap_or(&t).to_string();
        return Some(Ok(PsObject::typed("System.RuntimeType")
            .with("FullName", t.clone())
            .with("Name", short)
            .with("ToString", t)
            .into()));
    }
    let r = match v {
        Value::Str(s) => string_method(s, name, args),
        Value::Char(c) => match n.as_str() {
            "tostring" => Ok(Value::Str(c.to_string())),
            _ => string_method(&c.to_string(), name, args),
        },
        Value::Int(_) | Value::Double(_) | Value::Bool(_) => match n.as_str() {
            "tostring" => match args.first() {
                Some(f) => Ok(Value::Str(ops::format_spec(v, &f.to_str()))),
                None => Ok(Value::Str(v.to_str())),
            },
            "equals" => Ok(Value::Bool(
                args.first().is_some_and(|a| ops::equals(v, a, false)),
            )),
            "compareto" => Ok(Value::Int(
                match args.first().and_then(|a| ops::compare(v, a, false)) {
                    Some(std::cmp::Ordering::Less) => -1,
                    Some(std::cmp::Ordering::Greater) => 1,
                    _ => 0,
                },
            )),
            _ => Err(no_method(&v.type_name(), name)),
        },
        Value::Array(a) => match n.as_str() {
            "contains" => {
                Ok(Value::Bool(args.first().is_some_and(|x| {
                    a.borrow().iter().any(|y| ops::equals(y, x, true))
                })))
            }
            "indexof" => Ok(Value::Int(
                args.first()
                    .and_then(|x| a.borrow().iter().position(|y| ops::equals(y, x, true)))
                    .map(|i| i as i64)
                    .unwrap_or(-1),
            )),
            "clone" => Ok(Value::array(a.borrow().clone())),
            "tostring" => Ok(Value::Str("System.Object[]".into())),
            "add" | "remove" | "clear" | "insert" => Err(method_exception(
                name,
                args.len(),
                "Collection was of a fixed size.",
                "System.NotSupportedException",
                -2146233067,
            )),
            "where" | "foreach" => return None,
            _ => {
                // Methods on each element (member enumeration), as PowerShell 3+ does.
                let items = a.borrow().clone();
                let mut out = Vec::new();
                for it in items {
                    match instance_method(&it, name, args)? {
                        Ok(x) => out.push(x),
                        Err(e) => return Some(Err(e)),
                    }
                }
                Ok(Value::array(out))
            }
        },
        Value::Hashtable(h) => match n.as_str() {
            "containskey" | "contains" => Ok(Value::Bool(
                args.first()
                    .is_some_and(|k| h.borrow().index_of(k).is_some()),
            )),
            "containsvalue" => Ok(Value::Bool(args.first().is_some_and(|x| {
                h.borrow()
                    .entries
                    .iter()
                    .any(|(_, y)| ops::equals(y, x, false))
            }))),
            "add" => {
                let (k, val) = (
                    args.first().cloned().unwrap_or_default(),
                    args.get(1).cloned().unwrap_or_default(),
                );
                if h.borrow().index_of(&k).is_some() {
                    Err(method_exception("Add", 2, &format!("Item has already been added. Key in dictionary: '{0}'  Key being added: '{0}'", k.to_str()), "System.ArgumentException", -2147024809))
                } else {
                    h.borrow_mut().entries.push((k, val));
                    Ok(Value::Null)
                }
            }
            "remove" => {
                if let Some(k) = args.first() {
                    h.borrow_mut().remove(k);
                }
                Ok(Value::Null)
            }
            "clear" => {
                h.borrow_mut().entries.clear();
                Ok(Value::Null)
            }
            "clone" => Ok(Value::hashtable(h.borrow().clone())),
            "getenumerator" => Ok(Value::array(
                h.borrow()
                    .entries
                    .iter()
                    .map(|(k, v)| {
                        PsObject::typed("System.Collections.DictionaryEntry")
                            .with("Key", k.clone())
                            .with("Name", k.clone())
                            .with("Value", v.clone())
                            .into()
                    })
                    .collect(),
            )),
            "tostring" => Ok(Value::Str(v.to_str())),
            _ => Err(no_method(&v.type_name(), name)),
        },
        Value::Encoding(e) => match n.as_str() {
            "getstring" => Ok(Value::Str(
                e.decode(&bytes_of(args.first().unwrap_or(&Value::Null))),
            )),
            "getbytes" => Ok(bytes_value(&e.encode(&str_arg(args, 0)))),
            "getpreamble" => Ok(bytes_value(e.preamble())),
            "tostring" => Ok(Value::Str(v.to_str())),
            _ => Err(no_method(&v.type_name(), name)),
        },
        Value::DateTime(d) => {
            let add = |ticks: f64| {
                Ok(Value::DateTime(DateTime {
                    ticks: d.ticks.saturating_add(ticks as i64),
                }))
            };
            let x = args.first().and_then(Value::as_f64).unwrap_or(0.0);
            match n.as_str() {
                "adddays" => add(x * 864e9),
                "addhours" => add(x * 36e9),
                "addminutes" => add(x * 6e8),
                "addseconds" => add(x * 1e7),
                "addmilliseconds" => add(x * 1e4),
                "tostring" => Ok(Value::Str(match args.first() {
                    Some(f) if f.to_str() == "o" || f.to_str() == "O" => d.iso(),
                    Some(f) if f.to_str() == "s" => d.iso()[..19].to_string(),
                    Some(f) => ops::format_spec(v, &f.to_str()),
                    None => d.invariant(),
                })),
                "touniversaltime" | "tolocaltime" => Ok(v.clone()),
                "subtract" => match args.first() {
                    Some(Value::DateTime(o)) => Ok(timespan(d.ticks.saturating_sub(o.ticks))),
                    _ => Err(no_method("System.DateTime", name)),
                },
                _ => Err(no_method("System.DateTime", name)),
            }
        }
        Value::Version(_) => match n.as_str() {
            "tostring" => Ok(Value::Str(v.to_str())),
            "compareto" => Ok(Value::Int(
                match args.first().and_then(|a| ops::compare(v, a, false)) {
                    Some(std::cmp::Ordering::Less) => -1,
                    Some(std::cmp::Ordering::Greater) => 1,
                    _ => 0,
                },
            )),
            _ => Err(no_method("System.Version", name)),
        },
        Value::Error(e) => match n.as_str() {
            "tostring" => Ok(Value::Str(e.message.clone())),
            _ => Err(no_method("System.Management.Automation.ErrorRecord", name)),
        },
        Value::Object(o) => {
            let tn = o.borrow().type_name.clone();
            if tn == "System.Collections.ArrayList" || tn == "System.Collections.Generic.List`1" {
                let generic = tn != "System.Collections.ArrayList";
                let items = o.borrow().get("__items").unwrap_or_default();
                if let Value::Array(a) = items {
                    return Some(match n.as_str() {
                        "add" => {
                            let mut a = a.borrow_mut();
                            a.push(args.first().cloned().unwrap_or_default());
                            if generic {
                                Ok(Value::Null)
                            } else {
                                Ok(Value::Int(a.len() as i64 - 1))
                            }
                        }
                        "addrange" => {
                            a.borrow_mut()
                                .extend(args.first().map(Value::enumerate).unwrap_or_default());
                            Ok(Value::Null)
                        }
                        "remove" => {
                            let mut a = a.borrow_mut();
                            if let Some(i) = args
                                .first()
                                .and_then(|x| a.iter().position(|y| ops::equals(y, x, true)))
                            {
                                a.remove(i);
                            }
                            Ok(Value::Null)
                        }
                        "removeat" => {
                            let mut a = a.borrow_mut();
                            let i = args.first().and_then(Value::as_i64).unwrap_or(-1);
                            if i >= 0 && (i as usize) < a.len() {
                                a.remove(i as usize);
                            }
                            Ok(Value::Null)
                        }
                        "clear" => {
                            a.borrow_mut().clear();
                            Ok(Value::Null)
                        }
                        "contains" => {
                            Ok(Value::Bool(args.first().is_some_and(|x| {
                                a.borrow().iter().any(|y| ops::equals(y, x, true))
                            })))
                        }
                        "toarray" => Ok(Value::array(a.borrow().clone())),
                        _ => Err(no_method(&tn, name)),
                    });
                }
            }
            if tn == SHA256_TYPE {
                return Some(sha256_method(name, args));
            }
            if n == "tostring" {
                return Some(Ok(Value::Str(v.to_str())));
            }
            if n == "translate" && (tn.ends_with("NTAccount") || tn.ends_with("SecurityIdentifier"))
            {
                return None;
            }
            if let Some(Value::ScriptBlock(_)) = o.borrow().get(name) {
                return None;
            }
            return None;
        }
        Value::ScriptBlock(_) => return None,
        Value::Null => Err(ErrorRecord::new(
            "You cannot call a method on a null-valued expression.",
            "System.Management.Automation.RuntimeException",
            "InvokeMethodOnNull",
            "InvalidOperation",
        )),
        _ => match n.as_str() {
            "tostring" => Ok(Value::Str(v.to_str())),
            _ => Err(no_method(&v.type_name(), name)),
        },
    };
    Some(r)
}

/// The type `[Security.Cryptography.SHA256]::Create()` returns in .NET Framework 4.x.
const SHA256_TYPE: &str = "System.Security.Cryptography.SHA256Managed";

fn sha256_object() -> Value {
    PsObject::typed(SHA256_TYPE)
        .with("HashSize", Value::Int(256))
        .with("InputBlockSize", Value::Int(1))
        .with("OutputBlockSize", Value::Int(1))
        .with("CanReuseTransform", Value::Bool(true))
        .into()
}

/// `ComputeHash(byte[])` (a string is not a `byte[]`: PowerShell's argument conversion fails
/// as on Windows), `Clear()` and `Dispose()`.
fn sha256_method(name: &str, args: &[Value]) -> Result<Value, ErrorRecord> {
    use sha2::Digest as _;
    match name.to_ascii_lowercase().as_str() {
        "computehash" => match args.first() {
            None | Some(Value::Null) => Err(method_exception(
                name,
                args.len(),
                "Value cannot be null.\r\nParameter name: buffer",
                "System.ArgumentNullException",
                -2147467261,
            )),
            Some(a @ Value::Array(_)) => {
                let mut bytes = Vec::new();
                for b in a.enumerate() {
                    match b.as_i64() {
                        Some(x) if (0..=255).contains(&x) => bytes.push(x as u8),
                        _ => return Err(hash_argument_error(name, args.len(), &b)),
                    }
                }
                Ok(bytes_value(&sha2::Sha256::digest(&bytes)))
            }
            Some(other) => Err(hash_argument_error(name, args.len(), other)),
        },
        "clear" | "dispose" => Ok(Value::Null),
        _ => Err(no_method(SHA256_TYPE, name)),
    }
}

fn hash_argument_error(name: &str, argc: usize, v: &Value) -> ErrorRecord {
    ErrorRecord::new(
        format!(
            "Cannot convert argument \"buffer\", with value: \"{}\", for \"{name}\" to type \"System.Byte[]\": \"Cannot convert value \"{}\" to type \"System.Byte[]\".\"",
            v.to_str(),
            v.to_str()
        ),
        "System.Management.Automation.MethodException",
        &format!("MethodArgumentConversionInvalidCastArgument{argc}"),
        "NotSpecified",
    )
}

/// A TimeSpan object.
pub fn timespan(ticks: i64) -> Value {
    let secs = ticks as f64 / 1e7;
    PsObject::typed("System.TimeSpan")
        .with("Ticks", Value::Int(ticks))
        .with("Days", Value::Int(ticks / 864_000_000_000))
        .with("Hours", Value::Int((ticks / 36_000_000_000) % 24))
        .with("Minutes", Value::Int((ticks / 600_000_000) % 60))
        .with("Seconds", Value::Int((ticks / 10_000_000) % 60))
        .with("TotalSeconds", Value::Double(secs))
        .with("TotalMinutes", Value::Double(secs / 60.0))
        .with("TotalHours", Value::Double(secs / 3600.0))
        .with("TotalDays", Value::Double(secs / 86400.0))
        .with("TotalMilliseconds", Value::Double(secs * 1000.0))
        .into()
}

/// A property of a value; `None` when it has no such property (PowerShell then gives `$null`,
/// or, for arrays, enumerates members).
pub fn property(v: &Value, name: &str) -> Option<Value> {
    let n = name.to_ascii_lowercase();
    match v {
        Value::Str(s) => match n.as_str() {
            "length" => Some(Value::Int(s.encode_utf16().count() as i64)),
            _ => None,
        },
        Value::Array(a) => match n.as_str() {
            "count" | "length" => Some(Value::Int(a.borrow().len() as i64)),
            "rank" => Some(Value::Int(1)),
            _ => None,
        },
        Value::Hashtable(h) => {
            let h = h.borrow();
            if let Some(x) = h.get(&Value::Str(name.to_string())) {
                return Some(x);
            }
            match n.as_str() {
                "count" => Some(Value::Int(h.entries.len() as i64)),
                "keys" => Some(Value::array(
                    h.entries.iter().map(|(k, _)| k.clone()).collect(),
                )),
                "values" => Some(Value::array(
                    h.entries.iter().map(|(_, v)| v.clone()).collect(),
                )),
                _ => Some(Value::Null),
            }
        }
        Value::Object(o) => {
            let o = o.borrow();
            if name.eq_ignore_ascii_case("VersionInfo") {
                if let Some(v) = o.get("__VersionInfo") {
                    return Some(v);
                }
            }
            if o.type_name == "System.Collections.ArrayList"
                || o.type_name == "System.Collections.Generic.List`1"
            {
                if let Some(Value::Array(a)) = o.get("__items") {
                    if n == "count" {
                        return Some(Value::Int(a.borrow().len() as i64));
                    }
                }
            }
            o.get(name)
        }
        Value::DateTime(d) => {
            let (y, m, day, hh, mi, ss, ms) = d.parts();
            Some(match n.as_str() {
                "year" => Value::Int(y),
                "month" => Value::Int(i64::from(m)),
                "day" => Value::Int(i64::from(day)),
                "hour" => Value::Int(i64::from(hh)),
                "minute" => Value::Int(i64::from(mi)),
                "second" => Value::Int(i64::from(ss)),
                "millisecond" => Value::Int(i64::from(ms)),
                "ticks" => Value::Int(d.ticks),
                "date" => Value::DateTime(DateTime::from_parts(y, m, day, 0, 0, 0)),
                "kind" => Value::Str("Utc".into()),
                "dayofweek" => Value::Str(
                    [
                        "Monday",
                        "Tuesday",
                        "Wednesday",
                        "Thursday",
                        "Friday",
                        "Saturday",
                        "Sunday",
                    ][d.ticks.div_euclid(864_000_000_000).rem_euclid(7) as usize]
                        .into(),
                ),
                "dayofyear" => {
                    let jan1 = DateTime::from_parts(y, 1, 1, 0, 0, 0);
                    Value::Int((d.ticks - jan1.ticks) / 864_000_000_000 + 1)
                }
                _ => return None,
            })
        }
        Value::Version(parts) => {
            let idx = match n.as_str() {
                "major" => 0,
                "minor" => 1,
                "build" => 2,
                "revision" => 3,
                _ => return None,
            };
            Some(Value::Int(parts.get(idx).copied().unwrap_or(-1)))
        }
        Value::Error(e) => Some(error_property(e, name)),
        Value::Encoding(e) => match n.as_str() {
            "webname" | "bodyname" => Some(Value::Str(
                match e {
                    Encoding::Utf8 { .. } => "utf-8",
                    Encoding::Ascii => "us-ascii",
                    Encoding::Unicode => "utf-16",
                    Encoding::Ansi => "Windows-1252",
                }
                .into(),
            )),
            "codepage" => Some(Value::Int(match e {
                Encoding::Utf8 { .. } => 65001,
                Encoding::Ascii => 20127,
                Encoding::Unicode => 1200,
                Encoding::Ansi => 1252,
            })),
            _ => None,
        },
        Value::Type(t) => match n.as_str() {
            "fullname" => Some(Value::Str(t.clone())),
            "name" => Some(Value::Str(t.rsplit('.').next().unwrap_or(t).to_string())),
            _ => None,
        },
        Value::ScriptBlock(sb) => match n.as_str() {
            "ast" | "tostring" => Some(Value::Str(sb.text())),
            _ => None,
        },
        _ => None,
    }
}

/// Sets a property (`$h.key = v`, `$obj.Prop = v`). Returns false when the target cannot hold it.
pub fn set_property(v: &Value, name: &str, value: Value) -> Result<(), ErrorRecord> {
    match v {
        Value::Hashtable(h) => {
            h.borrow_mut().set(Value::Str(name.to_string()), value);
            Ok(())
        }
        Value::Object(o) => {
            let mut o = o.borrow_mut();
            if o.get(name).is_some() || o.type_name == "System.Management.Automation.PSCustomObject" {
                o.set(name, value);
                Ok(())
            } else {
                Err(ErrorRecord::new(
                    format!("The property '{name}' cannot be found on this object. Verify that the property exists and can be set."),
                    "System.Management.Automation.RuntimeException",
                    "PropertyAssignmentException",
                    "InvalidOperation",
                ))
            }
        }
        Value::Null => Err(ErrorRecord::new(
            format!("The property '{name}' cannot be found on this object. Verify that the property exists and can be set."),
            "System.Management.Automation.RuntimeException",
            "PropertyNotFound",
            "InvalidOperation",
        )),
        _ => Err(ErrorRecord::new(
            format!("'{name}' is a ReadOnly property."),
            "System.Management.Automation.RuntimeException",
            "PropertyAssignmentException",
            "InvalidOperation",
        )),
    }
}
