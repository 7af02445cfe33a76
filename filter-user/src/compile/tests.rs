//! The compiler's tables, read back the way the XDP program reads them.

use std::net::IpAddr;

use super::*;
use filter_common::{FAMILY_V4, FAMILY_V6};

fn compiled(src: &str) -> Compiled {
    let rs = crate::rules::parse_str(src, "test.conf", std::path::Path::new(".")).expect("parses");
    compile(&rs).expect("compiles")
}

/// A packet as the classifier sees it.
#[derive(Clone, Copy)]
struct Pkt {
    proto: u8,
    src: &'static str,
    dst: &'static str,
    sport: u32,
    dport: u32,
}

const UDP: Pkt = Pkt { proto: 17, src: "192.0.2.1", dst: "198.51.100.1", sport: 1000, dport: 53 };

fn addr_class(lookup: &AddrLookup, a: &str) -> u32 {
    lookup.class_of(a.parse::<IpAddr>().unwrap()).expect("the field is used")
}

/// The deciding rule (its index in file order): the classifier's first match, evaluated
/// over the compiled tables like the data plane, mapped back through `order`.
fn first_match(c: &Compiled, p: Pkt) -> Option<usize> {
    let v6 = p.src.contains(':');
    let family = if v6 { FAMILY_V6 } else { FAMILY_V4 };
    let mut acc = [u64::MAX; filter_common::BITMAP_WORDS];
    let mut and = |f: u32, class: u32| {
        if c.uses(f) {
            for (a, w) in acc.iter_mut().zip(c.bitmaps[class as usize].words) {
                *a &= w;
            }
        }
    };
    and(field::IFACE, c.iface_miss_class);
    if c.uses(field::PROTO) {
        and(field::PROTO, c.proto.class_of(family * 256 + p.proto as u32));
    }
    if c.uses(field::SRC_ADDR) {
        and(field::SRC_ADDR, addr_class(&c.src, p.src));
    }
    if c.uses(field::DST_ADDR) {
        and(field::DST_ADDR, addr_class(&c.dst, p.dst));
    }
    if c.uses(field::SRC_PORT) {
        and(field::SRC_PORT, c.sport.class_of(p.sport));
    }
    if c.uses(field::DST_PORT) {
        and(field::DST_PORT, c.dport.class_of(p.dport));
    }
    (0..c.rules.len()).find(|&i| acc[i / 64] & (1 << (i % 64)) != 0).map(|bit| c.order[bit] as usize)
}

#[test]
fn nested_prefixes_follow_rule_order() {
    let c = compiled(
        "block in quick from 10.1.0.0/16\n\
         pass in quick from 10.0.0.0/8\n\
         block in quick from 10.1.2.0/24\n",
    );
    let at = |src| first_match(&c, Pkt { src, ..UDP });
    assert_eq!(at("10.1.2.3"), Some(0), "inside all three: the /16 rule comes first");
    assert_eq!(at("10.1.9.9"), Some(0));
    assert_eq!(at("10.2.0.1"), Some(1));
    assert_eq!(at("11.0.0.1"), None);
    assert_eq!(at("2001:db8::1"), None, "v4 prefixes never match v6");
}

#[test]
fn table_with_nested_entries_and_negation() {
    let c = compiled(
        "table <t> { 10.0.0.0/8, 10.9.0.0/16, 2001:db8::/32 }\n\
         block in quick from !<t>\n\
         pass in quick from 10.9.9.9\n\
         block in quick from <t>\n",
    );
    let at = |src| first_match(&c, Pkt { src, ..UDP });
    assert_eq!(at("192.0.2.1"), Some(0));
    assert_eq!(at("2001:db9::1"), Some(0), "negation holds for addresses of either family");
    assert_eq!(at("10.9.9.9"), Some(1));
    assert_eq!(at("10.9.9.8"), Some(2));
    assert_eq!(at("2001:db8::5"), Some(2));
}

#[test]
fn ports_ranges_and_lists() {
    let c = compiled(
        "pass in proto tcp to port { 80, 443, 8000:8080 }\n\
         block in proto udp from port 1:1023\n",
    );
    let tcp = |dport| first_match(&c, Pkt { proto: 6, dport, ..UDP });
    assert_eq!(tcp(80), Some(0));
    assert_eq!(tcp(8000), Some(0));
    assert_eq!(tcp(8080), Some(0));
    assert_eq!(tcp(8081), None);
    assert_eq!(tcp(PORT_NONE), None, "no ports (a later fragment) never matches a port list");
    let udp = |sport| first_match(&c, Pkt { sport, ..UDP });
    assert_eq!(udp(0), None);
    assert_eq!(udp(1), Some(1));
    assert_eq!(udp(1023), Some(1));
    assert_eq!(udp(1024), None);
    assert_eq!(c.dport.entries.len(), 1 + 8080 - 8000 + 2, "only keys off the default class are stored");
}

#[test]
fn unused_fields_have_no_tables() {
    let c = compiled("pass in proto udp\n");
    assert_eq!(c.used_fields, 1 << field::PROTO);
    assert!(
        c.sport.entries.is_empty()
            && c.src == AddrLookup::default()
            && c.vlan.entries.is_empty()
            && c.ifaces.is_empty()
    );
    assert_eq!(first_match(&c, UDP), Some(0));
    assert_eq!(first_match(&c, Pkt { proto: 6, ..UDP }), None);
}

#[test]
fn family_restricts_protocol_keys() {
    let c = compiled("pass in quick inet6 proto udp\nblock in quick inet\n");
    assert_eq!(first_match(&c, Pkt { src: "2001:db8::1", dst: "2001:db8::2", ..UDP }), Some(0));
    assert_eq!(first_match(&c, UDP), Some(1));
}

#[test]
fn redundant_prefixes_are_pruned() {
    // Both /24s say the same as the /8 around them, so only the /8 and the root stay.
    let c = compiled("table <t> { 10.0.0.0/8, 10.1.1.0/24, 10.2.2.0/24 }\nblock in from <t>\n");
    assert_eq!(c.src.v4_entries, 2);
    assert_eq!(c.src.dir4.len(), filter_common::dir::TOP_ENTRIES as usize, "no /16 needs a group");
    assert_eq!(first_match(&c, Pkt { src: "10.1.1.1", ..UDP }), Some(0));
    assert_eq!(first_match(&c, Pkt { src: "11.1.1.1", ..UDP }), None);
}

#[test]
fn repeated_rules_get_distinct_identities() {
    let c = compiled("pass in proto udp\npass in proto udp\npass in proto tcp label \"web\"\n");
    let keys: Vec<&str> = c.rules.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["pass in proto udp", "pass in proto udp#2", "web"]);
}

#[test]
fn too_many_rules_is_an_error_with_the_figures() {
    // The parser refuses rule 4097 with its position; the compiler still refuses a
    // ruleset built some other way.
    let mut rs = crate::rules::parse_str("pass in proto udp\n", "big.conf", std::path::Path::new(".")).unwrap();
    rs.rules = vec![rs.rules[0].clone(); MAX_RULES + 1];
    let e = compile(&rs).unwrap_err().to_string();
    assert_eq!(e, format!("the ruleset has {} rules; the limit is {MAX_RULES}", MAX_RULES + 1));
}

#[test]
fn last_match_decides_unless_quick() {
    // pf: the last matching rule decides; a matching `quick` rule decides at once.
    let c = compiled(
        "block in all\n\
         pass in proto udp no state\n\
         block in proto udp from 10.0.0.0/8\n\
         pass in quick proto udp from 10.1.0.0/16\n\
         block in quick proto udp from 10.1.2.0/24\n",
    );
    let at = |src| first_match(&c, Pkt { src, ..UDP });
    assert_eq!(at("192.0.2.1"), Some(1), "the later pass wins over the earlier block");
    assert_eq!(at("10.9.9.9"), Some(2), "the last matching rule");
    assert_eq!(at("10.1.2.3"), Some(3), "the first matching quick rule, even before a later quick one");
    assert_eq!(first_match(&c, Pkt { proto: 6, ..UDP }), Some(0));
    assert_eq!(c.order, [3, 4, 2, 1, 0], "quick rules in file order, then the others from the last");
    let texts: Vec<&str> = c.rules.iter().map(|r| r.text.as_str()).collect();
    assert_eq!(texts[0], "block in all", "rules (and their counters) keep the file's order");
}

#[test]
fn rules_without_direction_apply_both_ways() {
    let c = compiled("block in all\npass proto udp no state\npass out proto tcp\n");
    assert!(c.has_out_rules && c.uses(field::DIRECTION));
    let inbound = &c.bitmaps[c.dir_classes.0 as usize];
    let outbound = &c.bitmaps[c.dir_classes.1 as usize];
    let bits = |b: &RuleBitmap| (0..3).filter(|&i| b.words[0] & (1 << i) != 0).map(|i| c.order[i]).collect::<Vec<_>>();
    assert_eq!(bits(inbound), [1, 0]);
    assert_eq!(bits(outbound), [2, 1]);
}

#[test]
fn default_flags_constrain_tcp_only() {
    // `pass` keeps state with pf's implicit `flags S/SA`: a TCP packet matches only
    // when it opens a connection; other protocols are not constrained by the flags.
    let c = compiled("pass in all\n");
    let f = &c.tcp_flags;
    let class = |k| c.bitmaps[f.class_of(k) as usize].words[0] & 1 != 0;
    assert!(class(u32::from(filter_common::wire::TCP_SYN)));
    assert!(!class(u32::from(filter_common::wire::TCP_SYN | filter_common::wire::TCP_ACK)));
    assert!(!class(u32::from(filter_common::wire::TCP_ACK)));
    assert!(class(TCP_FLAGS_NONE), "not TCP: the flags do not apply");
    let tcp_only = compiled("pass in proto tcp\n");
    let none = tcp_only.bitmaps[tcp_only.tcp_flags.class_of(TCP_FLAGS_NONE) as usize].words[0];
    assert_eq!(none & 1, 0, "a TCP rule needs the TCP header to judge flags");
    assert!(!compiled("pass in all no state\n").uses(field::TCP_FLAGS));
    assert!(!compiled("pass in all flags any\n").uses(field::TCP_FLAGS));
    assert!(compiled("pass in all flags any\n").stateful);
}

/// Limits per source take `set limit src-nodes` nodes of 2 KiB each, allocated whole:
/// they count in the map memory, and a number of sources that would take more than
/// the limit is refused before anything loads.
#[test]
fn source_nodes_count_in_the_map_memory() {
    let limited = "pass in proto udp to port 53 keep state (max-src-states 5)\n";
    let small = compiled(&format!("set limit src-nodes 1000\n{limited}"));
    let nodes = 1000 * std::mem::size_of::<filter_common::SourceNode>() as u64;
    assert!(small.map_memory() >= nodes, "{} < {nodes}", small.map_memory());
    let unlimited = compiled("set limit src-nodes 1000\npass in proto udp to port 53 keep state\n");
    assert!(unlimited.map_memory() < nodes, "no nodes without limits");
    let rs = crate::rules::parse_str(
        &format!("set limit src-nodes 10000000\n{limited}"),
        "t.conf",
        std::path::Path::new("."),
    )
    .unwrap();
    let err = compile(&rs).unwrap_err().to_string();
    assert!(err.contains("MiB of map memory; the limit is 1024 MiB"), "{err}");
}
