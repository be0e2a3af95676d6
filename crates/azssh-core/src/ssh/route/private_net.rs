//! `AZSSH_PRIVATE_NET=<private prefix>=<local prefix>`: where a VNet's private addresses are
//! reached from this machine when they are not routable as they are (the emulator serves
//! `10.a.b.c` on loopback `127.(128+a).b.c`; a NAT or lab network may do the same). Only the
//! socket address is translated: host keys are still checked under the VM's own address, which
//! is what `pin_host_keys` records.

use std::net::Ipv4Addr;

/// The variable's name.
pub const PRIVATE_NET_ENV: &str = "AZSSH_PRIVATE_NET";

/// One prefix mapped onto another of the same length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrivateNet {
    from: Ipv4Addr,
    to: Ipv4Addr,
    len: u8,
}

impl PrivateNet {
    /// `10.0.0.0/9=127.128.0.0/9`; `None` for anything else (different lengths included).
    pub fn parse(spec: &str) -> Option<PrivateNet> {
        let (from, to) = spec.trim().split_once('=')?;
        let (from, len_a) = prefix(from)?;
        let (to, len_b) = prefix(to)?;
        (len_a == len_b).then_some(PrivateNet {
            from,
            to,
            len: len_a,
        })
    }

    pub fn from_env() -> Option<PrivateNet> {
        let value = std::env::var(PRIVATE_NET_ENV).ok()?;
        let parsed = PrivateNet::parse(&value);
        if parsed.is_none() && !value.trim().is_empty() {
            tracing::warn!(
                "ignoring `{PRIVATE_NET_ENV}={value}`: expected `10.0.0.0/9=127.128.0.0/9`"
            );
        }
        parsed
    }

    /// The local image of `host` when it lies in the private prefix; else `host` unchanged.
    pub fn translate(&self, host: &str) -> String {
        let Ok(ip) = host.parse::<Ipv4Addr>() else {
            return host.to_string();
        };
        let mask = if self.len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.len))
        };
        if u32::from(ip) & mask != u32::from(self.from) & mask {
            return host.to_string();
        }
        Ipv4Addr::from((u32::from(self.to) & mask) | (u32::from(ip) & !mask)).to_string()
    }
}

/// `host` as this machine reaches it (see the module doc).
pub fn local_address(host: &str) -> String {
    match PrivateNet::from_env() {
        Some(net) => net.translate(host),
        None => host.to_string(),
    }
}

fn prefix(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (ip, len) = s.trim().split_once('/')?;
    let len: u8 = len.parse().ok().filter(|l| *l <= 32)?;
    Some((ip.parse().ok()?, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vnet_addresses_map_onto_their_loopback_image() {
        let net = PrivateNet::parse("10.0.0.0/9=127.128.0.0/9").unwrap();
        assert_eq!(net.translate("10.0.0.7"), "127.128.0.7");
        assert_eq!(net.translate("10.100.3.4"), "127.228.3.4");
        assert_eq!(net.translate("10.200.0.1"), "10.200.0.1");
        assert_eq!(net.translate("192.168.1.1"), "192.168.1.1");
        assert_eq!(net.translate("jump.contoso.net"), "jump.contoso.net");
        assert!(PrivateNet::parse("10.0.0.0/8=127.0.0.0/9").is_none());
        assert!(PrivateNet::parse("nonsense").is_none());
    }
}
