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

const FIELD_NAMES: [(u32, &str); 9] = [
    (field::IFACE, "interface"),
    (field::PROTO, "family/protocol"),
    (field::SRC_ADDR, "source address"),
    (field::DST_ADDR, "destination address"),
    (field::SRC_PORT, "source port"),
    (field::DST_PORT, "destination port"),
    (field::TCP_FLAGS, "tcp flags"),
    (field::ICMP, "icmp type/code"),
    (field::VLAN, "vlan"),
];

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
    let used: Vec<&str> = FIELD_NAMES.iter().filter(|(f, _)| c.uses(*f)).map(|(_, n)| *n).collect();
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

/// The rule diff of an apply.
/// What an address field's lookup holds: how many prefixes, in which structure.
fn lookup_summary(l: &AddrLookup) -> String {
    let groups = (l.dir4.len() - filter_common::dir::TOP_ENTRIES as usize) / filter_common::dir::GROUP_ENTRIES as usize;
    let v6_lengths: Vec<String> = l.v6_hashed_lengths().map(|len| format!("/{len}")).collect();
    format!(
        "{} IPv4 ({} /16 groups in the direct array, {} longer than /24 hashed), {} IPv6 ({} hashed{}, {} in the trie)",
        l.v4_entries,
        groups,
        l.prefixes.keys().filter(|k| u32::from(k.family) == filter_common::FAMILY_V4).count(),
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
    let _ = writeln!(
        s,
        "ruleset {} (generation {}), default {}",
        st.ruleset_file.as_deref().unwrap_or("-"),
        st.generation,
        action(st.default_action)
    );
    let _ = writeln!(s, "\n{:>4}  {:<6} {:>12} {:>14}  rule", "#", "action", "packets", "bytes");
    for r in &st.rules {
        let _ = writeln!(s, "{:>4}  {:<6} {:>12} {:>14}  {}", r.number, action(r.action), r.packets, r.bytes, r.text);
    }
    let _ = writeln!(
        s,
        "{:>4}  {:<6} {:>12} {:>14}  (default policy)",
        "-",
        action(st.default_action),
        st.default.packets,
        st.default.bytes
    );
    let _ = writeln!(s, "\n{:<16} {:<8} {:>12} {:>14} {:>12} {:>14}", "interface", "mode", "passed", "bytes", "dropped", "bytes");
    for i in &st.interfaces {
        let mode = if i.attached { i.mode.clone() } else { format!("{} (link missing!)", i.mode) };
        let _ = writeln!(
            s,
            "{:<16} {:<8} {:>12} {:>14} {:>12} {:>14}",
            i.name, mode, i.passed_packets, i.passed_bytes, i.dropped_packets, i.dropped_bytes
        );
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
    let _ = writeln!(s, "outbound: {} packets no `out` rule matched (passed)", st.out_unmatched.packets);
    let _ = writeln!(s, "not judged: non-IP frames passed {} packets, {} bytes", st.non_ip.packets, st.non_ip.bytes);
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
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<5} {:>21}    {:<21} {:<12} {:>7} {:>8} {:>15}  rule",
        "proto", "from", "to", "state", "age", "expires", "packets out/in"
    );
    for f in flows {
        let _ = writeln!(
            s,
            "{:<5} {:>21} -> {:<21} {:<12} {:>6}s {:>7}s {:>15}  {}",
            f.proto,
            endpoint(f.src, f.sport),
            endpoint(f.dst, f.dport),
            f.state,
            f.age_secs,
            f.expires_in_secs,
            format!("{}/{}", f.packets[0], f.packets[1]),
            f.rule.as_deref().unwrap_or("-")
        );
    }
    let _ = writeln!(s, "{} flows", flows.len());
    s
}
