//! Seeded fault injection: `--faults "5xx=0.05,reset=0.02,429=0.02,lro_fail=0.01,slow=0.05"`,
//! plus `ws_reset=P`, the probability that a Bastion WebSocket is cut mid-stream.
//! One draw per request from a generator seeded with the world's seed, so the same seed and the
//! same request sequence produce the same faults.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::error::EmulatorError;

/// Probabilities (0..=1) of each fault per request (`lro_fail`: per long-running operation).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FaultSpec {
    pub server_error: f64,
    pub reset: f64,
    pub throttle: f64,
    pub lro_fail: f64,
    pub slow: f64,
    /// Per bastion WebSocket: cut it (TCP RST) after a seeded number of bytes.
    pub ws_reset: f64,
}

impl std::str::FromStr for FaultSpec {
    type Err = EmulatorError;
    fn from_str(spec: &str) -> Result<FaultSpec, EmulatorError> {
        let mut f = FaultSpec::default();
        let bad = |reason: String| EmulatorError::InvalidFaults {
            spec: spec.to_string(),
            reason,
        };
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| bad(format!("`{part}` is not `name=probability`")))?;
            let p: f64 = value
                .trim()
                .parse()
                .map_err(|_| bad(format!("`{value}` is not a number")))?;
            if !(0.0..=1.0).contains(&p) {
                return Err(bad(format!("`{key}` must be between 0 and 1")));
            }
            match key.trim() {
                "5xx" => f.server_error = p,
                "reset" => f.reset = p,
                "429" => f.throttle = p,
                "lro_fail" => f.lro_fail = p,
                "slow" => f.slow = p,
                "ws_reset" => f.ws_reset = p,
                other => return Err(bad(format!("unknown fault `{other}`"))),
            }
        }
        if f.server_error + f.reset + f.throttle + f.slow > 1.0 {
            return Err(bad("the request faults add up to more than 1".into()));
        }
        Ok(f)
    }
}

/// What happens to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    None,
    /// 500, 502 or 503 with an ARM error body.
    ServerError(u16),
    /// The connection is dropped without an answer.
    Reset,
    /// 429 with `Retry-After`, as if the bucket were empty.
    Throttle,
    /// The answer is delayed.
    Slow,
}

pub struct FaultInjector {
    spec: FaultSpec,
    rng: StdRng,
}

impl FaultInjector {
    pub fn new(spec: FaultSpec, seed: u64) -> FaultInjector {
        // A different stream from the world's so adding VMs does not shift the faults.
        FaultInjector {
            spec,
            rng: StdRng::seed_from_u64(seed ^ 0xfa17_fa17),
        }
    }

    pub fn next_request(&mut self) -> Fault {
        let s = self.spec;
        if s.server_error + s.reset + s.throttle + s.slow == 0.0 {
            return Fault::None;
        }
        let x: f64 = self.rng.random();
        let code = [500u16, 502, 503][self.rng.random_range(0..3)];
        let mut edge = s.server_error;
        if x < edge {
            return Fault::ServerError(code);
        }
        edge += s.reset;
        if x < edge {
            return Fault::Reset;
        }
        edge += s.throttle;
        if x < edge {
            return Fault::Throttle;
        }
        edge += s.slow;
        if x < edge { Fault::Slow } else { Fault::None }
    }

    pub fn lro_fails(&mut self) -> bool {
        self.spec.lro_fail > 0.0 && self.rng.random_bool(self.spec.lro_fail)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_spec() {
        let f: FaultSpec = "5xx=0.05,reset=0.02,429=0.02,lro_fail=0.01,slow=0.05"
            .parse()
            .unwrap();
        assert_eq!(f.server_error, 0.05);
        assert_eq!(f.lro_fail, 0.01);
        assert!("5xx=2".parse::<FaultSpec>().is_err());
        assert!("boom=0.1".parse::<FaultSpec>().is_err());
        assert_eq!("".parse::<FaultSpec>().unwrap(), FaultSpec::default());
        let ws: FaultSpec = "ws_reset=0.25".parse().unwrap();
        assert_eq!(ws.ws_reset, 0.25);
        assert_eq!(ws.server_error, 0.0);
    }

    #[test]
    fn same_seed_same_faults() {
        let spec: FaultSpec = "5xx=0.2,reset=0.1,429=0.1,slow=0.1".parse().unwrap();
        let run = |seed| {
            let mut f = FaultInjector::new(spec, seed);
            (0..200).map(|_| f.next_request()).collect::<Vec<_>>()
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
        assert!(run(5).contains(&Fault::Reset));
    }
}
