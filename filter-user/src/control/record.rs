//! The ruleset in force, as the control plane applied it (`ruleset.json` in the run
//! directory, 0600): what a commit-confirm change rolls back to, and what
//! `GET /v1/ruleset` returns. Tables are held inline, so a roll-back reads no file.
//!
//! The record names the generation it belongs to; a record of another generation than
//! the state file's (an apply by something that does not write it) is not used.

use serde::{Deserialize, Serialize};

use crate::{
    dataplane::{self, Paths, State, privilege},
    rules::Ruleset,
};

/// The record file in the run directory.
const RECORD_FILE: &str = "ruleset.json";

/// A ruleset and the generation it made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// The generation (the state file's) this ruleset is in force at.
    pub generation: u64,
    /// Where it came from.
    pub source: Option<String>,
    /// The ruleset, tables inline.
    pub ruleset: Ruleset,
}

impl Record {
    /// The record of the ruleset in force, `None` when there is none or it is stale.
    pub fn current(paths: &Paths) -> Result<Option<Record>, dataplane::Error> {
        current(paths)
    }
}

pub(super) fn current(paths: &Paths) -> Result<Option<Record>, dataplane::Error> {
    let Some(state) = State::read(&paths.state_file())? else { return Ok(None) };
    let path = paths.run_dir.join(RECORD_FILE);
    let Some(bytes) = privilege::read_private(&path)? else { return Ok(None) };
    let record: Record =
        serde_json::from_slice(&bytes).map_err(|e| dataplane::Error::State(path.clone(), e.to_string()))?;
    Ok((record.generation == state.generation).then_some(record))
}

/// Records `ruleset` as the one in force at the state file's generation; returns it.
pub(super) fn write(paths: &Paths, source: Option<String>, ruleset: &Ruleset) -> Result<u64, dataplane::Error> {
    let generation = State::read(&paths.state_file())?.map_or(0, |s| s.generation);
    let record = Record { generation, source, ruleset: ruleset.clone() };
    let json = serde_json::to_vec(&record).expect("a ruleset serialises");
    privilege::write_private(&paths.run_dir.join(RECORD_FILE), &json)?;
    Ok(generation)
}
