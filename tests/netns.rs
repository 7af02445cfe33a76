//! Network namespaces and veth pairs for traffic tests.
//!
//! The filter's interface stays in the root namespace (bpffs is not visible inside
//! `ip netns exec`), and only the peer end goes into a namespace, from where test traffic is
//! sent. Both types delete what they made when dropped, also while a test panics. Names and
//! subnets never collide between tests running in parallel threads or processes.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Command, Output};
use std::sync::{Mutex, Once};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::next_id;

/// A network namespace `xw-<prefix>-<pid>-<n>`, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates a namespace (with `lo` up) whose name starts with `xw-<prefix>-`.
    ///
    /// The first call in a process also deletes namespaces left by test processes that died
    /// before they could clean up.
    pub fn new(prefix: &str) -> Result<Netns> {
        static SWEEP: Once = Once::new();
        SWEEP.call_once(sweep_stale_namespaces);

        let name = format!("xw-{prefix}-{}-{}", std::process::id(), next_id());
        ip(&["netns", "add", &name])?;
        let netns = Netns { name };
        ip(&["-n", &netns.name, "link", "set", "lo", "up"])?;
        Ok(netns)
    }

    /// The namespace's name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `f` on a new thread that has entered this namespace, and returns its result.
    /// Sockets made in `f` live in the namespace. A panic in `f` is passed on.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|scope| {
            let thread = scope.spawn(move || {
                let ns = File::open(&path).unwrap_or_else(|e| panic!("opening {path}: {e}"));
                // SAFETY: `ns` is an open namespace file for the duration of the call; setns
                // with CLONE_NEWNET only moves this thread into that network namespace.
                if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    panic!("setns into {path}: {}", std::io::Error::last_os_error());
                }
                f()
            });
            thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Runs `cmd` inside the namespace (`ip netns exec`) and returns its output, whatever its
    /// exit status. Panics only if `ip` cannot be started.
    pub fn exec(&self, cmd: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(cmd)
            .output()
            .unwrap_or_else(|e| panic!("cannot run `ip netns exec {} {}`: {e}", self.name, cmd.join(" ")))
    }

    /// Pings `addr` from the namespace `count` times (2 s timeout each); true when at least
    /// one reply came back (ping's own exit status). See [`Netns::ping_replies`].
    pub fn ping(&self, addr: IpAddr, count: u32) -> bool {
        self.exec(&ping_args(addr, count).iter().map(String::as_str).collect::<Vec<_>>()).status.success()
    }

    /// Pings `addr` from the namespace `count` times and returns how many replies came back
    /// (a reply may take 2 s: the tests run beside compilers and other suites).
    pub fn ping_replies(&self, addr: IpAddr, count: u32) -> u32 {
        let out = self.exec(&ping_args(addr, count).iter().map(String::as_str).collect::<Vec<_>>());
        received(&out.stdout)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "delete", &self.name]) {
            eprintln!("warning: {e:#}");
        }
    }
}

/// Pings `addr` from the root namespace `count` times and returns how many replies came back.
pub fn ping_replies(addr: IpAddr, count: u32) -> u32 {
    let args = ping_args(addr, count);
    let out = Command::new(&args[0]).args(&args[1..]).output().expect("cannot run ping");
    received(&out.stdout)
}

fn ping_args(addr: IpAddr, count: u32) -> Vec<String> {
    let family = if addr.is_ipv4() { "-4" } else { "-6" };
    ["ping", family, "-c", &count.to_string(), "-W", "2", "-i", "0.2", &addr.to_string()].map(String::from).to_vec()
}

/// "3 packets transmitted, 2 received, 33% packet loss, time 402ms" -> 2.
fn received(ping_stdout: &[u8]) -> u32 {
    String::from_utf8_lossy(ping_stdout)
        .lines()
        .flat_map(|line| line.split(','))
        .find_map(|part| part.trim().strip_suffix(" received")?.parse().ok())
        .unwrap_or(0)
}

/// A veth pair: `host` in the root namespace, `peer` in a [`Netns`], both up, with addresses
/// in their own subnets: 10.201.X.1/24 and fd00:201:X::1/64 on the host end, .2 and ::2 on the
/// peer (IPv6 added with `nodad`, so usable at once). Dropping it deletes the pair.
#[derive(Debug)]
pub struct VethPair {
    /// Name of the end in the root namespace (where the filter attaches).
    pub host: String,
    /// Name of the end inside the namespace.
    pub peer: String,
    /// Name of the namespace holding `peer`.
    pub netns: String,
    /// MAC address of the host end.
    pub host_mac: [u8; 6],
    /// MAC address of the peer end.
    pub peer_mac: [u8; 6],
    /// IPv4 address of the host end (10.201.X.1, prefix length 24).
    pub host_v4: Ipv4Addr,
    /// IPv4 address of the peer end (10.201.X.2).
    pub peer_v4: Ipv4Addr,
    /// IPv6 address of the host end (fd00:201:X::1, prefix length 64).
    pub host_v6: Ipv6Addr,
    /// IPv6 address of the peer end (fd00:201:X::2).
    pub peer_v6: Ipv6Addr,
    /// The X in the addresses above, unique among the pairs that exist on this machine.
    pub subnet: u8,
}

/// Subnets (X) handed out by this process and not yet dropped.
static CLAIMED: Mutex<Vec<u8>> = Mutex::new(Vec::new());

impl VethPair {
    /// Creates a pair with its peer end in `netns`.
    pub fn new(netns: &Netns) -> Result<VethPair> {
        let id = next_id();
        let pid = std::process::id();
        let (host, peer) = (format!("xw{pid}h{id}"), format!("xw{pid}p{id}"));
        if host.len() > 15 {
            bail!("interface name {host} is longer than 15 bytes");
        }
        let x = claim_subnet()?;
        let (host_mac, peer_mac) = ([0x02, 0x78, 0x77, 0x00, x, 0x01], [0x02, 0x78, 0x77, 0x00, x, 0x02]);
        let created = ip(&[
            "link",
            "add",
            &host,
            "address",
            &mac(host_mac),
            "type",
            "veth",
            "peer",
            "name",
            &peer,
            "address",
            &mac(peer_mac),
            "netns",
            &netns.name,
        ]);
        if let Err(e) = created {
            release_subnet(x);
            return Err(e);
        }
        let pair = VethPair {
            host,
            peer,
            netns: netns.name.clone(),
            host_mac,
            peer_mac,
            host_v4: Ipv4Addr::new(10, 201, x, 1),
            peer_v4: Ipv4Addr::new(10, 201, x, 2),
            host_v6: Ipv6Addr::new(0xfd00, 0x201, v6_group(x), 0, 0, 0, 0, 1),
            peer_v6: Ipv6Addr::new(0xfd00, 0x201, v6_group(x), 0, 0, 0, 0, 2),
            subnet: x,
        };
        // From here on, an early return drops `pair`, which deletes the link.
        let (h, p, ns) = (pair.host.as_str(), pair.peer.as_str(), pair.netns.as_str());
        ip(&["addr", "add", &format!("{}/24", pair.host_v4), "dev", h])?;
        ip(&["-6", "addr", "add", &format!("{}/64", pair.host_v6), "dev", h, "nodad"])?;
        ip(&["link", "set", h, "up"])?;
        ip(&["-n", ns, "addr", "add", &format!("{}/24", pair.peer_v4), "dev", p])?;
        ip(&["-n", ns, "-6", "addr", "add", &format!("{}/64", pair.peer_v6), "dev", p, "nodad"])?;
        ip(&["-n", ns, "link", "set", p, "up"])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        Ok(pair)
    }

    /// The host end's addresses, IPv4 first.
    pub fn host_ips(&self) -> [IpAddr; 2] {
        [self.host_v4.into(), self.host_v6.into()]
    }

    /// The peer end's addresses, IPv4 first.
    pub fn peer_ips(&self) -> [IpAddr; 2] {
        [self.peer_v4.into(), self.peer_v6.into()]
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        // Deleting one end deletes both. If the namespace went first, the pair is gone already.
        if std::path::Path::new("/sys/class/net").join(&self.host).exists()
            && let Err(e) = ip(&["link", "delete", &self.host])
        {
            eprintln!("warning: {e:#}");
        }
        release_subnet(self.subnet);
    }
}

/// Picks an X that neither this process nor any address in the root namespace uses.
fn claim_subnet() -> Result<u8> {
    let out = Command::new("ip")
        .args(["-o", "-4", "addr", "show", "to", "10.201.0.0/16"])
        .output()
        .context("cannot run `ip addr show`")?;
    let in_use: HashSet<u8> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|word| word.strip_prefix("10.201.")?.split('.').next()?.parse().ok())
        .collect();
    let mut claimed = CLAIMED.lock().unwrap_or_else(|e| e.into_inner());
    // Start where this process's pid points, so parallel test processes rarely race.
    let start = std::process::id() as usize;
    let x = (0..256)
        .map(|i| ((start + i) % 256) as u8)
        .find(|x| !claimed.contains(x) && !in_use.contains(x))
        .context("all 256 test subnets 10.201.X.0/24 are in use")?;
    claimed.push(x);
    Ok(x)
}

/// X as an IPv6 group that reads like the IPv4 octet: 239 -> 0x239 (fd00:201:239::1).
fn v6_group(x: u8) -> u16 {
    u16::from_str_radix(&x.to_string(), 16).expect("decimal digits are hex digits")
}

fn release_subnet(x: u8) {
    CLAIMED.lock().unwrap_or_else(|e| e.into_inner()).retain(|&c| c != x);
}

/// Deletes `xw-<prefix>-<pid>-<n>` namespaces whose process is gone (killed test runs).
fn sweep_stale_namespaces() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for name in entries.filter_map(|e| e.ok()?.file_name().into_string().ok()) {
        if name.starts_with("xw-") && owner_is_gone(&name) {
            let _ = ip(&["netns", "delete", &name]);
        }
    }
}

/// For names ending in `-<pid>-<n>`: whether that process no longer exists.
pub(crate) fn owner_is_gone(name: &str) -> bool {
    let mut parts = name.rsplit('-');
    let (Some(n), Some(pid)) = (parts.next(), parts.next()) else {
        return false;
    };
    n.parse::<u32>().is_ok()
        && pid.parse::<u32>().is_ok_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
}

fn mac(m: [u8; 6]) -> String {
    m.map(|b| format!("{b:02x}")).join(":")
}

/// Runs `ip ARGS`; a failure is an error with ip's message.
fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(args).output().context("cannot run `ip` (install iproute2)")?;
    if !out.status.success() {
        bail!("`ip {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ping_summary() {
        let out = b"PING 10.201.3.1 ...\n\n--- 10.201.3.1 ping statistics ---\n\
                    3 packets transmitted, 2 received, 33.3333% packet loss, time 402ms\n";
        assert_eq!(received(out), 2);
        assert_eq!(received(b"3 packets transmitted, 0 received, +3 errors, 100% packet loss\n"), 0);
        assert_eq!(received(b""), 0);
    }

    fn link_exists(name: &str) -> bool {
        std::path::Path::new("/sys/class/net").join(name).exists()
    }

    fn netns_exists(name: &str) -> bool {
        std::path::Path::new("/run/netns").join(name).exists()
    }

    /// Two pairs in one namespace: both families ping, sockets made in `run` live in the
    /// namespace, and everything is gone after drop.
    #[test]
    fn veth_pairs_carry_traffic_and_clean_up() {
        if !crate::is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let ns = Netns::new("bedtest").unwrap();
        let a = VethPair::new(&ns).unwrap();
        let b = VethPair::new(&ns).unwrap();
        assert_ne!(a.subnet, b.subnet);
        assert_ne!(a.host, b.host);
        for pair in [&a, &b] {
            assert!(link_exists(&pair.host));
            assert!(!link_exists(&pair.peer), "peer must be inside the namespace");
            for ip in pair.host_ips() {
                assert_eq!(ns.ping_replies(ip, 2), 2, "ping {ip} from {}", ns.name());
            }
        }
        let listener = std::net::TcpListener::bind((a.host_v4, 0)).unwrap();
        let target = listener.local_addr().unwrap();
        let seen_from = ns.run(|| {
            let s = std::net::TcpStream::connect_timeout(&target, std::time::Duration::from_secs(1)).unwrap();
            s.local_addr().unwrap().ip()
        });
        assert_eq!(seen_from, IpAddr::V4(a.peer_v4));
        let out = ns.exec(&["ip", "-br", "link"]);
        assert!(String::from_utf8_lossy(&out.stdout).contains(&a.peer));

        let names = (ns.name().to_string(), a.host.clone(), b.host.clone());
        drop((a, b, ns));
        assert!(!netns_exists(&names.0));
        assert!(!link_exists(&names.1) && !link_exists(&names.2));
    }

    /// Drop runs while a test panics, and a panic inside `run` reaches the caller.
    #[test]
    fn cleanup_on_panic() {
        if !crate::is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let names = std::sync::Mutex::new(None);
        let result = std::panic::catch_unwind(|| {
            let ns = Netns::new("bedpanic").unwrap();
            let pair = VethPair::new(&ns).unwrap();
            *names.lock().unwrap() = Some((ns.name().to_string(), pair.host.clone()));
            ns.run(|| panic!("boom in the namespace"));
        });
        assert!(result.is_err());
        let (ns, host) = names.into_inner().unwrap().unwrap();
        assert!(!netns_exists(&ns));
        assert!(!link_exists(&host));
    }

    #[test]
    fn stale_names() {
        assert!(!owner_is_gone(&format!("xw-t-{}-3", std::process::id())));
        assert!(owner_is_gone("xw-t-4294967-3")); // above pid_max
        assert!(!owner_is_gone("xw-other"));
    }
}

/// What [`udp_stream_during`] saw.
#[derive(Debug, Clone, Copy)]
pub struct StreamCount {
    /// Datagrams sent.
    pub sent: u64,
    /// Datagrams received.
    pub received: u64,
}

/// Runs `during` while a paced stream of one-byte UDP datagrams flows from `ns` to `to`
/// (an address of this namespace, bound here with a big receive buffer): `burst`
/// datagrams, then `pause`, again and again. The pace keeps veth's ring and the sender's
/// socket from overflowing, so any loss is the filter's. The stream starts 100 ms before
/// `during` and stops 200 ms after it; `received` counts until nothing came for 500 ms.
pub fn udp_stream_during<R>(
    ns: &Netns,
    to: std::net::SocketAddr,
    burst: u32,
    pause: std::time::Duration,
    during: impl FnOnce() -> R,
) -> (R, StreamCount) {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    let receiver = std::net::UdpSocket::bind(to).unwrap_or_else(|e| panic!("binding {to}: {e}"));
    crate::big_receive_buffer(&receiver);
    receiver.set_read_timeout(Some(Duration::from_millis(500))).expect("a read timeout");
    let (stop, sent) = (AtomicBool::new(false), AtomicU64::new(0));
    std::thread::scope(|s| {
        s.spawn(|| {
            ns.run(|| {
                let sock = std::net::UdpSocket::bind("0.0.0.0:0").expect("a UDP socket in the namespace");
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..burst {
                        sock.send_to(b"x", to).expect("sending a datagram");
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    std::thread::sleep(pause);
                }
            })
        });
        let receiving = s.spawn(|| {
            let mut buf = [0u8; 16];
            let mut got = 0u64;
            while receiver.recv(&mut buf).is_ok() {
                got += 1;
            }
            got
        });
        std::thread::sleep(Duration::from_millis(100));
        let result = during();
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::Relaxed);
        let received = receiving.join().expect("the receiving thread");
        (result, StreamCount { sent: sent.load(Ordering::Relaxed), received })
    })
}

/// Whether a TCP connection from `from` to `to` carries one "ping" and its "pong".
pub fn tcp_exchange(from: &Netns, to: SocketAddr) -> bool {
    from.run(|| match TcpStream::connect_timeout(&to, Duration::from_secs(1)) {
        Ok(s) => ping_pong(s),
        Err(_) => false,
    })
}

/// Whether "ping" sent on `s` gets its "pong" back within 2 s.
pub fn ping_pong(mut s: TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 4];
    s.write_all(b"ping").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"pong"
}

/// A TCP server in `ns` answering "pong" to every "ping" of each connection, one
/// thread per connection, until the connection ends.
pub fn serve_tcp(ns: &Netns, at: SocketAddr) -> std::thread::JoinHandle<()> {
    serve_tcp_on(ns.run(|| TcpListener::bind(at).unwrap()))
}

/// [`serve_tcp`] on a listener of the caller's.
pub fn serve_tcp_on(listener: TcpListener) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { break };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4];
                while conn.read_exact(&mut buf).is_ok() {
                    if conn.write_all(b"pong").is_err() {
                        break;
                    }
                }
            });
        }
    })
}
