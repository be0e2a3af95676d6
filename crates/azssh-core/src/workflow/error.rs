//! Errors of the workflow functions: their own failures, and the domain errors they pass on
//! unchanged (so scripts still match `azure.*`, `windows.*`, `ssh.*` kinds).

use crate::azure::error::AzureError;
use crate::error::UserError;
use crate::error::kind;
use crate::ssh::error::SshError;
use crate::ssh::keys::KeyError;
use crate::windows::WindowsError;

#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    #[error(transparent)]
    Azure(#[from] AzureError),
    #[error(transparent)]
    Windows(#[from] WindowsError),
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Nsg(#[from] super::nsg::NsgError),
    #[error("VM `{vm}` has no public IP address{}", private_suffix(.private_ip))]
    NoPublicIp {
        vm: String,
        private_ip: Option<String>,
    },
    #[error("VM `{vm}` is {power_state}")]
    NotRunning { vm: String, power_state: String },
    #[error("VM `{vm}` runs {os}, not Windows")]
    NotWindows { vm: String, os: String },
    #[error("sshd on `{vm}` listens on port {sshd_port} (sshd_config `Port`), not on {port}")]
    SshdPort {
        vm: String,
        sshd_port: u16,
        port: u16,
    },
    #[error("the VM agent of `{vm}` is still {status}, so RunCommand cannot run")]
    AgentNotReady { vm: String, status: String },
    #[error(
        "rule `{rule}` (priority {priority}, Deny) in `{nsg}` comes before any allow rule azssh adds and blocks port {port}"
    )]
    BlockedByDeny {
        rule: String,
        priority: i32,
        nsg: String,
        port: u16,
    },
    #[error("the extension `{name}` ended {state}")]
    ExtensionFailed { name: String, state: String },
    #[error("no private key found for `{public}`")]
    NoPrivateKey { public: String },
    #[error("the check over SSH failed: `{command}` exited {code}: {stderr}")]
    CheckFailed {
        command: String,
        code: String,
        stderr: String,
    },
    #[error("the guest reported no SSH host keys")]
    NoHostKeys,
    #[error("`{text}` is neither a key fingerprint nor a public key: {reason}")]
    InvalidFingerprint { text: String, reason: String },
    #[error("`{text}` is not a date of the form YYYY-MM-DD")]
    InvalidDate { text: String },
    #[error("{reason}")]
    InvalidShell { reason: String },
}

fn private_suffix(ip: &Option<String>) -> String {
    ip.as_ref()
        .map(|ip| format!(" (its private address is {ip})"))
        .unwrap_or_default()
}

impl UserError for WorkflowError {
    fn kind(&self) -> &'static str {
        match self {
            WorkflowError::Azure(e) => e.kind(),
            WorkflowError::Windows(e) => e.kind(),
            WorkflowError::Ssh(e) => e.kind(),
            WorkflowError::Key(e) => e.kind(),
            WorkflowError::Nsg(e) => e.kind(),
            WorkflowError::NoPublicIp { .. } => kind::workflow::NO_PUBLIC_IP,
            WorkflowError::NotRunning { .. } => kind::workflow::NOT_RUNNING,
            WorkflowError::NotWindows { .. } => kind::workflow::NOT_WINDOWS,
            WorkflowError::AgentNotReady { .. } => kind::workflow::AGENT_NOT_READY,
            WorkflowError::SshdPort { .. } => kind::workflow::SSHD_PORT,
            WorkflowError::BlockedByDeny { .. } => kind::workflow::BLOCKED_BY_DENY,
            WorkflowError::ExtensionFailed { .. } => kind::workflow::EXTENSION_FAILED,
            WorkflowError::NoPrivateKey { .. } => kind::workflow::NO_PRIVATE_KEY,
            WorkflowError::CheckFailed { .. } => kind::workflow::CHECK_FAILED,
            WorkflowError::NoHostKeys => kind::workflow::NO_HOST_KEYS,
            WorkflowError::InvalidFingerprint { .. } => kind::workflow::INVALID_FINGERPRINT,
            WorkflowError::InvalidDate { .. } => kind::workflow::INVALID_DATE,
            WorkflowError::InvalidShell { .. } => kind::workflow::INVALID_SHELL,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            WorkflowError::Azure(e) => e.hint(),
            WorkflowError::Windows(e) => e.hint(),
            WorkflowError::Ssh(e) => e.hint(),
            WorkflowError::Key(e) => e.hint(),
            WorkflowError::Nsg(e) => e.hint(),
            WorkflowError::NoPublicIp { .. } => Some(
                "attach a public IP (`az network public-ip create` + `az network nic ip-config update`), \
                 or reach the private address over VPN, peering or Azure Bastion and pass \
                 `prefer_private_ip: true` (`--prefer-private-ip`)"
                    .into(),
            ),
            WorkflowError::NotRunning { .. } => {
                Some("start it first (`v.start()`), or pass `start: true`".into())
            }
            WorkflowError::SshdPort { sshd_port, port, .. } => Some(format!(
                "pass `--port {sshd_port}` to open the port sshd uses, or `--port {port} \
                 --set-sshd-port` (`set_sshd_port: true`) to make sshd listen on {port}"
            )),
            WorkflowError::AgentNotReady { .. } => Some(
                "wait for the agent (the portal's Agent status), or restart the VM; RunCommand \
                 needs a Ready VM agent"
                    .into(),
            ),
            WorkflowError::BlockedByDeny { .. } => Some(
                "azssh never overrides someone's deny rule: remove or narrow it, or, if it is \
                 yours to override, pass `--priority` below its priority (`priority:` in a script)"
                    .into(),
            ),
            WorkflowError::NotWindows { .. } => Some(
                "this workflow configures Windows guests; Linux VMs have sshd already".into(),
            ),
            WorkflowError::ExtensionFailed { .. } => Some(
                "see the extension's status with `az vm extension show`; the VM agent must be \
                 running and reach Azure storage"
                    .into(),
            ),
            WorkflowError::NoPrivateKey { .. } => Some(
                "keep the private key next to the public one (`id_ed25519` beside \
                 `id_ed25519.pub`) or pass `identity` (`-i`)"
                    .into(),
            ),
            WorkflowError::CheckFailed { .. } => None,
            WorkflowError::InvalidFingerprint { .. } => Some(
                "give the fingerprint as `ssh-keygen -lf KEY.pub` prints it (`SHA256:` and 43 \
                 characters), or the public key's text or file"
                    .into(),
            ),
            WorkflowError::InvalidDate { .. } => Some("e.g. `2027-03-01` (a UTC date)".into()),
            WorkflowError::InvalidShell { .. } => None,
            WorkflowError::NoHostKeys => Some(
                "Windows sshd creates its host keys on first start; run `enable_ssh` first".into(),
            ),
        }
    }
}
