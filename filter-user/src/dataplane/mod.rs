//! Load, attach, pin, apply and read counters through aya.
//!
//! Every apply loads a new generation of the program with its own, completely
//! filled classifier maps and then swaps it in with one `bpf_link_update` per
//! interface and hook, so a packet is judged by the old or the new ruleset, never a
//! mix, and the interface is never detached (igb would drop the link). Counters live
//! in pinned maps shared by all generations; a rule keeps its counter slot while its
//! identity (label, else text) stays.
//!
//! - `plan`: what an apply will do (pure); `transaction`: doing it, journaled, and
//!   recovering an interrupted one; `links`: the hooks and pinned programs;
//!   `program`: one generation in the kernel; `state`: the state file and journal;
//!   `privilege`: root-only files and the lock; `status`, `flows`: reading back.

mod fault;
mod flows;
mod links;
mod nic;
mod plan;
pub(crate) mod privilege;
mod program;
mod state;
mod status;
mod transaction;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Serialize;

pub use flows::{FlowEntry, FlowFilter, FlowTable, flush as flush_states, list as list_states};
pub use plan::Diff;
pub use program::{Decision, IfaceBinding, LoadedProgram, RULE_SLOTS, ebpf_object, read_counters, unanswered_limit};
pub use state::{IfaceState, RuleState, State};
pub use status::{IfaceStatus, NamedCounter, RuleStatus, Status, status};
pub use transaction::apply;

use crate::compile::Compiled;

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
    /// The state file could not be parsed or holds impossible values.
    #[error("state file {0}: {1}")]
    State(PathBuf, String),
    /// Nothing is loaded.
    #[error("xdpwall is not loaded (no state in {0}); run `xdpwall load` first")]
    NotLoaded(PathBuf),
    /// Links are pinned but the state file is missing or unreadable.
    #[error(
        "a filter is pinned in {} but its state file {} is missing or unreadable; `xdpwall apply RULES` adopts the pinned interfaces, `xdpwall unload --force` removes them",
        pin_dir.display(),
        state_file.display()
    )]
    Stranded {
        /// The state file.
        state_file: PathBuf,
        /// The pin directory.
        pin_dir: PathBuf,
    },
    /// The pinned maps have another layout than this build's.
    #[error(
        "the maps pinned in {} have layout version {found} (0: an older build), this build has {expected}; unload with the build that loaded them, or `xdpwall unload --force`",
        pin_dir.display()
    )]
    AbiMismatch {
        /// The pinned version.
        found: u32,
        /// This build's.
        expected: u32,
        /// Where they are pinned.
        pin_dir: PathBuf,
    },
    /// Not root, nor holding CAP_BPF and CAP_NET_ADMIN.
    #[error("xdpwall needs root (CAP_BPF and CAP_NET_ADMIN) for this command")]
    NotPrivileged,
    /// A directory another user could tamper with.
    #[error("refusing to use {}: {why}", path.display())]
    UnsafeDir {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        why: &'static str,
    },
    /// An apply failed and undoing it failed too.
    #[error("{cause}; rolling back also failed: {rollback}; the next xdpwall command retries the roll-back")]
    RollbackFailed {
        /// Why the apply failed.
        cause: Box<Error>,
        /// Why the roll-back failed.
        rollback: Box<Error>,
    },
    /// A fault injected by a test (debug builds, `XDPWALL_FAULT`).
    #[error("injected fault at `{0}`")]
    Injected(&'static str),
    /// A request that makes no sense in the current state.
    #[error("{0}")]
    Invalid(String),
}

/// Where pinned objects and the loader's state live.
#[derive(Debug, Clone)]
pub struct Paths {
    /// bpffs directory for pinned maps and links (default /sys/fs/bpf/xdpwall).
    pub pin_dir: PathBuf,
    /// Directory for the state file, journal and lock (default /run/xdpwall).
    pub run_dir: PathBuf,
}

impl Paths {
    /// The state file: which interfaces and rules are loaded (see [`State`]).
    pub fn state_file(&self) -> PathBuf {
        self.run_dir.join("state.json")
    }

    fn journal_file(&self) -> PathBuf {
        self.run_dir.join("journal.json")
    }
}

/// How to attach XDP to a new interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
    /// Notes for the operator (fallbacks, recovery, adoption, ...).
    pub notes: Vec<String>,
    /// The rule diff.
    pub diff: Diff,
    /// Interfaces whose program was swapped.
    pub swapped: Vec<String>,
    /// Wall time of the whole apply.
    pub elapsed: Duration,
}

/// The diff between the loaded ruleset (if any) and `compiled`.
pub fn diff(paths: &Paths, compiled: &Compiled) -> Result<Diff, Error> {
    privilege::require_privileges()?;
    let old = State::read(&paths.state_file())?.map(|s| s.rules).unwrap_or_default();
    Ok(plan::diff_rules(&old, &compiled.rules))
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
    if mounts
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some("/sys/fs/bpf") && l.split_whitespace().nth(2) == Some("bpf"))
    {
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

/// Removes every pin (links, programs, maps) and the pin directory.
fn remove_pins(paths: &Paths) {
    links::remove_all(paths);
    if let Ok(dir) = std::fs::read_dir(&paths.pin_dir) {
        for e in dir.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let _ = std::fs::remove_dir(paths.pin_dir.join("links"));
    let _ = std::fs::remove_dir(&paths.pin_dir);
}

/// Detaches from `ifaces` (all when empty); removes everything once none is left.
/// `force` removes every pin without needing a state file (a stranded filter).
pub fn unload(paths: &Paths, ifaces: &[String], force: bool) -> Result<Vec<String>, Error> {
    privilege::require_privileges()?;
    let _lock = privilege::lock(&paths.run_dir)?;
    if force {
        let mut gone = links::pinned_ifaces(paths);
        gone.retain(|n| ifaces.is_empty() || ifaces.contains(n));
        if ifaces.is_empty() {
            remove_pins(paths);
            privilege::remove_private(&paths.journal_file())?;
            privilege::remove_private(&paths.state_file())?;
        } else {
            for name in &gone {
                links::detach(paths, name)?;
            }
        }
        return Ok(gone);
    }
    transaction::recover(paths, &mut Vec::new())?;
    let mut state = match State::read(&paths.state_file())? {
        Some(state) => state,
        None if !links::pinned_ifaces(paths).is_empty() => {
            return Err(Error::Stranded { state_file: paths.state_file(), pin_dir: paths.pin_dir.clone() });
        }
        None => return Err(Error::NotLoaded(paths.state_file())),
    };
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
        remove_pins(paths);
        privilege::remove_private(&paths.state_file())?;
    } else {
        state.write(&paths.state_file())?;
    }
    Ok(gone.into_iter().map(|i| i.name).collect())
}
