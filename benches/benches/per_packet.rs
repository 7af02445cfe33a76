//! Kernel per-packet cost through BPF_PROG_TEST_RUN with `repeat`: xdpwall at 1, 64, 1024
//! and 4096 rules and with 1k, 100k and 1M table entries, for a packet matching the last
//! rule and one matching none, each group beside the bare `bench_drop` program measured
//! the same way; and at 1 and 1024 rules whose last is `pass`, a packet of an established
//! flow on the state fast path (`keep state`) beside the same packet on the rule path.
//! Needs root. `cargo bench -p xdpwall-benches --bench per_packet`.
//!
//! Each sample is one test run of `iters` repeats; its time is the kernel's average per
//! repeat (whole nanoseconds) times `iters`.

use std::cell::Cell;
use std::time::Duration;

use anyhow::Result;
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main, measurement::WallTime};
use filter_common::slot;
use xdpwall_benches::kernel::{Filter, PinDir, Reference, XDP_DROP, XDP_PASS};
use xdpwall_benches::live::BenchNet;
use xdpwall_benches::ruleset::{Last, Scenario};

const FRAME: usize = 60;

/// Time for `iters` runs of `run`, which returns (action, average per run) for a repeat.
fn timed(iters: u64, expect: u32, mut run: impl FnMut(u32) -> Result<(u32, Duration)>) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(u64::from(u32::MAX)) as u32;
        let (action, avg) = run(n).expect("test run");
        assert_eq!(action, expect, "unexpected XDP action");
        total += avg * n;
        left -= u64::from(n);
    }
    total
}

fn group(g: &mut BenchmarkGroup<'_, WallTime>, drop: &Reference, scenario: &Scenario, pins: &PinDir) {
    let dir = std::env::temp_dir().join(format!("xdpwall-bench-per-packet-{}", std::process::id()));
    let compiled = scenario.compile(&dir).expect("compiling the scenario");
    let _ = std::fs::remove_dir_all(&dir);
    let mut filter = Filter::load(&compiled, pins).expect("loading xdpwall");
    let hit = BenchNet::frame(scenario.hit(), FRAME);
    let miss = BenchNet::frame(scenario.miss(), FRAME);
    g.bench_function("bench_drop", |b| b.iter_custom(|i| timed(i, XDP_DROP, |n| drop.test_run_repeat(&hit, n))));
    g.bench_function("xdpwall, last rule", |b| {
        b.iter_custom(|i| timed(i, XDP_DROP, |n| filter.test_run_repeat(&hit, n)))
    });
    g.bench_function("xdpwall, no rule", |b| {
        b.iter_custom(|i| timed(i, XDP_PASS, |n| filter.test_run_repeat(&miss, n)))
    });
}

/// A `pass` last rule with and without `keep state`: the state fast path of an
/// established flow beside the rule path, for the same packet. Every repeat of the fast
/// path must be counted in the `STATE` slot.
fn flows(g: &mut BenchmarkGroup<'_, WallTime>, drop: &Reference, rules: usize, pins: &PinDir) {
    let dir = std::env::temp_dir().join(format!("xdpwall-bench-per-packet-{}", std::process::id()));
    let load = |last| {
        let compiled = Scenario::rules(rules, last).compile(&dir).expect("compiling the scenario");
        Filter::load(&compiled, pins).expect("loading xdpwall")
    };
    let (mut rule_path, mut state_path) = (load(Last::Pass), load(Last::KeepState));
    let _ = std::fs::remove_dir_all(&dir);
    let frame = BenchNet::frame(Scenario::rules(rules, Last::Pass).hit(), FRAME);
    // The first packet passes by the rule and opens the flow.
    let opened = state_path.counted(state_path.last_rule_slot()).expect("counter");
    assert_eq!(state_path.test_run_repeat(&frame, 1).expect("test run").0, XDP_PASS);
    assert_eq!(
        state_path.counted(state_path.last_rule_slot()).expect("counter"),
        opened + 1,
        "the `keep state` rule did not pass the flow's first packet"
    );
    g.bench_function("bench_drop", |b| b.iter_custom(|i| timed(i, XDP_DROP, |n| drop.test_run_repeat(&frame, n))));
    g.bench_function("xdpwall, rule path", |b| {
        b.iter_custom(|i| timed(i, XDP_PASS, |n| rule_path.test_run_repeat(&frame, n)))
    });
    let ran = Cell::new(0u64);
    let before = state_path.counted(slot::STATE).expect("counter");
    g.bench_function("xdpwall, state fast path", |b| {
        b.iter_custom(|i| {
            ran.set(ran.get() + i);
            timed(i, XDP_PASS, |n| state_path.test_run_repeat(&frame, n))
        })
    });
    assert_eq!(
        state_path.counted(slot::STATE).expect("counter") - before,
        ran.get(),
        "packets of the established flow left the fast path"
    );
}

fn per_packet(c: &mut Criterion) {
    if !xdpwall_tests::is_root() {
        eprintln!("per_packet: skipped (BPF_PROG_TEST_RUN needs root)");
        return;
    }
    let pins = PinDir::new("bench-criterion").expect("a bpffs directory (is bpffs mounted?)");
    let drop = Reference::drop_program(&pins).expect("loading bench_drop");
    let mut scenarios: Vec<(String, Scenario)> =
        [1, 64, 1024, 4096].map(|n| (format!("per_packet/{n} rules"), Scenario::rules(n, Last::Block))).into();
    for (name, entries) in [("1k", 1_000), ("100k", 100_000), ("1M", 1_000_000)] {
        scenarios.push((format!("per_packet/{name} table"), Scenario::table(entries, 1, Last::Block)));
    }
    for (name, scenario) in &scenarios {
        let mut g = c.benchmark_group(name);
        group(&mut g, &drop, scenario, &pins);
        g.finish();
    }
    for rules in [1, 1024] {
        let mut g =
            c.benchmark_group(format!("per_packet/established flow, {}", Scenario::rules(rules, Last::Pass).name()));
        flows(&mut g, &drop, rules, &pins);
        g.finish();
    }
}

criterion_group!(benches, per_packet);
criterion_main!(benches);
