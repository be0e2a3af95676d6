//! Jump hosts as OpenSSH's `ProxyJump` (`-J`) writes them: `[user@]host[:port][,next...]`,
//! each hop reached through a `direct-tcpip` channel of the one before, its host key verified
//! like any other host's. A hop logs in with its own credentials, as under `ssh -J`: the agent,
//! the hop's `IdentityFile` in ssh_config, else the default identities; never the destination's
//! `-i` keys or password.

use super::Route;
use super::error::RouteError;
use crate::ssh::connect::ConnectOptions;

/// One hop of a jump chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JumpHost {
    pub user: Option<String>,
    pub host: String,
    /// `None`: the hop's `~/.ssh/config` `Port`, else 22.
    pub port: Option<u16>,
}

impl std::fmt::Display for JumpHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            write!(f, "{}", self.host)?;
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

/// Parses a `ProxyJump` value; `none` (OpenSSH's way to switch a configured jump off) and the
/// empty string are no hops.
pub fn parse_jumps(spec: &str) -> Result<Vec<JumpHost>, RouteError> {
    let spec = spec.trim();
    if spec.is_empty() || spec.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    spec.split(',')
        .map(|hop| parse_hop(spec, hop.trim()))
        .collect()
}

fn parse_hop(spec: &str, hop: &str) -> Result<JumpHost, RouteError> {
    let bad = |reason: &str| RouteError::BadJump {
        spec: spec.to_string(),
        reason: reason.to_string(),
    };
    // `ssh://[user@]host[:port]` is OpenSSH's other spelling.
    let hop = hop.strip_prefix("ssh://").unwrap_or(hop);
    if hop.is_empty() {
        return Err(bad("an empty hop (two commas, or a trailing comma)"));
    }
    let (user, rest) = match hop.rsplit_once('@') {
        Some((u, r)) if !u.is_empty() => (Some(u.to_string()), r),
        Some(_) => return Err(bad("an empty user before `@`")),
        None => (None, hop),
    };
    let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
        let (h, after) = inner.split_once(']').ok_or_else(|| bad("unbalanced `[`"))?;
        match after {
            "" => (h, None),
            p => (
                h,
                Some(p.strip_prefix(':').ok_or_else(|| bad("junk after `]`"))?),
            ),
        }
    } else {
        match rest.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    if host.is_empty() {
        return Err(bad("no host name"));
    }
    if host.starts_with('-') || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("a host name may not start with `-` or hold spaces"));
    }
    let port = match port {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad(&format!("`{p}` is not a port number")))?,
        ),
    };
    Ok(JumpHost {
        user,
        host: host.to_string(),
        port,
    })
}

/// The options to log into jump host `hop`, reached along `before`, on the way to the
/// destination of `target`. ssh(1) on `-J`: "configuration directives supplied on the
/// command-line generally apply to the destination host and not any specified jump hosts. Use
/// ~/.ssh/config to specify configuration for jump hosts." OpenSSH's ProxyJump runs
/// `ssh -W %h:%p` for the hop passing on only `-F`, `-v` and the address family: no `-i`, no
/// password. So the destination's identity files are dropped (an empty list makes the hop take
/// its ssh_config `IdentityFile`, else `~/.ssh/id_*`) and its password is not sent to the hop:
/// offering the destination's key to a hop both leaks which keys the user holds and spends the
/// hop's `MaxAuthTries`. The agent, the ssh_config file, host-key policy, prompt and deadlines
/// stay (a hop with an encrypted key or a password still asks on the terminal).
pub fn hop_options(target: &ConnectOptions, hop: &JumpHost, before: Route) -> ConnectOptions {
    let mut o = target.clone();
    o.host = hop.host.clone();
    o.port = hop.port;
    o.user = hop.user.clone();
    o.route = before;
    o.identity_files = Vec::new();
    o.password = None;
    o
}

/// The chain as `-J` takes it, for messages and for `ssh-config`.
pub fn format_jumps(hops: &[JumpHost]) -> String {
    hops.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxyjump_forms_parse() {
        let hops =
            parse_jumps("ops@bastion.contoso.net:2222,10.0.0.5,[fe80::1]:22,ssh://a@b").unwrap();
        assert_eq!(
            hops[0],
            JumpHost {
                user: Some("ops".into()),
                host: "bastion.contoso.net".into(),
                port: Some(2222)
            }
        );
        assert_eq!(hops[1].host, "10.0.0.5");
        assert_eq!(hops[1].port, None);
        assert_eq!(hops[2].host, "fe80::1");
        assert_eq!(hops[2].port, Some(22));
        assert_eq!(hops[3].user.as_deref(), Some("a"));
        assert_eq!(
            format_jumps(&hops),
            "ops@bastion.contoso.net:2222,10.0.0.5,[fe80::1]:22,a@b"
        );
        assert!(parse_jumps("none").unwrap().is_empty());
    }

    #[test]
    fn jump_hops_get_neither_the_destinations_identity_files_nor_its_password() {
        let mut target = ConnectOptions::new("10.0.0.4");
        target.identity_files = vec!["/keys/target_only".into()];
        target.password = Some(crate::secret::Secret::new("target-password".to_string()));
        target.user = Some("azureuser".into());
        let hops = parse_jumps("ops@jump.contoso.net:2222").unwrap();
        let o = hop_options(&target, &hops[0], Route::direct());
        assert!(o.identity_files.is_empty(), "{:?}", o.identity_files);
        assert!(o.password.is_none());
        assert!(o.use_agent, "the agent still serves the hop");
        assert_eq!(
            (o.host.as_str(), o.port, o.user.as_deref()),
            ("jump.contoso.net", Some(2222), Some("ops"))
        );
        assert_eq!(target.identity_files.len(), 1, "the destination keeps `-i`");
    }

    #[test]
    fn bad_jumps_say_what_is_wrong() {
        for (spec, want) in [
            ("a,,b", "empty hop"),
            ("host:99999", "not a port"),
            ("@host", "empty user"),
            ("[::1", "unbalanced"),
            ("-oProxyCommand=x", "may not start with `-`"),
        ] {
            let err = parse_jumps(spec).unwrap_err();
            assert!(err.to_string().contains(want), "{spec}: {err}");
        }
    }
}
