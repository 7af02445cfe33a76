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
    assert!(
        md.contains("| 1024 | `pass` | matches the last rule | rule path (counted by the last rule) | 150 | 120 | 1 |")
    );
    assert!(md.contains("| 1024 | `pass … keep state` | of the flow the last rule opened | state fast path (counted as `state`) | 90 | 60 | 0.60 |"));
    assert!(md.contains("| 1024 | `pass … keep state` | matches no rule | flow lookup finds none, then the rules (default) | failed: action 1, expected 2 | – | – |"));
    assert!(md.contains("| ns in XDP program | 120 | 60 | 0.50 |"));
    assert!(md.contains("| the same less bench_drop's (–: the clock reads) | – | – | – |"));
    assert!(
        md.contains("| Mpps taken in, then the kernel stack | 0.200 (0.10× ceiling) | 0.204 (0.10× ceiling) | 1.02 |")
    );
    let js = r.json();
    assert_eq!(js["flows"][1]["to_stateless"], 0.6);
    assert_eq!(js["flows"][1]["keep_state"], true);
    assert_eq!(js["throughput"].as_array().unwrap().last().unwrap()["result"]["program_ns"], 60.0);
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
        extra: None,
        log: None,
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
    assert_eq!(js["flood"][3]["result"]["hit_share"], 0.118);
    assert_eq!(js["flood"][3]["expected_hits"], 0.12);
    assert_eq!(js["flood"].as_array().unwrap().last().unwrap()["result"]["error"], "no xdp-filter");
    assert_eq!(js["targets"].as_array().unwrap().len(), r.targets().len());
}

/// The rate-limit and log rows (issue #13): beside the plain 1-rule row, their ruleset in
/// the list column, the limited rule's share of the drops, the log's counters; no target.
#[test]
fn flood_rate_and_log_rows() {
    let mut r = report();
    let rated = |extra, rules, to_ceiling, hits: Option<f64>, log| FloodRow {
        list: "–".into(),
        expected_hits: None,
        load_secs: None,
        extra: Some(extra),
        log,
        result: rate(to_ceiling).map(|r| Rate { hit_share: hits, program_ns: Some(150.0), ..r }),
        ..flood_row(Family::V4, FloodReceiver::Xdpwall, rules, None, 0.0)
    };
    let log = LogCounts { written: 1500, suppressed: 9_000_000, lost: 0 };
    r.flood = vec![
        flood_row(Family::V4, FloodReceiver::Ceiling, 0, None, 1.0),
        flood_row(Family::V4, FloodReceiver::Xdpwall, 1, None, 0.8),
        rated(Extra::Rate, 2, 0.6, Some(0.001), None),
        rated(Extra::PerSource, 2, 0.4, Some(0.999), None),
        rated(Extra::RateCas, 2, 0.5, Some(1.0), None),
        rated(Extra::Log, 1, 0.72, None, Some(log)),
        FloodRow { result: Err("ring".into()), ..rated(Extra::LogWritten, 1, 0.0, None, None) },
    ];
    let md = r.markdown();
    assert!(md.contains(
        "| IPv4 | xdpwall | 2 | `rate 1000/s` rule + catch-all | 1.200 [0.000–0.000] | 0.60 | 0.75 | 100.0% | 0.100% / – | 150 | – | – |"
    ));
    assert!(md.contains(
        "| IPv4 | xdpwall | 2 | `rate 1000/s per-source` rule + catch-all | 0.800 [0.000–0.000] | 0.40 | 0.50 | 100.0% | 99.9% / – | 150 | – | – |"
    ));
    assert!(md.contains(
        "| IPv4 | xdpwall | 2 | `rate 1000000000/s` rule (never over) + catch-all | 1.000 [0.000–0.000] | 0.50 | 0.62 | 100.0% | 100.0% / – | 150 | – | – |"
    ));
    assert!(md.contains(
        "| IPv4 | xdpwall | 1 | catch-all with `log` (default log-rate) | 1.440 [0.000–0.000] | 0.72 | 0.90 | 100.0% | – | 150 | – | – |"
    ));
    assert!(
        md.contains("| IPv4 | xdpwall | 1 | catch-all with `log`, `set log-rate 1000000/s`, a reader | failed: ring |")
    );
    assert!(md.contains("- catch-all with `log` (default log-rate): 1500 / 9000000 / 0\n"));
    // The plain 1-rule row is still the one the ratios use, whatever comes after it.
    assert!(r.flood_row(FloodReceiver::Xdpwall, Family::V4, 2, None).is_none());
    let js = r.json();
    assert_eq!(js["flood"][2]["extra"], "Rate");
    assert_eq!(js["flood"][3]["extra"], "PerSource");
    assert_eq!(js["flood"][3]["result"]["program_ns"], 150.0);
    assert_eq!(js["flood"][5]["log"]["suppressed"], 9_000_000);
    assert_eq!(js["flood"][1]["extra"], serde_json::Value::Null);
}

#[test]
fn plot_is_written() {
    let path = std::env::temp_dir().join(format!("xdpwall-benches-plot-{}.svg", std::process::id()));
    report().plot(&path).unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(svg.contains("<svg") && svg.contains("xdpwall (drop path)"));
}
