//! Cmdlets the interpreter implements itself: the pipeline ones (Where-Object, ForEach-Object,
//! Select-Object, Sort-Object, Measure-Object, Group-Object, Out-*), Write-*, JSON, and the
//! filesystem and environment ones built on the [`crate::Host`] primitives with Windows
//! PowerShell 5.1's encodings.

use std::rc::Rc;

use crate::dotnet;
use crate::error::ErrorRecord;
use crate::format;
use crate::host::{parent_dir, BoundArgs, FsError, ItemKind, RawArg};
use crate::interp::{Action, Ctx, ErrTarget, Flow, Interpreter, R};
use crate::ops;
use crate::value::{DateTime, Encoding, PsObject, Value};

/// Maps PowerShell's built-in aliases to cmdlet names (lowercase).
pub fn resolve_alias(lower: &str) -> String {
    let n = match lower {
        "?" | "where" => "where-object",
        "%" | "foreach" => "foreach-object",
        "select" => "select-object",
        "sort" => "sort-object",
        "measure" => "measure-object",
        "group" => "group-object",
        "echo" | "write" => "write-output",
        "gc" | "cat" | "type" => "get-content",
        "sc" => "set-content",
        "ac" => "add-content",
        "gci" | "ls" | "dir" => "get-childitem",
        "gi" => "get-item",
        "ni" => "new-item",
        "rm" | "del" | "ri" | "erase" | "rd" | "rmdir" => "remove-item",
        "cp" | "copy" | "cpi" => "copy-item",
        "mv" | "move" | "mi" => "move-item",
        "iex" => "invoke-expression",
        "icm" => "invoke-command",
        "ft" => "format-table",
        "fl" => "format-list",
        "gsv" => "get-service",
        "pwd" | "gl" => "get-location",
        "cd" | "sl" | "chdir" => "set-location",
        "sleep" => "start-sleep",
        "gv" => "get-variable",
        "sv" | "set" => "set-variable",
        "gcm" => "get-command",
        "cls" | "clear" => "clear-host",
        "tee" => "tee-object",
        "sls" => "select-string",
        other => other,
    };
    n.to_string()
}

fn fs_err(e: &FsError, cmd: &str, path: &str) -> ErrorRecord {
    match e {
        FsError::FileNotFound(_) | FsError::DirectoryNotFound(_) => {
            let mut r = ErrorRecord::new(
                format!("Cannot find path '{path}' because it does not exist."),
                "System.Management.Automation.ItemNotFoundException",
                &format!("PathNotFound,Microsoft.PowerShell.Commands.{cmd}"),
                "ObjectNotFound",
            )
            .with_target(path, "String");
            r.hresult = -2146233087;
            r
        }
        FsError::AccessDenied(_) => ErrorRecord::new(
            format!("Access to the path '{path}' is denied."),
            "System.UnauthorizedAccessException",
            &format!("GetContentReaderUnauthorizedAccessError,Microsoft.PowerShell.Commands.{cmd}"),
            "PermissionDenied",
        )
        .with_target(path, "String")
        .with_hresult(-2147024891),
        FsError::Other(m) => ErrorRecord::new(
            m.clone(),
            "System.IO.IOException",
            &format!("System.IO.IOException,Microsoft.PowerShell.Commands.{cmd}"),
            "WriteError",
        )
        .with_target(path, "String"),
    }
}

/// Parses `-Encoding` as Windows PowerShell 5.1 understands it.
pub fn encoding_param(v: Option<&Value>, default: Encoding) -> Encoding {
    match v.map(|v| v.to_str().to_ascii_lowercase()) {
        Some(s) => match s.as_str() {
            "utf8" => Encoding::Utf8 { bom: true },
            "ascii" => Encoding::Ascii,
            "unicode" | "string" => Encoding::Unicode,
            "default" | "oem" => Encoding::Ansi,
            "utf8nobom" => Encoding::Utf8 { bom: false },
            _ => default,
        },
        None => default,
    }
}

/// Writes text to a file with a 5.1 encoding (preamble when the file is new or replaced).
pub fn write_text_file(
    it: &mut Interpreter<'_>,
    path: &str,
    text: &str,
    enc: Encoding,
    append: bool,
) -> Result<(), ErrorRecord> {
    let full = dotnet::full_path(it.host, path);
    let mut bytes = Vec::new();
    if append {
        match it.host.read_file(&full) {
            Ok(old) => bytes = old,
            Err(FsError::FileNotFound(_)) => bytes.extend_from_slice(enc.preamble()),
            Err(e) => return Err(fs_err(&e, "OutFileCommand", path)),
        }
    } else {
        bytes.extend_from_slice(enc.preamble());
    }
    bytes.extend(enc.encode(text));
    it.host
        .write_file(&full, &bytes)
        .map_err(|e| fs_err(&e, "OutFileCommand", path))
}

fn file_item(it: &Interpreter<'_>, path: &str) -> Value {
    let kind = it.host.item(path);
    let name = path
        .trim_end_matches('\\')
        .rsplit('\\')
        .next()
        .unwrap_or("")
        .to_string();
    let dir = parent_dir(path).unwrap_or_default();
    match kind {
        Some(ItemKind::Directory) => PsObject::typed("System.IO.DirectoryInfo")
            .with("Name", name)
            .with("FullName", path.to_string())
            .with("Parent", dir)
            .with("PSIsContainer", true)
            .with("Mode", "d-----")
            .with(
                "__display",
                Value::array(vec!["Mode".into(), "Name".into()]),
            )
            .into(),
        Some(ItemKind::File(len)) => {
            let ext = name
                .rfind('.')
                .map(|i| name[i..].to_string())
                .unwrap_or_default();
            let version = it.host.file_version(path).unwrap_or_default();
            let info: Value = PsObject::typed("System.Diagnostics.FileVersionInfo")
                .with("ProductVersion", version.clone())
                .with("FileVersion", version)
                .with("FileName", path.to_string())
                .into();
            let mut file = PsObject::typed("System.IO.FileInfo")
                .with("Name", name)
                .with("FullName", path.to_string())
                .with("DirectoryName", dir)
                .with("Extension", ext)
                .with("Length", Value::Int(len as i64))
                .with("PSIsContainer", false)
                .with("Mode", "-a----")
                .with("__VersionInfo", info)
                .with(
                    "__display",
                    Value::array(vec!["Mode".into(), "Length".into(), "Name".into()]),
                );
            // The guests' clock is UTC, so local and UTC times are the same instant.
            if let Some(t) = it.host.modified(path) {
                file = file
                    .with("LastWriteTimeUtc", Value::DateTime(t))
                    .with("LastWriteTime", Value::DateTime(t));
            }
            file.into()
        }
        None => Value::Null,
    }
}

fn is_provider_path(p: &str) -> bool {
    let l = p.to_ascii_lowercase();
    l.starts_with("hklm:")
        || l.starts_with("hkcu:")
        || l.starts_with("registry::")
        || l.starts_with("cert:")
}

fn cmd_err(message: String, fqid: &str, category: &str) -> ErrorRecord {
    ErrorRecord::new(
        message,
        "System.Management.Automation.RuntimeException",
        fqid,
        category,
    )
}

fn bind(raw: &[RawArg], switches: &[&str]) -> BoundArgs {
    BoundArgs::bind(raw.to_vec(), switches)
}

/// A property of an item for Select/Sort/Where: a name or a script block.
fn prop_of(it: &mut Interpreter<'_>, item: &Value, key: &Value) -> R<Value> {
    match key {
        Value::ScriptBlock(sb) => {
            let sb = sb.clone();
            let r = it.invoke_block(&sb, Vec::new(), Some(item.clone()), false)?;
            Ok(match r.len() {
                0 => Value::Null,
                1 => r.into_iter().next().unwrap_or_default(),
                _ => Value::array(r),
            })
        }
        Value::Hashtable(h) => {
            let e = h
                .borrow()
                .get(&Value::Str("Expression".into()))
                .or_else(|| h.borrow().get(&Value::Str("e".into())));
            match e {
                Some(e) => prop_of(it, item, &e),
                None => Ok(Value::Null),
            }
        }
        other => Ok(it.get_member(item, &other.to_str())),
    }
}

fn label_of(key: &Value) -> String {
    match key {
        Value::Hashtable(h) => {
            let h = h.borrow();
            h.get(&Value::Str("Name".into()))
                .or_else(|| h.get(&Value::Str("Label".into())))
                .or_else(|| h.get(&Value::Str("n".into())))
                .or_else(|| h.get(&Value::Str("l".into())))
                .map(|v| v.to_str())
                .unwrap_or_default()
        }
        Value::ScriptBlock(sb) => sb.text().trim().to_string(),
        other => other.to_str(),
    }
}

/// Paths from pipeline input: FileInfo objects give their FullName, strings themselves.
fn input_paths(it: &mut Interpreter<'_>, input: &[Value]) -> Vec<Value> {
    input
        .iter()
        .map(|v| match v {
            Value::Object(_) => it.get_member(v, "FullName"),
            other => other.clone(),
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// Host text (Write-Host, warnings): in place among console-bound output, else straight out.
fn host_write(it: &mut Interpreter<'_>, text: String) -> R<Vec<Value>> {
    if it.direct {
        it.pending += text.len();
        it.check_output()?;
        return Ok(vec![PsObject::typed(format::HOST_TEXT)
            .with("Text", text)
            .into()]);
    }
    it.stdout.push_str(&text);
    it.check_output().map(|_| Vec::new())
}

/// Runs a built-in cmdlet; `None` when `name` is not one.
pub(crate) fn builtin(
    it: &mut Interpreter<'_>,
    name: &str,
    raw: &[RawArg],
    input: Vec<Value>,
    ctx: &Ctx,
) -> Option<R<Vec<Value>>> {
    let r = match name {
        "write-output" => {
            let a = bind(raw, &["NoEnumerate"]);
            let mut out = Vec::new();
            for v in a.positionals().iter().chain(a.get("InputObject")) {
                match v {
                    Value::Array(arr) if !a.switch("NoEnumerate") => {
                        out.extend(arr.borrow().iter().cloned())
                    }
                    other => out.push(other.clone()),
                }
            }
            out.extend(input);
            Ok(out)
        }
        "write-host" => {
            let a = bind(raw, &["NoNewline"]);
            let sep = a.string("Separator").unwrap_or_else(|| " ".into());
            let mut parts: Vec<String> = Vec::new();
            for v in a.positionals().iter().chain(a.get("Object")) {
                parts.push(
                    v.enumerate()
                        .iter()
                        .map(Value::to_str)
                        .collect::<Vec<_>>()
                        .join(&sep),
                );
            }
            for v in &input {
                parts.push(v.to_str());
            }
            let mut text = parts.join(&sep);
            if !a.switch("NoNewline") {
                text.push_str(format::NL);
            }
            host_write(it, text)
        }
        "write-error" => {
            let a = bind(raw, &[]);
            let msg = a
                .get("Message")
                .or_else(|| a.positional(0))
                .map(Value::to_str)
                .or_else(|| input.first().map(Value::to_str))
                .unwrap_or_default();
            let rec = match a.get("ErrorRecord").or_else(|| a.positional(0)) {
                Some(Value::Error(e)) => (**e).clone(),
                _ => {
                    let mut e = ErrorRecord::new(
                        msg,
                        "Microsoft.PowerShell.Commands.WriteErrorException",
                        "Microsoft.PowerShell.Commands.WriteErrorException",
                        a.string("Category").as_deref().unwrap_or("NotSpecified"),
                    );
                    if let Some(id) = a.string("ErrorId") {
                        e.fqid = id;
                    }
                    e.activity = "Write-Error".into();
                    e.command = Some(
                        it.host
                            .script_path()
                            .unwrap_or_else(|| "Write-Error".into()),
                    );
                    e
                }
            };
            let mut out = Vec::new();
            it.non_terminating(rec, ctx, &mut out).map(|_| out)
        }
        "write-warning" => {
            let a = bind(raw, &[]);
            let msg = a.string_or_pos("Message", 0).unwrap_or_default();
            let pref = Action::parse(&it.get_var("WarningPreference").to_str());
            if pref != Action::Silent && pref != Action::Ignore {
                host_write(it, format!("WARNING: {msg}{}", format::NL))
            } else {
                Ok(Vec::new())
            }
        }
        "write-verbose" | "write-debug" | "write-progress" | "write-information" => {
            let a = bind(raw, &[]);
            if name == "write-information" {
                let msg = a.string_or_pos("MessageData", 0).unwrap_or_default();
                if Action::parse(&it.get_var("InformationPreference").to_str()) == Action::Continue
                    && !it.get_var("InformationPreference").is_null()
                {
                    it.stdout.push_str(&format!("{msg}{}", format::NL));
                }
            } else if name == "write-verbose" && a.switch("Verbose") {
                let msg = a.string_or_pos("Message", 0).unwrap_or_default();
                it.stdout.push_str(&format!("VERBOSE: {msg}{}", format::NL));
            }
            Ok(Vec::new())
        }
        "out-null" => Ok(Vec::new()),
        "out-host" | "out-default" => {
            let text = format::out_string(&input);
            it.stdout.push_str(&text);
            Ok(Vec::new())
        }
        "out-string" => {
            let a = bind(raw, &["Stream"]);
            let mut items = input;
            if let Some(v) = a.get("InputObject") {
                items.push(v.clone());
            }
            if a.switch("Stream") {
                let text = format::out_string(&items);
                Ok(text.lines().map(|l| Value::Str(l.to_string())).collect())
            } else {
                Ok(vec![Value::Str(format::out_string(&items))])
            }
        }
        "format-table" | "format-list" | "format-wide" => {
            let a = bind(raw, &["AutoSize", "Wrap", "HideTableHeaders"]);
            let props: Vec<Value> = a
                .get_or_pos("Property", 0)
                .map(Value::enumerate)
                .unwrap_or_default();
            let items = if props.is_empty() || props.iter().any(|p| p.to_str() == "*") {
                input
            } else {
                let mut v = Vec::new();
                for item in input {
                    let mut pairs = Vec::new();
                    for p in &props {
                        match prop_of(it, &item, p) {
                            Ok(x) => pairs.push((label_of(p), x)),
                            Err(e) => return Some(Err(e)),
                        }
                    }
                    v.push(it.object_from(pairs));
                }
                v
            };
            if name == "format-list" {
                let mut text = String::new();
                for item in &items {
                    match item {
                        Value::Object(o) => {
                            let o = o.borrow();
                            let w = o
                                .props
                                .iter()
                                .filter(|(k, _)| !k.starts_with("__") && k != "ToString")
                                .map(|(k, _)| k.len())
                                .max()
                                .unwrap_or(0);
                            text.push_str(format::NL);
                            for (k, v) in o
                                .props
                                .iter()
                                .filter(|(k, _)| !k.starts_with("__") && k != "ToString")
                            {
                                text.push_str(&format!("{k:<w$} : {}{}", v.to_str(), format::NL));
                            }
                        }
                        other => text.push_str(&format::out_string(std::slice::from_ref(other))),
                    }
                }
                text.push_str(format::NL);
                Ok(vec![Value::Str(
                    text.trim_end_matches(format::NL).to_string() + format::NL,
                )])
            } else {
                Ok(items)
            }
        }
        "out-file" | "set-content" | "add-content" => {
            let a = bind(raw, &["Append", "NoNewline", "Force", "NoClobber"]);
            let path = match a.get("LiteralPath").or_else(|| a.get("FilePath")).or_else(|| a.get("Path")).or_else(|| a.positional(0)) {
                Some(p) => p.to_str(),
                None => {
                    return Some(Err(Flow::Error(
                        Box::new(cmd_err("Cannot process command because of one or more missing mandatory parameters: Path.".into(), "MissingMandatoryParameter", "InvalidArgument")),
                        false,
                    )))
                }
            };
            let pos_value = if name == "out-file" {
                None
            } else {
                a.positional(1)
            };
            let values: Vec<Value> = match a.get("Value").or(a.get("InputObject")).or(pos_value) {
                Some(v) => v.enumerate(),
                None => input,
            };
            let (default, text) = if name == "out-file" {
                (Encoding::Unicode, format::out_string(&values))
            } else {
                let mut t: String = values
                    .iter()
                    .map(|v| {
                        format!(
                            "{}{}",
                            v.to_str(),
                            if a.switch("NoNewline") { "" } else { "\r\n" }
                        )
                    })
                    .collect();
                if values.is_empty() {
                    t.clear();
                }
                (Encoding::Ansi, t)
            };
            let enc = encoding_param(a.get("Encoding"), default);
            let append = name == "add-content" || a.switch("Append");
            // Add-Content to an existing file keeps appending in the file's encoding.
            let enc = if append {
                match it.host.read_file(&dotnet::full_path(it.host, &path)) {
                    Ok(b) if b.starts_with(&[0xFF, 0xFE]) => Encoding::Unicode,
                    Ok(b) if b.starts_with(&[0xEF, 0xBB, 0xBF]) => Encoding::Utf8 { bom: true },
                    _ => enc,
                }
            } else {
                enc
            };
            if is_provider_path(&path) {
                return None;
            }
            match write_text_file(it, &path, &text, enc, append) {
                Ok(()) => Ok(Vec::new()),
                Err(e) => {
                    let mut out = Vec::new();
                    it.non_terminating(e, ctx, &mut out).map(|_| out)
                }
            }
        }
        "get-content" => {
            let a = bind(raw, &["Raw", "Wait", "Force"]);
            let path = a
                .get("LiteralPath")
                .or_else(|| a.get("Path"))
                .or_else(|| a.positional(0))
                .map(Value::to_str)
                .or_else(|| input_paths(it, &input).first().map(Value::to_str))
                .unwrap_or_default();
            if is_provider_path(&path) {
                return None;
            }
            let full = dotnet::full_path(it.host, &path);
            match it.host.read_file(&full) {
                Ok(bytes) => {
                    let enc = encoding_param(a.get("Encoding"), Encoding::Ansi);
                    let text = enc.decode_file(&bytes);
                    if a.switch("Raw") {
                        Ok(vec![Value::Str(text)])
                    } else {
                        let mut lines: Vec<Value> = text
                            .split('\n')
                            .map(|l| Value::Str(l.trim_end_matches('\r').to_string()))
                            .collect();
                        if text.ends_with('\n') || text.is_empty() {
                            lines.pop();
                        }
                        if let Some(n) = a
                            .get("TotalCount")
                            .or_else(|| a.get("First"))
                            .or_else(|| a.get("Head"))
                            .and_then(Value::as_i64)
                        {
                            lines.truncate(n.max(0) as usize);
                        }
                        if let Some(n) = a
                            .get("Tail")
                            .or_else(|| a.get("Last"))
                            .and_then(Value::as_i64)
                        {
                            let n = n.max(0) as usize;
                            let len = lines.len();
                            lines = lines.split_off(len.saturating_sub(n));
                        }
                        Ok(lines)
                    }
                }
                Err(e) => {
                    let e = fs_err(&e, "GetContentCommand", &full);
                    let mut out = Vec::new();
                    it.non_terminating(e, ctx, &mut out).map(|_| out)
                }
            }
        }
        "test-path" => {
            let a = bind(raw, &["IsValid"]);
            let path = a
                .get("LiteralPath")
                .or_else(|| a.get("Path"))
                .or_else(|| a.positional(0))
                .map(Value::to_str)
                .unwrap_or_default();
            if is_provider_path(&path) {
                return None;
            }
            if path.is_empty() {
                return Some(Err(Flow::Error(
                    Box::new(ErrorRecord::new(
                        "Cannot bind argument to parameter 'Path' because it is an empty string.",
                        "System.Management.Automation.ParameterBindingValidationException",
                        "ParameterArgumentValidationErrorEmptyStringNotAllowed,Microsoft.PowerShell.Commands.TestPathCommand",
                        "InvalidData",
                    )),
                    false,
                )));
            }
            let full = dotnet::full_path(it.host, &path);
            let kind = it.host.item(&full);
            let ok = match a.string("PathType").map(|s| s.to_ascii_lowercase()) {
                Some(t) if t == "leaf" => matches!(kind, Some(ItemKind::File(_))),
                Some(t) if t == "container" => matches!(kind, Some(ItemKind::Directory)),
                _ => kind.is_some(),
            };
            Ok(vec![Value::Bool(ok)])
        }
        "new-item" => {
            let a = bind(raw, &["Force"]);
            let path = a
                .get("Path")
                .or_else(|| a.positional(0))
                .map(Value::to_str)
                .unwrap_or_default();
            if is_provider_path(&path) {
                return None;
            }
            let path = match a.string("Name") {
                Some(n) => format!("{}\\{n}", path.trim_end_matches('\\')),
                None => path,
            };
            let full = dotnet::full_path(it.host, &path);
            let kind = a
                .string("ItemType")
                .unwrap_or_else(|| "File".into())
                .to_ascii_lowercase();
            let exists = it.host.item(&full);
            let r = if kind == "directory" {
                if exists.is_some() && !a.switch("Force") {
                    Err(FsError::Other(format!(
                        "An item with the specified name {full} already exists."
                    )))
                } else {
                    it.host.create_dir(&full)
                }
            } else if exists.is_some() && !a.switch("Force") {
                Err(FsError::Other(format!("The file '{full}' already exists.")))
            } else {
                let value = a.string("Value").unwrap_or_default();
                let parent_ok =
                    parent_dir(&full).is_none_or(|p| it.host.item(&p) == Some(ItemKind::Directory));
                if !parent_ok && a.switch("Force") {
                    if let Some(p) = parent_dir(&full) {
                        let _ = it.host.create_dir(&p);
                    }
                }
                it.host.write_file(&full, &Encoding::Ansi.encode(&value))
            };
            match r {
                Ok(()) => Ok(vec![file_item(it, &full)]),
                Err(e) => {
                    let mut rec = fs_err(&e, "NewItemCommand", &full);
                    if let FsError::Other(_) = e {
                        rec.fqid =
                            "DirectoryExist,Microsoft.PowerShell.Commands.NewItemCommand".into();
                        rec.category = "ResourceExists".into();
                    }
                    let mut out = Vec::new();
                    it.non_terminating(rec, ctx, &mut out).map(|_| out)
                }
            }
        }
        "remove-item" => {
            let a = bind(raw, &["Recurse", "Force"]);
            let paths = a
                .get("LiteralPath")
                .or_else(|| a.get("Path"))
                .or_else(|| a.positional(0))
                .map(Value::enumerate)
                .unwrap_or_else(|| input_paths(it, &input));
            if paths.iter().any(|p| is_provider_path(&p.to_str())) {
                return None;
            }
            let mut out = Vec::new();
            for p in paths {
                let full = dotnet::full_path(it.host, &p.to_str());
                if let Err(e) = it.host.remove(&full, a.switch("Recurse")) {
                    let rec = fs_err(&e, "RemoveItemCommand", &full);
                    if let Err(f) = it.non_terminating(rec, ctx, &mut out) {
                        return Some(Err(f));
                    }
                }
            }
            Ok(out)
        }
        "copy-item" | "move-item" => {
            let a = bind(raw, &["Recurse", "Force", "PassThru"]);
            let src = a
                .get("LiteralPath")
                .or_else(|| a.get("Path"))
                .or_else(|| a.positional(0))
                .map(Value::to_str)
                .unwrap_or_default();
            let dst = a
                .get("Destination")
                .or_else(|| a.positional(1))
                .map(Value::to_str)
                .unwrap_or_default();
            let sfull = dotnet::full_path(it.host, &src);
            let mut dfull = dotnet::full_path(it.host, &dst);
            if it.host.item(&dfull) == Some(ItemKind::Directory) {
                let fname = sfull.rsplit('\\').next().unwrap_or("").to_string();
                dfull = format!("{}\\{fname}", dfull.trim_end_matches('\\'));
            }
            let r = it
                .host
                .read_file(&sfull)
                .and_then(|b| it.host.write_file(&dfull, &b));
            let r = if r.is_ok() && name == "move-item" {
                it.host.remove(&sfull, false)
            } else {
                r
            };
            match r {
                Ok(()) => Ok(if a.switch("PassThru") {
                    vec![file_item(it, &dfull)]
                } else {
                    Vec::new()
                }),
                Err(e) => {
                    let rec = fs_err(&e, "CopyItemCommand", &sfull);
                    let mut out = Vec::new();
                    it.non_terminating(rec, ctx, &mut out).map(|_| out)
                }
            }
        }
        "get-item" => {
            let a = bind(raw, &["Force"]);
            let path = a
                .get("LiteralPath")
                .or_else(|| a.get("Path"))
                .or_else(|| a.positional(0))
                .map(Value::to_str)
                .unwrap_or_default();
            if is_provider_path(&path) {
                return None;
            }
            let full = dotnet::full_path(it.host, &path);
            let v = file_item(it, &full);
            if v.is_null() {
                let rec = fs_err(
                    &FsError::FileNotFound(full.clone()),
                    "GetItemCommand",
                    &full,
                );
                let mut out = Vec::new();
                return Some(it.non_terminating(rec, ctx, &mut out).map(|_| out));
            }
            // Executables carry VersionInfo; the host may know it.
            Ok(vec![v])
        }
        "get-childitem" => {
            let a = bind(raw, &["Recurse", "Force", "File", "Directory", "Name"]);
            let path = a
                .get("LiteralPath")
                .or_else(|| a.get("Path"))
                .or_else(|| a.positional(0))
                .map(Value::to_str)
                .unwrap_or_else(|| it.host.cwd());
            if path.to_ascii_lowercase().starts_with("env:") {
                let filter = path[4..].trim_start_matches('\\').to_string();
                let mut out = Vec::new();
                for (k, v) in it.host.env_vars() {
                    if filter.is_empty() || ops::wildcard(&filter, &k, false) {
                        out.push(
                            PsObject::typed("System.Collections.DictionaryEntry")
                                .with("Name", k.clone())
                                .with("Value", v)
                                .into(),
                        );
                    }
                }
                return Some(Ok(out));
            }
            if is_provider_path(&path) {
                return None;
            }
            let full = dotnet::full_path(it.host, &path);
            let filter = a
                .string("Filter")
                .or_else(|| a.positional(1).map(Value::to_str));
            let (dir, pattern) = if full.contains('*') {
                (
                    parent_dir(&full).unwrap_or_default(),
                    Some(full.rsplit('\\').next().unwrap_or("*").to_string()),
                )
            } else {
                (full.clone(), filter)
            };
            let mut stack = vec![dir.clone()];
            let mut out = Vec::new();
            let mut guard = 0;
            while let Some(d) = stack.pop() {
                guard += 1;
                if guard > 10_000 {
                    break;
                }
                match it.host.list_dir(&d) {
                    Ok(entries) => {
                        for e in entries {
                            let is_dir = it.host.item(&e) == Some(ItemKind::Directory);
                            if is_dir && a.switch("Recurse") {
                                stack.push(e.clone());
                            }
                            let fname = e.rsplit('\\').next().unwrap_or("").to_string();
                            if let Some(p) = &pattern {
                                if !ops::wildcard(p, &fname, false) {
                                    continue;
                                }
                            }
                            if (a.switch("File") && is_dir) || (a.switch("Directory") && !is_dir) {
                                continue;
                            }
                            if a.switch("Name") {
                                out.push(Value::Str(fname));
                            } else {
                                out.push(file_item(it, &e));
                            }
                        }
                    }
                    Err(e) => {
                        if d == dir {
                            let rec = fs_err(&e, "GetChildItemCommand", &d);
                            if let Err(f) = it.non_terminating(rec, ctx, &mut out) {
                                return Some(Err(f));
                            }
                        }
                    }
                }
            }
            Ok(out)
        }
        "join-path" => {
            let a = bind(raw, &["Resolve"]);
            let base = a
                .get("Path")
                .or_else(|| a.positional(0))
                .map(Value::to_str)
                .unwrap_or_default();
            let child = a
                .get("ChildPath")
                .or_else(|| a.positional(1))
                .map(Value::to_str)
                .unwrap_or_default();
            let mut extra: Vec<String> =
                a.positionals().iter().skip(2).map(Value::to_str).collect();
            if let Some(x) = a.get("AdditionalChildPath") {
                extra.extend(x.enumerate().iter().map(Value::to_str));
            }
            let mut p = base.trim_end_matches('\\').to_string();
            for c in std::iter::once(child).chain(extra) {
                let c = c.trim_start_matches('\\');
                if !c.is_empty() {
                    p = format!("{p}\\{c}");
                }
            }
            Ok(vec![Value::Str(p)])
        }
        "split-path" => {
            let a = bind(
                raw,
                &["Leaf", "Parent", "NoQualifier", "Qualifier", "IsAbsolute"],
            );
            let path = a
                .get("LiteralPath")
                .or_else(|| a.get("Path"))
                .or_else(|| a.positional(0))
                .map(Value::to_str)
                .unwrap_or_default();
            let v = if a.switch("Leaf") {
                path.trim_end_matches('\\')
                    .rsplit('\\')
                    .next()
                    .unwrap_or("")
                    .to_string()
            } else if a.switch("Qualifier") {
                path.split_once(':')
                    .map(|(q, _)| format!("{q}:"))
                    .unwrap_or_default()
            } else if a.switch("IsAbsolute") {
                return Some(Ok(vec![Value::Bool(
                    path.len() >= 2 && path.as_bytes()[1] == b':',
                )]));
            } else {
                let p = path.trim_end_matches('\\');
                match p.rfind('\\') {
                    Some(i) => {
                        let parent = &p[..i];
                        if parent.ends_with(':') {
                            format!("{parent}\\")
                        } else {
                            parent.to_string()
                        }
                    }
                    None => String::new(),
                }
            };
            Ok(vec![Value::Str(v)])
        }
        "where-object" => {
            let a = bind(raw, &[]);
            let mut out = Vec::new();
            if let Some(Value::ScriptBlock(sb)) = a.get("FilterScript").or_else(|| a.positional(0))
            {
                let sb = sb.clone();
                for item in input {
                    match it.invoke_block(&sb, Vec::new(), Some(item.clone()), false) {
                        Ok(r) => {
                            let v = match r.len() {
                                0 => Value::Null,
                                1 => r.into_iter().next().unwrap_or_default(),
                                _ => Value::array(r),
                            };
                            if v.truthy() {
                                out.push(item);
                            }
                        }
                        Err(e) => return Some(Err(e)),
                    }
                }
                return Some(Ok(out));
            }
            // Simplified syntax: Where-Object Name -eq value / -Property Name -Like value.
            let prop = a
                .get("Property")
                .or_else(|| a.positional(0))
                .map(Value::to_str)
                .unwrap_or_default();
            let ops_list = [
                "eq",
                "ne",
                "gt",
                "ge",
                "lt",
                "le",
                "like",
                "notlike",
                "match",
                "notmatch",
                "contains",
                "notcontains",
                "in",
                "notin",
                "ceq",
                "cne",
                "clike",
                "cmatch",
            ];
            let mut op = None;
            let mut value = Value::Bool(true);
            for (k, v) in a.named() {
                let kl = k.to_ascii_lowercase();
                if ops_list.contains(&kl.as_str()) {
                    op = Some(format!("-{kl}"));
                    value = v.clone();
                }
            }
            if op.is_some() && matches!(value, Value::Bool(true)) {
                if let Some(v) = a.get("Value").or_else(|| a.positional(1)) {
                    value = v.clone();
                }
            }
            for item in input {
                let pv = it.get_member(&item, &prop);
                let keep = match &op {
                    Some(o) => match ops::binary(o, &pv, &value) {
                        Ok((v, _)) => v.truthy(),
                        Err(e) => return Some(Err(Flow::Error(Box::new(e), false))),
                    },
                    None => pv.truthy(),
                };
                if keep {
                    out.push(item);
                }
            }
            Ok(out)
        }
        "foreach-object" => {
            let a = bind(raw, &[]);
            let mut out = Vec::new();
            let begin = a.get("Begin").cloned();
            let end = a.get("End").cloned();
            let process: Vec<Value> = match a.get("Process") {
                Some(p) => p.enumerate(),
                None => a.positionals().to_vec(),
            };
            if let Some(Value::ScriptBlock(sb)) = begin {
                match it.invoke_block(&sb, Vec::new(), None, false) {
                    Ok(r) => out.extend(r),
                    Err(e) => return Some(Err(e)),
                }
            }
            let member = a.string("MemberName").or_else(|| match process.first() {
                Some(Value::Str(s)) => Some(s.clone()),
                _ => None,
            });
            for item in input {
                if let Some(m) = &member {
                    let v = it.get_member(&item, m);
                    if !matches!(v, Value::Null) {
                        out.push(v);
                    } else if let Ok(v) = it.call_method(&item, m, Vec::new(), false) {
                        out.push(v);
                    }
                    continue;
                }
                for p in &process {
                    if let Value::ScriptBlock(sb) = p {
                        match it.invoke_block(sb, Vec::new(), Some(item.clone()), false) {
                            Ok(r) => out.extend(r),
                            Err(e) => return Some(Err(e)),
                        }
                    }
                }
            }
            if let Some(Value::ScriptBlock(sb)) = end {
                match it.invoke_block(&sb, Vec::new(), None, false) {
                    Ok(r) => out.extend(r),
                    Err(e) => return Some(Err(e)),
                }
            }
            Ok(out)
        }
        "select-object" => {
            let a = bind(raw, &["Unique"]);
            let mut items = input;
            if let Some(v) = a.get("InputObject") {
                items.extend(v.enumerate());
            }
            if let Some(exp) = a.string("ExpandProperty") {
                let mut out = Vec::new();
                for item in &items {
                    let v = it.get_member(item, &exp);
                    if v.is_null()
                        && dotnet::property(item, &exp).is_none()
                        && !matches!(item, Value::Array(_))
                    {
                        let e = ErrorRecord::new(
                            format!("Property \"{exp}\" cannot be found."),
                            "System.Management.Automation.PSArgumentException",
                            "ExpandPropertyNotFound,Microsoft.PowerShell.Commands.SelectObjectCommand",
                            "InvalidArgument",
                        )
                        .with_target(&item.to_str(), item.type_name().rsplit('.').next().unwrap_or("Object"));
                        if let Err(f) = it.non_terminating(e, ctx, &mut out) {
                            return Some(Err(f));
                        }
                        continue;
                    }
                    match v {
                        Value::Array(arr) => out.extend(arr.borrow().iter().cloned()),
                        other => out.push(other),
                    }
                }
                items = out;
            } else if let Some(props) = a
                .get("Property")
                .or_else(|| a.positional(0))
                .map(Value::enumerate)
            {
                if !props.iter().any(|p| p.to_str() == "*") {
                    let mut out = Vec::new();
                    for item in &items {
                        let mut pairs = Vec::new();
                        for p in &props {
                            match prop_of(it, item, p) {
                                Ok(v) => pairs.push((label_of(p), v)),
                                Err(e) => return Some(Err(e)),
                            }
                        }
                        out.push(it.object_from(pairs));
                    }
                    items = out;
                }
            }
            if a.switch("Unique") {
                let mut seen: Vec<Value> = Vec::new();
                items.retain(|x| {
                    if seen.iter().any(|y| ops::equals(y, x, true)) {
                        false
                    } else {
                        seen.push(x.clone());
                        true
                    }
                });
            }
            if let Some(n) = a.get("Skip").and_then(Value::as_i64) {
                let n = (n.max(0) as usize).min(items.len());
                items.drain(..n);
            }
            if let Some(n) = a.get("First").and_then(Value::as_i64) {
                items.truncate(n.max(0) as usize);
            }
            if let Some(n) = a.get("Last").and_then(Value::as_i64) {
                let n = n.max(0) as usize;
                let len = items.len();
                items = items.split_off(len.saturating_sub(n));
            }
            if let Some(idx) = a.get("Index") {
                let picked: Vec<Value> = idx
                    .enumerate()
                    .iter()
                    .filter_map(|i| i.as_i64().and_then(|i| items.get(i as usize).cloned()))
                    .collect();
                items = picked;
            }
            Ok(items)
        }
        "sort-object" => {
            let a = bind(raw, &["Descending", "Unique", "CaseSensitive"]);
            let props: Vec<Value> = a
                .get("Property")
                .or_else(|| a.positional(0))
                .map(Value::enumerate)
                .unwrap_or_default();
            let mut keyed = Vec::new();
            for item in input {
                let mut keys = Vec::new();
                if props.is_empty() {
                    keys.push(item.clone());
                }
                for p in &props {
                    match prop_of(it, &item, p) {
                        Ok(v) => keys.push(v),
                        Err(e) => return Some(Err(e)),
                    }
                }
                keyed.push((keys, item));
            }
            let case = a.switch("CaseSensitive");
            keyed.sort_by(|(ka, _), (kb, _)| {
                for (x, y) in ka.iter().zip(kb) {
                    match ops::compare(x, y, case) {
                        Some(std::cmp::Ordering::Equal) | None => continue,
                        Some(o) => return o,
                    }
                }
                std::cmp::Ordering::Equal
            });
            if a.switch("Descending") {
                keyed.reverse();
            }
            let mut out: Vec<Value> = Vec::new();
            let mut last_keys: Option<Vec<Value>> = None;
            for (k, v) in keyed {
                if a.switch("Unique") {
                    if let Some(lk) = &last_keys {
                        if lk.len() == k.len()
                            && lk.iter().zip(&k).all(|(x, y)| ops::equals(x, y, case))
                        {
                            continue;
                        }
                    }
                    last_keys = Some(k);
                }
                out.push(v);
            }
            Ok(out)
        }
        "measure-object" => {
            let a = bind(
                raw,
                &[
                    "Sum",
                    "Average",
                    "Maximum",
                    "Minimum",
                    "Line",
                    "Word",
                    "Character",
                ],
            );
            let prop = a
                .get("Property")
                .or_else(|| a.positional(0))
                .map(Value::to_str);
            let values: Vec<Value> = input
                .iter()
                .map(|v| match &prop {
                    Some(p) => it.get_member(v, p),
                    None => v.clone(),
                })
                .collect();
            let nums: Vec<f64> = values.iter().filter_map(Value::as_f64).collect();
            let count = values.iter().filter(|v| !v.is_null()).count() as i64;
            let sum: f64 = nums.iter().sum();
            let num = |x: f64| {
                if x.fract() == 0.0 && x.abs() < 1e15 {
                    Value::Int(x as i64)
                } else {
                    Value::Double(x)
                }
            };
            let mut o = PsObject::typed("Microsoft.PowerShell.Commands.GenericMeasureInfo")
                .with("Count", Value::Int(count));
            o.set(
                "Average",
                if a.switch("Average") && !nums.is_empty() {
                    Value::Double(sum / nums.len() as f64)
                } else {
                    Value::Null
                },
            );
            o.set(
                "Sum",
                if a.switch("Sum") {
                    num(sum)
                } else {
                    Value::Null
                },
            );
            o.set(
                "Maximum",
                if a.switch("Maximum") {
                    nums.iter()
                        .cloned()
                        .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))))
                        .map(num)
                        .unwrap_or(Value::Null)
                } else {
                    Value::Null
                },
            );
            o.set(
                "Minimum",
                if a.switch("Minimum") {
                    nums.iter()
                        .cloned()
                        .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.min(x))))
                        .map(num)
                        .unwrap_or(Value::Null)
                } else {
                    Value::Null
                },
            );
            o.set("Property", prop.map(Value::Str).unwrap_or(Value::Null));
            Ok(vec![o.into()])
        }
        "group-object" => {
            let a = bind(raw, &["NoElement", "AsHashTable", "AsString"]);
            let props: Vec<Value> = a
                .get("Property")
                .or_else(|| a.positional(0))
                .map(Value::enumerate)
                .unwrap_or_default();
            let mut groups: Vec<(String, Vec<Value>)> = Vec::new();
            for item in input {
                let mut parts = Vec::new();
                for p in &props {
                    match prop_of(it, &item, p) {
                        Ok(v) => parts.push(v.to_str()),
                        Err(e) => return Some(Err(e)),
                    }
                }
                if props.is_empty() {
                    parts.push(item.to_str());
                }
                let key = parts.join(", ");
                match groups
                    .iter_mut()
                    .find(|(k, _)| k.eq_ignore_ascii_case(&key))
                {
                    Some((_, g)) => g.push(item),
                    None => groups.push((key, vec![item])),
                }
            }
            if a.switch("AsHashTable") {
                let mut h = crate::value::Hashtable::default();
                for (k, g) in groups {
                    h.entries.push((Value::Str(k), Value::array(g)));
                }
                return Some(Ok(vec![Value::hashtable(h)]));
            }
            Ok(groups
                .into_iter()
                .map(|(k, g)| {
                    let mut o = PsObject::typed("Microsoft.PowerShell.Commands.GroupInfo")
                        .with("Count", Value::Int(g.len() as i64))
                        .with("Name", k);
                    if !a.switch("NoElement") {
                        o.set("Group", Value::array(g));
                    }
                    o.into()
                })
                .collect())
        }
        "select-string" => {
            let a = bind(
                raw,
                &["SimpleMatch", "NotMatch", "CaseSensitive", "Quiet", "List"],
            );
            let patterns: Vec<String> = a
                .get("Pattern")
                .or_else(|| a.positional(0))
                .map(|p| p.enumerate().iter().map(Value::to_str).collect())
                .unwrap_or_default();
            let case = a.switch("CaseSensitive");
            let mut res = Vec::new();
            for p in &patterns {
                let pat = if a.switch("SimpleMatch") {
                    regex::escape(p)
                } else {
                    p.clone()
                };
                match ops::regex(&pat, case) {
                    Ok(r) => res.push(r),
                    Err(e) => return Some(Err(Flow::Error(Box::new(e), false))),
                }
            }
            // (path, line number, line)
            let mut lines: Vec<(Option<String>, usize, String)> = Vec::new();
            let files: Vec<Value> = a
                .get("Path")
                .or_else(|| a.get("LiteralPath"))
                .or_else(|| a.positional(1))
                .map(Value::enumerate)
                .unwrap_or_default();
            if files.is_empty() {
                for (n, v) in input.iter().enumerate() {
                    match v {
                        Value::Object(_) if !it.get_member(v, "FullName").is_null() => {
                            let p = it.get_member(v, "FullName").to_str();
                            if let Ok(b) = it.host.read_file(&p) {
                                let text = Encoding::Utf8 { bom: false }.decode_file(&b);
                                for (i, l) in text.lines().enumerate() {
                                    lines.push((Some(p.clone()), i + 1, l.to_string()));
                                }
                            }
                        }
                        other => lines.push((None, n + 1, other.to_str())),
                    }
                }
            } else {
                for f in files {
                    let p = dotnet::full_path(it.host, &f.to_str());
                    match it.host.read_file(&p) {
                        Ok(b) => {
                            let text = Encoding::Utf8 { bom: false }.decode_file(&b);
                            for (i, l) in text.lines().enumerate() {
                                lines.push((Some(p.clone()), i + 1, l.to_string()));
                            }
                        }
                        Err(e) => {
                            let rec = fs_err(&e, "SelectStringCommand", &p);
                            let mut out = Vec::new();
                            if let Err(f) = it.non_terminating(rec, ctx, &mut out) {
                                return Some(Err(f));
                            }
                        }
                    }
                }
            }
            let mut out = Vec::new();
            for (path, n, line) in lines {
                let hit = res
                    .iter()
                    .find_map(|r| r.find(&line).map(|m| m.as_str().to_string()));
                let keep = hit.is_some() != a.switch("NotMatch");
                if !keep {
                    continue;
                }
                if a.switch("Quiet") {
                    return Some(Ok(vec![Value::Bool(true)]));
                }
                let text = match &path {
                    Some(p) => format!("{p}:{n}:{line}"),
                    None => line.clone(),
                };
                let file = path
                    .as_deref()
                    .map(|p| p.rsplit('\\').next().unwrap_or("").to_string())
                    .unwrap_or_else(|| "InputStream".into());
                out.push(
                    PsObject::typed("Microsoft.PowerShell.Commands.MatchInfo")
                        .with("LineNumber", Value::Int(n as i64))
                        .with("Line", line)
                        .with("Filename", file)
                        .with("Path", path.unwrap_or_else(|| "InputStream".into()))
                        .with("Pattern", patterns.first().cloned().unwrap_or_default())
                        .with("Matches", hit.map(Value::Str).unwrap_or_default())
                        .with("__text", text)
                        .into(),
                );
            }
            if a.switch("Quiet") {
                return Some(Ok(vec![Value::Bool(false)]));
            }
            Ok(out)
        }
        "add-member" => {
            let a = bind(raw, &["PassThru", "Force"]);
            let target = a
                .get("InputObject")
                .cloned()
                .or_else(|| input.first().cloned());
            let mut members: Vec<(String, Value)> = Vec::new();
            if let Some(n) = a.string("NotePropertyName") {
                members.push((n, a.get("NotePropertyValue").cloned().unwrap_or_default()));
            }
            if let Some(Value::Hashtable(h)) = a.get("NotePropertyMembers") {
                for (k, v) in h.borrow().entries.iter() {
                    members.push((k.to_str(), v.clone()));
                }
            }
            if let Some(n) = a.string("Name") {
                members.push((n, a.get("Value").cloned().unwrap_or_default()));
            } else if a.has("MemberType") || a.positionals().len() >= 2 {
                // Add-Member NoteProperty Name Value
                let p = a.positionals();
                let skip = usize::from(!a.has("MemberType"));
                if let Some(n) = p.get(skip) {
                    members.push((n.to_str(), p.get(skip + 1).cloned().unwrap_or_default()));
                }
            }
            match target {
                Some(Value::Object(o)) => {
                    for (k, v) in members {
                        if o.borrow().get(&k).is_some() && !a.switch("Force") {
                            let e = ErrorRecord::new(
                                format!("Cannot add a member with the name \"{k}\" because a member with that name already exists. To overwrite the member anyway, add the Force parameter to your command."),
                                "System.InvalidOperationException",
                                "MemberAlreadyExists,Microsoft.PowerShell.Commands.AddMemberCommand",
                                "InvalidOperation",
                            );
                            let mut out = Vec::new();
                            if let Err(f) = it.non_terminating(e, ctx, &mut out) {
                                return Some(Err(f));
                            }
                            continue;
                        }
                        o.borrow_mut().set(&k, v);
                    }
                    Ok(if a.switch("PassThru") {
                        vec![Value::Object(o)]
                    } else {
                        Vec::new()
                    })
                }
                Some(Value::Hashtable(h)) => {
                    for (k, v) in members {
                        h.borrow_mut().set(Value::Str(k), v);
                    }
                    Ok(if a.switch("PassThru") {
                        vec![Value::Hashtable(h)]
                    } else {
                        Vec::new()
                    })
                }
                _ => Err(Flow::Error(
                    Box::new(cmd_err(
                        "Add-Member needs an object (-InputObject or pipeline input).".into(),
                        "NoObjectInGetMember",
                        "InvalidArgument",
                    )),
                    false,
                )),
            }
        }
        "convertto-json" => {
            let a = bind(raw, &["Compress"]);
            let depth = a
                .get("Depth")
                .and_then(Value::as_i64)
                .unwrap_or(2)
                .clamp(0, 100) as usize;
            let v = match a.get("InputObject").or_else(|| a.positional(0)) {
                Some(v) => v.clone(),
                None => match input.len() {
                    0 => return Some(Ok(Vec::new())),
                    1 => input.into_iter().next().unwrap_or_default(),
                    _ => Value::array(input),
                },
            };
            Ok(vec![Value::Str(format::to_json(
                &v,
                depth,
                a.switch("Compress"),
            ))])
        }
        "convertfrom-json" => {
            let a = bind(raw, &[]);
            let text = match a.get("InputObject").or_else(|| a.positional(0)) {
                Some(v) => v.to_str(),
                None => input
                    .iter()
                    .map(Value::to_str)
                    .collect::<Vec<_>>()
                    .join("\n"),
            };
            match format::from_json(&text) {
                Ok(v) => Ok(vec![v]),
                Err(m) => Err(Flow::Error(
                    Box::new(ErrorRecord::new(
                        format!("Invalid JSON primitive: {m}."),
                        "System.ArgumentException",
                        "System.ArgumentException,Microsoft.PowerShell.Commands.ConvertFromJsonCommand",
                        "NotSpecified",
                    )),
                    false,
                )),
            }
        }
        "new-object" => {
            let a = bind(raw, &[]);
            let t = a
                .get("TypeName")
                .or_else(|| a.positional(0))
                .map(Value::to_str)
                .unwrap_or_default();
            let mut args: Vec<Value> = a
                .get("ArgumentList")
                .map(Value::enumerate)
                .unwrap_or_default();
            args.extend(a.positionals().iter().skip(1).flat_map(Value::enumerate));
            if t.eq_ignore_ascii_case("psobject") || t.eq_ignore_ascii_case("pscustomobject") {
                if let Some(Value::Hashtable(h)) = a.get("Property") {
                    let mut o = PsObject::custom();
                    for (k, v) in h.borrow().entries.iter() {
                        o.set(&k.to_str(), v.clone());
                    }
                    return Some(Ok(vec![o.into()]));
                }
            }
            dotnet::new_object(&t, &args)
                .map(|v| vec![v])
                .map_err(|e| Flow::Error(Box::new(e), false))
        }
        "get-date" => {
            let a = bind(raw, &[]);
            let d = match a.get("Date").or_else(|| a.positional(0)) {
                Some(v) => match dotnet::convert(v, "System.DateTime") {
                    Ok(Value::DateTime(d)) => d,
                    _ => DateTime::now_utc(),
                },
                None => DateTime::now_utc(),
            };
            if let Some(f) = a.string("Format") {
                return Some(Ok(vec![Value::Str(ops::format_spec(
                    &Value::DateTime(d),
                    &f,
                ))]));
            }
            if let Some(f) = a.string("UFormat") {
                let (y, m, dd, hh, mi, ss, _) = d.parts();
                let s = f
                    .replace("%Y", &format!("{y:04}"))
                    .replace("%m", &format!("{m:02}"))
                    .replace("%d", &format!("{dd:02}"))
                    .replace("%H", &format!("{hh:02}"))
                    .replace("%M", &format!("{mi:02}"))
                    .replace("%S", &format!("{ss:02}"))
                    .replace(
                        "%s",
                        &(d.ticks.saturating_sub(621_355_968_000_000_000) / 10_000_000).to_string(),
                    );
                return Some(Ok(vec![Value::Str(s)]));
            }
            Ok(vec![Value::DateTime(d)])
        }
        "start-sleep"
        | "clear-host"
        | "set-strictmode"
        | "set-location"
        | "import-module"
        | "set-executionpolicy" => Ok(Vec::new()),
        "get-location" => Ok(vec![PsObject::typed(
            "System.Management.Automation.PathInfo",
        )
        .with("Path", it.host.cwd())
        .with("ToString", it.host.cwd())
        .into()]),
        "invoke-command" => {
            let a = bind(raw, &[]);
            match a.get("ScriptBlock").or_else(|| a.positional(0)) {
                Some(Value::ScriptBlock(sb)) => {
                    let sb: Rc<_> = sb.clone();
                    let args = a
                        .get("ArgumentList")
                        .map(Value::enumerate)
                        .unwrap_or_default();
                    it.call_block(&sb, args, input)
                }
                _ => Err(Flow::Error(
                    Box::new(cmd_err(
                        "Invoke-Command needs -ScriptBlock in the emulated guest (no remoting)."
                            .into(),
                        "NotSupported",
                        "InvalidArgument",
                    )),
                    false,
                )),
            }
        }
        "invoke-expression" => {
            let a = bind(raw, &[]);
            let text = a.string_or_pos("Command", 0).unwrap_or_default();
            match crate::parse::parse(&text) {
                Ok(script) => {
                    let sb = Rc::new(crate::value::ScriptBlock {
                        source: script.source.clone(),
                        start: 0,
                        end: 0,
                        kind: "program",
                    });
                    let _ = sb;
                    // Run the parsed text in the current scope.
                    let mut out = Vec::new();
                    let root = script.source.tree.root_node();
                    let list = {
                        let mut c = root.walk();
                        let found = root
                            .named_children(&mut c)
                            .find(|n| n.kind() == "statement_list");
                        found
                    };
                    if let Some(list) = list {
                        let r = it.run_nested(
                            &script.source,
                            list.start_byte(),
                            list.end_byte(),
                            &mut out,
                        );
                        if let Err(e) = r {
                            return Some(Err(e));
                        }
                    }
                    Ok(out)
                }
                Err(e) => Err(Flow::Error(
                    Box::new(ErrorRecord::new(
                        e.problems
                            .first()
                            .map(|p| p.message.clone())
                            .unwrap_or_default(),
                        "System.Management.Automation.ParseException",
                        "ParseException",
                        "ParserError",
                    )),
                    false,
                )),
            }
        }
        "get-variable" => {
            let a = bind(raw, &["ValueOnly"]);
            let n = a.string_or_pos("Name", 0).unwrap_or_default();
            let v = it.get_var(&n);
            if a.switch("ValueOnly") {
                Ok(vec![v])
            } else {
                Ok(vec![PsObject::typed(
                    "System.Management.Automation.PSVariable",
                )
                .with("Name", n)
                .with("Value", v)
                .into()])
            }
        }
        "set-variable" | "new-variable" => {
            let a = bind(raw, &[]);
            let n = a.string_or_pos("Name", 0).unwrap_or_default();
            let v = a.get_or_pos("Value", 1).cloned().unwrap_or_default();
            it.set_var(&n, v);
            Ok(Vec::new())
        }
        "get-command" => {
            let a = bind(raw, &[]);
            let n = a.string_or_pos("Name", 0).unwrap_or_default();
            let known = it.has_function(&n)
                || matches!(
                    resolve_alias(&n.to_ascii_lowercase()).as_str(),
                    "write-output"
                        | "write-host"
                        | "where-object"
                        | "foreach-object"
                        | "select-object"
                        | "sort-object"
                        | "measure-object"
                        | "convertto-json"
                        | "convertfrom-json"
                        | "get-content"
                        | "set-content"
                        | "add-content"
                        | "test-path"
                        | "new-item"
                        | "remove-item"
                        | "get-childitem"
                        | "join-path"
                        | "split-path"
                        | "out-null"
                        | "out-string"
                        | "get-date"
                        | "new-object"
                );
            if known {
                Ok(vec![PsObject::typed(
                    "System.Management.Automation.CmdletInfo",
                )
                .with("Name", n.clone())
                .with("CommandType", "Cmdlet")
                .into()])
            } else {
                let e = ErrorRecord::not_recognized(&n);
                let mut out = Vec::new();
                it.non_terminating(e, ctx, &mut out).map(|_| out)
            }
        }
        _ => return None,
    };
    let _ = ErrTarget::Console;
    Some(r)
}

impl Interpreter<'_> {
    /// Runs a statement list from another source (Invoke-Expression) in the current scope.
    pub(crate) fn run_nested(
        &mut self,
        source: &Rc<crate::parse::Source>,
        start: usize,
        end: usize,
        out: &mut Vec<Value>,
    ) -> R<()> {
        let Some(node) = source.find(start, end, "statement_list") else {
            return Ok(());
        };
        let prev = self.swap_source(Some(source.clone()));
        let r = self.statements(node, out);
        self.swap_source(prev);
        r
    }
}
