//! What every registered function can reach: the async bridge, the run's settings and limits,
//! and the ARM client, built on first use (a script that never touches Azure needs no
//! subscription or credential).

use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use rhai::EvalAltResult;

use crate::azure::client::ArmClient;
use crate::azure::config::{self, ConfigFlags};
use crate::script::bridge::Bridge;
use crate::script::engine::Limits;
use crate::script::error::to_rhai;

/// Connection settings from flags and environment.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub subscription: Option<String>,
    pub cloud: Option<String>,
    pub arm_endpoint: Option<String>,
}

pub struct ScriptContext {
    pub bridge: Bridge,
    pub settings: Settings,
    pub limits: Limits,
    arm: OnceLock<ArmClient>,
    /// What an evaluation leaves behind on this engine (open tunnels), released by `release`.
    releases: Mutex<Vec<Release>>,
}

/// Ends what one evaluation left running (see `ScriptContext::on_release`).
type Release = Box<dyn Fn() + Send + Sync>;

impl std::fmt::Debug for ScriptContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptContext")
            .field("settings", &self.settings)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl ScriptContext {
    pub fn new(bridge: Bridge, settings: Settings, limits: Limits) -> Self {
        ScriptContext {
            bridge,
            settings,
            limits,
            arm: OnceLock::new(),
            releases: Mutex::new(Vec::new()),
        }
    }

    /// A context sharing an existing client (fleet runs share one client, and so one budget).
    pub fn with_arm(bridge: Bridge, settings: Settings, limits: Limits, arm: ArmClient) -> Self {
        let ctx = ScriptContext::new(bridge, settings, limits);
        let _ = ctx.arm.set(arm);
        ctx
    }

    /// Registers what `release` must end: an API namespace that keeps state across calls on
    /// one engine (the tunnel registry) registers its clean-up here, once, when it is registered.
    pub fn on_release(&self, release: impl Fn() + Send + Sync + 'static) {
        self.releases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Box::new(release));
    }

    /// Ends what the last evaluation left running and unties the engine from its `Cancel`
    /// (`Cancel::detach`), so the next evaluation on this engine (the next VM of a fleet
    /// worker) starts as on a new engine. The REPL never calls it: its tunnels outlive a line.
    pub fn release(&self) {
        for release in self
            .releases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            release();
        }
        self.bridge.cancel().detach();
    }

    /// The ARM client, resolved from flags, environment and the `az` profile on first use.
    pub fn arm(&self) -> Result<ArmClient, Box<EvalAltResult>> {
        if let Some(client) = self.arm.get() {
            return Ok(client.clone());
        }
        let client = arm_client(&self.settings).map_err(|e| to_rhai(&e))?;
        Ok(self.arm.get_or_init(|| client).clone())
    }
}

/// Builds a client from settings and the process environment.
pub fn arm_client(settings: &Settings) -> Result<ArmClient, crate::azure::error::AzureError> {
    let flags = ConfigFlags {
        subscription: settings.subscription.clone(),
        cloud: settings.cloud.clone(),
        arm_endpoint: settings.arm_endpoint.clone(),
    };
    let cfg = config::resolve(&flags, &|k| std::env::var(k).ok())?;
    ArmClient::new(cfg)
}

/// Shared handle the API closures capture.
pub type Ctx = Arc<ScriptContext>;

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::script::bridge::Cancel;

    /// `release` (the end of one VM on a fleet worker's engine) runs every registered clean-up
    /// and unties the engine's `Cancel` from the VM it followed.
    #[test]
    fn release_runs_every_clean_up_and_detaches_the_vms_cancel() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let ctx = ScriptContext::new(
            Bridge::new(rt.handle().clone(), Cancel::new(None)),
            Settings::default(),
            Limits::default(),
        );
        let runs = Arc::new(AtomicUsize::new(0));
        for _ in 0..2 {
            let r = runs.clone();
            ctx.on_release(move || {
                r.fetch_add(1, Ordering::SeqCst);
            });
        }
        let vm = Cancel::new(None);
        ctx.bridge.cancel().follow(&vm);
        vm.cancel();
        assert!(ctx.bridge.cancel().reason().is_some());
        ctx.release();
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert!(ctx.bridge.cancel().reason().is_none());
    }
}
