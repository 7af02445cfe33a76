//! The loader's state on disk: which interfaces are loaded, in which mode, and which
//! rules count into which counter slots. Written atomically (rename) after every
//! change; guarded by a lock so two commands never interleave.

use std::{
    fs::File,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::Error;
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
    /// The state, or `None` when nothing is loaded.
    pub fn read(path: &Path) -> Result<Option<State>, Error> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::State(path.to_path_buf(), e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Io(format!("reading {}", path.display()), e)),
        }
    }

    /// Writes to a temporary file and renames it over `path`.
    pub fn write(&self, path: &Path) -> Result<(), Error> {
        let tmp = path.with_extension("json.tmp");
        let json = serde_json::to_vec_pretty(self).expect("state serialises");
        std::fs::write(&tmp, json).map_err(|e| Error::Io(format!("writing {}", tmp.display()), e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::Io(format!("renaming to {}", path.display()), e))
    }
}

/// An exclusive lock on the run directory, held until dropped.
pub fn lock(run_dir: &Path) -> Result<File, Error> {
    std::fs::create_dir_all(run_dir).map_err(|e| Error::Io(format!("creating {}", run_dir.display()), e))?;
    let path: PathBuf = run_dir.join("lock");
    let file = File::create(&path).map_err(|e| Error::Io(format!("opening {}", path.display()), e))?;
    file.lock().map_err(|e| Error::Io(format!("locking {}", path.display()), e))?;
    Ok(file)
}
