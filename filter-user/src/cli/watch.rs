//! `xdpwall status --watch`: a top-like view, refreshed every second, of per-rule
//! packets/s and bytes/s and per-interface rates, from two readings of the counters.

use std::{fmt::Write as _, time::Instant};

use super::output::{Align, Table};
use crate::dataplane::{self, Paths, Status};

/// Clears the terminal and moves the cursor home (ANSI).
const CLEAR: &str = "\x1b[H\x1b[2J";

/// Refreshes until interrupted.
pub fn run(paths: &Paths) -> anyhow::Result<()> {
    let mut prev = (dataplane::status(paths)?, Instant::now());
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
        let now = (dataplane::status(paths)?, Instant::now());
        let secs = now.1.duration_since(prev.1).as_secs_f64();
        print!("{CLEAR}{}", render(&prev.0, &now.0, secs));
        use std::io::Write as _;
        std::io::stdout().flush()?;
        prev = now;
    }
}

/// Rate of a counter between two readings; a counter that went down (the rule is
/// new, or its slot was reused) counts from zero.
fn rate(before: u64, after: u64, secs: f64) -> f64 {
    let delta = if after >= before { after - before } else { after };
    delta as f64 / secs.max(1e-3)
}

/// Short human rates: 950, 12.3k, 4.56M.
fn human(v: f64) -> String {
    match v {
        v if v >= 1e9 => format!("{:.2}G", v / 1e9),
        v if v >= 1e6 => format!("{:.2}M", v / 1e6),
        v if v >= 1e3 => format!("{:.1}k", v / 1e3),
        v => format!("{v:.0}"),
    }
}

/// One screen: rates between `before` and `after`, taken `secs` apart. Rules are
/// matched by number and text, so a rule that moved or changed starts from zero.
pub fn render(before: &Status, after: &Status, secs: f64) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "xdpwall: ruleset {} (generation {}), {} rules; rates over {:.1} s",
        after.ruleset_file.as_deref().unwrap_or("-"),
        after.generation,
        after.rules.len(),
        secs
    );
    let mut rules =
        Table::new(&[("#", Align::Right), ("pkts/s", Align::Right), ("bytes/s", Align::Right), ("rule", Align::Left)]);
    for r in &after.rules {
        let old = before.rules.iter().find(|o| o.number == r.number && o.text == r.text);
        let (p0, b0) = old.map_or((0, 0), |o| (o.packets, o.bytes));
        rules.row(vec![
            r.number.to_string(),
            human(rate(p0, r.packets, secs)),
            human(rate(b0, r.bytes, secs)),
            r.text.clone(),
        ]);
    }
    rules.row(vec![
        "-".into(),
        human(rate(before.default.packets, after.default.packets, secs)),
        human(rate(before.default.bytes, after.default.bytes, secs)),
        "(default policy)".into(),
    ]);
    let _ = write!(s, "\n{}", rules.render());
    let mut ifaces = Table::new(&[
        ("interface", Align::Left),
        ("passed/s", Align::Right),
        ("bytes/s", Align::Right),
        ("dropped/s", Align::Right),
        ("bytes/s", Align::Right),
    ]);
    for i in &after.interfaces {
        let old = before.interfaces.iter().find(|o| o.name == i.name);
        let f = |get: fn(&dataplane::IfaceStatus) -> u64| human(rate(old.map_or(0, get), get(i), secs));
        ifaces.row(vec![
            i.name.clone(),
            f(|x| x.passed_packets),
            f(|x| x.passed_bytes),
            f(|x| x.dropped_packets),
            f(|x| x.dropped_bytes),
        ]);
    }
    let _ = write!(s, "\n{}", ifaces.render());
    let _ = writeln!(
        s,
        "\nflows {} (limit {}), passed by state {}/s",
        after.flow_table.flows,
        after.flow_table.limit,
        human(rate(before.state_matches.packets, after.state_matches.packets, secs))
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_units() {
        assert_eq!(rate(100, 300, 2.0), 100.0);
        assert_eq!(rate(500, 30, 1.0), 30.0, "a counter that went down restarts from zero");
        assert_eq!(human(950.0), "950");
        assert_eq!(human(12_345.0), "12.3k");
        assert_eq!(human(4_560_000.0), "4.56M");
    }
}
