//! The daemon's configuration (`/etc/xdpwall/serve.toml`): which ruleset to enforce on
//! which interfaces at boot, where the API listens, and the bearer token's file.
//! The ruleset itself stays a ruleset file (`/etc/xdpwall/xdpwall.conf`).
//!
//! ```toml
//! ruleset = "/etc/xdpwall/xdpwall.conf"
//! interfaces = ["eth0", "eth1"]
//! mode = "auto"                                  # native | generic | auto
//! listen = ["unix:/run/xdpwall/api.sock", "127.0.0.1:9470"]
//! token_file = "/etc/xdpwall/token"              # needed by any non-loopback address
//! table_dir = "/etc/xdpwall/tables"              # where API rulesets may read table files
//! ```

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::dataplane::Mode;

/// Default configuration file.
pub const DEFAULT_CONFIG: &str = "/etc/xdpwall/serve.toml";

/// Where the API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// A unix socket (0600, root only): `unix:/run/xdpwall/api.sock`.
    Unix(PathBuf),
    /// A TCP address: `127.0.0.1:9470`.
    Tcp(SocketAddr),
}

impl Listen {
    fn parse(s: &str) -> Result<Listen> {
        if let Some(path) = s.strip_prefix("unix:") {
            if !Path::new(path).is_absolute() {
                bail!("listen address {s:?}: a unix socket path is absolute");
            }
            return Ok(Listen::Unix(path.into()));
        }
        s.parse().map(Listen::Tcp).with_context(|| format!("listen address {s:?}: expected unix:PATH or IP:PORT"))
    }

    /// Whether a client must present the bearer token: any TCP address but loopback.
    pub fn needs_token(&self) -> bool {
        matches!(self, Listen::Tcp(a) if !a.ip().is_loopback())
    }
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Unix(p) => write!(f, "unix:{}", p.display()),
            Listen::Tcp(a) => write!(f, "{a}"),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    ruleset: PathBuf,
    #[serde(default)]
    interfaces: Vec<String>,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    listen: Option<Vec<String>>,
    #[serde(default)]
    token_file: Option<PathBuf>,
    #[serde(default)]
    table_dir: Option<PathBuf>,
}

/// The daemon's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub path: PathBuf,
    /// The ruleset enforced at boot and on SIGHUP.
    pub ruleset: PathBuf,
    /// Interfaces to load.
    pub interfaces: Vec<String>,
    /// How to attach them.
    pub mode: Mode,
    /// Where the API listens.
    pub listen: Vec<Listen>,
    /// The bearer token's file.
    pub token_file: Option<PathBuf>,
    /// The only directory a ruleset from the API may read table files from.
    pub table_dir: PathBuf,
}

impl Config {
    /// Reads and checks `path`; relative paths in it are relative to its directory.
    pub fn read(path: &Path, run_dir: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Config::parse(&text, path, run_dir)
    }

    fn parse(text: &str, path: &Path, run_dir: &Path) -> Result<Config> {
        let raw: Raw = toml::from_str(text).map_err(|e| {
            let (line, col) = e
                .span()
                .map(|s| {
                    let before = &text[..s.start.min(text.len())];
                    (before.matches('\n').count() + 1, before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1)
                })
                .unwrap_or((0, 0));
            anyhow::anyhow!("{}:{line}:{col}: {}", path.display(), e.message())
        })?;
        let dir = path.parent().unwrap_or(Path::new("/"));
        let mode = match raw.mode.as_deref() {
            None | Some("auto") => Mode::Auto,
            Some("native") => Mode::Native,
            Some("generic") => Mode::Generic,
            Some(other) => bail!("{}: mode {other:?}: expected native, generic or auto", path.display()),
        };
        let listen = match raw.listen {
            None => vec![Listen::Unix(run_dir.join("api.sock"))],
            Some(l) => {
                l.iter().map(|s| Listen::parse(s)).collect::<Result<_>>().with_context(|| path.display().to_string())?
            }
        };
        if listen.is_empty() {
            bail!("{}: `listen` is empty: the API needs somewhere to listen", path.display());
        }
        let config = Config {
            path: path.to_path_buf(),
            ruleset: dir.join(raw.ruleset),
            interfaces: raw.interfaces,
            mode,
            listen,
            token_file: raw.token_file.map(|t| dir.join(t)),
            table_dir: raw.table_dir.map_or_else(|| dir.join("tables"), |t| dir.join(t)),
        };
        if config.listen.iter().any(Listen::needs_token) && config.token_file.is_none() {
            bail!(
                "{}: listening on a non-loopback address needs `token_file` (a 0600 file holding the bearer token)",
                path.display()
            );
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_refusals() {
        let p = Path::new("/etc/xdpwall/serve.toml");
        let run = Path::new("/run/xdpwall");
        let c = Config::parse("ruleset = \"xdpwall.conf\"\ninterfaces = [\"eth0\"]\n", p, run).unwrap();
        assert_eq!(c.ruleset, Path::new("/etc/xdpwall/xdpwall.conf"));
        assert_eq!(c.listen, [Listen::Unix("/run/xdpwall/api.sock".into())]);
        assert_eq!(c.table_dir, Path::new("/etc/xdpwall/tables"));

        let e = Config::parse("ruleset = \"r\"\nlisten = [\"0.0.0.0:9470\"]\n", p, run).unwrap_err();
        assert!(e.to_string().contains("needs `token_file`"), "{e}");
        assert!(Config::parse("ruleset = \"r\"\nlisten = [\"127.0.0.1:9470\"]\n", p, run).is_ok());
        let e = Config::parse("ruleset = \"r\"\nlisen = []\n", p, run).unwrap_err();
        assert!(e.to_string().starts_with("/etc/xdpwall/serve.toml:2:1: unknown field `lisen`"), "{e}");
    }
}
