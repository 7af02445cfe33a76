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

impl Bed {
    /// Sends UDP datagrams from `from` (an address of the peer end) to `to` at `pps`
    /// for `duration`, paced by the clock; returns how many and the seconds from the
    /// first to the last.
    fn send_paced(&self, from: IpAddr, to: SocketAddr, pps: u32, duration: Duration) -> (u64, f64) {
        self.ns.run(|| {
            let s = UdpSocket::bind(SocketAddr::new(from, 0)).expect("bind the sender's address");
            let start = std::time::Instant::now();
            let mut sent = 0u64;
            let mut last = start;
            while start.elapsed() < duration {
                let due = (start.elapsed().as_secs_f64() * f64::from(pps)) as u64 + 1;
                while sent < due {
                    s.send_to(&sent.to_be_bytes(), to).expect("send");
                    sent += 1;
                    last = std::time::Instant::now();
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            (sent, last.duration_since(start).as_secs_f64())
        })
    }
}

/// Datagrams that arrive at `sock` until it is quiet for 300 ms, by source address.
fn drain_by_source(sock: &UdpSocket) -> std::collections::HashMap<IpAddr, u64> {
    sock.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let mut buf = [0u8; 64];
    let mut by_source = std::collections::HashMap::new();
    while let Ok((_, from)) = sock.recv_from(&mut buf) {
        *by_source.entry(from.ip()).or_insert(0) += 1;
    }
    by_source
}

/// `rate N/s burst B` on a veth: a sender at five times the rate gets `B + N x T`
/// datagrams through in T seconds (within 10%); the rest go on to the default block and
/// are counted as over the rule's rate.
#[test]
fn a_rate_limit_holds_on_real_traffic() {
    let bed = Bed::new("rate");
    const RATE: f64 = 200.0;
    const BURST: f64 = 40.0;
    let rules = bed.ruleset(
        "rules.conf",
        "set default block\npass in quick proto udp to port 6100 no state rate 200/s burst 40 label \"limited\"\n",
    );
    bed.fw.run(["load", &bed.veth.host, rules.to_str().unwrap(), "--mode", "native"]).expect("load");
    let sink = UdpSocket::bind((bed.veth.host_v4, 6100)).unwrap();
    xdpwall_tests::big_receive_buffer(&sink);
    let to = SocketAddr::new(bed.veth.host_v4.into(), 6100);
    let (sent, secs) = bed.send_paced(bed.veth.peer_v4.into(), to, 1000, Duration::from_secs(2));
    let delivered = drain(&sink);
    let expected = BURST + RATE * secs;
    eprintln!(
        "sent {sent} in {secs:.3} s at 1000/s: {delivered} delivered, expected {expected:.0} (burst + rate x time)"
    );
    assert!(
        (delivered as f64 - expected).abs() <= 0.1 * expected,
        "delivered {delivered}, expected {expected:.0} +- 10%"
    );
    let st = bed.status();
    let rule = &st.rules[0];
    assert_eq!(rule.packets, delivered, "the rule counted what was delivered: {rule:?}");
    assert_eq!(rule.over_rate, Some(sent - delivered), "the rest was over the rate: {rule:?}");
    // (The default also blocks the new interface's IPv6 neighbour and router solicitations.)
    assert!(st.default.packets >= sent - delivered, "and went to the default block: {}", st.default.packets);
    let text = String::from_utf8(bed.fw.run(["status"]).expect("status").stdout).unwrap();
    assert!(text.contains("over rate"), "status shows the packets over rate:\n{text}");
}

/// `rate N/s per-source` on a veth: two sources sending at once each get their own
/// `B + N x T`.
#[test]
fn each_source_gets_its_own_rate_on_real_traffic() {
    let bed = Bed::new("rate-src");
    const RATE: f64 = 100.0;
    const BURST: f64 = 20.0;
    let rules = bed.ruleset(
        "rules.conf",
        "set default block\npass in quick proto udp to port 6101 no state rate 100/s burst 20 per-source label \"per-source\"\n",
    );
    bed.fw.run(["load", &bed.veth.host, rules.to_str().unwrap(), "--mode", "native"]).expect("load");
    // A second address on the peer: the second source.
    let second = std::net::Ipv4Addr::new(10, 201, bed.veth.subnet, 3);
    let added = std::process::Command::new("ip")
        .args(["-n", &bed.veth.netns, "addr", "add", &format!("{second}/24"), "dev", &bed.veth.peer])
        .status()
        .unwrap();
    assert!(added.success(), "second peer address");
    let sink = UdpSocket::bind((bed.veth.host_v4, 6101)).unwrap();
    xdpwall_tests::big_receive_buffer(&sink);
    let to = SocketAddr::new(bed.veth.host_v4.into(), 6101);
    let sources: [IpAddr; 2] = [bed.veth.peer_v4.into(), second.into()];
    let runs: Vec<(u64, f64)> = std::thread::scope(|s| {
        let handles: Vec<_> = sources
            .iter()
            .map(|&from| {
                let bed = &bed;
                s.spawn(move || bed.send_paced(from, to, 1000, Duration::from_secs(2)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let delivered = drain_by_source(&sink);
    for (from, (sent, secs)) in sources.iter().zip(&runs) {
        let got = delivered.get(from).copied().unwrap_or(0);
        let expected = BURST + RATE * secs;
        eprintln!("{from}: sent {sent} in {secs:.3} s at 1000/s: {got} delivered, expected {expected:.0}");
        assert!(
            (got as f64 - expected).abs() <= 0.1 * expected,
            "{from}: delivered {got}, expected {expected:.0} +- 10%"
        );
    }
}

/// `log` over a veth: 100 blocked datagrams come back from `xdpwall log --pcap`, and
/// tcpdump reads the file (pflog link type) with the rule, the action and the right
/// addresses for each; `status` counts the records.
#[test]
fn blocked_packets_come_back_from_the_log_as_pcap() {
    let bed = Bed::new("log");
    let rules = bed.ruleset(
        "rules.conf",
        "set default block log\npass in quick proto icmp\nblock in quick proto udp to port 6200 log label \"logged\"\n",
    );
    bed.fw.run(["load", &bed.veth.host, rules.to_str().unwrap(), "--mode", "native"]).expect("load");
    let to = SocketAddr::new(bed.veth.host_v4.into(), 6200);
    let sender = bed.ns.run(|| {
        let s = UdpSocket::bind(SocketAddr::new(bed.veth.peer_v4.into(), 0)).unwrap();
        for i in 0..100u32 {
            s.send_to(&i.to_be_bytes(), to).unwrap();
            // Under the default log rate (1000/s), so every one is written.
            std::thread::sleep(Duration::from_millis(2));
        }
        s.local_addr().unwrap()
    });
    let pcap = bed.dir.join("log.pcap");
    let out = bed.fw.run(["log", "--pcap", pcap.to_str().unwrap()]).expect("xdpwall log --pcap");
    // The 100 and whatever else the default policy blocked and logged meanwhile (IPv6
    // neighbour and router solicitations of the new interface).
    assert!(String::from_utf8_lossy(&out.stderr).contains("packets written"), "{out:?}");

    let dump = std::process::Command::new("tcpdump").args(["-r", pcap.to_str().unwrap(), "-n", "-e"]).output();
    let dump = dump.expect("tcpdump runs (cargo xtask setup installs it)");
    assert!(dump.status.success(), "tcpdump reads the file: {}", String::from_utf8_lossy(&dump.stderr));
    let text = String::from_utf8(dump.stdout).unwrap();
    let flow = format!("{}.{} > {}.6200", bed.veth.peer_v4, sender.port(), bed.veth.host_v4);
    let lines: Vec<&str> = text.lines().filter(|l| l.contains(&flow)).collect();
    eprintln!(
        "tcpdump -r {} -n -e (first 3 of {}):\n{}",
        pcap.display(),
        lines.len(),
        lines[..3.min(lines.len())].join("\n")
    );
    assert_eq!(lines.len(), 100, "one line per logged datagram:\n{text}");
    for l in &lines {
        assert!(
            l.contains("rule 2") && l.contains("block in on") && l.contains(&bed.veth.host),
            "rule, action, interface: {l}"
        );
        assert!(l.contains(&flow) && l.contains("UDP"), "addresses {flow}: {l}");
    }

    let st = bed.status();
    assert_eq!(st.rules[1].logged, Some(100), "{st:#?}");
    assert!(st.log.written >= 100, "{st:#?}");
    // The log was read: nothing is left.
    let again = bed.fw.run(["log", "--json"]).expect("xdpwall log --json");
    assert!(String::from_utf8_lossy(&again.stdout).lines().all(|l| !l.contains("\"rule\":2")), "{again:?}");

    // `--follow --json` prints records as they come, one JSON object a line.
    let mut follower = bed
        .fw
        .command(["log", "--follow", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("xdpwall log --follow");
    std::thread::sleep(Duration::from_millis(300));
    bed.send_udp(to, 5);
    std::thread::sleep(Duration::from_millis(1200));
    follower.kill().expect("stop the follower");
    let out = follower.wait_with_output().expect("follower output");
    let records: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON object a line"))
        .filter(|r: &serde_json::Value| r["rule"] == 2)
        .collect();
    assert_eq!(records.len(), 5, "{records:?}");
    let r = &records[0];
    assert_eq!(
        (r["action"].as_str(), r["direction"].as_str(), r["dst_port"].as_u64()),
        (Some("block"), Some("in"), Some(6200)),
        "{r}"
    );
    assert_eq!(
        (r["src"].as_str(), r["interface"].as_str()),
        (Some(bed.veth.peer_v4.to_string().as_str()), Some(bed.veth.host.as_str())),
        "{r}"
    );
    assert_eq!(r["label"], "logged", "{r}");
}

/// `overload` over a veth, and `xdpwall table`: a flooding source lands in the dynamic
/// table and is blocked (ping too), stays there across an apply (the table is pinned),
/// and the CLI shows, deletes, adds and flushes entries.
#[test]
fn dynamic_tables_survive_applies_and_the_cli_manages_them() {
    let bed = Bed::new("dyn");
    let text = "set default block\n\
                table <flooders> persist\n\
                block in quick from <flooders> label \"flooders\"\n\
                pass in quick proto icmp no state\n\
                pass in quick proto udp to port 6300 no state rate 10/s burst 5 per-source overload <flooders>\n";
    let rules = bed.ruleset("rules.conf", text);
    bed.fw.run(["load", &bed.veth.host, rules.to_str().unwrap(), "--mode", "native"]).expect("load");
    let peer: IpAddr = bed.veth.peer_v4.into();
    let v4: IpAddr = bed.veth.host_v4.into();
    assert_eq!(bed.ns.ping_replies(v4, 1), 1, "ping passes before the flood");
    bed.send_udp(SocketAddr::new(v4, 6300), 50);
    let show = |bed: &Bed| {
        let out = bed.fw.run(["table", "flooders", "show", "--json"]).expect("table show");
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("JSON")
    };
    let listed = |v: &serde_json::Value, a: &str| v.as_array().unwrap().iter().any(|s| s["addr"] == a);
    assert!(listed(&show(&bed), &peer.to_string()), "the flooding source is in <flooders>: {}", show(&bed));
    assert_eq!(bed.ns.ping_replies(v4, 1), 0, "and blocked, ping too");
    assert!(bed.rule_packets("flooders") >= 1);
    let st = bed.status();
    assert_eq!(st.dyn_tables.len(), 1, "{st:#?}");
    assert_eq!((st.dyn_tables[0].name.as_str(), st.dyn_tables[0].sources), ("flooders", 1), "status shows the fill");

    // An apply keeps the table's sources.
    let changed = bed.ruleset("changed.conf", &format!("{text}pass in quick proto tcp to port 22\n"));
    bed.fw.run(["apply", changed.to_str().unwrap()]).expect("apply");
    assert!(listed(&show(&bed), &peer.to_string()), "still there after an apply: {}", show(&bed));
    assert_eq!(bed.ns.ping_replies(v4, 1), 0, "and still blocked");

    // The CLI: delete lets the source back; add with an expiry; flush.
    let out = bed.fw.run(["table", "flooders", "delete", &peer.to_string()]).expect("delete");
    assert!(String::from_utf8_lossy(&out.stdout).contains("deleted"), "{out:?}");
    assert_eq!(bed.ns.ping_replies(v4, 1), 1, "ping passes once deleted");
    bed.fw.run(["table", "flooders", "add", "192.0.2.77", "--for", "100"]).expect("add");
    let v = show(&bed);
    let entry = v.as_array().unwrap().iter().find(|s| s["addr"] == "192.0.2.77").expect("added").clone();
    let left = entry["expires_in_secs"].as_f64().unwrap();
    assert!(left > 90.0 && left <= 100.0, "expires in about 100 s: {entry}");
    let out = bed.fw.run(["table", "flooders", "flush"]).expect("flush");
    assert!(String::from_utf8_lossy(&out.stdout).contains("flushed 1"), "{out:?}");
    assert!(show(&bed).as_array().unwrap().is_empty());
    let missing = bed.fw.output(["table", "nosuch", "show"]).expect("runs");
    assert!(
        !missing.status.success() && String::from_utf8_lossy(&missing.stderr).contains("<flooders>"),
        "{missing:?}"
    );
}
