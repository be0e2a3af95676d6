//! Integration tests: one binary that drives the real `azssh` executable.

mod azure;
mod azure_contract;
mod azure_fake;
mod azure_replay;
mod azure_retry;
