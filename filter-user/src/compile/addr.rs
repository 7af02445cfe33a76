//! Address fields (source, destination): prefixes from rules and tables -> longest-
//! prefix-match entries, which `lookup` turns into the structures the program searches.
//!
//! A packet's address gets the class of its longest matching prefix. So each prefix's
//! class must account for every shorter prefix containing it: a /16 inside a /8
//! satisfies the /8's rules too.

use std::collections::BTreeMap;

use filter_common::RuleBitmap;
use ipnet::IpNet;

use super::classes::Classes;
use super::lookup::{AddrLookup, LpmEntry};
use crate::rules::{AddrItem, AddrMatch, Table};

/// One address field's conditions, split by family.
pub struct AddrField {
    /// Rules without a condition on this field.
    any: RuleBitmap,
    /// Rules whose condition is `!list`.
    negated: RuleBitmap,
    v4: Vec<(u128, u8, usize)>,
    v6: Vec<(u128, u8, usize)>,
    constrained: bool,
}

impl AddrField {
    pub fn new<'a>(conds: impl Iterator<Item = &'a AddrMatch>, tables: &BTreeMap<String, Table>) -> Self {
        let mut f = AddrField {
            any: RuleBitmap::EMPTY,
            negated: RuleBitmap::EMPTY,
            v4: Vec::new(),
            v6: Vec::new(),
            constrained: false,
        };
        for (rule, cond) in conds.enumerate() {
            let (negated, items) = match cond {
                AddrMatch::Any => {
                    f.any.set(rule);
                    continue;
                }
                AddrMatch::List { negated, items } => (*negated, items),
            };
            f.constrained = true;
            if negated {
                f.negated.set(rule);
            }
            for item in items {
                match item {
                    AddrItem::Net(net) => f.push(*net, rule),
                    // The parser has checked that every referenced table exists.
                    AddrItem::Table(name) => {
                        for net in tables.get(name).map(|t| t.entries.as_slice()).unwrap_or(&[]) {
                            f.push(*net, rule);
                        }
                    }
                }
            }
        }
        f
    }

    fn push(&mut self, net: IpNet, rule: usize) {
        match net {
            IpNet::V4(n) => self.v4.push(((n.network().to_bits() as u128) << 96, n.prefix_len(), rule)),
            IpNet::V6(n) => self.v6.push((n.network().to_bits(), n.prefix_len(), rule)),
        }
    }

    /// Whether some rule constrains this field (even with an empty table).
    pub fn used(&self) -> bool {
        self.constrained
    }

    /// The field's lookup structures.
    pub fn classify(self, rule_count: usize, classes: &mut Classes) -> AddrLookup {
        let mut positive = RuleBitmap::EMPTY;
        for r in 0..rule_count {
            if !self.any.get(r) && !self.negated.get(r) {
                positive.set(r);
            }
        }
        let sets = Sets { any: self.any, negated: self.negated, positive };
        let v4 = sets.classify(self.v4, classes);
        let v6 = sets.classify(self.v6, classes);
        AddrLookup::build(v4, v6)
    }
}

struct Sets {
    any: RuleBitmap,
    negated: RuleBitmap,
    positive: RuleBitmap,
}

/// Whether prefix `(a, alen)` contains `(b, blen)` (addresses left-aligned in u128).
fn contains(a: u128, alen: u8, b: u128, blen: u8) -> bool {
    alen <= blen && (alen == 0 || (a ^ b) >> (128 - alen as u32) == 0)
}

impl Sets {
    /// The rules an address satisfies when `member` are the rules listing one of its
    /// containing prefixes.
    fn satisfied(&self, member: &RuleBitmap) -> RuleBitmap {
        let mut out = RuleBitmap::EMPTY;
        for w in 0..out.words.len() {
            out.words[w] = self.any.words[w]
                | (self.positive.words[w] & member.words[w])
                | (self.negated.words[w] & !member.words[w]);
        }
        out
    }

    /// `(prefix, len, class)` entries for one family, always including the /0 root.
    /// A prefix whose class equals its nearest listed ancestor's is left out: the LPM
    /// lookup falls back to that ancestor with the same result.
    fn classify(&self, mut entries: Vec<(u128, u8, usize)>, classes: &mut Classes) -> Vec<LpmEntry> {
        // Ancestors sort before descendants: their address is the same or smaller
        // (host bits cleared) and, at the same address, their length is shorter.
        entries.sort_unstable();
        let root_class = classes.intern(&self.satisfied(&RuleBitmap::EMPTY));
        // (prefix, len, member rules, class) of the current chain of ancestors.
        let mut stack: Vec<(u128, u8, RuleBitmap, u32)> = vec![(0, 0, RuleBitmap::EMPTY, root_class)];
        let mut out = Vec::new();
        let mut i = 0;
        while i < entries.len() {
            let (a, len, _) = entries[i];
            while stack.len() > 1 {
                let &(sa, slen, _, _) = stack.last().expect("non-empty");
                if contains(sa, slen, a, len) {
                    break;
                }
                stack.pop();
            }
            let top = stack.last().expect("root never popped");
            let mut member = top.2;
            // Every rule listing this same prefix.
            while i < entries.len() && entries[i].0 == a && entries[i].1 == len {
                member.set(entries[i].2);
                i += 1;
            }
            let class = classes.intern(&self.satisfied(&member));
            if len == 0 {
                // The root itself is listed (0.0.0.0/0 or ::/0).
                stack[0] = (0, 0, member, class);
            } else {
                if class != top.3 {
                    out.push((a, len, class));
                }
                stack.push((a, len, member, class));
            }
        }
        out.push((0, 0, stack[0].3));
        out
    }
}
