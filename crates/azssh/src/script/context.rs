//! What every registered function can reach: the async bridge, the run's settings and limits,
//! and the ARM client, built on first use (a script that never touches Azure needs no
//! subscription or credential).

use std::sync::{Arc, OnceLock};

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
}

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
        }
    }

    /// A context sharing an existing client (fleet runs share one client, and so one budget).
    pub fn with_arm(bridge: Bridge, settings: Settings, limits: Limits, arm: ArmClient) -> Self {
        let ctx = ScriptContext::new(bridge, settings, limits);
        let _ = ctx.arm.set(arm);
        ctx
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
