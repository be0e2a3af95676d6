//! Errors starting or configuring the emulator (what goes wrong on the wire is `reply::ArmError`).

#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("cannot listen on `{addr}`: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("invalid `--faults` value `{spec}`: {reason}")]
    InvalidFaults { spec: String, reason: String },
    #[error("invalid emulator setting: {0}")]
    InvalidConfig(String),
}

/// The same `kind`/`hint` shape as azssh's errors, without depending on azssh: the product
/// wraps it (the judge never imports the code it judges).
impl EmulatorError {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Bind { .. } => "emulator.bind",
            Self::InvalidFaults { .. } => "emulator.faults",
            Self::InvalidConfig(_) => "emulator.config",
        }
    }
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Bind { .. } => Some("pick another `--port`, or `--port 0` for any free port".into()),
            Self::InvalidFaults { .. } => Some(
                "write it as `5xx=0.05,reset=0.02,429=0.02,lro_fail=0.01,slow=0.05` (probabilities 0..1)".into(),
            ),
            Self::InvalidConfig(_) => None,
        }
    }
}
