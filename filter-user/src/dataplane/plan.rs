//! The pure part of an apply: from the loaded state and a compiled ruleset, which
//! counter slot each rule counts into, which stats slot each new interface gets, and
//! what changes. No kernel, no files: unit-tested here, carried out by `transaction`.

use std::collections::{HashMap, HashSet};

use filter_common::MAX_IFACES;
use serde::Serialize;

use super::{
    Error, IfaceBinding, RULE_SLOTS,
    state::{IfaceState, RuleState, State},
};
use crate::compile::{Compiled, RuleInfo};

/// Rules added, removed and kept between two rulesets (by identity).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Diff {
    /// In the new ruleset only.
    pub added: Vec<String>,
    /// In the old ruleset only.
    pub removed: Vec<String>,
    /// In both (counters carry over).
    pub kept: usize,
}

/// The rule diff between `old` and `new`, by identity (label, else text).
pub fn diff_rules(old: &[RuleState], new: &[RuleInfo]) -> Diff {
    let old_keys: HashSet<&str> = old.iter().map(|r| r.info.key.as_str()).collect();
    let new_keys: HashSet<&str> = new.iter().map(|r| r.key.as_str()).collect();
    Diff {
        added: new.iter().filter(|r| !old_keys.contains(r.key.as_str())).map(|r| r.text.clone()).collect(),
        removed: old.iter().filter(|r| !new_keys.contains(r.info.key.as_str())).map(|r| r.info.text.clone()).collect(),
        kept: new.iter().filter(|r| old_keys.contains(r.key.as_str())).count(),
    }
}

/// An interface to attach: its name, current index and stats slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIface {
    /// Name.
    pub name: String,
    /// Kernel index now.
    pub ifindex: u32,
    /// Slot in IFACE_COUNTERS (zeroed before use).
    pub stats_slot: u32,
}

/// What an apply will do.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Interfaces that keep their links and get the new program swapped in.
    pub kept: Vec<IfaceState>,
    /// Interfaces to attach.
    pub attach: Vec<NewIface>,
    /// The new ruleset's rules with their counter slots, in order.
    pub rules: Vec<RuleState>,
    /// Counter slots of new rules: zeroed before the program that counts into them runs.
    pub fresh_counters: Vec<u32>,
    /// The rule diff.
    pub diff: Diff,
    /// The generation the apply makes.
    pub generation: u64,
}

/// Lowest free slots: `n` values of `range` in none of `taken`.
fn free_slots(range: std::ops::Range<u32>, taken: &HashSet<u32>, n: usize) -> Vec<u32> {
    range.filter(|s| !taken.contains(s)).take(n).collect()
}

impl Plan {
    /// Plans applying `compiled` over `old` (nothing loaded: `None`), attaching to
    /// `add` (name, ifindex). With `counters_kept` false (the pinned counters were
    /// lost), every rule gets a fresh, zeroed slot.
    pub fn new(
        old: Option<&State>,
        compiled: &Compiled,
        add: &[(String, u32)],
        counters_kept: bool,
    ) -> Result<Plan, Error> {
        let kept: Vec<IfaceState> = old.map(|s| s.interfaces.clone()).unwrap_or_default();
        let old_rules: &[RuleState] = old.map_or(&[], |s| &s.rules);

        let mut taken: HashSet<u32> = kept.iter().map(|i| i.stats_slot).collect();
        let mut attach: Vec<NewIface> = Vec::new();
        for (name, ifindex) in add {
            if kept.iter().any(|i| &i.name == name) || attach.iter().any(|i| &i.name == name) {
                return Err(Error::Invalid(format!(
                    "{name} is already loaded; use `xdpwall apply` to change its rules"
                )));
            }
            let slot = free_slots(0..MAX_IFACES, &taken, 1)
                .pop()
                .ok_or_else(|| Error::Invalid(format!("at most {MAX_IFACES} interfaces can be loaded")))?;
            taken.insert(slot);
            attach.push(NewIface { name: name.clone(), ifindex: *ifindex, stats_slot: slot });
        }

        // Kept rules keep their slots; new rules get slots that neither ruleset uses,
        // so nothing counts into a slot twice while both generations run.
        let old_slots: HashMap<&str, u32> = if counters_kept {
            old_rules.iter().map(|r| (r.info.key.as_str(), r.counter)).collect()
        } else {
            HashMap::new()
        };
        let taken: HashSet<u32> = old_rules.iter().map(|r| r.counter).collect();
        let fresh_needed = compiled.rules.iter().filter(|r| !old_slots.contains_key(r.key.as_str())).count();
        let mut fresh = free_slots(RULE_SLOTS, &taken, fresh_needed).into_iter();
        let mut fresh_counters = Vec::new();
        let rules = compiled
            .rules
            .iter()
            .map(|info| {
                let counter = old_slots.get(info.key.as_str()).copied().unwrap_or_else(|| {
                    let s = fresh.next().expect("COUNTER_SLOTS holds two rulesets");
                    fresh_counters.push(s);
                    s
                });
                RuleState { info: info.clone(), counter }
            })
            .collect();
        Ok(Plan {
            diff: diff_rules(if counters_kept { old_rules } else { &[] }, &compiled.rules),
            kept,
            attach,
            rules,
            fresh_counters,
            generation: old.map_or(1, |s| s.generation + 1),
        })
    }

    /// Counter slot of each rule, in order.
    pub fn counter_slots(&self) -> Vec<u32> {
        self.rules.iter().map(|r| r.counter).collect()
    }

    /// Every interface the new program runs on, with its `IFACES` entry.
    pub fn bindings(&self) -> Vec<IfaceBinding> {
        let kept = self.kept.iter().map(|i| (&i.name, i.ifindex, i.stats_slot));
        let new = self.attach.iter().map(|i| (&i.name, i.ifindex, i.stats_slot));
        kept.chain(new)
            .map(|(name, ifindex, stats_slot)| IfaceBinding { name: name.clone(), ifindex, stats_slot })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Action;

    fn compiled(src: &str) -> Compiled {
        let rs = crate::rules::parse_str(src, "plan.conf", std::path::Path::new(".")).unwrap();
        crate::compile::compile(&rs).unwrap()
    }

    fn state(plan: &Plan) -> State {
        State {
            abi_version: filter_common::ABI_VERSION,
            generation: plan.generation,
            ruleset_file: None,
            default_action: Action::Pass,
            interfaces: plan
                .kept
                .iter()
                .cloned()
                .chain(plan.attach.iter().map(|i| IfaceState {
                    name: i.name.clone(),
                    ifindex: i.ifindex,
                    mode: "native".into(),
                    stats_slot: i.stats_slot,
                }))
                .collect(),
            rules: plan.rules.clone(),
        }
    }

    #[test]
    fn kept_rules_keep_their_slots_and_new_ones_get_unused_slots() {
        let first = Plan::new(
            None,
            &compiled("pass in proto udp\nblock in proto tcp label \"t\"\n"),
            &[("eth0".into(), 3)],
            true,
        )
        .unwrap();
        assert_eq!(first.generation, 1);
        assert_eq!(first.fresh_counters, first.counter_slots(), "every rule of a first load is fresh");
        assert_eq!(first.attach, [NewIface { name: "eth0".into(), ifindex: 3, stats_slot: 0 }]);
        let old = state(&first);

        let second = Plan::new(
            Some(&old),
            &compiled("block in proto tcp from 10.0.0.0/8 label \"t\"\npass in proto icmp\n"),
            &[("eth1".into(), 4)],
            true,
        )
        .unwrap();
        assert_eq!(second.generation, 2);
        assert_eq!(second.rules[0].counter, old.rules[1].counter, "same label, same slot");
        let old_slots: Vec<u32> = old.rules.iter().map(|r| r.counter).collect();
        assert!(
            !old_slots.contains(&second.rules[1].counter),
            "a new rule never counts into a slot the old ruleset uses"
        );
        assert_eq!(second.fresh_counters, [second.rules[1].counter]);
        assert_eq!(second.attach[0].stats_slot, 1, "the next free stats slot");
        assert_eq!(
            second.diff,
            Diff { added: vec!["pass in proto icmp".into()], removed: vec!["pass in proto udp".into()], kept: 1 }
        );
        assert_eq!(second.bindings().len(), 2);
    }

    #[test]
    fn lost_counters_make_every_rule_fresh() {
        let first = Plan::new(None, &compiled("pass in proto udp\n"), &[("eth0".into(), 3)], true).unwrap();
        let again = Plan::new(Some(&state(&first)), &compiled("pass in proto udp\n"), &[], false).unwrap();
        assert_eq!(again.fresh_counters.len(), 1);
        assert_eq!(again.diff.kept, 0, "nothing is said to be kept when the counters are gone");
    }

    #[test]
    fn an_interface_is_attached_once() {
        let first = Plan::new(None, &compiled("pass in proto udp\n"), &[("eth0".into(), 3)], true).unwrap();
        let e =
            Plan::new(Some(&state(&first)), &compiled("pass in proto udp\n"), &[("eth0".into(), 3)], true).unwrap_err();
        assert_eq!(e.to_string(), "eth0 is already loaded; use `xdpwall apply` to change its rules");
        let e =
            Plan::new(None, &compiled("pass in proto udp\n"), &[("a".into(), 3), ("a".into(), 3)], true).unwrap_err();
        assert!(e.to_string().starts_with("a is already loaded"));
    }
}
