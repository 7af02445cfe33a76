//! Interface addresses in rules (`(if)`, `if:network`, `self`), `set skip on` and
//! `antispoof`, with real addresses on a veth pair and real datagrams from its peer.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket},
    process::Command,
    time::Duration,
};

use xdpwall_tests::{
    TempDir,
    cli::Xdpwall,
    netns::{Netns, VethPair},
};

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// A veth pair with a socket on the host end per port, and the filter loaded on it.
struct Bed {
    ns: Netns,
    veth: VethPair,
    fw: Xdpwall,
    dir: TempDir,
}

impl Bed {
    fn new(name: &str) -> Bed {
        let ns = Netns::new(name).expect("netns");
        let veth = VethPair::new(&ns).expect("veth pair");
        let dir = TempDir::new(&format!("{name}-{}", veth.subnet));
        Bed { ns, veth, fw: Xdpwall::isolated(), dir }
    }

    /// Writes `rules` (with `HOST` standing for the host end's name) and runs `cmd` with it.
    fn run(&self, cmd: &[&str], rules: &str) -> std::process::Output {
        let path = self.dir.write("rules.conf", &rules.replace("HOST", &self.veth.host));
        let mut args: Vec<&str> = cmd.to_vec();
        args.push(path.to_str().unwrap());
        self.fw.run(args).expect("xdpwall")
    }

    /// How many of `n` datagrams sent from the peer (from `from`, or its own address)
    /// reach the host's `to`.
    fn delivered(&self, from: Option<IpAddr>, to: SocketAddr, n: u32) -> u32 {
        let sock = UdpSocket::bind(to).expect("bind on the host");
        sock.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        self.ns.run(|| {
            let any: IpAddr = if to.is_ipv4() { Ipv4Addr::UNSPECIFIED.into() } else { "::".parse().unwrap() };
            let s = UdpSocket::bind(SocketAddr::new(from.unwrap_or(any), 0)).unwrap();
            for i in 0..n {
                s.send_to(&i.to_be_bytes(), to).unwrap();
            }
        });
        let mut got = 0;
        while sock.recv(&mut [0u8; 16]).is_ok() {
            got += 1;
        }
        got
    }
}

#[test]
fn interface_addresses_resolve_at_load_and_follow_at_apply() {
    let bed = Bed::new("ifaddr");
    let rules = "block drop in quick proto udp to (HOST) port 7100\n\
                 pass in quick proto udp from HOST:network to port 7101 no state\n\
                 block drop in quick proto udp to port 7101\n\
                 block drop in quick proto udp to self port 7102\n";
    let out = bed.run(&["check"], rules);
    let text = String::from_utf8_lossy(&out.stdout);
    let (v4, v6) = (bed.veth.host_v4, bed.veth.host_v6);
    let network = format!("<{}:network>: {}/24, {}/64", bed.veth.host, Ipv4Addr::from(u32::from(v4) & !0xff), {
        let mut s = v6.segments();
        s[4..].fill(0);
        std::net::Ipv6Addr::from(s)
    });
    assert!(text.contains(&network), "check shows what the network resolves to: {text}");
    assert!(text.contains(&format!("<({})>: {v4}/32, {v6}/128", bed.veth.host)), "{text}");
    bed.run(&["load", "--mode", "native", &bed.veth.host], rules);

    for host in bed.veth.host_ips() {
        assert_eq!(bed.delivered(None, SocketAddr::new(host, 7100), 5), 0, "to ({}) {host}: blocked", bed.veth.host);
        assert_eq!(bed.delivered(None, SocketAddr::new(host, 7101), 5), 5, "from the network to {host}: passed");
        assert_eq!(bed.delivered(None, SocketAddr::new(host, 7102), 5), 0, "to self {host}: blocked");
    }

    // A new address on each end: outside every network the filter knows until an apply
    // resolves the ruleset again.
    let x = bed.veth.subnet;
    let (new_host, new_peer) = (Ipv4Addr::new(10, 209, x, 1), Ipv4Addr::new(10, 209, x, 2));
    ip(&["addr", "add", &format!("{new_host}/24"), "dev", &bed.veth.host]);
    ip(&["-n", bed.ns.name(), "addr", "add", &format!("{new_peer}/24"), "dev", &bed.veth.peer]);
    let to = |port| SocketAddr::new(new_host.into(), port);
    assert_eq!(bed.delivered(Some(new_peer.into()), to(7100), 5), 5, "the new address is not (HOST) yet");
    assert_eq!(bed.delivered(Some(new_peer.into()), to(7101), 5), 0, "nor is its network HOST:network");
    bed.run(&["apply"], rules);
    assert_eq!(bed.delivered(Some(new_peer.into()), to(7100), 5), 0, "after apply: (HOST) holds it");
    assert_eq!(bed.delivered(Some(new_peer.into()), to(7101), 5), 5, "after apply: so does HOST:network");
    assert_eq!(bed.delivered(Some(new_peer.into()), to(7102), 5), 0, "and self");
}

#[test]
fn set_skip_leaves_the_interface_unfiltered_and_stateless() {
    let bed = Bed::new("skip");
    let rules = "set skip on HOST\n\
                 pass in quick proto udp to port 7200 keep state\n\
                 block drop in quick proto udp\n";
    let check = String::from_utf8_lossy(&bed.run(&["check"], rules).stdout).into_owned();
    assert!(check.contains(&format!("skipped (unfiltered where loaded): {}", bed.veth.host)), "{check}");
    bed.run(&["load", "--mode", "native", &bed.veth.host], rules);
    for host in bed.veth.host_ips() {
        assert_eq!(bed.delivered(None, SocketAddr::new(host, 7201), 5), 5, "{host}: skipped, so not blocked");
        assert_eq!(bed.delivered(None, SocketAddr::new(host, 7200), 5), 5, "{host}: passed");
    }
    let status = bed.fw.status().expect("status");
    assert!(status.skipped.packets >= 20, "counted as skipped: {:?}", status.skipped);
    let rule_packets: u64 = status.rules.iter().map(|r| r.packets).sum();
    assert_eq!(rule_packets, 0, "no rule judged anything");
    let flows = bed.fw.states(std::iter::empty::<&str>()).expect("states");
    assert_eq!(flows.len(), 0, "no state created: {flows:?}");

    // The same ruleset without `set skip` blocks (the test above can fail).
    bed.run(&["apply"], &rules.replace("set skip on HOST\n", ""));
    assert_eq!(bed.delivered(None, SocketAddr::new(bed.veth.host_v4.into(), 7201), 5), 0, "filtered again");
}

#[test]
fn antispoof_drops_what_pf_drops() {
    // Two pairs: `a` is the interface antispoof protects, `b` another one.
    let a = Bed::new("spoofa");
    let ns_b = Netns::new("spoofb").expect("netns");
    let b = VethPair::new(&ns_b).expect("veth pair");
    let path = a.dir.write("rules.conf", &format!("antispoof quick for {} inet\n", a.veth.host));
    a.fw.run(["load", "--mode", "native", &a.veth.host, &b.host, path.to_str().unwrap()]).expect("load");
    let check = a.fw.run(["check", path.to_str().unwrap()]).expect("check");
    let listing = String::from_utf8_lossy(&check.stdout);
    let (ha, net_a) = (a.veth.host_v4, Ipv4Addr::from(u32::from(a.veth.host_v4) & !0xff));
    for line in [
        format!("1  block drop in quick on ! {} inet from {}:network", a.veth.host, a.veth.host),
        format!("2  block drop in quick inet from {}", a.veth.host),
        format!("<{}:network>: {net_a}/24", a.veth.host),
    ] {
        assert!(listing.contains(&line), "check shows the expansion `{line}`: {listing}");
    }
    // Sources on b's peer: one in a's network, and a's own address.
    let (in_net_a, addr_a) = (Ipv4Addr::from(u32::from(net_a) | 50), ha);
    for src in [in_net_a, addr_a] {
        ip(&["-n", ns_b.name(), "addr", "add", &format!("{src}/32"), "dev", &b.peer]);
    }
    let from_b = |src: Option<Ipv4Addr>, port: u16| {
        let to = SocketAddr::new(b.host_v4.into(), port);
        let sock = UdpSocket::bind(to).expect("bind on the host");
        sock.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        ns_b.run(|| {
            let s = UdpSocket::bind(SocketAddr::new(src.map_or(Ipv4Addr::UNSPECIFIED, |s| s).into(), 0)).unwrap();
            for i in 0..5u32 {
                s.send_to(&i.to_be_bytes(), to).unwrap();
            }
        });
        let mut got = 0;
        while sock.recv(&mut [0u8; 16]).is_ok() {
            got += 1;
        }
        got
    };
    assert_eq!(from_b(None, 7300), 5, "b's own network arrives on b");
    assert_eq!(from_b(Some(in_net_a), 7301), 0, "a's network arriving on b is spoofed");
    assert_eq!(from_b(Some(addr_a), 7302), 0, "a's own address arriving on b is spoofed");
    assert_eq!(a.delivered(None, SocketAddr::new(ha.into(), 7303), 5), 5, "a's network arriving on a passes");
    let status: serde_json::Value = serde_json::from_slice(&a.fw.run(["status", "--json"]).unwrap().stdout).unwrap();
    let packets: Vec<u64> =
        status["rules"].as_array().unwrap().iter().map(|r| r["packets"].as_u64().unwrap()).collect();
    // Rule 1 (quick) takes both spoofed sources on b (a's address is in a's network too).
    assert_eq!(packets, [10, 0], "{status:#}");
}
