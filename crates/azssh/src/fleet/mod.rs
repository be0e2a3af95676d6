//! Fleet runs: one Rhai script over many VMs, as fast as ARM's throttling allows, resumable.
//!
//! # Layout
//! - `inventory` — the run's one Resource Graph read of every VM (power, addresses, NSGs).
//! - `targets` — choosing VMs (resource groups, tags, Resource Graph, a targets file, `--all`);
//!   `shard` — the deterministic `--shard I/N` partition.
//! - `scheduler` — bounded concurrency on blocking threads, per-VM deadlines and retries,
//!   max-fail and Ctrl-C; `pacing` — the gate that waits for ARM budget; `worker` — the script
//!   threads, one Rhai engine each for the whole run, with each VM's state swapped in.
//! - `journal` — the append-and-fsync JSON-lines record that `--resume` reads.
//! - `progress` — the stderr bar or plain lines; `report` — the summary and structured output.
//!
//! The per-VM RunCommand lock lives with RunCommand itself (`azure::run_command`), so scripts
//! that call `run_powershell` on one VM from several places (or through `parallel`) queue too.

pub mod error;
pub mod inventory;
pub mod journal;
pub mod pacing;
pub mod progress;
pub mod report;
pub mod scheduler;
pub mod shard;
pub mod targets;
pub mod worker;

pub use error::FleetError;
