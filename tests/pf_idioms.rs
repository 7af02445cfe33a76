//! pf idioms (tests/pf-idioms/*.conf, written from pf.conf(5) and the pf FAQ): each
//! file's packets, in order, through the kernel program (BPF_PROG_TEST_RUN: XDP for
//! `in`, TC egress for `out`) and through the reference model, which must both give the
//! verdict pf gives; and a few of the idioms with real traffic over a veth pair.

use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    path::{Path, PathBuf},
    time::Duration,
};

use filter_common::slot;
use filter_user::{
    compile,
    model::{ModelDecision, action_going, state::Tracker},
    rules::{self, Action, Direction},
};
use xdpwall_tests::{
    TempDir,
    bpf::{Bed, LO},
    cli::Xdpwall,
    netns::{Netns, VethPair},
    packet::PacketBuilder,
};

/// What decides a packet, as a corpus file writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum By {
    /// Rule number, from 1 in file order.
    Rule(usize),
    /// The flow's state.
    State,
    /// No rule: `set default` (arriving) or pass (leaving).
    Default,
}

/// One `#>` line: a packet, its direction and pf's verdict.
struct Case {
    line: usize,
    text: String,
    way: Direction,
    frame: Vec<u8>,
    pass: bool,
    by: By,
}

fn idioms_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("pf-idioms")
}

/// `ADDR`, the TCP/UDP flags letters, ICMP type names.
fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|_| panic!("bad address {s}"))
}

fn tcp_flags(s: &str) -> u8 {
    s.chars()
        .map(|c| filter_common::wire::tcp_flag(c).unwrap_or_else(|| panic!("bad TCP flag {c}")))
        .fold(0, |a, b| a | b)
}

fn icmp_type(s: &str, v6: bool) -> u8 {
    match (s, v6) {
        ("echoreq", false) => 8,
        ("echorep", false) => 0,
        ("echoreq", true) => 128,
        ("echorep", true) => 129,
        ("neighbrsol", true) => 135,
        ("neighbradv", true) => 136,
        _ => s.parse().unwrap_or_else(|_| panic!("bad ICMP type {s}")),
    }
}

/// Parses `DIR PROTO ... => pass|block rule N|state|default`.
fn parse_case(line: usize, text: &str) -> Case {
    let (packet, verdict) = text.split_once("=>").unwrap_or_else(|| panic!("line {line}: no `=>`"));
    let w: Vec<&str> = packet.split_whitespace().collect();
    let way = match w[0] {
        "in" => Direction::In,
        "out" => Direction::Out,
        d => panic!("line {line}: bad direction {d}"),
    };
    let b = |src: &str, dst: &str| PacketBuilder::eth().ip(ip(src), ip(dst));
    let arrow = |i: usize| assert_eq!(w[i], ">", "line {line}: expected `>`");
    let builder = match w[1] {
        "tcp" => {
            arrow(4);
            b(w[2], w[5]).tcp(w[3].parse().unwrap(), w[6].parse().unwrap(), tcp_flags(w[7]))
        }
        "udp" => {
            arrow(4);
            b(w[2], w[5]).udp(w[3].parse().unwrap(), w[6].parse().unwrap())
        }
        proto @ ("icmp" | "icmp6") => {
            arrow(3);
            let v6 = proto == "icmp6";
            let t = icmp_type(w[5], v6);
            let id: u16 = w.get(6).map_or(0, |s| s.parse().unwrap());
            let rest = [(id >> 8) as u8, id as u8, 0, 1];
            let p = b(w[2], w[4]);
            if v6 { p.icmp6(t, 0).icmp_rest(rest) } else { p.icmp(t, 0).icmp_rest(rest) }
        }
        p => panic!("line {line}: bad protocol {p}"),
    };
    let v: Vec<&str> = verdict.split_whitespace().collect();
    let pass = match v[0] {
        "pass" => true,
        "block" => false,
        x => panic!("line {line}: bad verdict {x}"),
    };
    let by = match v.get(1).copied() {
        Some("rule") => By::Rule(v[2].parse().unwrap()),
        Some("state") => By::State,
        Some("default") => By::Default,
        x => panic!("line {line}: bad `by` {x:?}"),
    };
    Case { line, text: text.trim().to_owned(), way, frame: builder.payload(b"pf").build().bytes, pass, by }
}

/// Every corpus file with its packet lines.
fn corpus() -> Vec<(PathBuf, Vec<Case>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(idioms_dir())
        .expect("tests/pf-idioms exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let cases = text
                .lines()
                .enumerate()
                .filter_map(|(i, l)| l.strip_prefix("#>").map(|c| parse_case(i + 1, c)))
                .collect::<Vec<_>>();
            assert!(!cases.is_empty(), "{}: no packet lines", path.display());
            (path, cases)
        })
        .collect()
}

/// The counter slot a decision counts in.
fn slot_of(by: By, way: Direction, default: Action) -> u32 {
    match (by, way) {
        (By::Rule(n), _) => slot::RESERVED + n as u32 - 1,
        (By::State, _) => slot::STATE,
        (By::Default, Direction::Out) => slot::OUT_UNMATCHED,
        (By::Default, _) if default == Action::Pass => slot::DEFAULT_PASS,
        (By::Default, _) => slot::DEFAULT_BLOCK,
    }
}

#[test]
fn corpus_files_parse_and_cover_the_issue_examples() {
    let names: Vec<String> =
        corpus().iter().map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    for needed in ["faq-home-echoreq.conf", "router-icmp6.conf", "pass-then-block.conf", "block-in-pass-out.conf"] {
        assert!(names.iter().any(|n| n == needed), "{needed} is in the corpus");
    }
}

#[test]
fn every_idiom_decides_as_pf_in_the_kernel_and_the_model() {
    for (path, cases) in corpus() {
        let file = path.display().to_string();
        let rs = rules::parse_file(&path).unwrap_or_else(|e| panic!("{e}"));
        let compiled = compile::compile(&rs).expect("compiles");
        let mut bed = Bed::load(&compiled, Some("lo"), false, "pfi").expect("program loads and verifies");
        let slots = slot::RESERVED + rs.rules.len() as u32;
        let mut model = Tracker::new();

        for case in cases {
            let at = format!("{file}:{}: {}", case.line, case.text);
            let before = bed.counters(slots).expect("counters");
            let passed = match case.way {
                Direction::Out => bed.program.test_run_egress(&case.frame).expect("egress test run") == 0,
                _ => bed.program.test_run(&case.frame, Some(LO)).expect("test run") == 2,
            };
            let after = bed.counters(slots).expect("counters");
            // `block return` answers count apart (tests/answer.rs checks them).
            let answers = [slot::ANSWERS_SENT as usize, slot::ANSWERS_SUPPRESSED as usize];
            let moved: Vec<usize> =
                (0..after.len()).filter(|&s| after[s].packets != before[s].packets && !answers.contains(&s)).collect();
            let want_slot = slot_of(case.by, case.way, rs.default_action) as usize;
            assert_eq!(passed, case.pass, "{at}: kernel verdict");
            assert_eq!(moved, [want_slot], "{at}: kernel counter (slot {want_slot} expected)");

            let decision = model.decide_going(&rs, &case.frame, Some("lo"), case.way);
            let want = match case.by {
                By::Rule(n) => ModelDecision::Rule(n - 1),
                By::State => ModelDecision::State,
                By::Default => ModelDecision::Default,
            };
            assert_eq!(decision, want, "{at}: model");
            assert_eq!(action_going(&rs, &decision, case.way) == Action::Pass, case.pass, "{at}: model verdict");
        }
    }
}

// ---- over a veth pair: the filter on the host end, the peer in its own netns ----

/// Loads `file` of the corpus on the host end of a fresh veth pair.
fn bed(prefix: &str, file: &str) -> (Netns, VethPair, Xdpwall) {
    let ns = Netns::new(prefix).expect("netns");
    let veth = VethPair::new(&ns).expect("veth pair");
    let fw = Xdpwall::isolated();
    let rules = idioms_dir().join(file);
    fw.run(["load", &veth.host, rules.to_str().unwrap()]).expect("load");
    (ns, veth, fw)
}

/// Whether a datagram sent from the netns to `to` arrives at `sock`.
fn udp_arrives(ns: &Netns, sock: &UdpSocket, to: SocketAddr) -> bool {
    ns.run(|| {
        let s = UdpSocket::bind(if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }).unwrap();
        s.send_to(b"pf", to).unwrap();
    });
    sock.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    sock.recv(&mut [0u8; 16]).is_ok()
}

#[test]
fn faq_home_firewall_over_a_veth() {
    let (ns, veth, _fw) = bed("pfi-faq", "faq-home-echoreq.conf");
    let host: IpAddr = veth.host_v4.into();
    assert_eq!(ns.ping_replies(host, 2), 2, "echo requests pass (the last match), replies leave by state");
    let sock = UdpSocket::bind((veth.host_v4, 0)).unwrap();
    let to = SocketAddr::new(host, sock.local_addr().unwrap().port());
    assert!(!udp_arrives(&ns, &sock, to), "anything else arriving is blocked");
}

#[test]
fn block_in_pass_out_lets_replies_in_by_state_over_a_veth() {
    let (ns, veth, _fw) = bed("pfi-state", "block-in-pass-out.conf");
    let peer: IpAddr = veth.peer_v4.into();
    // A UDP server in the netns; the host asks, the answer comes back by state.
    let server = ns.run(|| UdpSocket::bind((peer, 0)).unwrap());
    let server_addr = server.local_addr().unwrap();
    let client = UdpSocket::bind((veth.host_v4, 0)).unwrap();
    client.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    client.send_to(b"q", server_addr).unwrap();
    let (_, from) = ns.run(|| {
        server.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        server.recv_from(&mut [0u8; 16]).expect("the host's query leaves (pass out)")
    });
    ns.run(|| server.send_to(b"a", from).unwrap());
    assert!(client.recv(&mut [0u8; 16]).is_ok(), "the answer passes by state");
    // The same server writing first to another host port is blocked.
    let other = UdpSocket::bind((veth.host_v4, 0)).unwrap();
    let to = SocketAddr::new(veth.host_v4.into(), other.local_addr().unwrap().port());
    assert!(!udp_arrives(&ns, &other, to), "unsolicited datagrams are blocked");
}

#[test]
fn router_keeps_neighbour_discovery_over_a_veth() {
    let (ns, veth, _fw) = bed("pfi-nd", "router-icmp6.conf");
    // `block all` + `pass inet6 proto icmp6 all`: neighbour discovery and ping6 work
    // both ways; IPv4 (ARP aside) does not.
    assert_eq!(ns.ping_replies(veth.host_v6.into(), 2), 2, "ICMPv6 passes both ways");
    assert_eq!(ns.ping_replies(veth.host_v4.into(), 1), 0, "ICMP is blocked");
}

// ---- `check` on a pf.conf ----

#[test]
fn check_lists_skipped_statements_warnings_and_shadowed_rules() {
    let dir = TempDir::new("pfi-check");
    let conf = dir.write(
        "pf.conf",
        "ext_if = \"eth0\"\n\
         set loginterface $ext_if\n\
         scrub in all\n\
         nat on $ext_if from 10.0.0.0/8 to any -> 192.0.2.1\n\
         include \"extra.conf\"\n\
         block in proto tcp from any to any port ssh\n\
         pass in all no state\n\
         pass out on $ext_if proto tcp all modulate state\n",
    );
    let conf = conf.to_str().unwrap();
    let extra = dir.write("extra.conf", "pass in proto udp to port ntp no state\n");
    let fw = Xdpwall::isolated();
    let refused = fw.output(["check", conf]).unwrap();
    assert!(!refused.status.success());
    assert_eq!(
        String::from_utf8_lossy(&refused.stderr).trim(),
        format!(
            "xdpwall: {conf}:3:1: `scrub` is not supported: xdpwall does not rewrite packets: it drops malformed ones and lets the kernel reassemble fragments"
        )
    );
    let out = fw.run(["check", "--skip-unsupported", conf]).expect("the rest checks");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let notes: Vec<&str> = stdout.lines().skip_while(|l| !l.starts_with("skipped")).collect();
    assert_eq!(
        notes,
        [
            "skipped 2 unsupported statements (the rest is checked):".to_owned(),
            format!("  {conf}:3: `scrub` is not supported: xdpwall does not rewrite packets: it drops malformed ones and lets the kernel reassemble fragments"),
            format!("  {conf}:4: `nat` is not supported: xdpwall filters; address translation stays in nftables or pf"),
            format!("warning: {conf}:2:5: `set loginterface` is accepted and does nothing here: xdpwall counts packets per interface for every interface it filters (see `status`)"),
            format!("warning: {conf}:8:35: `modulate state` is kept as `keep state`: xdpwall does not modulate TCP sequence numbers"),
            format!("warning: rule 1 ({}:1) never decides a packet: rule 3 (line 7) wins over it and matches every packet it matches", extra.display()),
            "warning: rule 2 (line 6) never decides a packet: rule 3 (line 7) wins over it and matches every packet it matches".to_owned(),
        ]
    );
    assert!(stdout.contains("   4  pass out on eth0 proto tcp all modulate state"), "{stdout}");
}

#[test]
fn check_reads_pfs_state_options() {
    let dir = TempDir::new("pfi-srclimits");
    let conf = dir.write(
        "pf.conf",
        "table <bruteforce> persist\n\
         block quick from <bruteforce>\n\
         pass in on eth0 proto tcp to port ssh flags S/SA keep state \\\n\
         \t(max-src-conn 15, max-src-conn-rate 5/3, overload <bruteforce> flush global, no-sync, pflow)\n",
    );
    let conf = conf.to_str().unwrap();
    let fw = Xdpwall::isolated();
    let out = fw.run(["check", conf]).expect("pf's state options are read");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(
            "   2  pass in on eth0 proto tcp to port ssh flags S/SA keep state (max-src-conn 15, max-src-conn-rate 5/3, overload <bruteforce> flush global, no-sync, pflow)"
        ),
        "{stdout}"
    );
    let warnings: Vec<&str> = stdout.lines().filter(|l| l.starts_with("warning")).collect();
    assert_eq!(
        warnings,
        [
            format!("warning: {conf}:4:79: `no-sync` is accepted and does nothing here: xdpwall has no pfsync"),
            format!(
                "warning: {conf}:4:88: `pflow` is accepted and does nothing here: xdpwall exports no pflow records"
            ),
        ]
    );
    // A flush after a packet rate, which spoofed packets can trip, is refused.
    let bad =
        dir.write("bad.conf", "table <f> persist\npass in proto udp no state rate 5/s per-source overload <f> flush\n");
    let refused = fw.output(["check", bad.to_str().unwrap()]).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&refused.stderr).trim(),
        format!(
            "xdpwall: {}:2:61: `flush` needs `max-src-conn` or `max-src-conn-rate`: a packet rate can be tripped by spoofed packets, which must not end someone else's flows",
            bad.display()
        )
    );
}
