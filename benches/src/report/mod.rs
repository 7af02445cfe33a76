//! The benchmark report: Markdown tables (throughput with ratios to the ceiling and to
//! nftables, per-packet cost, the established-flow fast path beside the rule path), the
//! targets with met/missed, a JSON copy of the numbers and an SVG plot of Mpps against
//! rule count. Targets are reported, never enforced.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Serialize, Serializer};

use crate::flood::{Extra, Family};
use crate::ruleset::{MAX_RULES, count};

mod markdown;
mod plot;

/// What a throughput row measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
#[derive(Debug, Clone, Copy, Serialize)]
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
#[derive(Debug, Clone, Serialize)]
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
    #[serde(serialize_with = "outcome")]
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
#[derive(Debug, Clone, Serialize)]
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
    #[serde(serialize_with = "outcome")]
    pub result: Result<f64, String>,
    /// Cost relative to xdpwall with 1 rule and the same kind of packet (median of the
    /// ratios of runs made side by side).
    pub to_one_rule: Option<f64>,
}

/// One per-packet row of the established-flow comparison: a ruleset whose last rule is
/// `pass` with or without `keep state`, and a packet that matches it or no rule.
#[derive(Debug, Clone, Serialize)]
pub struct FlowRow {
    /// Rules.
    pub rules: usize,
    /// Whether the last rule keeps state.
    pub keep_state: bool,
    /// Whether the packet matches the last rule (with `keep state`: a packet of the flow
    /// its first run opened); else it matches no rule.
    pub hit: bool,
    /// Nanoseconds per packet, or why there is none.
    #[serde(serialize_with = "outcome")]
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
#[derive(Debug, Default, Serialize)]
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
#[derive(Debug, Clone, Serialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
        self.flood.iter().find(|r| {
            r.receiver == receiver
                && r.family == family
                && r.rules == rules
                && r.entries == entries
                && r.extra.is_none()
        })
    }

    /// The numbers as JSON: every row as measured, the run's ceiling and the targets.
    pub fn json(&self) -> serde_json::Value {
        #[derive(Serialize)]
        struct Json<'a> {
            #[serde(flatten)]
            report: &'a Report,
            ceiling_mpps: Option<f64>,
            targets: Vec<Target>,
        }
        serde_json::to_value(Json { report: self, ceiling_mpps: self.ceiling_mpps(), targets: self.targets() })
            .expect("the report is plain data")
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
}

/// What receives the flood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
#[derive(Debug, Clone, Serialize)]
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
    /// xdpwall: what the ruleset adds to the plain catch-all (a rate limit, the log).
    pub extra: Option<Extra>,
    /// Rows with `log`: the log's counters over the whole row.
    pub log: Option<LogCounts>,
    /// The rate, or why there is none.
    #[serde(serialize_with = "outcome")]
    pub result: Result<Rate, String>,
}

/// The packet log's counters (`log` in `xdpwall status --json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LogCounts {
    /// Records written to the ring.
    pub written: u64,
    /// Records suppressed by `set log-rate`.
    pub suppressed: u64,
    /// Records lost: the ring was full.
    pub lost: u64,
}

/// A measurement in JSON: the value itself, or `{"error": why}`.
fn outcome<T: Serialize, S: Serializer>(result: &Result<T, String>, s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Failed<'a> {
        error: &'a str,
    }
    match result {
        Ok(value) => value.serialize(s),
        Err(error) => Failed { error }.serialize(s),
    }
}

/// Rules of the live established-flow rows (state fast path beside the pass path).
pub const FLOW_RULES: usize = 1024;

/// The median, lowest and highest of `v` (not empty).
pub fn spread(v: &[f64]) -> (f64, f64, f64) {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

#[cfg(test)]
mod tests;
