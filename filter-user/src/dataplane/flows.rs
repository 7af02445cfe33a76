//! Reading and flushing the pinned connection table for `xdpwall states`,
//! `xdpwall flush states` and status.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aya::maps::{HashMap, MapData};
use filter_common::{FAMILY_V4, FlowKey, FlowState, flow};
use serde::Serialize;

use super::{Error, Paths, State, program};

/// One live flow, oriented from the endpoint that opened it.
#[derive(Debug, Clone, Serialize)]
pub struct FlowEntry {
    /// tcp, udp, icmp, icmp6.
    pub proto: String,
    /// The opener.
    pub src: IpAddr,
    /// The opener's port (ICMP: the echo identifier).
    pub sport: u16,
    /// The responder.
    pub dst: IpAddr,
    /// The responder's port.
    pub dport: u16,
    /// SYN_SENT, ESTABLISHED, ...
    pub state: String,
    /// Seconds since the flow opened.
    pub age_secs: u64,
    /// Seconds until it expires unless a packet refreshes it.
    pub expires_in_secs: u64,
    /// Packets from the opener and from the responder.
    pub packets: [u64; 2],
    /// Bytes from the opener and from the responder.
    pub bytes: [u64; 2],
    /// The rule that opened the flow, when it is still in the ruleset.
    pub rule: Option<String>,
}

/// Live-flow count and table size, for status.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct FlowTable {
    /// Live (not expired) flows.
    pub flows: usize,
    /// `set limit states` the table was created with.
    pub limit: u32,
}

/// Which flows to list.
#[derive(Debug, Clone, Default)]
pub struct FlowFilter {
    /// Protocol name (tcp, udp, icmp, icmp6).
    pub proto: Option<String>,
    /// Either endpoint's address.
    pub host: Option<IpAddr>,
    /// Either endpoint's port.
    pub port: Option<u16>,
}

impl FlowFilter {
    fn accepts(&self, f: &FlowEntry) -> bool {
        self.proto.as_ref().is_none_or(|p| *p == f.proto)
            && self.host.is_none_or(|h| h == f.src || h == f.dst)
            && self.port.is_none_or(|p| p == f.sport || p == f.dport)
    }
}

fn table(paths: &Paths) -> Result<HashMap<MapData, FlowKey, FlowState>, Error> {
    HashMap::try_from(program::open_pinned(&paths.pin_dir, program::STATES)?)
        .map_err(|e| Error::Map(program::STATES, e))
}

/// Now on the clock the data plane stamps flows with (bpf_ktime_get_coarse_ns).
fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec to write into.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn addr(family: u8, a: [u8; 16]) -> IpAddr {
    if family as u32 == FAMILY_V4 {
        IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(a))
    }
}

fn proto_name(key: &FlowKey) -> String {
    match key.proto {
        6 => "tcp".into(),
        17 => "udp".into(),
        1 => "icmp".into(),
        58 => "icmp6".into(),
        p => p.to_string(),
    }
}

/// Live flows that pass `filter`, oldest first.
pub fn list(paths: &Paths, filter: &FlowFilter) -> Result<Vec<FlowEntry>, Error> {
    super::privilege::require_privileges()?;
    let state = State::read(&paths.state_file())?.ok_or_else(|| Error::NotLoaded(paths.state_file()))?;
    let now = now_ns();
    let mut out = Vec::new();
    for item in table(paths)?.iter() {
        // An entry can vanish (evicted, flushed) while we iterate: skip it.
        let Ok((key, st)) = item else { continue };
        if st.expires_ns <= now {
            continue;
        }
        let (a, b) = ((addr(key.family, key.addr_a), key.port_a), (addr(key.family, key.addr_b), key.port_b));
        let ((src, sport), (dst, dport), packets, bytes) = if st.orig == 0 {
            (a, b, st.packets, st.bytes)
        } else {
            (b, a, [st.packets[1], st.packets[0]], [st.bytes[1], st.bytes[0]])
        };
        let entry = FlowEntry {
            proto: proto_name(&key),
            src,
            sport,
            dst,
            dport,
            state: flow::name(st.state).into(),
            age_secs: now.saturating_sub(st.created_ns) / 1_000_000_000,
            expires_in_secs: (st.expires_ns - now) / 1_000_000_000,
            packets,
            bytes,
            rule: state.rules.iter().find(|r| r.counter == st.rule_counter).map(|r| r.info.text.clone()),
        };
        if filter.accepts(&entry) {
            out.push(entry);
        }
    }
    out.sort_by_key(|f| std::cmp::Reverse(f.age_secs));
    Ok(out)
}

/// Live flows and the table's size.
pub fn summary(paths: &Paths) -> Result<FlowTable, Error> {
    let map = table(paths)?;
    let limit = map_limit(paths)?;
    let now = now_ns();
    let flows = map.iter().filter_map(Result::ok).filter(|(_, st)| st.expires_ns > now).count();
    Ok(FlowTable { flows, limit })
}

fn map_limit(paths: &Paths) -> Result<u32, Error> {
    let info = aya::maps::MapInfo::from_pin(paths.pin_dir.join(program::STATES))
        .map_err(|e| Error::Map(program::STATES, e))?;
    Ok(info.max_entries())
}

/// Deletes every flow; returns how many there were. Their next packets go through
/// the rules again.
pub fn flush(paths: &Paths) -> Result<usize, Error> {
    super::privilege::require_privileges()?;
    let _lock = super::privilege::lock(&paths.run_dir)?;
    let mut map = table(paths)?;
    let keys: Vec<FlowKey> = map.keys().filter_map(Result::ok).collect();
    let mut n = 0;
    for k in &keys {
        if map.remove(k).is_ok() {
            n += 1;
        }
    }
    Ok(n)
}
