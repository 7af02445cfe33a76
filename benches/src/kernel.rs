//! The eBPF object's programs as benchmarks use them: xdpwall loaded for a compiled
//! ruleset, the reference programs `bench_drop` and `bench_tx`, the per-packet cost
//! of any of them through BPF_PROG_TEST_RUN with `repeat`, the counters that say how
//! xdpwall judged the packets, and the kernel's run-time statistics of a program.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use aya::maps::{Map, MapData, PerCpuArray};
use aya::programs::{ProgramInfo, Xdp};
use aya::{Ebpf, EbpfLoader, TestRun as _, TestRunOptions};
use filter_common::Counter;
use filter_user::compile::Compiled;
use filter_user::dataplane::{LoadedProgram, RULE_SLOTS, ebpf_object};

/// The scratch bpffs directory of the test bed: `/sys/fs/bpf/xdpwall-bench-<what>-<pid>-<n>`.
pub use xdpwall_tests::bpf::PinDir;

/// A reference program of the object, loaded (not attached).
pub struct Reference {
    ebpf: Ebpf,
    name: &'static str,
}

impl Reference {
    /// `bench_drop`: the XDP_DROP ceiling.
    pub fn drop_program(pins: &PinDir) -> Result<Reference> {
        Reference::load("bench_drop", pins, 1, 0)
    }

    /// `bench_tx`: the generator, spreading frames over `flows` flows or, with
    /// `spoof_bits` > 0, giving every frame a source whose low `spoof_bits` bits are
    /// random (see `filter-ebpf/src/bench.rs`).
    pub fn generator(pins: &PinDir, flows: u32, spoof_bits: u32) -> Result<Reference> {
        Reference::load("bench_tx", pins, flows, spoof_bits)
    }

    fn load(name: &'static str, pins: &PinDir, flows: u32, spoof_bits: u32) -> Result<Reference> {
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(pins.path())
            .override_global("BENCH_FLOWS", &flows, true)
            .override_global("BENCH_SPOOF_BITS", &spoof_bits, true)
            .load(ebpf_object())
            .context("loading the eBPF object")?;
        let prog: &mut Xdp =
            ebpf.program_mut(name).with_context(|| format!("the eBPF object has no program {name}"))?.try_into()?;
        prog.load().with_context(|| format!("loading {name}"))?;
        Ok(Reference { ebpf, name })
    }

    /// The program.
    pub fn program(&self) -> &Xdp {
        self.ebpf.program(self.name).expect("checked in load").try_into().expect("checked in load")
    }

    /// The program, mutable (to attach it).
    pub fn program_mut(&mut self) -> &mut Xdp {
        self.ebpf.program_mut(self.name).expect("checked in load").try_into().expect("checked in load")
    }

    /// Runs `frame` through the program `repeat` times; the action and the kernel's
    /// average time per run.
    pub fn test_run_repeat(&self, frame: &[u8], repeat: u32) -> Result<(u32, Duration)> {
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(frame);
        opts.repeat = repeat;
        let r = self.program().test_run(opts).with_context(|| format!("test run of {}", self.name))?;
        Ok((r.return_value, r.duration))
    }

    /// Runs `frame` through the program once; the action and the frame as the program
    /// left it (what the generator would send).
    pub fn test_run_out(&self, frame: &[u8]) -> Result<(u32, Vec<u8>)> {
        let mut out = vec![0u8; frame.len() + 256];
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(frame);
        opts.data_out = Some(&mut out);
        opts.repeat = 1;
        let r = self.program().test_run(opts).with_context(|| format!("test run of {}", self.name))?;
        out.truncate(r.data_size_out as usize);
        Ok((r.return_value, out))
    }

    /// The program's run-time statistics so far (see [`RunTime`]).
    pub fn run_time(&self) -> Result<RunTime> {
        let info = self.program().info().with_context(|| format!("reading the info of {}", self.name))?;
        Ok(RunTime::of(&info))
    }
}

/// A program's cumulative run-time statistics: the time spent in it and how many runs.
/// The kernel counts them only while statistics are enabled (`BPF_ENABLE_STATS`, see
/// [`enable_run_time_stats`]); the difference of two readings is what ran in between.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunTime {
    /// Nanoseconds spent in the program.
    pub ns: u64,
    /// Runs.
    pub runs: u64,
}

impl RunTime {
    /// The statistics in a program's info.
    pub fn of(info: &ProgramInfo) -> RunTime {
        RunTime { ns: info.run_time().as_nanos() as u64, runs: info.run_count() }
    }

    /// The program's info pinned at `path`.
    pub fn of_pinned(path: &Path) -> Result<RunTime> {
        let info =
            ProgramInfo::from_pin(path).with_context(|| format!("reading the program pinned at {}", path.display()))?;
        Ok(RunTime::of(&info))
    }

    /// Nanoseconds per run between `earlier` and `self`, if it ran in between.
    pub fn ns_per_run_since(self, earlier: RunTime) -> Option<f64> {
        let runs = self.runs.checked_sub(earlier.runs)?;
        (runs > 0).then(|| self.ns.saturating_sub(earlier.ns) as f64 / runs as f64)
    }
}

/// Makes the kernel count every BPF program's run time and runs until the returned
/// descriptor is closed. While on, each run of every program also pays two clock reads
/// (the measured time includes about one), so throughput is never sampled meanwhile.
pub fn enable_run_time_stats() -> Result<std::os::fd::OwnedFd> {
    aya::sys::enable_stats(aya::sys::Stats::RunTime).context("enabling BPF run-time statistics (BPF_ENABLE_STATS)")
}

/// The pinned `COUNTERS` map (the name is the data plane's).
const COUNTERS: &str = "COUNTERS";

/// xdpwall loaded for one compiled ruleset, for BPF_PROG_TEST_RUN.
pub struct Filter {
    prog: LoadedProgram,
    counters: PerCpuArray<MapData, Counter>,
    rules: u32,
}

impl Filter {
    /// Loads `compiled` with counters pinned in `pins`.
    pub fn load(compiled: &Compiled, pins: &PinDir) -> Result<Filter> {
        let slots: Vec<u32> = RULE_SLOTS.take(compiled.rules.len()).collect();
        if slots.len() < compiled.rules.len() {
            bail!("{} rules but only {} counter slots", compiled.rules.len(), slots.len());
        }
        let prog = LoadedProgram::load(compiled, &slots, &[], pins.path()).context("loading xdpwall")?;
        let path = pins.path().join(COUNTERS);
        let counters = MapData::from_pin(&path)
            .map_err(anyhow::Error::from)
            .and_then(|m| Ok(PerCpuArray::try_from(Map::from_map_data(m)?)?))
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(Filter { prog, counters, rules: slots.len() as u32 })
    }

    /// The counter slot of the ruleset's last rule (rule `i` counts in the `i`-th of
    /// [`RULE_SLOTS`]).
    pub fn last_rule_slot(&self) -> u32 {
        RULE_SLOTS.start + self.rules - 1
    }

    /// Packets counted so far in `slot` of the pinned `COUNTERS` map (all CPUs): a rule's
    /// slot, or a reserved one (`filter_common::slot`, e.g. `STATE` for the fast path).
    /// The map is shared by every filter loaded with the same [`PinDir`].
    pub fn counted(&self, slot: u32) -> Result<u64> {
        let values = self.counters.get(&slot, 0).with_context(|| format!("reading counter slot {slot}"))?;
        Ok(values.iter().map(|c| c.packets).sum())
    }

    /// Runs `frame` through the filter `repeat` times; the action and the kernel's average
    /// time per run.
    pub fn test_run_repeat(&mut self, frame: &[u8], repeat: u32) -> Result<(u32, Duration)> {
        Ok(self.prog.test_run_repeat(frame, None, repeat)?)
    }
}

/// XDP_DROP.
pub const XDP_DROP: u32 = 1;
/// XDP_PASS.
pub const XDP_PASS: u32 = 2;

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use xdpwall_tests::packet::checksum;

    use super::*;
    use crate::flood::{FLOOD_PORT, Family};
    use crate::live::BenchNet;

    const XDP_TX: u32 = 3;

    /// `bench_tx` in spoof mode: every frame's source differs in exactly its random low
    /// bits, and the IPv4 header and UDP checksums stay valid (receivers that check them
    /// would otherwise drop the flood for the wrong reason).
    #[test]
    fn generator_spoofs_sources_with_valid_checksums() {
        if !xdpwall_tests::is_root() {
            eprintln!("skipped: needs root (BPF_PROG_TEST_RUN)");
            return;
        }
        let pins = PinDir::new("bench-generator-test").unwrap();
        for family in [Family::V4, Family::V6] {
            let generator = Reference::generator(&pins, 1, family.spoof_bits()).unwrap();
            let template = BenchNet::flood_frame(family.template_source(), FLOOD_PORT, 60);
            let (src, len, l4) = match family {
                Family::V4 => (26, 4, 34),
                Family::V6 => (22, 16, 54),
            };
            let fixed = len - family.spoof_bits() as usize / 8;
            let mut sources = HashSet::new();
            for _ in 0..200 {
                let (action, out) = generator.test_run_out(&template).unwrap();
                assert_eq!(action, XDP_TX);
                assert_eq!(out.len(), template.len());
                // Only the source's random bytes change (and the checksums).
                assert_eq!(out[src..src + fixed], template[src..src + fixed]);
                assert_eq!(out[l4..l4 + 6], template[l4..l4 + 6]);
                sources.insert(out[src..src + len].to_vec());
                let pseudo_addrs = &out[src..src + 2 * len];
                let udp = &out[l4..];
                let mut pseudo = pseudo_addrs.to_vec();
                match family {
                    Family::V4 => {
                        assert_eq!(checksum(&[&out[14..34]]), 0, "IPv4 header checksum");
                        pseudo.extend_from_slice(&[0, 17]);
                        pseudo.extend_from_slice(&(udp.len() as u16).to_be_bytes());
                    }
                    Family::V6 => {
                        pseudo.extend_from_slice(&(udp.len() as u32).to_be_bytes());
                        pseudo.extend_from_slice(&[0, 0, 0, 17]);
                    }
                }
                assert_ne!(udp[6..8], [0, 0], "UDP checksum present");
                assert_eq!(checksum(&[&pseudo, udp]), 0, "UDP checksum");
            }
            assert!(sources.len() > 190, "{} distinct sources of 200", sources.len());
        }
    }
}
