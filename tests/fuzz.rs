//! Fuzzing the rule language: the lexer, the parser and the compiler on random bytes,
//! on soups of the language's own tokens, and on mutated valid rulesets (the examples
//! below, the demo ruleset and the broken rulesets of `tests/corpus`); and the table
//! file reader on random lines.
//!
//! For every input:
//! - nothing panics (parse, then compile what parses);
//! - an error carries a position inside the input (line within the file, column within
//!   that line or just past its end), or names the file as a whole (line 0), and its
//!   message is short and holds no control character: it never echoes a runaway line;
//! - a ruleset that parses round-trips: printed back (settings, tables inline, each
//!   rule's text) and parsed again, it is the same ruleset.
//!
//! Generated valid rulesets (every part of a rule, random spacing, continuations and
//! comments) must parse, and round-trip like the others.
//!
//! Time per input is not asserted. The run is time-boxed by its number of cases
//! (`XDPWALL_FUZZ_CASES`, default 1000 per property, 300 for the generated rulesets; a
//! few seconds), so CI runs it with
//! `cargo xtask test`; `XDPWALL_FUZZ_SECS=N` instead keeps generating fresh cases for N
//! seconds, for a longer hunt. Failures shrink and are saved in
//! `fuzz.proptest-regressions`, replayed first on every run.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use filter_user::compile;
use filter_user::rules::{self, RulesError, Ruleset};
use proptest::{
    collection::vec,
    prelude::*,
    sample::{Index, select},
    test_runner::{Config, FileFailurePersistence, TestCaseError, TestRunner},
};

/// Where table files named by a fuzzed ruleset are looked for: nowhere.
const BASE: &str = "/nonexistent-xdpwall-fuzz";
const FILE: &str = "fuzz.conf";
/// Longest error message accepted: the longest "expected ..." list plus the quotes.
const MAX_MESSAGE: usize = 600;

/// Valid rulesets that use every part of the language.
const SEEDS: &[&str] = &[
    "# comments run to the end of the line; a trailing \\ continues a rule\n\
     set default block\n\
     set limit states 200000\n\
     set timeout tcp.established 3600\n\
     table <admins> { 192.0.2.10, 2001:db8::/64 }\n\
     pass  in on eth0 proto tcp from <admins> to port ssh\n\
     pass  in proto tcp to port { 80, 443, 8000:8080 }\n\
     pass  in proto icmp icmp-type echo-request\n\
     pass  in proto icmp6\n\
     pass  in proto udp from any port 53 to 10.0.0.0/8 label \"dns replies\"\n\
     block in inet6 from !2001:db8::/32 to any\n\
     pass  in proto tcp flags S/SA vlan 100\n\
     pass  in proto tcp to port 443 keep state     # replies pass on the flow's state\n\
     pass  out proto { tcp udp } keep state        # the host's own connections\n",
    "set default pass\n\
     table <bad> {\n  10.0.0.0/8, 172.16.0.0/12 # private\n  fd00::/8\n}\n\
     block in quick from <bad> to ! { 10.1.0.0/16, <bad> } label \"x \\\"y\\\"\"\n\
     pass in inet proto icmp icmp-type unreach code 4\n\
     pass in inet6 proto icmp6 icmp6-type toobig\n\
     block in proto { 6 17 132 } from any port 1:1023 to any port { ssh, 8080 }\n\
     pass in proto tcp \\\n   from 198.51.100.0/24 flags any\n\
     block all\n",
    include_str!("../filter-user/examples/demo.conf"),
    "# pf.conf: macros, pf's order and state, port comparisons, lists\u{c}\n\
     m = \"tcp\"\n\
     svc = \"{ ssh, 80 }\"\n\
     ifs = \"{\" eth0 eth1 \"}\"\n\
     set loginterface eth0\n\
     set limit { states 1000, frags 10 }\n\
     set timeout { tcp.first 60, interval 10 }\n\
     table <t> persist const { 10.0.0.0/8 }\n\
     table <empty> persist\n\
     block in all\n\
     pass out all\n\
     pass in on ! $ifs proto $m to port $svc modulate state\n\
     pass proto udp to port { = 53, > 1023, 6000 >< 6010, != 7 } no state\n\
     pass in on $ifs inet proto icmp icmp-type { echoreq, unreach code 1 }\n\
     pass in proto tcp to port 1000 <> 2000 flags any\n\
     block in quick from <t>\n",
    "# pf's limits per source, in pf's parentheses and as options\n\
     table <bruteforce> persist\n\
     block in quick from <bruteforce>\n\
     pass in on eth0 proto tcp to port ssh flags S/SA keep state \\\n\
       (max-src-conn 15, max-src-conn-rate 5/3, overload <bruteforce> flush global)\n\
     pass in proto tcp to port 80 modulate state (max-src-states 100 source-track rule, floating)\n\
     pass in proto udp to port 53 max-src-states 100\n\
     pass in proto tcp to port 25 max-src-conn 10 overload <bruteforce> flush for 3600\n",
];

/// Pieces of the language, and of what it must refuse.
const PIECES: &[&str] = &[
    "$m",
    "$",
    "m = \"tcp\"\n",
    "l = \"{ 22 80 }\"\n",
    "=",
    "no",
    "modulate",
    "synproxy",
    "max-src-states",
    "max-src-conn",
    "max-src-conn-rate",
    "5/3",
    "overload",
    "flush",
    "global",
    "(",
    ")",
    "(max-src-conn",
    "15)",
    "source-track",
    "persist",
    "const",
    "!=",
    "><",
    "<>",
    ">=",
    "<=",
    "\u{c}",
    "include",
    "nat",
    "->",
    "nat-to",
    "loginterface",
    "pass",
    "block",
    "in",
    "out",
    "quick",
    "on",
    "eth0",
    "inet",
    "inet6",
    "proto",
    "tcp",
    "udp",
    "icmp",
    "icmp6",
    "sctp",
    "all",
    "from",
    "to",
    "any",
    "port",
    "flags",
    "S/SA",
    "/SA",
    "FUP/FSRPAU",
    "icmp-type",
    "icmp6-type",
    "echoreq",
    "code",
    "vlan",
    "keep",
    "state",
    "log",
    "label",
    "rate",
    "10/s",
    "burst",
    "table",
    "file",
    "set",
    "default",
    "limit",
    "states",
    "timeout",
    "tcp.first",
    "{",
    "}",
    ",",
    "!",
    "<t>",
    "<admins>",
    "<",
    ">",
    "\"",
    "\"x\"",
    "\"dup\"",
    "\\",
    "\\\n",
    "#",
    "\n",
    "\r\n",
    "\t",
    " ",
    "0",
    "1",
    "22",
    "65535",
    "70000",
    "4096",
    "4095",
    "-1",
    "8000:8080",
    ":",
    "10.0.0.0/8",
    "10.1.2.3/8",
    "1.2.3.4/33",
    "::1",
    "2001:db8::/33",
    "fe80::1%eth0",
    "0.0.0.0/0",
    "::/0",
    "\0",
    "\u{1b}",
    "\u{7f}",
    "\u{85}",
    "\u{202e}",
    "é",
    "ssh",
    "frmo",
];

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok().filter(|n| *n > 0)
}

/// Line and column of a position, checked against the input's lines.
fn position_is_inside(e: &RulesError, bytes: &[u8]) -> Result<(), String> {
    if e.line == 0 {
        return if e.col == 0 { Ok(()) } else { Err("line 0 with a column".into()) };
    }
    // Lines as the lexer counts them; invalid UTF-8 errors point at the first bad
    // byte, which lossy decoding replaces by one character.
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.split('\n').collect();
    let line = lines.get(e.line as usize - 1).ok_or_else(|| format!("line {} of {}", e.line, lines.len()))?;
    let width = line.chars().count() as u32;
    if e.col == 0 || e.col > width + 1 {
        return Err(format!("column {} of a line of {width} characters", e.col));
    }
    Ok(())
}

/// The ruleset printed back as text: settings, tables inline, rules as written.
fn render(rs: &Ruleset) -> String {
    let mut s = String::new();
    let default = match rs.default_action {
        rules::Action::Pass => "pass",
        rules::Action::Block => "block",
    };
    let _ = writeln!(s, "set default {default}");
    if let Some(n) = rs.options.state_limit {
        let _ = writeln!(s, "set limit states {n}");
    }
    for (name, secs) in &rs.options.timeouts {
        let _ = writeln!(s, "set timeout {name} {secs}");
    }
    for (name, table) in &rs.tables {
        if table.dynamic {
            let _ = writeln!(s, "table <{name}> persist");
            continue;
        }
        let ifaces = rs.options.interface_tables.get(name).map(Vec::as_slice).unwrap_or_default();
        // A rule's `(em0)`, `em0:network` or `self` is a table named as written, which
        // the rule's text brings back.
        if let [r] = ifaces
            && rules::interface_written(r) == *name
        {
            continue;
        }
        let entries: Vec<String> =
            table.entries.iter().map(|e| e.to_string()).chain(ifaces.iter().map(rules::interface_written)).collect();
        let _ = writeln!(s, "table <{name}> {{ {} }}", entries.join(", "));
    }
    for rule in &rs.rules {
        let _ = writeln!(s, "{}", rule.text);
    }
    s
}

/// The ruleset without what depends on where things were written.
fn normalized(mut rs: Ruleset) -> Ruleset {
    for rule in &mut rs.rules {
        rule.pos = Default::default();
    }
    for table in rs.tables.values_mut() {
        table.file = None;
    }
    rs
}

/// Inputs that parsed (and round-tripped), across the properties of this process.
static VALID: AtomicU64 = AtomicU64::new(0);
/// Inputs that were refused with an error.
static REFUSED: AtomicU64 = AtomicU64::new(0);

/// The properties, for one input.
fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    let result = rules::parse_bytes(bytes, FILE, Path::new(BASE));
    let counter = if result.is_ok() { &VALID } else { &REFUSED };
    counter.fetch_add(1, Ordering::Relaxed);
    match result {
        Err(e) => {
            prop_assert_eq!(&e.file, FILE, "errors are in the input: {}", e);
            position_is_inside(&e, bytes)
                .map_err(|why| TestCaseError::fail(format!("{e}: position outside the input: {why}")))?;
            prop_assert!(e.message.len() <= MAX_MESSAGE, "message of {} bytes", e.message.len());
            prop_assert!(!e.message.chars().any(char::is_control), "control character in {:?}", e.message);
        }
        Ok(rs) => {
            // The compiler may refuse (memory), but never panics.
            let _ = compile::compile(&rs);
            let text = render(&rs);
            let again = rules::parse_str(&text, "rendered.conf", Path::new(BASE))
                .map_err(|e| TestCaseError::fail(format!("rendered ruleset fails: {e}\n{text}")))?;
            prop_assert_eq!(normalized(again), normalized(rs), "round trip of\n{}", text);
        }
    }
    Ok(())
}

/// One change to a ruleset's bytes.
#[derive(Debug, Clone)]
enum Mutation {
    Insert(Index, Vec<u8>),
    Delete(Index, usize),
    Replace(Index, u8),
    DuplicateLine(Index),
    SwapLines(Index, Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let piece = prop_oneof![
        select(PIECES).prop_map(|p| format!(" {p} ").into_bytes()),
        select(PIECES).prop_map(|p| p.as_bytes().to_vec()),
        vec(any::<u8>(), 1..8),
        (1usize..400).prop_map(|n| vec![b'7'; n]),
    ];
    prop_oneof![
        3 => (any::<Index>(), piece).prop_map(|(at, p)| Mutation::Insert(at, p)),
        2 => (any::<Index>(), 1usize..20).prop_map(|(at, n)| Mutation::Delete(at, n)),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(at, b)| Mutation::Replace(at, b)),
        1 => any::<Index>().prop_map(Mutation::DuplicateLine),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
    ]
}

fn apply(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len();
        match m {
            Mutation::Insert(at, piece) => {
                let i = at.index(len + 1);
                bytes.splice(i..i, piece.iter().copied());
            }
            Mutation::Delete(at, n) if len > 0 => {
                let i = at.index(len);
                bytes.drain(i..(i + n).min(len));
            }
            Mutation::Replace(at, b) if len > 0 => {
                let i = at.index(len);
                bytes[i] = *b;
            }
            Mutation::DuplicateLine(at) | Mutation::SwapLines(at, _) if len > 0 => {
                let mut lines: Vec<Vec<u8>> = bytes.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
                let i = at.index(lines.len());
                match m {
                    Mutation::SwapLines(_, other) => {
                        let j = other.index(lines.len());
                        lines.swap(i, j);
                    }
                    _ => {
                        let line = lines[i].clone();
                        lines.insert(i, line);
                    }
                }
                bytes = lines.join(&b'\n');
            }
            _ => {}
        }
    }
    bytes
}

/// The seeds, and the corpus of broken rulesets (their table files stay out of reach:
/// the fuzzed rulesets resolve tables in a directory that does not exist).
fn seeds() -> Vec<Vec<u8>> {
    let mut all: Vec<Vec<u8>> = SEEDS.iter().map(|s| s.as_bytes().to_vec()).collect();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut corpus: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    corpus.sort();
    all.extend(corpus.iter().map(|p| std::fs::read(p).unwrap()));
    all
}

/// Runs `strategy` through [`check`]: `XDPWALL_FUZZ_CASES` cases (default 1000), or
/// batches of fresh cases for `XDPWALL_FUZZ_SECS` seconds.
fn fuzz<S: Strategy<Value = Vec<u8>>>(name: &'static str, strategy: S) {
    fuzz_with(name, 1000, strategy, check);
}

/// [`fuzz`] with another property than [`check`].
fn fuzz_with<S: Strategy<Value = Vec<u8>>>(
    name: &'static str,
    default_cases: u32,
    strategy: S,
    property: impl Fn(&[u8]) -> Result<(), TestCaseError>,
) {
    let deadline = env_number("XDPWALL_FUZZ_SECS").map(|s| Instant::now() + Duration::from_secs(s));
    let cases = env_number("XDPWALL_FUZZ_CASES").map_or(default_cases, |n| n as u32);
    let mut runs = 0u64;
    loop {
        let mut config = Config {
            cases: if deadline.is_some() { 500 } else { cases },
            failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/fuzz.proptest-regressions"
            )))),
            ..Config::default()
        };
        config.source_file = Some(file!());
        config.test_name = Some(name);
        let mut runner = TestRunner::new(config);
        if let Err(e) = runner.run(&strategy, |bytes| property(&bytes)) {
            panic!("{name}: {e}");
        }
        runs += 1;
        if deadline.is_none_or(|d| Instant::now() >= d) {
            break;
        }
    }
    eprintln!(
        "{name}: {runs} batch(es) passed; so far in this process {} inputs parsed and round-tripped, {} were refused",
        VALID.load(Ordering::Relaxed),
        REFUSED.load(Ordering::Relaxed)
    );
}

#[test]
fn random_bytes() {
    fuzz("random_bytes", vec(any::<u8>(), 0..600));
}

#[test]
fn token_soup() {
    let soup = vec(select(PIECES), 0..80).prop_map(|pieces| pieces.concat().into_bytes());
    fuzz("token_soup", soup);
}

#[test]
fn mutated_rulesets() {
    let seeds = seeds();
    let n = seeds.len();
    // Three times in four a valid seed (few mutations, so that many results are still
    // valid and round-trip), else one of the broken rulesets of the corpus.
    let seed = prop_oneof![3 => 0..SEEDS.len(), 1 => SEEDS.len()..n];
    let strategy = (seed, vec(mutation(), 1..4)).prop_map(move |(i, mutations)| apply(seeds[i].clone(), &mutations));
    fuzz("mutated_rulesets", strategy);
}

/// Text between two tokens of a generated rule: spaces, tabs, a continuation with a
/// comment, a continuation with trailing blanks.
const GAPS: &[&str] = &[" ", " ", " ", "\t", "  ", " \\\n  ", " \\  \r\n\t"];

/// A valid rule, as tokens to be joined by gaps: the parts in pf's order, each part
/// only with what makes it valid (ports with tcp or udp, flags with tcp, ...).
fn valid_rule(label: usize) -> impl Strategy<Value = Vec<String>> {
    let addr = select(
        &[
            "any",
            "10.0.0.0/8",
            "192.0.2.1",
            "2001:db8::/32",
            "::1",
            "<t0>",
            "<t1>",
            "{ 10.1.0.0/16, <t0> }",
            "!<t1>",
            "! { ::/0 }",
            "{ 198.51.100.0/24 2001:db8:1::/48 }",
        ][..],
    );
    let ports = select(&["22", "ssh", "1:1023", "{ 80, 443, 8000:8080 }", "{ domain ntp }"][..]);
    (
        (any::<bool>(), select(&["", "in", "out"][..]), any::<bool>(), select(&["", "eth0", "veth-a"][..])),
        select(&["", "tcp", "udp", "icmp", "icmp6", "{ tcp udp }", "132", "{ 6, 17 }"][..]),
        (proptest::option::of(addr.clone()), proptest::option::of(ports.clone())),
        (proptest::option::of(addr), proptest::option::of(ports)),
        (any::<bool>(), proptest::option::of(0u16..4096), any::<bool>(), any::<bool>()),
        select(SOURCE_LIMITS),
    )
        .prop_map(
            move |(
                (pass, dir, quick, iface),
                proto,
                (from, sport),
                (to, dport),
                (flags, vlan, keep, labelled),
                (limits, tcp_only),
            )| {
                let mut t: Vec<String> = vec![if pass { "pass" } else { "block" }.into()];
                let push = |t: &mut Vec<String>, s: &str| t.extend(s.split(' ').map(str::to_owned));
                if !dir.is_empty() {
                    push(&mut t, dir);
                }
                if quick {
                    push(&mut t, "quick");
                }
                if !iface.is_empty() {
                    push(&mut t, &format!("on {iface}"));
                }
                let has_ports = matches!(proto, "tcp" | "udp" | "{ tcp udp }" | "132" | "{ 6, 17 }");
                if !proto.is_empty() {
                    push(&mut t, &format!("proto {proto}"));
                }
                for (kw, addr, port) in [("from", from, sport), ("to", to, dport)] {
                    let port = port.filter(|_| has_ports);
                    if addr.is_none() && port.is_none() {
                        continue;
                    }
                    push(&mut t, kw);
                    if let Some(a) = addr {
                        push(&mut t, a);
                    }
                    if let Some(p) = port {
                        push(&mut t, &format!("port {p}"));
                    }
                }
                if flags && proto == "tcp" {
                    push(&mut t, "flags S/SA");
                }
                if proto == "icmp" {
                    push(&mut t, "icmp-type echoreq");
                }
                if let Some(v) = vlan {
                    push(&mut t, &format!("vlan {v}"));
                }
                // pf's limits per source: on `pass` rules (which keep state here);
                // the connection limits only on rules that may match TCP.
                let may_be_tcp = matches!(proto, "" | "tcp" | "{ tcp udp }" | "{ 6, 17 }");
                let limits = if pass && (may_be_tcp || !tcp_only) { limits } else { "" };
                if keep && pass && !limits.contains("state") {
                    push(&mut t, "keep state");
                }
                if !limits.is_empty() {
                    push(&mut t, limits);
                }
                if labelled {
                    t.push(format!("label \"rule {label}\""));
                }
                t
            },
        )
}

/// pf's limits per source for generated `pass` rules, and whether they need TCP.
const SOURCE_LIMITS: &[(&str, bool)] = &[
    ("", false),
    ("", false),
    ("", false),
    ("max-src-states 100", false),
    ("keep state (max-src-states 1)", false),
    ("max-src-conn 10 overload <o> flush", true),
    ("keep state (max-src-conn 15, max-src-conn-rate 5/3, overload <o> flush global)", true),
    ("modulate state ( max-src-conn-rate 1/86400 source-track rule )", true),
];

/// A valid ruleset: settings, two inline tables, up to 40 rules, with random spacing,
/// continuations and comments.
fn valid_ruleset() -> impl Strategy<Value = Vec<u8>> {
    let entries =
        vec(select(&["10.0.0.0/8", "10.1.0.0/16", "192.0.2.7", "2001:db8::/32", "::1", "0.0.0.0/0"][..]), 0..5);
    (
        select(&["", "set default pass\n", "set default block\n"][..]),
        proptest::option::of(1u32..1_000_000),
        (entries.clone(), entries),
        (1usize..40).prop_flat_map(|n| (0..n).map(valid_rule).collect::<Vec<_>>()),
        vec(select(GAPS), 400),
    )
        .prop_map(|(default, limit, (t0, t1), rules, gaps)| {
            let mut s = String::from("# generated\n");
            s.push_str(default);
            if let Some(n) = limit {
                let _ = writeln!(s, "set limit states {n}  # flows");
            }
            let _ = writeln!(s, "table <t0> {{ {} }}", t0.join(", "));
            let _ = writeln!(s, "table <t1> {{\n  {}\n}}", t1.join("\n  "));
            s.push_str("table <o> persist\n");
            let mut gap = gaps.iter().cycle();
            for rule in rules {
                for (i, tok) in rule.iter().enumerate() {
                    if i > 0 {
                        s.push_str(gap.next().unwrap());
                    }
                    s.push_str(tok);
                }
                s.push_str("   # end\n");
            }
            s.into_bytes()
        })
}

/// What may follow an entry on its line.
const TAILS: &[&[u8]] = &[b"", b"  # c", b" ", b"\r", b"\t"];

/// Lines of a table file: addresses and prefixes, good and bad, comments, blanks,
/// and random bytes.
fn table_file() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        select(&["10.0.0.0/8", "192.0.2.1", "2001:db8::/32", "::1", "0.0.0.0/0", "fe80::/10"][..])
            .prop_map(|s| s.as_bytes().to_vec()),
        select(&["10.1.2.3/8", "1.2.3.4/33", "::/129", "10.0.0.256", "1.2.3.4 5.6.7.8", "x"][..])
            .prop_map(|s| s.as_bytes().to_vec()),
        Just(b"# a comment \xc3\xa9".to_vec()),
        Just(Vec::new()),
        vec(any::<u8>(), 1..40),
    ];
    vec((line, select(TAILS)), 0..30).prop_map(|lines| {
        let mut out = Vec::new();
        for (line, tail) in lines {
            out.extend_from_slice(&line);
            out.extend_from_slice(tail);
            out.push(b'\n');
        }
        out
    })
}

#[test]
fn random_table_files() {
    let dir = std::env::temp_dir().join(format!("xdpwall-fuzz-tables-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let table = dir.join("t.txt");
    let shown = table.display().to_string();
    let ruleset = "table <t> file \"t.txt\"\nblock in from <t>\n";
    fuzz_with("random_table_files", 1000, table_file(), |bytes| {
        std::fs::write(&table, bytes).unwrap();
        match rules::parse_str(ruleset, FILE, &dir) {
            Ok(rs) => {
                let _ = compile::compile(&rs);
            }
            Err(e) => {
                prop_assert_eq!(&e.file, &shown, "errors are in the table file: {}", e);
                position_is_inside(&e, bytes)
                    .map_err(|why| TestCaseError::fail(format!("{e}: position outside the table file: {why}")))?;
                prop_assert!(e.line > 0, "{}", e);
                prop_assert!(e.message.len() <= MAX_MESSAGE, "{}", e);
                prop_assert!(!e.message.chars().any(char::is_control), "{:?}", e.message);
            }
        }
        Ok(())
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn generated_rulesets_are_valid_and_round_trip() {
    // Each case compiles up to 40 rules: fewer cases by default.
    fuzz_with("generated_rulesets", 300, valid_ruleset(), |bytes| {
        let parsed = rules::parse_bytes(bytes, FILE, Path::new(BASE));
        prop_assert!(parsed.is_ok(), "{}\n{}", parsed.unwrap_err(), String::from_utf8_lossy(bytes));
        if std::env::var_os("XDPWALL_FUZZ_SHOW").is_some() {
            eprintln!("----\n{}", String::from_utf8_lossy(bytes));
        }
        check(bytes)
    });
}

#[test]
fn seeds_are_valid_and_round_trip() {
    for seed in SEEDS {
        let rs = rules::parse_str(seed, FILE, Path::new(BASE)).unwrap_or_else(|e| panic!("{e}"));
        assert!(!rs.rules.is_empty());
        check(seed.as_bytes()).unwrap();
    }
}
