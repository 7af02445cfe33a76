//! The loader's state on disk: which interfaces are loaded, in which mode, and which
//! rules count into which counter slots; and the journal of an apply under way.
//! Written atomically (rename) and durably; read and written only under the lock.

use std::{collections::HashSet, path::Path};

use filter_common::{ABI_VERSION, MAX_IFACES};
use serde::{Deserialize, Serialize};

use super::{Error, RULE_SLOTS, privilege};
use crate::{compile::RuleInfo, rules::Action};

/// One loaded interface.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IfaceState {
    /// Name.
    pub name: String,
    /// Kernel index at load time.
    pub ifindex: u32,
    /// `native` or `generic`.
    pub mode: String,
    /// Slot in IFACE_COUNTERS.
    pub stats_slot: u32,
}

/// One rule of the loaded ruleset.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuleState {
    /// Text, label, action, identity.
    #[serde(flatten)]
    pub info: RuleInfo,
    /// Slot in COUNTERS.
    pub counter: u32,
}

/// Everything the loader remembers between commands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    /// Layout version of the pinned maps (filter_common::ABI_VERSION).
    pub abi_version: u32,
    /// Applies since the first load.
    pub generation: u64,
    /// The ruleset file last applied.
    pub ruleset_file: Option<String>,
    /// Policy when no rule matches.
    pub default_action: Action,
    /// Loaded interfaces.
    pub interfaces: Vec<IfaceState>,
    /// Rules in order.
    pub rules: Vec<RuleState>,
}

impl State {
    /// The state, or `None` when nothing is loaded. A file that does not parse, or
    /// whose slots a valid apply could never have written, is an error: acting on it
    /// would count into the wrong slots.
    pub fn read(path: &Path) -> Result<Option<State>, Error> {
        let Some(bytes) = privilege::read_private(path)? else { return Ok(None) };
        let corrupt = |why: String| Error::State(path.to_path_buf(), why);
        let state: State = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        state.validate().map_err(corrupt)?;
        Ok(Some(state))
    }

    fn validate(&self) -> Result<(), String> {
        if self.abi_version != ABI_VERSION {
            return Err(format!(
                "written by a build with ABI {} (this one is {ABI_VERSION}); run `xdpwall unload --force` with that build's layout in mind",
                self.abi_version
            ));
        }
        let mut counters = HashSet::new();
        for r in &self.rules {
            if !RULE_SLOTS.contains(&r.counter) || !counters.insert(r.counter) {
                return Err(format!("rule `{}` has counter slot {}, out of range or shared", r.info.text, r.counter));
            }
        }
        let mut stats = HashSet::new();
        for i in &self.interfaces {
            if i.stats_slot >= MAX_IFACES || !stats.insert(i.stats_slot) {
                return Err(format!("interface {} has stats slot {}, out of range or shared", i.name, i.stats_slot));
            }
        }
        Ok(())
    }

    /// Replaces the file atomically (0600, synced).
    pub fn write(&self, path: &Path) -> Result<(), Error> {
        let json = serde_json::to_vec_pretty(self).expect("state serialises");
        privilege::write_private(path, &json)
    }
}

/// An apply under way: written before its first change to what the kernel enforces,
/// removed once the new state is written and the new programs are the pinned ones.
/// A command that finds it finishes or rolls back that apply first (`transaction`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Journal {
    /// The generation the apply makes: committed once the state file has it.
    pub generation: u64,
    /// Interfaces the apply attaches to (detached again on roll-back).
    pub attaching: Vec<String>,
    /// Nothing was loaded before: rolling back removes every pin.
    pub first_load: bool,
}

impl Journal {
    /// The journal, `None` when no apply was interrupted.
    pub fn read(path: &Path) -> Result<Option<Journal>, Error> {
        let Some(bytes) = privilege::read_private(path)? else { return Ok(None) };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| Error::State(path.to_path_buf(), e.to_string()))
    }

    /// Records the intent (0600, synced).
    pub fn write(&self, path: &Path) -> Result<(), Error> {
        privilege::write_private(path, &serde_json::to_vec(self).expect("journal serialises"))
    }
}
