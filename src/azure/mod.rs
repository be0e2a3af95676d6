//! Azure Resource Manager client: the transport (`client`, `lro`, `budget`), where its settings
//! and tokens come from (`config`, `cloud`, `auth`), ids and errors (`resource_id`, `error`), and
//! one file per resource kind with its types and calls together (`vm`, `network`,
//! `run_command`, `extension`, `graph`, `jit`). Nothing here knows about Rhai.

pub mod auth;
pub mod budget;
pub mod client;
pub mod cloud;
pub mod config;
pub mod error;
pub mod extension;
pub mod graph;
pub mod jit;
mod lro;
pub mod network;
mod paging;
pub mod resource_id;
pub mod run_command;
pub mod vm;
pub mod vm_filter;

pub use auth::{AccessToken, FetchToken, TokenProvider, TokenSource};
pub use budget::{BudgetSnapshot, ThrottleBudget};
pub use client::{ArmClient, ArmResponse, Call, Retry};
pub use cloud::Cloud;
pub use config::{
    ApiVersions, ArmConfig, ConfigFlags, Provider, RetryPolicy, StatusHook, Timeouts, resolve,
};
pub use error::{AzureError, ErrorDetail};
pub use resource_id::ResourceId;
