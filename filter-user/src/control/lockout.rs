//! Anti-lockout: would a ruleset block the TCP connection a change came in on?
//!
//! The reference model (`crate::model`) decides, on the ruleset as parsed, two packets
//! from the peer to the local address and port on the interface that carries them: an
//! ACK of the connection itself and a SYN of a new one to the same service (a dropped
//! SSH session or API client must be able to come back). The ACK may instead pass on
//! the state of a tracked flow when the new ruleset keeps state and the kernel's flow
//! table holds this connection as answered. A connection on an interface xdpwall does
//! not filter (loopback, say) is never at risk.
//!
//! The replies matter too: an ACK from the local end to the peer, judged by the rules
//! for packets leaving (where no rule matching passes), may likewise pass on state.

use std::{
    ffi::CStr,
    net::{IpAddr, SocketAddr},
};

use filter_common::wire;

use crate::{
    dataplane::{self, FlowFilter, Paths, State},
    model::{
        self, ModelDecision,
        packet::{Fields, Transport},
    },
    rules::{Action, Direction, Ruleset},
};

/// A TCP connection to keep open, seen from this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connection {
    /// The remote end (the operator).
    pub peer: SocketAddr,
    /// The local end (the daemon's listener, sshd).
    pub local: SocketAddr,
}

impl Connection {
    /// The connection `(peer, local)`, IPv4-mapped IPv6 addresses made IPv4.
    pub fn new(peer: SocketAddr, local: SocketAddr) -> Connection {
        let canon = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
        Connection { peer: canon(peer), local: canon(local) }
    }

    /// The SSH session this process runs in, from `SSH_CONNECTION`
    /// (`client-ip client-port server-ip server-port`).
    pub fn from_ssh_env() -> Option<Connection> {
        Connection::parse_ssh(&std::env::var("SSH_CONNECTION").ok()?)
    }

    fn parse_ssh(value: &str) -> Option<Connection> {
        let w: Vec<&str> = value.split_whitespace().collect();
        let [cip, cport, sip, sport] = w.as_slice() else { return None };
        let peer = SocketAddr::new(cip.parse().ok()?, cport.parse().ok()?);
        let local = SocketAddr::new(sip.parse().ok()?, sport.parse().ok()?);
        Some(Connection::new(peer, local))
    }
}

/// Why `ruleset` would cut `conn` off, `None` when it would not.
pub(super) fn check(paths: &Paths, ruleset: &Ruleset, conn: &Connection) -> Result<Option<String>, dataplane::Error> {
    let Some(state) = State::read(&paths.state_file())? else { return Ok(None) };
    let Some(iface) = interface_of(conn.local.ip()) else { return Ok(None) };
    if !state.interfaces.iter().any(|i| i.name == iface) {
        return Ok(None);
    }
    let packet = |flags: u8, way: Direction| {
        let (from, to) = if way == Direction::In { (conn.peer, conn.local) } else { (conn.local, conn.peer) };
        Fields {
            vlan: None,
            src: from.ip(),
            dst: to.ip(),
            protocol: wire::IPPROTO_TCP,
            transport: Transport::Ports { src: from.port(), dst: to.port(), tcp_flags: Some(flags) },
        }
    };
    let stateful = ruleset.rules.iter().any(|r| r.keep_state);
    let cases = [
        ("this connection", wire::TCP_ACK, Direction::In),
        ("the replies of this connection", wire::TCP_ACK, Direction::Out),
        ("a new connection", wire::TCP_SYN, Direction::In),
    ];
    for (what, flags, way) in cases {
        let decision = model::decide_fields_going(ruleset, &packet(flags, way), Some(&iface), way);
        if model::action_going(ruleset, &decision, way) == Action::Pass {
            continue;
        }
        if flags == wire::TCP_ACK && stateful && tracked(paths, conn)? {
            continue;
        }
        let by = match decision {
            ModelDecision::Rule(i) => format!("rule {} `{}`", i + 1, ruleset.rules[i].text),
            _ => "the default policy (block)".to_string(),
        };
        return Ok(Some(format!(
            "the ruleset would block {what} from {} to {} on {iface} ({by}): that is the connection this change came in on",
            conn.peer, conn.local
        )));
    }
    Ok(None)
}

/// Whether the kernel's flow table holds `conn` as an answered flow.
fn tracked(paths: &Paths, conn: &Connection) -> Result<bool, dataplane::Error> {
    let filter = FlowFilter { proto: Some("tcp".into()), host: Some(conn.peer.ip()), port: Some(conn.local.port()) };
    let ends = |a: IpAddr, ap: u16, b: IpAddr, bp: u16| {
        (SocketAddr::new(a, ap), SocketAddr::new(b, bp)) == (conn.peer, conn.local)
            || (SocketAddr::new(b, bp), SocketAddr::new(a, ap)) == (conn.peer, conn.local)
    };
    Ok(dataplane::list_states(paths, &filter)?.iter().any(|f| f.answered && ends(f.src, f.sport, f.dst, f.dport)))
}

/// The interface that holds `addr`, if any.
fn interface_of(addr: IpAddr) -> Option<String> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list`, freed below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return None;
    }
    let mut found = None;
    let mut cur = list;
    while !cur.is_null() {
        // SAFETY: a node of the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: a non-null sockaddr whose family says which struct it is.
        let here = unsafe {
            match i32::from((*ifa.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                    IpAddr::from(u32::from_be(sin.sin_addr.s_addr).to_be_bytes())
                }
                libc::AF_INET6 => {
                    let sin6 = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                    IpAddr::from(sin6.sin6_addr.s6_addr)
                }
                _ => continue,
            }
        };
        if here == addr {
            // SAFETY: a NUL-terminated name owned by the list.
            found = Some(unsafe { CStr::from_ptr(ifa.ifa_name) }.to_string_lossy().into_owned());
            break;
        }
    }
    // SAFETY: the list from getifaddrs, freed once.
    unsafe { libc::freeifaddrs(list) };
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_connection_is_parsed() {
        let c = Connection::parse_ssh("192.0.2.7 51234 10.0.0.2 22").unwrap();
        assert_eq!(c.peer, "192.0.2.7:51234".parse().unwrap());
        assert_eq!(c.local, "10.0.0.2:22".parse().unwrap());
        assert_eq!(Connection::parse_ssh("::ffff:192.0.2.7 1 ::1 22").unwrap().peer.ip().to_string(), "192.0.2.7");
        assert!(Connection::parse_ssh("192.0.2.7 51234 10.0.0.2").is_none());
        assert!(Connection::parse_ssh("x 1 y 2").is_none());
    }

    #[test]
    fn loopback_is_found_on_lo() {
        assert_eq!(interface_of("127.0.0.1".parse().unwrap()).as_deref(), Some("lo"));
        assert_eq!(interface_of("192.0.2.254".parse().unwrap()), None);
    }
}
