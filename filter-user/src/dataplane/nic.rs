//! What a NIC must do for the filter to see what the rules match on.
//!
//! XDP sees 802.1Q/802.1ad tags only when the NIC leaves them in the frame: with VLAN
//! stripping (rx-vlan-offload) on, the tag moves to packet metadata and `vlan N`
//! rules could never match. `load` and `apply` turn stripping off on every loaded
//! interface when the ruleset matches on VLANs, and say so.

use std::process::Command;

use super::Error;

/// ethtool features that strip VLAN tags on receive.
const STRIPPING: [(&str, &str); 2] =
    [("rx-vlan-offload", "rxvlan"), ("rx-vlan-stag-hw-parse", "rx-vlan-stag-hw-parse")];

/// Turns VLAN stripping off on `iface`; returns a note when it changed something.
/// Fails when the NIC strips tags and cannot stop (the feature is `[fixed]`).
pub fn keep_vlan_tags(iface: &str) -> Result<Option<String>, Error> {
    let features = match Command::new("ethtool").arg("-k").arg(iface).output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
        Ok(out) => {
            return Err(Error::Invalid(format!(
                "{iface}: cannot read offload features (ethtool -k: {}); `vlan` rules need VLAN stripping off",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Err(e) => {
            return Err(Error::Io(format!("{iface}: running ethtool to check VLAN stripping for `vlan` rules"), e));
        }
    };
    let mut turned_off = Vec::new();
    for (feature, short) in STRIPPING {
        let Some(value) = features.lines().find_map(|l| l.trim().strip_prefix(&format!("{feature}: "))) else {
            continue;
        };
        if !value.starts_with("on") {
            continue;
        }
        if value.contains("[fixed]") {
            return Err(Error::Invalid(format!(
                "{iface} strips VLAN tags in hardware and cannot stop ({feature}: {value}); `vlan` rules would never match there"
            )));
        }
        let out = Command::new("ethtool")
            .args(["-K", iface, short, "off"])
            .output()
            .map_err(|e| Error::Io(format!("{iface}: ethtool -K {short} off"), e))?;
        if !out.status.success() {
            return Err(Error::Invalid(format!(
                "{iface}: turning {feature} off failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        turned_off.push(feature);
    }
    Ok((!turned_off.is_empty()).then(|| {
        format!(
            "{iface}: turned off VLAN stripping ({}) so XDP sees the tags `vlan` rules match",
            turned_off.join(", ")
        )
    }))
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
