//! The guest side of the workflow: choosing how to enable SSH (capability or `WindowsOpenSSH`
//! extension), running one `GuestScript` through RunCommand, and reading its result.

use serde::Serialize;

use super::error::WorkflowError;
use crate::azure::client::ArmClient;
use crate::azure::extension::{self, VmExtension};
use crate::azure::run_command::{self, RunCommandOptions};
use crate::azure::vm::Vm;
use crate::error::kind;
use crate::ssh::keys::SshPublicKey;
use crate::windows::{
    GuestScript, KeyInstalled, KeyOptions, KeyTarget, ScriptResult, SetupOptions, SshdState,
};

/// What `enable_ssh`/`setup` may change beyond the documented steps, each only when asked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EnableOptions {
    pub setup: SetupOptions,
    pub key: KeyOptions,
}

/// First Windows build with the OpenSSH capability (Windows Server 2019).
pub const FIRST_CAPABILITY_BUILD: u32 = 17763;

/// How OpenSSH gets onto the VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Capability,
    Extension,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Capability => "capability",
            Method::Extension => "extension",
        }
    }
}

/// What the caller asked for: a method, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodChoice {
    Auto,
    Fixed(Method),
}

impl std::str::FromStr for MethodChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(MethodChoice::Auto),
            "capability" => Ok(MethodChoice::Fixed(Method::Capability)),
            "extension" => Ok(MethodChoice::Fixed(Method::Extension)),
            other => Err(format!(
                "unknown method `{other}`: use `auto`, `capability` or `extension`"
            )),
        }
    }
}

/// The build number from an instance view's `osVersion` (`10.0.17763.5458` → 17763).
pub fn os_build(os_version: &str) -> Option<u32> {
    os_version.split('.').nth(2)?.parse().ok()
}

/// A build number guessed from the image SKU (`2016-Datacenter`, `2022-datacenter-azure-edition`).
pub fn sku_build(sku: &str) -> Option<u32> {
    let sku = sku.to_ascii_lowercase();
    [
        ("2008", 7601),
        ("2012", 9600),
        ("2016", 14393),
        ("2019", 17763),
        ("2022", 20348),
        ("2025", 26100),
    ]
    .iter()
    .find(|(year, _)| sku.contains(year))
    .map(|(_, build)| *build)
}

/// `auto`: the capability from build 17763 on, the extension below; the instance view's
/// version first (it is what runs), the image SKU when the VM agent has not reported one.
/// `None` when neither says.
pub fn auto_method(vm: &Vm) -> Option<Method> {
    let build = vm
        .os_version
        .as_deref()
        .and_then(os_build)
        .or_else(|| vm.image_sku.as_deref().and_then(sku_build))?;
    Some(if build >= FIRST_CAPABILITY_BUILD {
        Method::Capability
    } else {
        Method::Extension
    })
}

/// Refuses a VM that is not Windows or not running: RunCommand would fail slowly on either.
pub fn check_windows_running(vm: &Vm) -> Result<(), WorkflowError> {
    if let Some(os) = vm.os_type.as_deref().filter(|_| !vm.is_windows()) {
        return Err(WorkflowError::NotWindows {
            vm: vm.name.clone(),
            os: os.to_string(),
        });
    }
    if vm.power_state != "running" {
        return Err(WorkflowError::NotRunning {
            vm: vm.name.clone(),
            power_state: vm.power_state.clone(),
        });
    }
    Ok(())
}

/// Runs a guest script through RunCommand and reads its `AZSSH-RESULT:` line.
///
/// Just after a start the VM agent may not have reported yet; RunCommand then fails with
/// `VMAgentStatusCommunicationError` (Azure/azure-powershell#5741, MicrosoftDocs/azure-docs
/// #77947: RunCommand needs a Ready agent). The script has not run, so it is safe to wait for
/// the instance view to show the agent Ready and run it once more.
pub async fn run_guest_script(
    arm: &ArmClient,
    vm: &Vm,
    script: &GuestScript,
) -> Result<ScriptResult, WorkflowError> {
    let lines = run_command::script_lines(&script.build());
    // The result line carries everything; the exit-code trailer would only add lines the
    // 4096-byte output tail has to hold.
    let opts = RunCommandOptions {
        report_exit_code: false,
        ..Default::default()
    };
    let out = match run_command::run_powershell(arm, &vm.id, &lines, &opts).await {
        Err(e) if e.code() == Some("VMAgentStatusCommunicationError") => {
            tracing::info!(vm = %vm.name, "the VM agent has not reported yet; waiting for it");
            wait_for_agent(arm, vm).await?;
            run_command::run_powershell(arm, &vm.id, &lines, &opts).await?
        }
        other => other?,
    };
    Ok(ScriptResult::parse(&out.stdout, &out.stderr)?)
}

/// Polls the instance view until the VM agent says Ready (about ten minutes at most, the
/// time Azure itself gives an agent before failing an operation).
async fn wait_for_agent(arm: &ArmClient, vm: &Vm) -> Result<(), WorkflowError> {
    let mut delay = std::time::Duration::from_millis(500);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(600);
    loop {
        let fresh = crate::azure::vm::get_vm_by_id(arm, &vm.id).await?;
        if fresh
            .vm_agent_status
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("Ready"))
        {
            return Ok(());
        }
        if tokio::time::Instant::now() + delay > deadline {
            return Err(WorkflowError::AgentNotReady {
                vm: vm.name.clone(),
                status: fresh.vm_agent_status.unwrap_or_else(|| "unknown".into()),
            });
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(std::time::Duration::from_secs(15));
    }
}

/// Installs the `WindowsOpenSSH` extension unless an install (by publisher and type, under any
/// name) already succeeded. Returns whether it changed anything. An extension of that handler
/// already present under another name (Azure PowerShell's docs call it `OpenSSH`), even a
/// Failed one, is updated under its own name: Windows takes one extension per handler and
/// refuses a second name with "Multiple VMExtensions per handler not supported"
/// (Azure/azure-powershell#8173).
pub async fn ensure_extension(arm: &ArmClient, vm: &Vm) -> Result<bool, WorkflowError> {
    let installed = extension::list_extensions(arm, &vm.id).await?;
    let succeeded = |e: &VmExtension| {
        e.properties
            .provisioning_state
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("Succeeded"))
    };
    if installed
        .iter()
        .any(|e| e.is_windows_openssh() && succeeded(e))
    {
        return Ok(false);
    }
    let name = installed
        .iter()
        .find(|e| e.is_windows_openssh())
        .and_then(|e| e.name.clone())
        .unwrap_or_else(|| extension::OPENSSH_TYPE.to_string());
    let body = VmExtension::windows_openssh(&vm.location);
    let done = extension::create_or_update_extension(arm, &vm.id, &name, &body).await?;
    if !succeeded(&done) {
        return Err(WorkflowError::ExtensionFailed {
            name,
            state: done
                .properties
                .provisioning_state
                .unwrap_or_else(|| "without a provisioning state".into()),
        });
    }
    Ok(true)
}

/// What enabling SSH did, plus the key and host keys when they rode along.
#[derive(Debug, Clone)]
pub struct Enabled {
    pub method: Method,
    pub changed: bool,
    pub extension_installed: bool,
    pub sshd: SshdState,
    pub host_keys: Vec<SshPublicKey>,
    pub key: Option<KeyInstalled>,
}

/// Enables SSH and, in the same RunCommand, installs `key` and reads the host keys. The
/// extension path first installs the extension (an ARM call), then runs the service check the
/// doc leaves out. An `auto` choice on a VM whose version is unknown tries the capability and
/// falls back to the extension when Windows does not know it (0x800f080c).
pub async fn enable(
    arm: &ArmClient,
    vm: &Vm,
    choice: MethodChoice,
    key: Option<(SshPublicKey, KeyTarget)>,
    opts: EnableOptions,
) -> Result<Enabled, WorkflowError> {
    check_windows_running(vm)?;
    let (method, guessed) = match choice {
        MethodChoice::Fixed(m) => (m, false),
        MethodChoice::Auto => match auto_method(vm) {
            Some(m) => (m, false),
            None => (Method::Capability, true),
        },
    };
    match enable_with(arm, vm, method, key.clone(), opts).await {
        Err(WorkflowError::Windows(e))
            if guessed
                && crate::error::UserError::kind(&e) == kind::windows::CAPABILITY_UNAVAILABLE =>
        {
            tracing::debug!(vm = %vm.name, "capability unknown to this Windows; using the extension");
            enable_with(arm, vm, Method::Extension, key, opts).await
        }
        other => other,
    }
}

async fn enable_with(
    arm: &ArmClient,
    vm: &Vm,
    method: Method,
    key: Option<(SshPublicKey, KeyTarget)>,
    opts: EnableOptions,
) -> Result<Enabled, WorkflowError> {
    let extension_installed = match method {
        Method::Extension => ensure_extension(arm, vm).await?,
        Method::Capability => false,
    };
    let mut script = match method {
        Method::Capability => GuestScript::new().setup(),
        Method::Extension => GuestScript::new().ensure_service(),
    }
    .setup_options(opts.setup)
    .key_options(opts.key)
    .read_host_keys();
    let with_key = key.is_some();
    if let Some((k, target)) = key {
        script = script.install_key(k, target);
    }
    let result = run_guest_script(arm, vm, &script).await?;
    let sshd = result.setup_state()?;
    let key = if with_key {
        Some(result.key_installed()?)
    } else {
        None
    };
    let host_keys = result.host_keys()?;
    Ok(Enabled {
        method,
        changed: sshd.changed || extension_installed,
        extension_installed,
        sshd,
        host_keys,
        key,
    })
}

/// Installs one public key (the key step alone).
pub async fn copy_key(
    arm: &ArmClient,
    vm: &Vm,
    key: SshPublicKey,
    target: KeyTarget,
    opts: KeyOptions,
) -> Result<KeyInstalled, WorkflowError> {
    check_windows_running(vm)?;
    let script = GuestScript::new()
        .install_key(key, target)
        .key_options(opts);
    let result = run_guest_script(arm, vm, &script).await?;
    Ok(result.key_installed()?)
}

/// Looks inside the guest, changing nothing, at what SSH depends on (`check-prereqs`).
pub async fn inspect(
    arm: &ArmClient,
    vm: &Vm,
    user: &str,
) -> Result<serde_json::Value, WorkflowError> {
    check_windows_running(vm)?;
    let result = run_guest_script(arm, vm, &GuestScript::new().inspect(user)).await?;
    result.inspect.ok_or(WorkflowError::Windows(
        crate::windows::WindowsError::MissingStep { step: "inspect" },
    ))
}

/// Reads the guest's host public keys (the host-key step alone).
pub async fn read_host_keys(arm: &ArmClient, vm: &Vm) -> Result<Vec<SshPublicKey>, WorkflowError> {
    check_windows_running(vm)?;
    let result = run_guest_script(arm, vm, &GuestScript::new().read_host_keys()).await?;
    let keys = result.host_keys()?;
    if keys.is_empty() {
        return Err(WorkflowError::NoHostKeys);
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(os_version: Option<&str>, sku: Option<&str>) -> Vm {
        Vm {
            os_version: os_version.map(str::to_string),
            image_sku: sku.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn auto_method_follows_the_build_then_the_sku() {
        assert_eq!(
            auto_method(&vm(Some("10.0.17763.5458"), None)),
            Some(Method::Capability)
        );
        assert_eq!(
            auto_method(&vm(Some("10.0.14393.6897"), Some("2019-Datacenter"))),
            Some(Method::Extension)
        );
        assert_eq!(
            auto_method(&vm(None, Some("2016-Datacenter"))),
            Some(Method::Extension)
        );
        assert_eq!(
            auto_method(&vm(None, Some("2022-datacenter-azure-edition"))),
            Some(Method::Capability)
        );
        assert_eq!(auto_method(&vm(Some("garbage"), None)), None);
        assert_eq!(auto_method(&vm(None, None)), None);
    }

    #[test]
    fn methods_parse() {
        assert_eq!("AUTO".parse::<MethodChoice>(), Ok(MethodChoice::Auto));
        assert_eq!(
            "extension".parse::<MethodChoice>(),
            Ok(MethodChoice::Fixed(Method::Extension))
        );
        assert!("msi".parse::<MethodChoice>().is_err());
    }

    #[test]
    fn stopped_or_linux_vms_are_refused_before_runcommand() {
        let mut v = vm(None, None);
        v.name = "web01".into();
        v.os_type = Some("Windows".into());
        v.power_state = "deallocated".into();
        let err = check_windows_running(&v).unwrap_err();
        assert_eq!(crate::error::UserError::kind(&err), "workflow.not_running");
        v.os_type = Some("Linux".into());
        assert_eq!(
            crate::error::UserError::kind(&check_windows_running(&v).unwrap_err()),
            "workflow.not_windows"
        );
    }
}
