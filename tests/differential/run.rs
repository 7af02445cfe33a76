//! Running both sides.

// The case types, generators and imports of the sibling modules, gathered in main.rs.
use crate::*;

/// A ruleset loaded into the kernel with tracing, counting into its own pin dir;
/// `key` says which ruleset (a case's packets reuse the program of the previous case
/// when the key is the same).
pub(crate) struct Loaded {
    pub(crate) key: String,
    pub(crate) bed: Bed,
}

impl Loaded {
    pub(crate) fn new(rs: &Ruleset, key: String, lo_name: Option<&str>) -> Result<Loaded, String> {
        let compiled = compile::compile(rs).map_err(|e| format!("compile: {e}"))?;
        let bed = Bed::load(&compiled, lo_name, true, "diff").map_err(|e| format!("{e:#}"))?;
        Ok(Loaded { key, bed })
    }
}

/// The kernel's flow tables against the model's flows: the same flows, opened by the
/// same endpoint, in the same state, each in the table its state puts it in (answered
/// flows in `STATES`, the others in `STATES_NEW`), none in both.
pub(crate) fn flow_tables_agree(bed: &Bed, tracker: &Tracker) -> Result<(), String> {
    use std::collections::HashMap;

    use filter_user::model::state::{Endpoint, FlowKey, FlowState, TcpState};
    let mut kernel = HashMap::new();
    for (answered, name) in [(true, names::STATES), (false, names::STATES_NEW)] {
        for (k, st) in bed.flows(name).map_err(|e| format!("{name}: {e:#}"))? {
            let addr = |a: [u8; 16]| {
                if u32::from(k.family) == filter_common::FAMILY_V4 {
                    IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
                } else {
                    IpAddr::V6(Ipv6Addr::from(a))
                }
            };
            let a = Endpoint { addr: addr(k.addr_a), port: k.port_a };
            let b = Endpoint { addr: addr(k.addr_b), port: k.port_b };
            let key = FlowKey::new(k.proto, a, b);
            let opener = if st.orig == 0 { a } else { b };
            if kernel.insert(key, (answered, st.state, opener)).is_some() {
                return Err(format!("{key:?} is in both tables"));
            }
        }
    }
    for (key, flow) in tracker.flows() {
        use filter_common::flow as k;
        let want = match flow.state {
            FlowState::Tcp(TcpState::SynSent) => k::TCP_SYN_SENT,
            FlowState::Tcp(TcpState::SynReceived) => k::TCP_SYN_RECEIVED,
            FlowState::Tcp(TcpState::Established) => k::TCP_ESTABLISHED,
            FlowState::Tcp(TcpState::Closing) => k::TCP_CLOSING,
            FlowState::Tcp(TcpState::FinWait) => k::TCP_FIN_WAIT,
            FlowState::Tcp(TcpState::Closed) => k::TCP_CLOSED,
            FlowState::UdpSingle => k::UDP_SINGLE,
            FlowState::UdpMultiple => k::UDP_MULTIPLE,
            FlowState::IcmpEcho => k::ICMP_ECHO,
        };
        let want = (flow.state.answered(), want, flow.opener);
        match kernel.remove(key) {
            None => return Err(format!("the model tracks {key:?} ({flow:?}), the kernel does not")),
            Some(got) if got != want => {
                return Err(format!("{key:?}: kernel (answered table, state, opener) {got:?}, model {want:?}"));
            }
            Some(_) => {}
        }
    }
    match kernel.keys().next() {
        Some(key) => Err(format!("the kernel tracks {key:?}, the model does not")),
        None => Ok(()),
    }
}

/// Totals over a run, printed at the end.
#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) rulesets: AtomicU64,
    pub(crate) packets: AtomicU64,
    pub(crate) rules: AtomicU64,
    pub(crate) default: AtomicU64,
    pub(crate) non_ip: AtomicU64,
    pub(crate) malformed: AtomicU64,
    /// Time spent loading programs (µs).
    pub(crate) load_us: AtomicU64,
    /// Time spent in BPF_PROG_TEST_RUN and reading the trace (µs).
    pub(crate) run_us: AtomicU64,
    /// Packets decided by a rule using each feature (see [`FEATURES`]).
    pub(crate) features: [AtomicU64; FEATURES.len()],
    /// Packets that an `out` rule would have matched, were it an `in` rule.
    pub(crate) out_skipped: AtomicU64,
    /// IP packets also sent the other way (TC egress, as the host's own), and how many
    /// of those were blocked there.
    pub(crate) egress: AtomicU64,
    pub(crate) egress_blocked: AtomicU64,
    /// Malformed packets by reason (`Malformed::ALL` order), to show the generator
    /// reaches every reason.
    pub(crate) reasons: [AtomicU64; Malformed::ALL.len()],
}

/// What the deciding rules used, to show that the generator reaches every field.
pub(crate) const FEATURES: [&str; 14] = [
    "on",
    "inet/inet6",
    "proto",
    "from/to",
    "negated",
    "table",
    "port",
    "port range",
    "flags",
    "icmp-type",
    "vlan",
    "rule >= 64",
    "quick",
    "no direction",
];

pub(crate) fn features(rule: &Rule, index: usize) -> [bool; FEATURES.len()] {
    let lists = [&rule.from.addr, &rule.to.addr];
    let has_table = lists.iter().any(|m| match m {
        AddrMatch::List { items, .. } => items.iter().any(|i| matches!(i, AddrItem::Table(_))),
        AddrMatch::Any => false,
    });
    let ports: Vec<&rules::PortRange> = rule.from.ports.iter().chain(&rule.to.ports).flatten().collect();
    [
        rule.interface.is_some(),
        rule.family.is_some(),
        rule.protocols.is_some(),
        lists.iter().any(|m| **m != AddrMatch::Any),
        lists.iter().any(|m| matches!(m, AddrMatch::List { negated: true, .. })),
        has_table,
        !ports.is_empty(),
        ports.iter().any(|r| r.lo != r.hi),
        rule.tcp_flags.is_some(),
        rule.icmp.is_some(),
        rule.vlan.is_some(),
        index >= 64,
        rule.quick,
        rule.direction == rules::Direction::Both,
    ]
}

pub(crate) fn xdp(a: Action) -> u32 {
    match a {
        Action::Pass => XDP_PASS,
        Action::Block => XDP_DROP,
    }
}

/// What the kernel must answer for the model's decision.
pub(crate) fn expected(rs: &Ruleset, d: &ModelDecision) -> Decision {
    let slot = match *d {
        ModelDecision::Rule(i) => slot::RESERVED + i as u32,
        ModelDecision::Default => match rs.default_action {
            Action::Pass => slot::DEFAULT_PASS,
            Action::Block => slot::DEFAULT_BLOCK,
        },
        ModelDecision::NonIp => slot::NON_IP,
        ModelDecision::Malformed(m) => m.slot(),
        ModelDecision::State => slot::STATE,
        // Dropped, and counted apart from the rule (its own `source_limited` count is
        // not checked here).
        ModelDecision::SourceLimited(_) => slot::SOURCE_LIMIT,
    };
    Decision { action: xdp(model::action(rs, d)), slot }
}

/// A counter slot in words.
pub(crate) fn slot_name(s: u32) -> String {
    match s {
        slot::DEFAULT_PASS => "default pass".into(),
        slot::DEFAULT_BLOCK => "default block".into(),
        slot::NON_IP => "non-IP".into(),
        slot::STATE => "passed by state".into(),
        slot::SOURCE_LIMIT => "source-limited".into(),
        s if s >= slot::RESERVED => format!("rule {}", s - slot::RESERVED),
        s => Malformed::ALL
            .iter()
            .find(|m| m.slot() == s)
            .map_or(format!("slot {s}"), |m| format!("malformed {}", m.name())),
    }
}

pub(crate) fn hex(frame: &[u8]) -> String {
    frame.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn describe(d: &Decision) -> String {
    let action = match d.action {
        XDP_PASS => "pass",
        XDP_DROP => "drop",
        _ => "?",
    };
    format!("{action}, counted as {}", slot_name(d.slot))
}

/// Runs `frame` through the TC egress program, as a packet the host sends, and through
/// the model going `out` (rules `out` and without direction; pass when none decides);
/// `Err` describes a disagreement. Only for IP packets of stateless rulesets: egress
/// leaves what it cannot parse alone, and would open flows the stateless model does
/// not know. Returns whether the packet was blocked.
pub(crate) fn check_egress(
    loaded: &mut Loaded,
    rs: &Ruleset,
    text: &str,
    lo_name: Option<&str>,
    frame: &[u8],
) -> Result<bool, String> {
    let d = model::decide_going(rs, frame, lo_name, Direction::Out);
    let want_pass = model::action_going(rs, &d, Direction::Out) == Action::Pass;
    let action = loaded.bed.program.test_run_egress(frame).map_err(|e| format!("egress test run: {e:?}"))?;
    if (action == 0) != want_pass {
        return Err(format!(
            "kernel (TC egress) and model disagree\n\
             --- ruleset (lo known as {lo_name:?}) ---\n{text}\
             --- frame ({} bytes), leaving ---\n{}\n\
             model:  {d:?}: {}\n\
             kernel: TC action {action}",
            frame.len(),
            hex(frame),
            if want_pass { "pass" } else { "drop" },
        ));
    }
    Ok(!want_pass)
}

/// Runs `frame` through the kernel and the model; `Err` describes a disagreement.
pub(crate) fn check_frame(
    loaded: &mut Loaded,
    rs: &Ruleset,
    text: &str,
    lo_name: Option<&str>,
    frame: &[u8],
) -> Result<ModelDecision, String> {
    let d = model::decide(rs, frame, lo_name);
    let want = expected(rs, &d);
    let got = loaded.bed.program.test_run_traced(frame, Some(LO)).map_err(|e| format!("test run: {e:?}"))?;
    if got != want {
        return Err(format!(
            "kernel and model disagree\n\
             --- ruleset (lo known as {lo_name:?}) ---\n{text}\
             --- frame ({} bytes) ---\n{}\n\
             model:  {d:?}: {}\n\
             kernel: {}",
            frame.len(),
            hex(frame),
            describe(&want),
            describe(&got),
        ));
    }
    Ok(d)
}

pub(crate) fn parse(text: &str) -> Result<Ruleset, String> {
    rules::parse_str(text, "differential.conf", Path::new("/nonexistent"))
        .map_err(|e| format!("generated ruleset does not parse: {e}\n{text}"))
}

/// One generated case: a ruleset and packets for it.
#[derive(Clone)]
pub(crate) struct Case {
    pub(crate) ruleset: RulesetSpec,
    pub(crate) packets: Vec<PacketSpec>,
}

impl fmt::Debug for Case {
    /// The ruleset as text (the failure message shows the frame that disagreed).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "lo known as {:?}", self.ruleset.lo_name)?;
        writeln!(f, "{}", render(&self.ruleset))?;
        write!(f, "({} packets)", self.packets.len())
    }
}

pub(crate) fn case() -> impl Strategy<Value = Case> {
    // The packet list has a fixed length (it does not shrink): a failure reports the
    // one frame that disagreed, and shrinking works on the ruleset and that frame's
    // fields.
    pool().prop_flat_map(|pool| {
        (ruleset(&pool), vec(packet(&pool), PACKETS..=PACKETS)).prop_map(|(ruleset, packets)| Case { ruleset, packets })
    })
}

pub(crate) fn scale() -> u32 {
    std::env::var("XDPWALL_DIFF_SCALE").ok().and_then(|s| s.parse().ok()).filter(|n| *n > 0).unwrap_or(1)
}

/// The properties' runner settings: `cases` rulesets, failures saved in (and replayed
/// from) `differential.proptest-regressions`, shrinking bounded.
pub(crate) fn config(cases: u32, max_shrink_iters: u32) -> Config {
    Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/differential.proptest-regressions"
        )))),
        max_shrink_iters,
        max_shrink_time: 180_000,
        source_file: Some(file!()),
        ..Config::default()
    }
}

#[test]
pub(crate) fn kernel_agrees_with_model() {
    let scale = scale();
    // Each shrink step may load a program: bound the effort.
    let mut runner = TestRunner::new(config(RULESETS * scale, 2000));
    let stats = Stats::default();
    // The last program loaded, reused while shrinking only changes the packets.
    let cache: RefCell<Option<Loaded>> = RefCell::new(None);
    let started = Instant::now();

    let result = runner.run(&case(), |case| {
        let text = render(&case.ruleset);
        let rs = parse(&text).map_err(TestCaseError::fail)?;
        let lo_name = case.ruleset.lo_name;
        let key = format!("{lo_name:?}\n{text}");
        let mut cache = cache.borrow_mut();
        if cache.as_ref().is_none_or(|l| l.key != key) {
            *cache = None;
            let t = Instant::now();
            *cache = Some(Loaded::new(&rs, key, lo_name).map_err(TestCaseError::fail)?);
            stats.load_us.fetch_add(t.elapsed().as_micros() as u64, Ordering::Relaxed);
        }
        let loaded = cache.as_mut().expect("just loaded");
        stats.rulesets.fetch_add(1, Ordering::Relaxed);
        // `out` rules turned around, to count the packets the XDP program had to skip
        // them for.
        let turned: Vec<(usize, Rule)> = rs
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.direction == Direction::Out)
            .map(|(i, r)| {
                let mut r = r.clone();
                r.direction = Direction::In;
                (i, r)
            })
            .collect();
        let stateful = rs.rules.iter().any(|r| r.keep_state);
        for p in &case.packets {
            let frame = build(p, &rs);
            let t = Instant::now();
            let d = check_frame(loaded, &rs, &text, lo_name, &frame).map_err(TestCaseError::fail)?;
            stats.run_us.fetch_add(t.elapsed().as_micros() as u64, Ordering::Relaxed);
            stats.packets.fetch_add(1, Ordering::Relaxed);
            if let Dissected::Ip(f) = dissect(&frame) {
                if turned.iter().any(|(_, r)| model::matches(&rs, r, &f, lo_name)) {
                    stats.out_skipped.fetch_add(1, Ordering::Relaxed);
                }
                if !stateful {
                    let blocked = check_egress(loaded, &rs, &text, lo_name, &frame).map_err(TestCaseError::fail)?;
                    stats.egress.fetch_add(1, Ordering::Relaxed);
                    stats.egress_blocked.fetch_add(u64::from(blocked), Ordering::Relaxed);
                }
            }
            if let ModelDecision::Rule(i) = d {
                for (n, used) in features(&rs.rules[i], i).iter().enumerate() {
                    if *used {
                        stats.features[n].fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            if let ModelDecision::Malformed(m) = d {
                stats.reasons[m as usize].fetch_add(1, Ordering::Relaxed);
            }
            match d {
                ModelDecision::Rule(_) => &stats.rules,
                ModelDecision::Default => &stats.default,
                ModelDecision::NonIp => &stats.non_ip,
                ModelDecision::Malformed(_) => &stats.malformed,
                // Never from the stateless model.
                ModelDecision::State | ModelDecision::SourceLimited(_) => &stats.rules,
            }
            .fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    });
    drop(cache.borrow_mut().take());

    let rulesets = stats.rulesets.load(Ordering::Relaxed);
    let packets = stats.packets.load(Ordering::Relaxed);
    let pct = |n: &AtomicU64| 100.0 * n.load(Ordering::Relaxed) as f64 / packets.max(1) as f64;
    let features: Vec<String> =
        FEATURES.iter().zip(&stats.features).map(|(name, n)| format!("{name} {}", n.load(Ordering::Relaxed))).collect();
    // Straight to stderr, past the test harness's capture: these numbers are the point.
    let _ = writeln!(
        std::io::stderr(),
        "differential: {rulesets} rulesets, {packets} packets checked in {:.1} s \
         ({:.1} s loading programs, {:.1} s running packets)\n\
         differential: decided by a rule {:.1}%, default {:.1}%, non-IP {:.1}%, malformed {:.1}% ({})\n\
         differential: packets decided by rules using: {}\n\
         differential: packets an `out` rule would have matched: {}; sent the other way (TC egress): {}, \
         blocked there {}",
        started.elapsed().as_secs_f64(),
        stats.load_us.load(Ordering::Relaxed) as f64 / 1e6,
        stats.run_us.load(Ordering::Relaxed) as f64 / 1e6,
        pct(&stats.rules),
        pct(&stats.default),
        pct(&stats.non_ip),
        pct(&stats.malformed),
        Malformed::ALL
            .iter()
            .zip(&stats.reasons)
            .map(|(m, n)| format!("{} {}", m.name(), n.load(Ordering::Relaxed)))
            .collect::<Vec<_>>()
            .join(", "),
        features.join(", "),
        stats.out_skipped.load(Ordering::Relaxed),
        stats.egress.load(Ordering::Relaxed),
        stats.egress_blocked.load(Ordering::Relaxed),
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(rulesets >= u64::from(RULESETS * scale));
    assert!(packets >= u64::from(RULESETS * scale) * PACKETS as u64);
}
