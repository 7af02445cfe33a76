//! `xdpwall serve`: the daemon. It adopts whatever is pinned (counters and flows
//! carry on) or, when nothing is, loads the configured ruleset on the configured
//! interfaces; then serves the API (`api`) and `/metrics` (`metrics`) on unix sockets
//! and TCP addresses (`config`; a non-loopback address needs a bearer token, `auth`).
//!
//! Lifecycle: SIGHUP re-reads the configuration and re-applies its ruleset (one atomic
//! apply; a bad file changes nothing and is logged); SIGTERM and SIGINT stop the daemon
//! and leave the filter enforcing; after a crash or `kill -9` the pins keep enforcing
//! and the next start adopts them. A pending commit-confirm change is checked every
//! second and rolled back when its deadline passes, also after a restart.
//!
//! Every change is logged through `tracing` (who, what, the diff summary).

mod api;
mod auth;
pub mod config;
mod input;
mod metrics;

use std::{
    path::Path,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use tokio::{
    net::{TcpListener, UnixListener},
    signal::unix::{SignalKind, signal},
    sync::watch,
};

pub use api::OPENAPI;
pub use config::{Config, DEFAULT_CONFIG, Listen};

use crate::{
    control::{self, Change},
    dataplane::{self, Diff, Paths, privilege},
    rules,
};

/// What the daemon's tasks share.
pub struct Daemon {
    paths: Paths,
    config: RwLock<Config>,
    metrics: metrics::DaemonMetrics,
}

/// Logs one change of the ruleset.
fn log_change(who: &str, what: &str, generation: u64, diff: &Diff) {
    tracing::info!(
        who,
        what,
        generation,
        added = diff.added.len(),
        removed = diff.removed.len(),
        kept = diff.kept,
        "ruleset changed: +{} -{} ={}",
        diff.added.len(),
        diff.removed.len(),
        diff.kept
    );
    for r in &diff.removed {
        tracing::info!(who, "- {r}");
    }
    for r in &diff.added {
        tracing::info!(who, "+ {r}");
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(paths: Paths, config_path: &Path) -> Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("XDPWALL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    privilege::require_privileges()?;
    let config = Config::read(config_path, &paths.run_dir)?;
    let token = config.token_file.as_deref().map(auth::Token::read).transpose()?;
    start(&paths, &config)?;
    let daemon = Arc::new(Daemon { paths, config: RwLock::new(config), metrics: Default::default() });
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(serve(daemon, token))
}

/// Adopts what is pinned, or loads the configured ruleset when nothing is.
fn start(paths: &Paths, config: &Config) -> Result<()> {
    match dataplane::status(paths) {
        Ok(status) => {
            let names: Vec<&str> = status.interfaces.iter().map(|i| i.name.as_str()).collect();
            tracing::info!(
                generation = status.generation,
                interfaces = names.join(","),
                "adopted the pinned filter (counters and flows carry on)"
            );
            for name in &config.interfaces {
                if !names.contains(&name.as_str()) {
                    tracing::warn!(interface = name, "configured but not loaded: SIGHUP attaches it");
                }
            }
            Ok(())
        }
        Err(dataplane::Error::NotLoaded(_) | dataplane::Error::Stranded { .. }) => {
            if config.interfaces.is_empty() {
                bail!("{}: nothing is loaded and `interfaces` is empty", config.path.display());
            }
            reload(paths, config, "start").map(|_| ())
        }
        Err(e) => Err(e.into()),
    }
}

/// Applies the configuration's ruleset, attaching interfaces it names that are not
/// loaded yet.
fn reload(paths: &Paths, config: &Config, who: &str) -> Result<u64> {
    let ruleset = rules::parse_file(&config.ruleset)?;
    let loaded: Vec<String> = match dataplane::status(paths) {
        Ok(s) => s.interfaces.into_iter().map(|i| i.name).collect(),
        Err(_) => Vec::new(),
    };
    let add: Vec<String> = config.interfaces.iter().filter(|i| !loaded.contains(i)).cloned().collect();
    let change = Change {
        ruleset: &ruleset,
        source: Some(config.ruleset.display().to_string()),
        add: &add,
        mode: config.mode,
        confirm: None,
        protect: None,
        force: false,
        who: who.into(),
    };
    let applied = control::apply(paths, &change)?;
    for (name, mode) in &applied.report.attached {
        tracing::info!(who, interface = name, mode, "attached");
    }
    for note in &applied.report.notes {
        tracing::info!(who, "{note}");
    }
    log_change(who, "apply", applied.generation, &applied.report.diff);
    Ok(applied.generation)
}

/// Binds every listener, serves until SIGTERM/SIGINT, handles SIGHUP and the
/// commit-confirm deadline.
async fn serve(daemon: Arc<Daemon>, token: Option<auth::Token>) -> Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let listen = daemon.config.read().expect("not poisoned").listen.clone();
    let mut servers = Vec::new();
    for addr in &listen {
        let state = api::Listener { daemon: daemon.clone(), token: token.clone().filter(|_| addr.needs_token()) };
        let app = api::router(state);
        let mut stop = stop_rx.clone();
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        match addr {
            Listen::Tcp(a) => {
                let l = TcpListener::bind(a).await.with_context(|| format!("listening on {a}"))?;
                let svc = app.into_make_service_with_connect_info::<api::Peer>();
                servers.push(tokio::spawn(async move { axum::serve(l, svc).with_graceful_shutdown(shutdown).await }));
            }
            Listen::Unix(path) => {
                let l = bind_unix(path)?;
                let svc = app.into_make_service_with_connect_info::<api::Peer>();
                servers.push(tokio::spawn(async move { axum::serve(l, svc).with_graceful_shutdown(shutdown).await }));
            }
        }
        tracing::info!(address = %addr, token = addr.needs_token(), "listening");
    }
    tokio::spawn(confirm_watch(daemon.clone()));

    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                let d = daemon.clone();
                let _ = tokio::task::spawn_blocking(move || on_sighup(&d)).await;
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    let _ = stop_tx.send(true);
    for s in servers {
        let _ = tokio::time::timeout(Duration::from_secs(5), s).await;
    }
    for addr in &listen {
        if let Listen::Unix(p) = addr {
            let _ = std::fs::remove_file(p);
        }
    }
    tracing::info!("stopped; the filter keeps enforcing what is pinned");
    Ok(())
}

/// SIGHUP: the configuration file again, then its ruleset; on any error nothing changes.
fn on_sighup(daemon: &Daemon) {
    let path = daemon.config.read().expect("not poisoned").path.clone();
    let started = Instant::now();
    let result = Config::read(&path, &daemon.paths.run_dir).and_then(|config| {
        let generation = reload(&daemon.paths, &config, "SIGHUP")?;
        let mut current = daemon.config.write().expect("not poisoned");
        if current.listen != config.listen || current.token_file != config.token_file {
            tracing::warn!("listen addresses and the token file change at the next start only");
        }
        *current = config;
        Ok(generation)
    });
    match result {
        Ok(generation) => {
            daemon.metrics.applied("ok", Some(started.elapsed().as_secs_f64()));
            tracing::info!(generation, "SIGHUP: configuration re-applied");
        }
        Err(e) => {
            daemon.metrics.applied("error", None);
            tracing::error!("SIGHUP: nothing changed: {e:#}");
        }
    }
}

/// Rolls back a commit-confirm change whose deadline passed (checked every second).
async fn confirm_watch(daemon: Arc<Daemon>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let d = daemon.clone();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |t| t.as_secs());
        let done = tokio::task::spawn_blocking(move || control::rollback_if_due(&d.paths, now)).await;
        match done {
            Ok(Ok(Some((pending, report)))) => {
                daemon.metrics.applied("rollback", Some(report.elapsed.as_secs_f64()));
                tracing::warn!(change_by = pending.who, "not confirmed in time: rolled back");
                log_change("commit-confirm", "rollback", pending.previous.generation, &report.diff);
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::error!("rolling back an unconfirmed change failed (retrying): {e}"),
            Err(e) => tracing::error!("rollback task: {e}"),
        }
    }
}

/// A unix socket only root can use: its directory is checked (0700, ours), a stale
/// socket of a dead daemon is replaced, and the socket is made 0600.
fn bind_unix(path: &Path) -> Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
    let dir = path.parent().context("a socket path has a directory")?;
    privilege::secure_dir(dir)?;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            bail!("{} exists and is not a socket", path.display());
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!("{}: another daemon is listening there", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("removing the stale socket {}", path.display()))?;
    }
    let l = UnixListener::bind(path).with_context(|| format!("listening on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}
