//! Choosing how to reach a VM, and saying why: a public IP → direct; else a bastion that
//! serves its virtual network (its own or a peered one) and can tunnel; else the jump hosts the
//! operator gave. `--bastion`/`--jump`/`via` force a path. A bastion's SKU and native-client
//! setting are checked here, before any token is asked for, so a Basic bastion, a Premium one
//! without tunneling and a Developer one in front of Windows each get their own clear refusal
//! (the CLI's own check lets Premium-without-tunneling through: Azure/azure-cli#20735).

use std::str::FromStr;
use std::sync::Arc;

use futures::FutureExt;

use super::error::WorkflowError;
use crate::azure::bastion::{self, BastionHost};
use crate::azure::client::ArmClient;
use crate::azure::resource_id::ResourceId;
use crate::azure::vm::Vm;
use crate::ssh::SshError;
use crate::ssh::route::{Bastion, BastionTarget, JumpHost, Route, RouteError, format_jumps};

/// The path asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Via {
    /// Public IP, else a bastion in reach, else the jump hosts given.
    #[default]
    Auto,
    Direct,
    Bastion,
    Jump,
}

impl FromStr for Via {
    type Err = String;
    fn from_str(s: &str) -> Result<Via, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(Via::Auto),
            "direct" => Ok(Via::Direct),
            "bastion" => Ok(Via::Bastion),
            "jump" => Ok(Via::Jump),
            other => Err(format!(
                "`{other}` is not a path: use \"direct\", \"bastion\", \"jump\" or \"auto\""
            )),
        }
    }
}

/// What the operator said about the path.
#[derive(Debug, Clone, Default)]
pub struct RouteRequest {
    pub via: Via,
    /// A bastion: `NAME` (in the VM's resource group), `RG/NAME`, or a resource id.
    pub bastion: Option<String>,
    pub jumps: Vec<JumpHost>,
    pub prefer_private_ip: bool,
    /// The VM port the path ends at (the bastion's `workloadHostPort`).
    pub port: u16,
}

/// The path taken.
#[derive(Debug, Clone)]
pub struct Chosen {
    pub route: Route,
    /// The VM address the SSH session checks host keys under (and direct TCP dials).
    pub host: String,
    /// Why this path, for the operator: "VM has a public IP", ...
    pub reason: String,
    /// The bastion used, if any.
    pub bastion: Option<BastionHost>,
}

impl Chosen {
    /// `connecting to rg/vm (10.0.0.4) through bastion `b` (no public IP; ...)`.
    pub fn report(&self, vm: &Vm) -> String {
        format!(
            "reaching `{}/{}` ({}) {} ({})",
            vm.resource_group,
            vm.name,
            self.host,
            self.route.describe(),
            self.reason
        )
    }
}

fn route_err(e: RouteError) -> WorkflowError {
    WorkflowError::Ssh(SshError::Route(e))
}

/// Picks the path to `vm` per `req` (see the module doc).
pub async fn choose_route(
    client: &ArmClient,
    vm: &Vm,
    req: &RouteRequest,
) -> Result<Chosen, WorkflowError> {
    let vm_label = format!("{}/{}", vm.resource_group, vm.name);
    let conflict = |option: &str, reason: &str| {
        route_err(RouteError::Conflict {
            option: option.to_string(),
            reason: reason.to_string(),
        })
    };
    match req.via {
        Via::Direct if req.bastion.is_some() || !req.jumps.is_empty() => {
            return Err(conflict(
                "via: \"direct\"",
                "cannot be combined with a bastion or jump hosts",
            ));
        }
        Via::Jump if req.jumps.is_empty() => {
            return Err(conflict("via: \"jump\"", "needs jump hosts (`--jump`)"));
        }
        _ => {}
    }
    let wants_bastion = req.via == Via::Bastion || req.bastion.is_some();
    let auto_direct = req.via == Via::Auto
        && !wants_bastion
        && req.jumps.is_empty()
        && (vm.public_ip.is_some() || req.prefer_private_ip);
    if req.via == Via::Direct || auto_direct {
        return direct(vm, req.prefer_private_ip);
    }
    let private_ip = vm
        .private_ip
        .clone()
        .ok_or_else(|| WorkflowError::NoPublicIp {
            vm: vm_label.clone(),
            private_ip: None,
        })?;
    if !wants_bastion && !req.jumps.is_empty() {
        return Ok(Chosen {
            route: Route {
                bastion: None,
                jumps: req.jumps.clone(),
            },
            host: private_ip,
            reason: "jump hosts given".to_string(),
            bastion: None,
        });
    }
    // A bastion: the one named, else the first in reach that can tunnel.
    let (host, reason) = match &req.bastion {
        Some(spec) => {
            let b = named_bastion(client, vm, spec).await?;
            check_tunneling(&b, vm, req.port).map_err(route_err)?;
            (b, "bastion given".to_string())
        }
        None => {
            let found = bastion::bastions_for_vm(client, vm).await?;
            pick_bastion(vm, found, req.port, req.jumps.is_empty())?
        }
    };
    let target = if req.jumps.is_empty() {
        BastionTarget::Vm {
            resource_id: vm.id.clone(),
        }
    } else {
        ip_connect_target(&host, &req.jumps[0]).map_err(route_err)?
    };
    let data_plane = data_plane(client, &host).map_err(route_err)?;
    Ok(Chosen {
        route: Route {
            bastion: Some((data_plane, target)),
            jumps: req.jumps.clone(),
        },
        host: private_ip,
        reason,
        bastion: Some(host),
    })
}

fn direct(vm: &Vm, prefer_private_ip: bool) -> Result<Chosen, WorkflowError> {
    let label = format!("{}/{}", vm.resource_group, vm.name);
    let (host, reason) = if prefer_private_ip {
        (vm.private_ip.clone(), "--prefer-private-ip")
    } else {
        (vm.public_ip.clone(), "VM has a public IP")
    };
    let host = host.ok_or_else(|| WorkflowError::NoPublicIp {
        vm: label,
        private_ip: vm.private_ip.clone(),
    })?;
    Ok(Chosen {
        route: Route::direct(),
        host,
        reason: reason.to_string(),
        bastion: None,
    })
}

/// `NAME` (the VM's resource group), `RG/NAME` or a resource id.
async fn named_bastion(
    client: &ArmClient,
    vm: &Vm,
    spec: &str,
) -> Result<BastionHost, WorkflowError> {
    let spec = spec.trim();
    let (rg, name) = if spec.starts_with('/') {
        let b = bastion::get_bastion_by_id(client, spec).await;
        return b.map_err(|e| not_found(e, spec, ""));
    } else {
        match spec.split_once('/') {
            Some((rg, name)) => (rg.to_string(), name.to_string()),
            None => (vm.resource_group.clone(), spec.to_string()),
        }
    };
    bastion::get_bastion(client, &rg, &name)
        .await
        .map_err(|e| not_found(e, &name, &rg))
}

fn not_found(e: crate::azure::error::AzureError, name: &str, rg: &str) -> WorkflowError {
    if e.status() == Some(404) {
        route_err(RouteError::BastionNotFound {
            name: name.to_string(),
            resource_group: if rg.is_empty() {
                "its id".to_string()
            } else {
                rg.to_string()
            },
        })
    } else {
        WorkflowError::Azure(e)
    }
}

/// The first bastion that can tunnel to `vm`; none in reach is `NoRoute`; some in reach but
/// none able is the first one's refusal (it says which setting to change).
fn pick_bastion(
    vm: &Vm,
    found: Vec<BastionHost>,
    port: u16,
    needs_tunnel_to_vm: bool,
) -> Result<(BastionHost, String), WorkflowError> {
    let mut first_refusal = None;
    for b in found {
        match check_tunneling(&b, vm, port) {
            Ok(()) if needs_tunnel_to_vm || b.properties.enable_ip_connect == Some(true) => {
                let reason = format!(
                    "no public IP; bastion `{}` serves its virtual network",
                    b.name
                );
                return Ok((b, reason));
            }
            Ok(()) => {}
            Err(e) => {
                first_refusal.get_or_insert(e);
            }
        }
    }
    Err(route_err(first_refusal.unwrap_or(RouteError::NoRoute {
        vm: format!("{}/{}", vm.resource_group, vm.name),
    })))
}

/// Whether `b` can carry a native-client tunnel to `vm`'s `port` (BASTION.md §1).
pub fn check_tunneling(b: &BastionHost, vm: &Vm, port: u16) -> Result<(), RouteError> {
    let rg = b.resource_group();
    let refuse = |reason: String, hint: String| RouteError::BastionUnsupported {
        bastion: b.name.clone(),
        target: format!("{}/{}", vm.resource_group, vm.name),
        reason,
        hint,
    };
    let enable = format!(
        "turn on native client support: `az network bastion update -g {rg} -n {} --enable-tunneling true`",
        b.name
    );
    match b.sku_name() {
        "Standard" | "Premium" if b.tunneling() => {}
        "Standard" | "Premium" => {
            return Err(refuse(
                format!(
                    "native client support (`enableTunneling`) is off on this {} bastion",
                    b.sku_name()
                ),
                enable,
            ));
        }
        "Basic" => {
            return Err(refuse(
                "the Basic SKU has no native client support".into(),
                format!(
                    "upgrade it: `az network bastion update -g {rg} -n {} --sku Standard --enable-tunneling true`, or pass `--jump`",
                    b.name
                ),
            ));
        }
        "Developer" | "QuickConnect" if vm.is_windows() => {
            return Err(refuse(
                format!(
                    "the {} SKU reaches Linux VMs over SSH only, and this VM runs Windows",
                    b.sku_name()
                ),
                "use a Standard or Premium bastion with native client support, or pass `--jump`"
                    .into(),
            ));
        }
        "Developer" | "QuickConnect" => {
            return Err(refuse(
                format!(
                    "azssh tunnels through Standard and Premium bastions; the {} SKU's port {port} connection is not supported",
                    b.sku_name()
                ),
                "use a Standard or Premium bastion with native client support, or pass `--jump`"
                    .into(),
            ));
        }
        other => {
            return Err(refuse(
                format!("unknown SKU `{other}`"),
                "use a Standard or Premium bastion with native client support".into(),
            ));
        }
    }
    if b.properties.dns_name.as_deref().unwrap_or("").is_empty() {
        return Err(refuse(
            "it has no `dnsName` yet".into(),
            "wait until the bastion has finished provisioning".into(),
        ));
    }
    Ok(())
}

/// A bastion as first hop before jump hosts reaches the first jump host by address (IP connect,
/// which needs `enableIpConnect`; BASTION.md §2.1).
fn ip_connect_target(b: &BastionHost, first: &JumpHost) -> Result<BastionTarget, RouteError> {
    if b.properties.enable_ip_connect != Some(true) {
        return Err(RouteError::BastionUnsupported {
            bastion: b.name.clone(),
            target: first.host.clone(),
            reason: "reaching a jump host by address needs IP-based connection (`enableIpConnect`)"
                .into(),
            hint: format!(
                "turn it on: `az network bastion update -g {} -n {} --enable-ip-connect true`",
                b.resource_group(),
                b.name
            ),
        });
    }
    if first.host.parse::<std::net::IpAddr>().is_err() {
        return Err(RouteError::BadJump {
            spec: format_jumps(std::slice::from_ref(first)),
            reason: "after a bastion, the first jump host must be a private IP address".into(),
        });
    }
    let id = ResourceId::parse(&b.id).map_err(|e| RouteError::BadJump {
        spec: first.host.clone(),
        reason: e.to_string(),
    })?;
    Ok(BastionTarget::Ip {
        resource_id: format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Network/bh-hostConnect/{}",
            id.subscription(),
            id.resource_group().unwrap_or_default(),
            first.host
        ),
        ip: first.host.clone(),
    })
}

/// The bastion's data plane, fed with this client's ARM tokens and `AZSSH_CA_BUNDLE`'s roots.
pub fn data_plane(client: &ArmClient, b: &BastionHost) -> Result<Bastion, RouteError> {
    let roots = crate::tls::extra_roots_from_env().map_err(|e| RouteError::BastionUnreachable {
        bastion: b.name.clone(),
        host: b.properties.dns_name.clone().unwrap_or_default(),
        reason: e.to_string(),
    })?;
    let arm = client.clone();
    let tokens: crate::ssh::route::ArmTokenFn = Arc::new(move || {
        let arm = arm.clone();
        async move { arm.access_token().await.map_err(|e| e.to_string()) }.boxed()
    });
    Bastion::new(
        &b.name,
        b.properties.dns_name.as_deref().unwrap_or_default(),
        tokens,
        roots,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bastion(sku: &str, tunneling: bool) -> BastionHost {
        serde_json::from_value(serde_json::json!({
            "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/bastionHosts/b1",
            "name": "b1",
            "sku": {"name": sku},
            "properties": {"dnsName": "bst.example", "enableTunneling": tunneling}
        }))
        .unwrap()
    }

    fn vm(os: &str) -> Vm {
        Vm {
            name: "app".into(),
            resource_group: "rg".into(),
            os_type: Some(os.into()),
            ..Vm::default()
        }
    }

    #[test]
    fn each_sku_that_cannot_tunnel_gets_its_own_refusal() {
        let win = vm("Windows");
        assert!(check_tunneling(&bastion("Standard", true), &win, 22).is_ok());
        assert!(check_tunneling(&bastion("Premium", true), &win, 22).is_ok());
        let basic = check_tunneling(&bastion("Basic", false), &win, 22).unwrap_err();
        assert!(
            basic
                .to_string()
                .contains("Basic SKU has no native client support")
        );
        let premium = check_tunneling(&bastion("Premium", false), &win, 22).unwrap_err();
        assert!(
            premium.to_string().contains("`enableTunneling`) is off"),
            "{premium}"
        );
        use crate::error::UserError;
        assert!(premium.hint().unwrap().contains("--enable-tunneling true"));
        let dev = check_tunneling(&bastion("Developer", false), &win, 22).unwrap_err();
        assert!(dev.to_string().contains("Linux VMs over SSH only"), "{dev}");
        assert_eq!(dev.kind(), "route.bastion_unsupported");
    }

    #[test]
    fn a_public_ip_means_direct_unless_told_otherwise() {
        let mut v = vm("Windows");
        v.public_ip = Some("20.0.0.1".into());
        v.private_ip = Some("10.0.0.4".into());
        let c = direct(&v, false).unwrap();
        assert!(c.route.is_direct());
        assert_eq!(c.host, "20.0.0.1");
        assert_eq!(direct(&v, true).unwrap().host, "10.0.0.4");
        assert_eq!("bastion".parse::<Via>().unwrap(), Via::Bastion);
        assert!("tor".parse::<Via>().is_err());
    }

    #[test]
    fn nothing_in_reach_is_no_route_with_the_flags_to_use() {
        let err = pick_bastion(&vm("Windows"), Vec::new(), 22, true).unwrap_err();
        use crate::error::UserError;
        assert_eq!(err.kind(), "route.no_route");
        assert!(err.hint().unwrap().contains("--bastion"));
        let refused =
            pick_bastion(&vm("Windows"), vec![bastion("Basic", false)], 22, true).unwrap_err();
        assert_eq!(refused.kind(), "route.bastion_unsupported");
    }
}
