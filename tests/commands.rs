//! The CLI against a loaded filter: bad rulesets are reported with file:line:col and
//! change nothing, neither the rules nor the counters nor what traffic gets through.

use std::{net::IpAddr, path::Path};

use filter_user::dataplane::Status;
use xdpwall_tests::{
    TempDir,
    cli::Xdpwall,
    netns::{Netns, VethPair},
};

const GOOD: &str = "set default block\n\
                    table <lab> { 10.201.0.0/16, fd00:201::/32 }\n\
                    pass in quick proto icmp icmp-type echoreq label \"ping\" no state\n\
                    pass in quick proto icmp6 no state\n\
                    pass in quick proto tcp from <lab> to port 22 no state\n";

/// (name, ruleset text, table file text, expected "line:col: message" in the ruleset or table file)
const BAD: &[(&str, &str, &str, &str)] = &[
    (
        "syntax",
        "pass in proto icmp\npass in proto tcp frmo any\n",
        "",
        "RULES:2:19: expected `all`, `from`, `to`, an option or end of rule, found `frmo` (did you mean `from`?)",
    ),
    ("unknown table", "set default block\n\nblock in from <nope>\n", "", "RULES:3:15: unknown table <nope>"),
    (
        "bad prefix",
        "block in from 10.0.0.0/33\n",
        "",
        "RULES:1:15: bad address or prefix `10.0.0.0/33`: prefix length 33 is more than 32",
    ),
    (
        "port out of range",
        "pass in proto icmp\n  pass in proto tcp to port 70000\n",
        "",
        "RULES:2:29: port 70000 out of range 0-65535",
    ),
    (
        "bad table file line",
        "table <t> file \"TABLE\"\nblock in from <t>\n",
        "10.0.0.1\n# fine\n10.0.0.300\n",
        "TABLE:3:1: bad address or prefix `10.0.0.300`: `10.0.0.300` is not an IPv4 or IPv6 address",
    ),
    ("port without proto", "pass in to port 22\n", "", "RULES:1:12: port needs `proto tcp`, `udp` or `sctp`"),
    (
        "source limit",
        "table <f> persist\npass in proto tcp to port 22 keep state (max-src-conn 5, \\\n  max-src-conn-rate 0/3)\n",
        "",
        "RULES:3:21: connections 0 out of range 1-1000000",
    ),
];

fn status(fw: &Xdpwall) -> Status {
    fw.status().expect("status")
}

fn rule_texts(st: &Status) -> Vec<String> {
    st.rules.iter().map(|r| r.text.clone()).collect()
}

fn ping_count(st: &Status) -> u64 {
    st.rules[0].packets
}

fn has_xdp(iface: &str) -> bool {
    let out = std::process::Command::new("ip").args(["link", "show", iface]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).contains(" xdp")
}

#[test]
fn bad_rulesets_name_line_and_column_and_change_nothing() {
    let ns = Netns::new("cli").unwrap();
    let veth = VethPair::new(&ns).unwrap();
    let spare = VethPair::new(&ns).unwrap();
    let fw = Xdpwall::isolated();
    let dir = TempDir::new("cli");
    let good = dir.write("good.conf", GOOD);
    fw.run(["load", &veth.host, good.to_str().unwrap()]).expect("load");
    let host: IpAddr = veth.host_v4.into();
    assert_eq!(ns.ping_replies(host, 2), 2);
    let before = status(&fw);
    assert_eq!(ping_count(&before), 2);

    for (name, rules, table, expected) in BAD {
        let table_path = dir.write(&format!("{}.txt", name.replace(' ', "-")), table);
        let rules_path = dir
            .write(&format!("{}.conf", name.replace(' ', "-")), &rules.replace("TABLE", table_path.to_str().unwrap()));
        let expected = format!(
            "xdpwall: {}\n",
            expected.replace("RULES", rules_path.to_str().unwrap()).replace("TABLE", table_path.to_str().unwrap())
        );
        for cmd in ["check", "apply"] {
            let out = fw.output([cmd, rules_path.to_str().unwrap()]).unwrap();
            assert_eq!(out.status.code(), Some(1), "{name}: `{cmd}` fails");
            assert_eq!(String::from_utf8_lossy(&out.stderr), expected, "{name}: `{cmd}` error");
            assert!(out.stdout.is_empty(), "{name}: `{cmd}` prints nothing else");
        }
        let out = fw.output(["load", &spare.host, rules_path.to_str().unwrap()]).unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stderr), expected, "{name}: `load` error");
        assert!(!has_xdp(&spare.host), "{name}: a failed load attaches nothing");

        let after = status(&fw);
        assert_eq!(after.generation, before.generation, "{name}: no new generation");
        assert_eq!(rule_texts(&after), rule_texts(&before), "{name}: rules unchanged");
        assert_eq!(ping_count(&after), 2, "{name}: counters untouched");
        assert_eq!(after.interfaces.len(), 1, "{name}: interfaces unchanged");
    }

    // The old ruleset still enforces exactly as before.
    assert_eq!(ns.ping_replies(host, 2), 2);
    assert_eq!(ping_count(&status(&fw)), 4);

    // Operational mistakes are clear and change nothing either.
    let out = fw.output(["load", "xw-no-such-if", good.to_str().unwrap()]).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stderr), "xdpwall: no interface named xw-no-such-if\n");
    let out = fw.output(["load", &veth.host, good.to_str().unwrap()]).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("xdpwall: {} is already loaded; use `xdpwall apply` to change its rules\n", veth.host)
    );
    assert_eq!(status(&fw).generation, before.generation);

    // A good apply after all that works and keeps the counter of the unchanged rule.
    let dry = fw.run(["apply", good.to_str().unwrap(), "--dry-run"]).unwrap();
    assert!(String::from_utf8_lossy(&dry.stdout).contains("0 added, 0 removed, 3 unchanged"), "{dry:?}");
    fw.run(["apply", good.to_str().unwrap()]).unwrap();
    let st = status(&fw);
    assert_eq!(st.generation, 2);
    assert_eq!(ping_count(&st), 4);
}

#[test]
fn commands_without_a_loaded_filter_explain_themselves() {
    let fw = Xdpwall::isolated();
    // A real ruleset: /dev/null (a device, and empty) is refused before the state is read.
    let dir = TempDir::new("notloaded");
    let good = dir.write("good.conf", GOOD);
    for args in [vec!["status"], vec!["unload"], vec!["apply", good.to_str().unwrap()]] {
        let out = fw.output(&args).unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("xdpwall: xdpwall is not loaded"), "{args:?}: {err}");
    }
    let out = fw.output(["check", "/nonexistent/x.conf"]).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("xdpwall: /nonexistent/x.conf"), "{out:?}");
    assert!(!Path::new(fw.pin_dir()).join("COUNTERS").exists());
}

#[test]
fn vlan_rules_turn_vlan_stripping_off_and_say_so() {
    let ns = Netns::new("vlan").unwrap();
    let veth = VethPair::new(&ns).unwrap();
    let fw = Xdpwall::isolated();
    let dir = TempDir::new("vlan");
    let rules = dir.write("vlan.conf", "block in vlan 100\n");
    let ethtool = |iface: &str| {
        let out = std::process::Command::new("ethtool").args(["-k", iface]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).lines().find(|l| l.starts_with("rx-vlan-offload:")).unwrap().to_string()
    };
    assert_eq!(ethtool(&veth.host), "rx-vlan-offload: on", "veth strips by default");
    let out = fw.run(["load", &veth.host, rules.to_str().unwrap()]).expect("load");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("note: {}: turned off VLAN stripping (rx-vlan-offload", veth.host)), "{stdout}");
    assert_eq!(ethtool(&veth.host), "rx-vlan-offload: off");
}
