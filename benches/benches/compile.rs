//! User-space compile speed: ruleset text to classifier tables, for 4096 rules and for a
//! 1M-entry table, with and without parsing. `cargo bench -p xdpwall-benches --bench compile`.

use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use filter_user::{compile, rules};
use xdpwall_benches::ruleset::{Last, Scenario};

/// A directory for the table file, removed on drop.
struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn bench(c: &mut Criterion, name: &str, scenario: &Scenario, samples: usize) {
    let dir = Dir(std::env::temp_dir().join(format!("xdpwall-bench-compile-{}-{name}", std::process::id())));
    scenario.write(&dir.0).expect("writing the ruleset");
    let text = scenario.xdpwall_text();
    let parse = || rules::parse_str(&text, "rules.conf", &dir.0).expect("the generated ruleset parses");
    let parsed = parse();

    let mut group = c.benchmark_group(format!("compile/{name}"));
    group.sample_size(samples);
    group.bench_function("parse+compile", |b| {
        b.iter(|| compile::compile(&parse()).expect("the generated ruleset compiles"))
    });
    group.bench_function("compile", |b| b.iter(|| compile::compile(&parsed).expect("the generated ruleset compiles")));
    group.finish();
}

fn compile_speed(c: &mut Criterion) {
    bench(c, "4096 rules", &Scenario::rules(4096, Last::Block), 20);
    bench(c, "1M table", &Scenario::table(1_000_000, 1, Last::Block), 10);
}

criterion_group!(benches, compile_speed);
criterion_main!(benches);
