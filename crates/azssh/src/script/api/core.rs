//! Built-in helpers every script has: `env`, `sleep`, `now`, `to_json`, `parse_json`, and the
//! logging functions `info`, `warn`, `error` (to stderr, so stdout stays data).

use std::sync::Arc;
use std::time::Duration;

use rhai::{Dynamic, Engine, EvalAltResult, FuncRegistration};

use crate::output::{self, Level};
use crate::script::context::ScriptContext;
use crate::script::error::{ScriptError, to_rhai};
use crate::script::value;

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

pub fn register(engine: &mut Engine, ctx: &Arc<ScriptContext>) {
    FuncRegistration::new("env")
        .with_comments(["/// The value of environment variable `name`, or `()` when it is unset.\n///\n/// # Example\n/// ```rhai\n/// let sub = env(\"AZURE_SUBSCRIPTION_ID\") ?? \"none\";\n/// ```"])
        .with_params_info(["name: string", "?"])
        .register_into_engine(engine, |name: &str| -> Dynamic {
            std::env::var(name).map_or(Dynamic::UNIT, Dynamic::from)
        });

    for (params, doc) in [
        (["seconds: int", "()"], true),
        (["seconds: float", "()"], false),
    ] {
        let c = ctx.clone();
        let reg = FuncRegistration::new("sleep").with_params_info(params);
        let reg = if doc {
            reg.with_comments(["/// Waits `seconds` (whole or fractional). Ctrl-C or the run's deadline interrupts it.\n///\n/// # Example\n/// ```rhai\n/// sleep(1.5);\n/// ```"])
        } else {
            reg
        };
        if params[0].ends_with("int") {
            reg.register_into_engine(engine, move |s: i64| sleep(&c, s as f64));
        } else {
            reg.register_into_engine(engine, move |s: f64| sleep(&c, s));
        }
    }

    FuncRegistration::new("now")
        .with_comments(["/// The current UTC time as an RFC 3339 string, e.g. `2026-11-25T10:00:00Z`.\n///\n/// # Example\n/// ```rhai\n/// info(`started at ${now()}`);\n/// ```"])
        .with_params_info(["string"])
        .register_into_engine(engine, now);

    FuncRegistration::new("to_json")
        .with_comments(["/// Serialises any value (maps, arrays, strings, numbers, VMs...) as compact JSON.\n///\n/// # Example\n/// ```rhai\n/// let text = to_json(#{port: 22, open: true}); // {\"open\":true,\"port\":22}\n/// ```"])
        .with_params_info(["value: ?", "string"])
        .register_into_engine(engine, |v: Dynamic| -> RhaiResult<String> {
            let json = value::to_json(&v).map_err(|e| to_rhai(&ScriptError::Json(e)))?;
            Ok(json.to_string())
        });

    FuncRegistration::new("parse_json")
        .with_comments(["/// Parses JSON text into maps, arrays, strings, numbers, booleans and `()`.\n///\n/// # Example\n/// ```rhai\n/// let m = parse_json(`{\"a\": [1, 2]}`);\n/// m.a[1] // 2\n/// ```"])
        .with_params_info(["text: string", "?"])
        .register_into_engine(engine, |text: &str| -> RhaiResult<Dynamic> {
            let parsed: serde_json::Value = serde_json::from_str(text)
                .map_err(|e| to_rhai(&ScriptError::Json(e.to_string())))?;
            Ok(value::from_json(&parsed))
        });

    for (name, level, what) in [
        ("info", Level::Info, "an informational line"),
        ("warn", Level::Warn, "a warning"),
        (
            "error",
            Level::Error,
            "an error line (it does not stop the script: use `throw` for that)",
        ),
    ] {
        FuncRegistration::new(name)
            .with_comments([format!("/// Logs {what} to stderr; stdout stays for data.\n///\n/// # Example\n/// ```rhai\n/// {name}(\"checked 12 VMs\");\n/// ```")])
            .with_params_info(["message: ?", "()"])
            .register_into_engine(engine, move |msg: Dynamic| {
                let text = if msg.is_string() {
                    msg.to_string()
                } else {
                    value::to_json(&msg).map_or_else(|_| msg.to_string(), |j| j.to_string())
                };
                output::log(level, &text);
            });
    }
}

fn sleep(ctx: &ScriptContext, seconds: f64) -> RhaiResult<()> {
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(to_rhai(&ScriptError::bad_argument(
            format!("`sleep` needs a non-negative number of seconds, got {seconds}"),
            None,
        )));
    }
    ctx.bridge
        .block_on(&format!("sleeping {seconds} s"), async move {
            tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
            Ok::<_, ScriptError>(())
        })
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_rfc3339_utc() {
        let n = now();
        assert!(n.ends_with('Z') && n.len() == 20, "{n}");
    }
}
