//! Paired sampling: a row's rate beside the ceiling measured seconds before it, the
//! filter's counters and its time per packet.

use super::*;

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
pub(super) fn program_ns(
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

pub(super) struct Window {
    pub(super) pps: f64,
    pub(super) offered_pps: f64,
    /// Counter deltas, and frames received between the counter reads.
    pub(super) counted: Option<(Counts, f64)>,
}

/// Runs the generator on `pair` for the warm-up, then samples for `timing.part`. The
/// filter's counter is read before the generator starts and after it stopped and the
/// receiver drained, so it is compared with exactly the frames received in between.
pub(super) fn window(
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
pub(super) fn drained(pair: &Pair) -> Result<u64> {
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
