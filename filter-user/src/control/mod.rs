//! The control plane that the CLI and the daemon share: every change of the ruleset
//! goes through [`apply`], which adds to the data plane's atomic apply
//!
//! - a record of the ruleset in force (`record`), so that a change can be undone;
//! - commit-confirm (`confirm`): an apply that rolls itself back unless confirmed;
//! - anti-lockout (`lockout`): a ruleset that would block the connection the change
//!   came in on is refused unless forced.
//!
//! Its steps are serialised by a lock of their own in the run directory
//! ([`CONTROL_LOCK`]), taken around the data plane's apply (which takes the data
//! plane's lock for the apply alone), so CLI commands and the daemon never interleave a
//! change, and read-only commands keep working beside them.

mod confirm;
mod lockout;
mod record;

use std::time::Duration;

pub use confirm::{Pending, confirm, pending, rollback_if_due};
pub use lockout::Connection;
pub use record::Record;

use crate::{
    compile,
    dataplane::{self, ApplyReport, Diff, Mode, Paths, privilege},
    rules::{RulesError, Ruleset},
};

/// The control plane's lock file in the run directory.
pub const CONTROL_LOCK: &str = "control.lock";

/// Longest commit-confirm window: a pending change is meant to be confirmed by the
/// person who made it, within minutes.
pub const MAX_CONFIRM: Duration = Duration::from_secs(3600);

/// What can stop a change.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The ruleset is wrong (where and what).
    #[error(transparent)]
    Rules(#[from] RulesError),
    /// The data plane refused or failed.
    #[error(transparent)]
    Dataplane(#[from] dataplane::Error),
    /// The ruleset would cut off the connection the change came in on.
    #[error("{0}")]
    Lockout(String),
    /// A commit-confirm change waits for its confirmation.
    #[error("{0}")]
    Pending(String),
    /// A request that makes no sense (no record to roll back to, a bad window).
    #[error("{0}")]
    Invalid(String),
}

/// One change of the ruleset.
#[derive(Debug, Clone)]
pub struct Change<'a> {
    /// The new ruleset.
    pub ruleset: &'a Ruleset,
    /// Where it came from (a file, `api`), shown by status.
    pub source: Option<String>,
    /// Interfaces to attach (load); empty for an apply.
    pub add: &'a [String],
    /// How to attach them.
    pub mode: Mode,
    /// Roll back unless confirmed within this long.
    pub confirm: Option<Duration>,
    /// The connection to keep open (the API request's, the CLI's SSH session).
    pub protect: Option<Connection>,
    /// Apply even if `protect` would be blocked.
    pub force: bool,
    /// Who asks, for the change log and the pending record.
    pub who: String,
}

/// What a change did.
#[derive(Debug)]
pub struct Applied {
    /// The data plane's report.
    pub report: ApplyReport,
    /// The generation now in force.
    pub generation: u64,
    /// When a commit-confirm change rolls back unless confirmed (Unix seconds).
    pub confirm_deadline: Option<u64>,
}

/// Resolves `ruleset`'s interface addresses (`(em0)`, `self`, ...) against this host as it
/// is now, and compiles the result; errors of the ruleset as a whole name `source`. The
/// ruleset as written is what gets recorded, so every apply (a roll-back too, or the
/// same ruleset again after the host's addresses changed) resolves afresh.
fn compile(ruleset: &Ruleset, source: &str) -> Result<(Ruleset, compile::Compiled), RulesError> {
    let (resolved, report) = crate::host::resolve(ruleset)
        .map_err(|e| RulesError::whole_file(source, format!("cannot read this host's interface addresses: {e}")))?;
    for warning in report.iter().flat_map(|r| &r.warnings) {
        tracing::warn!(source, "{warning}");
    }
    let compiled = compile::compile(&resolved).map_err(|e| RulesError::whole_file(source, e.to_string()))?;
    Ok((resolved, compiled))
}

/// The rule diff between the ruleset in force and `ruleset`, and what anti-lockout
/// would say about it; changes nothing.
pub fn diff(
    paths: &Paths,
    ruleset: &Ruleset,
    source: &str,
    protect: Option<&Connection>,
) -> Result<(Diff, Option<String>), ControlError> {
    let (resolved, compiled) = compile(ruleset, source)?;
    let diff = dataplane::diff(paths, &compiled)?;
    let lockout = match protect {
        Some(conn) => lockout::check(paths, &resolved, conn)?,
        None => None,
    };
    Ok((diff, lockout))
}

/// Applies `change`: refused while a commit-confirm change is pending, and when it
/// would block the connection to protect (unless forced). With `confirm`, the ruleset in
/// force is written down first, so the roll-back survives this process.
pub fn apply(paths: &Paths, change: &Change<'_>) -> Result<Applied, ControlError> {
    let source = change.source.clone().unwrap_or_else(|| "ruleset".into());
    let (resolved, compiled) = compile(change.ruleset, &source)?;
    privilege::require_privileges()?;
    let _lock = privilege::lock_named(&paths.run_dir, CONTROL_LOCK)?;
    if let Some(p) = confirm::read(paths)? {
        return Err(ControlError::Pending(format!(
            "a change by {} waits for confirmation (it rolls back in {} s): confirm it (`xdpwall confirm`, POST /v1/ruleset/confirm) or let it roll back first",
            p.who,
            p.deadline.saturating_sub(confirm::now())
        )));
    }
    if let Some(conn) = &change.protect
        && let Some(why) = lockout::check(paths, &resolved, conn)?
    {
        if !change.force {
            return Err(ControlError::Lockout(format!("{why}; refused (force it to apply anyway)")));
        }
        tracing::warn!(who = %change.who, "anti-lockout overridden: {why}");
    }
    let pending = match change.confirm {
        None => None,
        Some(window) => {
            if window.is_zero() || window > MAX_CONFIRM {
                return Err(ControlError::Invalid(format!(
                    "the confirm window must be 1 to {} seconds",
                    MAX_CONFIRM.as_secs()
                )));
            }
            let previous = record::current(paths)?.ok_or_else(|| {
                ControlError::Invalid(
                    "nothing to roll back to: no record of the ruleset in force (it was loaded by an older xdpwall, or nothing is loaded); apply once without confirm".into(),
                )
            })?;
            let pending = Pending { deadline: confirm::now() + window.as_secs(), who: change.who.clone(), previous };
            confirm::write(paths, &pending)?;
            Some(pending)
        }
    };
    let report = match dataplane::apply(paths, &compiled, change.source.clone(), change.add, change.mode) {
        Ok(report) => report,
        Err(e) => {
            if pending.is_some() {
                confirm::remove(paths)?;
            }
            return Err(e.into());
        }
    };
    let generation = record::write(paths, change.source.clone(), change.ruleset)?;
    Ok(Applied { report, generation, confirm_deadline: pending.map(|p| p.deadline) })
}
