//! A ruleset sent over the API: the pf-like text (`text/plain`), parsed with table
//! files confined to the configured table directory, or the JSON form of
//! [`Ruleset`] (`application/json`, what `GET /v1/ruleset` returns), whose tables are
//! inline and which is checked here as the parser checks text, so that neither form can
//! reach the compiler with a rule the text form would refuse.

use std::{collections::HashSet, path::Path};

use filter_common::MAX_RULES;

use crate::rules::{self, AddrItem, AddrMatch, Family, MAX_LABEL, RulesError, Ruleset};

/// The name errors give a ruleset that came over the API.
pub const API_SOURCE: &str = "api";

/// Longest Linux interface name.
const MAX_IFACE_NAME: usize = 15;

/// Parses the body of `PUT /v1/ruleset`: JSON when `json`, text otherwise.
pub fn parse(body: &[u8], json: bool, table_dir: &Path) -> Result<Ruleset, RulesError> {
    if body.len() as u64 > rules::MAX_RULESET_BYTES {
        return Err(RulesError::whole_file(
            API_SOURCE,
            format!("the ruleset is larger than {} bytes", rules::MAX_RULESET_BYTES),
        ));
    }
    if !json {
        let text = std::str::from_utf8(body).map_err(|e| {
            RulesError::whole_file(API_SOURCE, format!("the ruleset is not UTF-8 (byte {})", e.valid_up_to()))
        })?;
        return rules::parse_str_confined(text, API_SOURCE, table_dir);
    }
    let rs: Ruleset = serde_json::from_slice(body).map_err(|e| RulesError {
        file: API_SOURCE.into(),
        line: e.line() as u32,
        col: e.column() as u32,
        message: format!("not a ruleset in JSON form: {e}"),
    })?;
    check_json_form(&rs)?;
    Ok(rs)
}

/// The checks the parser makes on text, for the JSON form. Errors point at the rule
/// (`line` is its index from 1, the column 0) since JSON has no lines of rules.
fn check_json_form(rs: &Ruleset) -> Result<(), RulesError> {
    use rules::Action;
    const TCP: u8 = 6;
    const UDP: u8 = 17;
    const ICMP: u8 = 1;
    const ICMP6: u8 = 58;
    const SCTP: u8 = 132;
    if rs.rules.len() > MAX_RULES {
        return Err(RulesError::whole_file(API_SOURCE, format!("a ruleset holds at most {MAX_RULES} rules")));
    }
    let mut labels = HashSet::new();
    for (i, r) in rs.rules.iter().enumerate() {
        let err = |m: String| RulesError {
            file: API_SOURCE.into(),
            line: i as u32 + 1,
            col: 0,
            message: format!("rule {}: {m}", i + 1),
        };
        if r.text.trim().is_empty() || r.text.chars().any(char::is_control) || r.text.len() > 4096 {
            return Err(err("`text` must be the rule as written: one line, at most 4096 bytes".into()));
        }
        if r.keep_state && r.action == Action::Block {
            return Err(err("`keep state` needs `pass`: a blocked packet opens no flow".into()));
        }
        if r.log {
            return Err(err("`log` is not supported yet".into()));
        }
        if let Some(problem) = rules::source_limits_problem(r) {
            return Err(err(problem));
        }
        if let Some(name) = &r.interface
            && (name.is_empty()
                || name.len() > MAX_IFACE_NAME
                || name.contains(['/', ' '])
                || name.chars().any(char::is_control))
        {
            return Err(err(format!("interface names have 1 to {MAX_IFACE_NAME} characters, no `/` or space")));
        }
        let protos = r.protocols.as_deref();
        let has_ports = protos.is_some_and(|l| !l.is_empty() && l.iter().all(|p| matches!(*p, TCP | UDP | SCTP)));
        for ports in [&r.from.ports, &r.to.ports].into_iter().flatten() {
            if !has_ports {
                return Err(err("port needs `proto tcp`, `udp` or `sctp`".into()));
            }
            if ports.is_empty() || ports.iter().any(|p| p.lo > p.hi) {
                return Err(err("a port list is not empty and each range has lo <= hi".into()));
            }
        }
        if r.tcp_flags.is_some() && protos != Some(&[TCP]) {
            return Err(err("`flags` needs `proto tcp`".into()));
        }
        if r.icmp.is_some() && protos != Some(&[ICMP]) && protos != Some(&[ICMP6]) {
            return Err(err("`icmp-type` needs `proto icmp` (`icmp6-type`: `proto icmp6`)".into()));
        }
        if let Some(v) = r.vlan
            && v > 4095
        {
            return Err(err("vlan ids are 0 to 4095".into()));
        }
        if let Some(label) = &r.label {
            if label.is_empty() || label.len() > MAX_LABEL || label.chars().any(char::is_control) {
                return Err(err(format!("labels have 1 to {MAX_LABEL} bytes and no control characters")));
            }
            if !labels.insert(label.as_str()) {
                return Err(err(format!("label \"{label}\" is already used; labels name one rule each")));
            }
        }
        for m in [&r.from.addr, &r.to.addr] {
            let AddrMatch::List { items, .. } = m else { continue };
            if items.is_empty() {
                return Err(err("an address list is not empty".into()));
            }
            for item in items {
                match item {
                    AddrItem::Table(name) if !rs.tables.contains_key(name) => {
                        return Err(err(format!("table <{name}> is not defined")));
                    }
                    AddrItem::Net(net) if r.family.is_some_and(|f| net.addr().is_ipv6() != (f == Family::Inet6)) => {
                        return Err(err(format!("{net} is not of the rule's address family")));
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(src: &str) -> Ruleset {
        rules::parse_str(src, "t.conf", Path::new(".")).unwrap()
    }

    #[test]
    fn the_json_form_round_trips_and_is_checked() {
        let rs = text("pass in quick proto tcp to port 22 label \"ssh\"\nblock in quick proto udp\n");
        let json = serde_json::to_vec(&rs).unwrap();
        assert_eq!(parse(&json, true, Path::new("/nonexistent")).unwrap(), rs);

        let mut bad = rs.clone();
        bad.rules[1].to.ports = rs.rules[0].to.ports.clone();
        bad.rules[1].protocols = None;
        let e = parse(&serde_json::to_vec(&bad).unwrap(), true, Path::new(".")).unwrap_err();
        assert_eq!((e.line, e.message.as_str()), (2, "rule 2: port needs `proto tcp`, `udp` or `sctp`"));

        let e = parse(b"{\"rules\": [", true, Path::new(".")).unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.message.starts_with("not a ruleset in JSON form"), "{e}");
    }

    #[test]
    fn the_json_form_of_limits_per_source_is_checked_as_text_is() {
        let rs = text(
            "table <t> persist\npass in proto tcp keep state (max-src-conn 15, max-src-conn-rate 5/3, \
             overload <t> flush global)\n",
        );
        let put = |rs: &Ruleset| parse(&serde_json::to_vec(rs).unwrap(), true, Path::new("."));
        assert_eq!(put(&rs).unwrap(), rs);
        let refused = |change: &dyn Fn(&mut rules::Rule)| {
            let mut bad = rs.clone();
            change(&mut bad.rules[0]);
            put(&bad).unwrap_err().message
        };
        assert_eq!(
            refused(&|r| r.source_limits.max_conn = Some(0)),
            "rule 1: max-src-conn 0 out of range 1-256: the data plane keeps a source's flows through a rule in a fixed array of that many slots"
        );
        assert_eq!(
            refused(&|r| r.source_limits.max_states = Some(257)),
            "rule 1: max-src-states 257 out of range 1-256: the data plane keeps a source's flows through a rule in a fixed array of that many slots"
        );
        assert_eq!(
            refused(&|r| r.source_limits.max_conn_rate = Some(rules::ConnRate { connections: 5, seconds: 0 })),
            "rule 1: max-src-conn-rate 5/0 out of range: 1-1000000 connections per 1-86400 seconds"
        );
        assert_eq!(
            refused(&|r| r.keep_state = false),
            "rule 1: `max-src-conn` needs a rule that keeps state: with `no state` it opens no flows"
        );
        assert_eq!(
            refused(&|r| r.source_limits = rules::SourceLimits::default()),
            "rule 1: `overload` needs what judges a source: `max-src-conn`, `max-src-conn-rate` or a per-source rate (`rate N/s per-source`)"
        );
        assert_eq!(
            refused(&|r| {
                r.source_limits = rules::SourceLimits::default();
                r.rate = Some(rules::Rate { packets: 1, seconds: 1, burst: 1, per_source: Some(Default::default()) });
            }),
            "rule 1: `flush` needs `max-src-conn` or `max-src-conn-rate`: a packet rate can be tripped by spoofed packets, which must not end someone else's flows"
        );
        assert_eq!(
            refused(&|r| r.protocols = Some(vec![17])),
            "rule 1: `max-src-conn` counts TCP connections, and this rule matches no TCP (it needs `proto tcp`)"
        );
    }

    #[test]
    fn api_text_reads_tables_only_inside_the_table_directory() {
        let dir = std::env::temp_dir().join(format!("xdpwall-input-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/ok.txt"), "192.0.2.1\n").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join("escape.txt")).unwrap();
        let put = |path: &str| {
            let src = format!("table <t> file \"{path}\"\nblock in quick from <t>\n");
            parse(src.as_bytes(), false, &dir)
        };
        assert_eq!(put("sub/ok.txt").unwrap().tables["t"].entries.len(), 1);
        for path in ["/etc/passwd", "../etc/passwd", "sub/../../x", "escape.txt"] {
            let e = put(path).unwrap_err();
            assert_eq!((e.line, e.col), (1, 16), "{path}");
            assert!(e.message.starts_with("table files must be inside the table directory"), "{path}: {e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
