//! Test bed for xdpwall's integration tests and `cargo xtask demo`.
//!
//! - [`netns`]: network namespaces and veth pairs that clean up after themselves, even when a
//!   test panics, and never collide between tests running in parallel.
//! - [`packet`]: a builder for test frames (BPF_PROG_TEST_RUN) that records where each header is.
//! - [`cli`]: runs the `xdpwall` binary against its own pin and run directories.
//! - [`bpf`]: xdpwall's program loaded for one ruleset, for BPF_PROG_TEST_RUN, with its maps
//!   pinned in a directory of its own.
//!
//! Everything but [`packet`] needs root; `cargo xtask test` runs the suites as root and sets
//! `XDPWALL_BIN`.

#![warn(missing_docs)]

pub mod bpf;
pub mod cli;
pub mod netns;
pub mod packet;

/// A directory under the system's temporary directory, named after the test and this
/// process, removed with everything in it on drop (also when the test panics).
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    /// Makes `<tmp>/xdpwall-<name>-<pid>`.
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("xdpwall-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("the temporary directory is writable");
        TempDir(dir)
    }

    /// Writes `text` to the file `name` in the directory and returns its path.
    pub fn write(&self, name: &str, text: &str) -> std::path::PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("the temporary directory is writable");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether this process runs as root (euid 0), which namespaces, veth and XDP need.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A number unique within this process, for names and subnets of test resources.
pub(crate) fn next_id() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Gives a UDP socket a 256 MiB receive buffer (SO_RCVBUFFORCE, root), so a test that
/// counts datagrams while applies keep both cores busy never loses one in the socket:
/// any loss it sees is the filter's.
pub fn big_receive_buffer(sock: &std::net::UdpSocket) {
    use std::os::fd::AsRawFd;
    let bytes: libc::c_int = 256 << 20;
    // SAFETY: a valid socket and a pointer to an int of the size given.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVBUFFORCE: {}", std::io::Error::last_os_error());
}
