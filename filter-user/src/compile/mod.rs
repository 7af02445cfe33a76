//! Ruleset -> the classifier's tables. Pure: no kernel, no I/O, so it is unit-tested
//! on its own and its output is what the data plane loads.
//!
//! Each field maps a packet's key (a port, a prefix, ...) to an equivalence class: the
//! set of rules the key satisfies, stored once in `bitmaps`. The XDP program ANDs the
//! classes of all used fields; the lowest set bit is the first matching rule.
//!
//! The bits are the rules in deciding order ([`deciding_order`]), not in file order:
//! the matching `quick` rules first, in file order, then the other rules from the last
//! to the first, so that the classifier's first match is pf's answer (the first
//! matching `quick` rule, else the last matching rule). Counters, rule numbers and
//! `status` keep the file's order: [`Compiled::order`] maps bits back to rules.

mod addr;
mod classes;
mod keyed;
mod lookup;

use std::collections::HashMap;

use filter_common::{ICMP_NONE, MAX_RULES, PORT_NONE, PROTO_KEYS, RuleBitmap, TCP_FLAGS_NONE, VLAN_NONE, field};
use serde::{Deserialize, Serialize};

use crate::rules::{Action, BlockMode, BlockPolicy, Direction, Family, PortRange, Rule, Ruleset};
use classes::Classes;
use keyed::KeyRanges;
pub use keyed::KeyedTable;
pub use lookup::{AddrLookup, V6_HASH_MIN_PREFIXES};

/// Most entries one table may hold.
pub const MAX_TABLE_ENTRIES: usize = 1_000_000;
/// Most kernel memory the classifier maps of one ruleset may take (an apply briefly
/// holds two rulesets).
pub const MAX_MAP_MEMORY: u64 = 1 << 30;

/// A limit of the data plane that a ruleset exceeds.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// More rules than one bitmap holds.
    #[error("the ruleset has {count} rules; the limit is {limit}")]
    TooManyRules {
        /// Rules in the ruleset.
        count: usize,
        /// [`MAX_RULES`].
        limit: usize,
    },
    /// A table larger than [`MAX_TABLE_ENTRIES`].
    #[error("table <{table}> has {count} entries; the limit is {limit}")]
    TooManyEntries {
        /// The table.
        table: String,
        /// Its entries.
        count: usize,
        /// [`MAX_TABLE_ENTRIES`].
        limit: usize,
    },
    /// Rate limits in a ruleset too large for the kernel's verifier to walk the rated
    /// classifier's loop ([`filter_common::MAX_RATED_STEPS`]).
    #[error(
        "the ruleset has {rules} rules ({words} words of 64) and {rated} rules with a rate limit or a dynamic table \
         as their source; with such rules, words and those rules together may be at most {limit} (the kernel's \
         verifier walks one step for each): at most {} rules beside {rated} such rules",
        (.limit - .rated) as usize * 64
    )]
    TooManyRatedSteps {
        /// Rules in the ruleset.
        rules: usize,
        /// Its 64-rule words.
        words: u32,
        /// Rules with a rate limit or a dynamic-table source.
        rated: u32,
        /// [`filter_common::MAX_RATED_STEPS`].
        limit: u32,
    },
    /// The classifier's maps would take more than [`MAX_MAP_MEMORY`].
    #[error("the ruleset needs about {} MiB of map memory; the limit is {} MiB", .bytes >> 20, .limit >> 20)]
    TooMuchMemory {
        /// Estimated bytes.
        bytes: u64,
        /// [`MAX_MAP_MEMORY`].
        limit: u64,
    },
}

/// What a rule does, as the loader keeps it (for counters, status and diffs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleInfo {
    /// The rule as written.
    pub text: String,
    /// `label "..."`, if any.
    pub label: Option<String>,
    /// pass or block.
    pub action: Action,
    /// Identity for carrying counters over an apply: the label, else the text, with
    /// `#N` appended for the N-th repeat of the same identity.
    pub key: String,
    /// `keep state`.
    #[serde(default)]
    pub keep_state: bool,
    /// `rate ...` / `max-pkt-rate ...`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<crate::rules::Rate>,
    /// `log`.
    #[serde(default)]
    pub log: bool,
    /// `from <t>` / `from !<t>` of a dynamic table: its name and whether negated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dyn_from: Option<(String, bool)>,
    /// `overload <t> [flush [global]] [for N]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overload: Option<crate::rules::Overload>,
    /// `max-src-states`, `max-src-conn`, `max-src-conn-rate`.
    #[serde(default, skip_serializing_if = "crate::rules::SourceLimits::is_empty")]
    pub source_limits: crate::rules::SourceLimits,
    /// How a `block` rule refuses, `set block-policy` applied (`Drop` for `pass` rules).
    #[serde(default)]
    pub block_mode: BlockMode,
}

/// The classifier's tables for one ruleset.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// Policy when no rule matches.
    pub default_action: Action,
    /// Rules in file order (rule numbers, counters, status).
    pub rules: Vec<RuleInfo>,
    /// Bit in the bitmaps -> index in `rules`: the deciding order.
    pub order: Vec<u32>,
    /// `1 << field::X` for each field some rule constrains.
    pub used_fields: u32,
    /// Class id -> rules; class 0 is the empty set.
    pub bitmaps: Vec<RuleBitmap>,
    /// Interface name -> class; interfaces not listed get `iface_miss_class`.
    pub ifaces: Vec<(String, u32)>,
    /// Class of an interface that no rule names.
    pub iface_miss_class: u32,
    /// `family * 256 + proto` -> class (empty when the field is unused).
    pub proto: KeyedTable,
    /// Source address -> class (empty when the field is unused).
    pub src: AddrLookup,
    /// Destination address -> class.
    pub dst: AddrLookup,
    /// Port (or `PORT_NONE`) -> class.
    pub sport: KeyedTable,
    /// See `sport`.
    pub dport: KeyedTable,
    /// Flags byte (or `TCP_FLAGS_NONE`) -> class.
    pub tcp_flags: KeyedTable,
    /// `type << 8 | code` (or `ICMP_NONE`) -> class.
    pub icmp: KeyedTable,
    /// VLAN id (or `VLAN_NONE`) -> class.
    pub vlan: KeyedTable,
    /// Classes of the direction field for inbound (XDP) and outbound (TC) packets.
    pub dir_classes: (u32, u32),
    /// Some rule says `out`.
    pub has_out_rules: bool,
    /// Some rule keeps state: connection tracking runs.
    pub stateful: bool,
    /// Flow table size and timeouts.
    pub options: crate::rules::Options,
    /// `table <t> persist`, by name.
    pub dyn_table_names: Vec<String>,
}

impl Compiled {
    /// Whether some rule constrains field `f` (a `field::X`).
    pub fn uses(&self, f: u32) -> bool {
        self.used_fields & (1 << f) != 0
    }

    /// The table of an array-keyed field (`field::KEYED`).
    pub fn keyed(&self, f: u32) -> &KeyedTable {
        match f {
            field::PROTO => &self.proto,
            field::SRC_PORT => &self.sport,
            field::DST_PORT => &self.dport,
            field::TCP_FLAGS => &self.tcp_flags,
            field::ICMP => &self.icmp,
            field::VLAN => &self.vlan,
            _ => panic!("field {f} is not array-keyed"),
        }
    }

    /// Whether some rule, or the default policy, logs packets.
    pub fn logging(&self) -> bool {
        self.options.default_log || self.rules.iter().any(|r| r.log)
    }

    /// Rules the rated classifier may hand a packet on from: those with a rate limit
    /// or a dynamic table as their source.
    pub fn rate_rules(&self) -> u32 {
        self.rules.iter().filter(|r| r.rate.is_some() || r.dyn_from.is_some()).count() as u32
    }

    /// The dynamic tables the ruleset declares (`table <t> persist`).
    pub fn dyn_tables(&self) -> Vec<String> {
        self.dyn_table_names.clone()
    }

    /// Whether some rule limits its rate per source (the per-source table is needed).
    pub fn per_source_rates(&self) -> bool {
        self.rules.iter().any(|r| r.rate.is_some_and(|rate| rate.per_source.is_some()))
    }

    /// Whether some rule has a limit per source (`max-src-states`, `max-src-conn`,
    /// `max-src-conn-rate`).
    pub fn source_limited(&self) -> bool {
        self.rules.iter().any(|r| !r.source_limits.is_empty())
    }

    /// Whether some rule's `overload` flushes the source's flows.
    pub fn flushes(&self) -> bool {
        self.rules.iter().any(|r| r.overload.as_ref().is_some_and(|o| !o.flush.is_none()))
    }

    /// 64-rule words in use (the classifier visits only those that can match).
    pub fn rule_words(&self) -> u32 {
        self.rules.len().div_ceil(64) as u32
    }

    /// Estimated kernel memory of this ruleset's maps, in bytes: bitmaps, address
    /// lookups and arrays, and the source nodes of limits per source (`set limit
    /// src-nodes` of them, 2 KiB each, allocated whole when the program loads).
    pub fn map_memory(&self) -> u64 {
        let bitmaps = self.bitmaps.len() as u64 * std::mem::size_of::<RuleBitmap>() as u64;
        let addresses = self.src.memory() + self.dst.memory();
        let arrays: u64 = field::KEYED.iter().filter(|k| self.uses(k.field)).map(|k| u64::from(k.domain) * 4).sum();
        let nodes = if self.source_limited() {
            // Value, key and the hash table's own per-element overhead.
            let each = std::mem::size_of::<filter_common::SourceNode>() as u64 + 64;
            u64::from(self.options.src_nodes.unwrap_or(filter_common::DEFAULT_SRC_NODES)) * each
        } else {
            0
        };
        bitmaps + addresses + arrays + nodes
    }
}

/// Compiles a parsed ruleset.
pub fn compile(rs: &Ruleset) -> Result<Compiled, CompileError> {
    if rs.rules.len() > MAX_RULES {
        return Err(CompileError::TooManyRules { count: rs.rules.len(), limit: MAX_RULES });
    }
    if let Some((name, t)) = rs.tables.iter().find(|(_, t)| t.entries.len() > MAX_TABLE_ENTRIES) {
        return Err(CompileError::TooManyEntries {
            table: name.clone(),
            count: t.entries.len(),
            limit: MAX_TABLE_ENTRIES,
        });
    }
    let rated = rs.rules.iter().filter(|r| r.rate.is_some() || dyn_from(r, &rs.tables).is_some()).count() as u32;
    let words = rs.rules.len().div_ceil(64) as u32;
    if rated > 0 && words + rated > filter_common::MAX_RATED_STEPS {
        return Err(CompileError::TooManyRatedSteps {
            rules: rs.rules.len(),
            words,
            rated,
            limit: filter_common::MAX_RATED_STEPS,
        });
    }
    let mut classes = Classes::new();
    let order = deciding_order(&rs.rules);
    let ordered: Vec<Rule> = order.iter().map(|&i| rs.rules[i].clone()).collect();
    let rules = &ordered;
    let mut used_fields = 0u32;
    let mut field_of = |f: u32, conds: Vec<Option<Vec<(u32, u32)>>>, domain: u32| -> KeyedTable {
        if conds.iter().all(Option::is_none) {
            return KeyedTable::default();
        }
        used_fields |= 1 << f;
        KeyRanges { conds, domain }.classify(&mut classes)
    };

    let proto = field_of(field::PROTO, rules.iter().map(proto_keys).collect(), PROTO_KEYS);
    let sport = field_of(field::SRC_PORT, rules.iter().map(|r| port_keys(&r.from.ports)).collect(), PORT_NONE + 1);
    let dport = field_of(field::DST_PORT, rules.iter().map(|r| port_keys(&r.to.ports)).collect(), PORT_NONE + 1);
    let tcp_flags = field_of(
        field::TCP_FLAGS,
        rules.iter().map(|r| r.tcp_flags.map(|f| flag_keys(r, f))).collect(),
        TCP_FLAGS_NONE + 1,
    );
    let icmp = field_of(
        field::ICMP,
        rules
            .iter()
            .map(|r| {
                r.icmp.is_some().then(|| {
                    r.icmp_types()
                        .map(|m| {
                            let t = (m.icmp_type as u32) << 8;
                            match m.code {
                                Some(c) => (t | c as u32, t | c as u32),
                                None => (t, t | 0xff),
                            }
                        })
                        .collect()
                })
            })
            .collect(),
        ICMP_NONE + 1,
    );
    let vlan = field_of(
        field::VLAN,
        rules.iter().map(|r| r.vlan.map(|v| vec![(v as u32, v as u32)])).collect(),
        VLAN_NONE + 1,
    );

    let has_out_rules = rules.iter().any(|r| r.direction.covers(Direction::Out));
    let dir_classes = directions(rules, &mut classes);
    if has_out_rules {
        used_fields |= 1 << field::DIRECTION;
    }
    let (ifaces, iface_miss_class) = interfaces(rules, &mut classes);
    if !ifaces.is_empty() {
        used_fields |= 1 << field::IFACE;
    }

    // A dynamic table as the whole source is checked by the data plane against its own
    // map (the rated classifier): for the address lookups the rule takes any source.
    static ANY: crate::rules::AddrMatch = crate::rules::AddrMatch::Any;
    let src = addr::AddrField::new(
        rules.iter().map(|r| if dyn_from(r, &rs.tables).is_some() { &ANY } else { &r.from.addr }),
        &rs.tables,
    );
    let dst = addr::AddrField::new(rules.iter().map(|r| &r.to.addr), &rs.tables);
    let (mut src_lookup, mut dst_lookup) = Default::default();
    if src.used() {
        used_fields |= 1 << field::SRC_ADDR;
        src_lookup = src.classify(rules.len(), &mut classes);
    }
    if dst.used() {
        used_fields |= 1 << field::DST_ADDR;
        dst_lookup = dst.classify(rules.len(), &mut classes);
    }

    let compiled = Compiled {
        default_action: rs.default_action,
        rules: rule_infos(&rs.rules, &rs.tables, rs.options.block_policy),
        order: order.iter().map(|&i| i as u32).collect(),
        used_fields,
        bitmaps: classes.into_bitmaps(),
        ifaces,
        iface_miss_class,
        proto,
        src: src_lookup,
        dst: dst_lookup,
        sport,
        dport,
        tcp_flags,
        icmp,
        vlan,
        dir_classes,
        has_out_rules,
        stateful: rules.iter().any(|r| r.keep_state),
        options: rs.options.clone(),
        dyn_table_names: rs.tables.iter().filter(|(_, t)| t.dynamic).map(|(n, _)| n.clone()).collect(),
    };
    let bytes = compiled.map_memory();
    if bytes > MAX_MAP_MEMORY {
        return Err(CompileError::TooMuchMemory { bytes, limit: MAX_MAP_MEMORY });
    }
    Ok(compiled)
}

/// The order in which the classifier looks at the rules (indices into `rules`), so
/// that its first match is pf's decision: the `quick` rules in file order (the first
/// that matches decides at once), then the others from last to first (the last
/// matching one decides).
pub fn deciding_order(rules: &[Rule]) -> Vec<usize> {
    let quick = (0..rules.len()).filter(|&i| rules[i].quick);
    let last_match = (0..rules.len()).rev().filter(|&i| !rules[i].quick);
    quick.chain(last_match).collect()
}

/// TCP flags keys a rule's `flags` accept: the flag bytes that fit, and, when the rule
/// also matches packets other than TCP, `TCP_FLAGS_NONE` (flags constrain TCP only).
fn flag_keys(r: &Rule, f: crate::rules::TcpFlags) -> Vec<(u32, u32)> {
    let mut keys: Vec<(u32, u32)> = (0..256u32).filter(|k| *k as u8 & f.mask == f.set).map(|k| (k, k)).collect();
    if r.protocols.as_deref() != Some(&[filter_common::wire::IPPROTO_TCP]) {
        keys.push((TCP_FLAGS_NONE, TCP_FLAGS_NONE));
    }
    keys
}

/// Protocol keys (`family * 256 + proto`) a rule accepts, `None` for all.
fn proto_keys(r: &Rule) -> Option<Vec<(u32, u32)>> {
    if r.family.is_none() && r.protocols.is_none() {
        return None;
    }
    let families: &[u32] = match r.family {
        Some(Family::Inet) => &[filter_common::FAMILY_V4],
        Some(Family::Inet6) => &[filter_common::FAMILY_V6],
        None => &[filter_common::FAMILY_V4, filter_common::FAMILY_V6],
    };
    let mut keys = Vec::new();
    for &fam in families {
        let base = fam * 256;
        match &r.protocols {
            Some(protos) => keys.extend(protos.iter().map(|&p| (base + p as u32, base + p as u32))),
            None => keys.push((base, base + 255)),
        }
    }
    Some(keys)
}

/// Port keys a condition accepts; `PORT_NONE` (no ports) never matches a port list.
fn port_keys(ports: &Option<Vec<PortRange>>) -> Option<Vec<(u32, u32)>> {
    ports.as_ref().map(|list| list.iter().map(|p| (p.lo as u32, p.hi as u32)).collect())
}

/// The rules of each direction: (inbound class, outbound class).
fn directions(rules: &[Rule], classes: &mut Classes) -> (u32, u32) {
    let (mut inbound, mut outbound) = (RuleBitmap::EMPTY, RuleBitmap::EMPTY);
    for (i, r) in rules.iter().enumerate() {
        if r.direction.covers(Direction::In) {
            inbound.set(i);
        }
        if r.direction.covers(Direction::Out) {
            outbound.set(i);
        }
    }
    (classes.intern(&inbound), classes.intern(&outbound))
}

/// Interface classes: one per interface named by some rule (the rules that hold on
/// it), plus the class of every other interface.
fn interfaces(rules: &[Rule], classes: &mut Classes) -> (Vec<(String, u32)>, u32) {
    let mut names: Vec<&str> = Vec::new();
    for name in rules.iter().flat_map(Rule::interfaces) {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let class_of = |name: Option<&str>, classes: &mut Classes| {
        let mut b = RuleBitmap::EMPTY;
        for (i, r) in rules.iter().enumerate() {
            if r.holds_on(name) {
                b.set(i);
            }
        }
        classes.intern(&b)
    };
    let ifaces = names.iter().map(|&name| (name.to_owned(), class_of(Some(name), classes))).collect();
    (ifaces, class_of(None, classes))
}

/// The dynamic table a rule's whole `from` is (`from <t>`, `from !<t>`), if it is one.
pub fn dyn_from(r: &Rule, tables: &std::collections::BTreeMap<String, crate::rules::Table>) -> Option<(String, bool)> {
    match &r.from.addr {
        crate::rules::AddrMatch::List { negated, items } => match items.as_slice() {
            [crate::rules::AddrItem::Table(t)] if tables.get(t).is_some_and(|t| t.dynamic) => {
                Some((t.clone(), *negated))
            }
            _ => None,
        },
        crate::rules::AddrMatch::Any => None,
    }
}

fn rule_infos(
    rules: &[Rule],
    tables: &std::collections::BTreeMap<String, crate::rules::Table>,
    block_policy: BlockPolicy,
) -> Vec<RuleInfo> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    rules
        .iter()
        .map(|r| {
            let base = r.label.clone().unwrap_or_else(|| r.text.clone());
            let n = seen.entry(base.clone()).or_insert(0);
            *n += 1;
            let key = if *n == 1 { base } else { format!("{base}#{n}") };
            let block_mode = match r.action {
                Action::Block => r.block_mode.under(block_policy),
                Action::Pass => BlockMode::Drop,
            };
            RuleInfo {
                text: r.text.clone(),
                label: r.label.clone(),
                action: r.action,
                key,
                keep_state: r.keep_state,
                rate: r.rate,
                log: r.log,
                dyn_from: dyn_from(r, tables),
                overload: r.overload.clone(),
                source_limits: r.source_limits,
                block_mode,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
