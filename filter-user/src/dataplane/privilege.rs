//! Root-only state. The run and pin directories, the lock and the state file are made
//! so that no other user can create them first, replace them, hold the lock or read
//! the ruleset: directories 0700 and checked when they exist, files 0600 and opened
//! without following symbolic links.

use std::{
    fs::{DirBuilder, File, OpenOptions},
    io::{Read as _, Write as _},
    os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _},
    path::Path,
};

use super::Error;

/// Capabilities the commands that touch the kernel need (bits of `CapEff`).
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

/// Refuses with a clear message unless the process may load BPF programs and attach
/// them to interfaces (root, or CAP_BPF and CAP_NET_ADMIN).
pub fn require_privileges() -> Result<(), Error> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let caps = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    let has = |cap: u32| caps & (1 << cap) != 0;
    if has(CAP_NET_ADMIN) && (has(CAP_BPF) || has(CAP_SYS_ADMIN)) { Ok(()) } else { Err(Error::NotPrivileged) }
}

/// Creates `dir` (and missing parents) with mode 0700, or checks the existing one: a
/// real directory (not a symbolic link), owned by this user, writable by no one else.
/// Another user who made it first could otherwise replace what is in it.
pub fn secure_dir(dir: &Path) -> Result<(), Error> {
    match DirBuilder::new().recursive(true).mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) => return Err(Error::Io(format!("creating {}", dir.display()), e)),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| Error::Io(format!("inspecting {}", dir.display()), e))?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let why = if !meta.file_type().is_dir() {
        Some("it is not a directory")
    } else if meta.uid() != me {
        Some("it belongs to another user")
    } else if meta.mode() & 0o022 != 0 {
        Some("other users may write to it")
    } else {
        None
    };
    match why {
        Some(why) => Err(Error::UnsafeDir { path: dir.to_path_buf(), why }),
        None => Ok(()),
    }
}

/// Opens `path` (0600, created if missing) without following a symbolic link.
fn open_private(path: &Path, write: bool, create: bool) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(write)
        .create(create)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// An exclusive lock on the run directory, held until dropped, so that two commands
/// never interleave. Taken before anything else is created.
pub struct Lock {
    _file: File,
}

/// Takes the lock in `run_dir` (made 0700 first), waiting for another command to end.
pub fn lock(run_dir: &Path) -> Result<Lock, Error> {
    lock_named(run_dir, "lock")
}

/// Takes the lock file `name` in `run_dir` (made 0700 first), waiting for its holder.
/// The control plane (commit-confirm) serialises its own steps with one of these,
/// around applies that take the data plane's `lock`.
pub fn lock_named(run_dir: &Path, name: &str) -> Result<Lock, Error> {
    secure_dir(run_dir)?;
    let path = run_dir.join(name);
    let file = open_private(&path, true, true).map_err(|e| Error::Io(format!("opening {}", path.display()), e))?;
    file.lock().map_err(|e| Error::Io(format!("locking {}", path.display()), e))?;
    Ok(Lock { _file: file })
}

/// The contents of a private file, `None` when it does not exist.
pub fn read_private(path: &Path) -> Result<Option<Vec<u8>>, Error> {
    match open_private(path, false, false) {
        Ok(mut f) => {
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes).map_err(|e| Error::Io(format!("reading {}", path.display()), e))?;
            Ok(Some(bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Io(format!("reading {}", path.display()), e)),
    }
}

/// Replaces `path` with `bytes` atomically and durably: a fresh 0600 file beside it,
/// synced, renamed over it, and the directory synced, so a crash leaves the old or the
/// new contents, never a torn file.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let tmp = path.with_extension("tmp");
    let io = |what: &str, e| Error::Io(format!("{what} {}", tmp.display()), e);
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("removing", e)),
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)
        .map_err(|e| io("creating", e))?;
    f.write_all(bytes).map_err(|e| io("writing", e))?;
    f.sync_all().map_err(|e| io("syncing", e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::Io(format!("renaming to {}", path.display()), e))?;
    sync_dir(path)
}

/// Removes a private file; a missing one is fine.
pub fn remove_private(path: &Path) -> Result<(), Error> {
    match std::fs::remove_file(path) {
        Ok(()) => sync_dir(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Io(format!("removing {}", path.display()), e)),
    }
}

fn sync_dir(path: &Path) -> Result<(), Error> {
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::Io(format!("syncing {}", dir.display()), e))
}
