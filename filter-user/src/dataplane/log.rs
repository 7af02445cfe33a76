//! Reading the packet log: the records `log` rules and `set default block log` put into
//! the pinned ring buffer, decoded with the rule they name and the interface's name.

use std::{os::fd::AsRawFd as _, time::Duration};

use aya::maps::{MapData, RingBuf};
use filter_common::{ACTION_PASS, LOG_RULE_DEFAULT, LogRecord, names};
use serde::Serialize;

use super::{Error, Paths, privilege, program, state::State};
use crate::rules::{Action, Direction};

/// One logged packet.
#[derive(Debug, Clone, Serialize)]
pub struct LogEntry {
    /// When, in nanoseconds since the Unix epoch.
    pub time_ns: u64,
    /// The deciding rule's number (from 1), 0 for the default policy.
    pub rule: u32,
    /// The rule as written (from the ruleset enforcing when the log was opened).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_text: Option<String>,
    /// Its label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// What was done.
    pub action: Action,
    /// in (XDP) or out (TC egress).
    pub direction: Direction,
    /// The interface's name (its index when it has none any more).
    pub interface: String,
    /// The frame's length on the wire.
    pub length: u32,
    /// Its first bytes (at most `filter_common::LOG_CAPTURE`), from the Ethernet header.
    #[serde(skip)]
    pub data: Vec<u8>,
}

/// The pinned log, opened for reading. Records are consumed: two readers share them.
pub struct LogReader {
    ring: RingBuf<MapData>,
    /// CLOCK_REALTIME - CLOCK_MONOTONIC, to date records (the program reads the latter).
    realtime_offset_ns: i128,
    state: Option<State>,
}

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec to write.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

impl LogReader {
    /// Opens the pinned ring buffer (root only: the log holds packet contents).
    pub fn open(paths: &Paths) -> Result<LogReader, Error> {
        privilege::require_privileges()?;
        let map = program::open_pinned(&paths.pin_dir, names::LOG_RING)?;
        let ring = RingBuf::try_from(map).map_err(|e| Error::Map(names::LOG_RING, e))?;
        let state = State::read(&paths.state_file()).ok().flatten();
        Ok(LogReader {
            ring,
            realtime_offset_ns: clock_ns(libc::CLOCK_REALTIME) - clock_ns(libc::CLOCK_MONOTONIC),
            state,
        })
    }

    /// The next record, if one is waiting.
    pub fn next_entry(&mut self) -> Option<LogEntry> {
        let item = self.ring.next()?;
        if item.len() < std::mem::size_of::<LogRecord>() {
            return None;
        }
        // SAFETY: the program writes whole `LogRecord`s (plain data) and the item holds
        // at least one; read unaligned, copied out at once.
        let rec: LogRecord = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
        drop(item);
        Some(self.decode(&rec))
    }

    /// Waits up to `timeout` for a record to arrive.
    pub fn wait(&self, timeout: Duration) {
        let mut fd = libc::pollfd { fd: self.ring.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut fd, 1, ms) };
    }

    fn decode(&self, rec: &LogRecord) -> LogEntry {
        let rule = (rec.rule != LOG_RULE_DEFAULT)
            .then(|| self.state.as_ref().and_then(|s| s.rules.get(rec.rule as usize - 1)))
            .flatten();
        let captured = (rec.captured as usize).min(rec.data.len());
        LogEntry {
            time_ns: u64::try_from(i128::from(rec.time_ns) + self.realtime_offset_ns).unwrap_or(0),
            rule: rec.rule,
            rule_text: rule.map(|r| r.info.text.clone()),
            label: rule.and_then(|r| r.info.label.clone()),
            action: if u32::from(rec.action) == ACTION_PASS { Action::Pass } else { Action::Block },
            direction: if rec.direction == 0 { Direction::In } else { Direction::Out },
            interface: if_name(rec.ifindex),
            length: rec.packet_len,
            data: rec.data[..captured].to_vec(),
        }
    }
}

/// The name of interface `ifindex`, or the index as text.
fn if_name(ifindex: u32) -> String {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` has IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return ifindex.to_string();
    }
    // SAFETY: on success the buffer holds a NUL-terminated name.
    unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned()
}
