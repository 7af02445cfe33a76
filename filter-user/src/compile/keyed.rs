//! Fields looked up in an array by a small integer key (port, protocol, flags, ...).

use filter_common::RuleBitmap;

use super::classes::Classes;

/// Per rule, the inclusive key ranges it accepts (`None`: every key, including the
/// "absent" key at the end of the domain).
pub struct KeyRanges {
    pub conds: Vec<Option<Vec<(u32, u32)>>>,
    /// Keys are `0..domain`.
    pub domain: u32,
}

impl KeyRanges {
    /// Class of every key, by a sweep over range boundaries: O(domain + ranges).
    pub fn classify(&self, classes: &mut Classes) -> Vec<u32> {
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
