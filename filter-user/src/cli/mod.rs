//! The `xdpwall` command line: each command is its own process; state that must
//! outlive it is pinned (see `dataplane`).

mod log;
mod output;
mod watch;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

use crate::{
    compile::{self, Compiled},
    control,
    dataplane::{self, Mode, Paths},
    rules::{self, Ruleset},
};

/// xdpwall: an XDP firewall with pf-like rules.
#[derive(Parser)]
#[command(name = "xdpwall", version, about)]
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
        /// List the statements xdpwall leaves to other tools (NAT, routing options,
        /// scrub, queues, anchors, ...) and check the rest, instead of refusing the file.
        #[arg(long)]
        skip_unsupported: bool,
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
        /// Roll back unless `xdpwall confirm` follows within SECS seconds.
        #[arg(long, value_name = "SECS")]
        confirm: Option<u64>,
        /// Apply even if the ruleset blocks the SSH session this runs in.
        #[arg(long)]
        force: bool,
    },
    /// Keep the change made with `apply --confirm` (or `PUT /v1/ruleset?confirm=`).
    Confirm,
    /// Per-rule and per-interface counters, drops by reason.
    Status {
        /// Machine-readable output.
        #[arg(long, conflicts_with = "watch")]
        json: bool,
        /// Refresh every second with per-rule and per-interface rates.
        #[arg(long)]
        watch: bool,
    },
    /// The daemon: REST API, Prometheus metrics, commit-confirm (see README).
    Serve {
        /// Its configuration.
        #[arg(long, default_value = crate::serve::DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Waits for a commit-confirm deadline and rolls back (started by `apply --confirm`).
    #[command(hide = true)]
    RollbackTimer,
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
    /// Logged packets (`log` rules, `set default block log`): text lines, JSON lines or
    /// a pcap file (pflog link type: tcpdump shows rule and action). Reading consumes
    /// the records.
    Log {
        /// Keep reading as packets are logged, until interrupted.
        #[arg(long)]
        follow: bool,
        /// One JSON object per line.
        #[arg(long, conflicts_with = "pcap")]
        json: bool,
        /// Write a pcap file instead (created or truncated).
        #[arg(long, value_name = "FILE")]
        pcap: Option<PathBuf>,
    },
    /// A dynamic table (`table <NAME> persist`): `show`, `add ADDR [--for SECS]`,
    /// `delete ADDR`, `flush`.
    Table {
        /// The table's name (without the angle brackets).
        name: String,
        /// What to do.
        #[command(subcommand)]
        op: TableOp,
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

/// `xdpwall table NAME ...`.
#[derive(Subcommand)]
enum TableOp {
    /// List the sources in the table and when each leaves it.
    Show {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Put an address into the table.
    Add {
        /// The address.
        addr: std::net::IpAddr,
        /// Seconds it stays (default: until removed).
        #[arg(long = "for", value_name = "SECS")]
        secs: Option<u32>,
    },
    /// Take an address out of the table.
    Delete {
        /// The address.
        addr: std::net::IpAddr,
    },
    /// Empty the table.
    Flush,
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
/// the file. Returns the ruleset as written (the control plane records it and resolves
/// it again at every apply), what it compiles to on this host now, and what each
/// interface reference resolved to.
fn parse_and_compile(
    path: &std::path::Path,
    allow_empty: bool,
) -> anyhow::Result<(Ruleset, Compiled, Vec<rules::Resolved>)> {
    compile_parsed(path, rules::parse_file(path)?, allow_empty)
}

/// The second half of [`parse_and_compile`], for a ruleset already parsed (as written).
fn compile_parsed(
    path: &std::path::Path,
    written: Ruleset,
    allow_empty: bool,
) -> anyhow::Result<(Ruleset, Compiled, Vec<rules::Resolved>)> {
    if !allow_empty {
        rules::require_rules(&written, &path.display().to_string())?;
    }
    let (ruleset, resolved) = crate::host::resolve(&written)
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
    Ok((written, compiled, resolved))
}

/// Applies through the control plane (record, commit-confirm, anti-lockout).
fn change(
    paths: &Paths,
    ruleset: &Ruleset,
    rules: &std::path::Path,
    add: &[String],
    mode: Mode,
    confirm: Option<u64>,
    force: bool,
) -> anyhow::Result<control::Applied> {
    let who = std::env::var("SSH_CONNECTION")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(|ip| format!("cli ssh {ip}")))
        .unwrap_or_else(|| "cli".into());
    let applied = control::apply(
        paths,
        &control::Change {
            ruleset,
            source: Some(rules.display().to_string()),
            add,
            mode,
            confirm: confirm.map(std::time::Duration::from_secs),
            protect: control::Connection::from_ssh_env(),
            force,
            who,
        },
    )?;
    Ok(applied)
}

/// A commit-confirm change whose deadline passed while neither the daemon nor the
/// timer `apply --confirm` left behind ran (killed, say) is rolled back now, and one
/// still waiting is mentioned.
fn overdue_rollback(paths: &Paths) -> anyhow::Result<()> {
    let Ok(Some(pending)) = control::pending(paths) else { return Ok(()) };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    if pending.deadline > now {
        eprintln!(
            "note: a change by {} waits for confirmation: it rolls back in {} s unless `xdpwall confirm` runs",
            pending.who,
            pending.deadline - now
        );
    } else if let Some((p, _)) = control::rollback_if_due(paths, now)? {
        eprintln!("note: rolled back the change by {}: it was not confirmed in time", p.who);
    }
    Ok(())
}

/// Leaves a process behind that rolls back at the deadline unless confirmed: it has
/// a session of its own, so it outlives this command and the SSH session it ran in.
fn spawn_rollback_timer(paths: &Paths) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt as _;
    let exe = std::env::current_exe()?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--pin-dir")
        .arg(&paths.pin_dir)
        .arg("--run-dir")
        .arg(&paths.run_dir)
        .arg("rollback-timer")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: setsid is async-signal-safe and touches nothing of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    cmd.spawn()?;
    Ok(())
}

/// Runs one command; its exit status is not success when it found something wrong
/// that is not an error of the command itself (an interface that filters nothing).
fn execute(command: Command, paths: &Paths) -> anyhow::Result<ExitCode> {
    if matches!(command, Command::Load { .. } | Command::Apply { .. } | Command::Status { .. }) {
        overdue_rollback(paths)?;
    }
    match command {
        Command::Check { rules, allow_empty, skip_unsupported } => {
            let parsed = rules::parse_file_with(&rules, rules::ParseOptions { skip_unsupported })?;
            let (ruleset, compiled, resolved) = compile_parsed(&rules, parsed.ruleset.clone(), allow_empty)?;
            print!("{}", output::summary(&rules, &ruleset, &compiled));
            print!("{}", output::pf_settings(&ruleset));
            print!("{}", output::interface_addresses(&resolved));
            print!("{}", output::check_notes(&ruleset, &parsed, &rules::shadow::shadowed(&ruleset)));
        }
        Command::Load { mut args, mode, allow_empty } => {
            let rules = PathBuf::from(args.pop().expect("clap requires two or more"));
            let (ruleset, _, _) = parse_and_compile(&rules, allow_empty)?;
            let applied = change(paths, &ruleset, &rules, &args, mode.into(), None, false)?;
            print!("{}", output::apply_report(&applied.report));
        }
        Command::Apply { rules, dry_run, allow_empty, confirm, force } => {
            let (ruleset, compiled, _) = parse_and_compile(&rules, allow_empty)?;
            if dry_run {
                let diff = dataplane::diff(paths, &compiled)?;
                print!("{}", output::diff(&diff));
                println!("dry run: nothing changed");
            } else {
                let applied = change(paths, &ruleset, &rules, &[], Mode::Auto, confirm, force)?;
                print!("{}", output::apply_report(&applied.report));
                if let Some(secs) = confirm {
                    spawn_rollback_timer(paths)?;
                    println!("rolls back in {secs} s unless `xdpwall confirm` runs before");
                }
            }
        }
        Command::Confirm => match control::confirm(paths)? {
            Some(p) => println!("confirmed the change by {}", p.who),
            None => anyhow::bail!("no change waits for confirmation"),
        },
        Command::RollbackTimer => loop {
            let Some(pending) = control::pending(paths)? else { break };
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
            if pending.deadline > now {
                std::thread::sleep(std::time::Duration::from_secs((pending.deadline - now).min(1)));
                continue;
            }
            control::rollback_if_due(paths, now)?;
        },
        Command::Serve { config } => crate::serve::run(paths.clone(), &config)?,
        Command::Status { json: _, watch: true } => watch::run(paths)?,
        Command::Status { json, watch: false } => {
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
        Command::Log { follow, json, pcap } => {
            let sink = match (&pcap, json) {
                (Some(path), _) => log::Sink::pcap(path)?,
                (None, true) => log::Sink::Json,
                (None, false) => log::Sink::Text,
            };
            let n = log::run(paths, sink, follow)?;
            if let Some(path) = pcap {
                eprintln!("{n} packets written to {}", path.display());
            }
        }
        Command::Table { name, op } => {
            let mut table = dataplane::DynTable::open(paths, &name)?;
            match op {
                TableOp::Show { json } => {
                    let sources = table.list();
                    if json {
                        println!("{}", serde_json::to_string_pretty(&sources)?);
                    } else {
                        for s in &sources {
                            match s.expires_in_secs {
                                Some(secs) => println!("{}\t{secs:.0} s", s.addr),
                                None => println!("{}", s.addr),
                            }
                        }
                        eprintln!("<{name}>: {} sources", sources.len());
                    }
                }
                TableOp::Add { addr, secs } => {
                    table.add(addr, secs)?;
                    println!("{addr} added to <{name}>");
                }
                TableOp::Delete { addr } => {
                    if table.delete(addr)? {
                        println!("{addr} deleted from <{name}>");
                    } else {
                        println!("{addr} was not in <{name}>");
                    }
                }
                TableOp::Flush => println!("flushed {} sources from <{name}>", table.flush()?),
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
