//! Errors from building guest scripts and reading their results.

use crate::error::UserError;
use crate::error::kind;

/// Capability install failures that mean "this VM cannot fetch Features on Demand".
const NO_SOURCE_CODES: [&str; 3] = ["0x800f0950", "0x800f0954", "0x800f081f"];

#[derive(Debug, thiserror::Error)]
pub enum WindowsError {
    #[error("`{name}` is not a valid windows user name: {reason}")]
    InvalidUserName { name: String, reason: String },
    #[error("the script printed no `AZSSH-RESULT:` line{}", stderr_suffix(.stderr))]
    NoResult { stderr: String },
    #[error("the script's result line is malformed: {reason}")]
    MalformedResult { reason: String },
    #[error("the script's result has no `{step}` part")]
    MissingStep { step: &'static str },
    #[error("installing the OpenSSH server capability failed ({code}): {message}")]
    CapabilityInstall { code: String, message: String },
    #[error("{step} failed on the guest: {message}")]
    StepFailed { step: &'static str, message: String },
    #[error("the key file `{path}` did not verify: {reason}")]
    KeyNotVerified { path: String, reason: String },
    #[error("refused: {reason}")]
    LastKey { reason: String },
    #[error("invalid -EncodedCommand argument: {reason}")]
    BadEncodedCommand { reason: String },
    #[error(
        "installing the OpenSSH server capability failed ({code}): the VM takes updates from WSUS (policy `UseWUServer = 1` under `HKLM:\\SOFTWARE\\Policies\\Microsoft\\Windows\\WindowsUpdate\\AU`), which does not serve Features on Demand"
    )]
    WsusBlocksCapability { code: String, message: String },
    #[error(
        "sshd_config keeps the user out: AllowGroups `{allow_groups}`, AllowUsers `{allow_users}` (C:\\ProgramData\\ssh\\sshd_config)"
    )]
    UserNotAllowed {
        allow_groups: String,
        allow_users: String,
    },
    #[error("the VM's disk is full: {message}")]
    DiskFull { message: String },
}

fn stderr_suffix(stderr: &str) -> String {
    let tail: String = stderr
        .trim()
        .chars()
        .rev()
        .take(300)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    if tail.is_empty() {
        String::new()
    } else {
        format!("; stderr ends with: {tail}")
    }
}

impl UserError for WindowsError {
    fn kind(&self) -> &'static str {
        match self {
            WindowsError::InvalidUserName { .. } => kind::windows::INVALID_USER,
            WindowsError::NoResult { .. } => kind::windows::NO_RESULT,
            WindowsError::MalformedResult { .. } => kind::windows::MALFORMED_RESULT,
            WindowsError::MissingStep { .. } => kind::windows::MISSING_STEP,
            WindowsError::CapabilityInstall { code, .. } if code == "0x800f080c" => {
                kind::windows::CAPABILITY_UNAVAILABLE
            }
            WindowsError::CapabilityInstall { .. } => kind::windows::CAPABILITY_INSTALL,
            WindowsError::StepFailed { .. } => kind::windows::STEP_FAILED,
            WindowsError::KeyNotVerified { .. } => kind::windows::KEY_NOT_VERIFIED,
            WindowsError::BadEncodedCommand { .. } => kind::windows::BAD_ENCODED_COMMAND,
            WindowsError::LastKey { .. } => kind::windows::LAST_KEY,
            WindowsError::WsusBlocksCapability { .. } => kind::windows::WSUS_BLOCKS_CAPABILITY,
            WindowsError::UserNotAllowed { .. } => kind::windows::USER_NOT_ALLOWED,
            WindowsError::DiskFull { .. } => kind::windows::DISK_FULL,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            WindowsError::CapabilityInstall { code, .. } if NO_SOURCE_CODES.contains(&code.as_str()) => Some(
                "the VM cannot download Features on Demand (no Windows Update access, or WSUS \
                 without FoD): set the group policy \"Specify settings for optional component \
                 installation and component repair\" to contact Windows Update directly, or run \
                 `Add-WindowsCapability -Online -Name OpenSSH.Server~~~~0.0.1.0 -Source <FoD ISO path> \
                 -LimitAccess`, or use the WindowsOpenSSH extension (`enable_ssh(vm, #{method: \"extension\"})`)"
                    .into(),
            ),
            WindowsError::CapabilityInstall { .. } => Some(
                "OpenSSH is built in from Windows Server 2019 (build 17763); on older versions use \
                 the WindowsOpenSSH extension (`enable_ssh(vm, #{method: \"extension\"})`)"
                    .into(),
            ),
            WindowsError::NoResult { .. } => Some(
                "RunCommand keeps only the last 4096 bytes of output; run the script again, and \
                 check the extension log under C:\\WindowsAzure\\Logs\\Plugins\\Microsoft.CPlat.Core.RunCommandWindows"
                    .into(),
            ),
            WindowsError::KeyNotVerified { .. } => Some(
                "Windows OpenSSH ignores key files with a BOM, UTF-16 text or an ACL granting \
                 others access; run `copy_key` again to repair it"
                    .into(),
            ),
            WindowsError::LastKey { .. } => Some(
                "nothing was changed; add another key of yours first (`copy_key`), or pass \
                 `force: true` (`--force`) to remove it anyway"
                    .into(),
            ),
            WindowsError::WsusBlocksCapability { .. } => Some(
                "with `--allow-windows-update` (`allow_windows_update: true` in a script) azssh sets \
                 the documented policy \"Download repair content and optional features directly \
                 from Windows Update\" (`RepairContentServerSource = 2` under \
                 `HKLM:\\SOFTWARE\\Policies\\Microsoft\\Windows\\Servicing`) and installs; it is \
                 a policy change, so it is yours to make (or install from FoD media with `-Source`)"
                    .into(),
            ),
            WindowsError::UserNotAllowed { .. } => Some(
                "pass `--fix-sshd-config` (`fix_sshd_config: true`) to add the user to the group \
                 AllowGroups names, or add them yourself (`Add-LocalGroupMember`), or log in as an \
                 administrator"
                    .into(),
            ),
            WindowsError::DiskFull { .. } => Some(
                "free space on the OS disk (C:) or resize it (`az disk update --size-gb`), then run \
                 the step again"
                    .into(),
            ),
            WindowsError::InvalidUserName { .. } => Some(
                "local user names are 1-20 letters, digits, spaces, `.`, `_` or `-`".into(),
            ),
            _ => None,
        }
    }
}
