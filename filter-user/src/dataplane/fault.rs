//! Fault injection for the crash-consistency tests (debug builds only): every step of
//! an apply that changes the kernel's or the disk's state passes a numbered point, and
//! `XDPWALL_FAULT=kill:N` kills the process with SIGKILL at point N (as a power cut or
//! `kill -9` would), `XDPWALL_FAULT=fail:N` makes point N fail (as a kernel error
//! would). `XDPWALL_FAULT=count` prints each point to stderr, so a test can sweep them.

use super::Error;

/// Passes one point of the apply. `step` names it for `count` and for the error.
#[cfg(debug_assertions)]
pub fn point(step: &'static str) -> Result<(), Error> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static PASSED: AtomicU32 = AtomicU32::new(0);
    let Ok(spec) = std::env::var("XDPWALL_FAULT") else { return Ok(()) };
    let n = PASSED.fetch_add(1, Ordering::SeqCst) + 1;
    if spec == "count" {
        eprintln!("fault point {n}: {step}");
        return Ok(());
    }
    let at = |prefix: &str| spec.strip_prefix(prefix).and_then(|v| v.parse::<u32>().ok()) == Some(n);
    if at("kill:") {
        // SAFETY: sending a signal to ourselves has no memory effects.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
    if at("fail:") {
        return Err(Error::Injected(step));
    }
    Ok(())
}

/// Release builds carry no fault injection.
#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn point(_step: &'static str) -> Result<(), Error> {
    Ok(())
}
