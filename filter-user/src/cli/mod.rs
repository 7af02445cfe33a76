//! The `xdpwall` command line: each command is its own process; state that must
//! outlive it is pinned (see `dataplane`).

mod output;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

use crate::{
    compile::{self, Compiled},
    dataplane::{self, Mode, Paths},
    rules::{self, Ruleset},
};

/// xdpwall: an XDP firewall with pf-like rules.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// bpffs directory for pinned links and maps.
    #[arg(long, env = "XDPWALL_PIN_DIR", default_value = "/sys/fs/bpf/xdpwall", global = true)]
    pin_dir: PathBuf,
    /// Directory for the loader's state and lock.
    #[arg(long, env = "XDPWALL_RUN_DIR", default_value = "/run/xdpwall", global = true)]
    run_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a ruleset and print what it compiles to.
    Check {
        /// Ruleset file.
        rules: PathBuf,
        /// Accept a ruleset without rules (only the default policy applies).
        #[arg(long)]
        allow_empty: bool,
    },
    /// Attach to interfaces, apply a ruleset and pin everything.
    Load {
        /// Interfaces, then the ruleset file.
        #[arg(required = true, num_args = 2.., value_name = "IFACE... RULES")]
        args: Vec<String>,
        /// Where XDP runs: in the driver, in the stack, or native with fallback.
        #[arg(long, value_enum, default_value = "auto")]
        mode: ModeArg,
        /// Accept a ruleset without rules (only the default policy applies).
        #[arg(long)]
        allow_empty: bool,
    },
    /// Replace the ruleset on every loaded interface, atomically.
    Apply {
        /// Ruleset file.
        rules: PathBuf,
        /// Only print what would change.
        #[arg(long)]
        dry_run: bool,
        /// Accept a ruleset without rules (only the default policy applies).
        #[arg(long)]
        allow_empty: bool,
    },
    /// Per-rule and per-interface counters, drops by reason.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Detach from interfaces (all when none named).
    Unload {
        /// Interfaces.
        ifaces: Vec<String>,
        /// Remove what is pinned even without a (readable) state file.
        #[arg(long)]
        force: bool,
    },
    /// List tracked flows (connection state), oldest first.
    States {
        /// Only this protocol (tcp, udp, icmp, icmp6).
        #[arg(long)]
        proto: Option<String>,
        /// Only flows with this address at either end.
        #[arg(long)]
        host: Option<std::net::IpAddr>,
        /// Only flows with this port at either end.
        #[arg(long)]
        port: Option<u16>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Flush tracked flows: `xdpwall flush states`.
    Flush {
        /// What to flush.
        #[arg(value_enum)]
        what: FlushWhat,
    },
}

/// `--mode`: where XDP runs.
#[derive(Clone, Copy, clap::ValueEnum)]
enum ModeArg {
    /// In the driver (igb, veth, ...); fails where the driver lacks XDP.
    Native,
    /// In the kernel stack, on any interface; slower.
    Generic,
    /// Native, falling back to generic.
    Auto,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Mode {
        match m {
            ModeArg::Native => Mode::Native,
            ModeArg::Generic => Mode::Generic,
            ModeArg::Auto => Mode::Auto,
        }
    }
}

/// What `flush` empties.
#[derive(Clone, Copy, clap::ValueEnum)]
enum FlushWhat {
    /// The connection table: every flow's next packet goes through the rules again.
    States,
}

/// Runs the command line; errors become one line on stderr and exit status 1.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let paths = Paths { pin_dir: cli.pin_dir, run_dir: cli.run_dir };
    match execute(cli.command, &paths) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xdpwall: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Parses the ruleset at `path`, resolves its interface addresses against this host
/// (warnings go to stderr, naming the file) and compiles it; a ruleset without rules is
/// refused unless `allow_empty`. Errors of the ruleset as a whole (the compiler's) name
/// the file.
fn parse_and_compile(
    path: &std::path::Path,
    allow_empty: bool,
) -> anyhow::Result<(Ruleset, Compiled, Vec<rules::Resolved>)> {
    let ruleset = rules::parse_file(path)?;
    if !allow_empty {
        rules::require_rules(&ruleset, &path.display().to_string())?;
    }
    let (ruleset, resolved) = crate::host::resolve(&ruleset)
        .map_err(|e| anyhow::anyhow!("cannot read this host's interface addresses: {e}"))?;
    for warning in resolved.iter().flat_map(|r| &r.warnings) {
        eprintln!("xdpwall: {}: warning: {warning}", path.display());
    }
    for name in ruleset.options.skip.iter().filter(|n| !crate::host::interface_exists(n)) {
        eprintln!(
            "xdpwall: {}: warning: set skip on {name}: no interface `{name}` on this host (Linux's loopback is `lo`)",
            path.display()
        );
    }
    let compiled = compile::compile(&ruleset)
        .map_err(|e| rules::RulesError::whole_file(&path.display().to_string(), e.to_string()))?;
    Ok((ruleset, compiled, resolved))
}

/// Runs one command; its exit status is not success when it found something wrong
/// that is not an error of the command itself (an interface that filters nothing).
fn execute(command: Command, paths: &Paths) -> anyhow::Result<ExitCode> {
    match command {
        Command::Check { rules, allow_empty } => {
            let (ruleset, compiled, resolved) = parse_and_compile(&rules, allow_empty)?;
            print!("{}", output::summary(&rules, &ruleset, &compiled));
            print!("{}", output::pf_settings(&ruleset));
            print!("{}", output::interface_addresses(&resolved));
        }
        Command::Load { mut args, mode, allow_empty } => {
            let rules = PathBuf::from(args.pop().expect("clap requires two or more"));
            let (_, compiled, _) = parse_and_compile(&rules, allow_empty)?;
            let report = dataplane::apply(paths, &compiled, Some(rules.display().to_string()), &args, mode.into())?;
            print!("{}", output::apply_report(&report));
        }
        Command::Apply { rules, dry_run, allow_empty } => {
            let (_, compiled, _) = parse_and_compile(&rules, allow_empty)?;
            if dry_run {
                let diff = dataplane::diff(paths, &compiled)?;
                print!("{}", output::diff(&diff));
                println!("dry run: nothing changed");
            } else {
                let report = dataplane::apply(paths, &compiled, Some(rules.display().to_string()), &[], Mode::Auto)?;
                print!("{}", output::apply_report(&report));
            }
        }
        Command::Status { json } => {
            let status = dataplane::status(paths)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", output::status(&status));
            }
            if !status.healthy() {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::States { proto, host, port, json } => {
            let flows = dataplane::list_states(paths, &dataplane::FlowFilter { proto, host, port })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&flows)?);
            } else {
                print!("{}", output::flows(&flows));
            }
        }
        Command::Flush { what: FlushWhat::States } => {
            println!("flushed {} flows", dataplane::flush_states(paths)?);
        }
        Command::Unload { ifaces, force } => {
            for name in dataplane::unload(paths, &ifaces, force)? {
                println!("detached from {name}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
