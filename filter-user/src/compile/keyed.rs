//! Fields looked up in an array by a small integer key (port, protocol, flags, ...).

use filter_common::RuleBitmap;

use super::classes::Classes;

/// An array field as the data plane stores it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyedTable {
    /// Class of every key not in `entries`.
    pub default_class: u32,
    /// `(key, class)`, sorted by key.
    pub entries: Vec<(u32, u32)>,
}

impl KeyedTable {
    /// The class of `key`.
    pub fn class_of(&self, key: u32) -> u32 {
        match self.entries.binary_search_by_key(&key, |&(k, _)| k) {
            Ok(i) => self.entries[i].1,
            Err(_) => self.default_class,
        }
    }
}

/// Per rule, the inclusive key ranges it accepts (`None`: every key, including the
/// "absent" key at the end of the domain).
pub struct KeyRanges {
    pub conds: Vec<Option<Vec<(u32, u32)>>>,
    /// Keys are `0..domain`.
    pub domain: u32,
}

impl KeyRanges {
    /// The field's table: the most common class as the default, and the keys whose
    /// class differs from it. Keeps the maps the loader writes small.
    pub fn classify(&self, classes: &mut Classes) -> KeyedTable {
        let all = self.class_per_key(classes);
        let mut counts: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
        for c in &all {
            *counts.entry(*c).or_default() += 1;
        }
        // Ties go to the lower class id, so output is deterministic.
        let default_class = counts.into_iter().max_by_key(|&(c, n)| (n, std::cmp::Reverse(c))).map_or(0, |(c, _)| c);
        let entries =
            all.into_iter().enumerate().filter(|&(_, c)| c != default_class).map(|(k, c)| (k as u32, c)).collect();
        KeyedTable { default_class, entries }
    }

    /// Class of every key, by a sweep over range boundaries: O(domain + ranges).
    fn class_per_key(&self, classes: &mut Classes) -> Vec<u32> {
        let n = self.domain as usize;
        // starts[k] / ends[k]: (rule) whose range starts at k / ends just before k.
        let mut events: Vec<(u32, bool, usize)> = Vec::new();
        let mut current = RuleBitmap::EMPTY;
        // A rule's ranges may overlap each other: count cover depth per rule.
        let mut depth = vec![0u32; self.conds.len()];
        for (rule, cond) in self.conds.iter().enumerate() {
            match cond {
                None => current.set(rule),
                Some(ranges) => {
                    for &(lo, hi) in ranges {
                        events.push((lo, true, rule));
                        events.push((hi + 1, false, rule));
                    }
                }
            }
        }
        events.sort_unstable();
        let mut out = Vec::with_capacity(n);
        let mut next = 0;
        let mut class = classes.intern(&current);
        for key in 0..self.domain {
            let mut changed = false;
            while next < events.len() && events[next].0 == key {
                let (_, start, rule) = events[next];
                if start {
                    depth[rule] += 1;
                    current.set(rule);
                } else {
                    depth[rule] -= 1;
                    if depth[rule] == 0 {
                        current.clear(rule);
                    }
                }
                changed = true;
                next += 1;
            }
            if changed {
                class = classes.intern(&current);
            }
            out.push(class);
        }
        out
    }
}
