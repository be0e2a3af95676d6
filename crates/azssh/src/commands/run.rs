//! `azssh run SCRIPT|RUNBOOK|-|-e CODE [--arg k=v]...`: runs one script and prints its final value.

use std::path::Path;

use crate::cli::{GlobalArgs, RunArgs};
use crate::error::AppError;
use crate::output;
use crate::script::run::Script;
use crate::script::runbook;

pub async fn run(global: &GlobalArgs, args: RunArgs) -> Result<(), AppError> {
    let script = match (&args.eval, args.script.as_deref()) {
        (Some(code), _) => Script::inline(code),
        (None, Some("-")) => read_stdin()?,
        (None, Some(spec)) => {
            let script = super::load_script(spec)?;
            // A script runs with the operator's files, network and Azure rights: say so when
            // someone else could have changed it (bundled runbooks are compiled in).
            if !script.name.starts_with("runbook:") {
                for warning in tamper_warnings(Path::new(&script.name)) {
                    output::log(output::Level::Warn, &warning);
                }
            }
            script
        }
        (None, None) => {
            return Err(AppError::usage(
                "`azssh run` needs a script",
                Some(
                    "give a `.rhai` file, a runbook name, `-` for standard input, or `-e 'CODE'`"
                        .into(),
                ),
            ));
        }
    };
    let script_args = super::parse_args(&args.args)?;
    let shown = args.script.clone().unwrap_or_else(|| "-e".into());
    check_declared(&shown, &script, &script_args)?;
    let value = super::run_blocking(
        super::settings(global),
        super::limits(&args.limits),
        args.timeout,
        move |ctx| crate::script::run::run(&ctx, &script, script_args, |_| {}),
    )
    .await?;
    super::print_result(global, &value)
}

/// `azssh run -`: the script from standard input, bounded like a script file.
fn read_stdin() -> Result<Script, AppError> {
    use std::io::Read;
    let cap = crate::local_file::cap::SCRIPT;
    let mut bytes = Vec::new();
    std::io::stdin()
        .take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| {
            AppError::usage(
                format!("cannot read the script from standard input: {e}"),
                None,
            )
        })?;
    if bytes.len() as u64 > cap {
        return Err(AppError::usage(
            format!("the script on standard input is larger than {cap} bytes"),
            Some("save it to a file and split it into modules".into()),
        ));
    }
    let text = String::from_utf8(bytes).map_err(|_| {
        AppError::usage(
            "the script on standard input is not valid UTF-8 text",
            Some("save the script as UTF-8".into()),
        )
    })?;
    Ok(Script {
        name: "-".into(),
        text: text.trim_start_matches('\u{feff}').to_string(),
    })
}

/// A runbook that declares its arguments (`//! arg NAME: ...`) refuses `--arg` names it does
/// not know: a misspelt `--arg soruce=..` would otherwise be silently ignored.
fn check_declared(shown: &str, script: &Script, given: &rhai::Map) -> Result<(), AppError> {
    let header = script.header();
    let unknown = runbook::undeclared(&header, given.keys().map(|k| k.as_str()));
    if unknown.is_empty() {
        return Ok(());
    }
    let known: Vec<&str> = header.args.iter().map(|a| a.name.as_str()).collect();
    Err(AppError::usage(
        format!("`{shown}` takes no `--arg {}`", unknown.join("`, `--arg ")),
        Some(format!(
            "its arguments: {} (`azssh runbooks {shown}` explains them)",
            known.join(", ")
        )),
    ))
}

/// Why a script file at `path` may have been written by someone other than the operator: the
/// file is group- or world-writable, or its directory is world-writable without the sticky bit
/// (anyone may then replace the file: `rename` needs only write access to the directory).
#[cfg(unix)]
pub fn tamper_warnings(path: &Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut warnings = Vec::new();
    let Ok(meta) = std::fs::metadata(path) else {
        return warnings;
    };
    if !meta.is_file() {
        return warnings;
    }
    let mode = meta.permissions().mode();
    if mode & 0o022 != 0 {
        let who = if mode & 0o002 != 0 {
            "anyone"
        } else {
            "its group"
        };
        warnings.push(format!(
            "`{}` can be changed by {who} (mode {:o}); it runs with your files, network and Azure rights: review it, then `chmod go-w` it",
            path.display(),
            mode & 0o777
        ));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    if let Ok(dmeta) = std::fs::metadata(&dir) {
        let dmode = dmeta.permissions().mode();
        if dmode & 0o002 != 0 && dmode & 0o1000 == 0 {
            warnings.push(format!(
                "`{}` is in `{}`, which anyone can write to: another user can replace the script; keep scripts in a directory only you can write",
                path.display(),
                dir.display()
            ));
        }
    }
    warnings
}

/// Windows ACLs are not modes; no check there.
#[cfg(not(unix))]
pub fn tamper_warnings(_path: &Path) -> Vec<String> {
    Vec::new()
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn set_mode(p: &Path, mode: u32) {
        let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode));
    }

    #[test]
    fn only_writable_by_owner_is_quiet() {
        let dir = tempfile::tempdir().unwrap();
        set_mode(dir.path(), 0o700);
        let f = dir.path().join("s.rhai");
        std::fs::write(&f, "1").unwrap();
        set_mode(&f, 0o644);
        assert!(tamper_warnings(&f).is_empty());
    }

    #[test]
    fn group_or_world_writable_file_warns() {
        let dir = tempfile::tempdir().unwrap();
        set_mode(dir.path(), 0o700);
        let f = dir.path().join("s.rhai");
        std::fs::write(&f, "1").unwrap();
        set_mode(&f, 0o664);
        let w = tamper_warnings(&f);
        assert!(w.len() == 1 && w[0].contains("its group"), "{w:?}");
        set_mode(&f, 0o666);
        let w = tamper_warnings(&f);
        assert!(w.len() == 1 && w[0].contains("anyone"), "{w:?}");
    }

    #[test]
    fn world_writable_dir_warns_unless_sticky() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s.rhai");
        std::fs::write(&f, "1").unwrap();
        set_mode(&f, 0o644);
        set_mode(dir.path(), 0o777);
        let w = tamper_warnings(&f);
        assert!(w.len() == 1 && w[0].contains("anyone can write"), "{w:?}");
        set_mode(dir.path(), 0o1777);
        assert!(tamper_warnings(&f).is_empty());
        set_mode(dir.path(), 0o700);
    }
}
