//! Rulesets for benchmarks, generated in code, and the packets that go with them.
//!
//! Rule `i` of an `n`-rule set is `pass in proto P from 10.202.(i/16).(i%16*16)/28 to port
//! 5000+i%64`, with P = tcp for every third rule and udp otherwise: every rule has its own
//! source prefix, each port is shared by `n/64` rules and each protocol by many, so each
//! field's equivalence classes hold several rules and the classifier ANDs real bitmaps.
//! The last rule is UDP and carries the action under test (`block` for the drop path,
//! `pass ... keep state` for the established-flow fast path).
//!
//! Two packets go with each set: one that matches the last rule (so a linear scan would
//! walk every rule) and one that matches none, built to satisfy some rules in each field
//! (its source is the last rule's, its port an earlier rule's) so no field lookup alone
//! rules it out.
//!
//! A table scenario replaces the last rule's prefix by `<blocklist>`: `entries` distinct
//! prefixes (/32s and every fourth a /24) spread over the IPv4 space outside 10/8, with the
//! last rule's /28 in the middle.
//!
//! Addresses: rule sources are in 10.202.0.0/16, which the veth benchmark routes into its
//! own veth pair, so no packet or reply ever leaves the machine.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use filter_user::compile::{self, Compiled};
use filter_user::rules;

/// Most rules a scenario can have (one /28 each in 10.202.0.0/16).
pub const MAX_RULES: usize = 4096;
/// The /16 that rule sources come from.
pub const SOURCE_NET: Ipv4Addr = Ipv4Addr::new(10, 202, 0, 0);
/// Destination port of rule `i` is `BASE_PORT + i % PORTS`.
pub const BASE_PORT: u16 = 5000;
const PORTS: usize = 64;
/// A port no rule names.
const UNUSED_PORT: u16 = 4999;
/// Where the table scenario's matching packets come from: the last /28 of `SOURCE_NET`,
/// which no rule of a table scenario uses for itself.
const TABLE_HIT: usize = MAX_RULES - 1;
use filter_common::wire::{IPPROTO_TCP, IPPROTO_UDP};

/// The action of a scenario's last rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Last {
    /// `block`: the drop path.
    Block,
    /// `pass`: the pass path.
    Pass,
    /// `pass ... keep state`: the first packet of a flow passes by the rule and opens
    /// the flow; the flow's next packets pass on the state fast path.
    KeepState,
}

/// A source address and destination port: what decides a generated packet's fate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// IPv4 source.
    pub src: Ipv4Addr,
    /// UDP destination port.
    pub dport: u16,
}

/// A generated ruleset.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Rules.
    pub rules: usize,
    /// Entries of `<blocklist>` (the last rule's source), if the scenario has a table.
    pub table_entries: Option<usize>,
    /// The last rule's action.
    pub last: Last,
}

impl Scenario {
    /// `n` rules (1..=4096), the last one with action `last`.
    pub fn rules(n: usize, last: Last) -> Scenario {
        assert!((1..=MAX_RULES).contains(&n), "1..={MAX_RULES} rules");
        Scenario { rules: n, table_entries: None, last }
    }

    /// `n` rules (1..=4096) whose last one matches sources in a table of `entries` prefixes.
    pub fn table(entries: usize, n: usize, last: Last) -> Scenario {
        assert!((1..=MAX_RULES).contains(&n), "1..={MAX_RULES} rules");
        assert!(entries >= 1);
        Scenario { rules: n, table_entries: Some(entries), last }
    }

    /// A short name: `4096 rules`, `1M table + 4096 rules`.
    pub fn name(&self) -> String {
        let rules = format!("{} rule{}", self.rules, if self.rules == 1 { "" } else { "s" });
        match self.table_entries {
            None => rules,
            Some(e) if self.rules == 1 => format!("{} table", count(e)),
            Some(e) => format!("{} table + {rules}", count(e)),
        }
    }

    fn last_source(&self) -> usize {
        if self.table_entries.is_some() { TABLE_HIT } else { self.rules - 1 }
    }

    /// A packet that matches the last rule and no other.
    pub fn hit(&self) -> Probe {
        Probe { src: host_in(self.last_source(), 1), dport: port(self.rules - 1) }
    }

    /// A packet that matches no rule (the default policy, pass, decides).
    pub fn miss(&self) -> Probe {
        let dport = if self.rules >= 2 { port(self.rules - 2) } else { UNUSED_PORT };
        match self.table_entries {
            // The last rule's source, an earlier rule's port.
            None if dport != port(self.rules - 1) => Probe { src: host_in(self.rules - 1, 1), dport },
            None => Probe { src: host_in(self.rules - 1, 1), dport: UNUSED_PORT },
            // The last rule's port, a source in no rule's prefix and not in the table.
            Some(_) => Probe { src: host_in(MAX_RULES - 2, 1), dport: port(self.rules - 1) },
        }
    }

    /// The ruleset in xdpwall's language; a table is read from `blocklist.txt` beside it.
    pub fn xdpwall_text(&self) -> String {
        let mut s = format!("# generated by xdpwall-benches: {}\n", self.name());
        if self.table_entries.is_some() {
            s.push_str("table <blocklist> file \"blocklist.txt\"\n");
        }
        for i in 0..self.rules {
            let last = i + 1 == self.rules;
            let action = if last && self.last == Last::Block { "block" } else { "pass" };
            // `quick` and `no state`: the first match decides and nothing is tracked,
            // as in the nftables form measured beside it (and as before pf's order).
            let keep = match action {
                _ if last && self.last == Last::KeepState => " keep state",
                "pass" => " no state",
                _ => "",
            };
            let proto = if proto(i, self.rules) == IPPROTO_TCP { "tcp" } else { "udp" };
            let from = if last && self.table_entries.is_some() {
                "<blocklist>".to_string()
            } else {
                format!("{}/28", source(i))
            };
            let _ = writeln!(s, "{action} in quick proto {proto} from {from} to port {}{keep}", port(i));
        }
        s
    }

    /// The table's file contents, if the scenario has a table.
    pub fn table_text(&self) -> Option<String> {
        self.table_entries.map(|n| {
            let mut s = String::with_capacity(n * 18);
            for entry in table_entries(n) {
                let _ = writeln!(s, "{entry}");
            }
            s
        })
    }

    /// Writes `rules.conf` (and `blocklist.txt`) into `dir`; returns the ruleset's path.
    pub fn write(&self, dir: &Path) -> Result<PathBuf> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        if let Some(table) = self.table_text() {
            let path = dir.join("blocklist.txt");
            std::fs::write(&path, table).with_context(|| format!("writing {}", path.display()))?;
        }
        let path = dir.join("rules.conf");
        std::fs::write(&path, self.xdpwall_text()).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// Writes the scenario into `dir`, then parses and compiles it as `xdpwall` would.
    pub fn compile(&self, dir: &Path) -> Result<Compiled> {
        self.write(dir)?;
        let ruleset = rules::parse_str(&self.xdpwall_text(), "rules.conf", dir)?;
        Ok(compile::compile(&ruleset)?)
    }

    /// The same rules for nftables, one rule each, in a netdev ingress chain on `device`;
    /// `None` for a table scenario or `keep state` (a netdev chain sees no conntrack).
    /// The matching rule counts what it judges in the named counter `hits`.
    pub fn nft_linear(&self, table: &str, device: &str) -> Option<String> {
        if self.table_entries.is_some() || self.last == Last::KeepState {
            return None;
        }
        let mut s = format!("table netdev {table} {{\n  {NFT_COUNTER}\n{}", nft_chain(device));
        for i in 0..self.rules {
            let last = i + 1 == self.rules;
            let verdict = if !last {
                "accept"
            } else if self.last == Last::Block {
                "counter name \"hits\" drop"
            } else {
                "counter name \"hits\" accept"
            };
            let proto = if proto(i, self.rules) == IPPROTO_TCP { "tcp" } else { "udp" };
            let _ = writeln!(s, "    ip saddr {}/28 {proto} dport {} {verdict}", source(i), port(i));
        }
        s.push_str("  }\n}\n");
        Some(s)
    }

    /// The same rules for nftables as verdict maps keyed by source and port, one per
    /// protocol, so a packet costs one map lookup whatever the number of rules (the
    /// sources never overlap, so first match and any match agree); `None` for a table
    /// scenario or `keep state`. The UDP rule counts the packets it looks up in the named
    /// counter `hits`.
    ///
    /// (A single map keyed by `meta l4proto . ip saddr . th dport` would say the same,
    /// but on Linux 6.18 its lookups grow with the number of elements, which would make
    /// nftables look slower than it is.)
    pub fn nft_set(&self, table: &str, device: &str) -> Option<String> {
        if self.table_entries.is_some() || self.last == Last::KeepState {
            return None;
        }
        let mut s = format!("table netdev {table} {{\n  {NFT_COUNTER}\n");
        let mut rules = String::new();
        for (name, p) in [("udp", IPPROTO_UDP), ("tcp", IPPROTO_TCP)] {
            let elements: Vec<String> = (0..self.rules)
                .filter(|&i| proto(i, self.rules) == p)
                .map(|i| {
                    let last = i + 1 == self.rules;
                    let verdict = if last && self.last == Last::Block { "drop" } else { "accept" };
                    format!("      {}/28 . {} : {verdict},\n", source(i), port(i))
                })
                .collect();
            if elements.is_empty() {
                continue;
            }
            let _ = write!(
                s,
                "  map {name}_rules {{\n    type ipv4_addr . inet_service : verdict\n    flags interval\n    elements = {{\n{}    }}\n  }}\n",
                elements.concat()
            );
            // Generated traffic is UDP: its rule counts the packets it looks up.
            let count = if p == IPPROTO_UDP { "counter name \"hits\" " } else { "" };
            let _ = writeln!(rules, "    meta l4proto {name} {count}ip saddr . {name} dport vmap @{name}_rules");
        }
        s.push_str(&nft_chain(device));
        s.push_str(&rules);
        s.push_str("  }\n}\n");
        Some(s)
    }
}

/// The named counter the nftables forms count in (`nft list counter` reads it quickly,
/// whatever the number of rules).
pub const NFT_COUNTER: &str = "counter hits { }";

/// The opening of a netdev ingress chain on `device` (closed by the caller).
fn nft_chain(device: &str) -> String {
    format!("  chain ingress {{\n    type filter hook ingress device \"{device}\" priority 0; policy accept;\n")
}

/// Source prefix (/28) of rule `i`.
pub fn source(i: usize) -> Ipv4Addr {
    assert!(i < MAX_RULES);
    let [a, b, ..] = SOURCE_NET.octets();
    Ipv4Addr::new(a, b, (i / 16) as u8, (i % 16 * 16) as u8)
}

/// Host `h` (0..16) of rule `i`'s /28.
fn host_in(i: usize, h: u8) -> Ipv4Addr {
    let [a, b, c, d] = source(i).octets();
    Ipv4Addr::new(a, b, c, d + h)
}

/// Destination port of rule `i`.
pub fn port(i: usize) -> u16 {
    BASE_PORT + (i % PORTS) as u16
}

/// Protocol of rule `i` of `rules` (6: TCP, 17: UDP; the last rule is UDP).
pub fn proto(i: usize, rules: usize) -> u8 {
    if i % 3 == 1 && i + 1 != rules { IPPROTO_TCP } else { IPPROTO_UDP }
}

/// `1k`, `100k`, `1M`, `1500`.
pub fn count(n: usize) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1000 && n % 1000 == 0 => format!("{}k", n / 1000),
        n => n.to_string(),
    }
}

/// `n` distinct prefixes: the table scenario's hit /28 at position `n / 2`, the rest
/// pseudo-random /32s and /24s outside 10/8, 0/8, 127/8 and 224/3 (the same every run).
pub fn table_entries(n: usize) -> Vec<String> {
    let mut seen = HashSet::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    let mut i: u32 = 0;
    while out.len() < n {
        if out.len() == n / 2 {
            out.push(format!("{}/28", source(TABLE_HIT)));
        }
        if out.len() == n {
            break;
        }
        // An odd multiplier, a rotation and an xor: a bijection on u32, so no repeats
        // among the /32s.
        let x = i.wrapping_mul(0x9e37_79b1).rotate_left(13) ^ 0x5bd1_e995;
        let (addr, len) = if i.is_multiple_of(4) { (x & 0xffff_ff00, 24) } else { (x, 32) };
        i = i.wrapping_add(1);
        let first = (addr >> 24) as u8;
        if matches!(first, 0 | 10 | 127) || first >= 224 || !seen.insert((addr, len)) {
            continue;
        }
        out.push(format!("{}/{len}", Ipv4Addr::from(addr)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(Scenario::rules(1, Last::Block).name(), "1 rule");
        assert_eq!(Scenario::rules(4096, Last::Block).name(), "4096 rules");
        assert_eq!(Scenario::table(1_000_000, 1, Last::Block).name(), "1M table");
        assert_eq!(Scenario::table(1_000_000, 4095, Last::Block).name(), "1M table + 4095 rules");
    }

    #[test]
    fn sources_are_distinct_and_in_the_bench_net() {
        let all: HashSet<_> = (0..MAX_RULES).map(source).collect();
        assert_eq!(all.len(), MAX_RULES);
        assert_eq!(source(0), Ipv4Addr::new(10, 202, 0, 0));
        assert_eq!(source(4095), Ipv4Addr::new(10, 202, 255, 240));
    }

    #[test]
    fn text_and_probes() {
        let s = Scenario::rules(3, Last::Block);
        assert_eq!(
            s.xdpwall_text().lines().skip(1).collect::<Vec<_>>(),
            [
                "pass in quick proto udp from 10.202.0.0/28 to port 5000 no state",
                "pass in quick proto tcp from 10.202.0.16/28 to port 5001 no state",
                "block in quick proto udp from 10.202.0.32/28 to port 5002",
            ]
        );
        assert_eq!(s.hit(), Probe { src: Ipv4Addr::new(10, 202, 0, 33), dport: 5002 });
        assert_eq!(s.miss(), Probe { src: Ipv4Addr::new(10, 202, 0, 33), dport: 5001 });
        let one = Scenario::rules(1, Last::Pass);
        assert!(one.xdpwall_text().contains("pass in quick proto udp from 10.202.0.0/28 to port 5000 no state"));
        assert_eq!(one.miss().dport, UNUSED_PORT);
        let kept = Scenario::rules(2, Last::KeepState);
        assert_eq!(
            kept.xdpwall_text().lines().skip(1).collect::<Vec<_>>(),
            [
                "pass in quick proto udp from 10.202.0.0/28 to port 5000 no state",
                "pass in quick proto udp from 10.202.0.16/28 to port 5001 keep state",
            ]
        );
        assert!(kept.nft_linear("t", "x").is_none() && kept.nft_set("t", "x").is_none());
    }

    #[test]
    fn table_entries_are_distinct_and_hold_the_hit() {
        let entries = table_entries(1000);
        assert_eq!(entries.len(), 1000);
        assert_eq!(entries.iter().collect::<HashSet<_>>().len(), 1000);
        assert_eq!(entries[500], "10.202.255.240/28");
        assert!(entries.iter().filter(|e| e.starts_with("10.")).count() == 1);
    }

    #[test]
    fn generated_rulesets_compile_with_the_expected_verdicts() {
        let dir = std::env::temp_dir().join(format!("xdpwall-benches-unit-{}", std::process::id()));
        for s in [Scenario::rules(130, Last::Block), Scenario::table(1000, 5, Last::Block)] {
            let c = s.compile(&dir).unwrap();
            assert_eq!(c.rules.len(), s.rules);
            assert!(c.rules.last().unwrap().text.starts_with("block"));
            assert!(!c.stateful);
        }
        let c = Scenario::rules(1024, Last::KeepState).compile(&dir).unwrap();
        assert!(c.stateful && c.rules.last().unwrap().keep_state);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn nft_texts() {
        let s = Scenario::rules(2, Last::Block);
        let linear = s.nft_linear("t", "eth9").unwrap();
        assert!(linear.contains("type filter hook ingress device \"eth9\" priority 0; policy accept;"));
        assert!(linear.contains("ip saddr 10.202.0.16/28 udp dport 5001 counter name \"hits\" drop"));
        let set = Scenario::rules(3, Last::Block).nft_set("t", "eth9").unwrap();
        assert!(set.starts_with("table netdev t {\n  counter hits { }\n  map udp_rules {"));
        assert!(set.contains("      10.202.0.0/28 . 5000 : accept,\n      10.202.0.32/28 . 5002 : drop,\n"));
        assert!(set.contains("  map tcp_rules {\n    type ipv4_addr . inet_service : verdict\n    flags interval\n    elements = {\n      10.202.0.16/28 . 5001 : accept,\n"));
        assert!(set.contains("  chain ingress {\n    type filter hook ingress device \"eth9\""));
        assert!(set.contains(
            "    meta l4proto udp counter name \"hits\" ip saddr . udp dport vmap @udp_rules\n    meta l4proto tcp ip saddr . tcp dport vmap @tcp_rules\n"
        ));
        assert!(!Scenario::rules(1, Last::Block).nft_set("t", "x").unwrap().contains("tcp"));
        assert!(Scenario::table(10, 1, Last::Block).nft_set("t", "x").is_none());
    }
}
