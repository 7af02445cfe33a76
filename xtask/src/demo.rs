//! `cargo xtask demo`: load filter-user/examples/demo.conf on the host end of a veth pair,
//! send traffic to it from a network namespace, and show what got through.
//!
//! Pins go to /sys/fs/bpf/xdpwall-demo and state to /run/xdpwall-demo, so a real deployment is
//! never touched. The namespace, the veth pair and the filter are removed on the way out, also
//! on error.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use xdpwall_tests::cli::Xdpwall;
use xdpwall_tests::netns::{Netns, VethPair};

use crate::{build_xdpwall, repo_root};

const PIN_DIR: &str = "/sys/fs/bpf/xdpwall-demo";
const RUN_DIR: &str = "/run/xdpwall-demo";
const TIMEOUT: Duration = Duration::from_secs(1);

/// What demo.conf says about each probe.
const TCP_PORTS: [(u16, bool); 2] = [(8080, true), (2323, false)];
const UDP_PORTS: [(u16, bool); 2] = [(53, true), (161, false)];

pub fn run() -> Result<()> {
    let bin = build_xdpwall()?;
    let rules = repo_root().join("filter-user/examples/demo.conf");

    // Declared in this order, dropped in reverse: unload, then the pair, then the namespace.
    let netns = Netns::new("demo")?;
    let veth = VethPair::new(&netns)?;
    let xdpwall = Xdpwall::with_dirs(bin, PIN_DIR, RUN_DIR);
    println!(
        "demo: {} ({}, {}) in the root namespace <-> {} ({}, {}) in netns {}",
        veth.host,
        veth.host_v4,
        veth.host_v6,
        veth.peer,
        veth.peer_v4,
        veth.peer_v6,
        netns.name()
    );

    // Listeners first, so a probe that gets through finds someone home.
    let mut tcp = Vec::new();
    let mut udp = Vec::new();
    for ip in veth.host_ips() {
        for (port, allowed) in TCP_PORTS {
            let addr = SocketAddr::new(ip, port);
            let listener = TcpListener::bind(addr).with_context(|| format!("listening on tcp {addr}"))?;
            tcp.push((addr, allowed, listener));
        }
        for (port, allowed) in UDP_PORTS {
            let addr = SocketAddr::new(ip, port);
            let socket = UdpSocket::bind(addr).with_context(|| format!("binding udp {addr}"))?;
            socket.set_read_timeout(Some(TIMEOUT))?;
            udp.push((addr, allowed, socket));
        }
    }

    println!("$ xdpwall load {} {} --mode native", veth.host, rules.display());
    show(&xdpwall.run([
        "load".as_ref(),
        veth.host.as_ref(),
        rules.as_os_str(),
        "--mode".as_ref(),
        "native".as_ref(),
    ])?);

    let mut checks = Checks::default();
    for ip in veth.host_ips() {
        let replies = netns.ping_replies(ip, 3);
        let what = if ip.is_ipv4() { "ping" } else { "ping -6" };
        checks.report(&format!("{what} {ip} from netns: {replies}/3 replies"), replies > 0, true);
    }
    for (addr, allowed, _listener) in &tcp {
        let result = netns.run(|| TcpStream::connect_timeout(addr, TIMEOUT).map(drop));
        let (outcome, passed) = match result {
            Ok(()) => ("connected".to_string(), true),
            Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
                ("timed out".to_string(), false)
            }
            Err(e) => (format!("failed: {e}"), e.kind() == ErrorKind::ConnectionRefused),
        };
        checks.report(&format!("tcp {} from netns: {outcome}", addr), passed, *allowed);
    }
    for (addr, allowed, socket) in &udp {
        let from = SocketAddr::new(if addr.is_ipv4() { veth.peer_v4.into() } else { veth.peer_v6.into() }, 0);
        netns
            .run(|| UdpSocket::bind(from)?.send_to(b"xdpwall demo", addr))
            .with_context(|| format!("sending to udp {} from the netns", addr))?;
        let mut buf = [0u8; 64];
        let (outcome, passed) = match socket.recv_from(&mut buf) {
            Ok((n, peer)) => (format!("delivered {n} bytes from {peer}"), true),
            Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
                ("nothing arrived within 1 s".to_string(), false)
            }
            Err(e) => bail!("receiving on udp {}: {e}", addr),
        };
        checks.report(&format!("udp {} from netns: {outcome}", addr), passed, *allowed);
    }

    println!("$ xdpwall states");
    show(&xdpwall.run(["states"])?);
    println!("$ xdpwall status");
    show(&xdpwall.run(["status"])?);
    println!("$ xdpwall unload");
    show(&xdpwall.run(["unload"])?);

    if checks.unexpected > 0 {
        bail!("{} of {} probes did not behave as demo.conf says", checks.unexpected, checks.total);
    }
    println!("demo: all {} probes behaved as demo.conf says", checks.total);
    Ok(())
}

#[derive(Default)]
struct Checks {
    total: usize,
    unexpected: usize,
}

impl Checks {
    fn report(&mut self, line: &str, passed: bool, allowed: bool) {
        self.total += 1;
        let verdict = if passed { "allowed" } else { "blocked" };
        if passed == allowed {
            println!("{line} ({verdict})");
        } else {
            self.unexpected += 1;
            let expected = if allowed { "allowed" } else { "blocked" };
            println!("{line} ({verdict}) -- UNEXPECTED: demo.conf says {expected}");
        }
    }
}

/// Passes a command's stdout and stderr on.
fn show(out: &std::process::Output) {
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
}
