//! The spoofed-source flood (issue #8): a large blocklist while frames arrive from random,
//! spoofed sources, the case XDP firewalls exist for.
//!
//! Traffic: UDP to [`FLOOD_PORT`], every frame's source drawn at random by the generator
//! (`bench_tx` with `BENCH_SPOOF_BITS`): IPv4 from all 16M addresses of 1.0.0.0/8, IPv6
//! from all 2^96 of 2001:db8::/32. Sources that random never repeat often enough for a
//! cache to help, which is what a flood does to a lookup structure.
//!
//! Blocklists ([`Blocklist`]): `n` distinct prefixes drawn with a fixed seed (the same
//! every run) inside the flood's network, disjoint (no host inside a listed prefix, so
//! every receiver, nftables' interval sets included, holds exactly the same addresses):
//!
//! - IPv4: every 256th entry a /24, the others /32s. With 1M entries that is 3907 /24s
//!   (6.0% of the /8) and 996k /32s (5.9%): about 12% of the flood hits the list. (Every
//!   16th a /24 would cover nearly the whole /8 and leave no misses.)
//! - IPv6: every 256th entry a /48 (3907 of the 65536 in the /32: 6.0% of the flood), every
//!   16th otherwise a /64, the others /128s. Random 96-bit sources practically never hit a
//!   /64 or a /128 (2^-32, 2^-96), so IPv6 hits come from the /48s; the other lengths are
//!   there because real lists have them and each length present may cost a lookup.
//!
//! Rulesets ([`Flood`]): every row drops every frame, so the rate measures the filter and
//! not the kernel stack that would take the misses: the blocklist rule drops the hits
//! and a catch-all `block in proto udp to port 6000` the rest, each counted by its own
//! counter; the row reports the share the list matched beside the share expected.
//! (Passing the misses on would measure the stack: ~1 Mpps here whatever the filter.)

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::ruleset::{MAX_RULES, count, port, proto, source};

/// The IPv4 flood's network (a /8): sources are `FLOOD_V4 | random 24 bits`.
pub const FLOOD_V4: Ipv4Addr = Ipv4Addr::new(1, 0, 0, 0);
/// Random low bits of an IPv4 flood source.
pub const FLOOD_V4_BITS: u32 = 24;
/// The IPv6 flood's network (a /32, the documentation prefix).
pub const FLOOD_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0);
/// Random low bits of an IPv6 flood source.
pub const FLOOD_V6_BITS: u32 = 96;
/// The flood's UDP destination port (no other scenario's rule names it).
pub const FLOOD_PORT: u16 = 6000;

/// The address family of a flood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Family {
    /// IPv4 sources from 1.0.0.0/8.
    V4,
    /// IPv6 sources from 2001:db8::/32.
    V6,
}

impl Family {
    /// `IPv4` or `IPv6`.
    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }

    /// The generator's random source bits for this family.
    pub fn spoof_bits(self) -> u32 {
        match self {
            Family::V4 => FLOOD_V4_BITS,
            Family::V6 => FLOOD_V6_BITS,
        }
    }

    /// The template frame's source (the generator replaces its random bits).
    pub fn template_source(self) -> std::net::IpAddr {
        match self {
            Family::V4 => Ipv4Addr::new(1, 0, 0, 1).into(),
            Family::V6 => Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).into(),
        }
    }
}

/// A prefix of a blocklist: the address in the low bits (IPv4: the low 32) and its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    /// The address (IPv4 in the low 32 bits).
    pub addr: u128,
    /// Prefix length.
    pub len: u8,
}

/// A generated blocklist inside a flood's network (see the module's description).
#[derive(Debug, Clone)]
pub struct Blocklist {
    /// The family of every entry.
    pub family: Family,
    /// The prefixes, longer and shorter mixed in generation order.
    pub entries: Vec<Prefix>,
}

/// A bitmap of `1 << bits` entries.
struct Bits(Vec<u64>);

impl Bits {
    fn new(bits: u32) -> Bits {
        Bits(vec![0; (1usize << bits).div_ceil(64)])
    }

    /// Sets bit `i`; whether it was clear.
    fn insert(&mut self, i: usize) -> bool {
        let (w, b) = (i / 64, 1u64 << (i % 64));
        let new = self.0[w] & b == 0;
        self.0[w] |= b;
        new
    }

    fn contains(&self, i: usize) -> bool {
        self.0[i / 64] & (1u64 << (i % 64)) != 0
    }
}

impl Blocklist {
    /// `n` distinct, disjoint prefixes in the family's flood network.
    pub fn new(family: Family, n: usize) -> Blocklist {
        // A fixed seed per family, so every run lists the same prefixes.
        let mut rng = fastrand::Rng::with_seed(match family {
            Family::V4 => 0x7877_6200_0000_0004,
            Family::V6 => 0x7877_6200_0000_0006,
        });
        let mut entries = Vec::with_capacity(n);
        match family {
            Family::V4 => {
                assert!(n <= 8_000_000, "a blocklist of at most 8M entries in a /8");
                let base = u128::from(u32::from(FLOOD_V4));
                // /24s first (index i is listed iff i % 256 == 0), then /32s outside them.
                let (mut s24, mut s32) = (Bits::new(16), Bits::new(24));
                let shorter = n.div_ceil(256).min(n);
                while entries.len() < shorter {
                    let i = (rng.u64(..) & 0xffff) as usize;
                    if s24.insert(i) {
                        entries.push(Prefix { addr: base | (i as u128) << 8, len: 24 });
                    }
                }
                while entries.len() < n {
                    let a = (rng.u64(..) & 0xff_ffff) as usize;
                    if !s24.contains(a >> 8) && s32.insert(a) {
                        entries.push(Prefix { addr: base | a as u128, len: 32 });
                    }
                }
                interleave(&mut entries, shorter);
            }
            Family::V6 => {
                let base = u128::from(FLOOD_V6);
                let (mut s48, mut s64) = (Bits::new(16), std::collections::HashSet::new());
                let n48 = n.div_ceil(256).min(n);
                let n64 = (n.div_ceil(16) - n48.min(n.div_ceil(16))).min(n - n48);
                while entries.len() < n48 {
                    let i = (rng.u64(..) & 0xffff) as usize;
                    if s48.insert(i) {
                        entries.push(Prefix { addr: base | (i as u128) << 80, len: 48 });
                    }
                }
                while entries.len() < n48 + n64 {
                    let i = rng.u64(..) & 0xffff_ffff;
                    if !s48.contains((i >> 16) as usize) && s64.insert(i) {
                        entries.push(Prefix { addr: base | u128::from(i) << 64, len: 64 });
                    }
                }
                while entries.len() < n {
                    let low = u128::from(rng.u64(..)) | u128::from(rng.u64(..) & 0xffff_ffff) << 64;
                    // 2^-32 chance of landing in a listed /64, 6% in a listed /48.
                    if !s48.contains((low >> 80) as usize) && !s64.contains(&((low >> 64) as u64)) {
                        entries.push(Prefix { addr: base | low, len: 128 });
                    }
                }
            }
        }
        Blocklist { family, entries }
    }

    /// The share of the flood's sources the list holds (what a receiver should match).
    pub fn expected_hit_share(&self) -> f64 {
        let space = f64::from(self.family.spoof_bits()).exp2();
        let max = match self.family {
            Family::V4 => 32,
            Family::V6 => 128,
        };
        self.entries.iter().map(|p| f64::from(max - u32::from(p.len)).exp2()).sum::<f64>() / space
    }

    /// The first `n` host entries (/32 or /128), for lists that hold only hosts.
    pub fn hosts(&self, n: usize) -> Vec<u128> {
        let max = match self.family {
            Family::V4 => 32,
            Family::V6 => 128,
        };
        self.entries.iter().filter(|p| p.len == max).map(|p| p.addr).take(n).collect()
    }

    /// `100k: 391 /24 + 99609 /32`: the size and how many of each length.
    pub fn describe(&self) -> String {
        let mut lens: Vec<u8> = self.entries.iter().map(|p| p.len).collect();
        lens.sort_unstable();
        let mut parts: Vec<String> = Vec::new();
        for chunk in lens.chunk_by(|a, b| a == b) {
            parts.push(format!("{} /{}", chunk.len(), chunk[0]));
        }
        format!("{}: {}", count(self.entries.len()), parts.join(" + "))
    }

    /// One prefix a line (`1.2.3.0/24`, `1.2.3.4/32`).
    pub fn text(&self) -> String {
        let mut s = String::with_capacity(self.entries.len() * 24);
        for p in &self.entries {
            let _ = writeln!(s, "{}", self.show(p));
        }
        s
    }

    fn show(&self, p: &Prefix) -> String {
        match self.family {
            Family::V4 => format!("{}/{}", Ipv4Addr::from(p.addr as u32), p.len),
            Family::V6 => format!("{}/{}", Ipv6Addr::from(p.addr), p.len),
        }
    }

    /// An nftables script: a netdev ingress chain on `device` with an interval set of the
    /// list, `ip saddr @big` counted in the named counter `hits` and dropped, then the
    /// catch-all (UDP to the flood's port) counted in `rest` and dropped.
    pub fn nft_set(&self, table: &str, device: &str) -> String {
        let (ty, match_) = match self.family {
            Family::V4 => ("ipv4_addr", "ip saddr"),
            Family::V6 => ("ipv6_addr", "ip6 saddr"),
        };
        let mut s = String::with_capacity(self.entries.len() * 26 + 512);
        let _ = write!(
            s,
            "table netdev {table} {{\n  counter hits {{ }}\n  counter rest {{ }}\n  set big {{\n    type {ty}\n    flags interval\n    elements = {{\n"
        );
        for (i, p) in self.entries.iter().enumerate() {
            let sep = if i + 1 == self.entries.len() { "" } else { "," };
            let _ = writeln!(s, "      {}{sep}", self.show(p));
        }
        let _ = write!(
            s,
            "    }}\n  }}\n  chain ingress {{\n    type filter hook ingress device \"{device}\" priority 0; policy accept;\n    {match_} @big counter name \"hits\" drop\n    udp dport {FLOOD_PORT} counter name \"rest\" drop\n  }}\n}}\n"
        );
        s
    }
}

/// Moves the `shorter` prefixes generated first to every 256th place, as a list written
/// by hand would mix them (and as the module's description counts them).
fn interleave(entries: &mut [Prefix], shorter: usize) {
    for k in (0..shorter).rev() {
        let to = (k * 256).min(entries.len() - 1);
        entries[k..=to].rotate_left(1);
    }
}

/// The per-rule rate of the rate-limited flood rows: far below the flood's, so the
/// limiter's bucket is empty and nearly every packet pays its check and goes on.
pub const FLOOD_RATE: u32 = 1000;
/// The per-rule rate of the flood row that stays under its rate: the language's highest,
/// far above the flood's, so every packet conforms and moves the limiter (its
/// compare-and-swap).
pub const FLOOD_RATE_HIGH: u32 = 1_000_000_000;
/// `set log-rate` of the flood row whose records are written: the language's highest.
pub const FLOOD_LOG_RATE: u32 = 1_000_000;

/// What an xdpwall flood row adds to the plain catch-all (issue #13: the cost of a rate
/// limit, a per-source limiter and the packet log under the spoofed flood).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Extra {
    /// `block in quick proto udp to port 6000 rate 1000/s` before the catch-all: past the
    /// first second's burst the bucket is empty, so each packet pays the limiter's clock
    /// read and check and goes on to the catch-all.
    Rate,
    /// `block in quick proto udp to port 6000 rate 1000000000/s` before the catch-all:
    /// every packet conforms, so each pays the clock read and the compare-and-swap, and
    /// the rule drops it.
    RateCas,
    /// The `rate 1000/s` rule with `per-source`: every frame a new source, so each packet looks up,
    /// misses and inserts into the LRU table of `set limit src-nodes` (default), evicting
    /// the least recently seen; a new source's bucket is full, so the rule drops it.
    PerSource,
    /// `block in log quick proto udp to port 6000` under the default `set log-rate`: past
    /// the first records the log limiter suppresses them.
    Log,
    /// The same with `set log-rate 1000000/s`, and `xdpwall log --follow` reading the ring,
    /// so records are written as long as the ring has room.
    LogWritten,
}

impl Extra {
    /// What the row's ruleset adds, for the report (`rate 1000/s`, `log`).
    pub fn describe(self) -> String {
        match self {
            Extra::Rate => format!("`rate {FLOOD_RATE}/s` rule + catch-all"),
            Extra::RateCas => format!("`rate {FLOOD_RATE_HIGH}/s` rule (never over) + catch-all"),
            Extra::PerSource => format!("`rate {FLOOD_RATE}/s per-source` rule + catch-all"),
            Extra::Log => "catch-all with `log` (default log-rate)".into(),
            Extra::LogWritten => format!("catch-all with `log`, `set log-rate {FLOOD_LOG_RATE}/s`, a reader"),
        }
    }
}

/// A flood row's xdpwall ruleset.
#[derive(Debug, Clone)]
pub struct Flood {
    /// Rules in all: `rules - 2` others (on 10.202.0.0/16, which the flood never
    /// matches), the blocklist rule, the catch-all; 1 for the catch-all alone.
    pub rules: usize,
    /// The blocklist, if any.
    pub list: Option<Blocklist>,
    /// The traffic's family.
    pub family: Family,
    /// What the ruleset adds to the plain catch-all, if anything (no list then).
    pub extra: Option<Extra>,
}

impl Flood {
    /// The catch-all alone: `block in proto udp to port 6000`.
    pub fn one_rule(family: Family) -> Flood {
        Flood { rules: 1, list: None, family, extra: None }
    }

    /// The catch-all with `extra` (see [`Extra`]): 2 rules for the rate limits, 1 for the log.
    pub fn with(extra: Extra, family: Family) -> Flood {
        let rules = match extra {
            Extra::Rate | Extra::RateCas | Extra::PerSource => 2,
            Extra::Log | Extra::LogWritten => 1,
        };
        Flood { rules, list: None, family, extra: Some(extra) }
    }

    /// `rules` rules (2..=4096) whose last two are the blocklist rule and the catch-all.
    pub fn table(list: Blocklist, rules: usize) -> Flood {
        assert!((2..=MAX_RULES).contains(&rules), "2..={MAX_RULES} rules");
        Flood { rules, family: list.family, list: Some(list), extra: None }
    }

    /// `1 rule`, `1M IPv4 table + catch-all`, `1M IPv4 table + 4096 rules`.
    pub fn name(&self) -> String {
        if let Some(extra) = self.extra {
            return extra.describe();
        }
        match &self.list {
            None => "1 rule".into(),
            Some(l) if self.rules == 2 => format!("{} {} table + catch-all", count(l.entries.len()), l.family.name()),
            Some(l) => format!("{} {} table + {} rules", count(l.entries.len()), l.family.name(), self.rules),
        }
    }

    /// The blocklist rule's number (from 1), if there is one.
    pub fn table_rule(&self) -> Option<usize> {
        self.list.as_ref().map(|_| self.rules - 1)
    }

    /// The catch-all's number (from 1): the last rule.
    pub fn catch_all(&self) -> usize {
        self.rules
    }

    /// The ruleset in xdpwall's language; the list is read from `big.txt` beside it.
    pub fn xdpwall_text(&self) -> String {
        let mut s = format!("# generated by xdpwall-benches: flood, {}\n", self.name());
        if self.list.is_some() {
            s.push_str("table <big> file \"big.txt\"\n");
            for i in 0..self.rules - 2 {
                let p = if proto(i, self.rules) == 6 { "tcp" } else { "udp" };
                let _ = writeln!(s, "pass in quick proto {p} from {}/28 to port {} no state", source(i), port(i));
            }
            s.push_str("block in quick proto udp from <big>\n");
        }
        match self.extra {
            None => {
                let _ = writeln!(s, "block in quick proto udp to port {FLOOD_PORT}");
            }
            Some(Extra::Rate) => {
                let _ = writeln!(s, "block in quick proto udp to port {FLOOD_PORT} rate {FLOOD_RATE}/s");
                let _ = writeln!(s, "block in quick proto udp to port {FLOOD_PORT}");
            }
            Some(Extra::RateCas) => {
                let _ = writeln!(s, "block in quick proto udp to port {FLOOD_PORT} rate {FLOOD_RATE_HIGH}/s");
                let _ = writeln!(s, "block in quick proto udp to port {FLOOD_PORT}");
            }
            Some(Extra::PerSource) => {
                let _ = writeln!(s, "block in quick proto udp to port {FLOOD_PORT} rate {FLOOD_RATE}/s per-source");
                let _ = writeln!(s, "block in quick proto udp to port {FLOOD_PORT}");
            }
            Some(Extra::Log) => {
                let _ = writeln!(s, "block in log quick proto udp to port {FLOOD_PORT}");
            }
            Some(Extra::LogWritten) => {
                let _ = writeln!(s, "set log-rate {FLOOD_LOG_RATE}/s");
                let _ = writeln!(s, "block in log quick proto udp to port {FLOOD_PORT}");
            }
        }
        s
    }

    /// Writes `rules.conf` (and `big.txt`) into `dir`; returns the ruleset's path.
    pub fn write(&self, dir: &Path) -> Result<PathBuf> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        if let Some(list) = &self.list {
            let path = dir.join("big.txt");
            std::fs::write(&path, list.text()).with_context(|| format!("writing {}", path.display()))?;
        }
        let path = dir.join("rules.conf");
        std::fs::write(&path, self.xdpwall_text()).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_v4_net(p: &Prefix) -> bool {
        (p.addr as u32) >> 24 == 1
    }

    #[test]
    fn v4_lists_are_distinct_disjoint_and_mixed() {
        let l = Blocklist::new(Family::V4, 10_000);
        assert_eq!(l.entries.len(), 10_000);
        assert!(l.entries.iter().all(in_v4_net));
        let s24: std::collections::HashSet<u128> =
            l.entries.iter().filter(|p| p.len == 24).map(|p| p.addr >> 8).collect();
        assert_eq!(s24.len(), 40);
        let s32: std::collections::HashSet<u128> = l.entries.iter().filter(|p| p.len == 32).map(|p| p.addr).collect();
        assert_eq!(s32.len(), 10_000 - 40);
        assert!(s32.iter().all(|a| !s24.contains(&(a >> 8))));
        assert_eq!(l.entries[0].len, 24);
        assert_eq!(l.entries[256].len, 24);
        assert_eq!(l.entries[1].len, 32);
        let share = l.expected_hit_share();
        let want = (40.0 * 256.0 + 9960.0) / 16_777_216.0;
        assert!((share - want).abs() < 1e-12);
        // The same every run.
        assert_eq!(Blocklist::new(Family::V4, 10_000).entries, l.entries);
        assert_eq!(Blocklist::new(Family::V4, 1).entries.len(), 1);
    }

    #[test]
    fn v6_lists_are_under_the_32() {
        let l = Blocklist::new(Family::V6, 5000);
        assert_eq!(l.entries.len(), 5000);
        let count = |len| l.entries.iter().filter(|p| p.len == len).count();
        assert_eq!((count(48), count(64), count(128)), (20, 313 - 20, 5000 - 313));
        assert!(l.entries.iter().all(|p| p.addr >> 96 == u128::from(FLOOD_V6) >> 96));
        assert!(l.text().lines().next().unwrap().starts_with("2001:db8:"));
        assert_eq!(l.hosts(3).len(), 3);
    }

    #[test]
    fn rulesets_and_nft() {
        let one = Flood::one_rule(Family::V4);
        assert_eq!(one.xdpwall_text().lines().skip(1).collect::<Vec<_>>(), ["block in quick proto udp to port 6000"]);
        let t = Flood::table(Blocklist::new(Family::V4, 3), 4);
        assert_eq!(
            t.xdpwall_text().lines().skip(1).collect::<Vec<_>>(),
            [
                "table <big> file \"big.txt\"",
                "pass in quick proto udp from 10.202.0.0/28 to port 5000 no state",
                "pass in quick proto tcp from 10.202.0.16/28 to port 5001 no state",
                "block in quick proto udp from <big>",
                "block in quick proto udp to port 6000",
            ]
        );
        assert_eq!((t.table_rule(), t.catch_all()), (Some(3), 4));
        assert_eq!(t.name(), "3 IPv4 table + 4 rules");
        let nft = t.list.as_ref().unwrap().nft_set("x", "eth9");
        assert!(nft.contains("type ipv4_addr\n    flags interval"));
        assert!(nft.contains("ip saddr @big counter name \"hits\" drop"));
        assert!(nft.contains("udp dport 6000 counter name \"rest\" drop"));
        assert_eq!(nft.matches(",\n").count(), 2);
    }

    #[test]
    fn rate_and_log_rulesets() {
        let lines = |e| {
            let f = Flood::with(e, Family::V4);
            let text = f.xdpwall_text();
            // What xdpwall's own parser and compiler take, rule for rule.
            let ruleset = filter_user::rules::parse_str(&text, "rules.conf", Path::new("/nonexistent")).unwrap();
            assert_eq!(filter_user::compile::compile(&ruleset).unwrap().rules.len(), f.rules);
            assert_eq!(text.lines().skip(1).count(), f.rules + usize::from(e == Extra::LogWritten));
            text.lines().skip(1).map(String::from).collect::<Vec<_>>()
        };
        assert_eq!(
            lines(Extra::Rate),
            ["block in quick proto udp to port 6000 rate 1000/s", "block in quick proto udp to port 6000"]
        );
        assert_eq!(
            lines(Extra::RateCas),
            ["block in quick proto udp to port 6000 rate 1000000000/s", "block in quick proto udp to port 6000"]
        );
        assert_eq!(
            lines(Extra::PerSource),
            ["block in quick proto udp to port 6000 rate 1000/s per-source", "block in quick proto udp to port 6000"]
        );
        assert_eq!(lines(Extra::Log), ["block in log quick proto udp to port 6000"]);
        assert_eq!(lines(Extra::LogWritten), ["set log-rate 1000000/s", "block in log quick proto udp to port 6000"]);
        let f = Flood::with(Extra::PerSource, Family::V4);
        assert_eq!((f.table_rule(), f.catch_all()), (None, 2));
        assert_eq!(f.name(), "`rate 1000/s per-source` rule + catch-all");
    }
}
