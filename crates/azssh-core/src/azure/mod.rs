//! Azure Resource Manager client: the transport (`client`, `lro`, `budget`), where its settings
//! and tokens come from (`config`, `cloud`, `auth`), ids and errors (`resource_id`, `error`), and
//! one file per resource kind with its types and calls together (`vm`, `network`,
//! `run_command`, `extension`, `graph`, `jit`, `bastion`). Nothing here knows about Rhai.
//!
//! # Use
//! ```ignore
//! let config = azure::resolve(&ConfigFlags::default(), &|k| std::env::var(k).ok())?;
//! let client = ArmClient::new(config)?;                  // clone freely; one per subscription
//! let vm = azure::vm::get_vm(&client, "rg", "web1").await?;
//! let out = azure::run_command::run_powershell(
//!     &client, &vm.id, &run_command::script_lines("hostname"), &Default::default()).await?;
//! let left = client.budget().snapshot();                 // remaining reads/writes, 429s seen
//! ```
//!
//! Every call goes through `ArmClient::send` (retries, token, api-version, budget); LROs through
//! `put_lro` / `post_lro` / `delete_lro`; lists through `list` (`nextLink` paging). Tests can
//! point a client at any local server with `ArmConfig::with_static_token` and
//! `Timeouts { connect: None, request: None }` (see `tests/it/azure_fake.rs`).

pub mod auth;
pub mod bastion;
pub mod budget;
pub mod client;
pub mod cloud;
pub mod config;
pub mod error;
pub mod extension;
pub mod graph;
pub mod inventory;
pub mod jit;
mod lro;
pub mod names;
pub mod network;
mod paging;
pub mod poll_schedule;
pub mod resource_id;
pub mod run_command;
pub mod vm;
pub mod vm_filter;
pub mod vm_suggest;

pub use auth::{AccessToken, FetchToken, TokenProvider, TokenSource};
pub use budget::{BudgetSnapshot, ThrottleBudget};
pub use client::{ArmClient, ArmResponse, Call, Retry};
pub use cloud::Cloud;
pub use config::{
    ApiVersions, ArmConfig, ConfigFlags, Provider, RetryPolicy, StatusHook, Timeouts, resolve,
};
pub use error::{ApiError, AzureError, ErrorDetail};
pub use resource_id::ResourceId;
pub use vm::Vm;
pub use vm_filter::{Detail, VmFilter};
