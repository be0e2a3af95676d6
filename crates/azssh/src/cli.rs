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
    /// JMESPath query applied to the output before it is printed, as `az --query`
    /// (e.g. `'[].name'`, `"[?power_state=='running'].{name: name, ip: public_ip}"`)
    #[arg(long, global = true, value_name = "JMESPATH")]
    pub query: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a Rhai script file, or a bundled runbook by name
    Run(RunArgs),
    /// List the runbooks (yours from `AZSSH_RUNBOOK_PATH` and ~/.config/azssh/runbooks/, then
    /// the bundled ones), or show one runbook's description and arguments
    Runbooks(RunbooksArgs),
    /// List VMs: name, group, power state, OS and addresses (`-o json`: full objects)
    Vms(VmsArgs),
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
    /// Read the VM's host keys through Azure and pin them in azssh's known_hosts
    Pin(PinArgs),
    /// Delete the NSG rule `open-port` made for a source (or a rule by name)
    #[command(name = "close-port")]
    ClosePort(ClosePortArgs),
    /// Do the whole workflow: start, enable, key, port, pin host keys, log in (runbook `setup-ssh`)
    Setup(SetupArgs),
    /// Request just-in-time access to the VM's SSH port and wait for it (runbook `jit-connect`)
    Jit(JitArgs),
    /// Run a script or runbook once per VM across a fleet, paced by ARM's throttling, resumable
    Fleet(FleetArgs),
    /// List, remove, rotate and expire the SSH keys of Windows VMs (through RunCommand)
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Audit VMs' SSH setup for drift from the stock one (runbook `audit`; a fleet run without `-n`)
    Audit(AuditArgs),
    /// Repair what is safe in VMs' SSH setup, reporting each change (runbook `repair`)
    Repair(RepairArgs),
    /// Connect to a VM over SSH (like `az ssh vm`): a shell, or `-- command` whose exit code
    /// becomes azssh's
    Connect(ConnectArgs),
    /// Forward local ports to a VM over SSH (`-L 3389:localhost:3389`) until Ctrl-C
    Tunnel(TunnelArgs),
    /// Open an RDP tunnel on a free local port, check Remote Desktop answers, start the RDP client
    Rdp(RdpArgs),
    /// Copy files to or from a VM over SFTP; the remote side is `RESOURCE_GROUP/VM:PATH`
    Cp(CpArgs),
    /// Relay stdin/stdout to a VM's SSH port (direct, Bastion or jump), for OpenSSH's
    /// `ProxyCommand`: `ssh -o ProxyCommand="azssh proxy -g RG -n VM" user@VM`
    Proxy(ProxyArgs),
    /// Write an OpenSSH config with one `Host RG.VM` block per VM (pinned host keys, strict
    /// checking, `ProxyCommand azssh proxy` for private VMs) for ssh, scp, VS Code and Ansible
    #[command(name = "ssh-config")]
    SshConfig(SshConfigArgs),
    /// Run the whole workflow against a local emulator: no Azure account needed
    #[cfg(feature = "emulator")]
    Demo(DemoArgs),
    /// Serve a simulated Azure subscription of Windows VMs on loopback (a simulator, not Azure)
    #[cfg(feature = "emulator")]
    Emulator(EmulatorArgs),
    /// Interactive Rhai session with the azssh API: completion, history, `:help`
    Repl(ReplArgs),
    /// Print a shell completion script: bash, zsh, fish, powershell or elvish
    Completions(CompletionsArgs),
    /// Print the man page (roff), or write one page per command into a directory
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell, e.g. `azssh completions bash > /etc/bash_completion.d/azssh`
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write `azssh.1` and `azssh-COMMAND.1` for every command into this directory instead
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// How to log into a VM over SSH (`az ssh vm`'s flags where it has them).
#[derive(Debug, Args, Clone)]
pub struct SshLoginArgs {
    /// User to log in as (default: the VM's admin user)
    #[arg(long)]
    pub local_user: Option<String>,
    /// Private key file (default: ~/.ssh/id_ed25519, id_ecdsa, id_rsa and the ssh agent)
    #[arg(short = 'i', long = "private-key-file", value_name = "KEY")]
    pub private_key: Option<String>,
    /// SSH port (default: `AZSSH_SSH_PORT` when set, else 22)
    #[arg(long, env = "AZSSH_SSH_PORT")]
    pub port: Option<u16>,
    /// Connect to the VM's private IP (from inside its virtual network)
    #[arg(long)]
    pub prefer_private_ip: bool,
    /// Unknown host keys: `yes` refuses, `accept-new` trusts and records, `ask` asks (default:
    /// ask on a terminal, yes otherwise). A changed key is always refused
    #[arg(long, value_name = "MODE", env = "AZSSH_STRICT_HOST_KEYS",
          value_parser = crate::ssh::known_hosts::parse_strict_arg)]
    pub strict_host_keys: Option<String>,
    /// known_hosts file to use instead of ~/.ssh/known_hosts and azssh's own
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<String>,
    #[command(flatten)]
    pub path: PathArgs,
}

/// How to reach a private VM (default: its public IP, else a bastion in reach, else `--jump`).
#[derive(Debug, Args, Clone, Default)]
pub struct PathArgs {
    /// Tunnel through this Azure Bastion (Standard/Premium with native client support): a name
    /// in the VM's resource group, or RG/NAME
    #[arg(long, value_name = "NAME", conflicts_with = "bastion_id")]
    pub bastion: Option<String>,
    /// Tunnel through the Azure Bastion with this resource id
    #[arg(long, value_name = "ID")]
    pub bastion_id: Option<String>,
    /// Jump hosts as OpenSSH's ProxyJump: `[user@]host[:port][,next...]` (after a bastion when
    /// one is given); host keys are verified at every hop
    #[arg(long, short = 'J', value_name = "HOSTS")]
    pub jump: Option<String>,
    /// Force the path: direct, bastion or jump (default: chosen and reported)
    #[arg(long, value_parser = ["direct", "bastion", "jump", "auto"])]
    pub via: Option<String>,
}

/// Which VM: `-g`/`-n`, or an address with `--ip`.
#[derive(Debug, Args, Clone)]
pub struct VmTargetArgs {
    /// Resource group of the VM
    #[arg(short = 'g', long, required_unless_present = "ip")]
    pub resource_group: Option<String>,
    /// Name of the VM
    #[arg(short = 'n', long, required_unless_present = "ip")]
    pub name: Option<String>,
    /// Connect to this address instead of looking the VM up
    #[arg(long)]
    pub ip: Option<String>,
    #[command(flatten)]
    pub login: SshLoginArgs,
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub target: VmTargetArgs,
    /// Local forward `[bind:]local_port:host:remote_port`, e.g. `3389:localhost:3389` (repeatable)
    #[arg(short = 'L', value_name = "SPEC")]
    pub forwards: Vec<String>,
    /// Command to run instead of a shell, after `--`
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct TunnelArgs {
    #[command(flatten)]
    pub target: VmTargetArgs,
    /// Local forward `[bind:]local_port:host:remote_port`, e.g. `3389:localhost:3389` (repeatable)
    #[arg(
        short = 'L',
        value_name = "SPEC",
        required_unless_present = "resource_port"
    )]
    pub forwards: Vec<String>,
    /// Without SSH, like `az network bastion tunnel`: carry local connections straight to this
    /// port of the VM through the bastion, each on its own WebSocket, all at once
    #[arg(long, value_name = "PORT", conflicts_with = "forwards")]
    pub resource_port: Option<u16>,
    /// Local port for `--resource-port` (0 = any free port, printed)
    #[arg(long = "local-port", default_value_t = 0, requires = "resource_port")]
    pub local_port: u16,
}

#[derive(Debug, Args)]
pub struct ProxyArgs {
    #[command(flatten)]
    pub vm: VmArgs,
    /// The VM's port to relay to (default: `AZSSH_SSH_PORT` when set, else 22)
    #[arg(long, env = "AZSSH_SSH_PORT")]
    pub port: Option<u16>,
    /// Use the VM's private IP on the direct path
    #[arg(long)]
    pub prefer_private_ip: bool,
    #[command(flatten)]
    pub path: PathArgs,
}

#[derive(Debug, Args)]
pub struct SshConfigArgs {
    /// VMs of this resource group (repeatable)
    #[arg(short = 'g', long = "resource-group", value_name = "RG")]
    pub resource_groups: Vec<String>,
    /// Every VM in the subscription
    #[arg(long, conflicts_with = "resource_groups")]
    pub all: bool,
    /// Write here instead of standard output (replaced whole; include it from ~/.ssh/config
    /// with `Include`)
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Private key for `IdentityFile` (default: ~/.ssh/id_ed25519, id_ecdsa or id_rsa, the
    /// first that exists)
    #[arg(short = 'i', value_name = "KEY")]
    pub identity: Option<String>,
    /// Login user (default: each VM's admin user)
    #[arg(long)]
    pub local_user: Option<String>,
    /// SSH port (default: `AZSSH_SSH_PORT` when set, else 22)
    #[arg(long, env = "AZSSH_SSH_PORT")]
    pub port: Option<u16>,
    /// `Host` alias of each VM; `{rg}` and `{name}` are replaced
    #[arg(long, default_value = "{rg}.{name}")]
    pub alias: String,
    /// The azssh to name in `ProxyCommand` (default: this executable)
    #[arg(long, value_name = "PATH")]
    pub azssh: Option<PathBuf>,
    #[command(flatten)]
    pub path: PathArgs,
}

#[derive(Debug, Args)]
pub struct RdpArgs {
    #[command(flatten)]
    pub target: VmTargetArgs,
    /// Local port of the tunnel (default: any free port)
    #[arg(long, default_value_t = 0)]
    pub local_port: u16,
    /// Do not start an RDP client; print the address to connect to
    #[arg(long)]
    pub no_launch: bool,
}

#[derive(Debug, Args)]
pub struct CpArgs {
    /// What to copy: a local path, or `RESOURCE_GROUP/VM:PATH` (e.g. `rg-web/web01:C:/logs/app.log`)
    pub source: String,
    /// Where to: a local path or `RESOURCE_GROUP/VM:PATH`; ending in `/` keeps the source's name
    pub destination: String,
    /// Connect to this address instead of looking the VM up
    #[arg(long)]
    pub ip: Option<String>,
    /// Upload without having the server flush each file to disk before it counts as done
    /// (`fsync@openssh.com`), as `sftp` and `scp` do: faster, but a file just copied can be lost
    /// if the VM stops before Windows writes it out
    #[arg(long)]
    pub no_fsync: bool,
    #[command(flatten)]
    pub login: SshLoginArgs,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Seed of the emulated subscription (same seed, same VMs)
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Divide Azure's durations (RunCommand ≈ 20 s, VM start ≈ 30 s) by this
    #[arg(long, default_value_t = 20.0)]
    pub speed: f64,
}

#[derive(Debug, Args)]
pub struct EmulatorArgs {
    /// Number of VMs in the simulated subscription
    #[arg(long, default_value_t = 12)]
    pub vms: usize,
    /// Port on 127.0.0.1 for the ARM endpoint (0 = any free port)
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Seed for the world and the faults: the same seed gives the same VMs and faults
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Fault injection, e.g. `5xx=0.05,reset=0.02,429=0.02,lro_fail=0.01,slow=0.05`
    #[arg(long, default_value = "")]
    pub faults: String,
    /// Divide Azure's durations (RunCommand ≈ 20 s, start ≈ 30 s) by this
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Turn ARM's throttling (token buckets, 429) off
    #[arg(long)]
    pub no_throttling: bool,
    /// `realistic`: VMs show the variants of real estates (WS2025 firewall profiles, WSUS,
    /// hardened sshd_config, ...), each tagged `emulator-variant`; `tidy`: every VM uniform
    #[arg(long, default_value = "realistic", value_parser = ["realistic", "tidy"])]
    pub world: String,
    /// Also write the `export` lines (and `AZSSH_EMULATOR_PID`) to this file, mode 600, once
    /// serving: `. FILE` in another shell points azssh at the emulator
    #[arg(long, value_name = "FILE")]
    pub env_file: Option<PathBuf>,
    /// Serve in the background: print the `export` lines once it serves and return to the shell
    /// (`eval "$(azssh emulator --detach)"`; stop it with `kill $AZSSH_EMULATOR_PID`)
    #[arg(long)]
    pub detach: bool,
}

#[derive(Debug, Args)]
pub struct ReplArgs {
    /// A value for the session's `ARGS` map (as `azssh run --arg`): `key=value`
    #[arg(long = "arg", value_name = "KEY=VALUE")]
    pub args: Vec<String>,
    #[command(flatten)]
    pub limits: LimitArgs,
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
    /// Set the shell sshd runs commands with (`HKLM:\SOFTWARE\OpenSSH\DefaultShell`)
    #[arg(long = "default-shell", value_name = "SHELL", value_parser = ["powershell", "pwsh", "cmd"])]
    pub default_shell: Option<String>,
    /// Start the VM if it is stopped (default: refuse)
    #[arg(long)]
    pub start: bool,
    /// On a WSUS-managed VM, set the documented policy "Download repair content and optional
    /// features directly from Windows Update" so the OpenSSH capability can install
    #[arg(long)]
    pub allow_windows_update: bool,
}

#[derive(Debug, Args)]
pub struct OpenPortArgs {
    #[command(flatten)]
    pub vm: VmArgs,
    /// Who may connect: your address, a CIDR or a service tag (several: comma-separated); each
    /// source gets its own rule, and nobody else's access is changed
    #[arg(long, value_name = "CIDR")]
    pub source: String,
    /// Accept a source that admits the whole Internet (`*`, `Internet`, `Any`, any `/0`)
    #[arg(long)]
    pub allow_internet: bool,
    /// Add a standing rule even when a just-in-time policy covers the port (default: request
    /// JIT access instead)
    #[arg(long)]
    pub permanent_rule: bool,
    /// Destination port
    #[arg(long, default_value_t = 22)]
    pub port: u16,
    /// Rule priority (100-4096; must be free). Default 1000, or the next free one
    #[arg(long, value_parser = clap::value_parser!(i64).range(100..=4096))]
    pub priority: Option<i64>,
    /// Rule name for a single source (default: from the source, e.g. azssh-ssh-203-0-113-7-32);
    /// an existing rule of that name with another source is not overwritten
    #[arg(long = "rule-name")]
    pub rule_name: Option<String>,
}

#[derive(Debug, Args)]
pub struct PinArgs {
    #[command(flatten)]
    pub vm: VmArgs,
    /// Replace keys pinned before (after a deliberate rebuild); a changed key is refused otherwise
    #[arg(long)]
    pub replace: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["source", "rule_name"])))]
pub struct ClosePortArgs {
    #[command(flatten)]
    pub vm: VmArgs,
    /// The source `open-port` was given (its rule, and only its rule, is deleted)
    #[arg(long, value_name = "CIDR")]
    pub source: Option<String>,
    /// Delete the rule of this name instead
    #[arg(long = "rule-name")]
    pub rule_name: Option<String>,
    /// Destination port of the rule
    #[arg(long, default_value_t = 22)]
    pub port: u16,
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
    /// When sshd_config's AllowGroups keeps the user out, add them to the group it names
    #[arg(long)]
    pub fix_sshd_config: bool,
}

#[derive(Debug, Args)]
pub struct SetupArgs {
    #[command(flatten)]
    pub vm: VmArgs,
    /// Local user to log in as (default: the VM's admin)
    #[arg(long = "local-user", value_name = "USER")]
    pub local_user: Option<String>,
    /// Who may connect: your address, a CIDR or a service tag (several: comma-separated); each
    /// source gets its own rule, and nobody else's access is changed. Not needed through a
    /// bastion: its `AzureBastionSubnet` prefix is admitted instead
    #[arg(long, value_name = "CIDR")]
    pub source: Option<String>,
    /// Accept a source that admits the whole Internet (`*`, `Internet`, `Any`, any `/0`)
    #[arg(long)]
    pub allow_internet: bool,
    /// Add a standing rule even when a just-in-time policy covers the port (default: request
    /// JIT access instead)
    #[arg(long)]
    pub permanent_rule: bool,
    #[command(flatten)]
    pub path: PathArgs,
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
    /// On a WSUS-managed VM, set the documented policy "Download repair content and optional
    /// features directly from Windows Update" so the OpenSSH capability can install
    #[arg(long)]
    pub allow_windows_update: bool,
    /// Make the guest's sshd listen on `--port` (sshd_config `Port`) and open it in Windows
    /// Firewall; without it a `--port` other than sshd's own is refused
    #[arg(long)]
    pub set_sshd_port: bool,
    /// When sshd_config's AllowGroups keeps the user out, add them to the group it names
    #[arg(long)]
    pub fix_sshd_config: bool,
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
    /// User for the command after `--` (default: the VM's admin user)
    #[arg(long = "local-user", value_name = "USER")]
    pub local_user: Option<String>,
    /// Private key for the command after `--` (default: ~/.ssh/id_ed25519, ... and the agent)
    #[arg(short = 'i', long = "private-key-file", value_name = "KEY")]
    pub private_key: Option<String>,
    /// Once access is active, run this command over SSH (after `--`); its output streams and
    /// its exit code becomes azssh's, as with `azssh connect -- command`
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RunbooksArgs {
    /// Show this runbook's description and arguments instead of the list
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct VmsArgs {
    /// VMs of this resource group (repeatable; default: the whole subscription)
    #[arg(short = 'g', long = "resource-group", value_name = "RG")]
    pub resource_groups: Vec<String>,
    /// Only VMs carrying this tag (repeatable, all must match)
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub tags: Vec<String>,
    /// VMs returned by this Resource Graph query (rows need an `id` column), as
    /// `az graph query -q`
    #[arg(
        id = "graph_query",
        short = 'q',
        long = "graph-query",
        value_name = "KQL"
    )]
    pub query: Option<String>,
    /// Add what an ARM-only look says about SSH readiness: running, address, NSG rule for
    /// port 22, OpenSSH extension
    #[arg(long)]
    pub ssh: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// A `.rhai` file, `-` for standard input, or a runbook name: `./NAME.rhai`, then the
    /// directories of `AZSSH_RUNBOOK_PATH`, then ~/.config/azssh/runbooks/, then bundled
    #[arg(required_unless_present = "eval")]
    pub script: Option<String>,
    /// Run this code instead of a script file
    #[arg(
        short = 'e',
        long = "eval",
        value_name = "CODE",
        conflicts_with = "script"
    )]
    pub eval: Option<String>,
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
    #[arg(long, env = "AZSSH_MAX_OPERATIONS", default_value_t = crate::script::engine::Limits::DEFAULT.max_operations)]
    pub max_operations: u64,
    /// Maximum function call depth
    #[arg(long, env = "AZSSH_MAX_CALL_DEPTH", default_value_t = crate::script::engine::Limits::DEFAULT.max_call_depth)]
    pub max_call_depth: usize,
    /// Maximum expression nesting depth
    #[arg(long, env = "AZSSH_MAX_EXPR_DEPTH", default_value_t = crate::script::engine::Limits::DEFAULT.max_expr_depth)]
    pub max_expr_depth: usize,
    /// Maximum string length in bytes
    #[arg(long, env = "AZSSH_MAX_STRING_SIZE", default_value_t = crate::script::engine::Limits::DEFAULT.max_string_size)]
    pub max_string_size: usize,
    /// Maximum array length
    #[arg(long, env = "AZSSH_MAX_ARRAY_SIZE", default_value_t = crate::script::engine::Limits::DEFAULT.max_array_size)]
    pub max_array_size: usize,
    /// Maximum number of map entries
    #[arg(long, env = "AZSSH_MAX_MAP_SIZE", default_value_t = crate::script::engine::Limits::DEFAULT.max_map_size)]
    pub max_map_size: usize,
}

#[derive(Debug, Args)]
pub struct DocsArgs {
    /// Write Rhai definition files (`.d.rhai`) for editors into this directory instead
    #[arg(long, value_name = "DIR")]
    pub definitions: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct FleetArgs {
    /// A `.rhai` file, or the name of a bundled runbook; each run sees `vm` and `ARGS`
    pub script: String,
    #[command(flatten)]
    pub run: FleetRunArgs,
    /// List the targets (after shard and journal) and exit without running anything
    #[arg(long)]
    pub dry_run: bool,
    /// A value for the script's `ARGS` map: `key=value`; JSON values are parsed
    #[arg(long = "arg", value_name = "KEY=VALUE")]
    pub args: Vec<String>,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Which VMs a fleet run takes and how it runs them: shared by `azssh fleet` and the verbs that
/// run as a fleet without `-n` (`keys`, `audit`, `repair`).
#[derive(Debug, Args, Clone)]
pub struct FleetRunArgs {
    /// VMs of this resource group (repeatable)
    #[arg(short = 'g', long = "resource-group", value_name = "RG")]
    pub resource_groups: Vec<String>,
    /// Only VMs carrying this tag (repeatable, all must match); alone, searches the subscription
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub tags: Vec<String>,
    /// VMs returned by this Resource Graph query (rows need an `id` column), as
    /// `az graph query -q`
    #[arg(
        id = "graph_query",
        short = 'q',
        long = "graph-query",
        value_name = "KQL"
    )]
    pub query: Option<String>,
    /// VM resource ids from a file: one a line, or a JSON array of ids or of objects with `id`
    #[arg(long, value_name = "FILE")]
    pub targets: Option<PathBuf>,
    /// Every VM in the subscription
    #[arg(long)]
    pub all: bool,
    /// VMs running at once
    #[arg(long, default_value_t = 32, env = "AZSSH_FLEET_CONCURRENCY")]
    pub concurrency: usize,
    /// Deadline per VM (e.g. `10m`), retries included
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<std::time::Duration>,
    /// Run a VM's script again, from the start, after a transient failure: throttling (429),
    /// server errors (5xx), connection resets and timeouts, RunCommand busy. Not retried: an
    /// operation Azure accepted that then failed or timed out (it ran, or may still run), script
    /// errors and throws, other 4xx answers. Use only with scripts safe to repeat
    #[arg(long, default_value_t = 0)]
    pub retries: u32,
    /// Append one JSON line per VM here as each finishes (fsynced), for `--resume`
    #[arg(long, value_name = "FILE")]
    pub journal: Option<PathBuf>,
    /// Continue the run recorded in `--journal`: skip VMs already done (or failed)
    #[arg(long)]
    pub resume: bool,
    /// With `--resume`: run the VMs that failed (or were interrupted) again
    #[arg(long)]
    pub retry_failed: bool,
    /// Take only shard I of N (`I/N`, from 0); `/N` takes I from `JOB_COMPLETION_INDEX`
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// Stop starting new VMs once more than this percentage of the targets failed
    #[arg(long, value_name = "PERCENT")]
    pub max_fail: Option<f64>,
    /// Seconds running VMs get to finish after Ctrl-C before they are cancelled
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub grace: std::time::Duration,
}

/// `azssh keys ...`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List every key each authorized_keys file holds: type, fingerprint, comment, line, and the
    /// file's encoding and ACL verdict
    List(KeysListArgs),
    /// Remove one key (by fingerprint or public key) from one VM, or from a fleet without `-n`
    Remove(KeysRemoveArgs),
    /// Add a new key, prove a login with it over SSH, then remove the old one
    Rotate(KeysRotateArgs),
    /// Remove keys whose `azssh-expires=` date has passed, from one VM or a fleet without `-n`
    Expire(KeysExpireArgs),
}

#[derive(Debug, Args)]
pub struct KeysListArgs {
    #[command(flatten)]
    pub vm: VmArgs,
    /// Only the file sshd reads for this user
    #[arg(long = "local-user", value_name = "USER")]
    pub local_user: Option<String>,
}

/// The VMs a fleet-capable verb acts on: one VM (`-g RG -n VM`) or, without `-n`, a fleet run
/// (the selection and run flags of `azssh fleet`).
#[derive(Debug, Args, Clone)]
pub struct FleetScopeArgs {
    /// One VM (needs exactly one `-g`); without it the verb runs over the selected fleet
    #[arg(
        short = 'n',
        long = "name",
        visible_alias = "vm-name",
        value_name = "VM"
    )]
    pub name: Option<String>,
    #[command(flatten)]
    pub run: FleetRunArgs,
}

#[derive(Debug, Args)]
pub struct KeysRemoveArgs {
    #[command(flatten)]
    pub scope: FleetScopeArgs,
    /// The key's fingerprint, as `ssh-keygen -lf` prints it (`SHA256:...`)
    #[arg(
        long,
        value_name = "SHA256:...",
        conflicts_with = "key",
        required_unless_present = "key"
    )]
    pub fingerprint: Option<String>,
    /// The public key to remove (a `.pub` file or the key text)
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,
    /// Only this user's file (default: every file)
    #[arg(long = "local-user", value_name = "USER")]
    pub local_user: Option<String>,
    /// Remove it even if it is the last of your keys in a file
    #[arg(long)]
    pub force: bool,
    /// Report what would be removed, change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct KeysRotateArgs {
    #[command(flatten)]
    pub vm: VmArgs,
    /// The key to replace: fingerprint, `.pub` file or key text
    #[arg(long, value_name = "KEY")]
    pub old: String,
    /// The new public key file (its private key beside it), or the new private key file
    #[arg(long, value_name = "KEY")]
    pub new: String,
    /// User to log in as and whose file to change (default: the VM's admin)
    #[arg(long = "local-user", value_name = "USER")]
    pub local_user: Option<String>,
    /// The new key's private half (default: `--new` without `.pub`)
    #[arg(short = 'i', long = "private-key-file", value_name = "KEY")]
    pub identity: Option<String>,
    /// SSH port (default: `AZSSH_SSH_PORT` when set, else 22)
    #[arg(long, env = "AZSSH_SSH_PORT")]
    pub port: Option<u16>,
    /// Log in over the VM's private address
    #[arg(long)]
    pub prefer_private_ip: bool,
}

#[derive(Debug, Args)]
pub struct KeysExpireArgs {
    #[command(flatten)]
    pub scope: FleetScopeArgs,
    /// Only this user's file (default: every file)
    #[arg(long = "local-user", value_name = "USER")]
    pub local_user: Option<String>,
    /// Report what would be removed, change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub scope: FleetScopeArgs,
    /// A key that belongs (fingerprint or public key; repeatable): any other key is reported
    /// as `keys.unknown`
    #[arg(long = "known-key", value_name = "KEY")]
    pub known_keys: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RepairArgs {
    #[command(flatten)]
    pub scope: FleetScopeArgs,
    /// Report what would change, change nothing
    #[arg(long)]
    pub dry_run: bool,
}
