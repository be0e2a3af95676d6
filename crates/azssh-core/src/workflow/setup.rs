//! `setup_ssh`: the whole documented workflow for one VM, as timed steps. Ensure running, find
//! the address, then enable + key + host-key read in ONE RunCommand (each costs ≥ 20 s on Azure
//! and only one runs per VM at a time), open the port, pin the host keys read through the
//! control plane, and prove it with a strict-host-key SSH login running `hostname`/`whoami`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

use super::error::WorkflowError;
use super::guest::{self, MethodChoice};
use super::login_proof;
use super::pin;
use super::route::{Chosen, RouteRequest, choose_route};
use crate::azure::client::ArmClient;
use crate::azure::vm::{self, Vm};
use crate::ssh::keys::SshPublicKey;
use crate::windows::{KeyTarget, UserName};

/// What `setup_ssh` was asked to do.
#[derive(Debug, Clone)]
pub struct SetupRequest {
    pub user: UserName,
    pub key: SshPublicKey,
    pub identity: PathBuf,
    /// One or more sources (each gets its own NSG rule).
    pub sources: Vec<String>,
    /// The sources may admit the whole Internet.
    pub allow_internet: bool,
    /// Add a standing rule even under a JIT policy (default: request JIT access).
    pub permanent: bool,
    pub port: u16,
    pub priority: Option<i32>,
    pub method: MethodChoice,
    pub prefer_private_ip: bool,
    /// Start a stopped VM (default) rather than fail.
    pub start: bool,
    pub known_hosts: PathBuf,
    /// WSUS policy, sshd port and sshd_config fixes, each only when asked.
    pub options: guest::EnableOptions,
    /// The path to the VM (`via`, `bastion`, `jump`); the default picks the public IP, else a
    /// bastion in reach. `prefer_private_ip` and the port are taken from the fields above.
    pub route: RouteRequest,
}

/// One step of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub step: &'static str,
    pub ok: bool,
    pub duration_ms: u64,
    pub detail: Value,
}

/// The whole run; `failed` names the step that stopped it.
#[derive(Debug, Clone, Serialize)]
pub struct SetupReport {
    pub vm: String,
    pub resource_group: String,
    pub host: Option<String>,
    pub ssh_port: u16,
    pub user: String,
    pub ok: bool,
    pub failed: Option<&'static str>,
    pub steps: Vec<Step>,
    pub total_ms: u64,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

struct Run {
    report: SetupReport,
    started: Instant,
}

impl Run {
    /// Times `fut`; records a failed step and returns the error with the report so far.
    async fn step<T>(
        &mut self,
        name: &'static str,
        fut: impl std::future::Future<Output = Result<(T, Value), WorkflowError>>,
    ) -> Result<T, WorkflowError> {
        let t = Instant::now();
        let outcome = fut.await;
        let duration_ms = ms(t.elapsed());
        match outcome {
            Ok((value, detail)) => {
                self.report.steps.push(Step {
                    step: name,
                    ok: true,
                    duration_ms,
                    detail,
                });
                Ok(value)
            }
            Err(e) => {
                self.report.steps.push(Step {
                    step: name,
                    ok: false,
                    duration_ms,
                    detail: json!({"kind": crate::error::UserError::kind(&e), "message": e.to_string()}),
                });
                self.report.failed = Some(name);
                Err(e)
            }
        }
    }
}

/// Runs the workflow. On failure the report (with the failed step) comes back with the error.
pub async fn setup_ssh(
    arm: &ArmClient,
    vm: &Vm,
    req: &SetupRequest,
) -> Result<SetupReport, Box<(SetupReport, WorkflowError)>> {
    let (ssh_port, bad_port) = match pin::ssh_port(req.port) {
        Ok(port) => (port, None),
        Err(e) => (req.port, Some(e)),
    };
    let mut run = Run {
        report: SetupReport {
            vm: vm.name.clone(),
            resource_group: vm.resource_group.clone(),
            host: None,
            ssh_port,
            user: req.user.as_str().to_string(),
            ok: false,
            failed: None,
            steps: Vec::new(),
            total_ms: 0,
        },
        started: Instant::now(),
    };
    if let Some(e) = bad_port {
        return Err(Box::new((run.report, e.into())));
    }
    match steps(arm, vm, req, &mut run).await {
        Ok(()) => {
            run.report.ok = true;
            run.report.total_ms = ms(run.started.elapsed());
            Ok(run.report)
        }
        Err(e) => {
            run.report.total_ms = ms(run.started.elapsed());
            Err(Box::new((run.report, e)))
        }
    }
}

async fn steps(
    arm: &ArmClient,
    vm: &Vm,
    req: &SetupRequest,
    run: &mut Run,
) -> Result<(), WorkflowError> {
    let fresh = run
        .step("running", async {
            if req.start {
                let (fresh, started) = vm::ensure_running(arm, vm).await?;
                Ok((fresh, json!({"started": started})))
            } else {
                let fresh = vm::get_vm_by_id(arm, &vm.id).await?;
                guest::check_windows_running(&fresh)?;
                Ok((fresh, json!({"started": false})))
            }
        })
        .await?;
    let chosen = run
        .step("address", async {
            let mut route = req.route.clone();
            route.prefer_private_ip = req.prefer_private_ip;
            route.port = ssh_port_of(req);
            let chosen = choose_route(arm, &fresh, &route).await?;
            let detail = json!({
                "address": chosen.host, "via": chosen.route.via(), "reason": chosen.reason,
                "bastion": chosen.bastion.as_ref().map(|b| b.name.clone()),
                "public_ip": fresh.public_ip, "private_ip": fresh.private_ip,
            });
            Ok((chosen, detail))
        })
        .await?;
    let host = chosen.host.clone();
    run.report.host = Some(host.clone());
    let enabled = run
        .step("enable", async {
            let target = KeyTarget::User(req.user.clone());
            let e = guest::enable(
                arm,
                &fresh,
                req.method,
                Some((req.key.clone(), target)),
                req.options,
            )
            .await?;
            if e.sshd.port != req.port {
                return Err(WorkflowError::SshdPort {
                    vm: fresh.name.clone(),
                    sshd_port: e.sshd.port,
                    port: req.port,
                });
            }
            let key = e.key.clone();
            let detail = json!({
                "method": e.method, "changed": e.changed, "extension_installed": e.extension_installed,
                "sshd": e.sshd.sshd, "startup": e.sshd.startup, "firewall": e.sshd.firewall,
                "version": e.sshd.version, "os_build": e.sshd.os_build,
                "sshd_port": e.sshd.port, "network_category": e.sshd.network_category,
                "firewall_profile": e.sshd.firewall_profile, "firewall_rule": e.sshd.firewall_rule,
                "repaired": e.sshd.repaired, "windows_update_policy_set": e.sshd.windows_update_policy_set,
                "allow_groups": key.as_ref().map(|k| k.allow_groups.clone()),
                "allow_users": key.as_ref().map(|k| k.allow_users.clone()),
                "sshd_config_fixed": key.as_ref().and_then(|k| k.fixed.clone()),
                "key_path": key.as_ref().map(|k| k.path.clone()),
                "key_added": key.as_ref().map(|k| k.added),
                "key_fingerprint": req.key.fingerprint(),
                "host_keys": e.host_keys.iter().map(SshPublicKey::fingerprint).collect::<Vec<_>>(),
            });
            Ok((e, detail))
        })
        .await?;
    run.step("open-port", async {
        let sources = nsg_sources(arm, req, &chosen).await?;
        let outcome = super::nsg::open_port(
            arm,
            &fresh,
            &super::nsg::OpenPort {
                port: req.port,
                sources,
                priority: req.priority,
                name: None,
                protocol: None,
                allow_internet: req.allow_internet,
                permanent: req.permanent,
            },
        )
        .await?;
        if let Some((rule, priority, nsg)) =
            super::nsg::blocking_deny(arm, &fresh, req.port).await?
        {
            return Err(WorkflowError::BlockedByDeny {
                rule,
                priority,
                nsg,
                port: req.port,
            });
        }
        Ok(((), super::nsg::outcome_json(&outcome)))
    })
    .await?;
    let ssh_port = run.report.ssh_port;
    run.step("pin-host-keys", async {
        let pinned = pin::pin_keys(
            &req.known_hosts,
            &pin::vm_addresses(&fresh),
            ssh_port,
            &enabled.host_keys,
            false,
        )?;
        Ok(((), serde_json::to_value(&pinned).unwrap_or(Value::Null)))
    })
    .await?;
    run.step("ssh", async {
        let detail = check_login(req, &chosen, ssh_port).await?;
        Ok(((), detail))
    })
    .await?;
    Ok(())
}

/// Logs in with the user's key, verifying the host strictly against the pinned file only, and
/// runs `hostname` and `whoami` (both exist in cmd and PowerShell, whatever DefaultShell is).
/// Who the NSG must admit: through a bastion, its `AzureBastionSubnet` prefix and nothing else
/// (the VM is reached from that subnet, never from the Internet: Azure's "Working with NSG
/// access and Azure Bastion"); otherwise the sources the operator gave.
async fn nsg_sources(
    arm: &ArmClient,
    req: &SetupRequest,
    chosen: &Chosen,
) -> Result<Vec<String>, WorkflowError> {
    let Some(bastion) = &chosen.bastion else {
        if req.sources.is_empty() {
            return Err(crate::azure::error::AzureError::InvalidInput(
                "setup needs `source` (`--source`): the address the VM is reached from".into(),
            )
            .into());
        }
        return Ok(req.sources.clone());
    };
    let subnet_id = bastion.subnet_id().ok_or_else(|| {
        crate::azure::error::AzureError::InvalidInput(format!(
            "bastion `{}` has no `AzureBastionSubnet` to admit",
            bastion.name
        ))
    })?;
    let subnet = crate::azure::network::get_subnet(arm, subnet_id).await?;
    let prefix = subnet.properties.address_prefix.ok_or_else(|| {
        crate::azure::error::AzureError::InvalidInput(format!(
            "the subnet of bastion `{}` has no address prefix",
            bastion.name
        ))
    })?;
    Ok(vec![prefix])
}

fn ssh_port_of(req: &SetupRequest) -> u16 {
    pin::ssh_port(req.port).unwrap_or(req.port)
}

async fn check_login(
    req: &SetupRequest,
    chosen: &Chosen,
    port: u16,
) -> Result<Value, WorkflowError> {
    let mut opts = login_proof::identity_only_options(
        &chosen.host,
        port,
        &req.user,
        &req.identity,
        &req.known_hosts,
    );
    opts.route = chosen.route.clone();
    let mut out = login_proof::prove_login(opts).await?;
    out.insert("host".into(), json!(chosen.host));
    out.insert("port".into(), json!(port));
    Ok(Value::Object(out))
}

/// The private key for a public key file: the same path without `.pub`.
pub fn private_key_beside(public: &std::path::Path) -> Option<PathBuf> {
    let s = public.to_str()?;
    let private = PathBuf::from(s.strip_suffix(".pub")?);
    private.is_file().then_some(private)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::UserError;

    #[test]
    fn the_private_key_is_found_beside_the_public_one() {
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("id_ed25519");
        let public = dir.path().join("id_ed25519.pub");
        std::fs::write(&public, "x").unwrap();
        assert_eq!(private_key_beside(&public), None, "no private key yet");
        std::fs::write(&private, "x").unwrap();
        assert_eq!(private_key_beside(&public), Some(private));
        assert_eq!(private_key_beside(&dir.path().join("key.txt")), None);
    }

    #[test]
    fn no_public_ip_names_the_private_one_and_the_ways_to_reach_it() {
        let err = WorkflowError::NoPublicIp {
            vm: "web01".into(),
            private_ip: Some("10.0.0.4".into()),
        };
        assert_eq!(
            err.to_string(),
            "VM `web01` has no public IP address (its private address is 10.0.0.4)"
        );
        assert_eq!(err.kind(), "workflow.no_public_ip");
        assert!(err.hint().unwrap().contains("prefer_private_ip"));
    }
}
