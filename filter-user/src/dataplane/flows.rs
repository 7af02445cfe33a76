//! Reading and flushing the pinned connection tables for `xdpwall states`,
//! `xdpwall flush states` and status: `STATES` holds the flows the other side has
//! answered, `STATES_NEW` the others (a flood of those evicts only each other).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aya::maps::{HashMap, MapData};
use filter_common::{FAMILY_V4, FlowKey, FlowState, SourceKey, SourceNode, flow};
use serde::Serialize;

use super::{Error, Paths, State, program};

/// One live flow, oriented from the endpoint that opened it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
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
    /// The responder has answered (TCP: the handshake completed; UDP: it replied): the
    /// flow is in the table unanswered flows cannot evict from.
    pub answered: bool,
}

/// Live-flow counts and table sizes, for status.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct FlowTable {
    /// Live (not expired) flows, answered or not.
    pub flows: usize,
    /// `set limit states` the tables were created with: the answered flows' table size.
    pub limit: u32,
    /// Live answered flows.
    pub answered: usize,
    /// Live flows not answered yet.
    pub unanswered: usize,
    /// Size of the unanswered flows' table.
    pub unanswered_limit: u32,
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

/// A pinned flow table.
type Table = HashMap<MapData, FlowKey, FlowState>;

fn table(paths: &Paths, name: &'static str) -> Result<Table, Error> {
    HashMap::try_from(program::open_pinned(&paths.pin_dir, name)?).map_err(|e| Error::Map(name, e))
}

/// Both tables: (answered, its entries), answered first.
fn tables(paths: &Paths) -> Result<[(bool, Table); 2], Error> {
    Ok([(true, table(paths, program::STATES)?), (false, table(paths, program::STATES_NEW)?)])
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
    let mut seen = std::collections::HashSet::new();
    for (answered, map) in &tables(paths)? {
        for item in map.iter() {
            // An entry can vanish (evicted, flushed) while we iterate: skip it. One
            // moving between the tables as we read can show up in both: list it once.
            let Ok((key, st)) = item else { continue };
            if st.expires_ns <= now || !seen.insert(key_bytes(&key)) {
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
                answered: *answered,
            };
            if filter.accepts(&entry) {
                out.push(entry);
            }
        }
    }
    out.sort_by_key(|f| std::cmp::Reverse(f.age_secs));
    Ok(out)
}

/// The key's bytes, to tell flows apart (`FlowKey` has no `Hash`).
fn key_bytes(k: &FlowKey) -> ([u8; 16], [u8; 16], u16, u16, u8, u8) {
    (k.addr_a, k.addr_b, k.port_a, k.port_b, k.proto, k.family)
}

/// Live flows and the tables' sizes.
pub fn summary(paths: &Paths) -> Result<FlowTable, Error> {
    let [(_, answered), (_, unanswered)] = tables(paths)?;
    let now = now_ns();
    let live = |map: &Table| map.iter().filter_map(Result::ok).filter(|(_, st)| st.expires_ns > now).count();
    let (answered, unanswered) = (live(&answered), live(&unanswered));
    Ok(FlowTable {
        flows: answered + unanswered,
        limit: map_limit(paths, program::STATES)?,
        answered,
        unanswered,
        unanswered_limit: map_limit(paths, program::STATES_NEW)?,
    })
}

fn map_limit(paths: &Paths, name: &'static str) -> Result<u32, Error> {
    let info = aya::maps::MapInfo::from_pin(paths.pin_dir.join(name)).map_err(|e| Error::Map(name, e))?;
    Ok(info.max_entries())
}

/// Deletes every flow, answered or not; returns how many there were. Their next
/// packets go through the rules again.
pub fn flush(paths: &Paths) -> Result<usize, Error> {
    super::privilege::require_privileges()?;
    let _lock = super::privilege::lock(&paths.run_dir)?;
    let mut n = 0;
    // Unanswered first: a flow promoted while we flush is then still caught in the
    // answered table.
    for name in [program::STATES_NEW, program::STATES] {
        let mut map = table(paths, name)?;
        let keys: Vec<FlowKey> = map.keys().filter_map(Result::ok).collect();
        for k in &keys {
            if map.remove(k).is_ok() {
                n += 1;
            }
        }
    }
    // The flows' slots in their sources' nodes (limits per source) go with them: they
    // would otherwise stay held until the flows' timeouts, and a source that held its
    // limit could open nothing.
    if let Some(data) = super::links::current_program_map(paths, filter_common::names::SOURCE_NODES)? {
        let mut nodes: HashMap<MapData, SourceKey, SourceNode> = HashMap::try_from(aya::maps::Map::LruHashMap(data))
            .map_err(|e| Error::Map(filter_common::names::SOURCE_NODES, e))?;
        let keys: Vec<SourceKey> = nodes.keys().filter_map(Result::ok).collect();
        for k in &keys {
            let _ = nodes.remove(k);
        }
    }
    Ok(n)
}
