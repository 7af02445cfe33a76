//! The report as Markdown: the throughput, per-packet, established-flow and flood tables
//! with their ratios and targets.

use std::fmt::Write as _;

use super::*;

impl Report {
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
             its row has the largest list it takes, the first hosts of the IPv4 list. \
             Rows with a rate limit or `log` (issue #13) replace the list by what the \
             ruleset adds to the catch-all; their list hits are the share of drops the \
             limited rule made (the rest went on to the catch-all).\n\n\
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
            let target = if row.receiver == FloodReceiver::Xdpwall && row.family == Family::V4 && row.extra.is_none() {
                targets_at(targets, Some(TargetAt::Flood(row.rules, row.entries)))
            } else {
                "–".into()
            };
            let rules = if row.receiver == FloodReceiver::Ceiling { "–".into() } else { row.rules.to_string() };
            let load = row.load_secs.map_or("–".into(), |t| format!("{t:.1}"));
            let list = row.extra.map_or_else(|| row.list.clone(), Extra::describe);
            let _ = writeln!(
                s,
                "| {} | {} | {rules} | {list} | {mpps} | {to_ceiling} | {to_one} | {counted} | {hits} | {ns} | {load} | {target} |",
                row.family.name(),
                row.receiver.label(),
            );
        }
        let logged: Vec<_> = self.flood.iter().filter_map(|r| Some((r.extra?, r.log?))).collect();
        if !logged.is_empty() {
            s.push_str("\nThe log's counters over each logged row (records written / suppressed by the log rate / lost, ring full):\n\n");
            for (extra, log) in logged {
                let _ = writeln!(s, "- {}: {} / {} / {}", extra.describe(), log.written, log.suppressed, log.lost);
            }
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

/// The targets shown in one row, or `–`.
fn targets_at(targets: &[Target], at: Option<TargetAt>) -> String {
    let shown: Vec<String> = targets
        .iter()
        .filter(|t| Some(t.at) == at)
        .map(|t| format!("{} ({}): {}", t.what, t.value, t.verdict()))
        .collect();
    if shown.is_empty() { "–".into() } else { shown.join("; ") }
}
