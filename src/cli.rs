//! Command-line definitions (clap) and nothing else: the `///` comments are the help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::output::OutputFormat;

/// Reach Azure Windows VMs over SSH: enable OpenSSH, open the NSG port, install keys, pin host
/// keys, connect, tunnel and copy files — from Rhai scripts, a REPL, or across a fleet.
#[derive(Debug, Parser)]
#[command(
    name = "azssh",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Azure subscription id (default: the `az` CLI's default subscription)
    #[arg(long, global = true, env = "AZURE_SUBSCRIPTION_ID")]
    pub subscription: Option<String>,
    /// Azure cloud: AzureCloud, AzureUSGovernment or AzureChinaCloud
    #[arg(long, global = true, env = "AZURE_CLOUD")]
    pub cloud: Option<String>,
    /// Resource Manager endpoint (default: the cloud's, e.g. https://management.azure.com)
    #[arg(long, global = true, env = "AZSSH_ARM_ENDPOINT")]
    pub arm_endpoint: Option<String>,
    /// Output format (default: table on a terminal, json otherwise)
    #[arg(short = 'o', long, global = true, env = "AZSSH_OUTPUT", value_enum)]
    pub output: Option<OutputFormat>,
    /// More logging on stderr (-v debug, -vv trace); `AZSSH_LOG` takes a tracing filter
    #[arg(short = 'v', long = "verbose", global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a Rhai script file, or a bundled runbook by name
    Run(RunArgs),
    /// List the bundled runbooks
    Runbooks,
    /// Print the function reference (markdown), or write editor definition files
    Docs(DocsArgs),
    /// Enable the OpenSSH server on a Windows VM (runbook `enable-ssh`)
    #[command(name = "enable-ssh")]
    EnableSsh(EnableSshArgs),
    /// Allow inbound SSH from a source in the VM's NSG (runbook `open-ssh-port`)
    #[command(name = "open-port")]
    OpenPort(OpenPortArgs),
    /// Install a public key for SSH logins on a Windows VM (runbook `copy-key`)
    #[command(name = "copy-key")]
    CopyKey(CopyKeyArgs),
    /// Do the whole workflow: start, enable, key, port, pin host keys, log in (runbook `setup-ssh`)
    Setup(SetupArgs),
    /// Request just-in-time access to the VM's SSH port and wait for it (runbook `jit-connect`)
    Jit(JitArgs),
}

/// The VM a workflow verb works on, named as `az` does.
#[derive(Debug, Args, Clone)]
pub struct VmArgs {
    /// Resource group of the VM
    #[arg(short = 'g', long = "resource-group", value_name = "RG")]
    pub resource_group: String,
    /// Name of the VM
    #[arg(
        short = 'n',
        long = "name",
        visible_alias = "vm-name",
        value_name = "VM"
    )]
    pub name: String,
}

#[derive(Debug, Args)]
pub struct EnableSshArgs {
    #[command(flatten)]
    pub vm: VmArgs,
    /// How to install OpenSSH: auto (capability on 2019+, extension before), capability or extension
    #[arg(long, default_value = "auto", value_parser = ["auto", "capability", "extension"])]
    pub method: String,
    /// Start the VM if it is stopped (default: refuse)
    #[arg(long)]
    pub start: bool,
}

#[derive(Debug, Args)]
pub struct OpenPortArgs {
    #[command(flatten)]
    pub vm: VmArgs,
    /// Who may connect: your address, a CIDR or a service tag; `*` opens the port to everyone
    #[arg(long, value_name = "CIDR")]
    pub source: String,
    /// Destination port
    #[arg(long, default_value_t = 22)]
    pub port: u16,
    /// Rule priority (100-4096; must be free). Default 1000, or the next free one
    #[arg(long, value_parser = clap::value_parser!(i64).range(100..=4096))]
    pub priority: Option<i64>,
    /// Rule name (default allow-SSH for port 22)
    #[arg(long = "rule-name")]
    pub rule_name: Option<String>,
}

#[derive(Debug, Args)]
pub struct CopyKeyArgs {
    #[command(flatten)]
    pub vm: VmArgs,
    /// Public key file or key text (default ~/.ssh/id_ed25519.pub, id_ecdsa.pub, id_rsa.pub)
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,
    /// Local user whose key file to write (default: administrators_authorized_keys)
    #[arg(long = "local-user", value_name = "USER")]
    pub local_user: Option<String>,
}

#[derive(Debug, Args)]
pub struct SetupArgs {
    #[command(flatten)]
    pub vm: VmArgs,
    /// Local user to log in as (default: the VM's admin)
    #[arg(long = "local-user", value_name = "USER")]
    pub local_user: Option<String>,
    /// Who may connect: your address, a CIDR or a service tag; `*` opens the port to everyone
    #[arg(long, value_name = "CIDR")]
    pub source: String,
    /// Public key file to install (default ~/.ssh/id_ed25519.pub, ...)
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,
    /// Private key to log in with (default: --key without .pub)
    #[arg(short = 'i', value_name = "PRIVATE_KEY")]
    pub identity: Option<String>,
    /// SSH port to open in the NSG
    #[arg(long, default_value_t = 22)]
    pub port: u16,
    /// NSG rule priority (100-4096; must be free). Default 1000, or the next free one
    #[arg(long, value_parser = clap::value_parser!(i64).range(100..=4096))]
    pub priority: Option<i64>,
    /// How to install OpenSSH: auto, capability or extension
    #[arg(long, default_value = "auto", value_parser = ["auto", "capability", "extension"])]
    pub method: String,
    /// Connect to the private IP (you bring VPN, peering or Bastion)
    #[arg(long)]
    pub prefer_private_ip: bool,
    /// Fail instead of starting a stopped VM
    #[arg(long)]
    pub no_start: bool,
}

#[derive(Debug, Args)]
pub struct JitArgs {
    #[command(flatten)]
    pub vm: VmArgs,
    /// Address or CIDR to allow (default: your address as Azure sees it)
    #[arg(long, value_name = "CIDR")]
    pub source: Option<String>,
    /// Port to open
    #[arg(long, default_value_t = 22)]
    pub port: u16,
    /// How long, ISO 8601 (PT3H, PT30M); at most the policy's maximum
    #[arg(long, default_value = "PT3H")]
    pub duration: String,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// A `.rhai` file, or the name of a bundled runbook (`azssh runbooks` lists them)
    pub script: String,
    /// A value for the script's `ARGS` map: `key=value`; JSON values are parsed, others kept as strings
    #[arg(long = "arg", value_name = "KEY=VALUE")]
    pub args: Vec<String>,
    /// Stop the script after this long (e.g. `90s`, `10m`)
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<std::time::Duration>,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Script resource limits (generous defaults).
#[derive(Debug, Args, Clone)]
pub struct LimitArgs {
    /// Maximum script operations before the run is stopped
    #[arg(long, env = "AZSSH_MAX_OPERATIONS", default_value_t = 100_000_000)]
    pub max_operations: u64,
    /// Maximum function call depth
    #[arg(long, env = "AZSSH_MAX_CALL_DEPTH", default_value_t = 64)]
    pub max_call_depth: usize,
    /// Maximum expression nesting depth
    #[arg(long, env = "AZSSH_MAX_EXPR_DEPTH", default_value_t = 128)]
    pub max_expr_depth: usize,
    /// Maximum string length in bytes
    #[arg(long, env = "AZSSH_MAX_STRING_SIZE", default_value_t = 16 * 1024 * 1024)]
    pub max_string_size: usize,
    /// Maximum array length
    #[arg(long, env = "AZSSH_MAX_ARRAY_SIZE", default_value_t = 1_000_000)]
    pub max_array_size: usize,
    /// Maximum number of map entries
    #[arg(long, env = "AZSSH_MAX_MAP_SIZE", default_value_t = 100_000)]
    pub max_map_size: usize,
}

#[derive(Debug, Args)]
pub struct DocsArgs {
    /// Write Rhai definition files (`.d.rhai`) for editors into this directory instead
    #[arg(long, value_name = "DIR")]
    pub definitions: Option<PathBuf>,
}
