//! What every registered function can reach: the async bridge, the run's settings and limits.

use crate::script::bridge::Bridge;
use crate::script::engine::Limits;

/// Connection settings from flags and environment (resolved lazily: a script that never
/// touches Azure needs no subscription).
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub subscription: Option<String>,
    pub cloud: Option<String>,
    pub arm_endpoint: Option<String>,
}

#[derive(Debug)]
pub struct ScriptContext {
    pub bridge: Bridge,
    pub settings: Settings,
    pub limits: Limits,
}

impl ScriptContext {
    pub fn new(bridge: Bridge, settings: Settings, limits: Limits) -> Self {
        ScriptContext {
            bridge,
            settings,
            limits,
        }
    }
}
