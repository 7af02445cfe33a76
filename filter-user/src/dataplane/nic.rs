//! What a NIC must do for the filter to see what the rules match on.
//!
//! XDP sees 802.1Q/802.1ad tags only when the NIC leaves them in the frame: with VLAN
//! stripping (rx-vlan-offload) on, the tag moves to packet metadata and `vlan N`
//! rules could never match. `load` and `apply` turn stripping off on every loaded
//! interface when the ruleset matches on VLANs, and say so.

use std::process::Command;

use super::Error;

/// ethtool features that strip VLAN tags on receive.
const STRIPPING: [(&str, &str); 2] = [("rx-vlan-offload", "rxvlan"), ("rx-vlan-stag-hw-parse", "rx-vlan-stag-hw-parse")];

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
        format!("{iface}: turned off VLAN stripping ({}) so XDP sees the tags `vlan` rules match", turned_off.join(", "))
    }))
}
