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

use super::{
    Error, Mode, Paths, error_chain, fault, nic,
    program::{LoadedProgram, Programs},
};

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

    /// Where a classic TC egress filter's program is pinned (see the module docs).
    fn classic_path(paths: &Paths, iface: &str) -> PathBuf {
        paths.pin_dir.join("links").join("egress-tc").join(escape(iface))
    }

    /// Where this hook's enforcing program (`Current`) or the program of an apply under
    /// way (`Next`) is pinned.
    fn program_path(self, paths: &Paths, which: Pinned) -> PathBuf {
        match which {
            Pinned::Current => paths.pin_dir.join(format!("program_{}", self.name())),
            Pinned::Next => paths.pin_dir.join(format!("program_next_{}", self.name())),
        }
    }
}

fn escape(iface: &str) -> String {
    iface.replace('%', "%25").replace('.', "%2E")
}

/// Which pinned generation of the programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pinned {
    /// The committed ruleset's programs: what every link runs outside an apply.
    Current,
    /// The programs of an apply under way, pinned before the first link changes, so an
    /// interrupted apply can be finished.
    Next,
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
    if let Err(e) = fault::point("attach: XDP pinned, egress not yet") {
        let _ = std::fs::remove_file(&xdp_path);
        return Err(e);
    }

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
    let id =
        egress.attach_with_options(iface, TcAttachType::Egress, TcAttachOptions::Netlink(options)).map_err(|e| {
            failed(match qdisc {
                Err(q) => format!("{}; adding the clsact qdisc: {}", error_chain(&e), error_chain(&q)),
                Ok(()) => error_chain(&e),
            })
        })?;
    keep_classic(egress, id, paths, iface).inspect_err(|_| {
        // The filter is ours (the attach was exclusive): take it away again.
        if let Ok(link) =
            SchedClassifierLink::attached(iface, TcAttachType::Egress, CLASSIC_PRIORITY, CLASSIC_HANDLE, None)
        {
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
    if let Some(dir) = marker.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::Io(format!("creating {}", dir.display()), e))?;
    }
    remove_if_present(&marker)?;
    egress.pin(&marker).map_err(|e| Error::Link(format!("pinning {}", marker.display()), e.to_string()))
}

fn pin(link: Result<FdLink, aya::programs::links::LinkError>, path: &Path) -> Result<(), Error> {
    let link = link.map_err(|e| Error::Link(format!("link for {}", path.display()), e.to_string()))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::Io(format!("creating {}", dir.display()), e))?;
    }
    link.pin(path).map_err(|e| Error::Link(format!("pinning {}", path.display()), e.to_string()))?;
    Ok(())
}

/// Removes `iface`'s pinned links, which detaches both hooks.
///
/// The links are detached explicitly before their pins go: the kernel frees an unpinned
/// link later, and until then it would go on filtering after `unload` returned.
pub fn detach(paths: &Paths, iface: &str) -> Result<(), Error> {
    let marker = Hook::classic_path(paths, iface);
    if marker.exists() {
        // An interface that is gone took its filter with it. The clsact qdisc stays: it
        // may hold other filters, and empty it does nothing.
        if let Ok(link) =
            SchedClassifierLink::attached(iface, TcAttachType::Egress, CLASSIC_PRIORITY, CLASSIC_HANDLE, None)
            && let Err(e) = link.detach()
            && Path::new("/sys/class/net").join(iface).exists()
        {
            return Err(Error::Link(format!("removing the TC egress filter from {iface}"), error_chain(&e)));
        }
        remove_if_present(&marker)?;
    }
    for hook in Hook::ALL {
        let path = hook.link_path(paths, iface);
        if let Some(fd) = bpf_obj::get(&path)? {
            // A severed link is detached already; anything else is worth reporting.
            if let Err(e) = bpf_obj::detach(&fd)
                && e.raw_os_error() != Some(libc::ENOLINK)
            {
                return Err(Error::Io(format!("detaching {}", path.display()), e));
            }
        }
        remove_if_present(&path)?;
    }
    Ok(())
}

/// Swaps `progs` onto both of `iface`'s links.
pub fn swap(progs: &mut Programs<'_>, paths: &Paths, iface: &str) -> Result<(), Error> {
    let failed = |e: String| Error::Link(format!("swapping the program on {iface}"), e);
    let xdp_link = XdpLink::try_from(open(paths, Hook::Xdp, iface)?).map_err(|e| failed(e.to_string()))?;
    let id = progs.xdp.attach_to_link(xdp_link).map_err(|e| failed(error_chain(&e)))?;
    // Dropping our fd leaves the pinned link (and the new program) in place.
    drop(progs.xdp.take_link(id));
    fault::point("swap: XDP swapped, egress not yet")?;
    if Hook::classic_path(paths, iface).exists() {
        // No NLM_F_CREATE/EXCL: the kernel replaces the program of the existing filter.
        let tc_link =
            SchedClassifierLink::attached(iface, TcAttachType::Egress, CLASSIC_PRIORITY, CLASSIC_HANDLE, None)
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
    let pinned = PinnedLink::from_pin(&path).map_err(|e| {
        Error::Link(format!("swapping the program on {iface}: opening {}", path.display()), e.to_string())
    })?;
    Ok(FdLink::from(pinned))
}

/// A map of the enforcing XDP program that is not pinned (it belongs to the ruleset),
/// found by its name among the program's maps; `None` when no program is pinned or it
/// has no such map.
pub fn current_program_map(paths: &Paths, name: &str) -> Result<Option<aya::maps::MapData>, Error> {
    let path = Hook::Xdp.program_path(paths, Pinned::Current);
    if !path.exists() {
        return Ok(None);
    }
    let info = aya::programs::ProgramInfo::from_pin(&path).map_err(|e| Error::Program("open the pinned program", e))?;
    let ids = info.map_ids().map_err(|e| Error::Program("list the program's maps", e))?.unwrap_or_default();
    for id in ids {
        let found = aya::maps::MapInfo::from_id(id).map_err(|e| Error::Map("a map of the program", e))?;
        if found.name_as_str() == Some(name) {
            return aya::maps::MapData::from_id(id).map(Some).map_err(|e| Error::Map("a map of the program", e));
        }
    }
    Ok(None)
}

/// Swaps the pinned programs `which` onto both of `iface`'s links.
pub fn swap_to_pinned(paths: &Paths, iface: &str, which: Pinned) -> Result<(), Error> {
    let mut xdp = Xdp::from_pin(Hook::Xdp.program_path(paths, which), XdpAttachType::Interface)
        .map_err(|e| Error::Program("open the pinned program", e))?;
    let mut egress = SchedClassifier::from_pin(Hook::Egress.program_path(paths, which))
        .map_err(|e| Error::Program("open the pinned egress program", e))?;
    swap(&mut Programs { xdp: &mut xdp, egress: &mut egress }, paths, iface)
}

/// Pins `progs` as the programs `which`, replacing what was pinned there.
pub fn pin_programs(progs: &mut Programs<'_>, paths: &Paths, which: Pinned) -> Result<(), Error> {
    for hook in Hook::ALL {
        let path = hook.program_path(paths, which);
        remove_if_present(&path)?;
        let pinned = match hook {
            Hook::Xdp => progs.xdp.pin(&path),
            Hook::Egress => progs.egress.pin(&path),
        };
        pinned.map_err(|e| Error::Link(format!("pinning {}", path.display()), e.to_string()))?;
    }
    Ok(())
}

/// Makes the `Next` programs the `Current` ones (a rename per hook; bpffs renames
/// atomically). Nothing to do when they were promoted already.
pub fn promote(paths: &Paths) -> Result<(), Error> {
    for hook in Hook::ALL {
        let (next, current) = (hook.program_path(paths, Pinned::Next), hook.program_path(paths, Pinned::Current));
        match std::fs::rename(&next, &current) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::Io(format!("renaming {} to {}", next.display(), current.display()), e)),
        }
        fault::point("promote: one hook's program renamed")?;
    }
    Ok(())
}

/// Unpins the `Next` programs (an apply rolled back).
pub fn remove_next(paths: &Paths) -> Result<(), Error> {
    Hook::ALL.iter().try_for_each(|h| remove_if_present(&h.program_path(paths, Pinned::Next)))
}

fn remove_if_present(path: &Path) -> Result<(), Error> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Io(format!("removing {}", path.display()), e)),
    }
}

/// What a pinned link is attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// No link is pinned.
    Missing,
    /// The link's interface went away (deleted, or deleted and made anew): the link
    /// filters nothing.
    Severed,
    /// Attached to the interface with this index, running this program.
    Attached {
        /// The interface's index.
        ifindex: u32,
        /// The program's id.
        program_id: u32,
    },
}

/// The state of `iface`'s link on `hook`.
pub fn link_state(paths: &Paths, hook: Hook, iface: &str) -> Result<LinkState, Error> {
    let marker = Hook::classic_path(paths, iface);
    if hook == Hook::Egress && marker.exists() {
        // A classic filter has no link to ask: the marker holds the program it runs,
        // and it goes with the device (a re-created device shows in its XDP link).
        let Ok(ifindex) = super::ifindex(iface) else { return Ok(LinkState::Severed) };
        return Ok(match program_id_at(&marker)? {
            Some(program_id) => LinkState::Attached { ifindex, program_id },
            None => LinkState::Missing,
        });
    }
    let path = hook.link_path(paths, iface);
    let Some(fd) = bpf_obj::get(&path)? else { return Ok(LinkState::Missing) };
    let info = bpf_obj::info(&fd).map_err(|e| Error::Io(format!("reading the link {}", path.display()), e))?;
    // struct bpf_link_info: type, id, prog_id, then (8-aligned) the union whose xdp and
    // tcx members both start with the interface index (0 once the device is gone).
    let word = |i: usize| u32::from_ne_bytes(info[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
    Ok(match word(4) {
        0 => LinkState::Severed,
        ifindex => LinkState::Attached { ifindex, program_id: word(2) },
    })
}

/// The id of the pinned program `which` of `hook`, `None` when none is pinned.
pub fn program_id(paths: &Paths, hook: Hook, which: Pinned) -> Result<Option<u32>, Error> {
    program_id_at(&hook.program_path(paths, which))
}

/// The id of the program pinned at `path`.
fn program_id_at(path: &Path) -> Result<Option<u32>, Error> {
    let Some(fd) = bpf_obj::get(path)? else { return Ok(None) };
    let info = bpf_obj::info(&fd).map_err(|e| Error::Io(format!("reading the program {}", path.display()), e))?;
    // struct bpf_prog_info: type, id, ...
    Ok(Some(u32::from_ne_bytes(info[4..8].try_into().expect("4 bytes"))))
}

/// Interfaces with a link pinned on some hook, by name.
pub fn pinned_ifaces(paths: &Paths) -> Vec<String> {
    let mut names: Vec<String> = Hook::ALL
        .iter()
        .filter_map(|h| std::fs::read_dir(h.links_dir(paths)).ok())
        .flatten()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .map(|escaped| escaped.replace("%2E", ".").replace("%25", "%"))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The two object calls aya does not expose: open a pinned object, read its info.
mod bpf_obj {
    use std::{
        ffi::CString,
        os::fd::{FromRawFd as _, OwnedFd},
        os::unix::ffi::OsStrExt as _,
        path::Path,
    };

    use super::Error;

    const BPF_OBJ_GET: libc::c_long = 7;
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    const BPF_LINK_DETACH: libc::c_long = 34;

    /// Detaches a link from its hook now (BPF_LINK_DETACH, Linux 5.9).
    pub fn detach(fd: &OwnedFd) -> std::io::Result<()> {
        use std::os::fd::AsRawFd as _;
        let link_fd = fd.as_raw_fd() as u32;
        // SAFETY: a u32 link_fd is the whole bpf_attr of BPF_LINK_DETACH.
        let rc = unsafe { libc::syscall(libc::SYS_bpf, BPF_LINK_DETACH, &link_fd, std::mem::size_of::<u32>()) };
        if rc < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
    }

    /// The pinned object at `path`, `None` when nothing is pinned there.
    pub fn get(path: &Path) -> Result<Option<OwnedFd>, Error> {
        #[repr(C)]
        struct Attr {
            pathname: u64,
            bpf_fd: u32,
            file_flags: u32,
        }
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| Error::Invalid(format!("bad path {}", path.display())))?;
        let attr = Attr { pathname: c.as_ptr() as u64, bpf_fd: 0, file_flags: 0 };
        // SAFETY: `attr` is a valid bpf_attr prefix for BPF_OBJ_GET, `c` outlives the call.
        let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_OBJ_GET, &attr, std::mem::size_of::<Attr>()) };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            return match e.kind() {
                std::io::ErrorKind::NotFound => Ok(None),
                _ => Err(Error::Io(format!("opening {}", path.display()), e)),
            };
        }
        // SAFETY: a fresh descriptor that we own.
        Ok(Some(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
    }

    /// The first bytes of the object's info (bpf_link_info or bpf_prog_info).
    pub fn info(fd: &OwnedFd) -> std::io::Result<[u8; 32]> {
        use std::os::fd::AsRawFd as _;
        #[repr(C)]
        struct Attr {
            bpf_fd: u32,
            info_len: u32,
            info: u64,
        }
        let mut info = [0u8; 32];
        let attr = Attr { bpf_fd: fd.as_raw_fd() as u32, info_len: info.len() as u32, info: info.as_mut_ptr() as u64 };
        // SAFETY: `info` is writable for `info_len` bytes for the duration of the call.
        let rc = unsafe { libc::syscall(libc::SYS_bpf, BPF_OBJ_GET_INFO_BY_FD, &attr, std::mem::size_of::<Attr>()) };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(info)
    }
}

/// Removes the pinned programs and the link directories (after the last interface is
/// unloaded).
pub fn remove_all(paths: &Paths) {
    for name in pinned_ifaces(paths) {
        let _ = detach(paths, &name);
    }
    for hook in Hook::ALL {
        for which in [Pinned::Current, Pinned::Next] {
            let _ = std::fs::remove_file(hook.program_path(paths, which));
        }
        if let Ok(dir) = std::fs::read_dir(hook.links_dir(paths)) {
            for e in dir.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let _ = std::fs::remove_dir(hook.links_dir(paths));
    }
    let _ = std::fs::remove_dir(paths.pin_dir.join("links").join("egress-tc"));
    let _ = std::fs::remove_dir(paths.pin_dir.join("links"));
}
