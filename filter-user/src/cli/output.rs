//! Human-readable output of the commands.

use std::{fmt::Write as _, path::Path};

use filter_common::field;

use crate::{
    compile::{AddrLookup, Compiled},
    dataplane::{ApplyReport, Diff, FlowEntry, Status},
    rules::{Action, Ruleset},
};

fn action(a: Action) -> &'static str {
    match a {
        Action::Pass => "pass",
        Action::Block => "block",
    }
}

/// `xdpwall check`: what the ruleset is and what it compiles to.
pub fn summary(path: &Path, rs: &Ruleset, c: &Compiled) -> String {
    let mut s = String::new();
    let entries: usize = rs.tables.values().map(|t| t.entries.len()).sum();
    let _ = writeln!(
        s,
        "{}: OK: {} rules, {} tables ({} entries), default {}",
        path.display(),
        rs.rules.len(),
        rs.tables.len(),
        entries,
        action(rs.default_action)
    );
    let used: Vec<&str> = (0..field::COUNT).filter(|&f| c.uses(f)).map(|f| field::NAMES[f as usize]).collect();
    let _ = writeln!(
        s,
        "classifier: {} equivalence classes, {} rule words, fields: {}",
        c.bitmaps.len(),
        c.rule_words(),
        if used.is_empty() { "none".to_string() } else { used.join(", ") }
    );
    let _ = writeln!(
        s,
        "map memory: about {:.1} MiB (limit {} MiB)",
        c.map_memory() as f64 / (1 << 20) as f64,
        crate::compile::MAX_MAP_MEMORY >> 20
    );
    for (name, f, lookup) in [("source", field::SRC_ADDR, &c.src), ("destination", field::DST_ADDR, &c.dst)] {
        if c.uses(f) {
            let _ = writeln!(s, "{name} prefixes: {}", lookup_summary(lookup));
        }
    }
    const SHOWN: usize = 50;
    for (i, r) in c.rules.iter().enumerate().take(SHOWN) {
        let _ = writeln!(s, "{:>4}  {}", i + 1, r.text);
    }
    if c.rules.len() > SHOWN {
        let _ = writeln!(s, "      ... and {} more rules", c.rules.len() - SHOWN);
    }
    s
}

/// What `check` says beyond the summary: the statements skipped (`--skip-unsupported`),
/// the warnings (accepted constructs that do less than in pf), and the shadowed rules.
pub fn check_notes(rs: &Ruleset, parsed: &crate::rules::Parsed, shadowed: &[crate::rules::shadow::Shadowed]) -> String {
    let mut s = String::new();
    if !parsed.skipped.is_empty() {
        let _ = writeln!(s, "skipped {} unsupported statements (the rest is checked):", parsed.skipped.len());
        for e in &parsed.skipped {
            let _ = writeln!(s, "  {}:{}: {}", e.file, e.line, e.message);
        }
    }
    for w in &parsed.warnings {
        let _ = writeln!(s, "warning: {w}");
    }
    let place = |i: usize| {
        let r = &rs.rules[i];
        match &r.file {
            Some(f) => format!("{f}:{}", r.pos.line),
            None => format!("line {}", r.pos.line),
        }
    };
    for sh in shadowed {
        let _ = writeln!(
            s,
            "warning: rule {} ({}) never decides a packet: rule {} ({}) wins over it and matches every packet it matches",
            sh.rule + 1,
            place(sh.rule),
            sh.by + 1,
            place(sh.by)
        );
    }
    s
}

/// `xdpwall check`: the pf settings that change what rules do (`set block-policy`,
/// `set skip`), when they are not pf's defaults.
pub fn pf_settings(rs: &Ruleset) -> String {
    let mut s = String::new();
    if rs.options.block_policy == crate::rules::BlockPolicy::Return {
        let _ = writeln!(s, "block policy: return (a plain `block` answers: RST to TCP, ICMP unreachable to the rest)");
    }
    if !rs.options.skip.is_empty() {
        let _ = writeln!(s, "skipped (unfiltered where loaded): {}", rs.options.skip.join(", "));
    }
    s
}

/// `xdpwall check`: what the ruleset's interface addresses are on this host.
pub fn interface_addresses(resolved: &[crate::rules::Resolved]) -> String {
    let mut s = String::new();
    if resolved.is_empty() {
        return s;
    }
    let _ = writeln!(s, "interface addresses, as on this host now (resolved again at every load and apply):");
    for r in resolved {
        let addrs: Vec<String> = r.addresses.iter().map(ToString::to_string).collect();
        let shown = if addrs.is_empty() { "nothing".to_string() } else { addrs.join(", ") };
        let _ = writeln!(s, "  <{}>: {shown}", r.table);
    }
    s
}

/// What an address field's lookup holds: how many prefixes, in which structure.
fn lookup_summary(l: &AddrLookup) -> String {
    let groups = (l.dir4.len() - filter_common::dir::TOP_ENTRIES as usize) / filter_common::dir::GROUP_ENTRIES as usize;
    let v6_lengths: Vec<String> = l.v6_hashed_lengths().map(|len| format!("/{len}")).collect();
    format!(
        "{} IPv4 ({} /16 groups in the direct array, {} longer than /24 hashed in {} /24s), {} IPv6 ({} hashed{}, {} in the trie)",
        l.v4_entries,
        groups,
        l.prefixes.keys().filter(|k| u32::from(k.family) == filter_common::FAMILY_V4).count(),
        l.long24.len(),
        l.v6_entries,
        l.prefixes.keys().filter(|k| u32::from(k.family) == filter_common::FAMILY_V6).count(),
        if v6_lengths.is_empty() { String::new() } else { format!(" at {}", v6_lengths.join(" ")) },
        l.trie6.len(),
    )
}

pub fn diff(d: &Diff) -> String {
    let mut s = String::new();
    for r in &d.removed {
        let _ = writeln!(s, "- {r}");
    }
    for r in &d.added {
        let _ = writeln!(s, "+ {r}");
    }
    let _ = writeln!(s, "{} added, {} removed, {} unchanged (counters kept)", d.added.len(), d.removed.len(), d.kept);
    s
}

/// What `load` and `apply` did.
pub fn apply_report(r: &ApplyReport) -> String {
    let mut s = String::new();
    for n in &r.notes {
        let _ = writeln!(s, "note: {n}");
    }
    for (name, mode) in &r.attached {
        let _ = writeln!(s, "attached to {name} ({mode} XDP)");
    }
    if !r.swapped.is_empty() {
        let _ = writeln!(s, "swapped the ruleset atomically on {}", r.swapped.join(", "));
    }
    s.push_str(&diff(&r.diff));
    let _ = writeln!(s, "applied in {:.1} ms", r.elapsed.as_secs_f64() * 1e3);
    s
}

/// The status tables.
pub fn status(st: &Status) -> String {
    let mut s = String::new();
    for n in &st.notes {
        let _ = writeln!(s, "note: {n}");
    }
    let _ = writeln!(
        s,
        "ruleset {} (generation {}), default {}",
        st.ruleset_file.as_deref().unwrap_or("-"),
        st.generation,
        action(st.default_action)
    );
    // The "over rate" column only when some rule has a rate limit.
    let rated = st.rules.iter().any(|r| r.over_rate.is_some());
    let mut columns =
        vec![("#", Align::Right), ("action", Align::Left), ("packets", Align::Right), ("bytes", Align::Right)];
    if rated {
        columns.push(("over rate", Align::Right));
    }
    columns.push(("rule", Align::Left));
    let mut rules = Table::new(&columns);
    for r in &st.rules {
        let mut row = vec![r.number.to_string(), action(r.action).into(), r.packets.to_string(), r.bytes.to_string()];
        if rated {
            row.push(r.over_rate.map_or_else(|| "-".into(), |n| n.to_string()));
        }
        row.push(r.text.clone());
        rules.row(row);
    }
    let mut row = vec![
        "-".into(),
        action(st.default_action).into(),
        st.default.packets.to_string(),
        st.default.bytes.to_string(),
    ];
    if rated {
        row.push("-".into());
    }
    row.push("(default policy)".into());
    rules.row(row);
    let _ = write!(s, "\n{}", rules.render());
    let mut ifaces = Table::new(&[
        ("interface", Align::Left),
        ("mode", Align::Left),
        ("passed", Align::Right),
        ("bytes", Align::Right),
        ("dropped", Align::Right),
        ("bytes", Align::Right),
    ]);
    for i in &st.interfaces {
        ifaces.row(vec![
            i.name.clone(),
            i.mode.clone(),
            i.passed_packets.to_string(),
            i.passed_bytes.to_string(),
            i.dropped_packets.to_string(),
            i.dropped_bytes.to_string(),
        ]);
    }
    let _ = write!(s, "\n{}", ifaces.render());
    for note in st.interfaces.iter().filter_map(|i| i.note.as_ref()) {
        let _ = writeln!(s, "note: {note}");
    }
    for i in st.interfaces.iter().filter(|i| !i.attached) {
        let _ =
            writeln!(s, "NOT FILTERED: {}: {}", i.name, i.problem.as_deref().unwrap_or("its links are not attached"));
    }
    let t = &st.flow_table;
    let _ = writeln!(
        s,
        "\nstate: {} flows: {} answered of {} ({:.1}% full), {} unanswered of {} ({:.1}% full); {} packets passed by state",
        t.flows,
        t.answered,
        t.limit,
        100.0 * t.answered as f64 / t.limit.max(1) as f64,
        t.unanswered,
        t.unanswered_limit,
        100.0 * t.unanswered as f64 / t.unanswered_limit.max(1) as f64,
        st.state_matches.packets
    );
    let _ = writeln!(s, "outbound: {} packets no rule matched (passed)", st.out_unmatched.packets);
    if !st.dyn_tables.is_empty() {
        let tables: Vec<String> = st.dyn_tables.iter().map(|t| format!("<{}> {}", t.name, t.sources)).collect();
        let _ = writeln!(s, "dynamic tables: {} (sources; {} at most in all)", tables.join(", "), st.dyn_capacity);
    }
    let logged: Vec<String> =
        st.rules.iter().filter_map(|r| r.logged.map(|n| format!("rule {} {n}", r.number))).collect();
    if !logged.is_empty() || st.log.written + st.log.suppressed + st.log.lost > 0 {
        let _ = writeln!(
            s,
            "log: {} records written{}, {} suppressed by the log rate, {} lost (ring full)",
            st.log.written,
            if logged.is_empty() { String::new() } else { format!(" ({})", logged.join(", ")) },
            st.log.suppressed,
            st.log.lost
        );
    }
    let limited: Vec<String> =
        st.rules.iter().filter_map(|r| r.source_limited.map(|n| format!("rule {} {n}", r.number))).collect();
    if !limited.is_empty() {
        let _ = writeln!(
            s,
            "limits per source (max-src-*): dropped {} packets ({})",
            st.source_limited.packets,
            limited.join(", ")
        );
    }
    let _ = writeln!(
        s,
        "block return: {} answers sent, {} suppressed by the rate limit (dropped unanswered)",
        st.answers_sent.packets, st.answers_suppressed.packets
    );
    let _ = writeln!(s, "not judged: non-IP frames passed {} packets, {} bytes", st.non_ip.packets, st.non_ip.bytes);
    let _ = writeln!(
        s,
        "not judged: `set skip` interfaces passed {} packets, {} bytes",
        st.skipped.packets, st.skipped.bytes
    );
    let malformed: Vec<String> =
        st.malformed.iter().filter(|m| m.packets > 0).map(|m| format!("{} {}", m.name, m.packets)).collect();
    let total: u64 = st.malformed.iter().map(|m| m.packets).sum();
    let _ = writeln!(
        s,
        "malformed, dropped: {total} packets{}{}",
        if malformed.is_empty() { "" } else { ": " },
        malformed.join(", ")
    );
    s
}

fn endpoint(ip: std::net::IpAddr, port: u16) -> String {
    match ip {
        std::net::IpAddr::V4(a) => format!("{a}:{port}"),
        std::net::IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// `xdpwall states`: one line per flow.
pub fn flows(flows: &[FlowEntry]) -> String {
    let mut t = Table::new(&[
        ("proto", Align::Left),
        ("from", Align::Right),
        ("", Align::Left),
        ("to", Align::Left),
        ("state", Align::Left),
        ("age", Align::Right),
        ("expires", Align::Right),
        ("packets out/in", Align::Right),
        ("rule", Align::Left),
    ]);
    for f in flows {
        t.row(vec![
            f.proto.to_string(),
            endpoint(f.src, f.sport),
            "->".into(),
            endpoint(f.dst, f.dport),
            f.state.to_string(),
            format!("{}s", f.age_secs),
            format!("{}s", f.expires_in_secs),
            format!("{}/{}", f.packets[0], f.packets[1]),
            f.rule.as_deref().unwrap_or("-").to_string(),
        ]);
    }
    let mut s = t.render();
    let _ = writeln!(s, "{} flows", flows.len());
    s
}

#[derive(Clone, Copy)]
pub(super) enum Align {
    Left,
    Right,
}

/// Columns as wide as their widest cell (a full IPv6 endpoint takes 47 characters),
/// two spaces apart; the last column is not padded.
pub(super) struct Table {
    columns: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(super) fn new(columns: &[(&'static str, Align)]) -> Table {
        Table { columns: columns.to_vec(), rows: Vec::new() }
    }

    pub(super) fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.columns.len());
        self.rows.push(cells);
    }

    pub(super) fn render(&self) -> String {
        let header: Vec<String> = self.columns.iter().map(|(h, _)| h.to_string()).collect();
        let widths: Vec<usize> = (0..self.columns.len())
            .map(|c| std::iter::once(&header).chain(&self.rows).map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        let mut s = String::new();
        for row in std::iter::once(&header).chain(&self.rows) {
            let last = row.len() - 1;
            let line: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(c, cell)| match self.columns[c].1 {
                    Align::Left if c == last => cell.clone(),
                    Align::Left => format!("{cell:<w$}", w = widths[c]),
                    Align::Right => format!("{cell:>w$}", w = widths[c]),
                })
                .collect();
            let _ = writeln!(s, "{}", line.join("  ").trim_end());
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(src: &str, dst: &str) -> FlowEntry {
        FlowEntry {
            proto: "tcp".into(),
            src: src.parse().unwrap(),
            sport: 65535,
            dst: dst.parse().unwrap(),
            dport: 22,
            state: "ESTABLISHED".into(),
            age_secs: 1,
            expires_in_secs: 86399,
            packets: [3, 4],
            bytes: [100, 200],
            rule: Some("pass in proto tcp keep state".into()),
            answered: true,
        }
    }

    #[test]
    fn columns_fit_the_widest_endpoint() {
        let long = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        let text = flows(&[flow("192.0.2.1", "198.51.100.7"), flow(long, long)]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        // Every row's arrow and state start in the same column, however long the address.
        let arrows: Vec<usize> = lines[1..3].iter().map(|l| l.find("->").unwrap()).collect();
        assert_eq!(arrows[0], arrows[1], "{text}");
        let states: Vec<usize> = lines[1..3].iter().map(|l| l.find("ESTABLISHED").unwrap()).collect();
        assert_eq!(states[0], states[1], "{text}");
        assert!(lines[2].contains(&format!("[{long}]:65535  ->  [{long}]:22")), "{text}");
        assert!(lines.iter().all(|l| !l.ends_with(' ')), "no trailing blanks");
    }
}
