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
