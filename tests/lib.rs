//! Test bed for xdpwall's integration tests and `cargo xtask demo`.
//!
//! - [`netns`]: network namespaces and veth pairs that clean up after themselves, even when a
//!   test panics, and never collide between tests running in parallel.
//! - [`packet`]: a builder for test frames (BPF_PROG_TEST_RUN) that records where each header is.
//! - [`cli`]: runs the `xdpwall` binary against its own pin and run directories.
//!
//! Everything but [`packet`] needs root; `cargo xtask test` runs the suites as root and sets
//! `XDPWALL_BIN`.

#![warn(missing_docs)]

pub mod cli;
pub mod netns;
pub mod packet;

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
