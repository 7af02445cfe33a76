//! Commit-confirm: a change that rolls back to the ruleset before it unless confirmed
//! in time.
//!
//! The pending roll-back is journaled (`confirm.json` in the run directory, 0600,
//! written before the change is applied) with its deadline in wall-clock seconds and
//! the previous ruleset inline, so it outlives the process that made the change: the
//! daemon checks it every second (also after a restart), `xdpwall apply --confirm`
//! leaves a detached timer process behind, and both roll back through
//! [`rollback_if_due`], which does it once, under the control lock.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{CONTROL_LOCK, ControlError, Record, compile};
use crate::dataplane::{self, ApplyReport, Mode, Paths, privilege};

/// The journal file in the run directory.
const PENDING_FILE: &str = "confirm.json";

/// A change waiting for its confirmation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pending {
    /// Roll back at this time (Unix seconds) unless confirmed.
    pub deadline: u64,
    /// Who made the change.
    pub who: String,
    /// The ruleset to roll back to.
    pub previous: Record,
}

/// Now, in Unix seconds.
pub(super) fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

pub(super) fn read(paths: &Paths) -> Result<Option<Pending>, dataplane::Error> {
    let path = paths.run_dir.join(PENDING_FILE);
    let Some(bytes) = privilege::read_private(&path)? else { return Ok(None) };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| dataplane::Error::State(path, e.to_string()))
}

pub(super) fn write(paths: &Paths, pending: &Pending) -> Result<(), dataplane::Error> {
    privilege::write_private(&paths.run_dir.join(PENDING_FILE), &serde_json::to_vec(pending).expect("serialises"))
}

pub(super) fn remove(paths: &Paths) -> Result<(), dataplane::Error> {
    privilege::remove_private(&paths.run_dir.join(PENDING_FILE))
}

/// The change waiting for confirmation, if any.
pub fn pending(paths: &Paths) -> Result<Option<Pending>, dataplane::Error> {
    read(paths)
}

/// Confirms the pending change: it stays. Returns it, `None` when nothing was pending.
pub fn confirm(paths: &Paths) -> Result<Option<Pending>, ControlError> {
    privilege::require_privileges()?;
    let _lock = privilege::lock_named(&paths.run_dir, CONTROL_LOCK)?;
    let pending = read(paths)?;
    if pending.is_some() {
        remove(paths)?;
    }
    Ok(pending)
}

/// Rolls the pending change back when its deadline has passed (at `now`, Unix
/// seconds): the previous ruleset is applied on every loaded interface and becomes the
/// recorded one. Returns what was rolled back and the apply's report.
pub fn rollback_if_due(paths: &Paths, now: u64) -> Result<Option<(Pending, ApplyReport)>, ControlError> {
    // Cheap and lock-free first: the daemon asks every second.
    match read(paths)? {
        Some(p) if p.deadline <= now => {}
        _ => return Ok(None),
    }
    privilege::require_privileges()?;
    let _lock = privilege::lock_named(&paths.run_dir, CONTROL_LOCK)?;
    let Some(pending) = read(paths)?.filter(|p| p.deadline <= now) else { return Ok(None) };
    let previous = &pending.previous;
    let source = previous.source.clone().unwrap_or_else(|| "ruleset".into());
    let (_, compiled) = compile(&previous.ruleset, &source)?;
    let report = match dataplane::apply(paths, &compiled, previous.source.clone(), &[], Mode::Auto) {
        Ok(report) => report,
        // Unloaded meanwhile: there is nothing left to roll back.
        Err(dataplane::Error::NotLoaded(_)) => {
            remove(paths)?;
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    super::record::write(paths, previous.source.clone(), &previous.ruleset)?;
    remove(paths)?;
    Ok(Some((pending, report)))
}
