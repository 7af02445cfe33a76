//! `cargo xtask bench`: build the `xdpwall` CLI and the `xdpwall-bench` runner (benches/),
//! run the benchmarks as root and leave the report in `<target>/bench/`: report.md (the
//! tables, with ratios to the XDP_DROP ceiling, to nftables and to xdp-filter, the
//! established-flow fast path beside the rule path, the spoofed-source flood with
//! million-entry blocklists (100k with `--short`), and the targets met or missed),
//! report.json and throughput.svg. `--criterion` also runs the criterion benches.
//!
//! The runner does the measuring; this only builds and passes options on. Debug builds are
//! enough: what is measured runs in the kernel, and user space only sets it up and reads
//! counters.

use std::path::PathBuf;

use anyhow::{Result, bail};

use crate::{build_xdpwall, cargo, run, target_dir};

/// Options of `cargo xtask bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// A quick run (CI): about a second per throughput row, fewer test-run repeats;
    /// with `--criterion`, criterion's quick mode.
    #[arg(long)]
    short: bool,
    /// Seconds each throughput row is sampled for [default: 5, short: 1].
    #[arg(long)]
    window_secs: Option<f64>,
    /// Bytes per frame as XDP sees it, without FCS [default: 60].
    #[arg(long)]
    frame_size: Option<u16>,
    /// Flows the generator spreads its frames over [default: 256].
    #[arg(long)]
    flows: Option<u32>,
    /// Generator threads [default: 1].
    #[arg(long)]
    threads: Option<u16>,
    /// Also run the criterion benches (compile speed, per-packet cost); their HTML-less
    /// results go to `<target>/criterion`.
    #[arg(long)]
    criterion: bool,
    /// More options for the runner, after `--` (see `xdpwall-bench --help`), e.g.
    /// `-- --rows xdpwall,nft-set --napi shared`.
    #[arg(last = true)]
    runner_args: Vec<String>,
}

pub fn run_bench(args: &BenchArgs) -> Result<()> {
    let xdpwall = build_xdpwall()?;
    let runner = build_runner()?;
    let out = target_dir()?.join("bench");

    let mut cmd = std::process::Command::new(&runner);
    cmd.arg("--xdpwall").arg(&xdpwall).arg("--out").arg(&out);
    if args.short {
        cmd.arg("--short");
    }
    if let Some(v) = args.window_secs {
        cmd.args(["--window-secs", &v.to_string()]);
    }
    if let Some(v) = args.frame_size {
        cmd.args(["--frame-size", &v.to_string()]);
    }
    if let Some(v) = args.flows {
        cmd.args(["--flows", &v.to_string()]);
    }
    if let Some(v) = args.threads {
        cmd.args(["--threads", &v.to_string()]);
    }
    cmd.args(&args.runner_args);
    run(&mut cmd)?;

    if args.criterion {
        let mut cmd = cargo();
        cmd.args(["bench", "-p", "xdpwall-benches", "--"]);
        if args.short {
            cmd.arg("--quick");
        }
        run(&mut cmd)?;
    }
    Ok(())
}

/// Builds the benchmark runner and returns its path.
fn build_runner() -> Result<PathBuf> {
    run(cargo().args(["build", "-p", "xdpwall-benches", "--bin", "xdpwall-bench"]))?;
    let bin = target_dir()?.join("debug/xdpwall-bench");
    if !bin.is_file() {
        bail!("`cargo build -p xdpwall-benches` succeeded but {} is missing", bin.display());
    }
    Ok(bin)
}
