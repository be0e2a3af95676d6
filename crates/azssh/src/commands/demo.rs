//! `azssh demo`: the whole workflow against an emulator started in this process, so it needs no
//! Azure account and touches nothing outside this machine. Makes a throwaway key in a temp dir,
//! then runs the bundled runbook `demo` (which narrates each step with timings on stderr) as
//! `azssh run demo` in a child process pointed at the emulator through the same environment
//! variables a user would `export` (`azssh emulator` prints them): the child reads them at
//! start-up, where this process could only change its own environment unsafely while its
//! runtime threads run.

use std::path::Path;
use std::time::Instant;

use crate::cli::{DemoArgs, GlobalArgs};
use crate::emulator::EmulatorConfig;
use crate::emulator::windows_guests::WindowsEmulator;
use crate::error::AppError;
use crate::output;
use crate::ssh::keys::{KeyKind, generate_key};

const DEMO_VMS: usize = 6;

pub async fn demo(global: &GlobalArgs, args: DemoArgs) -> Result<(), AppError> {
    let started = Instant::now();
    if !(args.speed.is_finite() && args.speed > 0.0) {
        return Err(AppError::usage(
            format!("`--speed {}` must be a positive number", args.speed),
            None,
        ));
    }
    let emulator = WindowsEmulator::start(EmulatorConfig {
        vms: DEMO_VMS,
        seed: args.seed,
        speed: args.speed,
        ..EmulatorConfig::default()
    })
    .await
    .map_err(|e| AppError::emulator(&e))?;
    let workdir = tempfile::Builder::new()
        .prefix("azssh-demo-")
        .tempdir()
        .map_err(|e| {
            AppError::usage(
                format!("cannot create a temp dir: {e}"),
                Some("set `TMPDIR` to a writable directory".into()),
            )
        })?;
    let dir = workdir.path();
    let key = dir.join("demo_ed25519");
    generate_key(&key, KeyKind::Ed25519, "azssh-demo").map_err(|e| AppError::failed(&e))?;
    let file = dir.join("hello.txt");
    std::fs::write(&file, "hello from azssh demo\n")
        .map_err(|e| AppError::usage(format!("cannot write the demo file: {e}"), None))?;
    output::status(&format!(
        "azssh demo: a local emulator plays Azure ({}) with {DEMO_VMS} Windows VMs; Azure's waits \
         run {}x faster; throwaway key {}\n",
        emulator.handle.endpoint(),
        args.speed,
        key.display()
    ));

    let status = run_child(global, &emulator, dir, &key, &file).await?;
    if !status.success() {
        return Err(AppError::Exit(status.code().unwrap_or(1)));
    }
    output::status(&format!(
        "demo finished in {:.1} s; every step ran the same code azssh runs against Azure\n",
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// `azssh run demo` with the emulator's environment; its stderr (the transcript) and stdout
/// are ours. Ctrl-C reaches the child too (same process group): we wait for it to stop.
async fn run_child(
    global: &GlobalArgs,
    emulator: &WindowsEmulator,
    dir: &Path,
    key: &Path,
    file: &Path,
) -> Result<std::process::ExitStatus, AppError> {
    let exe = std::env::current_exe()
        .map_err(|e| AppError::usage(format!("cannot find the azssh executable: {e}"), None))?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args(["run", "demo", "--arg"])
        .arg(format!("key={}", key.display()))
        .arg("--arg")
        .arg(format!("file={}", file.display()))
        .arg("--arg")
        // Pinned host keys go to the demo's own file, not to the user's azssh known_hosts.
        .arg(format!("known_hosts={}", dir.join("known_hosts").display()))
        .envs(emulator.env())
        .env_remove("AZURE_CLOUD")
        .stdin(std::process::Stdio::null());
    match global.output {
        // The summary is data: printed only when a format is asked for.
        Some(format) => {
            let name = format!("{format:?}").to_lowercase();
            cmd.args(["--arg", "summary=true", "-o", &name]);
        }
        None => {
            cmd.env_remove("AZSSH_OUTPUT");
        }
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| AppError::usage(format!("cannot start `azssh run demo`: {e}"), None))?;
    let waited = tokio::select! {
        status = child.wait() => status,
        _ = tokio::signal::ctrl_c() => child.wait().await,
    };
    waited.map_err(|e| AppError::usage(format!("`azssh run demo` failed: {e}"), None))
}
