//! End-to-end tests of the rule language through the public API.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use ipnet::IpNet;

use super::*;

fn parse(src: &str) -> Result<Ruleset, RulesError> {
    parse_str(src, "t.conf", Path::new("/nonexistent-base"))
}

/// The error message of a ruleset that must fail, as `file:line:col: message`.
fn err(src: &str) -> String {
    match parse(src) {
        Ok(r) => panic!("expected an error for {src:?}, got {r:?}"),
        Err(e) => e.to_string(),
    }
}

/// The only rule of a one-rule ruleset.
fn rule(src: &str) -> Rule {
    let mut rs = parse(src).unwrap_or_else(|e| panic!("{src:?}: {e}"));
    assert_eq!(rs.rules.len(), 1, "{src:?}");
    rs.rules.remove(0)
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn nets(list: &[&str]) -> Vec<IpNet> {
    list.iter().map(|s| net(s)).collect()
}

fn ports(list: &[(u16, u16)]) -> Option<Vec<PortRange>> {
    Some(list.iter().map(|&(lo, hi)| PortRange { lo, hi }).collect())
}

fn addrs(negated: bool, items: Vec<AddrItem>) -> AddrMatch {
    AddrMatch::List { negated, items }
}

fn pos(line: u32, col: u32) -> Pos {
    Pos { line, col }
}

/// pf's implicit `flags S/SA`.
const S_SA: TcpFlags = TcpFlags { set: 0x02, mask: 0x12 };

/// An inbound stateless rule, for comparisons with struct update syntax.
fn base(text: &str) -> Rule {
    Rule { direction: Direction::In, ..Rule::new(pos(1, 1), text.to_owned(), Action::Pass) }
}

/// A scratch directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("xdpwall-rules-test-{}-{n}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------- statements

#[test]
fn empty_ruleset_defaults_to_pass() {
    let rs = parse("# nothing here\n\n   \n").unwrap();
    assert_eq!(
        rs,
        Ruleset {
            default_action: Action::Pass,
            tables: Default::default(),
            rules: vec![],
            options: Default::default(),
        }
    );
}

#[test]
fn set_default() {
    assert_eq!(parse("set default block").unwrap().default_action, Action::Block);
    assert_eq!(parse("set default pass\n").unwrap().default_action, Action::Pass);
    assert_eq!(err("set default block\n\nset default pass"), "t.conf:3:1: `set default` is already given on line 1");
    assert_eq!(
        err("set defualt block"),
        "t.conf:1:5: expected `default`, `limit`, `timeout`, `log-rate`, `block-policy`, `skip` or a pf setting after `set`, found `defualt` (did you mean `default`?)"
    );
    assert_eq!(err("set default"), "t.conf:1:12: expected `pass` or `block` after `set default`, found end of line");
    assert_eq!(err("set default drop"), "t.conf:1:13: expected `pass` or `block` after `set default`, found `drop`");
    assert_eq!(
        err("set default block pass"),
        "t.conf:1:19: expected `log` or end of line after `set default pass|block`, found `pass`"
    );
    let rs = parse("set default block log\nset log-rate 20/s\nblock in log quick all\n").unwrap();
    assert!(rs.options.default_log && rs.rules[0].log);
    assert_eq!(rs.options.log_rate, Some(20));
    assert_eq!(err("set log-rate 20"), "t.conf:1:14: expected a rate like `100/s` after `set log-rate`, found `20`");
    assert_eq!(err("set log-rate 0/s"), "t.conf:1:14: log rate 0/s out of range 1-1000000 per second");
}

#[test]
fn unknown_statement() {
    assert_eq!(err("\n  frob all"), "t.conf:2:3: expected `pass`, `block`, `table`, `set` or `include`, found `frob`");
    assert_eq!(
        err("pas all"),
        "t.conf:1:1: expected `pass`, `block`, `table`, `set` or `include`, found `pas` (did you mean `pass`?)"
    );
    assert_eq!(err("{ pass }"), "t.conf:1:1: expected `pass`, `block`, `table`, `set` or `include`, found `{`");
}

// ---------------------------------------------------------------- rules

#[test]
fn minimal_rules() {
    // pf's defaults: both directions, and `pass` keeps state with `flags S/SA` on TCP.
    let pf_pass = |text| Rule { direction: Direction::Both, keep_state: true, tcp_flags: Some(S_SA), ..base(text) };
    assert_eq!(rule("pass"), pf_pass("pass"));
    assert_eq!(rule("pass all"), pf_pass("pass all"));
    assert_eq!(rule("block in quick all"), Rule { action: Action::Block, quick: true, ..base("block in quick all") });
    assert_eq!(rule("block all"), Rule { action: Action::Block, direction: Direction::Both, ..base("block all") });
    assert_eq!(rule("pass in all no state"), base("pass in all no state"));
    assert_eq!(rule("pass out all no state").direction, Direction::Out);
    assert_eq!(
        rule("pass in all flags any"),
        Rule { keep_state: true, ..base("pass in all flags any") },
        "`flags any` drops the default flags, not the state"
    );
    assert_eq!(rule("pass in proto udp").tcp_flags, None, "no TCP, no flags");
    assert_eq!(rule("pass in proto tcp keep state").tcp_flags, Some(S_SA));
    assert_eq!(rule("pass in proto tcp flags /SA keep state").tcp_flags, Some(TcpFlags { set: 0, mask: 0x12 }));
    assert!(rule("pass in proto tcp modulate state").keep_state);
    assert_eq!(
        err("pass in proto tcp keep state no state"),
        "t.conf:1:30: a rule has one state option (`keep`, `modulate` or `no state`)"
    );
    assert!(err("pass in proto tcp synproxy state").starts_with("t.conf:1:19: `synproxy state` is not supported"));
    assert_eq!(
        err("pass in no stat"),
        "t.conf:1:12: expected `state` after `no`, found `stat` (did you mean `state`?)"
    );
}

#[test]
fn header_parts() {
    assert_eq!(
        rule("pass in quick on eth0.100 inet6 proto { tcp, udp tcp 132 } all"),
        Rule {
            interface: Some("eth0.100".into()),
            family: Some(Family::Inet6),
            protocols: Some(vec![6, 17, 132]),
            quick: true,
            keep_state: true,
            tcp_flags: Some(S_SA),
            ..base("pass in quick on eth0.100 inet6 proto { tcp, udp tcp 132 } all")
        }
    );
    let r = rule("pass inet proto ipv6-icmp");
    assert_eq!(r.family, Some(Family::Inet));
    assert_eq!(r.protocols, Some(vec![58]));
    for (name, number) in [("tcp", 6), ("udp", 17), ("icmp", 1), ("icmp6", 58), ("sctp", 132), ("0", 0), ("255", 255)] {
        assert_eq!(rule(&format!("pass proto {name}")).protocols, Some(vec![number]), "{name}");
    }
}

#[test]
fn endpoints() {
    let r = rule("pass from 192.0.2.1 to !10.0.0.0/8");
    assert_eq!(r.from.addr, addrs(false, vec![AddrItem::Net(net("192.0.2.1/32"))]));
    assert_eq!(r.from.ports, None);
    assert_eq!(r.to.addr, addrs(true, vec![AddrItem::Net(net("10.0.0.0/8"))]));

    let rs = parse(
        "table <a> { 192.0.2.1 }\ntable <b> { 2001:db8::/32 }\n\
         pass from { <a>, 2001:db8::1 10.0.0.0/8, } to !{ <b> <a> }",
    )
    .unwrap();
    let r = &rs.rules[0];
    assert_eq!(
        r.from.addr,
        addrs(
            false,
            vec![AddrItem::Table("a".into()), AddrItem::Net(net("2001:db8::1/128")), AddrItem::Net(net("10.0.0.0/8")),]
        )
    );
    assert_eq!(r.to.addr, addrs(true, vec![AddrItem::Table("b".into()), AddrItem::Table("a".into())]));

    let rs = parse("table <t> { 10.0.0.0/8 }\npass from !<t> to any").unwrap();
    assert_eq!(rs.rules[0].from.addr, addrs(true, vec![AddrItem::Table("t".into())]));
    assert_eq!(rs.rules[0].to, Endpoint::default());
}

#[test]
fn ports_forms() {
    let r = rule("pass proto tcp from any port 1024:65535 to 10.0.0.1 port { 80, https 8000:8080 ssh, }");
    assert_eq!(r.from.addr, AddrMatch::Any);
    assert_eq!(r.from.ports, ports(&[(1024, 65535)]));
    assert_eq!(r.to.addr, addrs(false, vec![AddrItem::Net(net("10.0.0.1/32"))]));
    assert_eq!(r.to.ports, ports(&[(80, 80), (443, 443), (8000, 8080), (22, 22)]));

    let r = rule("pass proto udp from port domain to port 0");
    assert_eq!(r.from, Endpoint { addr: AddrMatch::Any, ports: ports(&[(53, 53)]) });
    assert_eq!(r.to, Endpoint { addr: AddrMatch::Any, ports: ports(&[(0, 0)]) });

    let r = rule("pass proto tcp to port 22:22");
    assert_eq!(r.to.ports, ports(&[(22, 22)]));

    let services = [
        ("ssh", 22),
        ("domain", 53),
        ("http", 80),
        ("https", 443),
        ("ntp", 123),
        ("smtp", 25),
        ("telnet", 23),
        ("ftp", 21),
        ("snmp", 161),
        ("bgp", 179),
        ("imap", 143),
        ("pop3", 110),
        ("submission", 587),
        ("ldap", 389),
        ("syslog", 514),
        ("bootps", 67),
        ("bootpc", 68),
    ];
    for (name, port) in services {
        let r = rule(&format!("pass proto {{ tcp udp sctp }} to port {name}"));
        assert_eq!(r.to.ports, ports(&[(port, port)]), "{name}");
    }
}

#[test]
fn options() {
    let r = rule("pass in proto tcp to port 22 flags S/SA vlan 4095 label \"ssh  in\"");
    assert_eq!(r.tcp_flags, Some(TcpFlags { set: 0x02, mask: 0x12 }));
    assert_eq!(r.vlan, Some(4095));
    assert_eq!(r.label.as_deref(), Some("ssh  in"));
    // Options in another order; `flags any` means no flags condition.
    let r = rule("pass proto tcp label \"a \\\"b\\\"\" vlan 0 flags any");
    assert_eq!(r.tcp_flags, None);
    assert_eq!(r.vlan, Some(0));
    assert_eq!(r.label.as_deref(), Some("a \"b\""));

    assert_eq!(rule("pass proto tcp flags FSRPAUEW/FSRPAUEW").tcp_flags, Some(TcpFlags { set: 0xff, mask: 0xff }));
    assert_eq!(rule("pass proto tcp flags /SAFR").tcp_flags, Some(TcpFlags { set: 0, mask: 0x17 }));
    for (letter, bit) in [('F', 1u8), ('S', 2), ('R', 4), ('P', 8), ('A', 16), ('U', 32), ('E', 64), ('W', 128)] {
        assert_eq!(
            rule(&format!("pass proto tcp flags {letter}/{letter}")).tcp_flags,
            Some(TcpFlags { set: bit, mask: bit })
        );
    }
}

#[test]
fn icmp_types() {
    let r = rule("pass proto icmp icmp-type echoreq code 0");
    assert_eq!(r.icmp, Some(IcmpMatch { icmp_type: 8, code: Some(0) }));
    assert_eq!(rule("pass proto icmp icmp-type 255").icmp, Some(IcmpMatch { icmp_type: 255, code: None }));
    let v4 = [
        ("echorep", 0),
        ("echo-reply", 0),
        ("unreach", 3),
        ("squench", 4),
        ("redir", 5),
        ("echoreq", 8),
        ("echo-request", 8),
        ("routeradv", 9),
        ("routersol", 10),
        ("timex", 11),
        ("paramprob", 12),
        ("timereq", 13),
        ("timerep", 14),
    ];
    for (name, t) in v4 {
        assert_eq!(rule(&format!("pass proto icmp icmp-type {name}")).icmp.unwrap().icmp_type, t, "{name}");
    }
    let v6 = [
        ("unreach", 1),
        ("toobig", 2),
        ("timex", 3),
        ("paramprob", 4),
        ("echoreq", 128),
        ("echo-request", 128),
        ("echorep", 129),
        ("echo-reply", 129),
        ("routersol", 133),
        ("routeradv", 134),
        ("neighbrsol", 135),
        ("neighbradv", 136),
        ("redir", 137),
    ];
    for (name, t) in v6 {
        assert_eq!(rule(&format!("pass proto icmp6 icmp6-type {name}")).icmp.unwrap().icmp_type, t, "{name}");
    }
    let r = rule("pass inet6 proto ipv6-icmp icmp6-type unreach code 4");
    assert_eq!(r.icmp, Some(IcmpMatch { icmp_type: 1, code: Some(4) }));
}

#[test]
fn rule_text_and_position() {
    let src = "# first\n\n  pass   in\tproto tcp \\\n      to port { 80,\n  443 }   # web\n\
               block from any label \"two  spaces\" # c\n";
    let rs = parse(src).unwrap();
    assert_eq!(rs.rules[0].pos, pos(3, 3));
    assert_eq!(rs.rules[0].text, "pass in proto tcp to port { 80, 443 }");
    assert_eq!(rs.rules[0].to.ports, ports(&[(80, 80), (443, 443)]));
    assert_eq!(rs.rules[1].pos, pos(6, 1));
    assert_eq!(rs.rules[1].text, "block from any label \"two  spaces\"");
    // Tokens written without spaces stay joined.
    assert_eq!(rule("pass proto tcp to port {80,443}").text, "pass proto tcp to port {80,443}");
}

#[test]
fn design_example_ruleset() {
    // DESIGN.md's example without the features that are not supported yet.
    let dir = TempDir::new("design");
    dir.write("bogons.txt", "# bogons\n0.0.0.0/8\n10.0.0.0/8\n\n100.64.0.0/10 # CGN\n0.0.0.0/8\n");
    let conf = dir.write(
        "xdpwall.conf",
        "# /etc/xdpwall/xdpwall.conf\n\
         set default block                      # policy when no rule matches\n\
         table <bogons> file \"bogons.txt\"       # one address or prefix per line, # comments\n\
         table <admins> { 192.0.2.10, 2001:db8::/64 }\n\
         \n\
         pass  in on eth0 proto tcp from <admins> to port 22\n\
         block in from <bogons>\n\
         pass  in proto tcp to port { 80, 443, 8000:8080 }\n\
         pass  in proto icmp icmp-type echo-request\n\
         pass  in proto udp from any port 53 to 10.0.0.0/8 label \"dns replies\"\n",
    );
    let rs = parse_file(&conf).unwrap();
    let bogons_path = dir.0.join("bogons.txt").display().to_string();
    let mut tables = std::collections::BTreeMap::new();
    tables.insert(
        "bogons".to_owned(),
        Table { entries: nets(&["0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10"]), file: Some(bogons_path), dynamic: false },
    );
    tables.insert(
        "admins".to_owned(),
        Table { entries: nets(&["192.0.2.10/32", "2001:db8::/64"]), file: None, dynamic: false },
    );
    let expected = Ruleset {
        default_action: Action::Block,
        options: Default::default(),
        tables,
        rules: vec![
            Rule {
                pos: pos(6, 1),
                interface: Some("eth0".into()),
                protocols: Some(vec![6]),
                from: Endpoint { addr: addrs(false, vec![AddrItem::Table("admins".into())]), ports: None },
                to: Endpoint { addr: AddrMatch::Any, ports: ports(&[(22, 22)]) },
                keep_state: true,
                tcp_flags: Some(S_SA),
                ..base("pass in on eth0 proto tcp from <admins> to port 22")
            },
            Rule {
                pos: pos(7, 1),
                action: Action::Block,
                from: Endpoint { addr: addrs(false, vec![AddrItem::Table("bogons".into())]), ports: None },
                ..base("block in from <bogons>")
            },
            Rule {
                pos: pos(8, 1),
                protocols: Some(vec![6]),
                to: Endpoint { addr: AddrMatch::Any, ports: ports(&[(80, 80), (443, 443), (8000, 8080)]) },
                keep_state: true,
                tcp_flags: Some(S_SA),
                ..base("pass in proto tcp to port { 80, 443, 8000:8080 }")
            },
            Rule {
                pos: pos(9, 1),
                protocols: Some(vec![1]),
                icmp: Some(IcmpMatch { icmp_type: 8, code: None }),
                keep_state: true,
                ..base("pass in proto icmp icmp-type echo-request")
            },
            Rule {
                pos: pos(10, 1),
                protocols: Some(vec![17]),
                from: Endpoint { addr: AddrMatch::Any, ports: ports(&[(53, 53)]) },
                to: Endpoint { addr: addrs(false, vec![AddrItem::Net(net("10.0.0.0/8"))]), ports: None },
                label: Some("dns replies".into()),
                keep_state: true,
                ..base("pass in proto udp from any port 53 to 10.0.0.0/8 label \"dns replies\"")
            },
        ],
    };
    assert_eq!(rs, expected);

    // JSON round trip.
    let json = serde_json::to_string_pretty(&rs).unwrap();
    let back: Ruleset = serde_json::from_str(&json).unwrap();
    assert_eq!(back, rs);
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["default_action"], "block");
    assert_eq!(value["tables"]["admins"]["entries"][1], "2001:db8::/64");
    assert_eq!(value["rules"][0]["from"]["addr"]["list"]["items"][0]["table"], "admins");
    assert_eq!(value["rules"][0]["to"]["addr"], "any");
}

#[test]
fn json_round_trip_of_every_field() {
    let src = "table <t> { 10.0.0.0/8 }\n\
               pass in quick on eth1 inet proto tcp from !{ <t>, 192.0.2.0/24 } port 1:2 \
               to 198.51.100.7 port { ssh 443 } flags S/SA vlan 12 label \"x\"\n\
               block inet6 proto icmp6 icmp6-type toobig code 0\n";
    let rs = parse(src).unwrap();
    let back: Ruleset = serde_json::from_str(&serde_json::to_string(&rs).unwrap()).unwrap();
    assert_eq!(back, rs);
}

// ---------------------------------------------------------------- tables

#[test]
fn inline_tables() {
    let rs =
        parse("table <a> { 192.0.2.10, 2001:db8::/64 192.0.2.10,\n   # comment\n  10.0.0.0/8 }\ntable <empty> { }\n")
            .unwrap();
    assert_eq!(
        rs.tables["a"],
        Table { entries: nets(&["192.0.2.10/32", "2001:db8::/64", "10.0.0.0/8"]), file: None, dynamic: false }
    );
    assert_eq!(rs.tables["empty"], Table { entries: vec![], file: None, dynamic: false });
}

#[test]
fn table_errors() {
    assert_eq!(
        err("table <a> { 1.2.3.4 }\n table <a> { 1.2.3.5 }"),
        "t.conf:2:8: table <a> is already defined on line 1"
    );
    assert_eq!(err("table <a> { 10.1.2.3/8 }"), "t.conf:1:13: 10.1.2.3/8 has host bits set; did you mean 10.0.0.0/8?");
    assert_eq!(
        err("table <a> { 10.0.0.0/33 }"),
        "t.conf:1:13: bad address or prefix `10.0.0.0/33`: prefix length 33 is more than 32"
    );
    assert_eq!(err("table <a> { <b> }"), "t.conf:1:13: expected an address, prefix or `}`, found `<b>`");
    assert_eq!(err("table <a> { foo }"), "t.conf:1:13: expected an address, prefix or `}`, found `foo`");
    assert_eq!(err("table <a> { 1.2.3.4,, }"), "t.conf:1:21: expected an address, prefix or `}`, found `,`");
    assert_eq!(err("table a { }"), "t.conf:1:7: expected a table name like `<name>` after `table`, found `a`");
    assert_eq!(
        err("table <a>"),
        "t.conf:1:10: expected `{`, `file`, `persist`, `const` or `counters` after the table name, found end of line"
    );
    assert_eq!(
        err("table <a> fiel \"x\""),
        "t.conf:1:11: expected `{`, `file`, `persist`, `const` or `counters` after the table name, found `fiel` (did you mean `file`?)"
    );
    assert_eq!(err("table <a> file x"), "t.conf:1:16: expected a quoted path after `file`, found `x`");
    assert_eq!(err("table <a> file \"\""), "t.conf:1:16: the table file path is empty");
    assert_eq!(err("table <a> { } x"), "t.conf:1:15: expected end of line after the table, found `x`");
    assert_eq!(err("table <a> {\n1.2.3.4\n"), "t.conf:1:11: this `{` is never closed; expected `}`");
}

#[test]
fn table_files() {
    let dir = TempDir::new("tables");
    dir.write("rel.txt", "10.0.0.0/8\n2001:db8::1\n10.0.0.0/8\n");
    let abs = dir.write("abs.txt", "# only a comment\n\n192.0.2.0/24   \n");
    let src =
        format!("table <rel> file \"rel.txt\"\ntable <abs> file \"{}\"\npass from <rel> to <abs>\n", abs.display());
    let rs = parse_str(&src, "mem.conf", &dir.0).unwrap();
    assert_eq!(
        rs.tables["rel"],
        Table {
            entries: nets(&["10.0.0.0/8", "2001:db8::1/128"]),
            file: Some(dir.0.join("rel.txt").display().to_string()),
            dynamic: false,
        }
    );
    assert_eq!(
        rs.tables["abs"],
        Table { entries: nets(&["192.0.2.0/24"]), file: Some(abs.display().to_string()), dynamic: false }
    );
}

#[test]
fn table_file_errors_name_the_table_file() {
    let dir = TempDir::new("tablerr");
    let bad = dir.write("bad.txt", "10.0.0.0/8\n# c\n\t192.0.2.1/24\n");
    let e = parse_str("table <b> file \"bad.txt\"", "mem.conf", &dir.0).unwrap_err();
    assert_eq!(
        e,
        RulesError {
            file: bad.display().to_string(),
            line: 3,
            col: 2,
            message: "192.0.2.1/24 has host bits set; did you mean 192.0.2.0/24?".into(),
        }
    );

    dir.write("utf.txt", b"10.0.0.0/8\n1.2.\xff\n");
    let e = parse_str("table <b> file \"utf.txt\"", "mem.conf", &dir.0).unwrap_err();
    assert_eq!(e.to_string(), format!("{}:2:5: the file is not valid UTF-8 text", dir.0.join("utf.txt").display()));

    let e = parse_str("\n table <b> file \"missing.txt\"", "mem.conf", &dir.0).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "mem.conf:2:17: cannot read table file `{}`: No such file or directory",
            dir.0.join("missing.txt").display()
        )
    );
}

#[test]
fn parse_file_resolves_tables_next_to_the_ruleset() {
    let dir = TempDir::new("parsefile");
    std::fs::create_dir_all(dir.0.join("sub")).unwrap();
    dir.write("sub/list.txt", "2001:db8::/32\n");
    let conf = dir.write("sub/x.conf", "table <l> file \"list.txt\"\nblock from <l>\n");
    let rs = parse_file(&conf).unwrap();
    assert_eq!(rs.tables["l"].entries, nets(&["2001:db8::/32"]));
}

#[test]
fn unreadable_ruleset() {
    let dir = TempDir::new("unreadable");
    let missing = dir.0.join("nope.conf");
    let e = parse_file(&missing).unwrap_err();
    assert_eq!(e.to_string(), format!("{}: cannot read ruleset: No such file or directory", missing.display()));
    let bad = dir.write("bad.conf", b"pass\nblock \xc3(\n");
    assert_eq!(
        parse_file(&bad).unwrap_err().to_string(),
        format!("{}:2:7: the file is not valid UTF-8 text", bad.display())
    );
}

#[test]
fn tables_may_be_defined_after_use() {
    let rs = parse("pass from <late>\ntable <late> { 192.0.2.1 }").unwrap();
    assert_eq!(rs.rules[0].from.addr, addrs(false, vec![AddrItem::Table("late".into())]));
}

// ---------------------------------------------------------------- validation

#[test]
fn unknown_table() {
    assert_eq!(
        err("table <foo> { 1.2.3.4 }\npass from <foo> to { 10.0.0.0/8, <bar> }"),
        "t.conf:2:34: unknown table <bar>"
    );
    assert_eq!(err("block to !<foo>"), "t.conf:1:11: unknown table <foo>");
}

#[test]
fn ports_need_a_protocol_with_ports() {
    assert_eq!(err("pass to port 22"), "t.conf:1:9: port needs `proto tcp`, `udp` or `sctp`");
    assert_eq!(err("pass proto icmp from any port 22"), "t.conf:1:26: port needs `proto tcp`, `udp` or `sctp`");
    assert_eq!(
        err("pass proto { tcp icmp } from 10.0.0.1 to any port 22"),
        "t.conf:1:46: port needs `proto tcp`, `udp` or `sctp`"
    );
    // The leftmost problem is reported.
    assert_eq!(err("pass proto 47 from port 1 to port 2"), "t.conf:1:20: port needs `proto tcp`, `udp` or `sctp`");
    assert!(parse("pass proto { tcp udp sctp } to port 5").is_ok());
}

#[test]
fn flags_need_tcp() {
    assert_eq!(err("pass flags S/SA"), "t.conf:1:6: `flags` needs `proto tcp`");
    assert_eq!(err("pass proto { tcp, udp } flags S/SA"), "t.conf:1:25: `flags` needs `proto tcp`");
    assert!(parse("pass proto udp flags any").is_ok());
}

#[test]
fn icmp_types_need_their_protocol() {
    assert_eq!(err("pass icmp-type echoreq"), "t.conf:1:6: `icmp-type` needs `proto icmp`");
    assert_eq!(err("pass proto icmp6 icmp-type echoreq"), "t.conf:1:18: `icmp-type` needs `proto icmp`");
    assert_eq!(err("pass proto icmp icmp6-type echoreq"), "t.conf:1:17: `icmp6-type` needs `proto icmp6`");
    assert_eq!(err("pass proto { icmp icmp6 } icmp6-type 1"), "t.conf:1:27: `icmp6-type` needs `proto icmp6`");
}

#[test]
fn address_family_must_fit_the_rule() {
    assert_eq!(
        err("pass inet from 2001:db8::1"),
        "t.conf:1:16: 2001:db8::1 is an IPv6 address but the rule says `inet`"
    );
    assert_eq!(
        err("pass inet6 from any to !{ 2001:db8::/32, 10.0.0.0/8 }"),
        "t.conf:1:42: 10.0.0.0/8 is an IPv4 prefix but the rule says `inet6`"
    );
    // Tables may hold either family: no error even when every entry is excluded.
    assert!(parse("table <v4> { 10.0.0.0/8 }\npass inet6 from <v4>").is_ok());
    assert!(parse("pass inet6 from 2001:db8::/32 to ::1").is_ok());
}

#[test]
fn out_of_range_numbers() {
    assert_eq!(err("pass proto tcp to port 70000"), "t.conf:1:24: port 70000 out of range 0-65535");
    assert_eq!(
        err("pass proto tcp to port { 80, 1000:99999999999999999999999 }"),
        "t.conf:1:35: port 99999999999999999999999 out of range 0-65535"
    );
    assert_eq!(err("pass proto 256"), "t.conf:1:12: protocol 256 out of range 0-255");
    assert_eq!(err("pass vlan 4096"), "t.conf:1:11: vlan 4096 out of range 0-4095");
    assert_eq!(err("pass proto icmp icmp-type 256"), "t.conf:1:27: ICMP type 256 out of range 0-255");
    assert_eq!(err("pass proto icmp6 icmp6-type 1 code 300"), "t.conf:1:36: ICMPv6 code 300 out of range 0-255");
}

#[test]
fn syntax_errors_in_rules() {
    assert_eq!(
        err("pass from 10.0.0.1 frmo any"),
        "t.conf:1:20: expected `port`, `to`, an option or end of rule, found `frmo`"
    );
    assert_eq!(
        err("pass in frmo any"),
        "t.conf:1:9: expected `quick`, `on`, `inet`, `inet6`, `proto`, `all`, `from`, `to`, an option or end of rule, found `frmo` (did you mean `from`?)"
    );
    assert_eq!(
        err("pass proto tcp to port 22 from any"),
        "t.conf:1:27: expected an option or end of rule, found `from`"
    );
    assert_eq!(err("pass all from any"), "t.conf:1:10: expected an option or end of rule, found `from`");
    assert_eq!(
        err("pass inet in"),
        "t.conf:1:11: expected `proto`, `all`, `from`, `to`, an option or end of rule, found `in`"
    );
    assert_eq!(
        err("pass from"),
        "t.conf:1:10: expected an address, prefix, `<table>`, `{`, `!`, `any` or `port` after `from`, found end of line"
    );
    assert_eq!(
        err("pass from \\\n   ayn"),
        "t.conf:2:4: expected an address, prefix, `<table>`, `{`, `!`, `any` or `port` after `from`, found `ayn` (did you mean `any`?)"
    );
    assert_eq!(
        err("pass to !any"),
        "t.conf:1:10: expected an address, prefix, `<table>` or `{` after `!`, found `any`"
    );
    assert_eq!(
        err("pass to { 10.0.0.1, !10.0.0.2 }"),
        "t.conf:1:21: `!` can only negate a whole address list, written `!{ ... }`"
    );
    assert_eq!(err("pass to { }"), "t.conf:1:11: expected an address, prefix or `<table>`, found `}`");
    assert_eq!(
        err("pass to { 10.0.0.1 any }"),
        "t.conf:1:20: expected `}` or an address, prefix or `<table>`, found `any`"
    );
    assert_eq!(
        err("pass from 10.0.0.0/33"),
        "t.conf:1:11: bad address or prefix `10.0.0.0/33`: prefix length 33 is more than 32"
    );
    assert_eq!(err("pass from 10.1.2.3/8"), "t.conf:1:11: 10.1.2.3/8 has host bits set; did you mean 10.0.0.0/8?");
    assert_eq!(
        err("pass proto"),
        "t.conf:1:11: expected a protocol (`tcp`, `udp`, `icmp`, `icmp6`, `sctp` or a number 0-255) or `{` after `proto`, found end of line"
    );
    assert_eq!(
        err("pass proto tpc"),
        "t.conf:1:12: expected a protocol (`tcp`, `udp`, `icmp`, `icmp6`, `sctp` or a number 0-255) or `{` after `proto`, found `tpc` (did you mean `tcp`?)"
    );
    assert_eq!(
        err("pass proto { }"),
        "t.conf:1:14: expected a protocol (`tcp`, `udp`, `icmp`, `icmp6`, `sctp` or a number 0-255), found `}`"
    );
    assert_eq!(err("pass on"), "t.conf:1:8: expected an interface name after `on`, found end of line");
    assert_eq!(err("pass on from"), "t.conf:1:9: expected an interface name after `on`, found `from`");
    assert_eq!(
        err("pass on abcdefghijklmnop"),
        "t.conf:1:9: interface name `abcdefghijklmnop` is too long (at most 15 characters)"
    );
    assert_eq!(
        err("pass } "),
        "t.conf:1:6: expected `in`, `out`, `quick`, `on`, `inet`, `inet6`, `proto`, `all`, `from`, `to`, an option or end of rule, found `}`"
    );
}

#[test]
fn port_syntax_errors() {
    assert_eq!(
        err("pass proto tcp to port"),
        "t.conf:1:23: expected a port, a port range like `8000:8080` or `{` after `port`, found end of line"
    );
    assert_eq!(
        err("pass proto tcp to port htps"),
        "t.conf:1:24: expected a port number 0-65535 or a service name like `ssh`, found `htps` (did you mean `https`?)"
    );
    assert_eq!(
        err("pass proto tcp to port 8080:8000"),
        "t.conf:1:24: bad port range `8080:8000`: 8080 is greater than 8000"
    );
    assert_eq!(
        err("pass proto tcp to port 80:"),
        "t.conf:1:24: bad port range `80:`: it needs a first and a last port, like `8000:8080`"
    );
    assert_eq!(
        err("pass proto tcp to port 80:http:x"),
        "t.conf:1:27: expected a port number 0-65535 or a service name like `ssh`, found `http:x` (did you mean `http`?)"
    );
    assert_eq!(
        err("pass proto tcp to port { 22 <t> }"),
        "t.conf:1:29: expected `}` or a port or port range, found `<t>`"
    );
}

#[test]
fn option_errors() {
    assert_eq!(
        err("pass proto tcp flags S"),
        "t.conf:1:22: expected flags like `S/SA`, `/SA` or `any` after `flags`, found `S`"
    );
    assert_eq!(
        err("pass proto tcp flags S/Sx"),
        "t.conf:1:25: unknown TCP flag `x`; the flags are F, S, R, P, A, U, E and W"
    );
    assert_eq!(
        err("pass proto tcp flags s/SA"),
        "t.conf:1:22: unknown TCP flag `s`; the flags are F, S, R, P, A, U, E and W"
    );
    assert_eq!(
        err("pass proto tcp flags SA/S"),
        "t.conf:1:22: bad flags `SA/S`: `A` is in the set but not in the mask `S`"
    );
    assert_eq!(err("pass proto tcp flags S/"), "t.conf:1:22: bad flags `S/`: the mask after `/` is empty");
    assert_eq!(
        err("pass proto icmp icmp-type toobig"),
        "t.conf:1:27: `toobig` is an ICMPv6 type name; use it with `icmp6-type`"
    );
    assert_eq!(
        err("pass proto icmp icmp-type echorequest"),
        "t.conf:1:27: expected an ICMP type name like `echoreq` or a number 0-255, found `echorequest` (did you mean `echo-request`?)"
    );
    assert_eq!(
        err("pass proto icmp icmp-type 8 code"),
        "t.conf:1:33: expected an ICMP code 0-255 after `code`, found end of line"
    );
    assert_eq!(
        err("pass proto icmp icmp-type 8 icmp6-type 1"),
        "t.conf:1:29: only one `icmp-type` or `icmp6-type` is allowed in a rule"
    );
    assert_eq!(err("pass vlan x"), "t.conf:1:11: expected a VLAN id 0-4095 after `vlan`, found `x`");
    assert_eq!(err("pass vlan 1 vlan 2"), "t.conf:1:13: `vlan` is given twice in this rule");
    assert_eq!(err("pass label web"), "t.conf:1:12: expected a quoted label like `\"web\"` after `label`, found `web`");
    assert_eq!(
        err("pass keep stat"),
        "t.conf:1:11: expected `state` after `keep`, found `stat` (did you mean `state`?)"
    );
    assert_eq!(err("pass label \"x\" frmo"), "t.conf:1:16: expected an option or end of rule, found `frmo`");
    assert_eq!(
        err("pass label \"x"),
        "t.conf:1:12: this string is never closed; expected `\"` before the end of the line"
    );
}

#[test]
fn log_and_option_checks() {
    // `log` is accepted after the direction (pf) and among the options.
    assert!(rule("block in from any log").log);
    assert!(rule("block in log quick all").log);
    // Syntax and validation errors.
    assert_eq!(err("pass keep state vlan 9999"), "t.conf:1:22: vlan 9999 out of range 0-4095");
    assert_eq!(err("pass keep state flags S/SA"), "t.conf:1:17: `flags` needs `proto tcp`");
    assert_eq!(err("pass log log"), "t.conf:1:10: `log` is given twice in this rule");
}

#[test]
fn rate_syntax_errors() {
    assert_eq!(err("pass rate 10"), "t.conf:1:11: expected a rate like `10/s` after `rate`, found `10`");
    assert_eq!(
        err("pass rate 10/w"),
        "t.conf:1:14: unknown rate unit `w`; rates are per second, minute, hour or day: `10/s`, `/m`, `/h`, `/d`"
    );
    assert_eq!(err("pass rate 0/s"), "t.conf:1:11: rate 0/s out of range 1-1000000000 per second");
    assert_eq!(
        err("pass rate 5/s burst"),
        "t.conf:1:20: expected a burst size (packets) after `burst`, found end of line"
    );
    assert_eq!(err("pass rate 5/s burst 2 burst 3"), "t.conf:1:23: expected an option or end of rule, found `burst`");
    assert_eq!(
        err("pass rate 5/s max-pkt-rate 5/1"),
        "t.conf:1:15: only one `rate` or `max-pkt-rate` is allowed in a rule"
    );
    assert_eq!(
        err("pass max-pkt-rate 5"),
        "t.conf:1:19: expected a rate like `100/10` (packets/seconds) after `max-pkt-rate`, found `5`"
    );
    assert_eq!(err("pass max-pkt-rate 5/0"), "t.conf:1:21: seconds 0 out of range 1-86400");
    assert_eq!(
        err("pass rate 5/s per-source mask 24"),
        "t.conf:1:31: expected an IPv4 prefix length like `/24` after `mask`, found `24`"
    );
    assert_eq!(err("pass rate 5/s per-source mask /33"), "t.conf:1:31: prefix length /33 out of range 1-32");
    assert_eq!(err("pass rate 5/s per-source mask /24 /129"), "t.conf:1:35: prefix length /129 out of range 1-128");
    let many: String =
        (0..=filter_common::MAX_RATE_RULES).map(|i| format!("pass proto udp to port {i} rate 1/s\n")).collect();
    assert_eq!(err(&many), "t.conf:33:27: this is rule 33 with a rate limit; a ruleset holds at most 32");
}

#[test]
fn dynamic_tables_and_overload() {
    let rs = parse(
        "table <f> persist\nblock in quick from <f>\npass in quick proto udp rate 5/s per-source overload <f> for 60\n",
    )
    .unwrap();
    assert!(rs.tables["f"].dynamic && rs.tables["f"].entries.is_empty());
    assert_eq!(
        rs.rules[1].overload,
        Some(crate::rules::Overload { table: "f".into(), secs: 60, flush: crate::rules::Flush::None })
    );
    assert_eq!(
        err("table <f> persist\npass in quick proto udp rate 5/s overload <f>"),
        "t.conf:2:34: `overload` needs what judges a source: `max-src-conn`, `max-src-conn-rate` or a per-source rate (`rate N/s per-source`)"
    );
    assert_eq!(
        err("table <s> { 10.0.0.1 }\npass in quick proto udp rate 5/s per-source overload <s>"),
        "t.conf:2:1: `overload <s>` needs `table <s> persist`"
    );
    assert_eq!(
        err("table <f> persist\npass in quick to <f>"),
        "t.conf:2:1: a `persist` table can only be a rule's `from` (the data plane keeps sources)"
    );
    assert_eq!(
        err("table <f> persist\npass in quick from { <f>, 10.0.0.1 }"),
        "t.conf:2:1: a `persist` table must be the rule's whole `from`, not part of a list"
    );
}

#[test]
fn rates_parse_into_the_rule() {
    use crate::rules::{Rate, SourceMask};
    let r = rule("pass in quick proto icmp rate 10/s");
    assert_eq!(r.rate, Some(Rate { packets: 10, seconds: 1, burst: 10, per_source: None }));
    assert_eq!(r.rate.unwrap().interval_ns(), 100_000_000);
    assert_eq!(r.rate.unwrap().tolerance_ns(), 900_000_000);
    let r = rule("pass in quick proto udp rate 5/m per-source burst 2");
    assert_eq!(
        r.rate,
        Some(Rate { packets: 5, seconds: 60, burst: 2, per_source: Some(SourceMask { v4: 32, v6: 64 }) })
    );
    let r = rule("pass in quick proto udp rate 100/s burst 20 per-source mask /24 /48");
    assert_eq!(r.rate.unwrap().per_source, Some(SourceMask { v4: 24, v6: 48 }));
    let r = rule("pass in quick proto udp max-pkt-rate 100/10");
    assert_eq!(r.rate, Some(Rate { packets: 100, seconds: 10, burst: 100, per_source: None }));
    let rs = crate::rules::parse_str("set limit src-nodes 500\npass in quick all\n", "t.conf", Path::new(".")).unwrap();
    assert_eq!(rs.options.src_nodes, Some(500));
}

#[test]
fn errors_point_at_the_right_line_across_continuations() {
    let src = "set default block\n\
               pass in \\\n\
               \x20   proto tcp \\\n\
               \x20   to port 70000\n";
    assert_eq!(err(src), "t.conf:4:13: port 70000 out of range 0-65535");
    let src = "pass in proto tcp to port {\n  22,\n  99999\n}\n";
    assert_eq!(err(src), "t.conf:3:3: port 99999 out of range 0-65535");
}

#[test]
fn error_display_and_fields() {
    let e = parse_str("pass frob", "rules/main.conf", Path::new(".")).unwrap_err();
    assert_eq!(e.file, "rules/main.conf");
    assert_eq!((e.line, e.col), (1, 6));
    assert_eq!(e.pos(), pos(1, 6));
    assert_eq!(e.to_string(), format!("rules/main.conf:1:6: {}", e.message));
}

// ---------------------------------------------------------------- speed

/// Times a 1,000,000-line table file. Run with
/// `cargo test --release -- --ignored --nocapture million_line_table_file`.
#[test]
#[ignore]
fn million_line_table_file() {
    use std::fmt::Write;
    let dir = TempDir::new("million");
    let mut text = String::with_capacity(24_000_000);
    text.push_str("# a million entries\n");
    for i in 0u32..1_000_000 {
        if i % 3 == 0 {
            let a = i.to_be_bytes();
            let _ = writeln!(text, "{}.{}.{}.0/24", 20 + a[1], a[2], a[3]);
        } else if i % 3 == 1 {
            let _ = writeln!(text, "{}  # host", std::net::Ipv4Addr::from(0x0b00_0000 + i));
        } else {
            let _ = writeln!(text, "2001:db8:{:x}:{:x}::/64", i >> 16, i & 0xffff);
        }
    }
    dir.write("big.txt", &text);
    let conf = dir.write("big.conf", "table <big> file \"big.txt\"\nblock from <big>\n");
    let start = std::time::Instant::now();
    let rs = parse_file(&conf).unwrap();
    let elapsed = start.elapsed();
    assert_eq!(rs.tables["big"].entries.len(), 1_000_000);
    println!("parsed a 1,000,000-line table file ({} bytes) in {elapsed:?}", text.len());
}

#[test]
fn state_rules_and_settings() {
    let rs = parse(
        "set limit states 5000\nset timeout tcp.established 3600\nset timeout udp.first 5\n\
         pass out proto tcp keep state\npass in proto udp to port 53 keep state\n",
    )
    .unwrap();
    assert_eq!(rs.options.state_limit, Some(5000));
    assert_eq!(rs.options.timeout("tcp.established"), 3600);
    assert_eq!(rs.options.timeout("udp.first"), 5);
    assert_eq!(rs.options.timeout("tcp.first"), 120, "unset timeouts keep pf's defaults");
    assert_eq!(rs.rules[0].direction, Direction::Out);
    assert!(rs.rules[0].keep_state && rs.rules[1].keep_state);
    assert_eq!(
        err("block in proto tcp keep state"),
        "t.conf:1:20: `keep state` needs `pass`: a blocked packet opens no flow"
    );
    assert_eq!(err("set limit states 0"), "t.conf:1:18: 0 out of range 1-10000000");
    assert_eq!(
        err("set limit flows 10"),
        "t.conf:1:11: expected `states` or `src-nodes` after `set limit`, found `flows`"
    );
    assert_eq!(
        err("set timeout tcp.establisehd 10"),
        "t.conf:1:13: expected a timeout name (tcp.first, tcp.opening, tcp.established, tcp.closing, tcp.finwait, tcp.closed, udp.first, udp.multiple, icmp.first) after `set timeout`, found `tcp.establisehd` (did you mean `tcp.established`?)"
    );
    assert_eq!(
        err("set tiemout udp.first 1"),
        "t.conf:1:5: expected `default`, `limit`, `timeout`, `log-rate`, `block-policy`, `skip` or a pf setting after `set`, found `tiemout` (did you mean `timeout`?)"
    );
}

// ---------------------------------------------------------------- bounded input

#[test]
fn limits_are_reported_at_the_rule_or_table_that_crosses_them() {
    let max = filter_common::MAX_RULES;
    let src = format!("set default block\n{}", "pass in proto udp\n".repeat(max));
    assert_eq!(parse(&src).unwrap().rules.len(), max);
    assert_eq!(
        err(&format!("{src}  block in all\n")),
        format!("t.conf:{}:3: this is rule 4097; a ruleset holds at most 4096 rules", max + 2)
    );

    let limit = crate::compile::MAX_TABLE_ENTRIES;
    let entries: Vec<String> =
        (0..=limit as u32).map(|i| std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string()).collect();
    let src = format!("pass in all\n\ntable <big> {{ {} }}\n", entries.join(", "));
    assert_eq!(err(&src), "t.conf:3:7: table <big> has 1000001 distinct entries; a table holds at most 1000000");
    // Duplicates do not count.
    let src = format!("table <big> {{ {}, 10.0.0.0 }}\n", entries[..limit].join(", "));
    assert_eq!(parse(&src).unwrap().tables["big"].entries.len(), limit);

    let dir = TempDir::new("bigtable");
    dir.write("big.txt", entries.join("\n"));
    let e = parse_str("pass in all\n table <big> file \"big.txt\"", "mem.conf", &dir.0).unwrap_err();
    assert_eq!(
        e.to_string(),
        "mem.conf:2:8: table <big> has more than 1000000 distinct entries in its file; a table holds at most 1000000"
    );
}

#[test]
fn labels_are_short_and_unique() {
    let label = "l".repeat(MAX_LABEL);
    assert_eq!(rule(&format!("pass label \"{label}\"")).label, Some(label.clone()));
    assert_eq!(
        err(&format!("pass label \"{label}é\"")),
        "t.conf:1:12: this label is 65 bytes long; labels are at most 63 bytes"
    );
    assert_eq!(
        err("pass in proto udp label \"dns\"\npass in proto tcp label \"web\"\n\nblock in label \"dns\""),
        "t.conf:4:16: label \"dns\" is already used on line 1; labels name one rule each"
    );
    // The same text without labels stays allowed (counters key on text + repeat).
    assert_eq!(parse("pass in all\npass in all\n").unwrap().rules.len(), 2);
}

#[test]
fn control_bytes_are_named_not_suggested() {
    assert_eq!(
        err("pass in proto tcp\0 from any"),
        "t.conf:1:18: unexpected control character U+0000 (NUL); a ruleset is plain text"
    );
    assert_eq!(
        parse_bytes(b"pass in all\n\xff", "b.conf", Path::new(".")).unwrap_err().to_string(),
        "b.conf:2:1: the file is not valid UTF-8 text"
    );
}

#[test]
fn a_file_that_is_not_a_ruleset_is_quoted_briefly() {
    assert_eq!(
        err("root:x:0:0:topsecret-topsecret:/root:/bin/bash\nmore"),
        "t.conf:1:1: expected `pass`, `block`, `table`, `set` or `include`, found `root:x:0:0:topse…`"
    );
    assert_eq!(
        err("\"a quoted secret that goes on\""),
        "t.conf:1:1: expected `pass`, `block`, `table`, `set` or `include`, found `\"a quoted secret…`"
    );
    // A typo is still recognised.
    assert_eq!(
        err("# x\npas in all"),
        "t.conf:2:1: expected `pass`, `block`, `table`, `set` or `include`, found `pas` (did you mean `pass`?)"
    );
}

#[test]
fn long_words_get_no_suggestion() {
    let word = "x".repeat(MAX_WORD);
    assert_eq!(
        err(&format!("pass in {word}")),
        format!(
            "t.conf:1:9: expected `quick`, `on`, `inet`, `inet6`, `proto`, `all`, `from`, `to`, an option or end of rule, found `{}…`",
            "x".repeat(44)
        )
    );
    assert_eq!(
        err(&format!("pass in {word}x")),
        "t.conf:1:9: this word is longer than 256 bytes; no keyword, number or address is that long"
    );
}

#[test]
fn rulesets_without_rules_are_refused_on_request() {
    for (src, effect) in [
        ("", "pass every packet"),
        ("# only a comment\n\n", "pass every packet"),
        ("set default block\ntable <t> { 10.0.0.0/8 }\n", "block every inbound packet"),
    ] {
        let rs = parse(src).unwrap();
        assert_eq!(
            require_rules(&rs, "e.conf").unwrap_err().to_string(),
            format!(
                "e.conf: the ruleset has no rules (it is empty or holds only comments, settings and tables), so it would {effect}; use --allow-empty if that is what you want"
            )
        );
    }
    assert!(require_rules(&parse("block in all").unwrap(), "e.conf").is_ok());
}

#[test]
fn oversized_and_special_files_are_refused() {
    let dir = TempDir::new("special");
    let big = dir.0.join("big.conf");
    // Sparse: no disk space, and the size check comes before any read.
    std::fs::File::create(&big).unwrap().set_len(MAX_RULESET_BYTES + 1).unwrap();
    assert_eq!(
        parse_file(&big).unwrap_err().to_string(),
        format!("{}: cannot read ruleset: it is 16777217 bytes; the limit is 16 MiB", big.display())
    );
    let table = dir.0.join("big.txt");
    std::fs::File::create(&table).unwrap().set_len(MAX_TABLE_FILE_BYTES + 1).unwrap();
    assert_eq!(
        parse_str("table <t> file \"big.txt\"", "m.conf", &dir.0).unwrap_err().to_string(),
        format!(
            "m.conf:1:16: cannot read table file `{}`: it is 134217729 bytes; the limit is 128 MiB",
            table.display()
        )
    );
    assert_eq!(
        parse_file(Path::new("/dev/zero")).unwrap_err().to_string(),
        "/dev/zero: cannot read ruleset: it is a character device, not a regular file"
    );
    assert_eq!(
        parse_str("table <t> file \"/dev/zero\"", "m.conf", &dir.0).unwrap_err().to_string(),
        "m.conf:1:16: cannot read table file `/dev/zero`: it is a character device, not a regular file"
    );
    assert_eq!(
        parse_file(&dir.0).unwrap_err().to_string(),
        format!("{}: cannot read ruleset: it is a directory, not a regular file", dir.0.display())
    );
}

// ---------------------------------------------------------------- pf.conf subset

fn parsed_with(src: &str, skip_unsupported: bool) -> Result<Parsed, RulesError> {
    let files = TableFiles { base_dir: Path::new("/nonexistent-base"), confined: false };
    parser::parse_full(src, "t.conf", files, ParseOptions { skip_unsupported })
}

#[test]
fn macros_expand_in_words_lists_and_other_macros() {
    let rs = parse(
        "ext_if = \"eth0\"\nint_if=\"eth1\"\nall = \"{\" $ext_if $int_if \"}\"\n\
         svc = \"{ ssh, 80 }\"\nhost = \"192.0.2.7\"\n\
         pass in on $all proto tcp to $host port $svc\n",
    )
    .unwrap();
    let r = &rs.rules[0];
    assert_eq!(r.interfaces().collect::<Vec<_>>(), ["eth0", "eth1"]);
    assert_eq!(r.to.ports, ports(&[(22, 22), (80, 80)]));
    assert_eq!(r.to.addr, addrs(false, vec![AddrItem::Net(net("192.0.2.7/32"))]));
    assert_eq!(r.text, "pass in on { eth0 eth1 } proto tcp to 192.0.2.7 port { ssh, 80 }");
    assert_eq!(
        err("pass in on $nope\n"),
        "t.conf:1:12: macro `$nope` is not defined (define it before its use: `nope = \"...\"`)"
    );
    assert_eq!(err("p = \"70000\"\npass in proto tcp to port $p\n"), "t.conf:2:27: port 70000 out of range 0-65535");
    assert_eq!(err("1x = \"a\"\n"), "t.conf:1:1: bad macro name `1x`: a macro name is letters, digits and `_`");
    // Doubling definitions stop at the value limit instead of taking memory.
    let mut src = String::from("m0 = \"0123456789abcdef\"\n");
    for i in 1..20 {
        src.push_str(&format!("m{i} = $m{} $m{}\n", i - 1, i - 1));
    }
    assert!(err(&src).ends_with(&format!("is longer than {MAX_MACRO_VALUE} bytes")), "{}", err(&src));
    // A few bytes of `$big` words (each 16 strings of 4000 bytes) cannot expand to
    // gigabytes.
    let src = format!(
        "a0 = \"\\\"{}\\\"\"\na1 = $a0 $a0\na2 = $a1 $a1\na3 = $a2 $a2\nbig = $a3 $a3\npass in all label {}\n",
        "x".repeat(4000),
        "$big ".repeat(600)
    );
    let e = err(&src);
    assert!(
        e.starts_with("t.conf:6:") && e.ends_with(": macros expand to more than 33554432 bytes in this ruleset"),
        "{e}"
    );
}

#[test]
fn pf_port_operators() {
    let p = |op: &str| rule(&format!("pass in proto tcp to port {op} no state")).to.ports.unwrap();
    let r = |lo, hi| PortRange { lo, hi };
    assert_eq!(p("= ssh"), [r(22, 22)]);
    assert_eq!(p("!= 22"), [r(0, 21), r(23, 65535)]);
    assert_eq!(p("< 1024"), [r(0, 1023)]);
    assert_eq!(p("<= 1024"), [r(0, 1024)]);
    assert_eq!(p("> 1023"), [r(1024, 65535)]);
    assert_eq!(p(">= 1024"), [r(1024, 65535)]);
    assert_eq!(p("6000 >< 6010"), [r(6001, 6009)]);
    assert_eq!(p("6000 <> 6010"), [r(0, 5999), r(6011, 65535)]);
    assert_eq!(p("{ = 53, > 65000, 80:81 }"), [r(53, 53), r(65001, 65535), r(80, 81)]);
    assert_eq!(p("!= 0"), [r(1, 65535)]);
    assert_eq!(err("pass in proto tcp to port < 0"), "t.conf:1:27: this port condition matches no port");
    assert_eq!(err("pass in proto tcp to port 5 >< 6"), "t.conf:1:27: this port condition matches no port");
    assert_eq!(err("pass in proto tcp to port 9 >< 6"), "t.conf:1:27: bad port range `9 >< 6`: 9 is greater than 6");
    assert_eq!(err("pass in proto tcp to port ><"), "t.conf:1:27: `><` goes between two ports, like `1000 >< 2000`");
}

#[test]
fn interface_lists_negation_and_icmp_type_lists() {
    let r = rule("pass in on ! { eth0 eth1 } inet proto icmp icmp-type { echoreq, unreach code 3 }");
    assert!(r.interface_negated);
    assert_eq!(r.interfaces().collect::<Vec<_>>(), ["eth0", "eth1"]);
    assert!(!r.holds_on(Some("eth0")) && r.holds_on(Some("eth2")) && r.holds_on(None));
    let types: Vec<IcmpMatch> = r.icmp_types().copied().collect();
    assert_eq!(types, [IcmpMatch { icmp_type: 8, code: None }, IcmpMatch { icmp_type: 3, code: Some(3) }]);
    let r = rule("pass on ! lo0 inet6 proto icmp6 icmp6-type { neighbrsol neighbradv }");
    assert!(r.holds_on(Some("eth0")) && !r.holds_on(Some("lo0")));
    // JSON keeps the list.
    let back: Rule = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
    assert_eq!(back, r);
    assert_eq!(err("pass in on { } all"), "t.conf:1:14: expected an interface name, found `}`");
}

#[test]
fn pf_tables_settings_and_form_feeds() {
    let rs = parse(
        "\u{c}table <bruteforce> persist\ntable <nets> const counters { 10.0.0.0/8 }\n\
         set limit { states 20000, frags 5000 }\nset timeout { tcp.established 3600, udp.first 30 }\n\
         block in quick from <bruteforce>\u{c}\npass in from <nets>\n",
    )
    .unwrap();
    assert!(rs.tables["bruteforce"].entries.is_empty());
    assert_eq!(rs.tables["nets"].entries, nets(&["10.0.0.0/8"]));
    assert_eq!(rs.options.state_limit, Some(20000));
    assert_eq!(rs.options.timeout("tcp.established"), 3600);
    assert_eq!(rs.options.timeout("udp.first"), 30);
    let p = parsed_with(
        "set loginterface em0\nset timeout interval 10\nset limit frags 100\nset state-policy if-bound\n\
         pass in proto tcp modulate state\n",
        false,
    )
    .unwrap();
    let warnings: Vec<String> = p.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(warnings.len(), 5, "{warnings:#?}");
    assert!(warnings[0].starts_with("t.conf:1:5: `set loginterface` is accepted and does nothing here"));
    assert_eq!(
        warnings[4],
        "t.conf:5:19: `modulate state` is kept as `keep state`: xdpwall does not modulate TCP sequence numbers"
    );
    assert_eq!(
        err("set timeout bogus 1"),
        "t.conf:1:13: expected a timeout name (tcp.first, tcp.opening, tcp.established, tcp.closing, tcp.finwait, tcp.closed, udp.first, udp.multiple, icmp.first) after `set timeout`, found `bogus`"
    );
}

#[test]
fn out_of_scope_constructs_are_refused_by_name_or_skipped() {
    for (src, col, what) in [
        (
            "nat on em0 from 10.0.0.0/8 to any -> (em0)",
            1,
            "`nat` is not supported: xdpwall filters; address translation stays in nftables or pf",
        ),
        (
            "rdr pass on em1 proto tcp to port 21 -> 127.0.0.1 port 8021",
            1,
            "`rdr` is not supported: xdpwall filters; address translation stays in nftables or pf",
        ),
        (
            "pass out on em0 from 10.0.0.0/8 nat-to 192.0.2.1",
            33,
            "`nat-to` is not supported: xdpwall filters; address translation stays in nftables or pf",
        ),
        (
            "pass in on em0 from any to any port 80 -> 10.0.0.2",
            40,
            "`->` (address translation) is not supported: xdpwall filters; address translation stays in nftables or pf",
        ),
        (
            "pass in route-to (em1 192.0.2.1) all",
            9,
            "`route-to` is not supported: xdpwall filters; policy routing stays in the kernel's routing (`ip rule`) or pf",
        ),
        (
            "scrub in all",
            1,
            "`scrub` is not supported: xdpwall does not rewrite packets: it drops malformed ones and lets the kernel reassemble fragments",
        ),
        (
            "altq on em0 cbq bandwidth 10Mb queue { std }",
            1,
            "`altq` is not supported: xdpwall does not shape traffic; queueing stays in tc or pf",
        ),
        (
            "anchor \"ftp-proxy/*\"",
            1,
            "`anchor` is not supported: xdpwall reads one ruleset (split it with `include`); anchors stay in pf",
        ),
        (
            "load anchor spam from \"/etc/pf-spam.conf\"",
            1,
            "`load anchor` is not supported: xdpwall reads one ruleset (split it with `include`); anchors stay in pf",
        ),
        (
            "pass in proto tcp to port 80 synproxy state",
            30,
            "`synproxy state` is not supported: xdpwall does not complete TCP handshakes for a server; `keep state` tracks them",
        ),
    ] {
        assert_eq!(err(src), format!("t.conf:1:{col}: {what}"), "{src}");
    }
    assert_eq!(
        err("block in quick from urpf-failed"),
        "t.conf:1:21: `urpf-failed` is not supported: xdpwall does not look up routes; the kernel's reverse path \
         filter (rp_filter) checks sources against them"
    );
    let p = parsed_with("nat on em0 from any to any -> 192.0.2.1\nscrub in all\npass in all\n", true).unwrap();
    let skipped: Vec<(u32, &str)> = p.skipped.iter().map(|e| (e.line, &e.message[..5])).collect();
    assert_eq!(skipped, [(1, "`nat`"), (2, "`scru")]);
    assert_eq!(p.ruleset.rules.len(), 1);
}

#[test]
fn includes_read_relative_files_and_name_them_in_errors() {
    let dir = TempDir::new("include");
    dir.write("main.conf", "m = \"udp\"\ninclude \"sub/a.conf\"\npass in proto tcp\n");
    std::fs::create_dir_all(dir.0.join("sub")).unwrap();
    dir.write("sub/a.conf", "pass in proto $m\ninclude \"b.conf\"\n");
    dir.write("sub/b.conf", "table <t> { 10.0.0.0/8 }\nblock in from <t>\n");
    let rs = parse_file(&dir.0.join("main.conf")).unwrap();
    assert_eq!(rs.rules.len(), 3);
    assert_eq!(rs.rules[0].protocols, Some(vec![17]), "macros of the including file are known");
    assert_eq!(rs.rules[1].file.as_deref(), Some(dir.0.join("sub/b.conf").to_str().unwrap()));
    assert_eq!(rs.rules[2].file, None);
    dir.write("sub/b.conf", "pass in proto tcp to port 70000\n");
    let e = parse_file(&dir.0.join("main.conf")).unwrap_err();
    assert_eq!(e.to_string(), format!("{}:1:27: port 70000 out of range 0-65535", dir.0.join("sub/b.conf").display()));
    dir.write("sub/b.conf", "include \"a.conf\"\n");
    let e = parse_file(&dir.0.join("main.conf")).unwrap_err().to_string();
    assert!(e.ends_with("a.conf` includes itself (through this include)"), "{e}");
    dir.write("sub/b.conf", "include \"missing.conf\"\n");
    let e = parse_file(&dir.0.join("main.conf")).unwrap_err().to_string();
    assert!(e.contains("b.conf:1:9: cannot read included file"), "{e}");
}

#[test]
fn shadowed_rules_are_found_conservatively() {
    use shadow::{Shadowed, shadowed};
    let sh = |src: &str| shadowed(&parse(src).unwrap());
    // pf.conf(5): the block never decides, the pass after it matches everything...
    assert_eq!(
        sh("block in proto tcp from any to any port ssh\npass in all no state\n"),
        [Shadowed { rule: 0, by: 1 }]
    );
    // ... unless the pass keeps state: its implicit flags S/SA leave the block the
    // segments that open no connection.
    assert_eq!(sh("block in proto tcp from any to any port ssh\npass in all\n"), []);
    // With quick it decides, and nothing is shadowed.
    assert_eq!(sh("block in quick proto tcp from any to any port ssh\npass in all\n"), []);
    // An earlier quick rule covering a later one (its implicit flags do not apply to UDP).
    assert_eq!(
        sh("pass in quick from 10.0.0.0/8\npass in quick proto udp from 10.1.0.0/16 port 1:2\n"),
        [Shadowed { rule: 1, by: 0 }]
    );
    assert_eq!(
        sh("pass in quick proto udp from 10.0.0.0/8\nblock in quick proto udp from 10.1.0.0/16 to port 53\n"),
        [Shadowed { rule: 1, by: 0 }]
    );
    // Not covered: another direction, a narrower later rule, flags, ports, tables.
    assert_eq!(sh("block out all\npass in all\n"), []);
    assert_eq!(sh("block in all\npass in proto tcp\n"), []);
    assert_eq!(sh("block in proto tcp all\npass in proto tcp all\n"), [], "flags S/SA: a mid-stream segment");
    assert_eq!(sh("block in proto tcp all\npass in proto tcp all flags any\n"), [Shadowed { rule: 0, by: 1 }]);
    assert_eq!(sh("block in proto tcp to port 1:100\npass in proto tcp to port 1:99 no state\n"), []);
    assert_eq!(sh("table <a> { 10.0.0.0/8 }\nblock in from <a>\npass in from 10.0.0.0/8\n"), []);
    // A rule without direction covers both; a negated list covers a narrower negation.
    assert_eq!(sh("block in from 10.0.0.1\npass from 10.0.0.0/8 no state\n"), [Shadowed { rule: 0, by: 1 }]);
    assert_eq!(sh("block in from !10.0.0.0/8\npass in from !10.0.0.0/16 no state\n"), [Shadowed { rule: 0, by: 1 }]);
    assert_eq!(sh("block in from !10.0.0.0/16\npass in from !10.0.0.0/8 no state\n"), []);
    // A rule over its rate does not match: the packet goes on to the rule it covers.
    assert_eq!(sh("pass in proto icmp\npass in quick proto icmp no state rate 10/s\n"), []);
    assert_eq!(sh("block in proto icmp\npass in proto icmp no state max-pkt-rate 5/2\n"), []);
    // It can still be shadowed itself.
    assert_eq!(
        sh("pass in proto icmp no state max-pkt-rate 5/2\npass in proto icmp no state\n"),
        [Shadowed { rule: 0, by: 1 }]
    );
    assert_eq!(
        sh("pass in quick proto icmp no state rate 10/s\npass in quick proto icmp no state\n\
            pass in proto icmp no state\n"),
        [Shadowed { rule: 2, by: 1 }]
    );
    // A limit per source still decides (its packets over the limit are dropped).
    assert_eq!(sh("pass in proto udp no state\npass in proto udp max-src-states 5\n"), [Shadowed { rule: 0, by: 1 }]);
}

#[test]
fn includes_of_a_confined_ruleset_stay_in_its_directory() {
    let dir = TempDir::new("include-confined");
    dir.write("ok.conf", "pass in proto udp no state\n");
    let rs = parse_str_confined("include \"ok.conf\"\n", "api", &dir.0).unwrap();
    assert_eq!(rs.rules.len(), 1);
    let e = parse_str_confined("include \"../etc/passwd\"\n", "api", &dir.0).unwrap_err().to_string();
    assert!(e.starts_with("api:1:9: table files must be inside the table directory"), "{e}");
}

/// `table <t> persist` and a rule: the rule's problems, as `check` reports them.
fn limited(rule_text: &str) -> Result<Rule, String> {
    let mut rs = parse(&format!("table <t> persist\n{rule_text}\n")).map_err(|e| e.to_string())?;
    Ok(rs.rules.remove(0))
}

#[test]
fn source_limits_in_pfs_parentheses() {
    use crate::rules::{ConnRate, Flush, Overload, SourceLimits};
    // The OpenBSD FAQ's example.
    let faq = "pass in on em0 proto tcp to port ssh flags S/SA keep state \
               (max-src-conn 15, max-src-conn-rate 5/3, overload <t> flush global)";
    let r = limited(faq).unwrap();
    assert_eq!(
        r.source_limits,
        SourceLimits {
            max_states: None,
            max_conn: Some(15),
            max_conn_rate: Some(ConnRate { connections: 5, seconds: 3 })
        }
    );
    assert_eq!(r.overload, Some(Overload { table: "t".into(), secs: 0, flush: Flush::Global }));
    assert!(r.keep_state);
    assert_eq!(r.text, faq, "the rule's text is kept as written, parentheses and all");
    // Spacing, commas, `modulate state`, `for N`, `flush` for the rule's flows only.
    let r = limited("pass in proto tcp modulate state ( max-src-states 100 max-src-conn 7,overload <t> flush for 60 )")
        .unwrap();
    assert_eq!(r.source_limits.max_states, Some(100));
    assert_eq!(r.source_limits.max_conn, Some(7));
    assert_eq!(r.overload, Some(Overload { table: "t".into(), secs: 60, flush: Flush::Rule }));
    // What pf allows in the parentheses and xdpwall does anyway; options after them.
    let r =
        limited("pass in proto tcp keep state (source-track rule, floating, max-src-states 1) label \"x\"").unwrap();
    assert_eq!(r.source_limits, SourceLimits { max_states: Some(1), ..SourceLimits::default() });
    assert_eq!(r.label.as_deref(), Some("x"));
    assert_eq!(limited("pass in proto tcp keep state (source-track)").unwrap().source_limits, SourceLimits::default());
    // `max-src-states` counts flows of any protocol; a rule of any protocol may count TCP.
    assert_eq!(
        limited("pass in proto udp keep state (max-src-states 256)").unwrap().source_limits.max_states,
        Some(256)
    );
    assert_eq!(limited("pass in all keep state (max-src-conn 3)").unwrap().source_limits.max_conn, Some(3));
    // Without a space before the parenthesis, as pfctl reads it too.
    let r = limited("pass in proto tcp keep state(max-src-conn 3,floating)").unwrap();
    assert_eq!(r.source_limits.max_conn, Some(3));
    assert_eq!(r.text, "pass in proto tcp keep state(max-src-conn 3,floating)");
    assert_eq!(
        limited("pass in proto tcp keep state(max-src-conn 300)").unwrap_err(),
        "t.conf:2:43: max-src-conn 300 out of range 1-256: the data plane keeps a source's flows through a rule in a fixed array of that many slots"
    );
    // Parentheses stay part of words elsewhere: an interface address before the options.
    let r = limited("pass in proto tcp from (lo) keep state (max-src-conn 2)").unwrap();
    assert_eq!(r.from.addr, addrs(false, vec![AddrItem::Table("(lo)".into())]));
    assert_eq!(r.source_limits.max_conn, Some(2));
}

#[test]
fn source_limits_as_options() {
    use crate::rules::{ConnRate, Flush};
    let r = limited("pass in proto udp to port 53 max-src-states 100").unwrap();
    assert_eq!(r.source_limits.max_states, Some(100));
    let r = limited("pass in proto tcp to port 22 max-src-conn 10 overload <t> flush").unwrap();
    assert_eq!(r.source_limits.max_conn, Some(10));
    assert_eq!(r.overload.as_ref().map(|o| o.flush), Some(Flush::Rule));
    // Any order: `overload` before what trips it.
    let r = limited("pass in proto tcp overload <t> flush global for 5 max-src-conn-rate 100/86400").unwrap();
    assert_eq!(r.source_limits.max_conn_rate, Some(ConnRate { connections: 100, seconds: 86400 }));
    assert_eq!(r.overload.as_ref().map(|o| (o.flush, o.secs)), Some((Flush::Global, 5)));
    // Both spellings together.
    let r = limited("pass in proto tcp max-src-states 9 keep state (max-src-conn 4)").unwrap();
    assert_eq!((r.source_limits.max_states, r.source_limits.max_conn), (Some(9), Some(4)));
    // A packet rate still may overload (without `flush`).
    let r = limited("pass in proto udp no state rate 5/s per-source overload <t>").unwrap();
    assert_eq!(r.overload.map(|o| o.flush), Some(Flush::None));
}

#[test]
fn source_limit_refusals() {
    let e = |rule: &str| limited(rule).unwrap_err();
    // Positions inside the parentheses, on the next lines too.
    assert_eq!(
        e("pass in proto tcp keep state (max-src-conn 15, max-src-conn-rate 0/3)"),
        "t.conf:2:66: connections 0 out of range 1-1000000"
    );
    assert_eq!(
        e("pass in proto tcp keep state (max-src-conn 15, \\\n  max-src-conn-rate 5/86401)"),
        "t.conf:3:23: seconds 86401 out of range 1-86400"
    );
    assert_eq!(
        e("pass in proto tcp keep state (max-src-states 257)"),
        "t.conf:2:46: max-src-states 257 out of range 1-256: the data plane keeps a source's flows through a rule in a fixed array of that many slots"
    );
    assert_eq!(
        e("pass in proto tcp max-src-conn 0"),
        "t.conf:2:32: max-src-conn 0 out of range 1-256: the data plane keeps a source's flows through a rule in a fixed array of that many slots"
    );
    assert_eq!(
        e("pass in proto tcp keep state (max-src-conn x)"),
        "t.conf:2:44: expected a number of connections 1-256 after `max-src-conn`, found `x`"
    );
    assert_eq!(
        e("pass in proto tcp max-src-states"),
        "t.conf:2:33: expected a number of flows 1-256 after `max-src-states`, found end of line"
    );
    assert_eq!(
        e("pass in proto tcp max-src-conn-rate 5"),
        "t.conf:2:37: expected a rate like `5/3` (connections/seconds) after `max-src-conn-rate`, found `5`"
    );
    // The list itself.
    assert_eq!(
        e("pass in proto tcp keep state ( )"),
        "t.conf:2:32: expected a state option like `max-src-conn 10` after `(`, found `)`"
    );
    assert_eq!(
        e("pass in proto tcp keep state ()"),
        "t.conf:2:31: expected a state option like `max-src-conn 10` after `(`, found `)`"
    );
    assert_eq!(
        e("pass in proto tcp keep state (max-src-conn 1,)"),
        "t.conf:2:46: expected a state option after `,`, found `)`"
    );
    assert_eq!(
        e("pass in proto tcp keep state (max-src-conn 1,, floating)"),
        "t.conf:2:46: expected a state option after `,`, found `,`"
    );
    assert_eq!(
        e("pass in proto tcp keep state (max-src-conn 1"),
        "t.conf:2:30: this `(` is never closed; expected `)`"
    );
    assert_eq!(
        e("pass in proto tcp keep state (max-src-conn 1))"),
        "t.conf:2:46: expected an option or end of rule, found `)`"
    );
    assert_eq!(
        e("pass in proto tcp keep state (max-src-conn 1 <t>)"),
        "t.conf:2:46: expected `,`, `)` or a state option, found `<t>`"
    );
    assert_eq!(
        e("pass in proto tcp keep state (max-src-con 1)"),
        "t.conf:2:31: expected a state option (`max-src-states`, `max-src-conn`, `max-src-conn-rate`, `overload`, `source-track rule`, `floating`), found `max-src-con` (did you mean `max-src-conn`?)"
    );
    assert_eq!(
        e("pass in proto tcp keep state (label \"x\")"),
        "t.conf:2:31: expected a state option (`max-src-states`, `max-src-conn`, `max-src-conn-rate`, `overload`, `source-track rule`, `floating`), found `label`"
    );
    // pf's state options that xdpwall does not have: one line each.
    for (option, col, message) in [
        ("max 100", 31, "`max` is not supported: `set limit states` bounds all flows"),
        (
            "source-track global",
            44,
            "`source-track global` is not supported: sources are counted per rule (`source-track rule`)",
        ),
        (
            "max-src-nodes 10",
            31,
            "`max-src-nodes` is not supported: `set limit src-nodes` bounds the sources kept for all rules",
        ),
        ("if-bound", 31, "`if-bound` is not supported: flows are floating (not bound to an interface)"),
        ("sloppy", 31, "`sloppy` is not supported: a flow follows its TCP handshake, so it must see both directions"),
        (
            "tcp.established 60",
            31,
            "per-rule timeouts are not supported: timeouts are global, with `set timeout tcp.established SECONDS`",
        ),
        (
            "adaptive.start 6000",
            31,
            "per-rule timeouts are not supported: timeouts are global, with `set timeout adaptive.start SECONDS`",
        ),
    ] {
        assert_eq!(
            e(&format!("pass in proto tcp keep state ({option})")),
            format!("t.conf:2:{col}: {message}"),
            "{option}"
        );
    }
    // Whole-rule checks, at the keyword.
    assert_eq!(
        e("block in proto tcp max-src-states 5"),
        "t.conf:2:20: `max-src-states` needs a `pass` rule: a blocked packet opens no flow to count"
    );
    assert_eq!(
        e("pass in proto tcp no state (max-src-conn 5)"),
        "t.conf:2:29: `max-src-conn` needs a rule that keeps state: with `no state` it opens no flows"
    );
    assert_eq!(
        e("pass in proto tcp no state max-src-states 5"),
        "t.conf:2:28: `max-src-states` needs a rule that keeps state: with `no state` it opens no flows"
    );
    assert_eq!(
        e("block in proto tcp keep state (max-src-conn 5)"),
        "t.conf:2:20: `keep state` needs `pass`: a blocked packet opens no flow",
        "the leftmost problem"
    );
    assert_eq!(
        e("pass in proto udp keep state (max-src-conn-rate 5/3)"),
        "t.conf:2:31: `max-src-conn-rate` counts TCP connections, and this rule matches no TCP (it needs `proto tcp`)"
    );
    assert_eq!(
        e("pass in proto { udp icmp } max-src-conn 5"),
        "t.conf:2:28: `max-src-conn` counts TCP connections, and this rule matches no TCP (it needs `proto tcp`)"
    );
    assert_eq!(
        e("pass in proto tcp keep state (max-src-states 5, overload <t>)"),
        "t.conf:2:49: `overload` needs what judges a source: `max-src-conn`, `max-src-conn-rate` or a per-source rate (`rate N/s per-source`)"
    );
    assert_eq!(
        e("pass in proto udp no state rate 5/s per-source overload <t> flush"),
        "t.conf:2:61: `flush` needs `max-src-conn` or `max-src-conn-rate`: a packet rate can be tripped by spoofed packets, which must not end someone else's flows"
    );
    assert_eq!(
        e("pass in proto tcp keep state (max-src-conn 5, overload <t> flush global for 0)"),
        "t.conf:2:77: seconds 0 out of range 1-31536000"
    );
    assert_eq!(
        e("pass in proto tcp keep state (max-src-conn 5, overload t)"),
        "t.conf:2:56: expected a table like `<flooders>` after `overload`, found `t`"
    );
    // Repeats, in either spelling.
    assert_eq!(
        e("pass in proto tcp keep state (max-src-conn 5, max-src-conn 6)"),
        "t.conf:2:47: `max-src-conn` is given twice in this rule"
    );
    assert_eq!(
        e("pass in proto tcp max-src-states 5 keep state (max-src-states 6)"),
        "t.conf:2:48: `max-src-states` is given twice in this rule"
    );
    assert_eq!(
        e("pass in proto tcp max-src-conn 5 overload <t> (overload <t>)"),
        "t.conf:2:47: state options in parentheses go right after `keep state` or `modulate state`, found `(overload`"
    );
    assert_eq!(
        e("pass in proto tcp keep state (max-src-conn 5) keep state (max-src-conn 6)"),
        "t.conf:2:47: `keep` is given twice in this rule"
    );
    // The table must be dynamic, as for a packet rate.
    assert_eq!(
        err("table <s> { 10.0.0.1 }\npass in proto tcp keep state (max-src-conn 5, overload <s> flush)"),
        "t.conf:2:1: `overload <s>` needs `table <s> persist`"
    );
    assert_eq!(
        err("pass in proto tcp keep state (max-src-conn 5, overload <nope>)"),
        "t.conf:1:56: unknown table <nope>"
    );
}

#[test]
fn state_options_without_effect_warn() {
    let p = parsed_with("table <t> persist\npass in proto tcp keep state (no-sync, pflow, max-src-conn 3)\n", false)
        .unwrap();
    let warnings: Vec<String> = p.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            "t.conf:2:31: `no-sync` is accepted and does nothing here: xdpwall has no pfsync",
            "t.conf:2:40: `pflow` is accepted and does nothing here: xdpwall exports no pflow records",
        ]
    );
    assert_eq!(p.ruleset.rules[0].source_limits.max_conn, Some(3));
}

#[test]
fn source_limits_round_trip_through_json() {
    let rs = parse(
        "table <t> persist\n\
         pass in proto tcp keep state (max-src-conn 15, max-src-conn-rate 5/3, overload <t> flush global for 9)\n\
         pass in proto udp max-src-states 100\n\
         pass in proto tcp max-src-conn 1 overload <t> flush\n\
         pass in proto udp no state rate 1/s per-source overload <t>\n",
    )
    .unwrap();
    let json = serde_json::to_string(&rs).unwrap();
    let back: Ruleset = serde_json::from_str(&json).unwrap();
    assert_eq!(back, rs);
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        value["rules"][0]["source_limits"],
        serde_json::json!({ "max_conn": 15, "max_conn_rate": { "connections": 5, "seconds": 3 } })
    );
    assert_eq!(value["rules"][0]["overload"], serde_json::json!({ "table": "t", "secs": 9, "flush": "global" }));
    assert_eq!(value["rules"][2]["overload"]["flush"], "rule");
    // Rules without them say nothing of them: older JSON still reads.
    assert!(value["rules"][3]["source_limits"].is_null() && value["rules"][3]["overload"].get("flush").is_none());
}

#[test]
fn lists_take_the_same_commas_everywhere() {
    // Commas, blanks or both between items, a trailing comma: in every `{ ... }` list.
    let rs = parse(
        "set limit { states 20000 frags 5, }\nset timeout { tcp.first 60,udp.first 30 , }\n\
         set skip on { lo, }\nantispoof for { lo , }\n\
         pass in proto icmp icmp-type { echoreq unreach code 3, }\n",
    )
    .unwrap();
    assert_eq!(rs.options.state_limit, Some(20000));
    assert_eq!(rs.options.timeout("udp.first"), 30);
    assert_eq!(rs.options.skip, ["lo"]);
    assert_eq!(rs.rules.last().unwrap().icmp_also.len(), 1);
    // An empty list, a leading or a doubled comma: refused, naming what was expected.
    for (src, message) in [
        ("set limit { }", "1:13: expected a limit like `states 20000`, found `}`"),
        (
            "set timeout { tcp.first 60,, udp.first 30 }",
            "1:28: expected `}` or a timeout like `tcp.first 60`, found `,`",
        ),
        ("set skip on { , lo }", "1:15: expected an interface name like `lo`, found `,`"),
        ("antispoof for { lo,, em0 }", "1:20: expected `}` or an interface name like `em0`, found `,`"),
        ("pass proto icmp icmp-type { }", "1:29: expected an ICMP type, found `}`"),
        ("pass proto icmp6 icmp6-type { echoreq,, }", "1:39: expected `}` or an ICMPv6 type, found `,`"),
        (
            "pass proto { tcp,, udp }",
            "1:18: expected `}` or a protocol (`tcp`, `udp`, `icmp`, `icmp6`, `sctp` or a number 0-255), found `,`",
        ),
    ] {
        assert_eq!(err(src), format!("t.conf:{message}"), "{src}");
    }
}
