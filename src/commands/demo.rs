//! `azssh demo`: the whole workflow against an in-process emulator, so it needs no Azure account
//! and touches nothing outside this machine. Starts the emulator with its Windows guests, makes
//! a throwaway key in a temp dir, and runs the bundled runbook `demo`, which narrates each step
//! with timings on stderr.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use rhai::{Dynamic, Map};

use crate::azure::client::ArmClient;
use crate::azure::config::ArmConfig;
use crate::cli::{DemoArgs, GlobalArgs};
use crate::emulator::{Emulator, EmulatorConfig, EmulatorHandle};
use crate::error::AppError;
use crate::output;
use crate::script::bridge::{Bridge, Cancel};
use crate::script::context::ScriptContext;
use crate::script::engine::Limits;
use crate::script::run::Script;
use crate::ssh::keys::{KeyKind, generate_key};

/// Azure's waits (RunCommand ≈ 20 s, VM start ≈ 30 s) divided by this: the transcript shows the
/// steps in their real order at a pace a person watches.
const DEMO_SPEED: f64 = 20.0;
const DEMO_VMS: usize = 6;

pub async fn demo(global: &GlobalArgs, args: DemoArgs) -> Result<(), AppError> {
    let started = Instant::now();
    output::status(
        "azssh demo: a local emulator plays Azure and the VMs' Windows guests; nothing leaves \
         this machine\n",
    );
    let emulator = start_emulator(args.seed).await?;
    let workdir = WorkDir::create()?;
    let key = workdir.0.join("demo_ed25519");
    generate_key(&key, KeyKind::Ed25519, "azssh-demo").map_err(|e| AppError::failed(&e))?;
    let file = workdir.0.join("hello.txt");
    std::fs::write(&file, "hello from azssh demo\n")
        .map_err(|e| AppError::usage(format!("cannot write the demo file: {e}"), None))?;
    output::status(&format!(
        "emulator at {} with {DEMO_VMS} VMs (Azure's waits run {DEMO_SPEED}x faster); throwaway key {}\n",
        emulator.endpoint(),
        key.display()
    ));

    let mut script_args = Map::new();
    script_args.insert("key".into(), key.display().to_string().into());
    script_args.insert("file".into(), file.display().to_string().into());
    let arm = emulator_client(&emulator)?;
    let result = run_demo(global, arm, script_args).await;
    emulator.shutdown();
    let summary = result?;
    output::status(&format!(
        "demo finished in {:.1} s: every step above ran the same code as against Azure\n",
        started.elapsed().as_secs_f64()
    ));
    // The transcript is for people; the summary is data, printed only when a format is asked.
    if global.output.is_some() {
        super::print_result(global, &summary)?;
    }
    Ok(())
}

async fn start_emulator(seed: u64) -> Result<EmulatorHandle, AppError> {
    let config = EmulatorConfig {
        vms: DEMO_VMS,
        seed,
        speed: DEMO_SPEED,
        ..EmulatorConfig::default()
    };
    Emulator::start(config)
        .await
        .map_err(|e| AppError::failed(&e))
}

fn emulator_client(emulator: &EmulatorHandle) -> Result<ArmClient, AppError> {
    let config = ArmConfig::with_static_token(
        emulator.endpoint(),
        emulator.subscription_id(),
        emulator.token().expose(),
    )
    .map_err(|e| AppError::failed(&e))?;
    ArmClient::new(config).map_err(|e| AppError::failed(&e))
}

/// Runs the `demo` runbook on a blocking thread with a context bound to the emulator's client;
/// Ctrl-C cancels it.
async fn run_demo(global: &GlobalArgs, arm: ArmClient, args: Map) -> Result<Dynamic, AppError> {
    let text = crate::script::bundled::runbook("demo").ok_or_else(|| {
        AppError::usage(
            "the bundled runbook `demo` is missing from this build",
            None,
        )
    })?;
    let script = Script {
        name: "runbook:demo".into(),
        text: text.to_string(),
    };
    let cancel = Cancel::new(None);
    let bridge = Bridge::new(tokio::runtime::Handle::current(), cancel.clone());
    let ctx = Arc::new(ScriptContext::with_arm(
        bridge,
        super::settings(global),
        Limits::default(),
        arm,
    ));
    let mut task =
        tokio::task::spawn_blocking(move || crate::script::run::run(&ctx, &script, args, |_| {}));
    let joined = tokio::select! {
        r = &mut task => r,
        _ = tokio::signal::ctrl_c() => {
            cancel.cancel();
            task.await
        }
    };
    match joined {
        Ok(result) => result.map_err(AppError::Failed),
        Err(e) => Err(AppError::usage(
            format!("the demo script thread failed: {e}"),
            Some("this is a bug in azssh; please report it".into()),
        )),
    }
}

/// A private temp directory for the throwaway key, removed when the demo ends.
struct WorkDir(PathBuf);

impl WorkDir {
    fn create() -> Result<WorkDir, AppError> {
        let dir =
            std::env::temp_dir().join(format!("azssh-demo-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&dir).map_err(|e| {
            AppError::usage(
                format!("cannot create `{}`: {e}", dir.display()),
                Some("set `TMPDIR` to a writable directory".into()),
            )
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        }
        Ok(WorkDir(dir))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
