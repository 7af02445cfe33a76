//! `xdpwall log`: the logged packets as text lines, JSON lines or a pcap file with
//! pflog's link type (117), so `tcpdump -r FILE` shows rule and action per packet.

use std::{fmt::Write as _, io::Write, path::Path, time::Duration};

use pcap_file::{
    DataLink,
    pcap::{PcapHeader, PcapPacket, PcapWriter},
};

use crate::{
    dataplane::{LogEntry, LogReader, Paths},
    model::packet::{self, Dissected, Transport},
    rules::{Action, Direction},
};

/// pflog's header length as tcpdump reads it (FreeBSD's `PFLOG_REAL_HDRLEN`: up to and
/// including `dir`), and as written: padded to a multiple of 4 (`BPF_WORDALIGN`).
const PFLOG_HDRLEN: u8 = 61;
const PFLOG_HDR_BYTES: usize = 64;
/// BSD address family numbers (pflog's `af`): AF_INET, and OpenBSD's AF_INET6 (tcpdump
/// knows the BSDs' values, not Linux's 10).
const BSD_AF_INET: u8 = 2;
const BSD_AF_INET6: u8 = 24;
/// pf's actions and directions.
const PF_PASS: u8 = 0;
const PF_DROP: u8 = 1;
const PF_IN: u8 = 1;
const PF_OUT: u8 = 2;

/// Where the records go.
pub enum Sink {
    /// One line per packet.
    Text,
    /// One JSON object per line.
    Json,
    /// A pcap file.
    /// (Unbuffered: a `--follow` ends with Ctrl-C, and what was read is on disk by then.)
    Pcap(PcapWriter<std::fs::File>),
}

impl Sink {
    /// A pcap file at `path` (created or truncated), with pflog's link type.
    pub fn pcap(path: &Path) -> anyhow::Result<Sink> {
        let file = std::fs::File::create(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let header = PcapHeader { datalink: DataLink::PFLOG, ..Default::default() };
        Ok(Sink::Pcap(PcapWriter::with_header(file, header)?))
    }
}

/// Reads the log until it is empty (or, with `follow`, until interrupted); returns the
/// number of records.
pub fn run(paths: &Paths, mut sink: Sink, follow: bool) -> anyhow::Result<u64> {
    let mut reader = LogReader::open(paths)?;
    let mut stdout = std::io::stdout().lock();
    let mut n = 0u64;
    loop {
        while let Some(e) = reader.next_entry() {
            n += 1;
            match &mut sink {
                Sink::Text => writeln!(stdout, "{}", line(&e))?,
                Sink::Json => writeln!(stdout, "{}", json(&e))?,
                Sink::Pcap(w) => {
                    let frame = pflog_frame(&e);
                    let ts = Duration::from_nanos(e.time_ns);
                    let orig = e.length + PFLOG_HDR_BYTES as u32;
                    w.write_packet(&PcapPacket::new(ts, orig, &frame))?;
                }
            }
        }
        stdout.flush()?;
        if !follow {
            return Ok(n);
        }
        reader.wait(Duration::from_millis(500));
    }
}

/// The pflog header and the captured bytes after the Ethernet header (pflog carries the
/// IP packet; VLAN tags are skipped).
fn pflog_frame(e: &LogEntry) -> Vec<u8> {
    let (af, ip) = ip_payload(&e.data);
    let mut h = [0u8; PFLOG_HDR_BYTES];
    h[0] = PFLOG_HDRLEN;
    h[1] = af;
    h[2] = if e.action == Action::Pass { PF_PASS } else { PF_DROP };
    h[3] = 0; // reason: PFRES_MATCH
    let name = e.interface.as_bytes();
    let n = name.len().min(15);
    h[4..4 + n].copy_from_slice(&name[..n]);
    // ruleset[16] at 20: empty (the main ruleset).
    h[36..40].copy_from_slice(&e.rule.to_be_bytes());
    h[40..44].copy_from_slice(&u32::MAX.to_be_bytes()); // subrulenr: none
    // uid, pid, rule_uid, rule_pid at 44..60: 0.
    h[60] = if e.direction == Direction::In { PF_IN } else { PF_OUT };
    let mut frame = h.to_vec();
    frame.extend_from_slice(ip);
    frame
}

/// The BSD address family and the bytes from the IP header on.
fn ip_payload(frame: &[u8]) -> (u8, &[u8]) {
    let mut off = 12;
    for _ in 0..3 {
        let Some(t) = frame.get(off..off + 2) else { return (0, &[]) };
        match u16::from_be_bytes([t[0], t[1]]) {
            filter_common::wire::ETH_P_8021Q | filter_common::wire::ETH_P_8021AD => off += 4,
            filter_common::wire::ETH_P_IP => return (BSD_AF_INET, &frame[off + 2..]),
            filter_common::wire::ETH_P_IPV6 => return (BSD_AF_INET6, &frame[off + 2..]),
            _ => break,
        }
    }
    (0, &[])
}

/// Protocol and endpoints of a logged frame, like `udp 192.0.2.1:4000 > 198.51.100.1:53`.
fn endpoints(data: &[u8]) -> String {
    let Dissected::Ip(f) = packet::dissect(data) else { return "(headers cut short)".into() };
    use filter_common::wire::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP};
    let proto = match f.protocol {
        IPPROTO_TCP => "tcp".to_string(),
        IPPROTO_UDP => "udp".to_string(),
        IPPROTO_ICMP => "icmp".to_string(),
        IPPROTO_ICMPV6 => "icmp6".to_string(),
        IPPROTO_SCTP => "sctp".to_string(),
        n => format!("proto {n}"),
    };
    match f.transport {
        Transport::Ports { src, dst, .. } => {
            format!("{proto} {} > {}", std::net::SocketAddr::new(f.src, src), std::net::SocketAddr::new(f.dst, dst))
        }
        _ => format!("{proto} {} > {}", f.src, f.dst),
    }
}

/// `HH:MM:SS.ffffff` (UTC) of a time in ns since the epoch.
fn clock(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let day = secs % 86_400;
    format!("{:02}:{:02}:{:02}.{:06}", day / 3600, day / 60 % 60, day % 60, ns % 1_000_000_000 / 1000)
}

fn rule_name(e: &LogEntry) -> String {
    if e.rule == 0 { "default".into() } else { format!("rule {}", e.rule) }
}

fn line(e: &LogEntry) -> String {
    let mut s = format!(
        "{} {} {} {} on {}: {} ({} bytes)",
        clock(e.time_ns),
        rule_name(e),
        if e.action == Action::Pass { "pass" } else { "block" },
        if e.direction == Direction::In { "in" } else { "out" },
        e.interface,
        endpoints(&e.data),
        e.length
    );
    if let Some(label) = &e.label {
        let _ = write!(s, " label \"{label}\"");
    }
    s
}

fn json(e: &LogEntry) -> String {
    let mut v = serde_json::to_value(e).unwrap_or_default();
    if let (serde_json::Value::Object(m), Dissected::Ip(f)) = (&mut v, packet::dissect(&e.data)) {
        m.insert("src".into(), f.src.to_string().into());
        m.insert("dst".into(), f.dst.to_string().into());
        m.insert("protocol".into(), f.protocol.into());
        if let Transport::Ports { src, dst, .. } = f.transport {
            m.insert("src_port".into(), src.into());
            m.insert("dst_port".into(), dst.into());
        }
    }
    v.to_string()
}
