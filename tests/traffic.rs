//! Real traffic through the real filter: a veth pair with the filter on the host end
//! (root namespace) and ordinary sockets and ping in a peer namespace.

use std::{
    io::Write as _,
    net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    path::PathBuf,
    time::Duration,
};

use filter_user::dataplane::Status;
use xdpwall_tests::{
    cli::Xdpwall,
    netns::{Netns, VethPair, udp_stream_during},
};

/// A test's own netns, veth pair, CLI instance and ruleset files.
struct Bed {
    ns: Netns,
    veth: VethPair,
    fw: Xdpwall,
    dir: PathBuf,
}

impl Bed {
    fn new(name: &str) -> Bed {
        let ns = Netns::new(name).expect("netns");
        let veth = VethPair::new(&ns).expect("veth pair");
        let fw = Xdpwall::isolated();
        let dir = std::env::temp_dir().join(format!("xdpwall-{name}-{}-{}", std::process::id(), veth.subnet));
        std::fs::create_dir_all(&dir).unwrap();
        Bed { ns, veth, fw, dir }
    }

    fn ruleset(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn status(&self) -> Status {
        self.fw.status().expect("status")
    }

    /// Packets counted by the rule with this label.
    fn rule_packets(&self, label: &str) -> u64 {
        let st = self.status();
        st.rule(label).unwrap_or_else(|| panic!("no rule labelled {label} in {st:#?}")).packets
    }

    /// Sends `n` UDP datagrams from the netns to `to`.
    fn send_udp(&self, to: SocketAddr, n: u32) {
        self.ns.run(|| {
            let s = UdpSocket::bind(any_port(to)).unwrap();
            for i in 0..n {
                s.send_to(&i.to_be_bytes(), to).unwrap();
            }
        });
    }

    /// Whether a TCP connection from the netns to `to` gets through within a second.
    fn tcp_connects(&self, to: SocketAddr) -> bool {
        self.ns.run(|| match TcpStream::connect_timeout(&to, Duration::from_secs(1)) {
            Ok(mut s) => s.write_all(b"hello").is_ok(),
            Err(_) => false,
        })
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn any_port(to: SocketAddr) -> SocketAddr {
    match to.ip() {
        IpAddr::V4(_) => "0.0.0.0:0".parse().unwrap(),
        IpAddr::V6(_) => "[::]:0".parse().unwrap(),
    }
}

/// Datagrams that arrive at `sock` until it is quiet for 300 ms.
fn drain(sock: &UdpSocket) -> u64 {
    sock.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let mut buf = [0u8; 64];
    let mut n = 0;
    while sock.recv(&mut buf).is_ok() {
        n += 1;
    }
    n
}

const RULES: &str = r#"
set default block
pass  in quick proto icmp icmp-type echo-request label "ping4" no state
pass  in quick proto icmp6 label "icmp6" no state
pass  in quick proto tcp to port 8080 label "web" no state
pass  in quick proto udp to port 5353 label "udp-allowed" no state
block in quick proto udp to port 5354 label "udp-blocked"
"#;

#[test]
fn tcp_udp_icmp_and_ipv6_through_the_filter() {
    let bed = Bed::new("traffic");
    let rules = bed.ruleset("rules.conf", RULES);
    let out = bed.fw.run(["load", &bed.veth.host, rules.to_str().unwrap(), "--mode", "native"]).expect("load");
    assert!(String::from_utf8_lossy(&out.stdout).contains("native XDP"), "{out:?}");
    let v4: IpAddr = bed.veth.host_v4.into();
    let v6: IpAddr = bed.veth.host_v6.into();

    // ICMP echo, both families.
    assert_eq!(bed.ns.ping_replies(v4, 3), 3, "ping passes");
    assert_eq!(bed.rule_packets("ping4"), 3, "each echo request counted once");
    assert_eq!(bed.ns.ping_replies(v6, 3), 3, "ping6 passes (neighbour discovery too)");
    assert!(bed.rule_packets("icmp6") >= 3);

    // TCP, both families: 8080 passes, anything else hits the default block.
    for ip in [v4, v6] {
        let listener = TcpListener::bind((ip, 8080)).unwrap();
        let closed = TcpListener::bind((ip, 8081)).unwrap();
        assert!(bed.tcp_connects(SocketAddr::new(ip, 8080)), "tcp {ip}:8080 allowed");
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 5];
        std::io::Read::read_exact(&mut conn, &mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        let before = bed.status().default.packets;
        assert!(!bed.tcp_connects(SocketAddr::new(ip, 8081)), "tcp {ip}:8081 blocked by default");
        let after = bed.status().default.packets;
        assert!(after > before, "the dropped SYN is counted by the default policy");
        drop(closed);
    }
    assert!(bed.rule_packets("web") >= 6, "handshakes and data of two connections");

    // UDP: exact counts on both sides.
    for ip in [v4, v6] {
        let ok = UdpSocket::bind((ip, 5353)).unwrap();
        let blocked = UdpSocket::bind((ip, 5354)).unwrap();
        let (ok_before, blocked_before) = (bed.rule_packets("udp-allowed"), bed.rule_packets("udp-blocked"));
        bed.send_udp(SocketAddr::new(ip, 5353), 50);
        bed.send_udp(SocketAddr::new(ip, 5354), 40);
        assert_eq!(drain(&ok), 50, "allowed datagrams delivered ({ip})");
        assert_eq!(drain(&blocked), 0, "blocked datagrams dropped ({ip})");
        assert_eq!(bed.rule_packets("udp-allowed") - ok_before, 50);
        assert_eq!(bed.rule_packets("udp-blocked") - blocked_before, 40);
    }

    let st = bed.status();
    let iface = &st.interfaces[0];
    assert_eq!(iface.name, bed.veth.host);
    assert_eq!(iface.mode, "native");
    assert!(iface.dropped_packets >= 80, "{iface:?}");
    assert!(st.non_ip.packets >= 1, "ARP passed unjudged: {st:#?}");

    // The filter outlives the tool: nothing of ours runs now, and it still blocks.
    assert!(!bed.tcp_connects(SocketAddr::new(v4, 8081)));
    bed.fw.run(["unload"]).expect("unload");
    let link = std::process::Command::new("ip").args(["link", "show", &bed.veth.host]).output().unwrap();
    assert!(!String::from_utf8_lossy(&link.stdout).contains("xdp"), "unload detached XDP");
    let _open = TcpListener::bind((v4, 8081)).unwrap();
    assert!(bed.tcp_connects(SocketAddr::new(v4, 8081)), "after unload nothing is filtered");
}

#[test]
fn apply_under_traffic_loses_no_allowed_packet() {
    let bed = Bed::new("apply");
    // Two rulesets that both pass the stream, by different rules and orders; the
    // "ping" rule is in both and keeps its counter.
    let a = bed.ruleset(
        "a.conf",
        "set default block\n\
         pass in quick proto icmp6 label \"icmp6\" no state\n\
         pass in quick proto icmp label \"ping\" no state\n\
         pass in quick proto udp to port 6000 label \"stream-a\" no state\n",
    );
    let b = bed.ruleset(
        "b.conf",
        "set default block\n\
         block in quick proto udp to port 6001 label \"other\"\n\
         pass in quick proto udp from 10.0.0.0/8 to port 5990:6010 label \"stream-b\" no state\n\
         pass in quick proto icmp label \"ping\" no state\n\
         pass in quick proto icmp6 label \"icmp6\" no state\n",
    );
    bed.fw.run(["load", &bed.veth.host, a.to_str().unwrap()]).expect("load");
    assert_eq!(bed.ns.ping_replies(bed.veth.host_v4.into(), 2), 2);
    let ping_before = bed.rule_packets("ping");
    let default_before = bed.status().default.packets;

    let to = SocketAddr::new(bed.veth.host_v4.into(), 6000);
    // The applies keep both cores busy verifying programs; the stream's receiver has a
    // big buffer, so the socket is never where a datagram is lost.
    let ((), count) = udp_stream_during(&bed.ns, to, 20, Duration::from_micros(500), || {
        for i in 0..6 {
            let file = if i % 2 == 0 { &b } else { &a };
            bed.fw.run(["apply", file.to_str().unwrap()]).expect("apply");
        }
    });
    let veth_drops = bed.ns.exec(&["ip", "-s", "link", "show", &bed.veth.peer]);
    let host_drops = std::process::Command::new("ip").args(["-s", "link", "show", &bed.veth.host]).output().unwrap();
    let sent = count.sent;
    assert!(sent > 1000, "the stream ran through the applies ({sent} datagrams)");
    assert_eq!(
        count.received,
        sent,
        "every datagram of the stream was delivered across 6 applies\npeer: {}\nhost: {}\nstatus: {:#?}",
        String::from_utf8_lossy(&veth_drops.stdout),
        String::from_utf8_lossy(&host_drops.stdout),
        bed.status()
    );
    let st = bed.status();
    let by_label = |l: &str| st.rule(l).map_or(0, |r| r.packets);
    assert_eq!(st.generation, 7);
    assert_eq!(by_label("ping"), ping_before, "the unchanged rule kept its counter");
    assert_eq!(st.default.packets, default_before, "no packet fell through to the default block during the applies");
    let a_count = by_label("stream-a");
    assert!(a_count > 0 && a_count < sent, "stream-a restarted from zero when re-added ({a_count} of {sent})");
    assert!(st.rule("stream-b").is_none(), "b's rules are gone");
}
