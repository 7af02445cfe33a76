//! Orchestration for xdpwall: `cargo xtask setup | test | demo | bench | vmtest`.
//!
//! Everything here needs root (XDP, network namespaces, bpffs), so every command
//! starts with `setup`, which refuses to run otherwise.

mod bench;
mod demo;
mod setup;
mod vmtest;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "xdpwall build, test, demo and benchmark tasks (run as root)")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what the build and the tests need (idempotent; silent when nothing changes).
    Setup,
    /// Build the `xdpwall` binary and run the host test suites.
    ///
    /// Arguments after `--` go to `cargo test` as they are, e.g.
    /// `cargo xtask test -- --test netns -- --nocapture`.
    Test {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        cargo_test_args: Vec<String>,
    },
    /// The style gate: `cargo fmt --check` on the whole tree and `cargo clippy -D
    /// warnings` on the host crates (filter-ebpf builds for BPF only).
    Lint,
    /// Load the demo ruleset on a veth pair and show what it lets through.
    Demo,
    /// Measure per-packet cost and veth throughput beside XDP_DROP and nftables;
    /// writes <target>/bench/report.md, report.json and throughput.svg.
    Bench(bench::BenchArgs),
    /// Boot Debian's 6.1 and 6.12 kernels in QEMU with two igb NICs and run the guest
    /// suite there against the freshly built `xdpwall` (installs QEMU and the kernels first).
    Vmtest(vmtest::VmtestArgs),
    /// Build the Debian package (release build, cargo-deb): target/debian/xdpwall_*.deb
    /// with the binary, the systemd unit and /etc/xdpwall.
    Deb,
    /// The suite `vmtest` runs inside each guest (not for use on the host).
    #[command(hide = true)]
    VmtestGuest(vmtest::guest::GuestArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run_task(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_task(task: Task) -> Result<()> {
    // Inside a vmtest guest the host's root is read-only and there is nothing to set up.
    if let Task::VmtestGuest(args) = &task {
        return vmtest::guest::run(args);
    }
    setup::ensure()?;
    match task {
        Task::Setup => Ok(()),
        Task::Test { cargo_test_args } => test(&cargo_test_args),
        Task::Lint => lint(),
        Task::Demo => demo::run(),
        Task::Bench(args) => bench::run_bench(&args),
        Task::Vmtest(args) => vmtest::run_vmtest(&args),
        Task::Deb => run(cargo().args(["deb", "-p", "filter-user"])),
        Task::VmtestGuest(_) => unreachable!("handled above"),
    }
}

/// Packages whose tests run on the host. Never filter-ebpf: it only builds for
/// bpfel-unknown-none, through filter-user's build.rs, so no `--workspace` either.
const TEST_PACKAGES: [&str; 5] = ["filter-common", "filter-user", "xdpwall-tests", "xdpwall-benches", "xtask"];

/// Formatting and clippy, as CI gates them.
fn lint() -> Result<()> {
    run(cargo().args(["fmt", "--all", "--check"]))?;
    let mut clippy = cargo();
    clippy.arg("clippy");
    for package in TEST_PACKAGES {
        clippy.args(["-p", package]);
    }
    run(clippy.args(["--all-targets", "--", "-D", "warnings"]))
}

/// `cargo build -p filter-user --bins`, then the host test suites with `XDPWALL_BIN` set.
fn test(extra: &[String]) -> Result<()> {
    let xdpwall = build_xdpwall()?;
    let mut cmd = cargo();
    cmd.arg("test");
    for package in TEST_PACKAGES {
        cmd.args(["-p", package]);
    }
    run(cmd.args(extra).env("XDPWALL_BIN", &xdpwall))
}

/// Builds the CLI and returns the path of the `xdpwall` binary.
fn build_xdpwall() -> Result<PathBuf> {
    run(cargo().args(["build", "-p", "filter-user", "--bins"]))?;
    let bin = target_dir()?.join("debug/xdpwall");
    if !bin.is_file() {
        bail!("`cargo build -p filter-user --bins` succeeded but {} is missing", bin.display());
    }
    Ok(bin)
}

/// The workspace root (the parent of this crate).
fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives inside the workspace")
}

/// A `cargo` command run from the workspace root.
fn cargo() -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(repo_root());
    cmd
}

/// The workspace's target directory: `CARGO_TARGET_DIR`, else what `cargo metadata` says.
fn target_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        let dir = PathBuf::from(dir);
        return Ok(if dir.is_relative() { repo_root().join(dir) } else { dir });
    }
    let out = output(cargo().args(["metadata", "--format-version", "1", "--no-deps"]))?;
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).context("parsing `cargo metadata` output")?;
    let dir = meta["target_directory"].as_str().context("`cargo metadata` has no target_directory")?;
    Ok(PathBuf::from(dir))
}

/// Runs a command with inherited stdio; a non-zero exit is an error naming the command.
fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("cannot start {}", show(cmd)))?;
    if !status.success() {
        bail!("{} failed ({status})", show(cmd));
    }
    Ok(())
}

/// Runs a command and captures its output; a non-zero exit is an error with its stderr.
fn output(cmd: &mut Command) -> Result<std::process::Output> {
    let out = cmd.output().with_context(|| format!("cannot start {}", show(cmd)))?;
    if !out.status.success() {
        bail!("{} failed ({}): {}", show(cmd), out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(out)
}

/// `prog arg arg` for error messages.
fn show(cmd: &Command) -> String {
    std::iter::once(cmd.get_program()).chain(cmd.get_args()).map(|s| s.to_string_lossy()).collect::<Vec<_>>().join(" ")
}
