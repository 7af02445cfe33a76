//! Throughput on veth pairs: the receiver ends in the root namespace (where the filter
//! under test runs), the sender ends in a namespace of their own, and a generator made of
//! BPF_PROG_TEST_RUN with XDP live frames running `bench_tx` on a sender end, which
//! XDP_TXes every frame to its receiver.
//!
//! There are two pairs: the *test* pair, whose receiver runs what a row measures, and the
//! *reference* pair, whose receiver runs the bare XDP_DROP program for the whole run. A
//! row alternates the generator between them, sub-window by sub-window, so each rate has
//! a ceiling measured seconds before it: the ratio stays honest when the machine's speed
//! drifts or a neighbour steals cycles.
//!
//! Everything made here (namespace, veth pairs, route) is removed on drop, also when a
//! measurement fails or panics.

use std::fs::File;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd as _;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use aya::{TestRun as _, TestRunAttrs, TestRunOptions};
use xdpwall_tests::netns::Netns;
use xdpwall_tests::packet::PacketBuilder;

use crate::kernel::{PinDir, Reference, RunTime, enable_run_time_stats};
use crate::ruleset::{Probe, SOURCE_NET};

/// The test receiver's address (the veth end in the root namespace).
pub const HOST_V4: Ipv4Addr = Ipv4Addr::new(10, 203, 0, 1);
/// The flood's IPv6 destination (a ULA; the receiver has IPv6 off).
pub const HOST_V6: Ipv6Addr = Ipv6Addr::new(0xfd78, 0x7762, 0, 0, 0, 0, 0, 1);
/// The test sender's address (the veth end in the namespace).
pub const PEER_V4: Ipv4Addr = Ipv4Addr::new(10, 203, 0, 2);
const HOST_MAC: [u8; 6] = [0x02, 0x78, 0x77, 0x62, 0x00, 0x01];
const PEER_MAC: [u8; 6] = [0x02, 0x78, 0x77, 0x62, 0x00, 0x02];
const REF_HOST_MAC: [u8; 6] = [0x02, 0x78, 0x77, 0x62, 0x01, 0x01];
const REF_PEER_MAC: [u8; 6] = [0x02, 0x78, 0x77, 0x62, 0x01, 0x02];
/// Frames per BPF_PROG_TEST_RUN call: a few tens of milliseconds, so a stop is quick.
const CHUNK: u32 = 1 << 16;

/// Set by SIGINT or SIGTERM once [`catch_signals`] has run.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Makes SIGINT and SIGTERM set a flag instead of killing the process, so a run
/// interrupted by Ctrl-C unwinds and its destructors remove what it made.
pub fn catch_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t) };
    }
}

/// An error once SIGINT or SIGTERM has arrived.
pub fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::Relaxed) {
        bail!("interrupted");
    }
    Ok(())
}

/// Sleeps for `d`, in short steps, ending early with an error on SIGINT or SIGTERM.
fn pause(d: Duration) -> Result<()> {
    let end = Instant::now() + d;
    loop {
        check_interrupted()?;
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

/// Where the receiver's packet processing (its NAPI poll) runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Napi {
    /// In a kernel thread pinned to a core of its own, apart from the generator: the
    /// receiver's rate is then limited by the receiver's own cost per packet.
    Threaded,
    /// In the generator's softirq, on the generator's core: the rate is limited by the
    /// generator's and the receiver's cost together.
    Shared,
}

/// One veth pair: `host` in the root namespace receives, `peer` in the namespace sends.
#[derive(Debug)]
pub struct Pair {
    /// Receiver end, in the root namespace.
    pub host: String,
    /// Sender end, in the namespace.
    pub peer: String,
    /// The sender end's index inside the namespace.
    pub peer_ifindex: u32,
    queues: usize,
}

impl Pair {
    /// Receive-side statistics of the receiver end.
    pub fn rx(&self) -> Result<RxStats> {
        let read = |what: &str| -> Result<u64> {
            let path = format!("/sys/class/net/{}/statistics/{what}", self.host);
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
            text.trim().parse().with_context(|| format!("parsing {path}"))
        };
        Ok(RxStats { packets: read("rx_packets")?, dropped: read("rx_dropped")? })
    }

    /// Puts the receiver's NAPI poll where `napi` says: for `Threaded`, kernel threads
    /// pinned to the cores the generator threads leave free. Needs an XDP program or GRO
    /// on the receiver (so NAPI exists).
    pub fn place_napi(&self, napi: Napi, generator_cpus: &[usize]) -> Result<()> {
        let path = format!("/sys/class/net/{}/threaded", self.host);
        if napi == Napi::Shared {
            return std::fs::write(&path, "0").with_context(|| format!("writing 0 to {path}"));
        }
        std::fs::write(&path, "1").with_context(|| format!("writing 1 to {path}"))?;
        let cpus = online_cpus();
        let free: Vec<usize> = cpus.iter().copied().filter(|c| !generator_cpus.contains(c)).collect();
        let free = if free.is_empty() { cpus } else { free };
        // Kernel thread names are cut to 15 bytes: `napi/<dev>-<id>`.
        let prefix: String = format!("napi/{}-", self.host).chars().take(15).collect();
        let mut pids = Vec::new();
        for _ in 0..50 {
            pids = threads_named(&prefix);
            if pids.len() >= self.queues {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if pids.is_empty() {
            bail!("no NAPI thread {prefix}* appeared after enabling threaded NAPI on {}", self.host);
        }
        for (i, pid) in pids.iter().enumerate() {
            set_affinity(*pid, free[i % free.len()])?;
            favour(*pid)?;
        }
        Ok(())
    }
}

/// The test network: a namespace and two veth pairs, deleted on drop.
pub struct BenchNet {
    /// The pair whose receiver runs what a row measures.
    pub test: Pair,
    /// The pair whose receiver runs the XDP_DROP ceiling.
    pub reference: Pair,
    /// The namespace holding both sender ends (dropped after the pairs).
    pub netns: Netns,
}

impl BenchNet {
    /// Two pairs with `queues` receive queues per end (one per generator thread), GRO on
    /// the receiver ends (a veth takes XDP_TX'd frames only when its peer has XDP or GRO)
    /// and no IPv6 link-local chatter. 10.202.0.0/16 (the rules' sources) is routed to the
    /// test sender, so the kernel's replies to generated packets stay on the pair.
    pub fn new(queues: usize) -> Result<BenchNet> {
        let netns = Netns::new("bench")?;
        let pid = std::process::id() % 100_000;
        let queues = queues.max(1);
        let mut net = BenchNet {
            test: Pair { host: format!("xwbt{pid}"), peer: format!("xwbs{pid}"), peer_ifindex: 0, queues },
            reference: Pair { host: format!("xwbr{pid}"), peer: format!("xwbq{pid}"), peer_ifindex: 0, queues },
            netns,
        };
        let ns = net.netns.name().to_string();
        net.add_pair(true, HOST_MAC, PEER_MAC)?;
        net.add_pair(false, REF_HOST_MAC, REF_PEER_MAC)?;
        let (h, p) = (net.test.host.clone(), net.test.peer.clone());
        ip(&["addr", "add", &format!("{HOST_V4}/30"), "dev", &h])?;
        ip(&["-n", &ns, "addr", "add", &format!("{PEER_V4}/30"), "dev", &p])?;
        ip(&["neigh", "replace", &PEER_V4.to_string(), "lladdr", &mac(PEER_MAC), "dev", &h, "nud", "permanent"])?;
        ip(&["route", "add", &format!("{SOURCE_NET}/16"), "via", &PEER_V4.to_string(), "dev", &h])?;
        // The flood's sources (1.0.0.0/8, 2001:db8::/32) are not routed here, and every
        // flood row drops every frame before the stack. Should one get through anyway
        // (a failing row), strict reverse-path filtering drops it instead of answering a
        // spoofed address out of the machine's default route, and the receiver has no
        // IPv6 at all (XDP and netdev ingress still see every frame).
        sysctl(&format!("net/ipv4/conf/{h}/rp_filter"), "1")?;
        sysctl(&format!("net/ipv6/conf/{h}/disable_ipv6"), "1")?;
        Ok(net)
    }

    fn add_pair(&mut self, test: bool, host_mac: [u8; 6], peer_mac: [u8; 6]) -> Result<()> {
        let ns = self.netns.name().to_string();
        let pair = if test { &mut self.test } else { &mut self.reference };
        let (h, p, q) = (pair.host.clone(), pair.peer.clone(), pair.queues.to_string());
        ip(&[
            "link",
            "add",
            &h,
            "address",
            &mac(host_mac),
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "type",
            "veth",
            "peer",
            "name",
            &p,
            "address",
            &mac(peer_mac),
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "netns",
            &ns,
        ])?;
        ip(&["link", "set", &h, "addrgenmode", "none"])?;
        ip(&["-n", &ns, "link", "set", &p, "addrgenmode", "none"])?;
        ip(&["link", "set", &h, "up"])?;
        ip(&["-n", &ns, "link", "set", &p, "up"])?;
        run(Command::new("ethtool").args(["-K", &h, "gro", "on"]))?;
        pair.peer_ifindex = self.netns.run(|| ifindex(&p))?;
        Ok(())
    }

    /// The frame the generator sends for `probe`: Ethernet + IPv4 + UDP, `size` bytes
    /// (without FCS), from the test sender to the test receiver's address and MAC. The
    /// reference pair gets the same bytes (its XDP_DROP program reads none of them).
    pub fn frame(probe: Probe, size: usize) -> Vec<u8> {
        frame(probe, size)
    }

    /// The spoofed flood's template: Ethernet + IPv4 or IPv6 + UDP from `src` to the test
    /// receiver (IPv6: a ULA the receiver does not have) and its MAC, port `dport`, `size`
    /// bytes or the family's headers if longer (62 for IPv6).
    pub fn flood_frame(src: IpAddr, dport: u16, size: usize) -> Vec<u8> {
        let headers = match src {
            IpAddr::V4(_) => 14 + 20 + 8,
            IpAddr::V6(_) => 14 + 40 + 8,
        };
        let dst: IpAddr = match src {
            IpAddr::V4(_) => HOST_V4.into(),
            IpAddr::V6(_) => HOST_V6.into(),
        };
        PacketBuilder::eth()
            .src_mac(PEER_MAC)
            .dst_mac(HOST_MAC)
            .ip(src, dst)
            .udp(32768, dport)
            .payload(&vec![0u8; size.saturating_sub(headers)])
            .build()
            .bytes
    }
}

/// Writes `value` to /proc/sys/`key`.
fn sysctl(key: &str, value: &str) -> Result<()> {
    let path = Path::new("/proc/sys").join(key);
    std::fs::write(&path, value).with_context(|| format!("writing {value} to {}", path.display()))
}

impl Drop for BenchNet {
    fn drop(&mut self) {
        // Deleting one end deletes both, and the route with them; the namespace goes next.
        for host in [&self.test.host, &self.reference.host] {
            if Path::new("/sys/class/net").join(host).exists()
                && let Err(e) = ip(&["link", "delete", host])
            {
                eprintln!("warning: {e:#}");
            }
        }
    }
}

/// Receiver-end counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct RxStats {
    /// Frames the receiver's NAPI poll took off its queues (whatever their fate).
    pub packets: u64,
    /// Frames the sender could not queue because the receiver's ring was full.
    pub dropped: u64,
}

/// How the generator sends.
#[derive(Debug, Clone)]
pub struct Traffic {
    /// The template frame.
    pub frame: Vec<u8>,
    /// Flows `bench_tx` spreads the frames over (ignored with `spoof_bits`).
    pub flows: u32,
    /// When not 0, `bench_tx` gives every frame a source address whose low `spoof_bits`
    /// bits are random (the spoofed-source flood).
    pub spoof_bits: u32,
    /// Generator threads, each on a core of its own.
    pub threads: usize,
    /// Frames per live-frames batch (1..=256).
    pub batch: u32,
}

/// Generator threads running until dropped.
pub struct Generator {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<Result<()>>>,
}

impl Generator {
    /// Starts `traffic.threads` generators in `netns`, thread `t` pinned to `cpus[t]`,
    /// each running its own `bench_tx` on the sender end of `pair`.
    pub fn start(netns: &Netns, pair: &Pair, pins: &PinDir, traffic: &Traffic, cpus: &[usize]) -> Result<Generator> {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let mut generator = Generator { stop: stop.clone(), sent: sent.clone(), threads: Vec::new() };
        let ns_path = format!("/run/netns/{}", netns.name());
        for t in 0..traffic.threads {
            // Loaded here, one at a time: they share the pin directory.
            let program = Reference::generator(pins, traffic.flows, traffic.spoof_bits)?;
            let (stop, sent, frame) = (stop.clone(), sent.clone(), traffic.frame.clone());
            let (ns_path, cpu, ifindex, batch) =
                (ns_path.clone(), cpus[t % cpus.len()], pair.peer_ifindex, traffic.batch);
            let queue = (t % pair.queues) as u32;
            let handle = std::thread::Builder::new()
                .name(format!("bench-gen-{t}"))
                .spawn(move || -> Result<()> {
                    enter_netns(&ns_path)?;
                    set_affinity(0, cpu)?;
                    favour(0)?;
                    // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index.
                    let mut ctx = [0u8; 24];
                    ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
                    ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
                    ctx[16..20].copy_from_slice(&queue.to_ne_bytes());
                    while !stop.load(Ordering::Relaxed) {
                        let mut opts = TestRunOptions::new();
                        opts.data_in = Some(&frame);
                        opts.ctx_in = Some(&ctx);
                        opts.repeat = CHUNK;
                        opts.attrs = TestRunAttrs::new().xdp_live_frames(batch);
                        match program.program().test_run(opts) {
                            Ok(_) => {
                                sent.fetch_add(u64::from(CHUNK), Ordering::Relaxed);
                            }
                            // The kernel stops a run early when a signal is pending; go on.
                            Err(e) if interrupted(&e) => {}
                            Err(e) => return Err(e).context("live-frames test run of bench_tx"),
                        }
                    }
                    Ok(())
                })
                .context("starting a generator thread")?;
            generator.threads.push(handle);
        }
        Ok(generator)
    }

    /// Frames sent so far (in whole chunks).
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Stops and joins the threads; the first error of any of them.
    pub fn stop(mut self) -> Result<()> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        let mut result = Ok(());
        for handle in self.threads.drain(..) {
            let r = handle.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a generator thread panicked")));
            if result.is_ok() {
                result = r;
            }
        }
        result
    }

    /// Whether a thread has ended (with an error: they only end when stopped).
    pub fn failed(&self) -> bool {
        self.threads.iter().any(|t| t.is_finished())
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}

/// How a row samples.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Traffic before each sub-window is sampled.
    pub warmup: Duration,
    /// Length of each sub-window.
    pub part: Duration,
    /// Sub-windows per row, on each pair.
    pub samples: usize,
    /// Where the receivers' NAPI polls run.
    pub napi: Napi,
}

/// One row's measurement.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Frames the test receiver took in per second, one rate per sub-window.
    pub rx_pps: Vec<f64>,
    /// Frames the reference receiver (XDP_DROP) took in per second, in the sub-window
    /// just before each of those.
    pub ceiling_pps: Vec<f64>,
    /// Frames offered to the test receiver (taken in + found its ring full) per second.
    pub offered_pps: Vec<f64>,
    /// Share of the frames the test receiver took in that the filter's own counter gave
    /// the expected verdict (`None` when there is no counter to read).
    pub judged: Option<f64>,
    /// Share of the frames given the expected verdict that the address list or table
    /// matched (the rest met the row's catch-all), if the row tells them apart.
    pub hit_share: Option<f64>,
    /// Nanoseconds per packet inside the test receiver's XDP program, from the kernel's
    /// run-time statistics in a sub-window of its own (median of its readings; `None`
    /// when not asked for).
    pub program_ns: Option<f64>,
}

/// A receiver's counters, read together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Packets given the expected verdict so far.
    pub expected: u64,
    /// Of those, packets the filter's address list or table matched (the rest met a
    /// catch-all), where a row tells them apart.
    pub hits: Option<u64>,
}

impl Counts {
    /// A count of the expected verdict alone.
    pub fn of(expected: u64) -> Counts {
        Counts { expected, hits: None }
    }
}

/// What a row reads from its test receiver besides rates, and how it prepares it.
#[derive(Default)]
pub struct Probes<'a> {
    /// Reads the test filter's counters: the increase of `expected` over the frames
    /// received is the row's `judged` share; that of `hits` over `expected`, its hit share.
    pub judged: Option<&'a mut dyn FnMut() -> Result<Counts>>,
    /// Reads the cumulative run-time statistics of the test receiver's XDP program: one
    /// more sub-window, with statistics on, gives the nanoseconds per packet inside it.
    pub run_time: Option<&'a dyn Fn() -> Result<RunTime>>,
    /// Sends a warm-up's worth of traffic to the test receiver before sampling, unmeasured
    /// (with `keep state`: opens the generator's flows, so from the first sampled frame
    /// on every frame is one of an established flow).
    pub prime: bool,
}

/// Measures a row: `timing.samples` times, a sub-window on the reference pair, then one
/// on the test pair, each after `timing.warmup` of traffic. `probes.judged` reads the
/// test filter's counter of the expected verdict, if there is one. With
/// `probes.run_time`, one more sub-window on the test pair, with the kernel's run-time
/// statistics on, gives the time spent inside the receiver's program per packet (the
/// statistics cost every program two clock reads per run, so no rate is sampled while
/// they are on).
pub fn measure(
    net: &BenchNet,
    pins: &PinDir,
    traffic: &Traffic,
    cpus: &[usize],
    timing: Timing,
    probes: Probes<'_>,
) -> Result<Sample> {
    let Probes { mut judged, run_time, prime } = probes;
    net.reference.place_napi(timing.napi, cpus)?;
    net.test.place_napi(timing.napi, cpus)?;
    if prime {
        let generator = Generator::start(&net.netns, &net.test, pins, traffic, cpus)?;
        pause(timing.warmup.max(Duration::from_millis(100)))?;
        generator.stop()?;
        drained(&net.test)?;
    }
    let mut sample = Sample::default();
    let (mut counted, mut received, mut hits) = (0u64, 0f64, None::<u64>);
    for _ in 0..timing.samples.max(1) {
        let ceiling = window(net, &net.reference, pins, traffic, cpus, timing, &mut None)?;
        let test = window(net, &net.test, pins, traffic, cpus, timing, &mut judged)?;
        sample.ceiling_pps.push(ceiling.pps);
        sample.rx_pps.push(test.pps);
        sample.offered_pps.push(test.offered_pps);
        if let Some((c, r)) = test.counted {
            counted += c.expected;
            received += r;
            if let Some(h) = c.hits {
                hits = Some(hits.unwrap_or(0) + h);
            }
        }
    }
    if judged.is_some() && received > 0.0 {
        sample.judged = Some(counted as f64 / received);
    }
    if let Some(h) = hits
        && counted > 0
    {
        sample.hit_share = Some(h as f64 / counted as f64);
    }
    if let Some(run_time) = run_time {
        sample.program_ns = Some(program_ns(net, pins, traffic, cpus, timing, run_time)?);
    }
    Ok(sample)
}

/// With run-time statistics on, runs the generator on the test pair for the warm-up
/// and a sub-window; the receiver program's nanoseconds per run in the sub-window: the
/// median of `timing.samples` consecutive readings, so a moment of stolen time (a
/// virtual CPU descheduled mid-run counts as time in the program) moves it little.
fn program_ns(
    net: &BenchNet,
    pins: &PinDir,
    traffic: &Traffic,
    cpus: &[usize],
    timing: Timing,
    run_time: &dyn Fn() -> Result<RunTime>,
) -> Result<f64> {
    let _stats = enable_run_time_stats()?;
    let generator = Generator::start(&net.netns, &net.test, pins, traffic, cpus)?;
    pause(timing.warmup)?;
    if generator.failed() {
        return generator.stop().and(Err(anyhow::anyhow!("the generator stopped during warm-up")));
    }
    let readings = timing.samples.max(1);
    let mut ns = Vec::with_capacity(readings);
    let mut last = run_time()?;
    for _ in 0..readings {
        pause(timing.part / readings as u32)?;
        let now = run_time()?;
        ns.extend(now.ns_per_run_since(last));
        last = now;
    }
    generator.stop()?;
    if ns.is_empty() {
        bail!("the XDP program on {} did not run with statistics on", net.test.host);
    }
    ns.sort_by(f64::total_cmp);
    Ok(ns[ns.len() / 2])
}

struct Window {
    pps: f64,
    offered_pps: f64,
    /// Counter deltas, and frames received between the counter reads.
    counted: Option<(Counts, f64)>,
}

/// Runs the generator on `pair` for the warm-up, then samples for `timing.part`. The
/// filter's counter is read before the generator starts and after it stopped and the
/// receiver drained, so it is compared with exactly the frames received in between.
fn window(
    net: &BenchNet,
    pair: &Pair,
    pins: &PinDir,
    traffic: &Traffic,
    cpus: &[usize],
    timing: Timing,
    judged: &mut Option<&mut dyn FnMut() -> Result<Counts>>,
) -> Result<Window> {
    let j0 = judged.as_mut().map(|f| f()).transpose()?;
    let before = pair.rx()?.packets;
    let generator = Generator::start(&net.netns, pair, pins, traffic, cpus)?;
    pause(timing.warmup)?;
    if generator.failed() {
        return generator.stop().and(Err(anyhow::anyhow!("the generator stopped during warm-up")));
    }
    let (r0, t0) = (pair.rx()?, Instant::now());
    pause(timing.part)?;
    let (r1, t1) = (pair.rx()?, Instant::now());
    let sent = generator.sent();
    generator.stop()?;
    if sent == 0 {
        bail!("the generator sent nothing");
    }
    let got = r1.packets.saturating_sub(r0.packets);
    if got == 0 {
        bail!("{} took in no frames (is XDP or GRO on?)", pair.host);
    }
    let counted = match judged.as_mut() {
        Some(f) => {
            let after = drained(pair)?;
            let (c0, c1) = (j0.unwrap_or_default(), f()?);
            let delta = Counts {
                expected: c1.expected.saturating_sub(c0.expected),
                hits: c1.hits.map(|h| h.saturating_sub(c0.hits.unwrap_or(0))),
            };
            Some((delta, after.saturating_sub(before) as f64))
        }
        None => None,
    };
    let secs = (t1 - t0).as_secs_f64();
    let ring_full = r1.dropped.saturating_sub(r0.dropped);
    Ok(Window { pps: got as f64 / secs, offered_pps: (got + ring_full) as f64 / secs, counted })
}

/// The receiver's packet count once it stops moving (its queue has drained): unchanged
/// over three reads 20 ms apart. The count moves once per NAPI poll of up to 64 frames,
/// which takes under 10 ms even at the slowest rates measured here (~8 kpps).
fn drained(pair: &Pair) -> Result<u64> {
    let (mut last, mut still) = (pair.rx()?.packets, 0);
    for _ in 0..250 {
        std::thread::sleep(Duration::from_millis(20));
        let now = pair.rx()?.packets;
        still = if now == last { still + 1 } else { 0 };
        if still == 3 {
            return Ok(now);
        }
        last = now;
    }
    bail!("{} kept receiving after the generator stopped", pair.host)
}

fn frame(probe: Probe, size: usize) -> Vec<u8> {
    const HEADERS: usize = 14 + 20 + 8;
    let payload = vec![0u8; size.saturating_sub(HEADERS)];
    PacketBuilder::eth()
        .src_mac(PEER_MAC)
        .dst_mac(HOST_MAC)
        .ipv4(probe.src, HOST_V4)
        .udp(32768, probe.dport)
        .payload(&payload)
        .build()
        .bytes
}

/// Whether a test run failed with EINTR.
fn interrupted(e: &aya::programs::ProgramError) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::Interrupted;
        }
        source = err.source();
    }
    false
}

/// Moves this thread into the network namespace at `path`.
fn enter_netns(path: &str) -> Result<()> {
    let ns = File::open(path).with_context(|| format!("opening {path}"))?;
    // SAFETY: `ns` is an open namespace file; CLONE_NEWNET moves only this thread.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("setns into {path}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// Pins thread `tid` (0: the calling thread) to `cpu`.
fn set_affinity(tid: i32, cpu: usize) -> Result<()> {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET writes inside it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size given.
    if unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) } != 0 {
        bail!("pinning thread {tid} to CPU {cpu}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// Gives thread `tid` (0: the calling thread) nice -20, so that other work on the
/// machine takes as little as possible from the generator and the receiver (a
/// SCHED_OTHER neighbour at nice 0 then gets about 1% of a shared core).
pub fn favour(tid: i32) -> Result<()> {
    // SAFETY: setpriority has no memory effects; `who` is a thread id or 0.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, -20) } != 0 {
        bail!("renicing thread {tid}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// The CPUs this process may run on.
pub fn online_cpus() -> Vec<usize> {
    // SAFETY: as in `set_affinity`; sched_getaffinity fills `set`.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } != 0 {
        return vec![0];
    }
    (0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, &set) }).collect()
}

/// Pids of kernel threads whose name starts with `prefix`.
fn threads_named(prefix: &str) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = dir
        .filter_map(|e| {
            let pid: i32 = e.ok()?.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            comm.trim_end().starts_with(prefix).then_some(pid)
        })
        .collect();
    pids.sort_unstable();
    pids
}

fn ifindex(name: &str) -> Result<u32> {
    let c = std::ffi::CString::new(name).context("interface name")?;
    // SAFETY: a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        bail!("no interface named {name}: {}", std::io::Error::last_os_error());
    }
    Ok(index)
}

fn mac(m: [u8; 6]) -> String {
    m.map(|b| format!("{b:02x}")).join(":")
}

/// Runs `ip ARGS`; a failure is an error with ip's message.
pub fn ip(args: &[&str]) -> Result<()> {
    run(Command::new("ip").args(args))
}

/// Runs a command; a failure is an error with its stderr.
pub fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().with_context(|| format!("cannot run {shown}"))?;
    if !out.status.success() {
        bail!("{shown} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// An exclusive lock for the whole run: two benchmarks at once would measure each other.
pub struct RunLock {
    _file: File,
}

impl RunLock {
    /// Takes /run/xdpwall-bench.lock, failing at once if another run holds it.
    pub fn take() -> Result<RunLock> {
        let path = "/run/xdpwall-bench.lock";
        let mut file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("opening {path}"))?;
        // SAFETY: flock on an open file descriptor.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            bail!("another benchmark holds {path}");
        }
        let _ = writeln!(file, "{}", std::process::id());
        Ok(RunLock { _file: file })
    }
}
