//! `azssh emulator`: serves a simulated subscription of Windows VMs on loopback and prints the
//! `export` lines (for `eval`) that point azssh — or any ARM client — at it, until Ctrl-C.

use crate::cli::EmulatorArgs;
use crate::emulator::windows_guests::WindowsEmulator;
use crate::emulator::{EmulatorConfig, EmulatorError, FaultSpec};
use crate::error::AppError;
use crate::output;

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
    Ok(EmulatorConfig {
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
    let emulator = WindowsEmulator::start(config)
        .await
        .map_err(|e| AppError::usage(e.to_string(), e.hint()))?;
    for line in emulator.export_lines() {
        output::data_line(&line);
    }
    output::log(output::Level::Info, "serving until Ctrl-C");
    let _ = tokio::signal::ctrl_c().await;
    output::log(output::Level::Info, "emulator stopped");
    Ok(())
}
