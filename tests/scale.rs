//! Scale and failure: 4096 rules with a million-entry table applied under traffic,
//! limits reported before anything loads, and a failed apply that rolls back.

use std::{
    fmt::Write as _,
    net::{IpAddr, SocketAddr, UdpSocket},
    path::Path,
    time::{Duration, Instant},
};

use filter_user::dataplane::Status;
use xdpwall_tests::{
    TempDir,
    cli::Xdpwall,
    netns::{Netns, VethPair, udp_stream_during},
};

/// `n` addresses from 11.0.0.0 on, every third one, one per line.
fn big_table(n: u32, salt: u32) -> String {
    let mut s = String::with_capacity(n as usize * 14);
    for i in 0..n {
        let a = 0x0b00_0000u32 + i * 3 + salt;
        let _ = writeln!(s, "{}.{}.{}.{}", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255);
    }
    s
}

/// 4095 distinct rules plus one on the table; `variant` changes a few of them.
fn big_ruleset(table: &Path, stream_port: u16, variant: u32) -> String {
    let mut s = format!("set default block\ntable <big> file \"{}\"\n", table.display());
    s.push_str("block in quick from <big> label \"blocklist\"\n");
    for i in 0..4093u32 {
        let port = 1000 + i + if i % 500 == 0 { variant } else { 0 };
        let _ =
            writeln!(s, "pass in quick proto udp from 10.{}.{}.0/24 to port {port} no state", 100 + i / 256, i % 256);
    }
    s.push_str("pass in quick proto icmp6 label \"icmp6\" no state\n");
    let _ = writeln!(s, "pass in quick proto udp to port {stream_port} label \"stream\" no state");
    s
}

fn status(fw: &Xdpwall) -> Status {
    fw.status().expect("status")
}

fn by_label(st: &Status, label: &str) -> u64 {
    st.rule(label).expect("a rule with the label").packets
}

#[test]
fn four_thousand_rules_and_a_million_entries_apply_under_traffic() {
    let ns = Netns::new("scale").unwrap();
    let veth = VethPair::new(&ns).unwrap();
    let fw = Xdpwall::isolated();
    let dir = TempDir::new("scale");
    let table_a = dir.write("a.txt", &big_table(1_000_000, 0));
    let table_b = dir.write("b.txt", &big_table(1_000_000, 1));
    let a = dir.write("a.conf", &big_ruleset(&table_a, 6000, 0));
    let b = dir.write("b.conf", &big_ruleset(&table_b, 6000, 7));

    let check = fw.run(["check", a.to_str().unwrap()]).expect("check");
    let check = String::from_utf8_lossy(&check.stdout).to_string();
    assert!(check.contains("4096 rules, 1 tables (1000000 entries)"), "{check}");
    let t = Instant::now();
    fw.run(["load", &veth.host, a.to_str().unwrap()]).expect("load 4096 rules + 1M entries");
    eprintln!("load of 4096 rules + 1M table: {:?}", t.elapsed());

    let to = SocketAddr::new(veth.host_v4.into(), 6000);
    let stream_before = by_label(&status(&fw), "stream");
    let ((), count) = udp_stream_during(&ns, to, 10, Duration::from_millis(1), || {
        for file in [&b, &a] {
            let t = Instant::now();
            let out = fw.run(["apply", file.to_str().unwrap()]).expect("apply at scale");
            let out = String::from_utf8_lossy(&out.stdout).to_string();
            eprintln!(
                "apply of 4096 rules + 1M table under traffic: {:?}\n{}",
                t.elapsed(),
                out.lines().last().unwrap()
            );
            assert!(out.contains("9 added, 9 removed, 4087 unchanged"), "{out}");
        }
    });
    assert!(count.sent > 100, "traffic flowed during the applies ({})", count.sent);
    assert_eq!(count.received, count.sent, "no datagram lost across two applies at scale");
    let st = status(&fw);
    assert_eq!(by_label(&st, "stream") - stream_before, count.sent, "the unchanged rule counted every datagram");
    // Table lookups are checked packet by packet in the kernel and differential tests;
    // here: both applies landed and the blocklist rule is first.
    let st = status(&fw);
    assert_eq!(st.generation, 3);
    assert_eq!(st.rules[0].label.as_deref(), Some("blocklist"));
}

/// A million-entry table per family, shaped like blocklists: mostly hosts, every 16th
/// entry a /24 (IPv4) or a /64 (IPv6), from a generator so that neighbours are not
/// listed. Returns the file text and a few listed and unlisted addresses.
fn family_table(v6: bool, n: u32) -> (String, Vec<IpAddr>, Vec<IpAddr>) {
    let mut s = String::with_capacity(n as usize * 24);
    let (mut listed, mut unlisted) = (Vec::new(), Vec::new());
    for i in 0..n {
        // Spread over 2^24 slots (an odd multiplier permutes them), all distinct.
        let x = i.wrapping_mul(0x9e37_79b1) & 0x00ff_ffff;
        let entry: (IpAddr, u8) = if v6 {
            let a = 0x2001_0db8_0000_0000_0000_0000_0000_0000u128 | (u128::from(x) << 64);
            if i % 16 == 0 { (IpAddr::V6(a.into()), 64) } else { (IpAddr::V6((a | 0x1).into()), 128) }
        } else if i % 16 == 0 {
            (IpAddr::V4((0x0b00_0000 | (x & 0x00ff_ff00)).into()), 24)
        } else {
            (IpAddr::V4((0x0b00_0000 | x).into()), 32)
        };
        let _ = writeln!(s, "{}/{}", entry.0, entry.1);
        if i % 250_000 == 1 {
            listed.push(entry.0);
            // The host's neighbour (IPv4: 11.x.y.z+1 is listed only by chance; checked below).
            unlisted.push(match entry.0 {
                IpAddr::V4(a) => IpAddr::V4((a.to_bits() ^ 0x0100_0000).into()),
                IpAddr::V6(a) => IpAddr::V6((a.to_bits() | 0x2).into()),
            });
        }
        if i == 16 {
            // Inside a listed /24 or /64, not a listed host itself.
            listed.push(match entry.0 {
                IpAddr::V4(a) => IpAddr::V4((a.to_bits() | 0x77).into()),
                IpAddr::V6(a) => IpAddr::V6((a.to_bits() | 0x7777).into()),
            });
        }
    }
    (s, listed, unlisted)
}

#[test]
fn a_million_ipv4_and_a_million_ipv6_entries_judge_real_traffic() {
    let ns = Netns::new("bigtab").unwrap();
    let veth = VethPair::new(&ns).unwrap();
    let fw = Xdpwall::isolated();
    let dir = TempDir::new("bigtab");
    let (t4, listed4, unlisted4) = family_table(false, 1_000_000);
    let (t6, listed6, unlisted6) = family_table(true, 1_000_000);
    let f4 = dir.write("v4.txt", &t4);
    let f6 = dir.write("v6.txt", &t6);
    let rules = dir.write(
        "big.conf",
        &format!(
            "set default pass
table <v4> file \"{}\"
table <v6> file \"{}\"
\
             block in quick proto udp from <v4> label \"v4 listed\"
\
             block in quick proto udp from <v6> label \"v6 listed\"
\
             pass in quick proto udp to port 7100 label \"unlisted\" no state
",
            f4.display(),
            f6.display()
        ),
    );
    let t = Instant::now();
    fw.run(["load", &veth.host, rules.to_str().unwrap()]).expect("load 1M + 1M entries");
    eprintln!("load of 1M IPv4 + 1M IPv6 entries: {:?}", t.elapsed());

    // Each source is an address of the peer end; the filter judges before any routing.
    let sources: Vec<(IpAddr, &str)> = listed4
        .iter()
        .chain(&listed6)
        .map(|a| (*a, if a.is_ipv4() { "v4 listed" } else { "v6 listed" }))
        .chain(unlisted4.iter().chain(&unlisted6).map(|a| (*a, "unlisted")))
        .collect();
    for (a, _) in &sources {
        let net = if a.is_ipv4() { format!("{a}/32") } else { format!("{a}/128") };
        let out = ns.exec(&["ip", "addr", "add", &net, "dev", &veth.peer, "nodad"]);
        assert!(out.status.success(), "adding {net}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let before = status(&fw);
    for (a, _) in &sources {
        let to = if a.is_ipv4() {
            SocketAddr::new(veth.host_v4.into(), 7100)
        } else {
            SocketAddr::new(veth.host_v6.into(), 7100)
        };
        ns.run(|| {
            let sock = UdpSocket::bind(SocketAddr::new(*a, 0)).unwrap();
            for _ in 0..5 {
                sock.send_to(b"x", to).unwrap();
            }
        });
    }
    std::thread::sleep(Duration::from_millis(200));
    let after = status(&fw);
    for label in ["v4 listed", "v6 listed", "unlisted"] {
        let want = 5 * sources.iter().filter(|(_, l)| *l == label).count() as u64;
        assert_eq!(by_label(&after, label) - by_label(&before, label), want, "{label}: sources {sources:?}");
    }
}

#[test]
fn limits_are_reported_by_check_before_anything_loads() {
    let fw = Xdpwall::isolated();
    let dir = TempDir::new("limits");
    let too_many_rules = dir.write("rules.conf", &"pass in proto udp\n".repeat(4097));
    let out = fw.output(["check", too_many_rules.to_str().unwrap()]).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "xdpwall: {}:4097:1: this is rule 4097; a ruleset holds at most 4096 rules\n",
            too_many_rules.display()
        )
    );
    let table = dir.write("t.txt", &big_table(1_000_001, 0));
    let big = dir.write("big.conf", &format!("table <t> file \"{}\"\nblock in from <t>\n", table.display()));
    let out = fw.output(["check", big.to_str().unwrap()]).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "xdpwall: {}:1:7: table <t> has more than 1000000 distinct entries in its file; a table holds at most 1000000\n",
            big.display()
        )
    );
    let out = fw.output(["load", "lo", big.to_str().unwrap()]).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(!fw.pin_dir().exists(), "nothing was pinned");
}

#[test]
fn a_failed_apply_rolls_back_every_interface() {
    let ns = Netns::new("rollback").unwrap();
    let first = VethPair::new(&ns).unwrap();
    let second = VethPair::new(&ns).unwrap();
    let fw = Xdpwall::isolated();
    let dir = TempDir::new("rollback");
    let old = dir.write("old.conf", "set default pass\nblock in quick proto udp to port 7000 label \"closed\"\n");
    let new = dir.write("new.conf", "set default pass\npass in quick proto udp to port 7000 label \"open\" no state\n");
    fw.run(["load", &first.host, &second.host, old.to_str().unwrap()]).expect("load");
    let to = SocketAddr::new(first.host_v4.into(), 7000);
    let sock = UdpSocket::bind(to).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(300))).unwrap();

    // The second interface's swap fails after the first interface was swapped (an
    // injected kernel error at the fifth step: journal, pins, first XDP, first egress,
    // second XDP): the first must be back on the old rules.
    let out = fw.command(["apply", new.to_str().unwrap()]).env("XDPWALL_FAULT", "fail:5").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("injected fault at `swap: XDP swapped, egress not yet`"), "{err}");
    ns.run(|| UdpSocket::bind("0.0.0.0:0").unwrap().send_to(b"x", to).unwrap());
    assert!(sock.recv(&mut [0u8; 4]).is_err(), "port 7000 is still closed on {}", first.host);
    let st = status(&fw);
    assert_eq!(st.generation, 1, "no new generation");
    assert_eq!(by_label(&st, "closed"), 1, "the old rule judged the datagram");
    assert!(st.interfaces.iter().all(|i| i.attached), "{st:?}");

    // A vanished interface is found before anything changes.
    let second_host = second.host.clone();
    drop(second);
    let out = fw.output(["apply", new.to_str().unwrap()]).unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err, format!("xdpwall: {second_host} no longer exists; `xdpwall unload {second_host}` forgets it\n"));
    let (_, out) = fw.status_report().expect("status runs");
    assert_eq!(out.status.code(), Some(1), "status says an interface filters nothing");

    // Unloading the vanished interface lets the next apply through.
    fw.run(["unload", &second_host]).expect("unload the vanished interface");
    fw.run(["apply", new.to_str().unwrap()]).expect("apply");
    ns.run(|| UdpSocket::bind("0.0.0.0:0").unwrap().send_to(b"x", to).unwrap());
    assert!(sock.recv(&mut [0u8; 4]).is_ok(), "port 7000 is open now");
}
