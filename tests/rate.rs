//! Rate limits through the real XDP program (BPF_PROG_TEST_RUN): a rule over its rate
//! does not match and the next candidate decides; per-source limiters are kept apart;
//! and two CPUs hammering one limiter at once never pass more than the rate allows.

use std::{net::Ipv4Addr, time::Instant};

use aya::{TestRun as _, TestRunOptions};
use filter_common::{Counter, RuleEvents, slot};
use filter_user::{
    compile,
    dataplane::{LoadedProgram, read_counters, read_log_counters, read_rule_events},
    rules,
};
use xdpwall_tests::{
    bpf::{Bed, pin_to_cpu},
    packet::PacketBuilder,
};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

/// A ruleset loaded (not attached) on the shared test bed (`xdpwall_tests::bpf::Bed`),
/// with what these tests read of it; rule `i` counts in slot `RESERVED + i`.
struct Loaded {
    bed: Bed,
}

impl Loaded {
    fn new(src: &str) -> Loaded {
        let rs = rules::parse_str(src, "rate-test.conf", std::path::Path::new(".")).expect("ruleset parses");
        let compiled = compile::compile(&rs).expect("ruleset compiles");
        Loaded { bed: Bed::load(&compiled, None, false, "rate").expect("program loads and verifies") }
    }

    fn program(&mut self) -> &mut LoadedProgram {
        &mut self.bed.program
    }

    fn pin_dir(&self) -> &std::path::Path {
        self.bed.pin_dir()
    }

    fn run(&mut self, frame: &[u8]) -> u32 {
        self.program().test_run(frame, None).expect("test run")
    }

    fn counter(&self, rule: u32) -> Counter {
        read_counters(self.pin_dir()).expect("counters")[(slot::RESERVED + rule) as usize]
    }

    fn events(&self, rule: u32) -> RuleEvents {
        read_rule_events(self.pin_dir()).expect("rule events")[(slot::RESERVED + rule) as usize]
    }

    fn default_block(&self) -> u64 {
        read_counters(self.pin_dir()).expect("counters")[slot::DEFAULT_BLOCK as usize].packets
    }
}

fn udp(src: &str, dport: u16) -> Vec<u8> {
    let src: Ipv4Addr = src.parse().unwrap();
    PacketBuilder::eth().ipv4(src, Ipv4Addr::new(198, 51, 100, 1)).udp(4000, dport).payload(b"rate").build().bytes
}

fn udp_from_port(src: &str, sport: u16, dport: u16) -> Vec<u8> {
    let src: Ipv4Addr = src.parse().unwrap();
    PacketBuilder::eth().ipv4(src, Ipv4Addr::new(198, 51, 100, 1)).udp(sport, dport).payload(b"rate").build().bytes
}

fn udp6(src: &str, dport: u16) -> Vec<u8> {
    PacketBuilder::eth()
        .ipv6(src.parse().unwrap(), "2001:db8:e::1".parse().unwrap())
        .udp(4000, dport)
        .payload(b"rate")
        .build()
        .bytes
}

/// A full bucket lets `burst` packets match; an empty one sends the packet on to the
/// next rule that matches (here a `block`), else to the default; each such packet is
/// counted as over the rule's rate. Periods of a day keep the bucket empty for the
/// whole test, so nothing here depends on timing.
#[test]
fn a_rule_over_its_rate_hands_the_packet_on() {
    let mut f = Loaded::new(
        "set default block\n\
         pass in quick proto udp to port 7000 no state max-pkt-rate 3/86400\n\
         block in quick proto udp to port 7000\n\
         pass in quick proto udp to port 7001 no state rate 2/d burst 4\n\
         block in quick from { 2001:db8:ffff::/48, 203.0.113.0/24 } to 2001:db8:fffe::/48\n",
    );
    let to_7000 = udp("192.0.2.1", 7000);
    let verdicts: Vec<u32> = (0..5).map(|_| f.run(&to_7000)).collect();
    assert_eq!(verdicts, [XDP_PASS, XDP_PASS, XDP_PASS, XDP_DROP, XDP_DROP], "3 pass, then the block rule");
    assert_eq!(f.counter(0).packets, 3, "rule 0 matched its burst");
    assert_eq!(f.counter(1).packets, 2, "rule 1 took the packets over rule 0's rate");
    assert_eq!(f.events(0).over_rate, 2, "rule 0 counts the packets over its rate");
    assert_eq!(f.events(1).over_rate, 0);

    // No later rule matches: the default decides.
    let to_7001 = udp("192.0.2.1", 7001);
    let verdicts: Vec<u32> = (0..6).map(|_| f.run(&to_7001)).collect();
    assert_eq!(verdicts, [XDP_PASS, XDP_PASS, XDP_PASS, XDP_PASS, XDP_DROP, XDP_DROP], "burst 4, then the default");
    assert_eq!((f.counter(2).packets, f.events(2).over_rate, f.default_block()), (4, 2, 2));
}

/// Each source prefix has its own limiter: one source's flood leaves another's bucket
/// full; sources inside one `mask` prefix share one.
#[test]
fn per_source_limiters_are_kept_apart() {
    let mut f = Loaded::new(
        "set default block\n\
         pass in quick proto udp to port 7000 no state rate 2/h per-source\n\
         pass in quick proto udp to port 7001 no state rate 2/h per-source mask /24 /48\n",
    );
    for src in ["192.0.2.1", "192.0.2.2"] {
        let v: Vec<u32> = (0..3).map(|_| f.run(&udp(src, 7000))).collect();
        assert_eq!(v, [XDP_PASS, XDP_PASS, XDP_DROP], "{src}: its own bucket of 2");
    }
    let v: Vec<u32> = (0..3).map(|_| f.run(&udp6("2001:db8:1:1::1", 7000))).collect();
    assert_eq!(v, [XDP_PASS, XDP_PASS, XDP_DROP], "an IPv6 /64");
    // The same /64 (default IPv6 mask), another host: the same bucket, already empty.
    assert_eq!(f.run(&udp6("2001:db8:1:1::2", 7000)), XDP_DROP, "same /64, same bucket");
    assert_eq!(f.run(&udp6("2001:db8:1:2::1", 7000)), XDP_PASS, "another /64, its own bucket");
    assert_eq!(f.events(0).over_rate, 4);

    // mask /24 /48: the /24 and the /48 are one source each.
    let v: Vec<u32> = ["10.1.1.1", "10.1.1.2", "10.1.1.3", "10.1.2.1"].iter().map(|s| f.run(&udp(s, 7001))).collect();
    assert_eq!(v, [XDP_PASS, XDP_PASS, XDP_DROP, XDP_PASS], "one bucket per /24");
    let v: Vec<u32> = ["2001:db8:5:1::1", "2001:db8:5:2::1", "2001:db8:5:3::1", "2001:db8:6::1"]
        .iter()
        .map(|s| f.run(&udp6(s, 7001)))
        .collect();
    assert_eq!(v, [XDP_PASS, XDP_PASS, XDP_DROP, XDP_PASS], "one bucket per /48");
}

/// Two threads pinned to CPUs 0 and 1 run the same program (one limiter) at once as
/// fast as they can, from the same start: the packets the rule passes never exceed what
/// GCRA allows over the elapsed time (burst + rate x time). The bucket holds 200000
/// packets and refills at 200000 a day (one every 0.432 s), so the two CPUs race for
/// the same tokens the whole time they are spent: a limiter kept per CPU would pass
/// twice the burst, and one updated without compare-and-swap loses updates and passes
/// more. The bound uses the time measured around the runs, so a slow machine only
/// loosens it (by one packet per 0.432 s).
#[test]
fn two_cpus_share_one_limiter() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        eprintln!("skipped: needs two CPUs");
        return;
    }
    const BURST: u64 = 200_000;
    const INTERVAL_SECS: f64 = 86_400.0 / BURST as f64;
    let mut f =
        Loaded::new(&format!("set default block\npass in quick proto udp to port 7000 no state rate {BURST}/d\n"));
    let prog = &*f.program().program_mut().expect("the XDP program");
    let frame = udp("192.0.2.1", 7000);
    const ROUNDS: u32 = 16;
    const REPEAT: u32 = 10_000;
    let start_line = std::sync::Barrier::new(2);
    let start = Instant::now();
    std::thread::scope(|s| {
        for cpu in 0..2 {
            let (frame, start_line) = (&frame, &start_line);
            s.spawn(move || {
                pin_to_cpu(cpu);
                start_line.wait();
                for _ in 0..ROUNDS {
                    let mut opts = TestRunOptions::new();
                    opts.data_in = Some(frame);
                    opts.repeat = REPEAT;
                    prog.test_run(opts).expect("test run");
                }
            });
        }
    });
    let elapsed = start.elapsed().as_secs_f64();
    let sent = 2 * u64::from(ROUNDS) * u64::from(REPEAT);
    let passed = f.counter(0).packets;
    let over = f.events(0).over_rate;
    let allowed = BURST + (elapsed / INTERVAL_SECS).ceil() as u64 + 1;
    eprintln!(
        "sent {sent} in {elapsed:.3} s from 2 CPUs: {passed} passed (allowed at most {allowed}), {over} over rate"
    );
    assert_eq!(passed + over, sent, "every packet either matched or was over the rate");
    assert_eq!(f.default_block(), over, "the packets over the rate went to the default");
    assert!(passed >= BURST, "the full bucket's burst passes ({passed})");
    assert!(passed <= allowed, "passed {passed} > burst + rate x {elapsed:.3} s = {allowed}");
}

/// The verifier accepts the most rate limits a ruleset may have, per rule and per
/// source, beside every address structure (IPv4 and IPv6, hashed and trie) and port
/// rules, and the last of them still works: a packet over the first rules' rates
/// reaches it.
#[test]
fn the_most_rate_limits_a_ruleset_may_have_load() {
    let mut src = String::from("set default block\ntable <six> { 2001:db8:1::/48, 2001:db8:2::1, 2001:db8:3::/64 }\n");
    src.push_str("block in quick from <six> to { 203.0.113.0/25, 203.0.113.200 }\n");
    for i in 0..filter_common::MAX_RATE_RULES {
        let per_source = if i % 2 == 0 { "per-source" } else { "" };
        // Some keep state (the flow's first packet opens it; this test sends each packet
        // of another flow, so none passes by state).
        let state = if i % 4 == 1 { "keep state" } else { "no state" };
        src.push_str(&format!("pass in quick proto udp to port 7000 {state} max-pkt-rate 1/86400 {per_source}\n"));
        // 1/86400 is a bucket of 1 for a day; as `rate`: a day's packet.
        let _ = i;
    }
    let src = src.replace("max-pkt-rate 1/86400 per-source", "rate 1/d per-source");
    // The other per-packet extras on top, so the verifier sees them together: a logged
    // rule that answers what it blocks (`block return`, a tail call), the default logged.
    let src = src.replace("set default block\n", "set default block log\n")
        + "block return in log quick proto tcp to port 9\n";
    let started = Instant::now();
    let mut f = Loaded::new(&src);
    eprintln!("loaded (verified) in {:.2} s", started.elapsed().as_secs_f64());
    let verdicts: Vec<u32> = (0..=filter_common::MAX_RATE_RULES)
        .map(|i| f.run(&udp_from_port("192.0.2.1", 10_000 + i as u16, 7000)))
        .collect();
    assert!(verdicts[..filter_common::MAX_RATE_RULES as usize].iter().all(|&v| v == XDP_PASS), "one packet per rule");
    assert_eq!(verdicts[filter_common::MAX_RATE_RULES as usize], XDP_DROP, "then the default");
    let last = filter_common::MAX_RATE_RULES;
    assert_eq!((f.counter(last).packets, f.events(last).over_rate), (1, 1), "the last rule took the last packet");
    let first = (f.counter(1).packets, f.events(1).over_rate);
    assert_eq!(first, (1, u64::from(filter_common::MAX_RATE_RULES)), "the first took one, then was over");
}

/// `set log-rate`: a flood of logged packets (BPF_PROG_TEST_RUN, both CPUs' worth in
/// one run) writes at most `burst + rate x time` records; every other packet is counted
/// as suppressed (or lost, when the ring is full), none vanishes from the counters.
#[test]
fn the_log_limit_holds_under_a_flood() {
    let mut f = Loaded::new("set default block log\nset log-rate 50/s\nblock in quick proto udp to port 7000 log\n");
    let started = Instant::now();
    f.program().test_run_repeat(&udp("192.0.2.1", 7000), None, 200_000).expect("flood");
    f.program().test_run_repeat(&udp("192.0.2.1", 7999), None, 1000).expect("flood the default");
    let elapsed = started.elapsed().as_secs_f64();
    let log = read_log_counters(f.pin_dir()).expect("log counters");
    let allowed = 50 + (50.0 * elapsed).ceil() as u64 + 1;
    eprintln!("201000 logged packets in {elapsed:.3} s: {log:?}, at most {allowed} written");
    assert_eq!(log.written + log.suppressed + log.lost, 201_000, "every logged packet is counted once");
    assert!(log.written >= 50, "the burst is written");
    assert!(log.written <= allowed, "written {} > 50 + 50/s x {elapsed:.3} s", log.written);
    let by_rule = f.events(0).logged;
    assert!(by_rule >= 50 && by_rule <= log.written, "the rule counts its records: {by_rule} of {}", log.written);
}

/// `overload <t> for N`: a source over its per-source rate is put into the dynamic
/// table by the data plane; `block in quick from <t>` then blocks it (before its rate
/// rule), another source is untouched, and after N seconds (and a refilled bucket) the
/// source is let back.
#[test]
fn overload_puts_the_flooding_source_into_the_table_until_it_expires() {
    let mut f = Loaded::new(
        "set default block\n\
         table <flooders> persist\n\
         block in quick from <flooders>\n\
         pass in quick proto udp to port 7000 no state rate 2/s per-source overload <flooders> for 1\n",
    );
    let a = udp("192.0.2.1", 7000);
    let v: Vec<u32> = (0..6).map(|_| f.run(&a)).collect();
    assert_eq!(v, [XDP_PASS, XDP_PASS, XDP_DROP, XDP_DROP, XDP_DROP, XDP_DROP], "a: burst 2, then over and blocked");
    assert_eq!(f.events(1).over_rate, 1, "a was over its rate once: then it was in the table");
    assert_eq!(f.counter(0).packets, 3, "the table's block rule took a's packets after the overload");
    // Another source: its own bucket, not in the table.
    let b = udp("192.0.2.2", 7000);
    assert_eq!([f.run(&b), f.run(&b)], [XDP_PASS, XDP_PASS], "b is untouched");
    assert_eq!(f.counter(0).packets, 3);
    // The entry expires after 1 s; by then a's bucket is full again.
    std::thread::sleep(std::time::Duration::from_millis(1600));
    assert_eq!(f.run(&a), XDP_PASS, "a is let back after the expiry");
    assert_eq!(f.counter(0).packets, 3, "no longer blocked by the table");
}

/// The largest ruleset rate limits may share ([`filter_common::MAX_RATED_STEPS`]: its
/// 64-rule words plus its rate rules), with every field in use, loads, and its rate
/// rules at the end work; one rule more is refused by the compiler, with the reason,
/// rather than by the verifier.
#[test]
fn rate_limits_in_the_largest_ruleset_they_may_share_load() {
    let rated = filter_common::MAX_RATE_RULES;
    let words = filter_common::MAX_RATED_STEPS - rated;
    let fillers = words * 64 - rated;
    let mut src = String::from("set default block\n");
    for i in 0..fillers {
        let (a, b) = (i / 256, i % 256);
        let (on, extra) = match i % 4 {
            0 => (" on lo", " vlan 7"),
            1 => ("", " flags S/SA"),
            _ => ("", ""),
        };
        if i % 8 == 3 {
            src.push_str(&format!("block in quick on lo proto icmp from 10.{a}.{b}.0/24 icmp-type {}\n", i % 16));
            continue;
        }
        let proto = if i % 2 == 0 { "udp" } else { "tcp" };
        src.push_str(&format!(
            "block in quick{on} proto {proto} from 10.{a}.{b}.0/24 port {} to 2001:db8:{a:x}::{b:x} port {}{extra} no state\n",
            1000 + i % 100,
            2000 + i % 50
        ));
    }
    for i in 0..rated {
        let per_source = if i % 2 == 0 { "per-source" } else { "" };
        src.push_str(&format!("pass in quick proto udp to port 7000 no state rate 1/d {per_source}\n"));
    }
    let started = Instant::now();
    let mut f = Loaded::new(&src);
    eprintln!(
        "{} rules, {rated} rated, loaded (verified) in {:.2} s",
        fillers + rated,
        started.elapsed().as_secs_f64()
    );
    let v: Vec<u32> = (0..2).map(|i| f.run(&udp_from_port("192.0.2.1", 10_000 + i, 7000))).collect();
    assert_eq!(v, [XDP_PASS, XDP_PASS], "the rate rules at the end match in turn");
    assert_eq!(f.counter(fillers).packets, 1, "the first rate rule took one packet");
    assert_eq!(f.counter(fillers + 1).packets, 1, "then the next");

    let one_more = format!("{src}block in quick proto udp to port 9\n");
    let rs = rules::parse_str(&one_more, "rate-test.conf", std::path::Path::new(".")).expect("parses");
    let err = compile::compile(&rs).expect_err("a word more is refused").to_string();
    assert!(err.contains("may be at most 48"), "{err}");
}
