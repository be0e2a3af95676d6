//! Where guests listen: one loopback address per guest in `127.77.0.0/16`, one port P shared by
//! all of them and reserved once per emulator (see the parent module's docs).

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use tokio::net::{TcpListener, TcpSocket};

/// The sentinel address that holds the reservation of P; never given to a guest.
pub const PORT_SENTINEL: Ipv4Addr = Ipv4Addr::new(127, 77, 255, 254);

/// The loopback address of the `index`th guest: `127.77.0.1`, `127.77.0.2`, ... skipping host
/// parts 0 and 255 so every address looks like a usable IPv4 host; `None` past 64 770 guests.
/// `127.77.255.0/24` is reserved for [`PORT_SENTINEL`].
pub fn guest_ip(index: u32) -> Option<Ipv4Addr> {
    let third = index / 254;
    let fourth = index % 254 + 1;
    (third < 255).then(|| Ipv4Addr::new(127, 77, third as u8, fourth as u8))
}

/// The one port every guest listens on, reserved for as long as this value lives.
#[derive(Debug)]
pub struct GuestPort {
    port: u16,
    // Bound without SO_REUSEADDR and never listening: it blocks another emulator from taking the
    // same P (its sentinel bind fails) without accepting connections.
    _sentinel: TcpSocket,
}

impl GuestPort {
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// Reserves the guest port: `preferred`, or any free port when 0.
pub fn reserve_guest_port(preferred: u16) -> io::Result<GuestPort> {
    let socket = TcpSocket::new_v4()?;
    let addr = SocketAddr::from((PORT_SENTINEL, preferred));
    socket.bind(addr).map_err(|e| bind_error(addr, e))?;
    let port = socket.local_addr()?.port();
    Ok(GuestPort {
        port,
        _sentinel: socket,
    })
}

/// Binds a guest's listener on `ip:port`, with SO_REUSEADDR so a guest whose sshd restarts can
/// bind again while old connections sit in TIME_WAIT. Needs a tokio runtime.
pub fn bind_guest_listener(ip: IpAddr, port: u16) -> io::Result<TcpListener> {
    let addr = SocketAddr::new(ip, port);
    let socket = match ip {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr).map_err(|e| bind_error(addr, e))?;
    socket.listen(1024)
}

fn bind_error(addr: SocketAddr, e: io::Error) -> io::Error {
    let hint = if e.kind() == io::ErrorKind::AddrNotAvailable {
        format!(
            "; this OS does not route all of 127.0.0.0/8 to loopback (macOS): add the address with `sudo ifconfig lo0 alias {} up`",
            addr.ip()
        )
    } else {
        String::new()
    };
    io::Error::new(e.kind(), format!("cannot bind `{addr}`: {e}{hint}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_ips_skip_network_and_broadcast_host_parts() {
        assert_eq!(guest_ip(0), Some(Ipv4Addr::new(127, 77, 0, 1)));
        assert_eq!(guest_ip(253), Some(Ipv4Addr::new(127, 77, 0, 254)));
        assert_eq!(guest_ip(254), Some(Ipv4Addr::new(127, 77, 1, 1)));
        let last = guest_ip(255 * 254 - 1).expect("last guest");
        assert_eq!(last, Ipv4Addr::new(127, 77, 254, 254));
        assert_eq!(guest_ip(255 * 254), None);
        assert_ne!(last, PORT_SENTINEL);
    }

    #[tokio::test]
    async fn a_reserved_port_cannot_be_reserved_twice() {
        let first = reserve_guest_port(0).expect("reserve");
        assert_ne!(first.port(), 0);
        let second = reserve_guest_port(first.port());
        assert!(
            second.is_err(),
            "second reservation of the same port must fail"
        );
        // Guests can still listen on P at their own addresses.
        let guest = bind_guest_listener(IpAddr::V4(Ipv4Addr::new(127, 77, 0, 9)), first.port());
        assert!(guest.is_ok(), "{guest:?}");
    }
}
