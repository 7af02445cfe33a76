//! The benchmark process on its machine: signals, CPU pinning and priority, commands,
//! and the lock that keeps two runs apart.

use super::*;

/// Set by SIGINT or SIGTERM once [`catch_signals`] has run.
pub(super) static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Makes SIGINT and SIGTERM set a flag instead of killing the process, so a run
/// interrupted by Ctrl-C unwinds and its destructors remove what it made.
pub fn catch_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t) };
    }
}

/// An error once SIGINT or SIGTERM has arrived.
pub fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::Relaxed) {
        bail!("interrupted");
    }
    Ok(())
}

/// Sleeps for `d`, in short steps, ending early with an error on SIGINT or SIGTERM.
pub(super) fn pause(d: Duration) -> Result<()> {
    let end = Instant::now() + d;
    loop {
        check_interrupted()?;
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

/// Moves this thread into the network namespace at `path`.
pub(super) fn enter_netns(path: &str) -> Result<()> {
    let ns = File::open(path).with_context(|| format!("opening {path}"))?;
    // SAFETY: `ns` is an open namespace file; CLONE_NEWNET moves only this thread.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("setns into {path}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// Pins thread `tid` (0: the calling thread) to `cpu`.
pub(super) fn set_affinity(tid: i32, cpu: usize) -> Result<()> {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET writes inside it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size given.
    if unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) } != 0 {
        bail!("pinning thread {tid} to CPU {cpu}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// Gives thread `tid` (0: the calling thread) nice -20, so that other work on the
/// machine takes as little as possible from the generator and the receiver (a
/// SCHED_OTHER neighbour at nice 0 then gets about 1% of a shared core).
pub fn favour(tid: i32) -> Result<()> {
    // SAFETY: setpriority has no memory effects; `who` is a thread id or 0.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, -20) } != 0 {
        bail!("renicing thread {tid}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// The CPUs this process may run on.
pub fn online_cpus() -> Vec<usize> {
    // SAFETY: as in `set_affinity`; sched_getaffinity fills `set`.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } != 0 {
        return vec![0];
    }
    (0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, &set) }).collect()
}

/// Pids of kernel threads whose name starts with `prefix`.
pub(super) fn threads_named(prefix: &str) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = dir
        .filter_map(|e| {
            let pid: i32 = e.ok()?.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            comm.trim_end().starts_with(prefix).then_some(pid)
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// Runs `ip ARGS`; a failure is an error with ip's message.
pub fn ip(args: &[&str]) -> Result<()> {
    run(Command::new("ip").args(args))
}

/// Runs a command; a failure is an error with its stderr.
pub fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().with_context(|| format!("cannot run {shown}"))?;
    if !out.status.success() {
        bail!("{shown} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// An exclusive lock for the whole run: two benchmarks at once would measure each other.
pub struct RunLock {
    pub(super) _file: File,
}

impl RunLock {
    /// Takes /run/xdpwall-bench.lock, failing at once if another run holds it.
    pub fn take() -> Result<RunLock> {
        let path = "/run/xdpwall-bench.lock";
        let mut file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("opening {path}"))?;
        // SAFETY: flock on an open file descriptor.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            bail!("another benchmark holds {path}");
        }
        let _ = writeln!(file, "{}", std::process::id());
        Ok(RunLock { _file: file })
    }
}
