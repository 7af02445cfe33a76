//! What runs on the receiver end during a throughput row: the bare XDP_DROP program,
//! xdpwall (through its CLI, as an operator runs it) or an nftables netdev table. Each
//! removes itself from the interface on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use aya::programs::XdpMode;
use xdpwall_tests::cli::Xdpwall;

use crate::kernel::{PinDir, Reference, RunTime};
use crate::live::run;

/// `bench_drop` attached in driver mode; the program owns its link, so dropping this
/// detaches it.
pub struct Ceiling {
    program: Reference,
}

impl Ceiling {
    /// Loads `bench_drop` and attaches it to `iface`.
    pub fn attach(pins: &PinDir, iface: &str) -> Result<Ceiling> {
        let mut program = Reference::drop_program(pins)?;
        program
            .program_mut()
            .attach(iface, XdpMode::Driver)
            .with_context(|| format!("attaching bench_drop to {iface} (native)"))?;
        Ok(Ceiling { program })
    }

    /// The program's run-time statistics (see [`RunTime`]).
    pub fn run_time(&self) -> Result<RunTime> {
        self.program.run_time()
    }
}

/// xdpwall on one interface through its CLI, with pin and run directories of its own;
/// `xdpwall unload` and the directories' removal on drop.
pub struct XdpwallCli {
    cli: Xdpwall,
    iface: String,
    loaded: bool,
}

impl XdpwallCli {
    /// The binary `bin`, not loaded yet.
    pub fn new(bin: &Path, iface: &str) -> XdpwallCli {
        let name = format!("xdpwall-bench-{}", std::process::id());
        let cli = Xdpwall::with_dirs(
            bin,
            Path::new("/sys/fs/bpf").join(&name),
            Path::new("/run").join(&name),
        );
        XdpwallCli {
            cli,
            iface: iface.to_string(),
            loaded: false,
        }
    }

    /// Makes `rules` the ruleset: `load IFACE RULES --mode native` the first time,
    /// `apply RULES` after that.
    pub fn set_rules(&mut self, rules: &Path) -> Result<()> {
        if self.loaded {
            self.cli.run(["apply".as_ref(), rules.as_os_str()])?;
        } else {
            self.cli.run([
                "load".as_ref(),
                self.iface.as_ref(),
                rules.as_os_str(),
                "--mode".as_ref(),
                "native".as_ref(),
            ])?;
            self.loaded = true;
        }
        Ok(())
    }

    /// Packets counted by rule `number` (from 1), from `xdpwall status --json`.
    pub fn rule_packets(&self, number: usize) -> Result<u64> {
        let out = self.cli.run(["status", "--json"])?;
        let status: serde_json::Value =
            serde_json::from_slice(&out.stdout).context("parsing `xdpwall status --json`")?;
        let rules = status["rules"]
            .as_array()
            .context("`xdpwall status --json` has no rules")?;
        rules
            .iter()
            .find(|r| r["number"].as_u64() == Some(number as u64))
            .and_then(|r| r["packets"].as_u64())
            .with_context(|| {
                format!("`xdpwall status --json` has no packet count for rule {number}")
            })
    }

    /// Packets passed on the fast path of tracked flows (`state_matches` in
    /// `xdpwall status --json`, counter slot `STATE`).
    pub fn state_packets(&self) -> Result<u64> {
        let out = self.cli.run(["status", "--json"])?;
        let status: serde_json::Value =
            serde_json::from_slice(&out.stdout).context("parsing `xdpwall status --json`")?;
        status["state_matches"]["packets"]
            .as_u64()
            .context("`xdpwall status --json` has no state_matches.packets")
    }

    /// The run-time statistics (see [`RunTime`]) of the XDP program xdpwall enforces,
    /// which it pins as `program_xdp` in its pin directory.
    pub fn run_time(&self) -> Result<RunTime> {
        RunTime::of_pinned(&self.cli.pin_dir().join("program_xdp"))
    }

    /// Unloads now (also done on drop).
    pub fn unload(&mut self) -> Result<()> {
        if self.loaded {
            self.cli.run(["unload"])?;
            self.loaded = false;
        }
        Ok(())
    }
}

/// An nftables table, deleted on drop.
pub struct NftTable {
    name: String,
}

impl NftTable {
    /// Loads `script` (which defines `table netdev NAME`) with `nft -f`.
    pub fn load(name: &str, script: &str, dir: &Path) -> Result<NftTable> {
        let path: PathBuf = dir.join(format!("{name}.nft"));
        std::fs::write(&path, script).with_context(|| format!("writing {}", path.display()))?;
        let _ = Command::new("nft")
            .args(["delete", "table", "netdev", name])
            .output();
        run(Command::new("nft").arg("-f").arg(&path))
            .context("loading the nftables rules (is nftables installed?)")?;
        Ok(NftTable {
            name: name.to_string(),
        })
    }

    /// Packets counted by the table's named counter `hits`.
    pub fn counted(&self) -> Result<u64> {
        let out = Command::new("nft")
            .args(["-j", "list", "counter", "netdev", &self.name, "hits"])
            .output()
            .context("cannot run nft")?;
        if !out.status.success() {
            bail!(
                "nft list counter failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).context("parsing `nft -j list counter`")?;
        v["nftables"]
            .as_array()
            .and_then(|items| items.iter().find_map(|i| i["counter"]["packets"].as_u64()))
            .context("`nft -j list counter` shows no packet count")
    }
}

impl Drop for NftTable {
    fn drop(&mut self) {
        let _ = Command::new("nft")
            .args(["delete", "table", "netdev", &self.name])
            .output();
    }
}
