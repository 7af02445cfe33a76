//! The two hooks on every loaded interface, XDP (packets arriving) and TC egress
//! (packets leaving), each a pinned bpf_link: attached once, then only ever swapped
//! to a new program with `bpf_link_update`, so an interface never loses its filter
//! and igb never resets the port.

use std::path::{Path, PathBuf};

use aya::programs::{
    LinkOrder, SchedClassifier, TcAttachType, Xdp, XdpMode,
    links::{FdLink, PinnedLink},
    tc::{SchedClassifierLink, TcAttachOptions},
    xdp::XdpLink,
};
use aya_obj::programs::XdpAttachType;

use super::{Error, Mode, Paths, error_chain, program::LoadedProgram};

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
        let escaped = iface.replace('%', "%25").replace('.', "%2E");
        self.links_dir(paths).join(escaped)
    }

    /// Where the enforcing program of this hook is pinned (for rollback).
    fn program_path(self, paths: &Paths) -> PathBuf {
        paths.pin_dir.join(format!("program_{}", self.name()))
    }
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
    let attached = egress
        .attach_with_options(iface, TcAttachType::Egress, TcAttachOptions::TcxOrder(LinkOrder::default()))
        .map_err(|e| Error::Link(format!("attaching TC egress to {iface}"), error_chain(&e)))
        .and_then(|id| egress.take_link(id).map_err(|e| Error::Program("take link", e)))
        .and_then(|link| pin(link.try_into(), &Hook::Egress.link_path(paths, iface)));
    if let Err(e) = attached {
        let _ = std::fs::remove_file(&xdp_path);
        return Err(e);
    }
    Ok(used)
}

fn pin(link: Result<FdLink, aya::programs::links::LinkError>, path: &Path) -> Result<(), Error> {
    let link = link.map_err(|e| Error::Link(format!("link for {}", path.display()), e.to_string()))?;
    link.pin(path).map_err(|e| Error::Link(format!("pinning {}", path.display()), e.to_string()))?;
    Ok(())
}

/// Removes `iface`'s pinned links, which detaches both hooks.
pub fn detach(paths: &Paths, iface: &str) -> Result<(), Error> {
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
    for hook in Hook::ALL {
        let dir = hook.links_dir(paths);
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
    let _ = std::fs::remove_dir(paths.pin_dir.join("links"));
}
