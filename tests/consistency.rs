//! What the operator is told stays true whatever happens to the process or the files:
//! an apply killed or failing at every step leaves one complete ruleset enforcing and a
//! true `status`; a lost state file, a re-created interface, lost counters or pins of
//! another layout are found and explained; the state belongs to root alone.

use std::{
    net::{SocketAddr, UdpSocket},
    os::unix::{fs::PermissionsExt as _, process::CommandExt as _},
    path::Path,
    time::Duration,
};

use filter_user::dataplane::Status;
use serde_json::Value;
use xdpwall_tests::{
    TempDir,
    cli::Xdpwall,
    netns::{Netns, VethPair},
};

const CLOSED: &str = "set default pass\nblock in quick proto udp to port 7000 label \"closed\"\n";
const OPEN: &str = "set default pass\npass in quick proto udp to port 7000 label \"open\" no state\n";

/// `status --json` (when it printed a report), its exit code and stderr.
fn status(fw: &Xdpwall) -> (Option<Status>, Option<i32>, String) {
    let (report, out) = fw.status_report().expect("status runs");
    (report, out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn label_packets(st: &Option<Status>, label: &str) -> Option<u64> {
    st.as_ref()?.rule(label).map(|r| r.packets)
}

/// Sends one datagram to port 7000 of every pair's host end; whether each arrived.
fn probe(ns: &Netns, pairs: &[&VethPair]) -> Vec<bool> {
    pairs
        .iter()
        .map(|p| {
            let to = SocketAddr::new(p.host_v4.into(), 7000);
            let sock = UdpSocket::bind(to).unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
            ns.run(|| UdpSocket::bind("0.0.0.0:0").unwrap().send_to(b"x", to).unwrap());
            sock.recv(&mut [0u8; 4]).is_ok()
        })
        .collect()
}

/// The points an apply over two interfaces passes (`XDPWALL_FAULT=count`).
fn fault_points(fw: &Xdpwall, rules: &str) -> Vec<String> {
    let out = fw.command(["apply", rules]).env("XDPWALL_FAULT", "count").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stderr).lines().filter(|l| l.starts_with("fault point ")).map(String::from).collect()
}

#[test]
fn an_apply_killed_or_failing_at_any_step_leaves_one_ruleset_enforcing_and_a_true_status() {
    let ns = Netns::new("crash").unwrap();
    let (a, b) = (VethPair::new(&ns).unwrap(), VethPair::new(&ns).unwrap());
    let fw = Xdpwall::isolated();
    let dir = TempDir::new("crash");
    let (closed, open) =
        (dir.write("closed.conf", CLOSED).display().to_string(), dir.write("open.conf", OPEN).display().to_string());
    fw.run(["load", &a.host, &b.host, &closed]).expect("load");
    // Counting passes every point once and leaves `open` applied.
    let points = fault_points(&fw, &open);
    assert!(points.len() >= 8, "journal, pins, two swaps per interface, commit, promotion: {points:?}");
    let mut enforcing_open = true;
    for (i, point) in points.iter().enumerate() {
        for how in ["kill", "fail"] {
            let target = if enforcing_open { &closed } else { &open };
            let out = fw.command(["apply", target]).env("XDPWALL_FAULT", format!("{how}:{}", i + 1)).output().unwrap();
            // Past the commit point (the state file written) the apply stands.
            let committed = point.contains("committed") || point.contains("promote");
            match how {
                "kill" => assert_eq!(out.status.code(), None, "{point}: killed by the signal"),
                _ => assert_eq!(out.status.success(), committed, "{point}: a failure before the commit is reported"),
            }
            // The next command recovers: finished when the state was written, else undone.
            let (st, code, err) = status(&fw);
            assert_eq!(code, Some(0), "after {how} at {point}: status is healthy: {err} {st:?}");
            let now_open = label_packets(&st, "open").is_some();
            let expect_open = if committed { !enforcing_open } else { enforcing_open };
            assert_eq!(
                now_open,
                expect_open,
                "after {how} at {point}: status describes the ruleset that {}",
                if expect_open { "opens" } else { "closes" }
            );
            assert!(st.as_ref().is_some_and(|st| st.interfaces.iter().all(|i| i.attached)), "{how} at {point}: {st:?}");
            // What is enforced is what status says, on both interfaces.
            let label = if now_open { "open" } else { "closed" };
            let before = label_packets(&st, label).unwrap();
            assert_eq!(probe(&ns, &[&a, &b]), [now_open, now_open], "after {how} at {point}: enforcement");
            let (st, _, _) = status(&fw);
            assert_eq!(
                label_packets(&st, label).unwrap(),
                before + 2,
                "after {how} at {point}: the described rule counted both"
            );
            let leftovers: Vec<_> = std::fs::read_dir(fw.run_dir())
                .unwrap()
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                // The control plane's lock and its record of the ruleset in force stay too.
                .filter(|n| !["lock", "state.json", "control.lock", "ruleset.json"].contains(&n.as_str()))
                .collect();
            assert!(leftovers.is_empty(), "after {how} at {point}: {leftovers:?} left behind");
            enforcing_open = now_open;
        }
    }
    // And the next apply goes through.
    let target = if enforcing_open { &closed } else { &open };
    fw.run(["apply", target]).expect("apply after the sweep");
    assert_eq!(probe(&ns, &[&a, &b]), [!enforcing_open, !enforcing_open]);
}

#[test]
fn a_lost_state_file_is_explained_adopted_or_force_unloaded() {
    let ns = Netns::new("adopt").unwrap();
    let veth = VethPair::new(&ns).unwrap();
    let fw = Xdpwall::isolated();
    let dir = TempDir::new("adopt");
    let closed = dir.write("closed.conf", CLOSED).display().to_string();
    fw.run(["load", &veth.host, &closed]).expect("load");
    let state = fw.run_dir().join("state.json");

    std::fs::remove_file(&state).unwrap();
    for args in [vec!["status"], vec!["unload"]] {
        let out = fw.output(&args).unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("is missing or unreadable; `xdpwall apply RULES` adopts the pinned interfaces"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(probe(&ns, &[&veth]), [false], "the stranded filter still enforces");
    let out = fw.output(["load", &veth.host, &closed]).unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("is already loaded"), "{out:?}");
    let out = fw.run(["apply", &closed]).expect("apply adopts");
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("adopted {} from the pins", veth.host)), "{out:?}");
    let (st, code, _) = status(&fw);
    assert_eq!(code, Some(0), "{st:?}");
    assert_eq!(probe(&ns, &[&veth]), [false]);
    assert_eq!(label_packets(&status(&fw).0, "closed"), Some(1), "counting again");

    // A state file with an impossible counter slot is not believed either.
    let mut bad: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    bad["rules"][0]["counter"] = 1_000_000.into();
    std::fs::write(&state, serde_json::to_vec(&bad).unwrap()).unwrap();
    let (_, code, err) = status(&fw);
    assert_eq!(code, Some(1));
    assert!(err.contains("missing or unreadable"), "{err}");

    fw.run(["unload", "--force"]).expect("unload --force");
    assert!(!fw.pin_dir().exists(), "every pin removed");
    assert_eq!(probe(&ns, &[&veth]), [true], "nothing filters any more");
    let out = std::process::Command::new("ip").args(["link", "show", &veth.host]).output().unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains(" xdp"), "XDP detached");
}

#[test]
fn a_recreated_interface_is_reported_then_attached_again() {
    let ns = Netns::new("recreate").unwrap();
    let veth = VethPair::new(&ns).unwrap();
    let fw = Xdpwall::isolated();
    let dir = TempDir::new("recreate");
    let closed = dir.write("closed.conf", CLOSED).display().to_string();
    fw.run(["load", &veth.host, &closed]).expect("load");
    assert_eq!(probe(&ns, &[&veth]), [false]);

    // The same names again, the link gone with the old device.
    let ip =
        |args: &[&str]| assert!(std::process::Command::new("ip").args(args).status().unwrap().success(), "ip {args:?}");
    ip(&["link", "delete", &veth.host]);
    ip(&["link", "add", &veth.host, "type", "veth", "peer", "name", &veth.peer, "netns", &veth.netns]);
    ip(&["addr", "add", &format!("{}/24", veth.host_v4), "dev", &veth.host]);
    ip(&["link", "set", &veth.host, "up"]);
    ip(&["-n", &veth.netns, "addr", "add", &format!("{}/24", veth.peer_v4), "dev", &veth.peer]);
    ip(&["-n", &veth.netns, "link", "set", &veth.peer, "up"]);
    // The new pair is usable once a ping gets through (neighbour resolution on a busy machine).
    assert!((0..20).any(|_| ns.ping_replies(veth.host_v4.into(), 1) == 1), "the re-created pair carries traffic");
    assert_eq!(probe(&ns, &[&veth]), [true], "the new device is not filtered");
    let (st, code, _) = status(&fw);
    assert_eq!(code, Some(1), "status fails while an interface filters nothing");
    let problem = st.as_ref().and_then(|st| st.interfaces[0].problem.clone()).unwrap_or_default();
    assert!(problem.contains("removed") || problem.contains("re-created"), "{st:?}");
    let text = fw.output(["status"]).unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains("NOT FILTERED"), "{text:?}");

    let out = fw.run(["apply", &closed]).expect("apply attaches again");
    assert!(String::from_utf8_lossy(&out.stdout).contains("attaching again"), "{out:?}");
    assert_eq!(status(&fw).1, Some(0));
    assert_eq!(probe(&ns, &[&veth]), [false], "filtered again");
}

#[test]
fn lost_counters_and_pins_of_another_layout_are_explained() {
    let ns = Netns::new("abi").unwrap();
    let veth = VethPair::new(&ns).unwrap();
    let fw = Xdpwall::isolated();
    let dir = TempDir::new("abi");
    let closed = dir.write("closed.conf", CLOSED).display().to_string();
    fw.run(["load", &veth.host, &closed]).expect("load");
    assert_eq!(probe(&ns, &[&veth]), [false]);

    std::fs::remove_file(fw.pin_dir().join("COUNTERS")).unwrap();
    let out = fw.run(["apply", &closed]).expect("apply");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("every rule's counter restarts at zero") && stdout.contains("1 added, 0 removed, 0 unchanged"),
        "{stdout}"
    );
    assert_eq!(label_packets(&status(&fw).0, "closed"), Some(0));

    let abi = aya::maps::MapData::from_pin(fw.pin_dir().join("ABI")).expect("the layout version is pinned");
    let mut abi: aya::maps::Array<_, u32> = aya::maps::Map::from_map_data(abi).unwrap().try_into().unwrap();
    assert_eq!(abi.get(&0, 0).unwrap(), filter_common::ABI_VERSION);
    abi.set(0, 9999, 0).unwrap();
    for args in [vec!["status"], vec!["apply", closed.as_str()]] {
        let out = fw.output(&args).unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("have layout version 9999"), "{args:?}: {err}");
    }
    assert_eq!(probe(&ns, &[&veth]), [false], "still enforcing, untouched");
    abi.set(0, filter_common::ABI_VERSION, 0).unwrap();
}

#[test]
fn the_state_belongs_to_root_alone() {
    let ns = Netns::new("owner").unwrap();
    let veth = VethPair::new(&ns).unwrap();
    let fw = Xdpwall::isolated();
    let dir = TempDir::new("owner");
    let closed = dir.write("closed.conf", CLOSED).display().to_string();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;

    // A pin directory another user made first is refused, and nothing is attached.
    std::fs::create_dir_all(fw.pin_dir()).unwrap();
    std::os::unix::fs::chown(fw.pin_dir(), Some(65534), Some(65534)).unwrap();
    let out = fw.output(["load", &veth.host, &closed]).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("xdpwall: refusing to use {}: it belongs to another user\n", fw.pin_dir().display())
    );
    assert_eq!(probe(&ns, &[&veth]), [true]);
    std::fs::remove_dir(fw.pin_dir()).unwrap();

    fw.run(["load", &veth.host, &closed]).expect("load");
    assert_eq!(mode(fw.run_dir()), 0o700);
    assert_eq!(mode(fw.pin_dir()), 0o700);
    assert_eq!(mode(&fw.run_dir().join("lock")), 0o600);
    assert_eq!(mode(&fw.run_dir().join("state.json")), 0o600);

    // Another user can neither take the lock nor run a command: told so plainly.
    let as_nobody = |args: &[&str]| {
        let mut cmd = fw.command(args);
        cmd.uid(65534).gid(65534);
        cmd.output().unwrap()
    };
    let out = as_nobody(&["status"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "xdpwall: xdpwall needs root (CAP_BPF and CAP_NET_ADMIN) for this command\n"
    );
    let lock = std::process::Command::new("flock")
        .args(["-n", "-s", fw.run_dir().join("lock").to_str().unwrap(), "true"])
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert!(!lock.status.success(), "another user cannot open the lock");
    assert_eq!(status(&fw).1, Some(0));
}

#[test]
fn a_failed_load_leaves_nothing_and_load_racing_unload_never_tangles() {
    let ns = Netns::new("race").unwrap();
    let veth = VethPair::new(&ns).unwrap();
    let fw = Xdpwall::isolated();
    let dir = TempDir::new("race");
    let closed = dir.write("closed.conf", CLOSED).display().to_string();
    let out = fw.output(["load", "xw-no-such-if", &closed]).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(!fw.pin_dir().exists(), "a failed load pins nothing and makes no directory");

    for round in 0..6 {
        let mut load = fw.command(["load", &veth.host, &closed]).spawn().unwrap();
        let unload = fw.output(["unload"]).unwrap();
        let load = load.wait().unwrap();
        let unload_err = String::from_utf8_lossy(&unload.stderr).into_owned();
        assert!(load.success(), "round {round}: load waits for the lock instead of failing");
        assert!(unload.status.success() || unload_err.contains("is not loaded"), "round {round}: {unload_err}");
        let (_, code, err) = status(&fw);
        match code {
            Some(0) => assert_eq!(probe(&ns, &[&veth]), [false], "round {round}: loaded and enforcing"),
            _ => {
                assert!(err.contains("is not loaded"), "round {round}: {err}");
                assert_eq!(probe(&ns, &[&veth]), [true], "round {round}: unloaded and not filtering");
            }
        }
        let _ = fw.output(["unload"]);
    }
}
