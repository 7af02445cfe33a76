//! Runs the `xdpwall` binary against pin and run directories of its own, so tests and the
//! demo never touch a real deployment (/sys/fs/bpf/xdpwall, /run/xdpwall) or each other.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, Result, bail};
use filter_user::dataplane::{FlowEntry, Status};

use crate::netns::owner_is_gone;

/// Where `cargo xtask test` puts the binary's path.
pub const BIN_ENV: &str = "XDPWALL_BIN";

/// The `xdpwall` binary named by `XDPWALL_BIN`. Panics with advice when it is not set.
pub fn bin_from_env() -> PathBuf {
    std::env::var_os(BIN_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("{BIN_ENV} is not set: run the tests with `cargo xtask test`"))
}

/// The CLI with its own `XDPWALL_PIN_DIR` and `XDPWALL_RUN_DIR`. On drop it runs
/// `xdpwall unload` and deletes both directories.
#[derive(Debug)]
pub struct Xdpwall {
    bin: PathBuf,
    pin_dir: PathBuf,
    run_dir: PathBuf,
}

impl Xdpwall {
    /// The binary from `XDPWALL_BIN`, with fresh directories
    /// /sys/fs/bpf/xdpwall-test-<pid>-<n> and /run/xdpwall-test-<pid>-<n>.
    ///
    /// The first call in a process also deletes such directories left by dead test processes.
    pub fn isolated() -> Xdpwall {
        static SWEEP: std::sync::Once = std::sync::Once::new();
        SWEEP.call_once(sweep_stale_dirs);
        let name = format!("xdpwall-test-{}-{}", std::process::id(), crate::next_id());
        Xdpwall::with_dirs(bin_from_env(), Path::new("/sys/fs/bpf").join(&name), Path::new("/run").join(&name))
    }

    /// A given binary and directories.
    pub fn with_dirs(bin: impl Into<PathBuf>, pin_dir: impl Into<PathBuf>, run_dir: impl Into<PathBuf>) -> Xdpwall {
        Xdpwall { bin: bin.into(), pin_dir: pin_dir.into(), run_dir: run_dir.into() }
    }

    /// The pin directory (`XDPWALL_PIN_DIR`).
    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// The run directory (`XDPWALL_RUN_DIR`).
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// `xdpwall ARGS` with the environment set, not yet run.
    pub fn command<S: AsRef<OsStr>>(&self, args: impl IntoIterator<Item = S>) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args).env("XDPWALL_PIN_DIR", &self.pin_dir).env("XDPWALL_RUN_DIR", &self.run_dir);
        cmd
    }

    /// Runs `xdpwall ARGS` and returns its output, whatever its exit status.
    pub fn output<S: AsRef<OsStr>>(&self, args: impl IntoIterator<Item = S>) -> Result<Output> {
        let mut cmd = self.command(args);
        cmd.output().with_context(|| format!("cannot run {}", self.bin.display()))
    }

    /// Runs `xdpwall ARGS`; a non-zero exit is an error carrying its stderr.
    pub fn run<S: AsRef<OsStr>>(&self, args: impl IntoIterator<Item = S>) -> Result<Output> {
        let args: Vec<S> = args.into_iter().collect();
        let shown = args.iter().map(|a| a.as_ref().to_string_lossy()).collect::<Vec<_>>().join(" ");
        let out = self.output(&args)?;
        if !out.status.success() {
            bail!("`xdpwall {shown}` failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(out)
    }
}

impl Xdpwall {
    /// `xdpwall status --json`, read through the structs the CLI writes it from; fails
    /// when status fails (exit 1 included: an interface filters nothing).
    pub fn status(&self) -> Result<Status> {
        let out = self.run(["status", "--json"])?;
        serde_json::from_slice(&out.stdout).context("status --json is not a status report")
    }

    /// `xdpwall status --json` whatever its exit: the report, if it printed one, and the
    /// output (exit code, stderr).
    pub fn status_report(&self) -> Result<(Option<Status>, Output)> {
        let out = self.output(["status", "--json"])?;
        Ok((serde_json::from_slice(&out.stdout).ok(), out))
    }

    /// `xdpwall states --json FILTERS...`: the tracked flows, oldest first.
    pub fn states<S: AsRef<OsStr>>(&self, filters: impl IntoIterator<Item = S>) -> Result<Vec<FlowEntry>> {
        let mut args: Vec<std::ffi::OsString> = vec!["states".into(), "--json".into()];
        args.extend(filters.into_iter().map(|f| f.as_ref().to_owned()));
        let out = self.run(&args)?;
        serde_json::from_slice(&out.stdout).context("states --json is not a list of flows")
    }
}

impl Drop for Xdpwall {
    fn drop(&mut self) {
        if self.pin_dir.exists() || self.run_dir.exists() {
            let _ = self.output(["unload", "--force"]);
        }
        let _ = std::fs::remove_dir_all(&self.pin_dir);
        let _ = std::fs::remove_dir_all(&self.run_dir);
    }
}

/// Deletes `xdpwall-test-<pid>-<n>` pin and run directories whose process is gone.
fn sweep_stale_dirs() {
    for parent in ["/sys/fs/bpf", "/run"] {
        let Ok(entries) = std::fs::read_dir(parent) else {
            continue;
        };
        for name in entries.filter_map(|e| e.ok()?.file_name().into_string().ok()) {
            if name.starts_with("xdpwall-test-") && owner_is_gone(&name) {
                let _ = std::fs::remove_dir_all(Path::new(parent).join(name));
            }
        }
    }
}
