//! The eBPF object's programs as benchmarks use them: xdpwall loaded for a compiled
//! ruleset, the reference programs `bench_drop` and `bench_tx`, and the per-packet cost
//! of any of them through BPF_PROG_TEST_RUN with `repeat`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use aya::programs::Xdp;
use aya::{Ebpf, EbpfLoader, TestRun as _, TestRunOptions};
use filter_user::compile::Compiled;
use filter_user::dataplane::{LoadedProgram, RULE_SLOTS, ebpf_object};

/// A bpffs directory of the benchmark's own for the object's pinned maps, removed on drop.
#[derive(Debug)]
pub struct PinDir(PathBuf);

impl PinDir {
    /// `/sys/fs/bpf/xdpwall-bench-<pid>-<what>`, created empty.
    pub fn new(what: &str) -> Result<PinDir> {
        let path =
            Path::new("/sys/fs/bpf").join(format!("xdpwall-bench-{}-{what}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).with_context(|| {
            format!(
                "creating {} (is bpffs mounted? `cargo xtask setup`)",
                path.display()
            )
        })?;
        Ok(PinDir(path))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A reference program of the object, loaded (not attached).
pub struct Reference {
    ebpf: Ebpf,
    name: &'static str,
}

impl Reference {
    /// `bench_drop`: the XDP_DROP ceiling.
    pub fn drop_program(pins: &PinDir) -> Result<Reference> {
        Reference::load("bench_drop", pins, 1)
    }

    /// `bench_tx`: the generator, spreading frames over `flows` flows.
    pub fn generator(pins: &PinDir, flows: u32) -> Result<Reference> {
        Reference::load("bench_tx", pins, flows)
    }

    fn load(name: &'static str, pins: &PinDir, flows: u32) -> Result<Reference> {
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(pins.path())
            .override_global("BENCH_FLOWS", &flows, true)
            .load(ebpf_object())
            .context("loading the eBPF object")?;
        let prog: &mut Xdp = ebpf
            .program_mut(name)
            .with_context(|| format!("the eBPF object has no program {name}"))?
            .try_into()?;
        prog.load().with_context(|| format!("loading {name}"))?;
        Ok(Reference { ebpf, name })
    }

    /// The program.
    pub fn program(&self) -> &Xdp {
        self.ebpf
            .program(self.name)
            .expect("checked in load")
            .try_into()
            .expect("checked in load")
    }

    /// The program, mutable (to attach it).
    pub fn program_mut(&mut self) -> &mut Xdp {
        self.ebpf
            .program_mut(self.name)
            .expect("checked in load")
            .try_into()
            .expect("checked in load")
    }

    /// Runs `frame` through the program `repeat` times; the action and the kernel's
    /// average time per run.
    pub fn test_run_repeat(&self, frame: &[u8], repeat: u32) -> Result<(u32, Duration)> {
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(frame);
        opts.repeat = repeat;
        let r = self
            .program()
            .test_run(opts)
            .with_context(|| format!("test run of {}", self.name))?;
        Ok((r.return_value, r.duration))
    }
}

/// xdpwall loaded for one compiled ruleset, for BPF_PROG_TEST_RUN.
pub struct Filter {
    prog: LoadedProgram,
}

impl Filter {
    /// Loads `compiled` with counters pinned in `pins`.
    pub fn load(compiled: &Compiled, pins: &PinDir) -> Result<Filter> {
        let slots: Vec<u32> = RULE_SLOTS.take(compiled.rules.len()).collect();
        if slots.len() < compiled.rules.len() {
            bail!(
                "{} rules but only {} counter slots",
                compiled.rules.len(),
                slots.len()
            );
        }
        let prog =
            LoadedProgram::load(compiled, &slots, &[], pins.path()).context("loading xdpwall")?;
        Ok(Filter { prog })
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
