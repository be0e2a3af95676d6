//! `azssh emulator`: serves a simulated subscription of Windows VMs on loopback and prints the
//! `export` lines (for `eval`) that point azssh — or any ARM client — at it, until Ctrl-C; or,
//! with `--detach`, in the background once it serves.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use azssh_core::error::kind;

use crate::cli::EmulatorArgs;
use crate::emulator::windows_guests::WindowsEmulator;
use crate::emulator::{EmulatorConfig, EmulatorError, FaultSpec};
use crate::error::AppError;
use crate::output;
use crate::script::error::Diagnostic;

/// The emulator's config from the command line; bad values are usage errors.
pub fn config(args: &EmulatorArgs) -> Result<EmulatorConfig, AppError> {
    let faults: FaultSpec = args
        .faults
        .parse()
        .map_err(|e: EmulatorError| AppError::usage(e.to_string(), e.hint()))?;
    if !(args.speed.is_finite() && args.speed > 0.0) {
        return Err(AppError::usage(
            format!("`--speed {}` must be a positive number", args.speed),
            Some("e.g. `--speed 20` makes a 20 s RunCommand take 1 s".into()),
        ));
    }
    let world = args.world.parse().map_err(|e: String| {
        AppError::usage(e, Some("use `--world realistic` or `--world tidy`".into()))
    })?;
    Ok(EmulatorConfig {
        world,
        vms: args.vms,
        port: args.port,
        seed: args.seed,
        faults,
        speed: args.speed,
        throttling: !args.no_throttling,
        // The realistic world: private-only VMs behind Azure Bastion (and bastions that refuse).
        bastions: true,
        ..EmulatorConfig::default()
    })
}

pub async fn serve(args: EmulatorArgs) -> Result<(), AppError> {
    let config = config(&args)?;
    if args.detach {
        return detach(&args).await;
    }
    let emulator = WindowsEmulator::start(config)
        .await
        .map_err(|e| AppError::usage(e.to_string(), e.hint()))?;
    let mut lines = emulator.export_lines();
    lines.push(format!("export AZSSH_EMULATOR_PID={}", std::process::id()));
    if let Some(path) = &args.env_file {
        write_env_file(path, &lines)?;
    }
    for line in &lines {
        output::data_line(line);
    }
    output::log(output::Level::Info, "serving until Ctrl-C");
    stopped().await;
    if let Some(path) = &args.env_file {
        // The file describes a running emulator; a stale one would point at a dead port.
        let _ = std::fs::remove_file(path);
    }
    output::log(output::Level::Info, "emulator stopped");
    Ok(())
}

/// Ctrl-C, or `kill` (SIGTERM) for a detached emulator.
async fn stopped() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Writes the `export` lines to `path` (it holds the emulator's token: owner-only), through a
/// temporary file renamed into place so a reader never sees half of it.
fn write_env_file(path: &Path, lines: &[String]) -> Result<(), AppError> {
    let failed = |e: std::io::Error| {
        AppError::usage(
            format!(
                "cannot write `--env-file {}`: {}",
                path.display(),
                e.to_string().to_lowercase()
            ),
            Some("give a path in a directory you can write".into()),
        )
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut file = tempfile::NamedTempFile::new_in(&dir).map_err(failed)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(failed)?;
    }
    let mut text = lines.join("\n");
    text.push('\n');
    file.write_all(text.as_bytes()).map_err(failed)?;
    file.persist(path).map_err(|e| failed(e.error))?;
    Ok(())
}

/// How long a detached emulator may take to start serving (5000 VMs start in ≈ 0.1 s).
const DETACH_WAIT: Duration = Duration::from_secs(30);

/// Starts this same command again in the background (its own process group, so the shell's
/// Ctrl-C does not reach it), waits until it serves, prints its `export` lines and returns.
async fn detach(args: &EmulatorArgs) -> Result<(), AppError> {
    let problem = |what: String| {
        AppError::Failed(Box::new(Diagnostic::plain(
            kind::io::FILE,
            what,
            Some("run `azssh emulator` without `--detach` to see why it stops".into()),
        )))
    };
    let scratch =
        tempfile::tempdir().map_err(|e| problem(format!("cannot make a temp dir: {e}")))?;
    let env_file = match &args.env_file {
        Some(p) => p.clone(),
        None => scratch.path().join("emulator.env"),
    };
    // A file left by an emulator that has since stopped must not be taken for the new one's.
    let _ = std::fs::remove_file(&env_file);
    let exe = std::env::current_exe()
        .map_err(|e| problem(format!("cannot find the azssh executable: {e}")))?;
    let mut command = std::process::Command::new(exe);
    command
        .arg("emulator")
        .args(["--vms", &args.vms.to_string()])
        .args(["--port", &args.port.to_string()])
        .args(["--seed", &args.seed.to_string()])
        .args(["--faults", &args.faults])
        .args(["--speed", &args.speed.to_string()])
        .arg("--env-file")
        .arg(&env_file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if args.no_throttling {
        command.arg("--no-throttling");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        command.process_group(0);
    }
    let mut child = command
        .spawn()
        .map_err(|e| problem(format!("cannot start the emulator: {e}")))?;
    let started = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(&env_file)
            && text.contains("AZSSH_EMULATOR_PID=")
        {
            output::data(&text);
            output::log(
                output::Level::Info,
                &format!(
                    "emulator serving in the background (pid {}); stop it with `kill {}`",
                    child.id(),
                    child.id()
                ),
            );
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(problem(format!("the emulator stopped at once ({status})")));
        }
        if started.elapsed() > DETACH_WAIT {
            let _ = child.kill();
            return Err(problem(format!(
                "the emulator did not start serving within {}s",
                DETACH_WAIT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
