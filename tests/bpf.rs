//! xdpwall's program loaded for one ruleset outside any interface, for BPF_PROG_TEST_RUN:
//! the bed the kernel, differential and benchmark suites share.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use aya::maps::{HashMap, Map, MapData, PerCpuArray};
use filter_common::{Counter, FlowKey, FlowState, names, slot};
use filter_user::{
    compile::Compiled,
    dataplane::{IfaceBinding, LoadedProgram},
};

/// ifindex of the loopback device, on which test runs are received.
pub const LO: u32 = 1;

/// A bpffs directory of the test's own for the maps a program pins
/// (`/sys/fs/bpf/xdpwall-<what>-<pid>-<n>`), removed with its maps on drop.
#[derive(Debug)]
pub struct PinDir(PathBuf);

impl PinDir {
    /// Creates the directory, empty.
    pub fn new(what: &str) -> Result<PinDir> {
        let name = format!("xdpwall-{what}-{}-{}", std::process::id(), crate::next_id());
        let path = Path::new("/sys/fs/bpf").join(name);
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .with_context(|| format!("creating {} (is bpffs mounted? `cargo xtask setup`)", path.display()))?;
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

/// A compiled ruleset's program, loaded (not attached) with its maps pinned in a
/// [`PinDir`] of its own, so its counters and flow tables start empty. Rule `i` counts in
/// slot `slot::RESERVED + i`.
pub struct Bed {
    /// The program, for `test_run*`.
    pub program: LoadedProgram,
    pins: PinDir,
}

impl Bed {
    /// Loads `compiled`. `lo_name`: the interface name the filter knows the loopback (the
    /// device test runs arrive on) by, or `None` for an interface it has no entry for.
    /// `traced`: the variant that reports which rule decided (`test_run_traced`).
    pub fn load(compiled: &Compiled, lo_name: Option<&str>, traced: bool, what: &str) -> Result<Bed> {
        let pins = PinDir::new(what)?;
        let slots: Vec<u32> = (0..compiled.rules.len() as u32).map(|i| slot::RESERVED + i).collect();
        let bindings: Vec<IfaceBinding> =
            lo_name.map(|name| IfaceBinding { name: name.into(), ifindex: LO, stats_slot: 0 }).into_iter().collect();
        let program = if traced {
            LoadedProgram::load_traced(compiled, &slots, &bindings, pins.path())
        } else {
            LoadedProgram::load(compiled, &slots, &bindings, pins.path())
        }
        .context("loading the program")?;
        Ok(Bed { program, pins })
    }

    /// Where the maps are pinned.
    pub fn pin_dir(&self) -> &Path {
        self.pins.path()
    }

    /// The counters of slots `0..slots`, each summed over the CPUs.
    pub fn counters(&self, slots: u32) -> Result<Vec<Counter>> {
        let map: PerCpuArray<_, Counter> = PerCpuArray::try_from(self.map(names::COUNTERS)?)?;
        (0..slots).map(|s| Ok(map.get(&s, 0)?.iter().copied().fold(Counter::default(), |a, c| a + c))).collect()
    }

    /// The flows in one of the flow tables (`names::STATES`: answered flows,
    /// `names::STATES_NEW`: the others).
    pub fn flows(&self, table: &str) -> Result<Vec<(FlowKey, FlowState)>> {
        let map: HashMap<_, FlowKey, FlowState> = HashMap::try_from(self.map(table)?)?;
        Ok(map.iter().collect::<Result<_, _>>()?)
    }

    fn map(&self, name: &str) -> Result<Map> {
        let path = self.pin_dir().join(name);
        let data = MapData::from_pin(&path).with_context(|| format!("opening {}", path.display()))?;
        Ok(Map::from_map_data(data)?)
    }
}

/// Pins the calling thread to one CPU (to drive the program from two CPUs at once).
pub fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; the calls only read it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set), 0, "pin to CPU {cpu}");
    }
}
