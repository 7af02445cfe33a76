//! One ruleset loaded into the kernel: the XDP program specialised by load-time
//! constants, its classifier maps filled from a [`Compiled`] ruleset, and the pinned
//! counter maps it shares with every other generation.

use std::path::Path;

use aya::{
    Ebpf, EbpfLoader, TestRun as _, TestRunOptions,
    maps::{Array, HashMap, LpmTrie, MapData, PerCpuArray, PerCpuValues, ProgramArray, lpm_trie::Key},
    programs::{SchedClassifier, Xdp},
};
use filter_common::{
    ACTION_DROP, ACTION_PASS, COUNTER_SLOTS, Counter, DEFAULT_LOG_RATE, DEFAULT_SRC_NODES, DynEntry, DynName,
    FLUSH_GLOBAL, FLUSH_NONE, FLUSH_RULE, IfaceCounters, IfaceEntry, LogCounters, MAX_DYN_TABLES, PrefixClass,
    PrefixKey, RULE_DYN_FROM, RULE_DYN_NEGATED, RULE_ICMP_CODE_SHIFT, RULE_ICMP6_CODE_SHIFT, RULE_KEEP_STATE, RULE_LOG,
    RULE_RATE, RULE_RATE_PER_SOURCE, RULE_RETURN_ICMP, RULE_RETURN_RST, RateLimit, RuleAction, RuleBitmap, RuleEvents,
    SourceKey, SourceLimit, dir, field, names,
};

use super::Error;
use crate::{
    compile::{AddrLookup, Compiled, KeyedTable},
    rules::{Action, BlockMode, DEFAULT_STATE_LIMIT},
};

/// The eBPF object built by build.rs.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdpwall"));

/// The eBPF object: the filter and the reference programs benchmarks compare it with.
pub fn ebpf_object() -> &'static [u8] {
    OBJECT
}

pub use names::{
    COUNTERS, IFACE_COUNTERS, PROGRAM_EGRESS as EGRESS_PROGRAM, PROGRAM_XDP as PROGRAM, STATES, STATES_NEW,
};

/// Size of the table of unanswered flows for `set limit states N`: half as many
/// again. Unanswered flows live a round trip (a handshake, a query) unless nobody
/// answers them; under a flood of those, this size is how many openings the flood
/// needs to push a legitimate one out before its answer arrives.
pub fn unanswered_limit(limit: u32) -> u32 {
    limit.div_ceil(2)
}

/// An interface the program runs on: the `IFACES` entry it needs.
#[derive(Debug, Clone)]
pub struct IfaceBinding {
    /// Interface name (matched against `on NAME`).
    pub name: String,
    /// Kernel interface index.
    pub ifindex: u32,
    /// Slot in `IFACE_COUNTERS`.
    pub stats_slot: u32,
}

/// The programs of one generation, by hook.
pub struct Programs<'a> {
    /// Packets arriving.
    pub xdp: &'a mut Xdp,
    /// Packets leaving.
    pub egress: &'a mut SchedClassifier,
}

/// A loaded (not necessarily attached) generation of the filter.
pub struct LoadedProgram {
    ebpf: Ebpf,
}

/// The `RULE_RETURN_*` flags and ICMP codes of a rule's refusal.
fn answer_flags(mode: BlockMode) -> u32 {
    use filter_common::wire::{ICMP_UNREACH_PORT, ICMP6_DST_UNREACH_NOPORT};
    let icmp = |icmp: u8, icmp6: u8| {
        RULE_RETURN_ICMP | u32::from(icmp) << RULE_ICMP_CODE_SHIFT | u32::from(icmp6) << RULE_ICMP6_CODE_SHIFT
    };
    match mode {
        BlockMode::Policy | BlockMode::Drop => 0,
        BlockMode::Return => RULE_RETURN_RST | icmp(ICMP_UNREACH_PORT, ICMP6_DST_UNREACH_NOPORT),
        BlockMode::ReturnRst => RULE_RETURN_RST,
        BlockMode::ReturnIcmp { icmp: code, icmp6: code6 } => icmp(code, code6),
    }
}

fn action_code(a: Action) -> u32 {
    match a {
        Action::Pass => ACTION_PASS,
        Action::Block => ACTION_DROP,
    }
}

impl LoadedProgram {
    /// Loads the program for `compiled` with rule `i` counting into `counter_slots[i]`;
    /// the counter maps are pinned in (or adopted from) `pin_dir`.
    pub fn load(
        compiled: &Compiled,
        counter_slots: &[u32],
        ifaces: &[IfaceBinding],
        pin_dir: &Path,
    ) -> Result<Self, Error> {
        Self::load_with(compiled, counter_slots, ifaces, pin_dir, false)
    }

    /// Like [`Self::load`], recording every decision for [`Self::test_run_traced`]
    /// (tests only: it costs a map write per packet).
    pub fn load_traced(
        compiled: &Compiled,
        counter_slots: &[u32],
        ifaces: &[IfaceBinding],
        pin_dir: &Path,
    ) -> Result<Self, Error> {
        Self::load_with(compiled, counter_slots, ifaces, pin_dir, true)
    }

    fn load_with(
        compiled: &Compiled,
        counter_slots: &[u32],
        ifaces: &[IfaceBinding],
        pin_dir: &Path,
        trace: bool,
    ) -> Result<Self, Error> {
        let trace = trace as u32;
        let used_fields = compiled.used_fields;
        let rule_words = compiled.rule_words();
        let default_action = action_code(compiled.default_action);
        let iface_miss_class = compiled.iface_miss_class;
        let stateful = compiled.stateful as u32;
        let has_out_rules = compiled.has_out_rules as u32;
        let has_answers = compiled.rules.iter().any(|r| answer_flags(r.block_mode) != 0) as u32;
        let (dir_in, dir_out) = compiled.dir_classes;
        let rate_rules = compiled.rate_rules();
        let logging = compiled.logging() as u32;
        let default_log = compiled.options.default_log as u32;
        // Limiters exist only when some rule has a rate (one-entry maps otherwise).
        let rate_limits = if rate_rules == 0 { 1 } else { compiled.rules.len() as u32 };
        let source_rates =
            if compiled.per_source_rates() { compiled.options.src_nodes.unwrap_or(DEFAULT_SRC_NODES) } else { 1 };
        // Source nodes and flush marks exist only when some rule needs them.
        let src_nodes = compiled.options.src_nodes.unwrap_or(DEFAULT_SRC_NODES);
        let source_limited = compiled.source_limited() as u32;
        let has_flush = compiled.flushes() as u32;
        let timeouts: Vec<(&str, u32)> =
            filter_common::timeout::ALL.iter().map(|t| (t.global, compiled.options.timeout(t.name))).collect();
        let state_limit = compiled.options.state_limit.unwrap_or(DEFAULT_STATE_LIMIT);
        let defaults: Vec<(&str, u32)> =
            keyed_fields(compiled).map(|(k, table)| (k.default_global, table.default_class)).collect();
        // Unused fields get one-entry maps: they are never looked up.
        let at_least_one = |v: usize| (v as u32).max(1);
        let mut loader = EbpfLoader::new();
        loader
            .default_map_pin_directory(pin_dir)
            .override_global(names::USED_FIELDS, &used_fields, true)
            .override_global(names::RULE_WORDS, &rule_words, true)
            .override_global(names::DEFAULT_ACTION, &default_action, true)
            .override_global(names::IFACE_MISS_CLASS, &iface_miss_class, true)
            .override_global(names::TRACE, &trace, true)
            .override_global(names::STATEFUL, &stateful, true)
            .override_global(names::HAS_OUT_RULES, &has_out_rules, true)
            .override_global(names::HAS_ANSWERS, &has_answers, true)
            .override_global(names::DIR_IN_CLASS, &dir_in, true)
            .override_global(names::DIR_OUT_CLASS, &dir_out, true)
            .override_global(names::RATE_RULES, &rate_rules, true)
            .override_global(names::LOGGING, &logging, true)
            .override_global(names::DEFAULT_LOG, &default_log, true)
            .map_max_entries(names::RATE_LIMITS, rate_limits)
            .map_max_entries(names::SOURCE_RATES, source_rates)
            .override_global(names::SOURCE_LIMITED, &source_limited, true)
            .override_global(names::HAS_FLUSH, &has_flush, true)
            .map_max_entries(names::SOURCE_LIMITS, if source_limited != 0 { COUNTER_SLOTS } else { 1 })
            .map_max_entries(names::SOURCE_NODES, if source_limited != 0 { src_nodes } else { 1 })
            .map_max_entries(names::FLUSH_MARKS, if has_flush != 0 { src_nodes } else { 1 })
            // Taken only when the pinned tables are created (the first load).
            .map_max_entries(STATES, state_limit)
            .map_max_entries(STATES_NEW, unanswered_limit(state_limit))
            .map_max_entries(names::BITMAPS, compiled.bitmaps.len() as u32);
        for a in addr_fields(compiled) {
            loader
                .override_global(a.v6_lengths, &a.lookup.config.v6_lengths, true)
                .map_max_entries(a.dir4, at_least_one(a.lookup.dir4.len() / dir::PER_ELEMENT as usize))
                .map_max_entries(a.long24, at_least_one(a.lookup.long24.len()))
                .map_max_entries(a.prefixes, at_least_one(a.lookup.prefixes.len()))
                .map_max_entries(a.trie6, at_least_one(a.lookup.trie6.len()))
                .map_max_entries(a.bloom6, at_least_one(a.lookup.v6_hashed_prefixes()));
        }
        for (name, class) in &defaults {
            loader.override_global(name, class, true);
        }
        for (name, secs) in &timeouts {
            loader.override_global(name, secs, true);
        }
        for k in field::KEYED {
            loader.map_max_entries(k.map, if compiled.uses(k.field) { k.domain } else { 1 });
        }
        let ebpf = loader.load(OBJECT).map_err(|e| Error::Load(Box::new(e)))?;

        let mut p = LoadedProgram { ebpf };
        p.fill(compiled, counter_slots, ifaces)?;
        let prog: &mut Xdp = p.program_mut()?;
        prog.load().map_err(|e| Error::Program("load (verifier)", e))?;
        p.egress_mut()?.load().map_err(|e| Error::Program("load egress (verifier)", e))?;
        if has_answers != 0 {
            p.load_answer()?;
        }
        Ok(p)
    }

    /// Loads the answer program (`block return`) and puts it where the filter
    /// tail-calls it: the pinned `ANSWER_PROGS`, which keeps it loaded.
    fn load_answer(&mut self) -> Result<(), Error> {
        let prog: &mut Xdp = self
            .ebpf
            .program_mut(names::PROGRAM_ANSWER)
            .ok_or(Error::MissingObject(names::PROGRAM_ANSWER))?
            .try_into()
            .map_err(|e| Error::Program("find answer", e))?;
        prog.load().map_err(|e| Error::Program("load answer (verifier)", e))?;
        let fd = prog
            .fd()
            .map_err(|e| Error::Program("answer fd", e))?
            .try_clone()
            .map_err(|e| Error::Io("duplicating the answer program's descriptor".into(), e))?;
        let mut progs: ProgramArray<_> = self.map_typed(names::ANSWER_PROGS)?;
        progs.set(0, &fd, 0).map_err(|e| Error::Map(names::ANSWER_PROGS, e))
    }

    fn fill(&mut self, c: &Compiled, counter_slots: &[u32], ifaces: &[IfaceBinding]) -> Result<(), Error> {
        {
            let mut rules: Array<_, RuleAction> = self.map_typed(names::RULES)?;
            // Bit `bit` of the classifier is rule `order[bit]` (pf's deciding order);
            // its counter is that rule's, so counters keep the file's order.
            for (bit, &file_index) in c.order.iter().enumerate() {
                let (rule, counter) = (&c.rules[file_index as usize], counter_slots[file_index as usize]);
                let mut flags = if rule.keep_state { RULE_KEEP_STATE } else { 0 } | answer_flags(rule.block_mode);
                if rule.log {
                    flags |= RULE_LOG;
                }
                if let Some((_, negated)) = rule.dyn_from {
                    flags |= RULE_DYN_FROM | if negated { RULE_DYN_NEGATED } else { 0 };
                }
                if let Some(rate) = rule.rate {
                    flags |= RULE_RATE;
                    if rate.per_source.is_some() {
                        flags |= RULE_RATE_PER_SOURCE;
                    }
                }
                let v = RuleAction { action: action_code(rule.action), counter, flags, number: file_index + 1 };
                rules.set(bit as u32, v, 0).map_err(|e| Error::Map(names::RULES, e))?;
            }
        }
        if c.logging() {
            let per_second = c.options.log_rate.unwrap_or(DEFAULT_LOG_RATE);
            let rate = crate::rules::Rate { packets: per_second, seconds: 1, burst: per_second, per_source: None };
            let v = RateLimit {
                tat_ns: 0,
                interval_ns: rate.interval_ns(),
                tolerance_ns: rate.tolerance_ns(),
                mask_v4: 0,
                mask_v6: 0,
                dyn_from: 0,
                overload: 0,
                overload_secs: 0,
            };
            let mut limit: Array<_, RateLimit> = self.map_typed(names::LOG_LIMIT)?;
            limit.set(0, v, 0).map_err(|e| Error::Map(names::LOG_LIMIT, e))?;
        }
        let slots = self.dyn_slots(c)?;
        let slot_of = |name: &str| slots.iter().find(|(n, _)| n == name).map_or(0, |(_, s)| *s);
        if c.source_limited() {
            let mut limits: Array<_, SourceLimit> = self.map_typed(names::SOURCE_LIMITS)?;
            // By counter slot: flows carry their rule's counter slot across applies.
            for (rule, &counter) in c.rules.iter().zip(counter_slots) {
                if rule.source_limits.is_empty() {
                    continue;
                }
                let v = source_limit(rule, slot_of);
                limits.set(counter, v, 0).map_err(|e| Error::Map(names::SOURCE_LIMITS, e))?;
            }
        }
        if c.rate_rules() > 0 {
            let mut limits: Array<_, RateLimit> = self.map_typed(names::RATE_LIMITS)?;
            // By classifier bit, like `RULES`.
            for (bit, &file_index) in c.order.iter().enumerate() {
                let rule = &c.rules[file_index as usize];
                if rule.rate.is_none() && rule.dyn_from.is_none() {
                    continue;
                }
                let rate =
                    rule.rate.unwrap_or(crate::rules::Rate { packets: 1, seconds: 1, burst: 1, per_source: None });
                let mask = rate.per_source.unwrap_or_default();
                let v = RateLimit {
                    tat_ns: 0,
                    interval_ns: rate.interval_ns(),
                    tolerance_ns: rate.tolerance_ns(),
                    mask_v4: mask.v4,
                    mask_v6: mask.v6,
                    dyn_from: rule.dyn_from.as_ref().map_or(0, |(t, _)| slot_of(t)),
                    overload: rule.overload.as_ref().map_or(0, |o| slot_of(&o.table) + 1),
                    overload_secs: rule.overload.as_ref().map_or(0, |o| o.secs),
                };
                limits.set(bit as u32, v, 0).map_err(|e| Error::Map(names::RATE_LIMITS, e))?;
            }
        }
        {
            let mut bitmaps: Array<_, RuleBitmap> = self.map_typed(names::BITMAPS)?;
            for (i, b) in c.bitmaps.iter().enumerate() {
                bitmaps.set(i as u32, b, 0).map_err(|e| Error::Map(names::BITMAPS, e))?;
            }
        }
        {
            let mut map: HashMap<_, u32, IfaceEntry> = self.map_typed(names::IFACES)?;
            for i in ifaces {
                let class = if c.options.skip.contains(&i.name) {
                    filter_common::IFACE_SKIPPED
                } else {
                    c.ifaces.iter().find(|(name, _)| *name == i.name).map_or(c.iface_miss_class, |(_, class)| *class)
                };
                let entry = IfaceEntry { class, stats_slot: i.stats_slot };
                map.insert(i.ifindex, entry, 0).map_err(|e| Error::Map(names::IFACES, e))?;
            }
        }
        for (k, table) in keyed_fields(c) {
            let mut map: Array<_, u32> = self.map_typed(k.map)?;
            // 0 means "the field's default class"; others are stored as class + 1.
            for &(key, class) in &table.entries {
                map.set(key, class + 1, 0).map_err(|e| Error::Map(k.map, e))?;
            }
        }
        for a in addr_fields(c) {
            self.fill_addr(&a)?;
        }
        Ok(())
    }

    /// The slot of each dynamic table of the ruleset in the pinned `DYN_NAMES`: a table
    /// keeps its slot across applies (its sources stay in `DYN_SOURCES`); a new one takes
    /// a free slot, else the slot of a table the ruleset no longer has, whose sources
    /// are cleared from it first.
    /// The dynamic tables' slots, given out on first use (see `DYN_NAMES`).
    fn dyn_slots(&mut self, c: &Compiled) -> Result<Vec<(String, u8)>, Error> {
        let wanted = c.dyn_tables();
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let mut table: Vec<String> = {
            let names_map: Array<_, DynName> = self.map_typed(names::DYN_NAMES)?;
            (0..MAX_DYN_TABLES as u32)
                .map(|i| names_map.get(&i, 0).map(|n| dyn_name_text(&n)).unwrap_or_default())
                .collect()
        };
        let mut reused = Vec::new();
        for name in &wanted {
            if table.contains(name) {
                continue;
            }
            let slot = match table.iter().position(String::is_empty) {
                Some(free) => free,
                None => {
                    let stale = table
                        .iter()
                        .position(|n| !wanted.contains(n))
                        .ok_or_else(|| Error::Io("dynamic tables".into(), std::io::Error::other("no free slot")))?;
                    reused.push(stale);
                    stale
                }
            };
            table[slot].clone_from(name);
        }
        if !reused.is_empty() {
            let mut sources: HashMap<_, SourceKey, DynEntry> = self.map_typed(names::DYN_SOURCES)?;
            let keys: Vec<SourceKey> = sources.keys().filter_map(Result::ok).collect();
            for k in keys {
                if let Ok(mut e) = sources.get(&k, 0) {
                    for &slot in &reused {
                        e.expires_ns[slot] = 0;
                    }
                    let _ = sources.insert(k, e, 0);
                }
            }
        }
        let mut names_map: Array<_, DynName> = self.map_typed(names::DYN_NAMES)?;
        for (i, name) in table.iter().enumerate() {
            names_map.set(i as u32, dyn_name(name), 0).map_err(|e| Error::Map(names::DYN_NAMES, e))?;
        }
        Ok(wanted.iter().filter_map(|n| table.iter().position(|t| t == n).map(|s| (n.clone(), s as u8))).collect())
    }

    /// Fills one address field's lookup: the direct array through a shared mapping (it
    /// can hold millions of entries), the hash and the trie entry by entry.
    fn fill_addr(&mut self, a: &AddrField<'_>) -> Result<(), Error> {
        if a.lookup.dir4.is_empty() {
            return Ok(());
        }
        self.fill_mmapped(a.dir4, bytes_of(&a.lookup.dir4))?;
        if !a.lookup.long24.is_empty() {
            self.fill_mmapped(a.long24, bytes_of(&a.lookup.long24))?;
        }
        {
            let mut map: HashMap<_, PrefixKey, u32> = self.map_typed(a.prefixes)?;
            for (key, class) in &a.lookup.prefixes {
                map.insert(key, class, 0).map_err(|e| Error::Map(a.prefixes, e))?;
            }
        }
        {
            let mut bloom: aya::maps::BloomFilter<_, PrefixKey> = self.map_typed(a.bloom6)?;
            for key in a.lookup.prefixes.keys().filter(|k| u32::from(k.family) == filter_common::FAMILY_V6) {
                bloom.insert(key, 0).map_err(|e| Error::Map(a.bloom6, e))?;
            }
        }
        let mut trie: LpmTrie<_, [u8; 16], PrefixClass> = self.map_typed(a.trie6)?;
        for &(addr, len, class) in &a.lookup.trie6 {
            let value = PrefixClass { class, len: len.into() };
            trie.insert(&Key::new(len.into(), addr), value, 0).map_err(|e| Error::Map(a.trie6, e))?;
        }
        Ok(())
    }

    /// Fills a `BPF_F_MMAPABLE` array from `bytes` (its elements, in order).
    fn fill_mmapped(&mut self, name: &'static str, bytes: &[u8]) -> Result<(), Error> {
        let map = self.ebpf.map_mut(name).ok_or(Error::MissingObject(name))?;
        let aya::maps::Map::Array(data) = map else { return Err(Error::MissingObject(name)) };
        write_mmapped(data, bytes).map_err(|e| Error::Io(format!("filling {name}"), e))
    }

    fn map_typed<'a, T>(&'a mut self, name: &'static str) -> Result<T, Error>
    where
        T: TryFrom<&'a mut aya::maps::Map, Error = aya::maps::MapError>,
    {
        let map = self.ebpf.map_mut(name).ok_or(Error::MissingObject(name))?;
        T::try_from(map).map_err(|e| Error::Map(name, e))
    }

    /// The XDP program.
    pub fn program_mut(&mut self) -> Result<&mut Xdp, Error> {
        let prog = self.ebpf.program_mut(PROGRAM).ok_or(Error::MissingObject(PROGRAM))?;
        prog.try_into().map_err(|e| Error::Program("find", e))
    }

    /// The TC egress program.
    pub fn egress_mut(&mut self) -> Result<&mut SchedClassifier, Error> {
        let prog = self.ebpf.program_mut(EGRESS_PROGRAM).ok_or(Error::MissingObject(EGRESS_PROGRAM))?;
        prog.try_into().map_err(|e| Error::Program("find egress", e))
    }

    /// Both programs, for attaching or swapping.
    pub fn programs(&mut self) -> Result<Programs<'_>, Error> {
        let mut it = self.ebpf.programs_mut();
        let (mut xdp, mut egress) = (None, None);
        for (name, prog) in &mut it {
            match name {
                PROGRAM => xdp = Some(prog),
                EGRESS_PROGRAM => egress = Some(prog),
                _ => {}
            }
        }
        let xdp: &mut Xdp =
            xdp.ok_or(Error::MissingObject(PROGRAM))?.try_into().map_err(|e| Error::Program("find", e))?;
        let egress: &mut SchedClassifier = egress
            .ok_or(Error::MissingObject(EGRESS_PROGRAM))?
            .try_into()
            .map_err(|e| Error::Program("find egress", e))?;
        Ok(Programs { xdp, egress })
    }

    /// Runs one frame through the program with BPF_PROG_TEST_RUN; returns the XDP
    /// action. `ifindex` sets the receiving interface (it must exist).
    pub fn test_run(&mut self, frame: &[u8], ifindex: Option<u32>) -> Result<u32, Error> {
        self.test_run_repeat(frame, ifindex, 1).map(|(action, _)| action)
    }

    /// Like [`Self::test_run`], `repeat` times; also returns the average time per run.
    pub fn test_run_repeat(
        &mut self,
        frame: &[u8],
        ifindex: Option<u32>,
        repeat: u32,
    ) -> Result<(u32, std::time::Duration), Error> {
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index,
        // egress_ifindex. The kernel wants data = 0 and data_end = frame length.
        let mut ctx = [0u8; 24];
        ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
        ctx[12..16].copy_from_slice(&ifindex.unwrap_or(0).to_ne_bytes());
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(frame);
        opts.repeat = repeat;
        if ifindex.is_some() {
            opts.ctx_in = Some(&ctx);
        }
        let prog = self.program_mut()?;
        let r = prog.test_run(opts).map_err(|e| Error::Program("test run", e))?;
        Ok((r.return_value, r.duration))
    }
}

impl LoadedProgram {
    /// Runs one frame through the XDP program received on `ifindex`, and returns the XDP
    /// action with the frame as the program left it (an answer it sent with XDP_TX).
    pub fn test_run_frame(&mut self, frame: &[u8], ifindex: u32) -> Result<(u32, Vec<u8>), Error> {
        let mut ctx = [0u8; 24];
        ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
        ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
        // Room for an answer that grows the frame (an ICMP error quoting it).
        let mut out = vec![0u8; frame.len() + 256];
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(frame);
        opts.ctx_in = Some(&ctx);
        opts.data_out = Some(&mut out);
        let prog = self.program_mut()?;
        let r = prog.test_run(opts).map_err(|e| Error::Program("test run", e))?;
        out.truncate(r.data_size_out as usize);
        Ok((r.return_value, out))
    }

    /// Runs one frame through the TC egress program with BPF_PROG_TEST_RUN, as if the
    /// host sent it on the loopback device; returns the TC action (0 OK, 2 SHOT).
    pub fn test_run_egress(&mut self, frame: &[u8]) -> Result<i32, Error> {
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(frame);
        let prog = self.egress_mut()?;
        let r = prog.test_run(opts).map_err(|e| Error::Program("egress test run", e))?;
        Ok(r.return_value as i32)
    }
}

/// An address field: its maps and load-time configuration, and what goes into them.
struct AddrField<'a> {
    v6_lengths: &'static str,
    dir4: &'static str,
    long24: &'static str,
    prefixes: &'static str,
    trie6: &'static str,
    bloom6: &'static str,
    lookup: &'a AddrLookup,
}

fn addr_fields(c: &Compiled) -> [AddrField<'_>; 2] {
    [
        AddrField {
            long24: names::SRC_LONG24,
            v6_lengths: names::SRC_V6_LENGTHS,
            dir4: names::SRC_DIR4,
            prefixes: names::SRC_PREFIXES,
            trie6: names::SRC_TRIE6,
            bloom6: names::SRC_BLOOM6,
            lookup: &c.src,
        },
        AddrField {
            long24: names::DST_LONG24,
            v6_lengths: names::DST_V6_LENGTHS,
            dir4: names::DST_DIR4,
            prefixes: names::DST_PREFIXES,
            trie6: names::DST_TRIE6,
            bloom6: names::DST_BLOOM6,
            lookup: &c.dst,
        },
    ]
}

/// The bytes of plain-data values (no padding: `aya::Pod`), as the kernel lays out the
/// elements of an array whose value size is a multiple of 8 or that holds u32 pairs.
fn bytes_of<T: aya::Pod>(v: &[T]) -> &[u8] {
    // SAFETY: Pod types have no padding and any alignment is fine for reading bytes.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast(), std::mem::size_of_val(v)) }
}

/// Copies `bytes` to the start of a `BPF_F_MMAPABLE` array through a shared mapping:
/// one copy instead of a system call per element (16M for a full direct array).
fn write_mmapped(map: &MapData, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::fd::{AsFd as _, AsRawFd as _};
    // SAFETY: sysconf has no memory effects.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    let len = bytes.len().div_ceil(page) * page;
    let fd = map.fd().as_fd().as_raw_fd();
    // SAFETY: a fresh shared mapping of the map's memory; the kernel checks that `len`
    // lies within the array (it was sized for `bytes` at load).
    let ptr =
        unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0) };
    if ptr == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `ptr` maps at least `bytes.len()` writable bytes, unmapped right after.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr.cast::<u8>(), bytes.len());
        libc::munmap(ptr, len);
    }
    Ok(())
}

/// Each array-keyed field with its compiled table.
fn keyed_fields(c: &Compiled) -> impl Iterator<Item = (field::Keyed, &KeyedTable)> {
    field::KEYED.into_iter().map(|k| (k, c.keyed(k.field)))
}

/// One decision of a traced program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The XDP action (1 drop, 2 pass).
    pub action: u32,
    /// The counter slot that counted the packet: a rule's slot, or a reserved one
    /// (`filter_common::slot`, `Malformed::slot`).
    pub slot: u32,
}

impl LoadedProgram {
    /// Runs one frame through a program loaded with [`Self::load_traced`] and returns
    /// its action and which counter it went to.
    pub fn test_run_traced(&mut self, frame: &[u8], ifindex: Option<u32>) -> Result<Decision, Error> {
        let action = self.test_run(frame, ifindex)?;
        let last: Array<_, u32> = self.map_typed(names::TRACE_LAST)?;
        let v = last.get(&0, 0).map_err(|e| Error::Map(names::TRACE_LAST, e))?;
        Ok(Decision { action, slot: v >> 1 })
    }
}

/// A `DYN_NAMES` element's name.
pub fn dyn_name_text(n: &DynName) -> String {
    let end = n.name.iter().position(|&b| b == 0).unwrap_or(n.name.len());
    String::from_utf8_lossy(&n.name[..end]).into_owned()
}

/// A `DYN_NAMES` element holding `name` (table names are at most 63 bytes).
pub fn dyn_name(name: &str) -> DynName {
    let mut n = DynName { name: [0; 64] };
    let b = name.as_bytes();
    let len = b.len().min(63);
    n.name[..len].copy_from_slice(&b[..len]);
    n
}

/// Opens a pinned map.
pub fn open_pinned(pin_dir: &Path, name: &'static str) -> Result<aya::maps::Map, Error> {
    let data = MapData::from_pin(pin_dir.join(name)).map_err(|e| Error::Map(name, e))?;
    aya::maps::Map::from_map_data(data).map_err(|e| Error::Map(name, e))
}

/// Sums the per-CPU values of every slot of the pinned `COUNTERS` map.
pub fn read_counters(pin_dir: &Path) -> Result<Vec<Counter>, Error> {
    read_summed(pin_dir, COUNTERS)
}

/// Sums the per-CPU values of every slot of the pinned `RULE_EVENTS` map (packets over
/// rate, packets logged, by counter slot).
pub fn read_rule_events(pin_dir: &Path) -> Result<Vec<RuleEvents>, Error> {
    read_summed(pin_dir, names::RULE_EVENTS)
}

/// The log's counters (written, suppressed, lost), its CPUs' values summed.
pub fn read_log_counters(pin_dir: &Path) -> Result<LogCounters, Error> {
    Ok(read_summed::<LogCounters>(pin_dir, names::LOG_COUNTERS)?.first().copied().unwrap_or_default())
}

/// Sums the per-CPU values of every slot of the pinned `IFACE_COUNTERS` map.
pub fn read_iface_counters(pin_dir: &Path) -> Result<Vec<IfaceCounters>, Error> {
    read_summed(pin_dir, IFACE_COUNTERS)
}

/// Every slot of a pinned per-CPU map, its CPUs' values summed.
fn read_summed<T>(pin_dir: &Path, name: &'static str) -> Result<Vec<T>, Error>
where
    T: aya::Pod + Default + std::ops::Add<Output = T>,
{
    let map: PerCpuArray<MapData, T> =
        PerCpuArray::try_from(open_pinned(pin_dir, name)?).map_err(|e| Error::Map(name, e))?;
    map.iter()
        .map(|v| {
            let v = v.map_err(|e| Error::Map(name, e))?;
            Ok(v.iter().copied().fold(T::default(), |a, c| a + c))
        })
        .collect()
}

/// Zeroes the given slots of a pinned per-CPU map (for slots about to be reused).
pub fn zero_slots<T: aya::Pod + Default>(pin_dir: &Path, name: &'static str, slots: &[u32]) -> Result<(), Error> {
    if slots.is_empty() {
        return Ok(());
    }
    let mut map: PerCpuArray<MapData, T> =
        PerCpuArray::try_from(open_pinned(pin_dir, name)?).map_err(|e| Error::Map(name, e))?;
    let cpus = aya::util::nr_cpus().map_err(|(_, e)| Error::Io("counting CPUs".into(), e))?;
    for &slot in slots {
        let zeros =
            PerCpuValues::try_from(vec![T::default(); cpus]).map_err(|e| Error::Io("per-CPU values".into(), e))?;
        map.set(slot, zeros, 0).map_err(|e| Error::Map(name, e))?;
    }
    Ok(())
}

/// Slots of `COUNTERS` available to rules.
pub const RULE_SLOTS: std::ops::Range<u32> = filter_common::slot::RESERVED..COUNTER_SLOTS;

/// A rule's limits per source as the data plane keeps them; `slot_of` gives a dynamic
/// table's slot.
fn source_limit(rule: &crate::compile::RuleInfo, slot_of: impl Fn(&str) -> u8) -> SourceLimit {
    let l = rule.source_limits;
    let conn_rate = l.max_conn_rate.map(|r| crate::rules::Rate {
        packets: r.connections,
        seconds: r.seconds,
        burst: r.connections,
        per_source: None,
    });
    let overload = rule.overload.as_ref().filter(|_| l.judges_connections());
    SourceLimit {
        slots: l.max_states.or(l.max_conn).unwrap_or(0),
        max_states: l.max_states.unwrap_or(0),
        max_conn: l.max_conn.unwrap_or(0),
        overload_secs: overload.map_or(0, |o| o.secs),
        conn_interval_ns: conn_rate.map_or(0, |r| r.interval_ns()),
        conn_tolerance_ns: conn_rate.map_or(0, |r| r.tolerance_ns()),
        overload: overload.map_or(0, |o| slot_of(&o.table) + 1),
        flush: match overload.map(|o| o.flush) {
            Some(crate::rules::Flush::Rule) => FLUSH_RULE,
            Some(crate::rules::Flush::Global) => FLUSH_GLOBAL,
            _ => FLUSH_NONE,
        },
        _pad: [0; 6],
    }
}
