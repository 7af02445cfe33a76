//! `GET /metrics`: the Prometheus exposition (OpenMetrics text, through
//! `prometheus-client`), built at each scrape from what `xdpwall status` reads: the
//! per-CPU counter maps summed, the flow tables counted. Label values come from the
//! ruleset and the configuration (rule numbers, labels, interface names, reasons),
//! never from packets, so traffic cannot grow the number of series.

use prometheus_client::{
    encoding::text::encode,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

use crate::{dataplane::Status, rules::Action};

type Labels = Vec<(&'static str, String)>;

/// What the daemon counts itself (applies), kept across scrapes.
#[derive(Debug, Clone)]
pub struct DaemonMetrics {
    applies: Family<Labels, Counter>,
    apply_seconds: Histogram,
}

impl Default for DaemonMetrics {
    fn default() -> Self {
        DaemonMetrics {
            applies: Family::default(),
            // 1 ms to about 33 s: a small ruleset to a million-entry table.
            apply_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
        }
    }
}

impl DaemonMetrics {
    /// Counts one apply (`ok`, `error`, `rollback`) and, when it changed the ruleset,
    /// how long it took.
    pub fn applied(&self, result: &'static str, seconds: Option<f64>) {
        self.applies.get_or_create(&vec![("result", result.to_string())]).inc();
        if let Some(s) = seconds {
            self.apply_seconds.observe(s);
        }
    }
}

fn action(a: Action) -> String {
    match a {
        Action::Pass => "pass".into(),
        Action::Block => "block".into(),
    }
}

/// Registers a counter family, filled from `(labels, value)` pairs.
fn counters(reg: &mut Registry, name: &str, help: &str, values: impl IntoIterator<Item = (Labels, u64)>) {
    let family = Family::<Labels, Counter>::default();
    for (labels, v) in values {
        family.get_or_create(&labels).inc_by(v);
    }
    reg.register(name, help, family);
}

/// Registers a gauge family.
fn gauges(reg: &mut Registry, name: &str, help: &str, values: impl IntoIterator<Item = (Labels, i64)>) {
    let family = Family::<Labels, Gauge>::default();
    for (labels, v) in values {
        family.get_or_create(&labels).set(v);
    }
    reg.register(name, help, family);
}

/// The classic Prometheus text format (0.0.4) of an OpenMetrics exposition, for
/// clients that do not ask for OpenMetrics (curl, promtool, older servers): a counter
/// family is named after its `_total` samples, and there is no `# EOF`.
pub fn to_classic(openmetrics: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for l in openmetrics.lines() {
        if let Some(name) = l.strip_prefix("# TYPE ").and_then(|t| t.strip_suffix(" counter")) {
            counters.insert(name.to_string());
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for l in openmetrics.lines() {
        if l == "# EOF" || l.starts_with("# UNIT ") {
            continue;
        }
        let meta = l
            .strip_prefix("# HELP ")
            .map(|r| ("# HELP ", r))
            .or_else(|| l.strip_prefix("# TYPE ").map(|r| ("# TYPE ", r)));
        match meta {
            Some((kind, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let name = if counters.contains(name) { format!("{name}_total") } else { name.to_string() };
                out.push_str(&format!("{kind}{name} {tail}"));
            }
            None => out.push_str(l),
        }
        out.push('\n');
    }
    out
}

/// The exposition for `status` (OpenMetrics text, `# EOF` last).
pub fn render(status: &Status, daemon: &DaemonMetrics) -> String {
    let mut reg = Registry::default();
    // A gauge rather than OpenMetrics' `info` type, which Prometheus' classic text
    // parser (promtool, older servers) does not know.
    gauges(
        &mut reg,
        "xdpwall_build_info",
        "Build of the running daemon (always 1)",
        [(vec![("version", env!("CARGO_PKG_VERSION").to_string())], 1)],
    );
    let rule_labels = |r: &crate::dataplane::RuleStatus| -> Labels {
        vec![
            ("rule", r.number.to_string()),
            ("label", r.label.clone().unwrap_or_default()),
            ("action", action(r.action)),
        ]
    };
    counters(
        &mut reg,
        "xdpwall_rule_packets",
        "Packets each rule decided",
        status.rules.iter().map(|r| (rule_labels(r), r.packets)),
    );
    counters(
        &mut reg,
        "xdpwall_rule_bytes",
        "Bytes of the packets each rule decided",
        status.rules.iter().map(|r| (rule_labels(r), r.bytes)),
    );
    let default = vec![("action", action(status.default_action))];
    counters(
        &mut reg,
        "xdpwall_default_packets",
        "Packets no rule matched (the default policy decided)",
        [(default.clone(), status.default.packets)],
    );
    counters(&mut reg, "xdpwall_default_bytes", "Bytes of those packets", [(default, status.default.bytes)]);
    counters(
        &mut reg,
        "xdpwall_malformed_packets",
        "Malformed packets dropped, by reason",
        status.malformed.iter().map(|m| (vec![("reason", m.name.clone())], m.packets)),
    );
    let other =
        [("state", &status.state_matches), ("non_ip", &status.non_ip), ("out_unmatched", &status.out_unmatched)];
    counters(
        &mut reg,
        "xdpwall_unjudged_packets",
        "Packets passed without a rule: by flow state, not IP, outbound without an out rule",
        other.iter().map(|(why, c)| (vec![("reason", why.to_string())], c.packets)),
    );
    let ifaces = |f: fn(&crate::dataplane::IfaceStatus) -> [(&'static str, u64); 2]| {
        status
            .interfaces
            .iter()
            .flat_map(move |i| {
                f(i).map(|(verdict, v)| (vec![("interface", i.name.clone()), ("verdict", verdict.into())], v))
            })
            .collect::<Vec<_>>()
    };
    counters(
        &mut reg,
        "xdpwall_interface_packets",
        "Packets each interface passed and dropped",
        ifaces(|i| [("pass", i.passed_packets), ("drop", i.dropped_packets)]),
    );
    counters(
        &mut reg,
        "xdpwall_interface_bytes",
        "Bytes each interface passed and dropped",
        ifaces(|i| [("pass", i.passed_bytes), ("drop", i.dropped_bytes)]),
    );
    gauges(
        &mut reg,
        "xdpwall_interface_attached",
        "1 when the interface runs the committed ruleset on both hooks",
        status.interfaces.iter().map(|i| (vec![("interface", i.name.clone())], i64::from(i.attached))),
    );
    let ft = &status.flow_table;
    gauges(
        &mut reg,
        "xdpwall_flows",
        "Live tracked flows",
        [
            (vec![("table", "answered".into())], ft.answered as i64),
            (vec![("table", "unanswered".into())], ft.unanswered as i64),
        ],
    );
    gauges(
        &mut reg,
        "xdpwall_flow_limit",
        "Size of each flow table",
        [
            (vec![("table", "answered".into())], i64::from(ft.limit)),
            (vec![("table", "unanswered".into())], i64::from(ft.unanswered_limit)),
        ],
    );
    gauges(&mut reg, "xdpwall_generation", "Applies since the first load", [(vec![], status.generation as i64)]);
    reg.register("xdpwall_applies", "Applies through the daemon, by result", daemon.applies.clone());
    reg.register(
        "xdpwall_apply_duration_seconds",
        "Wall time of applies through the daemon",
        daemon.apply_seconds.clone(),
    );
    // Per-rule events, only for the rules that can have them.
    let events = |f: fn(&crate::dataplane::RuleStatus) -> Option<u64>| {
        status.rules.iter().filter_map(|r| f(r).map(|n| (rule_labels(r), n))).collect::<Vec<_>>()
    };
    counters(
        &mut reg,
        "xdpwall_rule_over_rate_packets",
        "Packets each rate-limited rule did not match because it was over its rate",
        events(|r| r.over_rate),
    );
    counters(
        &mut reg,
        "xdpwall_rule_logged_packets",
        "Packets each logged rule wrote to the log",
        events(|r| r.logged),
    );
    counters(
        &mut reg,
        "xdpwall_rule_source_limited_packets",
        "Packets each rule passed that its limit per source dropped (max-src-states, max-src-conn, max-src-conn-rate)",
        events(|r| r.source_limited),
    );
    counters(
        &mut reg,
        "xdpwall_log_records",
        "Packet log records: written, suppressed by the log rate, lost to a full ring",
        [
            (vec![("result", "written".into())], status.log.written),
            (vec![("result", "suppressed".into())], status.log.suppressed),
            (vec![("result", "lost".into())], status.log.lost),
        ],
    );
    counters(
        &mut reg,
        "xdpwall_answers",
        "Blocked packets answered (block return), and left unanswered by the answers' rate limit",
        [
            (vec![("result", "sent".into())], status.answers_sent.packets),
            (vec![("result", "suppressed".into())], status.answers_suppressed.packets),
        ],
    );
    let mut out = String::new();
    encode(&mut out, &reg).expect("writing to a String cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_text_names_counter_families_after_their_samples() {
        let om = "# HELP a_packets Packets.\n# TYPE a_packets counter\na_packets_total{x=\"1\"} 3\n# HELP g A gauge.\n# TYPE g gauge\ng 1\n# EOF\n";
        assert_eq!(
            to_classic(om),
            "# HELP a_packets_total Packets.\n# TYPE a_packets_total counter\na_packets_total{x=\"1\"} 3\n# HELP g A gauge.\n# TYPE g gauge\ng 1\n"
        );
    }
}
