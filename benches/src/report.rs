//! The benchmark report: Markdown tables (throughput with ratios to the ceiling and to
//! nftables, per-packet cost, the established-flow fast path beside the rule path), the
//! targets with met/missed, a JSON copy of the numbers and an SVG plot of Mpps against
//! rule count. Targets are reported, never enforced.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::json;

use crate::flood::Family;
use crate::ruleset::{MAX_RULES, count};

/// What a throughput row measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `bench_drop` on the test receiver too: the two pairs should measure alike (≈ 1.00×).
    Ceiling,
    /// xdpwall, the packet matching a `block` rule.
    XdpwallDrop,
    /// xdpwall, the packet matching a `pass` rule (then the kernel stack).
    XdpwallPass,
    /// xdpwall, packets of flows a `pass ... keep state` rule opened, passed by their
    /// state without the rules (then the kernel stack).
    XdpwallState,
    /// No filter: the kernel stack alone (the pass path's reference).
    Stack,
    /// nftables netdev ingress, one rule per rule.
    NftLinear,
    /// nftables netdev ingress, one verdict-map lookup.
    NftSet,
    /// xdp-filter (xdp-tools): a deny list of as many source addresses as xdpwall's rows
    /// have rules (the generator's sources among them), UDP to the rule's port denied too.
    XdpFilter,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Ceiling => "XDP_DROP (bench_drop), as a check",
            Kind::XdpwallDrop => "xdpwall, drop path",
            Kind::XdpwallPass => "xdpwall, pass path (rules), then kernel stack",
            Kind::XdpwallState => "xdpwall, state fast path (established flows), then kernel stack",
            Kind::Stack => "no filter (kernel stack)",
            Kind::NftLinear => "nftables, linear rules",
            Kind::NftSet => "nftables, verdict map",
            Kind::XdpFilter => "xdp-filter, deny list of N source addresses + UDP port",
        }
    }
}

/// A measured rate: the median of the sub-window rates, and their range.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    /// Median frames per second taken in by the receiver.
    pub pps: f64,
    /// Median of the ratios of each sub-window's rate to the ceiling measured just
    /// before it on the reference pair.
    pub to_ceiling: f64,
    /// Median ceiling (frames per second) of this row's reference sub-windows.
    pub ceiling: f64,
    /// Lowest sub-window rate.
    pub min: f64,
    /// Highest sub-window rate.
    pub max: f64,
    /// Median frames per second offered by the generator.
    pub offered: f64,
    /// Share of received frames the filter counted with the expected verdict.
    pub judged: Option<f64>,
    /// Share of those that its address list or table matched (the rest met a catch-all),
    /// where the row tells them apart.
    pub hit_share: Option<f64>,
    /// Nanoseconds per packet inside the receiver's XDP program (kernel run-time
    /// statistics, in a sub-window of their own), if measured.
    pub program_ns: Option<f64>,
}

/// One throughput row.
#[derive(Debug, Clone)]
pub struct ThroughputRow {
    /// What runs on the receiver.
    pub kind: Kind,
    /// Rules (none for the ceiling and the bare stack).
    pub rules: Option<usize>,
    /// Entries of the table the last rule uses, if any.
    pub table: Option<usize>,
    /// A note shown after the label (e.g. `start`, `end`).
    pub note: &'static str,
    /// The rate, or why there is none.
    pub result: Result<Rate, String>,
}

impl ThroughputRow {
    fn size(&self) -> String {
        match (self.rules, self.table) {
            (Some(r), Some(t)) => format!("{r} + {} table", count(t)),
            (Some(r), None) => r.to_string(),
            _ => "–".into(),
        }
    }
}

/// One per-packet row.
#[derive(Debug, Clone)]
pub struct PerPacketRow {
    /// `bench_drop` or `xdpwall`.
    pub program: &'static str,
    /// Rules (0 for bench_drop).
    pub rules: usize,
    /// Table entries, if any.
    pub table: Option<usize>,
    /// Whether the packet matches the last rule (else none).
    pub hit: bool,
    /// Nanoseconds per packet, or why there is none.
    pub result: Result<f64, String>,
    /// Cost relative to xdpwall with 1 rule and the same kind of packet (median of the
    /// ratios of runs made side by side).
    pub to_one_rule: Option<f64>,
}

/// One per-packet row of the established-flow comparison: a ruleset whose last rule is
/// `pass` with or without `keep state`, and a packet that matches it or no rule.
#[derive(Debug, Clone)]
pub struct FlowRow {
    /// Rules.
    pub rules: usize,
    /// Whether the last rule keeps state.
    pub keep_state: bool,
    /// Whether the packet matches the last rule (with `keep state`: a packet of the flow
    /// its first run opened); else it matches no rule.
    pub hit: bool,
    /// Nanoseconds per packet, or why there is none.
    pub result: Result<f64, String>,
    /// Cost relative to the same packet and rules without `keep state` (median of the
    /// ratios of runs made side by side).
    pub to_stateless: Option<f64>,
}

impl FlowRow {
    fn last_rule(&self) -> &'static str {
        if self.keep_state { "`pass … keep state`" } else { "`pass`" }
    }

    fn packet(&self) -> &'static str {
        match (self.keep_state, self.hit) {
            (true, true) => "of the flow the last rule opened",
            (false, true) => "matches the last rule",
            (_, false) => "matches no rule",
        }
    }

    fn path(&self) -> &'static str {
        match (self.keep_state, self.hit) {
            (true, true) => "state fast path (counted as `state`)",
            (false, true) => "rule path (counted by the last rule)",
            (true, false) => "flow lookup finds none, then the rules (default)",
            (false, false) => "the rules (default)",
        }
    }
}

/// Everything one run measured.
#[derive(Debug, Default)]
pub struct Report {
    /// Settings and machine facts, in order.
    pub settings: Vec<(String, String)>,
    /// Throughput rows in the order measured.
    pub throughput: Vec<ThroughputRow>,
    /// Per-packet rows.
    pub per_packet: Vec<PerPacketRow>,
    /// Per-packet rows of the established-flow comparison.
    pub flows: Vec<FlowRow>,
    /// BPF_PROG_TEST_RUN repeats per sample.
    pub repeat: u32,
    /// Every reference (XDP_DROP) sub-window's rate, frames per second.
    pub ceiling_samples: Vec<f64>,
    /// The spoofed-source flood's rows, in the order measured.
    pub flood: Vec<FloodRow>,
}

/// A target and whether it was met.
#[derive(Debug, Clone)]
pub struct Target {
    /// What is asked, e.g. `≥ 0.8× ceiling`.
    pub what: String,
    /// Where it is measured, e.g. `xdpwall drop, 1 rule`.
    pub row: String,
    /// The measured value as text, e.g. `0.93×`.
    pub value: String,
    /// `Some(true)` met, `Some(false)` missed, `None` not measured.
    pub met: Option<bool>,
    /// The row it belongs to: a throughput row (rules, table entries), or a per-packet
    /// row (rules, packet matches the last rule).
    pub at: TargetAt,
}

/// Which table row a target is shown in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetAt {
    /// The xdpwall drop-path throughput row with these rules and table entries.
    Throughput(usize, Option<usize>),
    /// The xdpwall per-packet row with these rules (no table), hit or miss packet.
    PerPacket(usize, bool),
    /// The xdpwall IPv4 flood row with these rules and table entries.
    Flood(usize, Option<usize>),
}

impl Target {
    fn verdict(&self) -> &'static str {
        match self.met {
            Some(true) => "met",
            Some(false) => "missed",
            None => "not measured",
        }
    }
}

impl Report {
    /// The ceiling over the whole run: the median of every reference sub-window.
    pub fn ceiling_mpps(&self) -> Option<f64> {
        (!self.ceiling_samples.is_empty()).then(|| spread(&self.ceiling_samples).0 / 1e6)
    }

    fn find(&self, kind: Kind, rules: usize, table: Option<usize>) -> Option<&ThroughputRow> {
        self.throughput.iter().find(|r| r.kind == kind && r.rules == Some(rules) && r.table == table)
    }

    /// `row`'s rate over that of `kind` with the same rules, each as a share of the
    /// ceiling measured beside it (so drift between the two rows cancels out).
    fn ratio_to(&self, row: &ThroughputRow, kind: Kind) -> Option<f64> {
        let rules = row.rules?;
        if row.table.is_some() {
            return None;
        }
        let other = self.find(kind, rules, None)?.result.as_ref().ok()?;
        Some(row.result.as_ref().ok()?.to_ceiling / other.to_ceiling)
    }

    fn per_packet(&self, rules: usize, table: Option<usize>, hit: bool) -> Option<&PerPacketRow> {
        self.per_packet.iter().find(|r| r.program == "xdpwall" && r.rules == rules && r.table == table && r.hit == hit)
    }

    fn bench_drop_ns(&self) -> Option<f64> {
        self.per_packet.iter().find(|r| r.program == "bench_drop")?.result.as_ref().ok().copied()
    }

    /// The targets of issue #4, evaluated on what was measured.
    pub fn targets(&self) -> Vec<Target> {
        let to_ceiling = |rules: usize, table: Option<usize>, min: f64, row: String| {
            let r = self.find(Kind::XdpwallDrop, rules, table).and_then(|r| Some(r.result.as_ref().ok()?.to_ceiling));
            Target {
                what: format!("≥ {min}× ceiling"),
                row,
                value: r.map_or("–".into(), |r| format!("{r:.2}×")),
                met: r.map(|r| r >= min),
                at: TargetAt::Throughput(rules, table),
            }
        };
        let to_nft = |kind: Kind, min: f64, what: &str| {
            let r = self.find(Kind::XdpwallDrop, 1024, None).and_then(|row| self.ratio_to(row, kind));
            Target {
                what: format!("≥ {min}× {what}"),
                row: "xdpwall drop, 1024 rules".into(),
                value: r.map_or("–".into(), |r| format!("{r:.1}×")),
                met: r.map(|r| r >= min),
                at: TargetAt::Throughput(1024, None),
            }
        };
        // On the packet that matches the last rule: with one rule, a packet that matches
        // none has a field whose class is empty and stops before any bitmap is read, so
        // it is no baseline for the full path.
        let flat = || {
            let r = self.per_packet(4096, None, true).and_then(|r| r.to_one_rule);
            Target {
                what: "≤ 1.5× the 1-rule cost".into(),
                row: "test_run, 4096 rules, packet matching the last rule".into(),
                value: r.map_or("–".into(), |r| format!("{r:.2}×")),
                met: r.map(|r| r <= 1.5),
                at: TargetAt::PerPacket(4096, true),
            }
        };
        let to_xdp_filter = |rules: usize| {
            let r = self.find(Kind::XdpwallDrop, rules, None).and_then(|row| self.ratio_to(row, Kind::XdpFilter));
            Target {
                what: "≥ 1× xdp-filter".into(),
                row: format!(
                    "xdpwall drop, {rules} rule{} (xdp-filter: {rules} address{})",
                    if rules == 1 { "" } else { "s" },
                    if rules == 1 { "" } else { "es" }
                ),
                value: r.map_or("–".into(), |r| format!("{r:.2}×")),
                met: r.map(|r| r >= 1.0),
                at: TargetAt::Throughput(rules, None),
            }
        };
        let mut targets = vec![
            to_ceiling(1, None, 0.8, "xdpwall drop, 1 rule".into()),
            to_ceiling(4096, Some(1_000_000), 0.7, "xdpwall drop, 4096 rules + 1M table".into()),
            to_nft(Kind::NftSet, 2.0, "nftables verdict map"),
            to_nft(Kind::NftLinear, 20.0, "nftables linear"),
            flat(),
            to_xdp_filter(1),
            to_xdp_filter(1024),
        ];
        targets.extend(self.flood_targets());
        targets
    }

    /// The flood's targets (issue #8), on its IPv4 rows: 4096 rules + the big table against
    /// XDP_DROP, xdpwall's own 1-rule row and the nftables set of the same prefixes.
    fn flood_targets(&self) -> Vec<Target> {
        let big = self
            .flood
            .iter()
            .filter(|r| r.receiver == FloodReceiver::Xdpwall && r.family == Family::V4)
            .filter_map(|r| r.entries)
            .max();
        let table = big.and_then(|e| self.flood_row(FloodReceiver::Xdpwall, Family::V4, MAX_RULES, Some(e)));
        fn rate(r: Option<&FloodRow>) -> Option<&Rate> {
            r.and_then(|r| r.result.as_ref().ok())
        }
        let name = format!("flood, xdpwall 4096 rules + {} IPv4 table", big.map_or("1M".into(), count));
        let at = TargetAt::Flood(MAX_RULES, big);
        let one = rate(self.flood_row(FloodReceiver::Xdpwall, Family::V4, 1, None));
        let nft = rate(big.and_then(|e| self.flood_row(FloodReceiver::Nft, Family::V4, 2, Some(e))));
        let t = rate(table);
        let ceiling = t.map(|t| t.to_ceiling);
        let to_one = t.zip(one).map(|(t, o)| t.to_ceiling / o.to_ceiling);
        let to_nft = t.zip(nft).map(|(t, n)| t.to_ceiling / n.to_ceiling);
        vec![
            Target {
                what: "≥ 0.6× XDP_DROP".into(),
                row: name.clone(),
                value: ceiling.map_or("–".into(), |r| format!("{r:.2}×")),
                met: ceiling.map(|r| r >= 0.6),
                at,
            },
            Target {
                what: "≥ 0.85× xdpwall's 1-rule row".into(),
                row: name.clone(),
                value: to_one.map_or("–".into(), |r| format!("{r:.2}×")),
                met: to_one.map(|r| r >= 0.85),
                at,
            },
            Target {
                what: "≥ 10× the nftables set".into(),
                row: name,
                value: to_nft.map_or("–".into(), |r| format!("{r:.1}×")),
                met: to_nft.map(|r| r >= 10.0),
                at,
            },
        ]
    }

    fn flood_row(
        &self,
        receiver: FloodReceiver,
        family: Family,
        rules: usize,
        entries: Option<usize>,
    ) -> Option<&FloodRow> {
        self.flood
            .iter()
            .find(|r| r.receiver == receiver && r.family == family && r.rules == rules && r.entries == entries)
    }

    /// The flood section: one table of every row, with ratios to XDP_DROP (measured beside
    /// each row) and to xdpwall's 1-rule row of the same family.
    fn flood_markdown(&self, s: &mut String, targets: &[Target]) {
        if self.flood.is_empty() {
            return;
        }
        s.push_str(
            "\n## Spoofed-source flood: large blocklists (issue #8)\n\n\
             The generator draws every frame's source at random: IPv4 from all 16M addresses \
             of 1.0.0.0/8, IPv6 from all 2^96 of 2001:db8::/32 (UDP to port 6000), so no \
             lookup structure stays in cache. Lists are drawn inside those networks with a \
             fixed seed: IPv4 every 256th entry a /24, the rest /32s; IPv6 every 256th a /48, \
             every 16th a /64, the rest /128s; no entry inside another. Every row drops every \
             frame, so the rate is the filter's and not the kernel stack's: the list drops the \
             sources it holds and a catch-all (`block in proto udp to port 6000`; nftables \
             `udp dport 6000 drop`; `xdp-filter port 6000`) the rest, each counted apart. \
             List hits: the share of dropped frames the list matched, measured (from the \
             receiver's counters) / expected (the list's share of the address space). \
             × XDP_DROP: median of the ratios to XDP_DROP on the reference pair, with the same \
             traffic, in the sub-window just before each. × 1 rule: × XDP_DROP over that of \
             xdpwall's 1-rule row with the same traffic. Load s: time to put the list in \
             place (xdpwall: `load`/`apply`, which compiles; nftables: `nft -f`; xdp-filter: \
             filling its pinned map). xdp-filter holds hosts only, in a hash of fixed size: \
             its row has the largest list it takes, the first hosts of the IPv4 list.\n\n\
             | traffic | receiver | rules | list | Mpps | × XDP_DROP | × 1 rule | counted | list hits measured / expected | ns in XDP program | load s | target |\n\
             |---|---|---|---|---|---|---|---|---|---|---|---|\n",
        );
        for row in &self.flood {
            let one = self.flood_row(FloodReceiver::Xdpwall, row.family, 1, None).and_then(|r| r.result.as_ref().ok());
            let (mpps, to_ceiling, to_one, counted, hits, ns) = match &row.result {
                Ok(r) => (
                    format!("{:.3} [{:.3}–{:.3}]", r.pps / 1e6, r.min / 1e6, r.max / 1e6),
                    format!("{:.2}", r.to_ceiling),
                    one.map_or("–".into(), |o| format!("{:.2}", r.to_ceiling / o.to_ceiling)),
                    r.judged.map_or("–".into(), |j| format!("{:.1}%", j * 100.0)),
                    match (r.hit_share, row.expected_hits) {
                        (None, None) => "–".into(),
                        (m, e) => format!("{} / {}", percent(m), percent(e)),
                    },
                    r.program_ns.map_or("–".into(), |ns| format!("{ns:.0}")),
                ),
                Err(e) => (format!("failed: {e}"), "–".into(), "–".into(), "–".into(), "–".into(), "–".into()),
            };
            let target = if row.receiver == FloodReceiver::Xdpwall && row.family == Family::V4 {
                targets_at(targets, Some(TargetAt::Flood(row.rules, row.entries)))
            } else {
                "–".into()
            };
            let rules = if row.receiver == FloodReceiver::Ceiling { "–".into() } else { row.rules.to_string() };
            let load = row.load_secs.map_or("–".into(), |t| format!("{t:.1}"));
            let _ = writeln!(
                s,
                "| {} | {} | {rules} | {} | {mpps} | {to_ceiling} | {to_one} | {counted} | {hits} | {ns} | {load} | {target} |",
                row.family.name(),
                row.receiver.label(),
                row.list,
            );
        }
    }

    /// The report as Markdown.
    pub fn markdown(&self) -> String {
        let targets = self.targets();
        let mut s = String::from("# xdpwall benchmark report\n\n");
        for (k, v) in &self.settings {
            let _ = writeln!(s, "- {k}: {v}");
        }

        s.push_str("\n## Throughput (veth pairs, XDP live-frames generator)\n\n");
        let _ = write!(
            s,
            "Mpps: frames the test receiver took in per second (median of the sub-windows; range in \
             brackets). Ceiling: XDP_DROP on the reference pair, measured in a sub-window just before \
             each test sub-window (over the whole run: {}). × ceiling: median of those paired \
             ratios. × nft: this row's × ceiling over nftables' with the same rules; × xdp-filter: over \
             xdp-filter's with as many addresses as rules (it drops the sources it lists and, \
             by its UDP port list, the rest; with fewer than 16 addresses it lists only some \
             of the generator's 16 sources). Counted: the \
             share of received frames that the filter's own counter gave the expected verdict \
             (for the state fast path: the `state` counter; in brackets, the share the address \
             list matched). ns in XDP program: the time inside \
             the receiver's program per packet, from the kernel's run-time statistics in one more \
             sub-window, median of its readings (they cost every program two clock reads per \
             run, so no rate is taken meanwhile; bench_drop's figure is about what the clock \
             reads add).\n\n",
            self.ceiling_mpps().map_or("–".into(), |c| format!("{c:.3} Mpps median"))
        );
        s.push_str("| receiver | rules | Mpps | ceiling Mpps | × ceiling | × nft map | × nft linear | × xdp-filter | counted | ns in XDP program | target |\n");
        s.push_str("|---|---|---|---|---|---|---|---|---|---|---|\n");
        for row in &self.throughput {
            let label = if row.note.is_empty() {
                row.kind.label().to_string()
            } else {
                format!("{} ({})", row.kind.label(), row.note)
            };
            let (mpps, ceiling, to_ceiling, counted, program_ns) = match &row.result {
                Ok(r) => (
                    format!("{:.3} [{:.3}–{:.3}]", r.pps / 1e6, r.min / 1e6, r.max / 1e6),
                    format!("{:.3}", r.ceiling / 1e6),
                    format!("{:.2}", r.to_ceiling),
                    counted(r),
                    r.program_ns.map_or("–".into(), |ns| format!("{ns:.0}")),
                ),
                Err(e) => (format!("failed: {e}"), "–".into(), "–".into(), "–".into(), "–".into()),
            };
            let (to_set, to_linear, to_xdp_filter) = if matches!(row.kind, Kind::XdpwallDrop) {
                (
                    self.ratio_to(row, Kind::NftSet).map_or("–".into(), |r| format!("{r:.1}")),
                    self.ratio_to(row, Kind::NftLinear).map_or("–".into(), |r| format!("{r:.1}")),
                    self.ratio_to(row, Kind::XdpFilter).map_or("–".into(), |r| format!("{r:.2}")),
                )
            } else {
                ("–".into(), "–".into(), "–".into())
            };
            let at = row.rules.map(|r| TargetAt::Throughput(r, row.table));
            let target = if row.kind == Kind::XdpwallDrop { targets_at(&targets, at) } else { "–".into() };
            let _ = writeln!(
                s,
                "| {label} | {} | {mpps} | {ceiling} | {to_ceiling} | {to_set} | {to_linear} | {to_xdp_filter} | {counted} | {program_ns} | {target} |",
                row.size()
            );
        }

        let _ = write!(
            s,
            "\n## Per-packet cost (BPF_PROG_TEST_RUN, repeat {})\n\n\
             ns/packet: the kernel's average over the repeats, median of the rounds (every case runs \
             once per round, so noise falls on all alike). It includes the test-run loop itself, \
             which is about what `bench_drop` costs; \"added\" is the difference. × 1 rule: median \
             of the per-round ratios to xdpwall with 1 rule and the same kind of packet. Caches \
             stay warm (the same packet each time): live traffic costs more. With 1 rule, a packet \
             that matches no rule stops at its first field with an empty class, so the target \
             compares packets that match the last rule.\n\n",
            self.repeat
        );
        s.push_str("| program | rules | table | packet | ns/packet | added ns | × 1 rule | target |\n");
        s.push_str("|---|---|---|---|---|---|---|---|\n");
        let base = self.bench_drop_ns();
        for row in &self.per_packet {
            let packet = if row.program == "bench_drop" {
                "any"
            } else if row.hit {
                "matches the last rule"
            } else {
                "matches no rule"
            };
            let (ns, added) = match &row.result {
                Ok(ns) => (format!("{ns:.0}"), base.map_or("–".into(), |b| format!("{:.0}", ns - b))),
                Err(e) => (format!("failed: {e}"), "–".into()),
            };
            let to_one = row.to_one_rule.map_or("–".into(), |r| format!("{r:.2}"));
            let target = if row.program == "xdpwall" && row.table.is_none() {
                targets_at(&targets, Some(TargetAt::PerPacket(row.rules, row.hit)))
            } else {
                "–".into()
            };
            let rules = if row.program == "bench_drop" { "–".to_string() } else { row.rules.to_string() };
            let table = row.table.map_or("–".into(), count);
            let _ = writeln!(
                s,
                "| {} | {rules} | {table} | {packet} | {ns} | {added} | {to_one} | {target} |",
                row.program
            );
        }

        self.flows_markdown(&mut s);
        self.flood_markdown(&mut s, &targets);

        s.push_str("\n## Targets\n\n| target | where | measured | |\n|---|---|---|---|\n");
        for t in &targets {
            let _ = writeln!(s, "| {} | {} | {} | {} |", t.what, t.row, t.value, t.verdict());
        }
        let missed = targets.iter().filter(|t| t.met == Some(false)).count();
        let met = targets.iter().filter(|t| t.met == Some(true)).count();
        let _ = writeln!(s, "\n{met} of {} targets met, {missed} missed.", targets.len());
        s
    }

    /// The established-flow section: the per-packet rows, then the live rows side by side.
    fn flows_markdown(&self, s: &mut String) {
        let live = |kind: Kind| {
            self.throughput
                .iter()
                .find(|r| r.kind == kind && r.rules == Some(FLOW_RULES) && r.table.is_none())
                .and_then(|r| r.result.as_ref().ok())
        };
        let (pass, state) = (live(Kind::XdpwallPass), live(Kind::XdpwallState));
        if self.flows.is_empty() && pass.is_none() && state.is_none() {
            return;
        }
        s.push_str(
            "\n## Established flows: state fast path beside the rule path\n\n\
             Rulesets as above with the last rule `pass`, once with `keep state` and once \
             without. With `keep state`, the first packet of a flow passes by the rule and opens \
             the flow; the flow's next packets pass by its state without the rules (the fast \
             path). State only ever passes packets, so the fast path is compared with the \
             rule path of packets that pass.\n\n",
        );
        if !self.flows.is_empty() {
            let _ = write!(
                s,
                "BPF_PROG_TEST_RUN, in the same rounds as the per-packet table (repeat {}); a \
                 flow's packet is measured after one run of it opened the flow. Every run is \
                 checked against the program's counters (all repeats counted as `state`, by the \
                 last rule, or by the default policy, as the row says), else the row fails. \
                 × without keep state: median of the per-round ratios to the same packet and \
                 rules without `keep state`.\n\n",
                self.repeat
            );
            s.push_str("| rules | last rule | packet | path | ns/packet | added ns | × without keep state |\n");
            s.push_str("|---|---|---|---|---|---|---|\n");
            let base = self.bench_drop_ns();
            for row in &self.flows {
                let (ns, added) = match &row.result {
                    Ok(ns) => (format!("{ns:.0}"), base.map_or("–".into(), |b| format!("{:.0}", ns - b))),
                    Err(e) => (format!("failed: {e}"), "–".into()),
                };
                let ratio = if row.keep_state {
                    row.to_stateless.map_or("–".into(), |r| format!("{r:.2}"))
                } else {
                    "1".into()
                };
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {ns} | {added} | {ratio} |",
                    row.rules,
                    row.last_rule(),
                    row.packet(),
                    row.path()
                );
            }
        }
        if pass.is_some() || state.is_some() {
            let _ = write!(
                s,
                "\nLive traffic at {FLOW_RULES} rules (the throughput rows above): the generator's \
                 flows all match the last rule and a warm-up opened them before sampling, so \
                 with `keep state` every packet passes by state. Passed packets go on to the \
                 kernel stack, which costs far more than the filter, so the two rates say \
                 little about it (their difference is mostly noise); what the fast path \
                 changes is the time inside the XDP program. The flows differ only in source \
                 address (within the last rule's /28) and port, so on the rule path they share \
                 classifier entries while each has a flow entry of its own: the rule path's \
                 best case for caches.\n\n\
                 | {FLOW_RULES} rules | pass path (rules) | state fast path | state / rule path |\n\
                 |---|---|---|---|\n"
            );
            let ns = |r: Option<&Rate>| r.and_then(|r| r.program_ns);
            // bench_drop's figure on the test pair: what the clock reads add.
            let floor = self
                .throughput
                .iter()
                .find(|r| r.kind == Kind::Ceiling)
                .and_then(|r| r.result.as_ref().ok()?.program_ns);
            let added = |r: Option<&Rate>| Some(ns(r)? - floor?);
            let cell = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.0}"));
            let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
                _ => "–".into(),
            };
            let _ = writeln!(
                s,
                "| ns in XDP program | {} | {} | {} |",
                cell(ns(pass)),
                cell(ns(state)),
                ratio(ns(state), ns(pass))
            );
            let _ = writeln!(
                s,
                "| the same less bench_drop's ({}: the clock reads) | {} | {} | {} |",
                cell(floor),
                cell(added(pass)),
                cell(added(state)),
                ratio(added(state), added(pass))
            );
            let mpps = |r: Option<&Rate>| {
                r.map_or("–".into(), |r| format!("{:.3} ({:.2}× ceiling)", r.pps / 1e6, r.to_ceiling))
            };
            let _ = writeln!(
                s,
                "| Mpps taken in, then the kernel stack | {} | {} | {} |",
                mpps(pass),
                mpps(state),
                ratio(state.map(|r| r.to_ceiling), pass.map(|r| r.to_ceiling))
            );
        }
    }

    /// The numbers as JSON.
    pub fn json(&self) -> serde_json::Value {
        let rows: Vec<_> = self
            .throughput
            .iter()
            .map(|r| {
                json!({
                    "receiver": r.kind.label(),
                    "note": r.note,
                    "rules": r.rules,
                    "table_entries": r.table,
                    "mpps": r.result.as_ref().ok().map(|x| x.pps / 1e6),
                    "to_ceiling": r.result.as_ref().ok().map(|x| x.to_ceiling),
                    "ceiling_mpps": r.result.as_ref().ok().map(|x| x.ceiling / 1e6),
                    "mpps_min": r.result.as_ref().ok().map(|x| x.min / 1e6),
                    "mpps_max": r.result.as_ref().ok().map(|x| x.max / 1e6),
                    "offered_mpps": r.result.as_ref().ok().map(|x| x.offered / 1e6),
                    "counted_share": r.result.as_ref().ok().and_then(|x| x.judged),
                    "list_hit_share": r.result.as_ref().ok().and_then(|x| x.hit_share),
                    "program_ns": r.result.as_ref().ok().and_then(|x| x.program_ns),
                    "error": r.result.as_ref().err(),
                })
            })
            .collect();
        let per_packet: Vec<_> = self
            .per_packet
            .iter()
            .map(|r| {
                json!({
                    "program": r.program,
                    "rules": r.rules,
                    "table_entries": r.table,
                    "packet": if r.hit { "last rule" } else { "no rule" },
                    "ns": r.result.as_ref().ok(),
                    "to_one_rule": r.to_one_rule,
                    "error": r.result.as_ref().err(),
                })
            })
            .collect();
        let flows: Vec<_> = self
            .flows
            .iter()
            .map(|r| {
                json!({
                    "rules": r.rules,
                    "keep_state": r.keep_state,
                    "packet": if r.hit { "last rule" } else { "no rule" },
                    "path": r.path(),
                    "ns": r.result.as_ref().ok(),
                    "to_stateless": r.to_stateless,
                    "error": r.result.as_ref().err(),
                })
            })
            .collect();
        let targets: Vec<_> = self
            .targets()
            .iter()
            .map(|t| json!({"target": t.what, "where": t.row, "measured": t.value, "met": t.met}))
            .collect();
        json!({
            "settings": self.settings.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
            "ceiling_mpps": self.ceiling_mpps(),
            "throughput": rows,
            "per_packet": per_packet,
            "established_flows": flows,
            "test_run_repeat": self.repeat,
            "targets": targets,
            "flood": self.flood.iter().map(|r| json!({
                "traffic": r.family.name(),
                "receiver": r.receiver.label(),
                "rules": r.rules,
                "table_entries": r.entries,
                "list": r.list,
                "mpps": r.result.as_ref().ok().map(|x| x.pps / 1e6),
                "to_ceiling": r.result.as_ref().ok().map(|x| x.to_ceiling),
                "ceiling_mpps": r.result.as_ref().ok().map(|x| x.ceiling / 1e6),
                "counted_share": r.result.as_ref().ok().and_then(|x| x.judged),
                "list_hit_share": r.result.as_ref().ok().and_then(|x| x.hit_share),
                "list_hit_share_expected": r.expected_hits,
                "program_ns": r.result.as_ref().ok().and_then(|x| x.program_ns),
                "load_secs": r.load_secs,
                "error": r.result.as_ref().err(),
            })).collect::<Vec<_>>(),
        })
    }

    /// Writes report.md, report.json and throughput.svg into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let md = dir.join("report.md");
        std::fs::write(&md, self.markdown()).with_context(|| format!("writing {}", md.display()))?;
        let js = dir.join("report.json");
        std::fs::write(&js, serde_json::to_string_pretty(&self.json())?)
            .with_context(|| format!("writing {}", js.display()))?;
        self.plot(&dir.join("throughput.svg"))
    }

    /// Mpps against rule count: one line per receiver kind, the ceiling as a flat line.
    /// Each point is its row's paired ratio to the ceiling times the run's median ceiling,
    /// so drift during the run does not bend the lines.
    pub fn plot(&self, path: &Path) -> Result<()> {
        use plotters::prelude::*;

        let ceiling = self.ceiling_mpps();
        let scaled = |r: &ThroughputRow| Some(r.result.as_ref().ok()?.to_ceiling * ceiling?);
        let series = |kind: Kind| -> Vec<(f64, f64)> {
            let mut v: Vec<(f64, f64)> = self
                .throughput
                .iter()
                .filter(|r| r.kind == kind && r.table.is_none())
                .filter_map(|r| Some((r.rules? as f64, scaled(r)?)))
                .collect();
            v.sort_by(|a, b| a.0.total_cmp(&b.0));
            v
        };
        let lines = [
            (Kind::XdpwallDrop, "xdpwall (drop path)", RGBColor(0x1f, 0x77, 0xb4)),
            (Kind::NftSet, "nftables verdict map", RGBColor(0x2c, 0xa0, 0x2c)),
            (Kind::NftLinear, "nftables linear", RGBColor(0xd6, 0x27, 0x28)),
            (Kind::XdpFilter, "xdp-filter (as many addresses)", RGBColor(0xff, 0x7f, 0x0e)),
        ];
        let table_point: Vec<(f64, f64)> = self
            .throughput
            .iter()
            .filter(|r| r.kind == Kind::XdpwallDrop && r.table.is_some())
            .filter_map(|r| Some((r.rules? as f64, scaled(r)?)))
            .collect();
        let top = self.throughput.iter().filter_map(scaled).fold(ceiling.unwrap_or(0.0), f64::max).max(0.1) * 1.15;

        let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
        let err = |e: &dyn std::fmt::Display| anyhow::anyhow!("drawing {}: {e}", path.display());
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Throughput against rule count (veth, 1 receiving core)", ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d((1f64..8192f64).log_scale(), 0f64..top)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("rules (log scale)")
            .y_desc("Mpps (paired ratio × median ceiling)")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .draw()
            .map_err(|e| err(&e))?;
        if let Some(c) = ceiling {
            let grey = RGBColor(0x55, 0x55, 0x55);
            chart
                .draw_series(LineSeries::new([(1.0, c), (8192.0, c)], grey.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(format!("XDP_DROP ceiling ({c:.2} Mpps)"))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], grey.stroke_width(2)));
        }
        for (kind, name, color) in lines {
            let points = series(kind);
            if points.is_empty() {
                continue;
            }
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
            chart.draw_series(points.into_iter().map(|p| Circle::new(p, 4, color.filled()))).map_err(|e| err(&e))?;
        }
        if !table_point.is_empty() {
            let color = RGBColor(0x94, 0x67, 0xbd);
            chart
                .draw_series(table_point.into_iter().map(|p| TriangleMarker::new(p, 7, color.filled())))
                .map_err(|e| err(&e))?
                .label("xdpwall, + 1M-entry table")
                .legend(move |(x, y)| TriangleMarker::new((x + 10, y), 6, color.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::MiddleLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
        Ok(())
    }
}

/// What receives the flood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloodReceiver {
    /// `bench_drop` on the test pair: the ceiling, with this traffic.
    Ceiling,
    /// xdpwall (its CLI).
    Xdpwall,
    /// An nftables netdev ingress chain with an interval set.
    Nft,
    /// xdp-filter (xdp-tools).
    XdpFilter,
}

impl FloodReceiver {
    fn label(self) -> &'static str {
        match self {
            FloodReceiver::Ceiling => "XDP_DROP (bench_drop)",
            FloodReceiver::Xdpwall => "xdpwall",
            FloodReceiver::Nft => "nftables netdev, interval set",
            FloodReceiver::XdpFilter => "xdp-filter",
        }
    }
}

/// One row of the spoofed-source flood.
#[derive(Debug, Clone)]
pub struct FloodRow {
    /// The traffic's family (and the list's).
    pub family: Family,
    /// What receives it.
    pub receiver: FloodReceiver,
    /// xdpwall: rules in all (1: the catch-all alone); nftables and xdp-filter: 2 (the
    /// list and the catch-all); the ceiling: 0.
    pub rules: usize,
    /// Entries of the list, if any.
    pub entries: Option<usize>,
    /// The list, described (e.g. `1M: 3907 /24 + 996093 /32`).
    pub list: String,
    /// The share of the flood's sources the list holds.
    pub expected_hits: Option<f64>,
    /// Seconds to put the list in place.
    pub load_secs: Option<f64>,
    /// The rate, or why there is none.
    pub result: Result<Rate, String>,
}

/// `12.3%`, `0.060%`, or `–`.
fn percent(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(v) if v * 100.0 < 1.0 => format!("{:.3}%", v * 100.0),
        Some(v) => format!("{:.1}%", v * 100.0),
    }
}

/// The counted cell: the share given the expected verdict, and in brackets the share the
/// address list matched, if known.
fn counted(r: &Rate) -> String {
    match (r.judged, r.hit_share) {
        (None, _) => "–".into(),
        (Some(j), None) => format!("{:.1}%", j * 100.0),
        (Some(j), h) => format!("{:.1}% ({} by address)", j * 100.0, percent(h)),
    }
}

/// Rules of the live established-flow rows (state fast path beside the pass path).
pub const FLOW_RULES: usize = 1024;

/// The targets shown in one row, or `–`.
fn targets_at(targets: &[Target], at: Option<TargetAt>) -> String {
    let shown: Vec<String> = targets
        .iter()
        .filter(|t| Some(t.at) == at)
        .map(|t| format!("{} ({}): {}", t.what, t.value, t.verdict()))
        .collect();
    if shown.is_empty() { "–".into() } else { shown.join("; ") }
}

/// The median, lowest and highest of `v` (not empty).
pub fn spread(v: &[f64]) -> (f64, f64, f64) {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(to_ceiling: f64) -> Result<Rate, String> {
        Ok(Rate {
            pps: to_ceiling * 2e6,
            to_ceiling,
            ceiling: 2e6,
            min: 0.0,
            max: 0.0,
            offered: 0.0,
            judged: Some(1.0),
            hit_share: None,
            program_ns: None,
        })
    }

    fn row(kind: Kind, rules: usize, table: Option<usize>, to_ceiling: f64) -> ThroughputRow {
        ThroughputRow { kind, rules: Some(rules), table, note: "", result: rate(to_ceiling) }
    }

    fn pp(rules: usize, hit: bool, ns: f64) -> PerPacketRow {
        PerPacketRow { program: "xdpwall", rules, table: None, hit, result: Ok(ns), to_one_rule: Some(ns / 100.0) }
    }

    fn report() -> Report {
        Report {
            settings: vec![("mode".into(), "test".into())],
            throughput: vec![
                row(Kind::XdpwallDrop, 1, None, 0.9),
                row(Kind::XdpwallDrop, 1024, None, 0.8),
                row(Kind::XdpwallDrop, 4096, Some(1_000_000), 0.6),
                row(Kind::NftSet, 1024, None, 0.5),
                row(Kind::NftLinear, 1024, None, 0.02),
                row(Kind::XdpFilter, 1, None, 0.75),
                row(Kind::XdpFilter, 1024, None, 0.85),
                ThroughputRow {
                    kind: Kind::NftLinear,
                    rules: Some(4096),
                    table: None,
                    note: "",
                    result: Err("boom".into()),
                },
            ],
            per_packet: vec![
                PerPacketRow {
                    program: "bench_drop",
                    rules: 0,
                    table: None,
                    hit: true,
                    result: Ok(30.0),
                    to_one_rule: None,
                },
                pp(1, true, 100.0),
                pp(1, false, 100.0),
                pp(4096, true, 140.0),
                pp(4096, false, 160.0),
            ],
            flows: Vec::new(),
            repeat: 1000,
            ceiling_samples: vec![2e6, 1.8e6, 2.2e6],
            flood: Vec::new(),
        }
    }

    fn flow(rules: usize, keep_state: bool, hit: bool, ns: f64) -> FlowRow {
        FlowRow { rules, keep_state, hit, result: Ok(ns), to_stateless: keep_state.then_some(ns / 150.0) }
    }

    /// The report with the established-flow rows: per packet and live.
    fn flows_report() -> Report {
        let mut r = report();
        r.flows = vec![
            flow(1024, false, true, 150.0),
            flow(1024, true, true, 90.0),
            flow(1024, false, false, 150.0),
            FlowRow { result: Err("action 1, expected 2".into()), to_stateless: None, ..flow(1024, true, false, 0.0) },
        ];
        let live = |kind, to_ceiling, ns| {
            let mut row = row(kind, 1024, None, to_ceiling);
            if let Ok(rate) = &mut row.result {
                rate.program_ns = Some(ns);
            }
            row
        };
        r.throughput.push(live(Kind::XdpwallPass, 0.1, 120.0));
        r.throughput.push(live(Kind::XdpwallState, 0.102, 60.0));
        r
    }

    #[test]
    fn targets_are_met_or_missed_by_the_numbers() {
        let t = report().targets();
        let verdicts: Vec<_> = t.iter().map(|t| (t.value.as_str(), t.met)).collect();
        assert_eq!(
            verdicts,
            [
                ("0.90×", Some(true)),  // 1 rule: ≥ 0.8
                ("0.60×", Some(false)), // 4096 + 1M: ≥ 0.7
                ("1.6×", Some(false)),  // 0.8 / 0.5 vs ≥ 2
                ("40.0×", Some(true)),  // 0.8 / 0.02 vs ≥ 20
                ("1.40×", Some(true)),  // 140 / 100 vs ≤ 1.5
                ("1.20×", Some(true)),  // 0.9 / 0.75 vs ≥ 1
                ("0.94×", Some(false)), // 0.8 / 0.85 vs ≥ 1
                ("–", None),            // no flood rows
                ("–", None),
                ("–", None),
            ]
        );
        assert_eq!(Report::default().targets().iter().filter(|t| t.met.is_none()).count(), 10);
    }

    #[test]
    fn markdown_shows_ratios_targets_and_failures() {
        let md = report().markdown();
        assert!(md.contains("| xdpwall, drop path | 1 | 1.800 [0.000–0.000] | 2.000 | 0.90 | – | – | 1.20 | 100.0% | – | ≥ 0.8× ceiling (0.90×): met; ≥ 1× xdp-filter (1.20×): met |"));
        assert!(md.contains("| xdpwall, drop path | 1024 | 1.600 [0.000–0.000] | 2.000 | 0.80 | 1.6 | 40.0 | 0.94 | 100.0% | – | ≥ 2× nftables verdict map (1.6×): missed; ≥ 20× nftables linear (40.0×): met; ≥ 1× xdp-filter (0.94×): missed |"));
        assert!(md.contains("| xdp-filter, deny list of N source addresses + UDP port | 1 | 1.500 [0.000–0.000] | 2.000 | 0.75 | – | – | – | 100.0% | – | – |"));
        assert!(md.contains("| nftables, linear rules | 4096 | failed: boom |"));
        assert!(md.contains(
            "| xdpwall | 4096 | – | matches the last rule | 140 | 110 | 1.40 | ≤ 1.5× the 1-rule cost (1.40×): met |"
        ));
        assert!(md.contains("| xdpwall | 4096 | – | matches no rule | 160 | 130 | 1.60 | – |"));
        assert!(md.contains("(over the whole run: 2.000 Mpps median)"));
        assert!(md.contains("4 of 10 targets met, 3 missed."));
        assert!(!md.contains("Established flows"));
        assert!(!md.contains("Spoofed-source flood"));
    }

    #[test]
    fn established_flows_side_by_side() {
        let r = flows_report();
        let md = r.markdown();
        assert!(md.contains("| xdpwall, state fast path (established flows), then kernel stack | 1024 | 0.204 [0.000–0.000] | 2.000 | 0.10 | – | – | – | 100.0% | 60 | – |"));
        assert!(md.contains("| xdpwall, pass path (rules), then kernel stack | 1024 | 0.200 [0.000–0.000] | 2.000 | 0.10 | – | – | – | 100.0% | 120 | – |"));
        assert!(md.contains("## Established flows: state fast path beside the rule path"));
        assert!(md.contains(
            "| 1024 | `pass` | matches the last rule | rule path (counted by the last rule) | 150 | 120 | 1 |"
        ));
        assert!(md.contains("| 1024 | `pass … keep state` | of the flow the last rule opened | state fast path (counted as `state`) | 90 | 60 | 0.60 |"));
        assert!(md.contains("| 1024 | `pass … keep state` | matches no rule | flow lookup finds none, then the rules (default) | failed: action 1, expected 2 | – | – |"));
        assert!(md.contains("| ns in XDP program | 120 | 60 | 0.50 |"));
        assert!(md.contains("| the same less bench_drop's (–: the clock reads) | – | – | – |"));
        assert!(md.contains(
            "| Mpps taken in, then the kernel stack | 0.200 (0.10× ceiling) | 0.204 (0.10× ceiling) | 1.02 |"
        ));
        let js = r.json();
        assert_eq!(js["established_flows"][1]["to_stateless"], 0.6);
        assert_eq!(js["established_flows"][1]["keep_state"], true);
        assert_eq!(js["throughput"].as_array().unwrap().last().unwrap()["program_ns"], 60.0);
        // The live rows carry no targets and change none.
        assert_eq!(
            r.targets().iter().map(|t| t.met).collect::<Vec<_>>(),
            report().targets().iter().map(|t| t.met).collect::<Vec<_>>()
        );
        // With bench_drop's figure, the same less it.
        let mut r = r;
        r.throughput.insert(
            0,
            ThroughputRow {
                kind: Kind::Ceiling,
                rules: None,
                table: None,
                note: "",
                result: rate(1.0).map(|x| Rate { program_ns: Some(20.0), ..x }),
            },
        );
        assert!(r.markdown().contains("| the same less bench_drop's (20: the clock reads) | 100 | 40 | 0.40 |"));
    }

    fn flood_row(
        family: Family,
        receiver: FloodReceiver,
        rules: usize,
        entries: Option<usize>,
        to_ceiling: f64,
    ) -> FloodRow {
        FloodRow {
            family,
            receiver,
            rules,
            entries,
            list: entries.map_or("–".into(), count),
            expected_hits: entries.map(|_| 0.12),
            load_secs: entries.map(|_| 2.0),
            result: rate(to_ceiling).map(|r| Rate { hit_share: entries.map(|_| 0.118), program_ns: Some(100.0), ..r }),
        }
    }

    #[test]
    fn flood_rows_and_targets() {
        let mut r = report();
        let m = Some(1_000_000);
        r.flood = vec![
            flood_row(Family::V4, FloodReceiver::Ceiling, 0, None, 1.0),
            flood_row(Family::V4, FloodReceiver::Xdpwall, 1, None, 0.9),
            flood_row(Family::V4, FloodReceiver::Xdpwall, 2, m, 0.8),
            flood_row(Family::V4, FloodReceiver::Xdpwall, 4096, m, 0.72),
            flood_row(Family::V6, FloodReceiver::Xdpwall, 1, None, 0.8),
            flood_row(Family::V6, FloodReceiver::Xdpwall, 2, m, 0.4),
            flood_row(Family::V4, FloodReceiver::Nft, 2, m, 0.06),
            FloodRow {
                result: Err("no xdp-filter".into()),
                ..flood_row(Family::V4, FloodReceiver::XdpFilter, 2, None, 0.0)
            },
        ];
        let verdicts: Vec<_> = r.flood_targets().iter().map(|t| (t.value.clone(), t.met)).collect();
        assert_eq!(
            verdicts,
            [
                ("0.72×".to_string(), Some(true)),  // ≥ 0.6 XDP_DROP
                ("0.80×".to_string(), Some(false)), // 0.72 / 0.9 vs ≥ 0.85
                ("12.0×".to_string(), Some(true)),  // 0.72 / 0.06 vs ≥ 10
            ]
        );
        let md = r.markdown();
        assert!(md.contains("## Spoofed-source flood: large blocklists (issue #8)"));
        assert!(md.contains("| IPv4 | xdpwall | 4096 | 1M | 1.440 [0.000–0.000] | 0.72 | 0.80 | 100.0% | 11.8% / 12.0% | 100 | 2.0 | ≥ 0.6× XDP_DROP (0.72×): met; ≥ 0.85× xdpwall's 1-rule row (0.80×): missed; ≥ 10× the nftables set (12.0×): met |"));
        assert!(md.contains(
            "| IPv6 | xdpwall | 2 | 1M | 0.800 [0.000–0.000] | 0.40 | 0.50 | 100.0% | 11.8% / 12.0% | 100 | 2.0 | – |"
        ));
        assert!(md.contains(
            "| IPv4 | XDP_DROP (bench_drop) | – | – | 2.000 [0.000–0.000] | 1.00 | 1.11 | 100.0% | – | 100 | – | – |"
        ));
        assert!(md.contains("| IPv4 | xdp-filter | 2 | – | failed: no xdp-filter |"));
        let js = r.json();
        assert_eq!(js["flood"][3]["rules"], 4096);
        assert_eq!(js["flood"][3]["list_hit_share"], 0.118);
    }

    #[test]
    fn plot_is_written() {
        let path = std::env::temp_dir().join(format!("xdpwall-benches-plot-{}.svg", std::process::id()));
        report().plot(&path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(svg.contains("<svg") && svg.contains("xdpwall (drop path)"));
    }
}
