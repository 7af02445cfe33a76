//! This host's interfaces and addresses, for rules that name them (`(em0)`, `self`, ...).
//!
//! Read with `getifaddrs(3)`, which glibc answers from one netlink dump of the kernel's
//! links and addresses (RTM_GETLINK, RTM_GETADDR): every interface appears (with its
//! flags) whether or not it has an address, and addresses come in the kernel's order,
//! the primary address of each subnet first.

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::rules::{HostAddr, HostAddrs, HostIface, Resolved, Ruleset};

/// `rs` with its interface addresses (`(em0)`, `em0:network`, `self`, ...) filled in from
/// this host's interfaces as they are now, and what each became (with warnings for
/// interfaces missing or without addresses). `rs` itself stays unresolved: call this
/// again, then apply the result, whenever the host's addresses change.
pub fn resolve(rs: &Ruleset) -> std::io::Result<(Ruleset, Vec<Resolved>)> {
    if rs.options.interface_tables.is_empty() {
        return Ok((rs.clone(), Vec::new()));
    }
    Ok(crate::rules::resolve_interfaces(rs, &read_addresses()?))
}

/// Whether an interface of this name exists in this network namespace.
pub fn interface_exists(name: &str) -> bool {
    let Ok(name) = std::ffi::CString::new(name) else { return false };
    // SAFETY: a NUL-terminated string that outlives the call.
    unsafe { libc::if_nametoindex(name.as_ptr()) != 0 }
}

/// The interfaces of the network namespace this process runs in, with their addresses.
pub fn read_addresses() -> std::io::Result<HostAddrs> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head into `list`, freed below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut ifaces: BTreeMap<String, HostIface> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut p = list;
    while !p.is_null() {
        // SAFETY: `p` is an element of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*p };
        p = ifa.ifa_next;
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { CStr::from_ptr(ifa.ifa_name) }.to_string_lossy().into_owned();
        let flags = ifa.ifa_flags;
        let iface = ifaces.entry(name.clone()).or_insert_with(|| {
            order.push(name.clone());
            HostIface { name, loopback: false, addrs: Vec::new() }
        });
        iface.loopback |= flags & libc::IFF_LOOPBACK as u32 != 0;
        // SAFETY: the sockaddrs are owned by the list (or null).
        let (addr, mask, other) = unsafe { (ip_of(ifa.ifa_addr), ip_of(ifa.ifa_netmask), ip_of(ifa.ifa_ifu)) };
        let Some(addr) = addr else { continue };
        let prefix = mask.map_or(if addr.is_ipv4() { 32 } else { 128 }, prefix_len);
        let Ok(net) = IpNet::new(addr, prefix) else { continue };
        // ifa_ifu is the broadcast address on broadcast interfaces, the peer on
        // point-to-point ones.
        let (broadcast, peer) = if flags & libc::IFF_POINTOPOINT as u32 != 0 {
            (None, other)
        } else if flags & libc::IFF_BROADCAST as u32 != 0 {
            (other.and_then(|a| if let IpAddr::V4(b) = a { Some(b) } else { None }), None)
        } else {
            (None, None)
        };
        iface.addrs.push(HostAddr { net, broadcast, peer });
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    Ok(HostAddrs { ifaces: order.into_iter().filter_map(|n| ifaces.remove(&n)).collect() })
}

/// The IP address in a sockaddr, if it holds one.
///
/// # Safety
/// `sa` must be null or point to a sockaddr of the size its family implies.
unsafe fn ip_of(sa: *const libc::sockaddr) -> Option<IpAddr> {
    if sa.is_null() {
        return None;
    }
    // SAFETY: the caller's; the family says which struct it is.
    unsafe {
        match i32::from((*sa).sa_family) {
            libc::AF_INET => {
                let sin = &*(sa as *const libc::sockaddr_in);
                Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))))
            }
            libc::AF_INET6 => {
                let sin6 = &*(sa as *const libc::sockaddr_in6);
                Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
            }
            _ => None,
        }
    }
}

/// The prefix length of a netmask (its leading one bits).
fn prefix_len(mask: IpAddr) -> u8 {
    match mask {
        IpAddr::V4(m) => u32::from(m).leading_ones() as u8,
        IpAddr::V6(m) => u128::from(m).leading_ones() as u8,
    }
}

#[cfg(test)]
mod tests {
    /// The loopback device is always there with 127.0.0.1/8 (every namespace brings `lo`
    /// up with it in the tests' and the CI's environments).
    #[test]
    fn knows_which_interfaces_exist() {
        assert!(super::interface_exists("lo"));
        assert!(!super::interface_exists("xw-no-such-if"));
    }

    #[test]
    fn reads_the_loopback_device() {
        let host = super::read_addresses().expect("getifaddrs works");
        let lo = host.ifaces.iter().find(|i| i.name == "lo").expect("lo is listed");
        assert!(lo.loopback);
        assert!(lo.addrs.iter().any(|a| a.net == "127.0.0.1/8".parse().unwrap()), "{lo:?}");
    }
}
