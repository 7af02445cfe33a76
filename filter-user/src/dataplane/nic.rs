//! What a NIC must do for the filter to see what the rules match on.
//!
//! XDP sees 802.1Q/802.1ad tags only when the NIC leaves them in the frame: with VLAN
//! stripping (rx-vlan-offload) on, the tag moves to packet metadata and `vlan N`
//! rules could never match. `load` and `apply` turn stripping off on every loaded
//! interface when the ruleset matches on VLANs, and say so.

use std::{ffi::c_void, io, os::fd::AsRawFd as _};

use super::Error;

/// Features that strip VLAN tags on receive: the kernel's name (ETH_SS_FEATURES) and the
/// name `ethtool -k` shows.
const STRIPPING: [(&str, &str); 2] =
    [("rx-vlan-hw-parse", "rx-vlan-offload"), ("rx-vlan-stag-hw-parse", "rx-vlan-stag-hw-parse")];

/// Turns VLAN stripping off on `iface`; returns a note when it changed something.
/// Fails when the NIC strips tags and cannot stop (the feature is fixed).
pub fn keep_vlan_tags(iface: &str) -> Result<Option<String>, Error> {
    let io_error = |what: &str, e| Error::Io(format!("{iface}: {what} (`vlan` rules need VLAN stripping off)"), e);
    let ethtool = Ethtool::open(iface).map_err(|e| io_error("opening a socket for the ethtool ioctl", e))?;
    let names = ethtool.feature_names().map_err(|e| io_error("reading the names of the offload features", e))?;
    let features = ethtool.features(names.len()).map_err(|e| io_error("reading the offload features", e))?;
    let mut turned_off = Vec::new();
    for (kernel_name, shown) in STRIPPING {
        let Some(bit) = names.iter().position(|n| n == kernel_name) else { continue };
        if !features.active(bit) {
            continue;
        }
        if !features.changeable(bit) {
            return Err(Error::Invalid(format!(
                "{iface} strips VLAN tags in hardware and cannot stop ({shown}: on [fixed]); `vlan` rules would never match there"
            )));
        }
        ethtool.clear_feature(bit, names.len()).map_err(|e| io_error(&format!("turning {shown} off"), e))?;
        if ethtool.features(names.len()).map_err(|e| io_error("reading the offload features", e))?.active(bit) {
            return Err(Error::Invalid(format!("{iface}: the driver kept {shown} on when asked to turn it off")));
        }
        turned_off.push(shown);
    }
    Ok((!turned_off.is_empty()).then(|| {
        format!(
            "{iface}: turned off VLAN stripping ({}) so XDP sees the tags `vlan` rules match",
            turned_off.join(", ")
        )
    }))
}

/// The ethtool ioctl (SIOCETHTOOL) on one interface: the generic feature interface that
/// `ethtool -k` / `-K` use (`struct ethtool_gfeatures` in linux/ethtool.h).
struct Ethtool {
    socket: std::os::fd::OwnedFd,
    ifname: [libc::c_char; libc::IFNAMSIZ],
}

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GSSET_INFO: u32 = 0x37;
const ETHTOOL_GFEATURES: u32 = 0x3a;
const ETHTOOL_SFEATURES: u32 = 0x3b;
const ETH_SS_FEATURES: u32 = 4;
const ETH_GSTRING_LEN: usize = 32;

/// The feature words as ETHTOOL_GFEATURES returns them, one block per 32 features.
struct Features(Vec<[u32; 4]>);

impl Features {
    fn word(&self, bit: usize, field: usize) -> bool {
        self.0.get(bit / 32).is_some_and(|b| b[field] & (1 << (bit % 32)) != 0)
    }

    /// On now (`active`).
    fn active(&self, bit: usize) -> bool {
        self.word(bit, 2)
    }

    /// The driver lets it change (`available` and not `never_changed`): what ethtool
    /// shows without `[fixed]`.
    fn changeable(&self, bit: usize) -> bool {
        self.word(bit, 0) && !self.word(bit, 3)
    }
}

impl Ethtool {
    fn open(iface: &str) -> io::Result<Ethtool> {
        if iface.len() >= libc::IFNAMSIZ || iface.contains('\0') {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not an interface name"));
        }
        let mut ifname = [0; libc::IFNAMSIZ];
        for (d, s) in ifname.iter_mut().zip(iface.bytes()) {
            *d = s as libc::c_char;
        }
        // Any socket will do for SIOCETHTOOL; unbound, as ethtool's own, so that it works
        // without an address (a loopback that is down, say).
        // SAFETY: socket(2) with constant arguments; the result is checked.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor that nothing else owns.
        let socket = unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) };
        Ok(Ethtool { socket, ifname })
    }

    /// SIOCETHTOOL with `data` (a buffer of u32 words starting with the command).
    fn ioctl(&self, data: &mut [u32]) -> io::Result<()> {
        #[repr(C)]
        struct IfReq {
            name: [libc::c_char; libc::IFNAMSIZ],
            data: *mut c_void,
            _pad: [u8; 16],
        }
        let mut req = IfReq { name: self.ifname, data: data.as_mut_ptr().cast(), _pad: [0; 16] };
        // SAFETY: `req` is a valid ifreq whose data points at `data`, a buffer sized by
        // the caller for the command's answer (the kernel writes no more than the counts
        // in it say).
        let rc = unsafe { libc::ioctl(self.socket.as_raw_fd(), SIOCETHTOOL, &mut req) };
        if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
    }

    /// The names of the features, in bit order.
    fn feature_names(&self) -> io::Result<Vec<String>> {
        // struct ethtool_sset_info: cmd, reserved, u64 sset_mask, then one u32 per set asked for.
        let mut info = [ETHTOOL_GSSET_INFO, 0, 1 << ETH_SS_FEATURES, 0, 0];
        self.ioctl(&mut info)?;
        let count = info[4] as usize;
        // struct ethtool_gstrings: cmd, string_set, len, then `len` strings of 32 bytes.
        let mut strings = vec![0u32; 3 + count * ETH_GSTRING_LEN / 4];
        strings[..3].copy_from_slice(&[ETHTOOL_GSTRINGS, ETH_SS_FEATURES, count as u32]);
        self.ioctl(&mut strings)?;
        let bytes: Vec<u8> = strings[3..].iter().flat_map(|w| w.to_ne_bytes()).collect();
        Ok(bytes
            .chunks(ETH_GSTRING_LEN)
            .map(|s| String::from_utf8_lossy(s.split(|&b| b == 0).next().unwrap_or_default()).into_owned())
            .collect())
    }

    /// The feature words for `count` features.
    fn features(&self, count: usize) -> io::Result<Features> {
        let blocks = count.div_ceil(32);
        // struct ethtool_gfeatures: cmd, size (blocks), then {available, requested, active, never_changed}.
        let mut data = vec![0u32; 2 + blocks * 4];
        data[..2].copy_from_slice(&[ETHTOOL_GFEATURES, blocks as u32]);
        self.ioctl(&mut data)?;
        Ok(Features(data[2..].chunks(4).map(|b| [b[0], b[1], b[2], b[3]]).collect()))
    }

    /// Requests feature `bit` off, leaving the others as they are.
    fn clear_feature(&self, bit: usize, count: usize) -> io::Result<()> {
        let blocks = count.div_ceil(32);
        // struct ethtool_sfeatures: cmd, size, then {valid, requested} per block.
        let mut data = vec![0u32; 2 + blocks * 2];
        data[..2].copy_from_slice(&[ETHTOOL_SFEATURES, blocks as u32]);
        data[2 + (bit / 32) * 2] = 1 << (bit % 32);
        self.ioctl(&mut data)
    }
}

/// The kernel driver behind `iface` (`igb`, `veth`, ...), if it has a device.
fn driver(iface: &str) -> Option<String> {
    let link = std::fs::read_link(format!("/sys/class/net/{iface}/device/driver")).ok()?;
    Some(link.file_name()?.to_string_lossy().into_owned())
}

fn mtu(iface: &str) -> Option<u32> {
    std::fs::read_to_string(format!("/sys/class/net/{iface}/mtu")).ok()?.trim().parse().ok()
}

/// igb runs XDP only on frames that fit one receive buffer, and sizes its buffers from
/// the MTU: 1536 bytes up to MTU 1510, else 3072 (a frame is MTU + 26: Ethernet header,
/// FCS, two VLAN tags). Above MTU 3046 the driver refuses the attach ("The RX buffer size
/// is too small for the frame size"), which reaches user space as a bare EINVAL.
const IGB_FRAME_OVERHEAD: u32 = 26;
const IGB_SMALL_BUFFER: u32 = 1536;
const IGB_LARGE_BUFFER: u32 = 3072;
const IGB_MAX_XDP_MTU: u32 = IGB_LARGE_BUFFER - IGB_FRAME_OVERHEAD;

/// Why native XDP cannot attach to `iface` as it is configured now, when xdpwall knows
/// (today: igb with an MTU its XDP receive buffers cannot hold). Checked before the
/// attach so the operator reads the limit, not the driver's EINVAL.
pub fn native_xdp_refusal(iface: &str) -> Option<String> {
    if driver(iface)? != "igb" {
        return None;
    }
    let mtu = mtu(iface)?;
    (mtu > IGB_MAX_XDP_MTU).then(|| {
        format!(
            "{iface}: igb cannot run native XDP at MTU {mtu}: with XDP every frame must fit one receive \
             buffer of at most {IGB_LARGE_BUFFER} bytes (MTU {IGB_MAX_XDP_MTU}). Lower the MTU \
             (`ip link set {iface} mtu 1500`) and load again, or use `--mode generic` to filter in the \
             kernel stack at this MTU"
        )
    })
}

/// For an interface with native XDP on igb: the largest MTU the driver accepts while
/// XDP stays attached (the buffers keep the size they got at attach), and what to do for
/// a larger one. None for other drivers.
pub fn mtu_limit_note(iface: &str) -> Option<String> {
    if driver(iface)? != "igb" {
        return None;
    }
    let mtu = mtu(iface)?;
    let limit = if mtu + IGB_FRAME_OVERHEAD <= IGB_SMALL_BUFFER { IGB_SMALL_BUFFER } else { IGB_LARGE_BUFFER }
        - IGB_FRAME_OVERHEAD;
    Some(if limit < IGB_MAX_XDP_MTU {
        format!(
            "{iface} (igb): while XDP is attached the MTU can be raised to {limit} at most (igb refuses a \
             larger one with EINVAL); for up to {IGB_MAX_XDP_MTU}: `xdpwall unload {iface}`, set the MTU, load again"
        )
    } else {
        format!("{iface} (igb): while XDP is attached the MTU can be {limit} at most (igb's XDP frame limit)")
    })
}
