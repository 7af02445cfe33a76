//! `xdpwall-bench`: everything issues #4 and #5 measure, in one run, as `cargo xtask
//! bench` runs it: the per-packet cost through BPF_PROG_TEST_RUN (also of the
//! established-flow fast path beside the rule path), then throughput on a veth pair for
//! the XDP_DROP ceiling, xdpwall (drop and pass paths, up to 4096 rules and a 1M-entry
//! table, and the state fast path), nftables (linear and verdict map) and xdp-filter; then
//! the spoofed-source flood of issue #8 (random sources from a /8 or a /32, blocklists of
//! 1M prefixes, xdpwall beside nftables' interval set and xdp-filter). Writes report.md,
//! report.json and throughput.svg, and prints the report. Needs root.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use filter_common::slot;
use xdpwall_benches::flood::{Blocklist, Extra, FLOOD_PORT, Family, Flood};
use xdpwall_benches::kernel::{Filter, PinDir, Reference, XDP_DROP, XDP_PASS};
use xdpwall_benches::live::{
    BenchNet, Counts, Napi, Probes, RunLock, Sample, Timing, Traffic, catch_signals, check_interrupted, favour,
    measure, online_cpus,
};
use xdpwall_benches::receiver::{Ceiling, NftTable, XdpFilter, XdpwallCli};
use xdpwall_benches::report::{
    FLOW_RULES, FloodReceiver, FloodRow, FlowRow, Kind, LogCounts, PerPacketRow, Rate, Report, ThroughputRow, spread,
};
use xdpwall_benches::ruleset::{Last, MAX_RULES, Scenario, count, source};

/// xdpwall's benchmarks: per-packet cost and veth throughput beside XDP_DROP and nftables.
#[derive(Parser, Debug)]
#[command(name = "xdpwall-bench")]
struct Args {
    /// A quick run for CI: about a second per throughput row, fewer test-run repeats
    /// and rounds.
    #[arg(long)]
    short: bool,
    /// Seconds each throughput row is sampled for on each pair, split in sub-windows
    /// [default: 5, short: 1].
    #[arg(long)]
    window_secs: Option<f64>,
    /// Seconds of traffic before each sub-window is sampled [default: 0.3, short: 0.2].
    #[arg(long)]
    warmup_secs: Option<f64>,
    /// Sub-windows per row; the row's rate is their median [default: 5, short: 3].
    #[arg(long)]
    samples: Option<usize>,
    /// Bytes per frame as XDP sees it (no FCS): 60 is a 64-byte frame on the wire.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u16).range(42..=1514))]
    frame_size: u16,
    /// Flows (source address and port pairs) the generator spreads frames over.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=524_288))]
    flows: u32,
    /// Generator threads, one per core; the receiver's queues match.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    threads: u16,
    /// Frames per live-frames batch.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=256))]
    batch: u32,
    /// Where the receiver's NAPI poll runs: `threaded` (its own core: the receiver's
    /// capacity) or `shared` (in the generator's softirq, on the generator's core).
    #[arg(long, value_enum, default_value = "threaded")]
    napi: Napi,
    /// Where the report goes.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// The `xdpwall` binary (a release build: it compiles the 1M-entry table).
    #[arg(long, env = "XDPWALL_BIN")]
    xdpwall: PathBuf,
    /// Skip the throughput rows (per-packet cost only).
    #[arg(long)]
    no_throughput: bool,
    /// Skip the per-packet rows (throughput only).
    #[arg(long)]
    no_per_packet: bool,
    /// Throughput rows to run (comma-separated) [default: all].
    #[arg(long, value_enum, value_delimiter = ',')]
    rows: Vec<Rows>,
    /// Entries of the flood's blocklists [default: 1000000, short: 100000].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=4_000_000))]
    flood_entries: Option<u64>,
}

/// Groups of throughput rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Rows {
    /// XDP_DROP on the test pair too (the two pairs should agree).
    Check,
    /// xdpwall: drop path at each rule count and with the 1M table, pass path and state
    /// fast path.
    Xdpwall,
    /// The kernel stack with no filter.
    Stack,
    /// nftables, one rule per rule.
    NftLinear,
    /// nftables, one verdict map.
    NftSet,
    /// xdp-filter (xdp-tools) with as many source addresses as the xdpwall rows have rules.
    XdpFilter,
    /// The spoofed-source flood: XDP_DROP, xdpwall (1 rule, IPv4 and IPv6 tables, 4096
    /// rules + IPv4 table), the nftables set, xdp-filter with its largest list.
    Flood,
}

/// Rule counts of the scaling rows.
const RULE_COUNTS: [usize; 4] = [1, 64, 1024, 4096];
/// Table sizes of the per-packet rows.
const TABLE_SIZES: [usize; 3] = [1_000, 100_000, 1_000_000];
/// Rule counts of the per-packet established-flow rows.
const FLOW_RULE_COUNTS: [usize; 2] = [1, FLOW_RULES];
const BIG_TABLE: usize = 1_000_000;
/// The flood's blocklists in a short run: big enough to leave the caches, quick to load.
const SHORT_FLOOD_TABLE: usize = 100_000;
/// The nftables table of the nftables rows.
const NFT_TABLE: &str = "xdpwall_bench";

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("xdpwall-bench: some rows failed (see the report)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("xdpwall-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A scratch directory for rulesets and nft scripts, removed on drop.
struct WorkDir(PathBuf);

impl WorkDir {
    fn new() -> Result<WorkDir> {
        let path = std::env::temp_dir().join(format!("xdpwall-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(WorkDir(path))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Returns whether every row was measured.
fn run(args: &Args) -> Result<bool> {
    if !xdpwall_tests::is_root() {
        bail!("needs root (XDP, BPF_PROG_TEST_RUN, network namespaces): run `cargo xtask bench`");
    }
    if !args.xdpwall.is_file() {
        bail!("no xdpwall binary at {}", args.xdpwall.display());
    }
    let _lock = RunLock::take()?;
    catch_signals();
    sweep_stale();
    // The test runs happen on this thread; the tools it starts inherit the niceness.
    favour(0)?;
    let work = WorkDir::new()?;
    let mut report =
        Report { settings: settings(args), repeat: if args.short { 50_000 } else { 200_000 }, ..Default::default() };

    // A section that cannot run at all is noted in the report; the other still runs.
    let mut sections_ok = true;
    if !args.no_per_packet {
        eprintln!("per-packet cost (BPF_PROG_TEST_RUN, repeat {})", report.repeat);
        if let Err(e) = per_packet(args, &work.0, &mut report) {
            eprintln!("  failed: {e:#}");
            report.settings.push(("per-packet section".into(), format!("failed: {e:#}")));
            sections_ok = false;
        }
    }
    if !args.no_throughput
        && let Err(e) = throughput(args, &work.0, &mut report)
    {
        eprintln!("  failed: {e:#}");
        report.settings.push(("throughput section".into(), format!("failed: {e:#}")));
        sections_ok = false;
    }

    check_interrupted()?;
    report.write(&args.out)?;
    print!("{}", report.markdown());
    eprintln!("\nreport: {}", args.out.join("report.md").display());
    eprintln!("plot:   {}", args.out.join("throughput.svg").display());
    let rows_ok =
        report.throughput.iter().all(|r| r.result.is_ok()) && report.per_packet.iter().all(|r| r.result.is_ok());
    Ok(sections_ok && rows_ok)
}

/// Removes what an interrupted run left (its namespace and veth pairs go with the test
/// bed's own sweep): `xdpwall-bench-<pid>...` pin, run and scratch directories of
/// processes that are gone, and the nftables table (the run lock is held, so no other
/// run owns it).
fn sweep_stale() {
    let alive = |name: &str| {
        let pid = name.strip_prefix("xdpwall-bench-").and_then(|rest| rest.split('-').next());
        pid.and_then(|p| p.parse::<u32>().ok()).is_none_or(|p| Path::new(&format!("/proc/{p}")).exists())
    };
    for parent in [Path::new("/sys/fs/bpf"), Path::new("/run"), &std::env::temp_dir()] {
        let Ok(entries) = std::fs::read_dir(parent) else {
            continue;
        };
        for name in entries.filter_map(|e| e.ok()?.file_name().into_string().ok()) {
            if name.starts_with("xdpwall-bench-") && !alive(&name) {
                let _ = std::fs::remove_dir_all(parent.join(&name));
            }
        }
    }
    let _ = Command::new("nft").args(["delete", "table", "netdev", NFT_TABLE]).output();
}

fn settings(args: &Args) -> Vec<(String, String)> {
    let (window, warmup, samples) = timing(args);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| l.strip_prefix("model name")?.split(':').nth(1).map(|s| s.trim().to_string()))
        })
        .unwrap_or_else(|| "?".into());
    let command = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "?".into())
    };
    vec![
        ("date".into(), command("date", &["-u", "+%Y-%m-%d %H:%M UTC"])),
        ("kernel".into(), command("uname", &["-r"])),
        ("CPUs".into(), format!("{} × {cpu}", online_cpus().len())),
        ("mode".into(), if args.short { "short (CI)".into() } else { "full".into() }),
        (
            "throughput sampling".into(),
            format!(
                "{samples} sub-windows of {:.2} s per row on each pair, alternating, each after {:.2} s of traffic",
                window.as_secs_f64() / samples as f64,
                warmup.as_secs_f64()
            ),
        ),
        (
            "traffic".into(),
            format!(
                "UDP/IPv4, {} B frames (no FCS), {} flows, {} generator thread(s), live-frames batch {}; \
                 the flood: the same but a random source per frame (see its section)",
                args.frame_size, args.flows, args.threads, args.batch
            ),
        ),
        (
            "receiver".into(),
            match args.napi {
                Napi::Threaded => {
                    "veth, NAPI in a kernel thread pinned apart from the generator; both at nice -20".into()
                }
                Napi::Shared => "veth, NAPI in the generator's softirq (same core), at nice -20".into(),
            },
        ),
        ("nftables".into(), command("nft", &["--version"])),
        ("xdp-filter".into(), format!("xdp-tools {}", command("dpkg-query", &["-W", "-f=${Version}", "xdp-tools"]))),
    ]
}

fn timing(args: &Args) -> (Duration, Duration, usize) {
    let (window, warmup, samples) = if args.short { (1.0, 0.2, 3) } else { (5.0, 0.3, 5) };
    (
        Duration::from_secs_f64(args.window_secs.unwrap_or(window).max(0.1)),
        Duration::from_secs_f64(args.warmup_secs.unwrap_or(warmup).max(0.0)),
        args.samples.unwrap_or(samples).max(1),
    )
}

/// Which table a per-packet case is reported in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    /// bench_drop, and xdpwall with a `block` last rule at each size.
    Scaling,
    /// xdpwall with a `pass` last rule, with or without `keep state`.
    Flow { keep_state: bool },
}

/// One per-packet case: a loaded program and a frame.
struct Case {
    /// Index into the loaded filters; `None` for bench_drop.
    filter: Option<usize>,
    group: Group,
    rules: usize,
    table: Option<usize>,
    hit: bool,
    frame: Vec<u8>,
    expect: u32,
    /// The counter slot that must count every repeat of a run, and its name for errors.
    slot: Option<(u32, &'static str)>,
    /// Run the frame once before each measured run: a flow's packet then finds its flow
    /// open and fresh, whatever the time since the last round.
    prime: bool,
    /// Kernel averages, one per round, or the error that stopped the case.
    samples: Result<Vec<f64>, String>,
}

impl Case {
    /// One test run of `repeat`: the kernel's average in nanoseconds, after checking the
    /// action and, if the case has one, that its counter slot counted every repeat.
    fn run(&self, drop: &Reference, filters: &mut [Filter], repeat: u32) -> Result<f64> {
        let expect = |action: u32| {
            if action == self.expect {
                Ok(())
            } else {
                Err(anyhow::anyhow!("action {action}, expected {}", self.expect))
            }
        };
        let Some(i) = self.filter else {
            let (action, avg) = drop.test_run_repeat(&self.frame, repeat)?;
            expect(action)?;
            return Ok(avg.as_nanos() as f64);
        };
        let filter = &mut filters[i];
        if self.prime {
            expect(filter.test_run_repeat(&self.frame, 1)?.0)?;
        }
        let before = self.slot.map(|(s, _)| filter.counted(s)).transpose()?;
        let (action, avg) = filter.test_run_repeat(&self.frame, repeat)?;
        expect(action)?;
        if let (Some((slot, name)), Some(before)) = (self.slot, before) {
            let counted = filter.counted(slot)?.saturating_sub(before);
            if counted != u64::from(repeat) {
                bail!("{counted} of {repeat} packets counted by {name}");
            }
        }
        Ok(avg.as_nanos() as f64)
    }
}

/// Sends a flow's first packet through a filter whose last rule keeps state: it must pass
/// by that rule (which opens the flow), so the next ones can take the fast path.
fn open_flow(filter: &mut Filter, frame: &[u8]) -> Result<()> {
    let rule = filter.last_rule_slot();
    let (by_rule, by_state) = (filter.counted(rule)?, filter.counted(slot::STATE)?);
    let (action, _) = filter.test_run_repeat(frame, 1)?;
    if action != XDP_PASS || filter.counted(rule)? != by_rule + 1 || filter.counted(slot::STATE)? != by_state {
        bail!("the flow's first packet was not passed by the `keep state` rule");
    }
    Ok(())
}

/// The median of the per-round ratios of `samples` to `base` (run side by side).
fn paired_ratio(samples: &Result<Vec<f64>, String>, base: Option<&Vec<f64>>) -> Option<f64> {
    match (samples, base) {
        (Ok(v), Some(b)) if !v.is_empty() && v.len() == b.len() => {
            Some(spread(&v.iter().zip(b).map(|(a, b)| a / b).collect::<Vec<_>>()).0)
        }
        _ => None,
    }
}

/// Loads every case's program first, then runs the cases in rounds, one test run of
/// each per round, so noise from elsewhere on the machine spreads over all of them
/// alike; each case reports its median, and its ratio to its baseline (xdpwall with 1
/// rule, or the same rules without `keep state`) as the median of the per-round ratios.
/// Every xdpwall run is checked against the counter that should have counted it.
fn per_packet(args: &Args, work: &Path, report: &mut Report) -> Result<()> {
    let pins = PinDir::new("bench-test-run")?;
    let (repeat, rounds) = (report.repeat, if args.short { 5 } else { 11 });
    let size = usize::from(args.frame_size);
    let drop = Reference::drop_program(&pins)?;
    let mut filters: Vec<Filter> = Vec::new();
    let mut cases = vec![Case {
        filter: None,
        group: Group::Scaling,
        rules: 0,
        table: None,
        hit: true,
        frame: BenchNet::frame(Scenario::rules(1, Last::Block).hit(), size),
        expect: XDP_DROP,
        slot: None,
        prime: false,
        samples: Ok(Vec::new()),
    }];
    let mut scenarios: Vec<(Group, Scenario)> =
        RULE_COUNTS.iter().map(|&n| (Group::Scaling, Scenario::rules(n, Last::Block))).collect();
    scenarios.extend(TABLE_SIZES.iter().map(|&e| (Group::Scaling, Scenario::table(e, 1, Last::Block))));
    scenarios.push((Group::Scaling, Scenario::table(BIG_TABLE, 4096, Last::Block)));
    for &n in &FLOW_RULE_COUNTS {
        for keep_state in [false, true] {
            let last = if keep_state { Last::KeepState } else { Last::Pass };
            scenarios.push((Group::Flow { keep_state }, Scenario::rules(n, last)));
        }
    }
    for (group, s) in scenarios {
        check_interrupted()?;
        let keep_state = group == Group::Flow { keep_state: true };
        eprintln!(
            "  loading xdpwall, {}{}",
            s.name(),
            match group {
                Group::Scaling => "",
                Group::Flow { keep_state: false } => ", last rule pass",
                Group::Flow { keep_state: true } => ", last rule pass keep state",
            }
        );
        let hit_frame = BenchNet::frame(s.hit(), size);
        let loaded = s.compile(&work.join("test-run")).and_then(|c| Filter::load(&c, &pins)).and_then(|mut f| {
            if keep_state {
                open_flow(&mut f, &hit_frame)?;
            }
            Ok(f)
        });
        let filter = match loaded {
            Ok(f) => {
                filters.push(f);
                Ok(filters.len() - 1)
            }
            Err(e) => Err(format!("{e:#}")),
        };
        let rule_slot = filter.as_ref().ok().map(|&i| filters[i].last_rule_slot());
        let hit_expect = if s.last == Last::Block { XDP_DROP } else { XDP_PASS };
        let hit_slot = if keep_state {
            (slot::STATE, "the state counter (fast path)")
        } else {
            (rule_slot.unwrap_or(0), "the last rule")
        };
        for (hit, frame, expect, counter) in [
            (true, hit_frame, hit_expect, hit_slot),
            (false, BenchNet::frame(s.miss(), size), XDP_PASS, (slot::DEFAULT_PASS, "the default policy")),
        ] {
            cases.push(Case {
                filter: filter.as_ref().ok().copied(),
                group,
                rules: s.rules,
                table: s.table_entries,
                hit,
                frame,
                expect,
                slot: Some(counter),
                prime: keep_state && hit,
                samples: filter.as_ref().map(|_| Vec::new()).map_err(Clone::clone),
            });
        }
    }

    eprintln!("  {rounds} rounds of {} cases", cases.len());
    for _ in 0..rounds {
        check_interrupted()?;
        for case in cases.iter_mut() {
            if case.samples.is_err() {
                continue;
            }
            match case.run(&drop, &mut filters, repeat) {
                Ok(ns) => {
                    if let Ok(samples) = &mut case.samples {
                        samples.push(ns);
                    }
                }
                Err(e) => case.samples = Err(format!("{e:#}")),
            }
        }
    }

    let samples_of = |f: &dyn Fn(&Case) -> bool| {
        cases.iter().find(|c| c.filter.is_some() && f(c)).and_then(|c| c.samples.as_ref().ok())
    };
    for case in &cases {
        let result = case.samples.clone().map(|v| spread(&v).0);
        match case.group {
            Group::Scaling => {
                let one_rule = samples_of(&|c| {
                    c.group == Group::Scaling && c.rules == 1 && c.table.is_none() && c.hit == case.hit
                });
                report.per_packet.push(PerPacketRow {
                    program: if case.filter.is_some() { "xdpwall" } else { "bench_drop" },
                    rules: case.rules,
                    table: case.table,
                    hit: case.hit,
                    result,
                    to_one_rule: case.filter.and_then(|_| paired_ratio(&case.samples, one_rule)),
                });
            }
            Group::Flow { keep_state } => {
                let stateless = samples_of(&|c| {
                    c.group == (Group::Flow { keep_state: false }) && c.rules == case.rules && c.hit == case.hit
                });
                report.flows.push(FlowRow {
                    rules: case.rules,
                    keep_state,
                    hit: case.hit,
                    result,
                    to_stateless: paired_ratio(&case.samples, stateless),
                });
            }
        }
    }
    // Each packet with `keep state` just below the same packet without.
    report.flows.sort_by_key(|r| (r.rules, !r.hit, r.keep_state));
    Ok(())
}

/// Measures one row; a failure becomes the row's result, not the run's.
fn row(report: &mut Report, kind: Kind, scenario: Option<&Scenario>, f: impl FnOnce() -> Result<Sample>) {
    if check_interrupted().is_err() {
        return;
    }
    match scenario {
        Some(s) => eprintln!("  {kind:?}, {}", s.name()),
        None => eprintln!("  {kind:?}"),
    }
    let result = f().map(|s| rate_of(report, &s));
    if let Err(e) = &result {
        eprintln!("    failed: {e:#}");
    }
    report.throughput.push(ThroughputRow {
        kind,
        rules: scenario.map(|s| s.rules),
        table: scenario.and_then(|s| s.table_entries),
        note: "",
        result: result.map_err(|e| format!("{e:#}")),
    });
}

fn throughput(args: &Args, work: &Path, report: &mut Report) -> Result<()> {
    eprintln!("throughput (veth, XDP live frames)");
    let (window, warmup, samples) = timing(args);
    let timing = Timing { warmup, part: window / samples as u32, samples, napi: args.napi };
    let threads = usize::from(args.threads);
    let net = BenchNet::new(threads)?;
    let pins = PinDir::new("bench-live")?;
    let _ceiling = Ceiling::attach(&pins, &net.reference.host)?;
    let gen_cpus: Vec<usize> = online_cpus().into_iter().cycle().take(threads).collect();
    let size = usize::from(args.frame_size);
    let traffic = |s: &Scenario| Traffic {
        frame: BenchNet::frame(s.hit(), size),
        flows: args.flows,
        spoof_bits: 0,
        threads,
        batch: args.batch,
    };
    let go = |traffic: &Traffic, probes: Probes<'_>| measure(&net, &pins, traffic, &gen_cpus, timing, probes);

    let wanted = |r: Rows| args.rows.is_empty() || args.rows.contains(&r);

    // The two pairs should measure alike: bench_drop on both.
    if wanted(Rows::Check) {
        row(report, Kind::Ceiling, None, || {
            let attached = Ceiling::attach(&pins, &net.test.host)?;
            let run_time = || attached.run_time();
            let probes = Probes { run_time: Some(&run_time), ..Probes::default() };
            go(&traffic(&Scenario::rules(1, Last::Block)), probes)
        });
    }

    if wanted(Rows::Xdpwall) {
        xdpwall_rows(args, report, work, &net, &|t, p| go(t, p), &traffic)?;
    }
    if wanted(Rows::Stack) {
        row(report, Kind::Stack, None, || go(&traffic(&Scenario::rules(1024, Last::Pass)), Probes::default()));
    }
    for (kind, rows) in [(Kind::NftLinear, Rows::NftLinear), (Kind::NftSet, Rows::NftSet)] {
        if !wanted(rows) {
            continue;
        }
        for &n in &RULE_COUNTS {
            let s = Scenario::rules(n, Last::Block);
            row(report, kind, Some(&s), || {
                let name = NFT_TABLE;
                let script = match kind {
                    Kind::NftLinear => s.nft_linear(name, &net.test.host),
                    _ => s.nft_set(name, &net.test.host),
                }
                .context("no nftables form")?;
                let table = NftTable::load(name, &script, work)?;
                let mut judged = || Ok(Counts::of(table.counted()?));
                let probes = Probes { judged: Some(&mut judged), ..Probes::default() };
                go(&traffic(&s), probes)
            });
        }
    }
    if wanted(Rows::XdpFilter) {
        // Short runs: the two sizes the targets compare.
        let counts: &[usize] = if args.short { &[1, 1024] } else { &RULE_COUNTS };
        for &n in counts {
            let s = Scenario::rules(n, Last::Block);
            row(report, Kind::XdpFilter, Some(&s), || {
                let filter = XdpFilter::load(&net.test.host)?;
                filter.deny_sources(&xdp_filter_list(&s), &[])?;
                filter.deny_udp_port(s.hit().dport)?;
                let mut judged = || filter.counts();
                let run_time = || filter.run_time();
                let probes = Probes { judged: Some(&mut judged), run_time: Some(&run_time), ..Probes::default() };
                go(&traffic(&s), probes)
            });
        }
    }
    if wanted(Rows::Flood) {
        flood_rows(args, report, work, &net, &pins, &|t, p| go(t, p))?;
    }
    Ok(())
}

/// Pushes one flood row, measured by `f` (which also says how long the list took to load).
#[allow(clippy::too_many_arguments)]
fn flood_row(
    report: &mut Report,
    family: Family,
    receiver: FloodReceiver,
    rules: usize,
    list: Option<&Blocklist>,
    description: Option<String>,
    expected_hits: Option<f64>,
    f: impl FnOnce() -> Result<(Sample, Option<f64>)>,
) {
    if check_interrupted().is_err() {
        return;
    }
    let description = description.unwrap_or_else(|| list.map_or("–".into(), Blocklist::describe));
    eprintln!("  flood {}, {receiver:?}, {rules} rule(s), list {description}", family.name());
    let (result, load_secs) = match f() {
        Ok((sample, load)) => (Ok(rate_of(report, &sample)), load),
        Err(e) => {
            eprintln!("    failed: {e:#}");
            (Err(format!("{e:#}")), None)
        }
    };
    if let Some(t) = load_secs {
        eprintln!("    list loaded in {t:.1} s");
    }
    report.flood.push(FloodRow {
        family,
        receiver,
        rules,
        entries: list.map(|l| l.entries.len()),
        list: description,
        expected_hits: expected_hits.or_else(|| list.map(Blocklist::expected_hit_share)),
        load_secs,
        extra: None,
        log: None,
        result,
    });
}

/// The spoofed-source flood (see `xdpwall_benches::flood`): every receiver with the same
/// generator and traffic, each row beside XDP_DROP on the reference pair.
fn flood_rows(args: &Args, report: &mut Report, work: &Path, net: &BenchNet, pins: &PinDir, go: &Go<'_>) -> Result<()> {
    let entries = args.flood_entries.map_or(if args.short { SHORT_FLOOD_TABLE } else { BIG_TABLE }, |n| n as usize);
    let traffic = |family: Family| Traffic {
        frame: BenchNet::flood_frame(family.template_source(), FLOOD_PORT, usize::from(args.frame_size)),
        flows: 1,
        spoof_bits: family.spoof_bits(),
        threads: usize::from(args.threads),
        batch: args.batch,
    };
    let t0 = Instant::now();
    let v4 = Blocklist::new(Family::V4, entries);
    let v6 = Blocklist::new(Family::V6, entries);
    eprintln!("  flood: lists of {} drawn in {:.1} s", count(entries), t0.elapsed().as_secs_f64());

    flood_row(report, Family::V4, FloodReceiver::Ceiling, 0, None, None, None, || {
        let attached = Ceiling::attach(pins, &net.test.host)?;
        let run_time = || attached.run_time();
        let probes = Probes { run_time: Some(&run_time), ..Probes::default() };
        Ok((go(&traffic(Family::V4), probes)?, None))
    });

    let mut xdpwall = XdpwallCli::new(&args.xdpwall, &net.test.host);
    let scenarios = [
        Flood::one_rule(Family::V4),
        Flood::with(Extra::Rate, Family::V4),
        Flood::with(Extra::RateCas, Family::V4),
        Flood::with(Extra::PerSource, Family::V4),
        Flood::with(Extra::Log, Family::V4),
        Flood::with(Extra::LogWritten, Family::V4),
        Flood::table(v4.clone(), 2),
        Flood::table(v4.clone(), MAX_RULES),
        Flood::one_rule(Family::V6),
        Flood::table(v6.clone(), 2),
    ];
    for (i, s) in scenarios.iter().enumerate() {
        // A fresh load for each family: an apply from one 1M table to another would hold
        // both while it swaps, and nothing here measures that.
        if i > 0 && scenarios[i - 1].family != s.family {
            xdpwall.unload()?;
        }
        let mut log_before = None;
        flood_row(report, s.family, FloodReceiver::Xdpwall, s.rules, s.list.as_ref(), None, None, || {
            let rules = s.write(&work.join(format!("flood-{i}")))?;
            let t = Instant::now();
            xdpwall.set_rules(&rules)?;
            let load = t.elapsed().as_secs_f64();
            if s.extra.is_some() {
                log_before = Some(xdpwall.log_counts()?);
            }
            // The rule the row is about: the list's, or the rate-limited one (rule 1), whose
            // share of the drops the row reports; the catch-all takes the rest.
            let limited = matches!(s.extra, Some(Extra::Rate | Extra::RateCas | Extra::PerSource)).then_some(1);
            let (table, catch_all) = (s.table_rule().or(limited), s.catch_all());
            let mut judged = || {
                let numbers: Vec<usize> = table.into_iter().chain([catch_all]).collect();
                let counts = xdpwall.rules_packets(&numbers)?;
                Ok(Counts { expected: counts.iter().sum(), hits: table.map(|_| counts[0]) })
            };
            let run_time = || xdpwall.run_time();
            let probes = Probes { judged: Some(&mut judged), run_time: Some(&run_time), ..Probes::default() };
            let mut reader = match s.extra {
                Some(Extra::LogWritten) => Some(xdpwall.log_reader()?),
                _ => None,
            };
            let sample = go(&traffic(s.family), probes);
            if let Some(child) = reader.as_mut() {
                let _ = child.kill();
                let _ = child.wait();
            }
            Ok((sample?, s.list.as_ref().map(|_| load)))
        });
        if let Some(extra) = s.extra
            && let Some(row) = report.flood.last_mut()
        {
            row.extra = Some(extra);
            if matches!(extra, Extra::Log | Extra::LogWritten) {
                match xdpwall.log_counts().and_then(|after| {
                    let before = log_before.context("no log counters from before the row")?;
                    Ok(LogCounts {
                        written: after.written.saturating_sub(before.written),
                        suppressed: after.suppressed.saturating_sub(before.suppressed),
                        lost: after.lost.saturating_sub(before.lost),
                    })
                }) {
                    Ok(log) => {
                        eprintln!("    log: {} written, {} suppressed, {} lost", log.written, log.suppressed, log.lost);
                        row.log = Some(log);
                    }
                    Err(e) => eprintln!("    log counters: {e:#}"),
                }
            }
        }
    }
    xdpwall.unload()?;

    flood_row(report, Family::V4, FloodReceiver::Nft, 2, Some(&v4), None, None, || {
        let script = v4.nft_set(NFT_TABLE, &net.test.host);
        let t = Instant::now();
        let table = NftTable::load(NFT_TABLE, &script, work)?;
        let load = t.elapsed().as_secs_f64();
        let mut judged = || {
            let hits = table.counter("hits")?;
            Ok(Counts { expected: hits + table.counter("rest")?, hits: Some(hits) })
        };
        let probes = Probes { judged: Some(&mut judged), ..Probes::default() };
        Ok((go(&traffic(Family::V4), probes)?, Some(load)))
    });

    // xdp-filter holds hosts only, in a hash of fixed size: the largest list it takes.
    let filter = XdpFilter::load(&net.test.host);
    let (capacity, hosts) =
        match filter.as_ref().map_err(|e| anyhow::anyhow!("{e:#}")).and_then(|_| XdpFilter::capacity(false)) {
            Ok(c) => (Some(c), v4.hosts(c)),
            Err(_) => (None, Vec::new()),
        };
    let description = match capacity {
        Some(c) if hosts.len() == c => format!("{c} /32 (its maximum: a {c}-entry hash)"),
        Some(c) => format!("{} /32 (of a {c}-entry hash)", hosts.len()),
        None => "–".into(),
    };
    let expected = (!hosts.is_empty()).then(|| hosts.len() as f64 / f64::from(Family::V4.spoof_bits()).exp2());
    flood_row(report, Family::V4, FloodReceiver::XdpFilter, 2, None, Some(description), expected, || {
        let filter = filter?;
        let addrs: Vec<Ipv4Addr> = hosts.iter().map(|&a| Ipv4Addr::from(a as u32)).collect();
        let t = Instant::now();
        filter.deny_sources(&addrs, &[])?;
        let load = t.elapsed().as_secs_f64();
        filter.deny_udp_port(FLOOD_PORT)?;
        eprintln!("    xdp-filter program: {}", filter.program_name()?);
        let mut judged = || filter.counts();
        let run_time = || filter.run_time();
        let probes = Probes { judged: Some(&mut judged), run_time: Some(&run_time), ..Probes::default() };
        Ok((go(&traffic(Family::V4), probes)?, Some(load)))
    });
    Ok(())
}

/// xdp-filter's deny list beside `s`'s rules: as many source addresses as rules, the
/// generator's 16 sources (the last rule's /28) first, then the first host of each other
/// rule's /28. With fewer than 16, only some of the generator's sources are listed; the
/// rest of its traffic is dropped by the UDP port list.
fn xdp_filter_list(s: &Scenario) -> Vec<Ipv4Addr> {
    let last = u32::from(source(s.rules - 1));
    let mut list: Vec<Ipv4Addr> = (0..16).map(|h| Ipv4Addr::from(last + h)).collect();
    list.extend((0..s.rules - 1).map(|i| Ipv4Addr::from(u32::from(source(i)) + 1)));
    list.truncate(s.rules);
    list
}

/// A row's rate from its sample (printed as it goes); the reference sub-windows join the
/// run's ceiling samples.
fn rate_of(report: &mut Report, s: &Sample) -> Rate {
    let mpps = |v: &[f64]| v.iter().map(|x| format!("{:.3}", x / 1e6)).collect::<Vec<_>>().join(" ");
    eprintln!("    Mpps: ceiling {} | this row {}", mpps(&s.ceiling_pps), mpps(&s.rx_pps));
    report.ceiling_samples.extend(&s.ceiling_pps);
    let (pps, min, max) = spread(&s.rx_pps);
    let (offered, ..) = spread(&s.offered_pps);
    let (ceiling, ..) = spread(&s.ceiling_pps);
    let ratios: Vec<f64> = s.rx_pps.iter().zip(&s.ceiling_pps).map(|(r, c)| r / c).collect();
    let (to_ceiling, ..) = spread(&ratios);
    Rate {
        pps,
        min,
        max,
        offered,
        judged: s.judged,
        hit_share: s.hit_share,
        program_ns: s.program_ns,
        to_ceiling,
        ceiling,
    }
}

type Go<'a> = dyn Fn(&Traffic, Probes<'_>) -> Result<Sample> + 'a;

fn xdpwall_rows(
    args: &Args,
    report: &mut Report,
    work: &Path,
    net: &BenchNet,
    go: &Go<'_>,
    traffic: &dyn Fn(&Scenario) -> Traffic,
) -> Result<()> {
    let mut xdpwall = XdpwallCli::new(&args.xdpwall, &net.test.host);
    let mut scenarios: Vec<(Kind, Scenario)> =
        RULE_COUNTS.iter().map(|&n| (Kind::XdpwallDrop, Scenario::rules(n, Last::Block))).collect();
    scenarios.push((Kind::XdpwallDrop, Scenario::table(BIG_TABLE, 4096, Last::Block)));
    // The pass path and, with the same rules plus `keep state` on the last one, the
    // state fast path: the generator's flows all match the last rule, so once each has
    // passed one packet (the row primes them) every packet is one of an established
    // flow, counted as `state`.
    scenarios.push((Kind::XdpwallPass, Scenario::rules(FLOW_RULES, Last::Pass)));
    scenarios.push((Kind::XdpwallState, Scenario::rules(FLOW_RULES, Last::KeepState)));
    for (i, (kind, s)) in scenarios.iter().enumerate() {
        row(report, *kind, Some(s), || {
            let rules = s.write(&work.join(format!("xdpwall-{i}")))?;
            xdpwall.set_rules(&rules)?;
            let state = *kind == Kind::XdpwallState;
            let mut judged =
                || Ok(Counts::of(if state { xdpwall.state_packets()? } else { xdpwall.rule_packets(s.rules)? }));
            let run_time = || xdpwall.run_time();
            let probes = Probes { judged: Some(&mut judged), run_time: Some(&run_time), prime: state };
            go(&traffic(s), probes)
        });
    }
    xdpwall.unload()
}
