//! Load, attach, pin, apply and read counters through aya.
//!
//! Every apply loads a new generation of the program with its own, completely
//! filled classifier maps and then swaps it in with one `bpf_link_update` per
//! interface, so a packet is judged by the old or the new ruleset, never a mix, and
//! the interface is never detached (igb would drop the link). Counters live in pinned
//! maps shared by all generations; a rule keeps its counter slot while its identity
//! (label, else text) stays.

mod flows;
mod links;
mod nic;
mod program;
mod state;

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use filter_common::{ABI_VERSION, Counter, IfaceCounters, MAX_IFACES, Malformed, slot};
use serde::Serialize;

pub use program::{Decision, IfaceBinding, LoadedProgram, RULE_SLOTS, ebpf_object, read_counters, unanswered_limit};
pub use flows::{FlowEntry, FlowFilter, FlowTable, flush as flush_states, list as list_states};
pub use state::{IfaceState, RuleState, State};

use crate::{
    compile::{Compiled, RuleInfo},
    rules::Action,
};

/// What can go wrong talking to the kernel or the state on disk.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The eBPF object did not load.
    #[error("loading the eBPF object failed: {0}")]
    Load(#[source] Box<aya::EbpfError>),
    /// A program operation failed.
    #[error("XDP program: {0} failed: {1}")]
    Program(&'static str, #[source] aya::programs::ProgramError),
    /// A map operation failed.
    #[error("map {0}: {1}")]
    Map(&'static str, #[source] aya::maps::MapError),
    /// A link operation failed.
    #[error("{0}: {1}")]
    Link(String, String),
    /// The object lacks a program or map it should have (a build mismatch).
    #[error("the eBPF object has no `{0}`")]
    MissingObject(&'static str),
    /// An I/O error, with what was being done.
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    /// The state file could not be parsed.
    #[error("state file {0}: {1}")]
    State(PathBuf, String),
    /// Nothing is loaded.
    #[error("xdpwall is not loaded (no state in {0}); run `xdpwall load` first")]
    NotLoaded(PathBuf),
    /// A request that makes no sense in the current state.
    #[error("{0}")]
    Invalid(String),
}

/// Where pinned objects and the loader's state live.
#[derive(Debug, Clone)]
pub struct Paths {
    /// bpffs directory for pinned maps and links (default /sys/fs/bpf/xdpwall).
    pub pin_dir: PathBuf,
    /// Directory for the state file and lock (default /run/xdpwall).
    pub run_dir: PathBuf,
}

impl Paths {
    fn state_file(&self) -> PathBuf {
        self.run_dir.join("state.json")
    }
}

/// How to attach XDP to a new interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// In the driver (igb, veth, ...); fails where the driver lacks XDP.
    Native,
    /// In the kernel stack, on any interface; slower.
    Generic,
    /// Native, falling back to generic.
    Auto,
}

/// What an apply did.
#[derive(Debug, Default, Serialize)]
pub struct ApplyReport {
    /// Interfaces newly attached, with the mode they got.
    pub attached: Vec<(String, String)>,
    /// Notes for the operator (fallbacks, ...).
    pub notes: Vec<String>,
    /// The rule diff.
    pub diff: Diff,
    /// Interfaces whose program was swapped.
    pub swapped: Vec<String>,
    /// Wall time of the whole apply.
    pub elapsed: Duration,
}

/// Rules added, removed and kept between two rulesets (by identity).
#[derive(Debug, Default, Serialize)]
pub struct Diff {
    /// In the new ruleset only.
    pub added: Vec<String>,
    /// In the old ruleset only.
    pub removed: Vec<String>,
    /// In both (counters carry over).
    pub kept: usize,
}

/// The diff between the loaded ruleset (if any) and `compiled`.
pub fn diff(paths: &Paths, compiled: &Compiled) -> Result<Diff, Error> {
    let old = State::read(&paths.state_file())?.map(|s| s.rules).unwrap_or_default();
    Ok(diff_rules(&old, &compiled.rules))
}

fn diff_rules(old: &[RuleState], new: &[RuleInfo]) -> Diff {
    let old_keys: HashSet<&str> = old.iter().map(|r| r.info.key.as_str()).collect();
    let new_keys: HashSet<&str> = new.iter().map(|r| r.key.as_str()).collect();
    Diff {
        added: new.iter().filter(|r| !old_keys.contains(r.key.as_str())).map(|r| r.text.clone()).collect(),
        removed: old.iter().filter(|r| !new_keys.contains(r.info.key.as_str())).map(|r| r.info.text.clone()).collect(),
        kept: new.iter().filter(|r| old_keys.contains(r.key.as_str())).count(),
    }
}

/// Lowest free slots: `n` values of `range` in none of `taken`.
fn free_slots(range: std::ops::Range<u32>, taken: &HashSet<u32>, n: usize) -> Vec<u32> {
    range.filter(|s| !taken.contains(s)).take(n).collect()
}

/// Makes `compiled` the ruleset of every loaded interface and attaches it to `add`
/// (name, mode). All or nothing: on any error, no interface changes program.
pub fn apply(
    paths: &Paths,
    compiled: &Compiled,
    source: Option<String>,
    add: &[String],
    mode: Mode,
) -> Result<ApplyReport, Error> {
    let started = Instant::now();
    ensure_bpffs(&paths.pin_dir)?;
    std::fs::create_dir_all(&paths.run_dir)
        .map_err(|e| Error::Io(format!("creating {}", paths.run_dir.display()), e))?;
    links::create_dirs(paths)?;
    let _lock = state::lock(&paths.run_dir)?;
    let old = State::read(&paths.state_file())?;
    if let Some(old) = &old
        && old.abi_version != ABI_VERSION
    {
        return Err(Error::Invalid(format!(
            "the loaded filter was pinned by a build with ABI {} (this one is {ABI_VERSION}); run `xdpwall unload` first",
            old.abi_version
        )));
    }
    if old.is_none() && add.is_empty() {
        return Err(Error::NotLoaded(paths.state_file()));
    }
    let mut interfaces = old.as_ref().map(|s| s.interfaces.clone()).unwrap_or_default();
    let old_rules = old.as_ref().map(|s| s.rules.clone()).unwrap_or_default();

    // New interfaces: resolve and give each a stats slot.
    let mut taken: HashSet<u32> = interfaces.iter().map(|i| i.stats_slot).collect();
    let mut new_ifaces = Vec::new();
    for name in add {
        if interfaces.iter().any(|i| &i.name == name) || new_ifaces.iter().any(|i: &IfaceState| &i.name == name) {
            return Err(Error::Invalid(format!("{name} is already loaded; use `xdpwall apply` to change its rules")));
        }
        let ifindex = ifindex(name)?;
        let slot = free_slots(0..MAX_IFACES, &taken, 1)
            .pop()
            .ok_or_else(|| Error::Invalid(format!("at most {MAX_IFACES} interfaces can be loaded")))?;
        taken.insert(slot);
        new_ifaces.push(IfaceState { name: name.clone(), ifindex, mode: String::new(), stats_slot: slot });
    }

    // Counter slots: kept rules keep theirs; new rules get slots neither ruleset uses.
    let old_slots: HashMap<&str, u32> = old_rules.iter().map(|r| (r.info.key.as_str(), r.counter)).collect();
    let mut taken: HashSet<u32> = old_rules.iter().map(|r| r.counter).collect();
    let fresh_needed = compiled.rules.iter().filter(|r| !old_slots.contains_key(r.key.as_str())).count();
    let mut fresh = free_slots(RULE_SLOTS, &taken, fresh_needed).into_iter();
    let mut fresh_slots = Vec::new();
    let rules: Vec<RuleState> = compiled
        .rules
        .iter()
        .map(|info| {
            let counter = match old_slots.get(info.key.as_str()) {
                Some(&s) => s,
                None => {
                    let s = fresh.next().expect("COUNTER_SLOTS holds two rulesets");
                    fresh_slots.push(s);
                    s
                }
            };
            taken.insert(counter);
            RuleState { info: info.clone(), counter }
        })
        .collect();

    let counter_slots: Vec<u32> = rules.iter().map(|r| r.counter).collect();
    let bindings: Vec<IfaceBinding> = interfaces
        .iter()
        .chain(&new_ifaces)
        .map(|i| IfaceBinding { name: i.name.clone(), ifindex: i.ifindex, stats_slot: i.stats_slot })
        .collect();
    let mut report = ApplyReport { diff: diff_rules(&old_rules, &compiled.rules), ..Default::default() };
    if compiled.uses(filter_common::field::VLAN) {
        for b in &bindings {
            report.notes.extend(nic::keep_vlan_tags(&b.name)?);
        }
    }
    let mut program = LoadedProgram::load(compiled, &counter_slots, &bindings, &paths.pin_dir)?;
    program::zero_slots::<Counter>(&paths.pin_dir, program::COUNTERS, &fresh_slots)?;
    let new_stats: Vec<u32> = new_ifaces.iter().map(|i| i.stats_slot).collect();
    program::zero_slots::<IfaceCounters>(&paths.pin_dir, program::IFACE_COUNTERS, &new_stats)?;

    // Attach new interfaces first: if one fails, detach those attached so far and
    // nothing else has changed.
    let mut attached: Vec<String> = Vec::new();
    for iface in &mut new_ifaces {
        match links::attach(&mut program, paths, &iface.name, iface.ifindex, mode, &mut report.notes) {
            Ok(used) => {
                iface.mode = used.to_string();
                attached.push(iface.name.clone());
                report.attached.push((iface.name.clone(), iface.mode.clone()));
            }
            Err(e) => {
                for name in &attached {
                    let _ = links::detach(paths, name);
                }
                return Err(e);
            }
        }
    }
    // Then swap the programs on every existing link, atomically per link. If one
    // swap fails (an interface vanished, ...), swap the others back to the programs
    // that were enforcing and detach the new interfaces: nothing changes.
    let mut progs = program.programs()?;
    for iface in &interfaces {
        if let Err(e) = links::swap(&mut progs, paths, &iface.name) {
            let rollback = links::swap_back(paths, &report.swapped);
            for name in &attached {
                let _ = links::detach(paths, name);
            }
            return Err(match rollback {
                Ok(()) => e,
                Err(r) => Error::Invalid(format!("{e}; rolling back also failed: {r}; run `xdpwall apply` again")),
            });
        }
        report.swapped.push(iface.name.clone());
    }
    links::pin_programs(&mut progs, paths)?;

    interfaces.extend(new_ifaces);
    let state = State {
        abi_version: ABI_VERSION,
        generation: old.map_or(1, |s| s.generation + 1),
        ruleset_file: source,
        default_action: compiled.default_action,
        interfaces,
        rules,
    };
    state.write(&paths.state_file())?;
    report.elapsed = started.elapsed();
    Ok(report)
}

fn ifindex(name: &str) -> Result<u32, Error> {
    let c = std::ffi::CString::new(name).map_err(|_| Error::Invalid(format!("bad interface name {name:?}")))?;
    // SAFETY: a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        return Err(Error::Invalid(format!("no interface named {name}")));
    }
    Ok(index)
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Mounts bpffs at /sys/fs/bpf when `pin_dir` is under it and it is not mounted.
fn ensure_bpffs(pin_dir: &Path) -> Result<(), Error> {
    let bpffs = Path::new("/sys/fs/bpf");
    if !pin_dir.starts_with(bpffs) {
        return Ok(());
    }
    let mounts = std::fs::read_to_string("/proc/mounts").map_err(|e| Error::Io("reading /proc/mounts".into(), e))?;
    if mounts.lines().any(|l| l.split_whitespace().nth(1) == Some("/sys/fs/bpf") && l.split_whitespace().nth(2) == Some("bpf")) {
        return Ok(());
    }
    let c = |s: &str| std::ffi::CString::new(s).expect("no NUL");
    let (src, target, fstype) = (c("bpf"), c("/sys/fs/bpf"), c("bpf"));
    // SAFETY: valid C strings; no data argument.
    let rc = unsafe { libc::mount(src.as_ptr(), target.as_ptr(), fstype.as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        return Err(Error::Io("mounting bpffs at /sys/fs/bpf".into(), std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Detaches from `ifaces` (all when empty); removes everything once none is left.
pub fn unload(paths: &Paths, ifaces: &[String]) -> Result<Vec<String>, Error> {
    let _lock = state::lock(&paths.run_dir)?;
    let mut state = State::read(&paths.state_file())?.ok_or_else(|| Error::NotLoaded(paths.state_file()))?;
    for name in ifaces {
        if !state.interfaces.iter().any(|i| &i.name == name) {
            return Err(Error::Invalid(format!("{name} is not loaded")));
        }
    }
    let (gone, kept): (Vec<_>, Vec<_>) =
        state.interfaces.into_iter().partition(|i| ifaces.is_empty() || ifaces.contains(&i.name));
    for i in &gone {
        // The pins hold the links; removing them detaches the hooks.
        links::detach(paths, &i.name)?;
    }
    state.interfaces = kept;
    if state.interfaces.is_empty() {
        for map in [program::COUNTERS, program::IFACE_COUNTERS, program::STATES, program::STATES_NEW] {
            let _ = std::fs::remove_file(paths.pin_dir.join(map));
        }
        links::remove_all(paths);
        let _ = std::fs::remove_dir(&paths.pin_dir);
        std::fs::remove_file(paths.state_file())
            .map_err(|e| Error::Io(format!("removing {}", paths.state_file().display()), e))?;
    } else {
        state.write(&paths.state_file())?;
    }
    Ok(gone.into_iter().map(|i| i.name).collect())
}

/// Counters of one rule or reason.
#[derive(Debug, Clone, Serialize)]
pub struct RuleStatus {
    /// Rule number, from 1, in ruleset order.
    pub number: usize,
    /// The rule as written.
    pub text: String,
    /// Label, if any.
    pub label: Option<String>,
    /// pass or block.
    pub action: Action,
    /// Packets the rule decided.
    pub packets: u64,
    /// Bytes of those packets.
    pub bytes: u64,
}

/// One interface's totals.
#[derive(Debug, Clone, Serialize)]
pub struct IfaceStatus {
    /// Name.
    pub name: String,
    /// Kernel index.
    pub ifindex: u32,
    /// native or generic.
    pub mode: String,
    /// Whether the pinned link is still there.
    pub attached: bool,
    /// Packets passed.
    pub passed_packets: u64,
    /// Bytes passed.
    pub passed_bytes: u64,
    /// Packets dropped.
    pub dropped_packets: u64,
    /// Bytes dropped.
    pub dropped_bytes: u64,
}

/// A named counter (default policy, non-IP, malformed reasons).
#[derive(Debug, Clone, Serialize)]
pub struct NamedCounter {
    /// What it counts.
    pub name: String,
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
}

/// Everything `xdpwall status` shows.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Ruleset file last applied.
    pub ruleset_file: Option<String>,
    /// Apply count since load.
    pub generation: u64,
    /// Per rule.
    pub rules: Vec<RuleStatus>,
    /// The default policy and its counter.
    pub default_action: Action,
    /// Packets decided by the default policy.
    pub default: NamedCounter,
    /// Non-IP frames passed.
    pub non_ip: NamedCounter,
    /// Malformed packets dropped, by reason.
    pub malformed: Vec<NamedCounter>,
    /// Per interface.
    pub interfaces: Vec<IfaceStatus>,
    /// Packets passed on the fast path of tracked flows.
    pub state_matches: NamedCounter,
    /// Outgoing packets no `out` rule matched (passed).
    pub out_unmatched: NamedCounter,
    /// The flow table.
    pub flow_table: FlowTable,
}

/// Reads the state and counters.
pub fn status(paths: &Paths) -> Result<Status, Error> {
    let state = State::read(&paths.state_file())?.ok_or_else(|| Error::NotLoaded(paths.state_file()))?;
    let counters = program::read_counters(&paths.pin_dir)?;
    let ifc = program::read_iface_counters(&paths.pin_dir)?;
    let at = |slot: u32| counters.get(slot as usize).copied().unwrap_or_default();
    let named = |name: &str, slot: u32| NamedCounter { name: name.into(), packets: at(slot).packets, bytes: at(slot).bytes };
    let default_slot = match state.default_action {
        Action::Pass => slot::DEFAULT_PASS,
        Action::Block => slot::DEFAULT_BLOCK,
    };
    Ok(Status {
        ruleset_file: state.ruleset_file.clone(),
        generation: state.generation,
        rules: state
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| RuleStatus {
                number: i + 1,
                text: r.info.text.clone(),
                label: r.info.label.clone(),
                action: r.info.action,
                packets: at(r.counter).packets,
                bytes: at(r.counter).bytes,
            })
            .collect(),
        default_action: state.default_action,
        default: named("default", default_slot),
        non_ip: named("non-ip", slot::NON_IP),
        state_matches: named("state", slot::STATE),
        out_unmatched: named("out-unmatched", slot::OUT_UNMATCHED),
        flow_table: flows::summary(paths)?,
        malformed: Malformed::ALL.iter().map(|m| named(m.name(), m.slot())).collect(),
        interfaces: state
            .interfaces
            .iter()
            .map(|i| {
                let c = ifc.get(i.stats_slot as usize).copied().unwrap_or_default();
                IfaceStatus {
                    name: i.name.clone(),
                    ifindex: i.ifindex,
                    mode: i.mode.clone(),
                    attached: links::Hook::ALL.iter().all(|h| h.link_path(paths, &i.name).exists()),
                    passed_packets: c.passed.packets,
                    passed_bytes: c.passed.bytes,
                    dropped_packets: c.dropped.packets,
                    dropped_bytes: c.dropped.bytes,
                }
            })
            .collect(),
    })
}
