//! An apply as a journaled transaction, and the recovery every command runs first.
//!
//! The steps, in order (each passes a `fault` point):
//! 1. load the new generation (program + completely filled maps): nothing enforces it;
//! 2. write the journal (its generation, the interfaces it attaches), then pin the new
//!    programs as `Next`: from here on an interrupted apply can be finished or undone;
//! 3. attach the new interfaces, then swap every kept interface's links, XDP then egress;
//! 4. write the new state file: the commit point;
//! 5. promote the `Next` programs to `Current` and remove the journal.
//!
//! A command that finds a journal rolls the apply forward when the state file already
//! has the journal's generation (every link is swapped to the new programs), and back
//! otherwise (every kept link is swapped to the `Current` programs, attached interfaces
//! are detached, `Next` is unpinned). Both are idempotent, so a crash during recovery is
//! recovered by the next command. Afterwards XDP and egress of every interface run the
//! programs the state file describes.

use std::time::Instant;

use filter_common::{ABI_VERSION, Counter, IfaceCounters, RuleEvents};

use super::{
    ApplyReport, Error, Mode, Paths, fault,
    links::{self, Hook, LinkState, Pinned},
    nic,
    plan::{NewIface, Plan},
    privilege,
    program::{self, LoadedProgram},
    state::{IfaceState, Journal, State},
};
use crate::compile::Compiled;

use filter_common::names::ABI as ABI_MAP;

/// Makes `compiled` the ruleset of every loaded interface and attaches it to `add`.
/// All or nothing: on an error, or if the process dies, the old ruleset stays (or, by
/// the next command, becomes again) the one every interface enforces.
pub fn apply(
    paths: &Paths,
    compiled: &Compiled,
    source: Option<String>,
    add: &[String],
    mode: Mode,
) -> Result<ApplyReport, Error> {
    let started = Instant::now();
    privilege::require_privileges()?;
    let _lock = privilege::lock(&paths.run_dir)?;
    super::ensure_bpffs(&paths.pin_dir)?;
    if paths.pin_dir.exists() {
        // Refused before anything in it is read, when another user could have made it.
        privilege::secure_dir(&paths.pin_dir)?;
    }
    let mut report = ApplyReport::default();
    recover(paths, &mut report.notes)?;
    check_pinned_abi(paths)?;
    let (old, adopted) = loaded_state(paths, &mut report.notes)?;
    if old.is_none() && add.is_empty() {
        return Err(Error::NotLoaded(paths.state_file()));
    }
    let counters_kept = old.is_some() && !adopted && paths.pin_dir.join(program::COUNTERS).exists();
    if old.is_some() && !adopted && !counters_kept {
        report.notes.push(format!(
            "the pinned counters ({}) were gone: every rule's counter restarts at zero",
            paths.pin_dir.join(program::COUNTERS).display()
        ));
    }
    let add: Vec<(String, u32)> = add
        .iter()
        .map(|name| {
            let ifindex = super::ifindex(name)?;
            // Before anything changes (VLAN offloads, programs): a NIC that cannot take
            // the program natively as configured says why (igb above its XDP frame limit).
            if mode != Mode::Generic
                && let Some(refusal) = nic::native_xdp_refusal(name)
            {
                return Err(Error::Invalid(refusal));
            }
            Ok((name.clone(), ifindex))
        })
        .collect::<Result<_, Error>>()?;
    let mut plan = Plan::new(old.as_ref(), compiled, &add, counters_kept)?;
    reattach_severed(paths, &mut plan, &mut report.notes)?;

    if compiled.uses(filter_common::field::VLAN) {
        for b in plan.bindings() {
            report.notes.extend(nic::keep_vlan_tags(&b.name)?);
        }
    }
    let prepared = (|| {
        privilege::secure_dir(&paths.pin_dir)?;
        let program = LoadedProgram::load(compiled, &plan.counter_slots(), &plan.bindings(), &paths.pin_dir)
            .map_err(links::on_untested_kernel)?;
        write_pinned_abi(paths)?;
        program::zero_slots::<Counter>(&paths.pin_dir, program::COUNTERS, &plan.fresh_counters)?;
        program::zero_slots::<RuleEvents>(&paths.pin_dir, filter_common::names::RULE_EVENTS, &plan.fresh_counters)?;
        let new_stats: Vec<u32> = plan.attach.iter().map(|i| i.stats_slot).collect();
        program::zero_slots::<IfaceCounters>(&paths.pin_dir, program::IFACE_COUNTERS, &new_stats)?;
        Ok(program)
    })();
    let mut program = match prepared {
        Ok(program) => program,
        Err(e) => {
            if old.is_none() {
                // A first load that did not get as far as attaching leaves nothing behind.
                super::remove_pins(paths);
            }
            return Err(e);
        }
    };
    report.diff = plan.diff.clone();

    // From here on what the kernel enforces changes: the intent goes to disk first.
    let journal = Journal {
        generation: plan.generation,
        attaching: plan.attach.iter().map(|i| i.name.clone()).collect(),
        first_load: old.is_none(),
    };
    fault::point("before the journal")?;
    journal.write(&paths.journal_file())?;
    let changed = (|| -> Result<Vec<IfaceState>, Error> {
        let mut progs = program.programs()?;
        links::pin_programs(&mut progs, paths, Pinned::Next)?;
        fault::point("next programs pinned")?;
        let mut attached = Vec::new();
        for iface in &plan.attach {
            let used = links::attach(&mut program, paths, &iface.name, iface.ifindex, mode, &mut report.notes)?;
            report.attached.push((iface.name.clone(), used.to_string()));
            attached.push(IfaceState {
                name: iface.name.clone(),
                ifindex: iface.ifindex,
                mode: used.to_string(),
                stats_slot: iface.stats_slot,
            });
            fault::point("an interface attached")?;
        }
        let mut progs = program.programs()?;
        for iface in &plan.kept {
            links::swap(&mut progs, paths, &iface.name)?;
            report.swapped.push(iface.name.clone());
            fault::point("an interface swapped")?;
        }
        Ok(attached)
    })();
    let attached = match changed {
        Ok(attached) => attached,
        Err(e) => {
            return Err(match roll_back(paths, &journal, old.as_ref()) {
                Ok(()) => e,
                Err(r) => Error::RollbackFailed { cause: Box::new(e), rollback: Box::new(r) },
            });
        }
    };

    let mut interfaces = plan.kept.clone();
    interfaces.extend(attached);
    let state = State {
        abi_version: ABI_VERSION,
        generation: plan.generation,
        ruleset_file: source,
        default_action: compiled.default_action,
        interfaces,
        rules: plan.rules,
    };
    state.write(&paths.state_file())?;
    // Committed: what is left to do can fail without undoing anything, and the next
    // command retries it.
    if let Err(e) = fault::point("state written (committed)").and_then(|()| finish(paths)) {
        report.notes.push(format!(
            "the apply is committed, but tidying up after it failed ({e}); the next command finishes it"
        ));
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// The committed apply's last steps: the new programs become `Current`, the journal goes.
fn finish(paths: &Paths) -> Result<(), Error> {
    links::promote(paths)?;
    fault::point("programs promoted")?;
    privilege::remove_private(&paths.journal_file())
}

/// Finishes or undoes an apply that a crash interrupted (see the module comment).
/// Call with the lock held.
pub fn recover(paths: &Paths, notes: &mut Vec<String>) -> Result<(), Error> {
    let Some(journal) = Journal::read(&paths.journal_file())? else { return Ok(()) };
    let state = State::read(&paths.state_file()).ok().flatten();
    match state {
        Some(state) if state.generation == journal.generation => {
            // Promote first (each hook's `Next`, where it is still pinned, becomes
            // `Current`): then `Current` is the new generation on both hooks.
            links::promote(paths)?;
            for iface in &state.interfaces {
                if matches!(links::link_state(paths, Hook::Xdp, &iface.name)?, LinkState::Attached { .. }) {
                    links::swap_to_pinned(paths, &iface.name, Pinned::Current)?;
                }
            }
            privilege::remove_private(&paths.journal_file())?;
            notes.push(format!("finished an interrupted apply (generation {})", journal.generation));
        }
        state => {
            roll_back(paths, &journal, state.as_ref())?;
            notes.push(format!(
                "rolled back an interrupted apply (it would have made generation {})",
                journal.generation
            ));
        }
    }
    Ok(())
}

/// Puts every interface of `old` back on the `Current` programs, detaches what the
/// apply attached, unpins `Next`, and removes the journal. Without a readable state
/// file, the interfaces whose links are pinned are the ones put back.
fn roll_back(paths: &Paths, journal: &Journal, old: Option<&State>) -> Result<(), Error> {
    for name in &journal.attaching {
        links::detach(paths, name)?;
    }
    let kept: Vec<String> = match old {
        Some(old) => old.interfaces.iter().map(|i| i.name.clone()).collect(),
        None => links::pinned_ifaces(paths),
    };
    for name in &kept {
        // Links that are gone or severed run nothing to swap back.
        if matches!(links::link_state(paths, Hook::Xdp, name)?, LinkState::Attached { .. }) {
            links::swap_to_pinned(paths, name, Pinned::Current)?;
        }
    }
    links::remove_next(paths)?;
    if journal.first_load {
        // A first load that did not complete leaves nothing behind.
        super::remove_pins(paths);
    }
    privilege::remove_private(&paths.journal_file())
}

/// The loaded state, and whether it was adopted from the pins because the state file
/// was missing or unreadable while links are pinned (then no rule's counter is known).
fn loaded_state(paths: &Paths, notes: &mut Vec<String>) -> Result<(Option<State>, bool), Error> {
    let why = match State::read(&paths.state_file()) {
        Ok(Some(state)) => return Ok((Some(state), false)),
        Ok(None) => "missing".to_string(),
        Err(Error::State(_, e)) => format!("unreadable ({e})"),
        Err(e) => return Err(e),
    };
    let names = links::pinned_ifaces(paths);
    if names.is_empty() {
        return Ok((None, false));
    }
    let interfaces = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let ifindex = match links::link_state(paths, Hook::Xdp, name)? {
                LinkState::Attached { ifindex, .. } => ifindex,
                _ => 0,
            };
            Ok(IfaceState { name: name.clone(), ifindex, mode: "adopted".into(), stats_slot: i as u32 })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    notes.push(format!(
        "the state file {} was {why}; adopted {} from the pins in {}: rule and interface counters restart",
        paths.state_file().display(),
        names.join(", "),
        paths.pin_dir.display()
    ));
    let state = State {
        abi_version: ABI_VERSION,
        generation: 0,
        ruleset_file: None,
        default_action: crate::rules::Action::Pass,
        interfaces,
        rules: Vec::new(),
    };
    Ok((Some(state), true))
}

/// Kept interfaces whose link is gone or severed (the interface was deleted, or deleted
/// and made anew under the same name) are attached again under their current index.
fn reattach_severed(paths: &Paths, plan: &mut Plan, notes: &mut Vec<String>) -> Result<(), Error> {
    let mut kept = Vec::new();
    for iface in std::mem::take(&mut plan.kept) {
        let now = super::ifindex(&iface.name).ok();
        let states =
            [links::link_state(paths, Hook::Xdp, &iface.name)?, links::link_state(paths, Hook::Egress, &iface.name)?];
        let healthy = states.iter().all(|s| matches!(s, LinkState::Attached { ifindex, .. } if Some(*ifindex) == now));
        if healthy {
            kept.push(iface);
            continue;
        }
        let Some(ifindex) = now else {
            return Err(Error::Invalid(format!(
                "{} no longer exists; `xdpwall unload {}` forgets it",
                iface.name, iface.name
            )));
        };
        links::detach(paths, &iface.name)?;
        notes.push(format!("{}: its link was severed (the interface was re-created); attaching again", iface.name));
        plan.attach.push(NewIface { name: iface.name, ifindex, stats_slot: iface.stats_slot });
    }
    plan.kept = kept;
    Ok(())
}

/// Refuses pinned maps of another layout: a version other than this build's, or
/// counters pinned by a build from before the version was recorded.
pub fn check_pinned_abi(paths: &Paths) -> Result<(), Error> {
    let found = match program::open_pinned(&paths.pin_dir, ABI_MAP) {
        Ok(map) => {
            let map: aya::maps::Array<_, u32> = map.try_into().map_err(|e| Error::Map(ABI_MAP, e))?;
            match map.get(&0, 0).map_err(|e| Error::Map(ABI_MAP, e))? {
                // Pinned by this layout's loader, which died before recording it.
                0 => return Ok(()),
                v => v,
            }
        }
        Err(_) if paths.pin_dir.join(program::COUNTERS).exists() => 0,
        Err(_) => return Ok(()),
    };
    if found == ABI_VERSION {
        return Ok(());
    }
    Err(Error::AbiMismatch { found, expected: ABI_VERSION, pin_dir: paths.pin_dir.clone() })
}

fn write_pinned_abi(paths: &Paths) -> Result<(), Error> {
    let map = program::open_pinned(&paths.pin_dir, ABI_MAP)?;
    let mut map: aya::maps::Array<_, u32> = map.try_into().map_err(|e| Error::Map(ABI_MAP, e))?;
    map.set(0, ABI_VERSION, 0).map_err(|e| Error::Map(ABI_MAP, e))
}
