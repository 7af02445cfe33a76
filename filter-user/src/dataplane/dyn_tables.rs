//! Dynamic tables (`table <t> persist`): the sources the data plane put there
//! (`overload`) or an operator did (`xdpwall table NAME add`), kept in the pinned
//! `DYN_SOURCES` with an expiry per table, so they outlive applies.

use std::net::IpAddr;

use aya::maps::{Array, HashMap, MapData};
use filter_common::{DynEntry, DynName, FAMILY_V4, FAMILY_V6, MAX_DYN_TABLES, SourceKey, names};
use serde::Serialize;

use super::{Error, Paths, privilege, program};

/// One source in a dynamic table.
#[derive(Debug, Clone, Serialize)]
pub struct DynSource {
    /// The address.
    pub addr: IpAddr,
    /// Seconds until it leaves the table; `None`: until removed.
    pub expires_in_secs: Option<f64>,
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec to write.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn key_of(addr: IpAddr) -> SourceKey {
    let mut key = SourceKey { addr: [0; 16], rule: 0, family: FAMILY_V4 as u8, _pad: 0 };
    match addr {
        IpAddr::V4(a) => key.addr[..4].copy_from_slice(&a.octets()),
        IpAddr::V6(a) => {
            key.addr = a.octets();
            key.family = FAMILY_V6 as u8;
        }
    }
    key
}

fn addr_of(key: &SourceKey) -> IpAddr {
    if u32::from(key.family) == FAMILY_V4 {
        IpAddr::from([key.addr[0], key.addr[1], key.addr[2], key.addr[3]])
    } else {
        IpAddr::from(key.addr)
    }
}

/// A dynamic table, opened by name.
pub struct DynTable {
    slot: usize,
    sources: HashMap<MapData, SourceKey, DynEntry>,
}

impl DynTable {
    /// Opens table `name` (root only); an error names the dynamic tables there are.
    pub fn open(paths: &Paths, name: &str) -> Result<DynTable, Error> {
        privilege::require_privileges()?;
        let names_map: Array<MapData, DynName> =
            Array::try_from(program::open_pinned(&paths.pin_dir, names::DYN_NAMES)?)
                .map_err(|e| Error::Map(names::DYN_NAMES, e))?;
        let known: Vec<String> = (0..MAX_DYN_TABLES as u32)
            .map(|i| names_map.get(&i, 0).map(|n| program::dyn_name_text(&n)).unwrap_or_default())
            .collect();
        let Some(slot) = known.iter().position(|n| n == name) else {
            let list: Vec<String> = known.iter().filter(|n| !n.is_empty()).map(|n| format!("<{n}>")).collect();
            let there = if list.is_empty() { "none".to_owned() } else { list.join(", ") };
            return Err(Error::Io(
                format!("table <{name}>"),
                std::io::Error::other(format!("no such dynamic table (`table <{name}> persist`); loaded: {there}")),
            ));
        };
        let sources = HashMap::try_from(program::open_pinned(&paths.pin_dir, names::DYN_SOURCES)?)
            .map_err(|e| Error::Map(names::DYN_SOURCES, e))?;
        Ok(DynTable { slot, sources })
    }

    /// The sources in the table now, in address order.
    pub fn list(&self) -> Vec<DynSource> {
        let now = monotonic_ns();
        let mut out: Vec<DynSource> = self
            .sources
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, e)| e.expires_ns[self.slot] > now)
            .map(|(k, e)| DynSource {
                addr: addr_of(&k),
                expires_in_secs: (e.expires_ns[self.slot] != u64::MAX)
                    .then(|| (e.expires_ns[self.slot] - now) as f64 / 1e9),
            })
            .collect();
        out.sort_by_key(|s| s.addr);
        out
    }

    /// Puts `addr` into the table, for `secs` seconds or (`None`) until removed.
    pub fn add(&mut self, addr: IpAddr, secs: Option<u32>) -> Result<(), Error> {
        let key = key_of(addr);
        let mut e = self.sources.get(&key, 0).unwrap_or_default();
        e.expires_ns[self.slot] = secs.map_or(u64::MAX, |s| monotonic_ns() + u64::from(s) * 1_000_000_000);
        self.sources.insert(key, e, 0).map_err(|e| Error::Map(names::DYN_SOURCES, e))
    }

    /// Takes `addr` out of the table; whether it was in it.
    pub fn delete(&mut self, addr: IpAddr) -> Result<bool, Error> {
        let key = key_of(addr);
        let Ok(mut e) = self.sources.get(&key, 0) else { return Ok(false) };
        let was = e.expires_ns[self.slot] > monotonic_ns();
        e.expires_ns[self.slot] = 0;
        if e.expires_ns.iter().all(|&t| t == 0) {
            let _ = self.sources.remove(&key);
        } else {
            self.sources.insert(key, e, 0).map_err(|e| Error::Map(names::DYN_SOURCES, e))?;
        }
        Ok(was)
    }

    /// Empties the table; how many sources were in it.
    pub fn flush(&mut self) -> Result<usize, Error> {
        let addrs: Vec<IpAddr> = self.list().into_iter().map(|s| s.addr).collect();
        for a in &addrs {
            self.delete(*a)?;
        }
        Ok(addrs.len())
    }
}

/// A dynamic table's fill, for `status`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct DynTableStatus {
    /// The table's name.
    pub name: String,
    /// Sources in it now.
    pub sources: usize,
}

/// Every dynamic table's fill (empty when none is pinned); `capacity`: sources the
/// pinned map holds for all of them together.
pub fn fill(paths: &Paths) -> (Vec<DynTableStatus>, u32) {
    let Ok(names_map) = program::open_pinned(&paths.pin_dir, names::DYN_NAMES) else { return (Vec::new(), 0) };
    let Ok(names_map) = Array::<MapData, DynName>::try_from(names_map) else { return (Vec::new(), 0) };
    let known: Vec<String> = (0..MAX_DYN_TABLES as u32)
        .map(|i| names_map.get(&i, 0).map(|n| program::dyn_name_text(&n)).unwrap_or_default())
        .collect();
    let mut counts = [0usize; MAX_DYN_TABLES];
    if let Ok(map) = program::open_pinned(&paths.pin_dir, names::DYN_SOURCES)
        && let Ok(sources) = HashMap::<MapData, SourceKey, DynEntry>::try_from(map)
    {
        let now = monotonic_ns();
        for (_, e) in sources.iter().filter_map(Result::ok) {
            for (slot, &t) in e.expires_ns.iter().enumerate() {
                if t > now {
                    counts[slot] += 1;
                }
            }
        }
    }
    let tables = known
        .into_iter()
        .zip(counts)
        .filter(|(n, _)| !n.is_empty())
        .map(|(name, sources)| DynTableStatus { name, sources })
        .collect();
    (tables, filter_common::DYN_SOURCES_ENTRIES)
}
