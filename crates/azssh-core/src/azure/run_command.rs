//! Action RunCommand (`POST .../runCommand`, `RunPowerShellScript`, ARM.md §4.1): the request
//! body, the exit-code trailer, and parsing of the result into stdout, stderr, exit code and a
//! `truncated` flag.
//!
//! # The exit-code trailer
//! The action API reports no exit code: its result is two statuses, `ComponentStatus/StdOut/...`
//! and `ComponentStatus/StdErr/...`, whose messages hold the last 4096 bytes of each stream. So
//! we append two lines to every script that print a marker unique to this call followed by the
//! exit status, and the parser strips that line from stdout again:
//!
//! ```powershell
//! $azsshOk = $?; $azsshCode = $LASTEXITCODE
//! if ($azsshOk) { $azsshCode = 0 } elseif (-not $azsshCode) { $azsshCode = 1 }; Write-Output ('AZSSH-EXIT-<uuid>:' + $azsshCode)
//! ```
//!
//! The status is that of the script's last statement: 0 when it succeeded, else the native exit
//! code when a program set one, else 1. Because Azure keeps the *tail* of the output, the
//! trailer survives truncation. When it is missing (the script called `exit`, a terminating error
//! stopped it, or the output came from elsewhere) `exit_code` is `None`: we never guess.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

use super::client::{ArmClient, Retry};
use super::config::Provider;
use super::error::{AzureError, Result};
use super::resource_id::ResourceId;
use super::vm::InstanceViewStatus;

/// "Output is limited to the last 4,096 bytes" (run-command.md).
pub const OUTPUT_TAIL_BYTES: usize = 4096;

/// `RunCommandInput` (spec). Parameter values are strings only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunCommandInput {
    pub command_id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub script: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<RunCommandParameter>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCommandParameter {
    pub name: String,
    pub value: String,
}

/// `RunCommandResult`: `{"value": [InstanceViewStatus...]}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunCommandResult {
    #[serde(default)]
    pub value: Vec<InstanceViewStatus>,
}

#[derive(Debug, Clone)]
pub struct RunCommandOptions {
    /// Passed as `-name value` to the script.
    pub parameters: Vec<(String, String)>,
    /// Append the exit-code trailer (see the module doc). On by default.
    pub report_exit_code: bool,
}

impl Default for RunCommandOptions {
    fn default() -> Self {
        RunCommandOptions {
            parameters: Vec::new(),
            report_exit_code: true,
        }
    }
}

/// What `run_powershell` returns to scripts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunCommandOutput {
    /// `None` when the trailer was missing: never a guess.
    pub exit_code: Option<i64>,
    pub stdout: String,
    pub stderr: String,
    /// A stream reached Azure's 4096-byte tail, so its beginning may be lost.
    pub truncated: bool,
    /// From our POST to the result, as seen by this client.
    pub duration_ms: u64,
}

/// The marker line appended to a script, unique per call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitTrailer {
    marker: String,
}

impl Default for ExitTrailer {
    fn default() -> Self {
        Self::new()
    }
}

impl ExitTrailer {
    pub fn new() -> Self {
        ExitTrailer {
            marker: format!("AZSSH-EXIT-{}", uuid::Uuid::new_v4().simple()),
        }
    }

    pub fn marker(&self) -> &str {
        &self.marker
    }

    /// The two PowerShell lines to append (the first must directly follow the user's script so
    /// `$?` still describes its last statement).
    pub fn lines(&self) -> [String; 2] {
        [
            "$azsshOk = $?; $azsshCode = $LASTEXITCODE".to_string(),
            format!(
                "if ($azsshOk) {{ $azsshCode = 0 }} elseif (-not $azsshCode) {{ $azsshCode = 1 }}; Write-Output ('{}:' + $azsshCode)",
                self.marker
            ),
        ]
    }

    /// Removes the trailer line from stdout and returns the exit code it carried. Only a marker
    /// at the start of a line, followed by an integer and nothing but whitespace, counts.
    pub fn strip(&self, stdout: &str) -> (String, Option<i64>) {
        let needle = format!("{}:", self.marker);
        let Some(at) = stdout.rfind(&needle) else {
            return (stdout.to_string(), None);
        };
        let at_line_start = at == 0 || stdout[..at].ends_with('\n');
        let rest = &stdout[at + needle.len()..];
        let (value, after) = rest.split_once('\n').unwrap_or((rest, ""));
        match value.trim().parse::<i64>() {
            Ok(code) if at_line_start && after.trim().is_empty() => {
                (stdout[..at].to_string(), Some(code))
            }
            _ => (stdout.to_string(), None),
        }
    }
}

/// Splits a script into the `script` array's lines.
pub fn script_lines(text: &str) -> Vec<String> {
    text.lines().map(str::to_string).collect()
}

/// The request body, with the trailer appended when asked.
pub fn build_input(
    script_lines: &[String],
    opts: &RunCommandOptions,
    trailer: Option<&ExitTrailer>,
) -> RunCommandInput {
    let mut script: Vec<String> = script_lines.to_vec();
    if let Some(t) = trailer {
        script.extend(t.lines());
    }
    RunCommandInput {
        command_id: "RunPowerShellScript".into(),
        script,
        parameters: opts
            .parameters
            .iter()
            .map(|(name, value)| RunCommandParameter {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
    }
}

/// Separates stdout and stderr: Windows answers two statuses (`/StdOut/`, `/StdErr/`); the Linux
/// agent one `ProvisioningState/succeeded` whose message holds `[stdout]` and `[stderr]` sections
/// (`recordings/excerpts/test_vm_run_command_e2e.yaml`).
pub fn split_streams(result: &RunCommandResult) -> (String, String) {
    let find = |part: &str| {
        result
            .value
            .iter()
            .find(|s| s.code.to_ascii_lowercase().contains(part))
            .map(|s| s.message.clone().unwrap_or_default())
    };
    if let (Some(out), err) = (find("/stdout/"), find("/stderr/")) {
        return (out, err.unwrap_or_default());
    }
    let message: String = result
        .value
        .iter()
        .filter_map(|s| s.message.clone())
        .collect::<Vec<_>>()
        .join("\n");
    match message.split_once("[stdout]\n") {
        Some((_, rest)) => match rest.rsplit_once("\n[stderr]\n") {
            Some((out, err)) => (out.to_string(), err.to_string()),
            None => (rest.to_string(), String::new()),
        },
        None => (message, String::new()),
    }
}

/// Turns a result into what scripts see.
pub fn parse_output(
    result: &RunCommandResult,
    trailer: Option<&ExitTrailer>,
    duration_ms: u64,
) -> RunCommandOutput {
    let (raw_out, stderr) = split_streams(result);
    let truncated = raw_out.len() >= OUTPUT_TAIL_BYTES || stderr.len() >= OUTPUT_TAIL_BYTES;
    let (stdout, exit_code) = match trailer {
        Some(t) => t.strip(&raw_out),
        None => (raw_out, None),
    };
    RunCommandOutput {
        exit_code,
        stdout,
        stderr,
        truncated,
        duration_ms,
    }
}

/// One RunCommand at a time per VM, process-wide. Azure runs a single RunCommand per VM and
/// answers a second with 409 "Run command extension execution is in progress"; queueing here
/// (rather than retrying the 409) spends no write budget on requests bound to fail. Kept with
/// RunCommand itself so fleet runs, `parallel()` closures and REPL sessions all queue. Keyed
/// by endpoint too (as `nsg_writes` and `jit_policies` are): two clouds, or two emulators in
/// one process, may hold the very same VM ids.
async fn vm_turn(endpoint: &str, id: &ResourceId) -> tokio::sync::OwnedMutexGuard<()> {
    use std::collections::HashMap;
    use std::sync::{Arc, LazyLock, Mutex, Weak};
    type Locks = Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>;
    static LOCKS: LazyLock<Locks> = LazyLock::new(Locks::default);
    let lock = {
        let mut locks = LOCKS.lock().unwrap_or_else(|e| e.into_inner());
        locks.retain(|_, w| w.strong_count() > 0);
        let key = format!("{endpoint}|{}", id.to_string().to_ascii_lowercase());
        match locks.get(&key).and_then(Weak::upgrade) {
            Some(l) => l,
            None => {
                let l = Arc::new(tokio::sync::Mutex::new(()));
                locks.insert(key, Arc::downgrade(&l));
                l
            }
        }
    };
    lock.lock_owned().await
}

/// Runs a PowerShell script on a Windows VM through RunCommand and waits for its output.
/// Waits for this process's earlier RunCommand on the same VM first (`vm_turn`); a 409
/// "execution is in progress" (someone else's script still runs) is retried with back-off.
pub async fn run_powershell(
    client: &ArmClient,
    vm_id: &str,
    script_lines: &[String],
    opts: &RunCommandOptions,
) -> Result<RunCommandOutput> {
    let id = ResourceId::parse_typed(vm_id, "Microsoft.Compute/virtualMachines")?;
    let trailer = opts.report_exit_code.then(ExitTrailer::new);
    let input = build_input(script_lines, opts, trailer.as_ref());
    let body = serde_json::to_value(&input).map_err(|e| AzureError::InvalidInput(e.to_string()))?;
    let _turn = vm_turn(client.endpoint().as_str(), &id).await;
    let started = Instant::now();
    let what = format!("RunCommand on VM `{}`", id.name());
    let value = client
        .post_lro(
            &format!("{id}/runCommand"),
            Provider::Compute,
            Some(&body),
            Retry::Once { busy: true },
            &what,
        )
        .await?;
    let result = run_command_result(&value).ok_or_else(|| AzureError::Decode {
        method: "POST".into(),
        path: format!("{id}/runCommand"),
        reason: "the operation finished without a `value` list of output statuses".into(),
    })?;
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    Ok(parse_output(&result, trailer.as_ref(), duration_ms))
}

/// The result from the `Location` body (`{"value": [...]}`) or an operation's `properties.output`.
fn run_command_result(value: &Value) -> Option<RunCommandResult> {
    let candidate = if value.get("value").is_some() {
        value
    } else {
        value.pointer("/properties/output")?
    };
    serde_json::from_value(candidate.clone()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(out: &str, err: &str) -> RunCommandResult {
        RunCommandResult {
            value: vec![
                InstanceViewStatus {
                    code: "ComponentStatus/StdOut/succeeded".into(),
                    message: Some(out.into()),
                    ..Default::default()
                },
                InstanceViewStatus {
                    code: "ComponentStatus/StdErr/succeeded".into(),
                    message: Some(err.into()),
                    ..Default::default()
                },
            ],
        }
    }

    #[tokio::test(start_paused = true)]
    async fn second_run_command_on_a_vm_waits_for_the_first_and_other_endpoints_do_not() {
        let a = ResourceId::parse(
            "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/vm1",
        )
        .unwrap();
        let same = ResourceId::parse(
            "/subscriptions/S/resourceGroups/G/providers/Microsoft.Compute/virtualMachines/VM1",
        )
        .unwrap();
        let other = ResourceId::parse(
            "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/vm2",
        )
        .unwrap();
        const ARM: &str = "https://management.azure.com";
        let first = vm_turn(ARM, &a).await;
        let queued_a = a.clone();
        let queued = tokio::spawn(async move {
            vm_turn(ARM, &same).await;
        });
        let _free = vm_turn(ARM, &other).await;
        // The same id at another endpoint (another cloud, another emulator) is another VM.
        let _elsewhere = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            vm_turn("http://127.0.0.1:1", &queued_a),
        )
        .await
        .expect("another endpoint's VM must not wait");
        tokio::task::yield_now().await;
        assert!(!queued.is_finished(), "same VM (any case) must wait");
        drop(first);
        queued.await.unwrap();
    }

    #[test]
    fn trailer_is_stripped_and_exit_code_read() {
        let t = ExitTrailer::new();
        let out = format!("hello\n{}:3\n", t.marker());
        let parsed = parse_output(&result(&out, "oops"), Some(&t), 5);
        assert_eq!(parsed.exit_code, Some(3));
        assert_eq!(parsed.stdout, "hello\n");
        assert_eq!(parsed.stderr, "oops");
        assert!(!parsed.truncated);
    }

    #[test]
    fn missing_trailer_means_no_exit_code() {
        let t = ExitTrailer::new();
        let parsed = parse_output(&result("exited early\n", ""), Some(&t), 0);
        assert_eq!(parsed.exit_code, None);
        assert_eq!(parsed.stdout, "exited early\n");
    }

    #[test]
    fn marker_inside_a_line_is_not_a_trailer() {
        let t = ExitTrailer::new();
        let out = format!("echo {}:0 more\n", t.marker());
        assert_eq!(t.strip(&out).1, None);
    }

    #[test]
    fn output_at_the_tail_limit_is_truncated_but_keeps_the_trailer() {
        let t = ExitTrailer::new();
        let trailer = format!("{}:0\n", t.marker());
        let out = format!(
            "{}{trailer}",
            "x\n".repeat((OUTPUT_TAIL_BYTES - trailer.len()) / 2)
        );
        let parsed = parse_output(&result(&out, ""), Some(&t), 0);
        assert!(parsed.truncated);
        assert_eq!(parsed.exit_code, Some(0));
    }

    #[test]
    fn linux_style_single_message_is_split() {
        let r = RunCommandResult {
            value: vec![InstanceViewStatus {
                code: "ProvisioningState/succeeded".into(),
                message: Some(
                    "Enable succeeded: \n[stdout]\nout line\n\n[stderr]\nerr line\n".into(),
                ),
                ..Default::default()
            }],
        };
        assert_eq!(
            split_streams(&r),
            ("out line\n".to_string(), "err line\n".to_string())
        );
    }

    #[test]
    fn request_body_matches_the_documented_shape() {
        let opts = RunCommandOptions {
            parameters: vec![("arg1".into(), "foo".into())],
            report_exit_code: false,
        };
        let body =
            serde_json::to_value(build_input(&script_lines("Get-Service sshd"), &opts, None)).ok();
        assert_eq!(
            body,
            Some(
                serde_json::json!({"commandId": "RunPowerShellScript", "script": ["Get-Service sshd"],
                "parameters": [{"name": "arg1", "value": "foo"}]})
            )
        );
    }

    #[test]
    fn trailer_lines_follow_the_script() {
        let t = ExitTrailer::new();
        let input = build_input(
            &script_lines("hostname"),
            &RunCommandOptions::default(),
            Some(&t),
        );
        assert_eq!(input.script.len(), 3);
        assert!(input.script[1].starts_with("$azsshOk = $?"));
        assert!(input.script[2].contains(t.marker()));
    }
}
