//! The two hooks on every loaded interface, XDP (packets arriving) and TC egress
//! (packets leaving), each attached once and then only ever swapped to a new program,
//! so an interface never loses its filter and igb never resets the port.
//!
//! XDP is a pinned bpf_link, swapped with `bpf_link_update`. TC egress is a pinned tcx
//! link where the kernel has tcx (Linux 6.6); before that it is a classic cls_bpf filter
//! in a clsact qdisc at a fixed priority and handle ([`CLASSIC_PRIORITY`],
//! [`CLASSIC_HANDLE`]), swapped by replacing the filter's program in place (the kernel
//! swaps the program pointer of the existing filter: no moment without a filter). A
//! classic filter needs no fd to stay, so instead of a link its current program is pinned
//! at `links/egress-tc/<iface>`, which also marks the interface as using it.

use std::path::{Path, PathBuf};

use aya::programs::{
    LinkOrder, SchedClassifier, TcAttachType, Xdp, XdpMode,
    links::{FdLink, Link, PinnedLink},
    tc::{NlOptions, SchedClassifierLink, TcAttachOptions, TcHandle, qdisc_add_clsact},
    xdp::XdpLink,
};
use aya::util::KernelVersion;
use aya_obj::programs::XdpAttachType;

use super::{Error, Mode, Paths, error_chain, nic, program::LoadedProgram};

/// Priority of the classic TC egress filter: 1, the first filter to run, as a tcx
/// program runs before any classic filter.
pub const CLASSIC_PRIORITY: u16 = 1;
/// Handle of the classic TC egress filter (0x7877, "xw").
pub const CLASSIC_HANDLE: TcHandle = TcHandle::new(0, 0x7877);

/// Whether this kernel attaches TC programs with tcx links (Linux 6.6 and later).
fn has_tcx() -> bool {
    KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0))
}

/// The oldest kernel xdpwall is tested on (`cargo xtask vmtest`: Debian 12's 6.1).
const OLDEST_TESTED: KernelVersion = KernelVersion::new(6, 1, 0);

/// A program the kernel refused to load, on a kernel older than any xdpwall is tested
/// on, says so next to the verifier's words (older verifiers reject code newer ones
/// accept; 6.1 needed the classifier's loops written for it).
pub fn on_untested_kernel(e: Error) -> Error {
    match (&e, KernelVersion::current()) {
        (Error::Load(_), Ok(v)) if v < OLDEST_TESTED => Error::Invalid(format!(
            "{e}\n(this kernel, {}.{}.x, is older than Linux 6.1, the oldest xdpwall is tested on; its verifier may \
             reject what newer ones accept)",
            v.code() >> 16,
            (v.code() >> 8) & 0xff
        )),
        _ => e,
    }
}

/// A hook point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// XDP, in the driver (or generic).
    Xdp,
    /// TC egress (tcx).
    Egress,
}

impl Hook {
    pub const ALL: [Hook; 2] = [Hook::Xdp, Hook::Egress];

    fn name(self) -> &'static str {
        match self {
            Hook::Xdp => "xdp",
            Hook::Egress => "egress",
        }
    }

    /// Where a classic TC egress filter's program is pinned (see the module docs).
    fn classic_path(paths: &Paths, iface: &str) -> PathBuf {
        paths.pin_dir.join("links").join("egress-tc").join(escape(iface))
    }

    /// The directory this hook's links are pinned in.
    fn links_dir(self, paths: &Paths) -> PathBuf {
        paths.pin_dir.join("links").join(self.name())
    }

    /// Where the link of `iface` on this hook is pinned: `links/<hook>/<iface>`, with
    /// `.` and `%` escaped since bpffs refuses names with a dot (VLAN interfaces like
    /// `eth0.100` have one).
    pub fn link_path(self, paths: &Paths, iface: &str) -> PathBuf {
        self.links_dir(paths).join(escape(iface))
    }

    /// Where the enforcing program of this hook is pinned (for rollback).
    fn program_path(self, paths: &Paths) -> PathBuf {
        paths.pin_dir.join(format!("program_{}", self.name()))
    }
}

fn escape(iface: &str) -> String {
    iface.replace('%', "%25").replace('.', "%2E")
}

/// Whether both of `iface`'s hooks are in place (as far as the pins tell).
pub fn is_attached(paths: &Paths, iface: &str) -> bool {
    Hook::Xdp.link_path(paths, iface).exists()
        && (Hook::Egress.link_path(paths, iface).exists() || Hook::classic_path(paths, iface).exists())
}

/// Attaches both hooks of `program` to `iface` and pins the links; returns the XDP
/// mode it got. On error nothing stays attached.
pub fn attach(
    program: &mut LoadedProgram,
    paths: &Paths,
    iface: &str,
    ifindex: u32,
    mode: Mode,
    notes: &mut Vec<String>,
) -> Result<&'static str, Error> {
    let xdp = program.program_mut()?;
    let attempt = |prog: &mut Xdp, m: XdpMode| prog.attach_to_if_index(ifindex, m);
    let (id, used) = match mode {
        Mode::Native => (attempt(xdp, XdpMode::Driver), "native"),
        Mode::Generic => (attempt(xdp, XdpMode::Skb), "generic"),
        Mode::Auto => match attempt(xdp, XdpMode::Driver) {
            Ok(id) => (Ok(id), "native"),
            Err(e) => {
                notes.push(format!("{iface}: native XDP is not available ({}); using generic mode", error_chain(&e)));
                (attempt(xdp, XdpMode::Skb), "generic")
            }
        },
    };
    let id = id.map_err(|e| Error::Link(format!("attaching XDP ({used}) to {iface}"), error_chain(&e)))?;
    let link = xdp.take_link(id).map_err(|e| Error::Program("take link", e))?;
    let xdp_path = Hook::Xdp.link_path(paths, iface);
    pin(link.try_into(), &xdp_path)?;

    let egress = program.egress_mut()?;
    let attached = if has_tcx() {
        egress
            .attach_with_options(iface, TcAttachType::Egress, TcAttachOptions::TcxOrder(LinkOrder::default()))
            .map_err(|e| Error::Link(format!("attaching TC egress to {iface}"), error_chain(&e)))
            .and_then(|id| egress.take_link(id).map_err(|e| Error::Program("take link", e)))
            .and_then(|link| pin(link.try_into(), &Hook::Egress.link_path(paths, iface)))
    } else {
        attach_classic(egress, paths, iface).inspect(|()| {
            notes.push(format!(
                "{iface}: TC egress uses a classic clsact filter (pref {CLASSIC_PRIORITY}, handle {:#x}): \
                 tcx needs Linux 6.6",
                u32::from(CLASSIC_HANDLE)
            ))
        })
    };
    if let Err(e) = attached {
        let _ = std::fs::remove_file(&xdp_path);
        return Err(e);
    }
    if used == "native" {
        notes.extend(nic::mtu_limit_note(iface));
    }
    Ok(used)
}

/// Adds a clsact qdisc (unless there is one) and the egress filter, and pins the program
/// as the marker.
fn attach_classic(egress: &mut SchedClassifier, paths: &Paths, iface: &str) -> Result<(), Error> {
    let failed = |e: String| Error::Link(format!("attaching TC egress (clsact) to {iface}"), e);
    // An existing clsact (EEXIST) is fine; any other failure shows in the attach below.
    let qdisc = qdisc_add_clsact(iface);
    let options = NlOptions { priority: CLASSIC_PRIORITY, handle: CLASSIC_HANDLE, classid: None };
    let id = egress.attach_with_options(iface, TcAttachType::Egress, TcAttachOptions::Netlink(options)).map_err(|e| {
        failed(match qdisc {
            Err(q) => format!("{}; adding the clsact qdisc: {}", error_chain(&e), error_chain(&q)),
            Ok(()) => error_chain(&e),
        })
    })?;
    keep_classic(egress, id, paths, iface).inspect_err(|_| {
        // The filter is ours (the attach was exclusive): take it away again.
        if let Ok(link) = SchedClassifierLink::attached(iface, TcAttachType::Egress, CLASSIC_PRIORITY, CLASSIC_HANDLE, None) {
            let _ = link.detach();
        }
    })
}

/// Lets go of the link of a classic filter without detaching it (the filter lives in the
/// qdisc, not in an fd; dropping aya's link object would delete it) and re-pins the
/// marker to the program now in the filter.
fn keep_classic(
    egress: &mut SchedClassifier,
    id: aya::programs::tc::SchedClassifierLinkId,
    paths: &Paths,
    iface: &str,
) -> Result<(), Error> {
    let link = egress.take_link(id).map_err(|e| Error::Program("take link", e))?;
    std::mem::forget(link);
    let marker = Hook::classic_path(paths, iface);
    match std::fs::remove_file(&marker) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::Io(format!("removing {}", marker.display()), e)),
    }
    egress.pin(&marker).map_err(|e| Error::Link(format!("pinning {}", marker.display()), e.to_string()))
}

fn pin(link: Result<FdLink, aya::programs::links::LinkError>, path: &Path) -> Result<(), Error> {
    let link = link.map_err(|e| Error::Link(format!("link for {}", path.display()), e.to_string()))?;
    link.pin(path).map_err(|e| Error::Link(format!("pinning {}", path.display()), e.to_string()))?;
    Ok(())
}

/// Removes `iface`'s pinned links, which detaches both hooks, and its classic TC egress
/// filter if it has one. The clsact qdisc stays: it may hold other filters, and empty it
/// does nothing.
pub fn detach(paths: &Paths, iface: &str) -> Result<(), Error> {
    let marker = Hook::classic_path(paths, iface);
    if marker.exists() {
        // An interface that is gone took its filter with it.
        if let Ok(link) = SchedClassifierLink::attached(iface, TcAttachType::Egress, CLASSIC_PRIORITY, CLASSIC_HANDLE, None)
            && let Err(e) = link.detach()
            && std::path::Path::new("/sys/class/net").join(iface).exists()
        {
            return Err(Error::Link(format!("removing the TC egress filter from {iface}"), error_chain(&e)));
        }
        std::fs::remove_file(&marker).map_err(|e| Error::Io(format!("removing {}", marker.display()), e))?;
    }
    for hook in Hook::ALL {
        let path = hook.link_path(paths, iface);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::Io(format!("removing {}", path.display()), e)),
        }
    }
    Ok(())
}

/// The programs of one generation, by hook.
pub struct Programs<'a> {
    pub xdp: &'a mut Xdp,
    pub egress: &'a mut SchedClassifier,
}

/// Swaps `progs` onto both of `iface`'s links.
pub fn swap(progs: &mut Programs<'_>, paths: &Paths, iface: &str) -> Result<(), Error> {
    let failed = |e: String| Error::Link(format!("swapping the program on {iface}"), e);
    let xdp_link = XdpLink::try_from(open(paths, Hook::Xdp, iface)?).map_err(|e| failed(e.to_string()))?;
    let id = progs.xdp.attach_to_link(xdp_link).map_err(|e| failed(error_chain(&e)))?;
    // Dropping our fd leaves the pinned link (and the new program) in place.
    drop(progs.xdp.take_link(id));
    if Hook::classic_path(paths, iface).exists() {
        // No NLM_F_CREATE/EXCL: the kernel replaces the program of the existing filter.
        let tc_link = SchedClassifierLink::attached(iface, TcAttachType::Egress, CLASSIC_PRIORITY, CLASSIC_HANDLE, None)
            .map_err(|e| failed(e.to_string()))?;
        let id = progs.egress.attach_to_link(tc_link).map_err(|e| failed(error_chain(&e)))?;
        return keep_classic(progs.egress, id, paths, iface);
    }
    let tc_link =
        SchedClassifierLink::try_from(open(paths, Hook::Egress, iface)?).map_err(|e| failed(e.to_string()))?;
    let id = progs.egress.attach_to_link(tc_link).map_err(|e| failed(error_chain(&e)))?;
    drop(progs.egress.take_link(id));
    Ok(())
}

fn open(paths: &Paths, hook: Hook, iface: &str) -> Result<FdLink, Error> {
    let path = hook.link_path(paths, iface);
    let pinned = PinnedLink::from_pin(&path)
        .map_err(|e| Error::Link(format!("swapping the program on {iface}: opening {}", path.display()), e.to_string()))?;
    Ok(FdLink::from(pinned))
}

/// Swaps the pinned, previously enforcing programs back onto `ifaces`.
pub fn swap_back(paths: &Paths, ifaces: &[String]) -> Result<(), Error> {
    if ifaces.is_empty() {
        return Ok(());
    }
    let mut xdp = Xdp::from_pin(Hook::Xdp.program_path(paths), XdpAttachType::Interface)
        .map_err(|e| Error::Program("open the pinned program", e))?;
    let mut egress = SchedClassifier::from_pin(Hook::Egress.program_path(paths))
        .map_err(|e| Error::Program("open the pinned egress program", e))?;
    let mut old = Programs { xdp: &mut xdp, egress: &mut egress };
    for iface in ifaces {
        swap(&mut old, paths, iface)?;
    }
    Ok(())
}

/// Pins `progs` as the enforcing programs, replacing the previous pins.
pub fn pin_programs(progs: &mut Programs<'_>, paths: &Paths) -> Result<(), Error> {
    for hook in Hook::ALL {
        let path = hook.program_path(paths);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::Io(format!("removing {}", path.display()), e)),
        }
        let pinned = match hook {
            Hook::Xdp => progs.xdp.pin(&path),
            Hook::Egress => progs.egress.pin(&path),
        };
        pinned.map_err(|e| Error::Link(format!("pinning {}", path.display()), e.to_string()))?;
    }
    Ok(())
}

/// Creates the directories links are pinned in.
pub fn create_dirs(paths: &Paths) -> Result<(), Error> {
    let classic = paths.pin_dir.join("links").join("egress-tc");
    for dir in Hook::ALL.iter().map(|h| h.links_dir(paths)).chain([classic]) {
        std::fs::create_dir_all(&dir).map_err(|e| Error::Io(format!("creating {}", dir.display()), e))?;
    }
    Ok(())
}

/// Removes the pinned programs and the link directories (after the last interface is
/// unloaded).
pub fn remove_all(paths: &Paths) {
    for hook in Hook::ALL {
        let _ = std::fs::remove_file(hook.program_path(paths));
        let _ = std::fs::remove_dir(hook.links_dir(paths));
    }
    let _ = std::fs::remove_dir(paths.pin_dir.join("links").join("egress-tc"));
    let _ = std::fs::remove_dir(paths.pin_dir.join("links"));
}
