//! The suite `cargo xtask vmtest` runs inside each guest (`xtask vmtest-guest`, PID 1's
//! child, chrooted into the host's root shared read-only over 9p).
//!
//! The guest has two igb NICs on one QEMU hub: the first (A) stays in the root namespace
//! and gets xdpwall; the second (B) goes into a network namespace and is the peer that
//! sends real TCP, UDP, ICMP and ICMPv6 to A, also over VLAN 100. Every check prints
//! `vmtest: PASS <check>` or `vmtest: FAIL <check>: <why>`, and the last line is
//! `vmtest: RESULT <label> (<uname -r>): N passed, M failed`, which the host reports.
//!
//! Counters are compared exactly: UDP, ICMP and VLAN checks send a known number of
//! packets; TCP checks compare the rule's counter with the number of segments the peer's
//! kernel says it sent (`Tcp: OutSegs + RetransSegs` of the peer's namespace), which
//! counts SYN retransmits and the closing handshake too.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use serde_json::Value;
use xdpwall_tests::cli::Xdpwall;
use xdpwall_tests::netns::Netns;

#[derive(Args)]
pub struct GuestArgs {
    /// The matrix label of this kernel, for the report.
    #[arg(long)]
    kernel: String,
    /// The xdpwall binary under test.
    #[arg(long)]
    xdpwall: PathBuf,
}

const A_V4: Ipv4Addr = Ipv4Addr::new(10, 98, 0, 1);
const B_V4: Ipv4Addr = Ipv4Addr::new(10, 98, 0, 2);
const A_V6: Ipv6Addr = Ipv6Addr::new(0xfd98, 0, 0, 0, 0, 0, 0, 1);
const B_V6: Ipv6Addr = Ipv6Addr::new(0xfd98, 0, 0, 0, 0, 0, 0, 2);
const A_VLAN: Ipv4Addr = Ipv4Addr::new(10, 98, 100, 1);
const B_VLAN: Ipv4Addr = Ipv4Addr::new(10, 98, 100, 2);
const VLAN: u16 = 100;
/// How long a receiver waits for one more datagram once the sender is done.
const QUIET: Duration = Duration::from_millis(500);

/// The ruleset the traffic checks run against. Each check has its own rule (and label),
/// so its counter moves only with the check's own packets: every rule is `quick` and
/// the pass rules say `no state` (pf's default would pass a flow's later packets by
/// state, uncounted by the rule), but for the one the state check is about. That one
/// also has limits per source, well above what the check opens, so that its flows take
/// and mark slots on both kernels; the idle rule on port 7501 brings in the flush path,
/// the one on 7601 the answer program (`block return`), so that both kernels verify it.
const RULES: &str = r#"
table <vm-overload> persist
pass  in quick proto tcp to port 7001 no state label "tcp-pass"
block in quick proto tcp to port 7002 label "tcp-block"
pass  in quick inet6 proto tcp to port 7003 no state label "tcp6-pass"
pass  in quick proto udp to port 7101 no state label "udp-pass"
block in quick proto udp to port 7102 label "udp-block"
block in quick inet6 proto udp to port 7103 label "udp6-block"
block in quick inet proto icmp icmp-type echo-request label "icmp-block"
pass  in quick inet6 proto icmp6 icmp6-type echo-request no state label "icmp6-pass"
pass  in quick proto udp to port 7201 vlan 100 no state label "vlan-pass"
block in quick proto udp to port 7202 vlan 100 label "vlan-block"
pass  out quick proto tcp to port 7301 keep state (max-src-states 64, max-src-conn 48) label "out-tcp-state"
pass  in quick proto tcp to port 7501 keep state (max-src-conn-rate 100/1, overload <vm-overload> flush global) label "src-limits"
block return in quick proto { tcp udp } to port 7601 label "answered"
block in quick proto tcp from port 7301 label "tcp-from-7301"
block out quick proto udp to port 7401 label "out-block"
"#;

/// What `apply` alternates with [`RULES`] under traffic: one rule more, the rest (and
/// their labels, so their counters) the same.
fn rules_changed() -> String {
    format!("block in quick proto udp to port 7104 label \"added-by-apply\"\n{RULES}")
}

/// The check running now and since when, for the watchdog.
static CURRENT: std::sync::Mutex<Option<(String, Instant)>> = std::sync::Mutex::new(None);
/// A check still running after this long is reported as hung and the suite ends, so a
/// hang names its check instead of running into the host's timeout.
const HUNG: Duration = Duration::from_secs(90);

/// A timestamped line about what a check is doing, to see where time goes (or stops).
fn progress(what: &str) {
    let up = std::fs::read_to_string("/proc/uptime").unwrap_or_default();
    println!("vmtest:   [{}] {what}", up.split_whitespace().next().unwrap_or("?"));
}

fn watchdog(label: String, release: String, suite: Arc<std::sync::Mutex<(u32, u32)>>) {
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_secs(1));
            let current = CURRENT.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if let Some((name, since)) = current
                && since.elapsed() > HUNG
            {
                let (passed, failed) = *suite.lock().unwrap_or_else(|e| e.into_inner());
                println!("vmtest: FAIL {name}: still running after {} s (hung)", HUNG.as_secs());
                println!("vmtest: RESULT {label} ({release}): {passed} passed, {} failed", failed + 1);
                std::process::exit(1);
            }
        }
    });
}

pub fn run(args: &GuestArgs) -> Result<()> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    let mut suite = Suite { counts: Arc::new(std::sync::Mutex::new((0, 0))) };
    watchdog(args.kernel.clone(), release.clone(), suite.counts.clone());
    println!(
        "vmtest: guest up: kernel {release}, {} CPUs",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    if let Err(e) = checks(&mut suite, args) {
        suite.fail("suite setup", &e);
    }
    let (passed, failed) = *suite.counts.lock().unwrap_or_else(|e| e.into_inner());
    println!("vmtest: RESULT {} ({release}): {passed} passed, {failed} failed", args.kernel);
    Ok(())
}

/// Passed and failed checks, shared with the watchdog.
struct Suite {
    counts: Arc<std::sync::Mutex<(u32, u32)>>,
}

impl Suite {
    /// Runs one check and reports it; returns whether it passed.
    fn check(&mut self, name: &str, f: impl FnOnce() -> Result<()>) -> bool {
        *CURRENT.lock().unwrap_or_else(|e| e.into_inner()) = Some((name.to_string(), Instant::now()));
        let result = f();
        *CURRENT.lock().unwrap_or_else(|e| e.into_inner()) = None;
        match result {
            Ok(()) => {
                println!("vmtest: PASS {name}");
                self.counts.lock().unwrap_or_else(|e| e.into_inner()).0 += 1;
                true
            }
            Err(e) => {
                self.fail(name, &e);
                false
            }
        }
    }

    fn fail(&mut self, name: &str, e: &anyhow::Error) {
        println!("vmtest: FAIL {name}: {}", format!("{e:#}").replace('\n', " | "));
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).1 += 1;
    }
}

/// The test bed: A in the root namespace, B in `ns`, VLAN 100 on both.
struct Bed {
    a: String,
    ns: Netns,
    xdpwall: Xdpwall,
    dir: PathBuf,
}

fn checks(s: &mut Suite, args: &GuestArgs) -> Result<()> {
    let nics = igb_nics()?;
    ensure!(nics.len() == 2, "expected two igb NICs, found {nics:?}");
    let (a, b) = (nics[0].clone(), nics[1].clone());
    println!(
        "vmtest: igb NICs: {a} (filter) and {b} (peer); {}",
        cmd_out("ethtool", &["-i", &a])?.lines().take(2).collect::<Vec<_>>().join(", ")
    );
    let bed = bed(a, b, args)?;
    let a = bed.a.as_str();

    s.check("traffic flows before load (ping v4 and v6)", || {
        ensure!(bed.ns.ping_replies(A_V4.into(), 2) == 2, "ping 10.98.0.1 from the peer");
        ensure!(bed.ns.ping_replies(A_V6.into(), 2) == 2, "ping fd98::1 from the peer");
        Ok(())
    });

    s.check("load refused on igb with MTU 9000, naming the igb XDP frame limit", || {
        ip(&["link", "set", a, "mtu", "9000"])?;
        let out = bed.xdpwall.output(["load", a, &bed.rules_file("rules.conf")])?;
        ip(&["link", "set", a, "mtu", "1500"])?;
        wait_carrier(a)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(!out.status.success(), "load succeeded at MTU 9000: {}", String::from_utf8_lossy(&out.stdout));
        ensure!(stderr.contains("igb") && stderr.contains("3046"), "message does not name the igb limit: {stderr}");
        ensure!(!xdp_attached(a)?, "XDP stayed attached after the refused load");
        let k = cmd_out("ethtool", &["-k", a])?;
        ensure!(k.lines().any(|l| l.trim() == "rx-vlan-offload: on"), "the refused load changed VLAN offload");
        println!("vmtest:   xdpwall said: {}", stderr.trim());
        Ok(())
    });

    let mut load_output = String::new();
    let loaded = s.check("load attaches native XDP on igb (ip link shows xdp, not xdpgeneric)", || {
        let before = carrier_changes(a)?;
        let out = bed.xdpwall.run(["load", a, &bed.rules_file("rules.conf")])?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        for line in text.lines().filter(|l| !l.starts_with("+ ")) {
            println!("vmtest:   load: {line}");
        }
        load_output = text.clone();
        wait_carrier(a)?;
        println!("vmtest:   carrier changes during attach: {}", carrier_changes(a)? - before);
        let link = cmd_out("ip", &["link", "show", a])?;
        ensure!(link.contains(" xdp ") || link.contains(" xdp\n"), "no native xdp in `ip link show {a}`: {link}");
        ensure!(!link.contains("xdpgeneric"), "generic XDP: {link}");
        ensure!(text.contains(&format!("attached to {a} (native XDP)")), "load did not report native XDP: {text}");
        let status = bed.status()?;
        ensure!(status["interfaces"][0]["mode"] == "native", "status mode: {}", status["interfaces"][0]);
        ensure!(status["interfaces"][0]["attached"] == true, "status says not attached");
        Ok(())
    });
    if !loaded {
        bail!("xdpwall did not load; the traffic checks cannot run");
    }

    s.check("load turned rx-vlan-offload off for the vlan rules, and said so", || {
        ensure!(load_output.contains("turned off VLAN stripping"), "no note about VLAN stripping in the load output");
        let k = cmd_out("ethtool", &["-k", a])?;
        ensure!(k.lines().any(|l| l.trim() == "rx-vlan-offload: off"), "ethtool -k {a}: {k}");
        Ok(())
    });

    let tcx = kernel_at_least(6, 6);
    s.check(
        if tcx {
            "TC egress attached as a tcx link (Linux 6.6+)"
        } else {
            "TC egress attached as a classic clsact filter (before 6.6)"
        },
        || {
            let (kind, prog) = bed.egress_hook(tcx)?;
            println!("vmtest:   egress: {kind}, program id {prog}");
            Ok(())
        },
    );

    s.check("ICMP echo blocked by rule, counted exactly", || {
        let before = bed.rule("icmp-block")?;
        ensure!(bed.ns.ping_replies(A_V4.into(), 3) == 0, "a ping got through");
        bed.expect_rule("icmp-block", before + 3)
    });
    s.check("ICMPv6 echo passed by rule, counted exactly", || {
        let before = bed.rule("icmp6-pass")?;
        ensure!(bed.ns.ping_replies(A_V6.into(), 3) == 3, "not every ping6 was answered");
        bed.expect_rule("icmp6-pass", before + 3)
    });
    s.check("UDP passed by rule, counted exactly", || bed.udp_check(A_V4.into(), 7101, "udp-pass", 20, true));
    s.check("UDP blocked by rule, counted exactly", || bed.udp_check(A_V4.into(), 7102, "udp-block", 20, false));
    s.check("UDP over IPv6 passed by rule, counted exactly", || bed.udp_check(A_V6.into(), 7101, "udp-pass", 20, true));
    s.check("UDP over IPv6 blocked by rule, counted exactly", || {
        bed.udp_check(A_V6.into(), 7103, "udp6-block", 20, false)
    });
    s.check("TCP passed by rule, counted exactly", || bed.tcp_check(A_V4.into(), 7001, "tcp-pass", true));
    s.check("TCP blocked by rule, counted exactly", || bed.tcp_check(A_V4.into(), 7002, "tcp-block", false));
    s.check("TCP over IPv6 passed by rule, counted exactly", || bed.tcp_check(A_V6.into(), 7003, "tcp6-pass", true));
    s.check("VLAN 100 UDP passed by a vlan rule, counted exactly", || {
        bed.udp_check(A_VLAN.into(), 7201, "vlan-pass", 20, true)
    });
    s.check("VLAN 100 UDP blocked by a vlan rule, counted exactly", || {
        bed.udp_check(A_VLAN.into(), 7202, "vlan-block", 20, false)
    });
    s.check("outbound UDP blocked by an out rule (TC egress), counted exactly", || bed.out_block_check());
    s.check("keep state across both RX queues: replies pass only by state", || bed.state_check());
    s.check("apply under traffic: no carrier loss, nothing allowed lost, counters carried", || {
        bed.apply_under_traffic()
    });

    s.check("MTU raise while loaded is refused by igb and explained by status", || {
        let refused = Command::new("ip").args(["link", "set", a, "mtu", "9000"]).output()?;
        ensure!(!refused.status.success(), "igb accepted MTU 9000 with XDP attached");
        let status = String::from_utf8_lossy(&bed.xdpwall.run(["status"])?.stdout).into_owned();
        let explained = status.lines().find(|l| l.contains("MTU")).unwrap_or_default().to_string();
        ensure!(explained.contains("1510"), "status does not explain the MTU limit: {status}");
        println!("vmtest:   status: {}", explained.trim());
        ip(&["link", "set", a, "mtu", "1510"]).context("igb refused MTU 1510 with XDP attached")?;
        let over = Command::new("ip").args(["link", "set", a, "mtu", "1511"]).output()?;
        ip(&["link", "set", a, "mtu", "1500"])?;
        wait_carrier(a)?;
        ensure!(!over.status.success(), "igb accepted MTU 1511 with XDP attached");
        Ok(())
    });

    s.check("unload detaches both hooks and restores traffic", || {
        bed.xdpwall.run(["unload"])?;
        wait_carrier(a)?;
        ensure!(!xdp_attached(a)?, "`ip link show {a}` still shows XDP");
        let net = cmd_out("bpftool", &["net", "show", "dev", a])?;
        ensure!(!net.contains("xdpwall"), "bpftool net still shows a program: {net}");
        let tc = cmd_out("tc", &["filter", "show", "dev", a, "egress"])?;
        ensure!(!tc.contains("xdpwall"), "a TC egress filter stayed: {tc}");
        let links: Value = serde_json::from_str(&cmd_out("bpftool", &["-j", "link", "show"])?)?;
        let tcx_links = links.as_array().map_or(0, |l| l.iter().filter(|l| l["type"] == 11).count());
        ensure!(tcx_links == 0, "{tcx_links} tcx links stayed");
        ensure!(bed.ns.ping_replies(A_V4.into(), 2) == 2, "the blocked ping still does not pass");
        Ok(())
    });
    Ok(())
}

/// igb interfaces in PCI slot order.
fn igb_nics() -> Result<Vec<String>> {
    let mut nics = Vec::new();
    for entry in std::fs::read_dir("/sys/class/net")? {
        let entry = entry?;
        let dev = entry.path().join("device");
        let driver = std::fs::read_link(dev.join("driver")).ok();
        if driver.as_deref().and_then(Path::file_name).is_some_and(|d| d == "igb") {
            let slot = std::fs::read_link(&dev)?.file_name().map(|s| s.to_string_lossy().into_owned());
            nics.push((slot, entry.file_name().to_string_lossy().into_owned()));
        }
    }
    nics.sort();
    Ok(nics.into_iter().map(|(_, n)| n).collect())
}

fn bed(a: String, b: String, args: &GuestArgs) -> Result<Bed> {
    let ns = Netns::new("vm")?;
    let nsn = ns.name().to_string();
    let a_vlan = format!("{a}.{VLAN}");
    let b_vlan = format!("{b}.{VLAN}");
    ip(&["link", "set", &b, "netns", &nsn])?;
    ip(&["addr", "add", &format!("{A_V4}/24"), "dev", &a])?;
    ip(&["-6", "addr", "add", &format!("{A_V6}/64"), "dev", &a, "nodad"])?;
    ip(&["link", "set", &a, "up"])?;
    ip(&["link", "add", "link", &a, "name", &a_vlan, "type", "vlan", "id", &VLAN.to_string()])?;
    ip(&["addr", "add", &format!("{A_VLAN}/24"), "dev", &a_vlan])?;
    ip(&["link", "set", &a_vlan, "up"])?;
    ip(&["-n", &nsn, "addr", "add", &format!("{B_V4}/24"), "dev", &b])?;
    ip(&["-n", &nsn, "-6", "addr", "add", &format!("{B_V6}/64"), "dev", &b, "nodad"])?;
    ip(&["-n", &nsn, "link", "set", &b, "up"])?;
    ip(&["-n", &nsn, "link", "add", "link", &b, "name", &b_vlan, "type", "vlan", "id", &VLAN.to_string()])?;
    ip(&["-n", &nsn, "addr", "add", &format!("{B_VLAN}/24"), "dev", &b_vlan])?;
    ip(&["-n", &nsn, "link", "set", &b_vlan, "up"])?;
    wait_carrier(&a)?;
    wait_peer_carrier(&nsn, &b)?;

    let dir = PathBuf::from("/tmp/vmtest");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("rules.conf"), RULES)?;
    std::fs::write(dir.join("rules-changed.conf"), rules_changed())?;
    let xdpwall = Xdpwall::with_dirs(&args.xdpwall, "/sys/fs/bpf/xdpwall-vmtest", "/run/xdpwall-vmtest");
    Ok(Bed { a, ns, xdpwall, dir })
}

impl Bed {
    fn rules_file(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    fn status(&self) -> Result<Value> {
        let out = self.xdpwall.run(["status", "--json"])?;
        serde_json::from_slice(&out.stdout).context("parsing `xdpwall status --json`")
    }

    /// Packets counted by the rule labelled `label`.
    fn rule(&self, label: &str) -> Result<u64> {
        let status = self.status()?;
        let rules = status["rules"].as_array().context("status has no rules")?;
        rules
            .iter()
            .find(|r| r["label"] == label)
            .and_then(|r| r["packets"].as_u64())
            .with_context(|| format!("no rule labelled {label} in the status"))
    }

    /// The TC egress hook on A and the id of its program: the pinned tcx link (type 11,
    /// BPF_LINK_TYPE_TCX), or the one classic cls_bpf filter (handle 0x7877) in A's
    /// clsact qdisc. Fails if the hook is missing or doubled.
    fn egress_hook(&self, tcx: bool) -> Result<(String, u64)> {
        if tcx {
            let pin = self.xdpwall.pin_dir().join("links/egress").join(&self.a);
            let out = cmd_out("bpftool", &["-j", "link", "show", "pinned", &pin.display().to_string()])?;
            let link: Value = serde_json::from_str(&out).context("parsing bpftool link show")?;
            ensure!(link["type"] == 11, "pinned egress link is not a tcx link: {out}");
            let prog = link["prog_id"].as_u64().context("no prog_id")?;
            return Ok((format!("tcx link {}", link["id"]), prog));
        }
        let out = cmd_out("tc", &["filter", "show", "dev", &self.a, "egress"])?;
        let ours: Vec<&str> = out.lines().filter(|l| l.contains("handle 0x7877")).collect();
        ensure!(ours.len() == 1, "expected one xdpwall filter in {}'s clsact egress: {out}", self.a);
        ensure!(out.matches("direct-action").count() == 1, "more than one bpf filter on egress: {out}");
        let words: Vec<&str> = ours[0].split_whitespace().collect();
        let prog = words
            .iter()
            .position(|w| *w == "id")
            .and_then(|i| words.get(i + 1)?.parse().ok())
            .with_context(|| format!("no program id in {}", ours[0]))?;
        Ok(("clsact filter pref 1 handle 0x7877".to_string(), prog))
    }

    fn state_matches(&self) -> Result<u64> {
        self.status()?["state_matches"]["packets"].as_u64().context("status has no state_matches")
    }

    /// Counters are read from per-CPU maps after the packets went through; the peer's
    /// last segments of a TCP close may still be on their way, so wait (up to a deadline)
    /// for the expected value rather than reading once.
    fn expect_rule(&self, label: &str, want: u64) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let got = self.rule(label)?;
            if got == want {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("rule {label:?} counted {got} packets, expected {want}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends `n` datagrams from the peer to `dst:port`; expects all (`pass`) or none to
    /// arrive, and the rule's counter to move by exactly `n`.
    fn udp_check(&self, dst: IpAddr, port: u16, label: &str, n: u64, pass: bool) -> Result<()> {
        let before = self.rule(label)?;
        let server = UdpSocket::bind(SocketAddr::new(dst, port)).with_context(|| format!("binding {dst}:{port}"))?;
        server.set_read_timeout(Some(QUIET))?;
        let client = self.ns.run(|| UdpSocket::bind(SocketAddr::new(unspecified(dst), 0)))?;
        for i in 0..n {
            client.send_to(&i.to_be_bytes(), (dst, port))?;
        }
        let got = drain(&server)?;
        let want = if pass { n } else { 0 };
        ensure!(got == want, "{got} of {n} datagrams to {dst}:{port} arrived, expected {want}");
        self.expect_rule(label, before + n)
    }

    /// A TCP connection from the peer to `dst:port`: passed, 4 KiB go through and the
    /// connection closes; blocked, the connect times out. Either way the rule counts
    /// exactly the segments the peer sent.
    fn tcp_check(&self, dst: IpAddr, port: u16, label: &str, pass: bool) -> Result<()> {
        let before = self.rule(label)?;
        let segs_before = self.ns.run(tcp_segments_sent)?;
        let listener = TcpListener::bind(SocketAddr::new(dst, port))?;
        let target = SocketAddr::new(dst, port);
        progress(&format!("connecting to {target}"));
        let connected = self.ns.run(|| TcpStream::connect_timeout(&target, Duration::from_secs(2)));
        progress(&format!("connect to {target}: {:?}", connected.as_ref().map(|_| ())));
        match (connected, pass) {
            (Ok(mut conn), true) => {
                let server = std::thread::spawn(move || -> Result<usize> {
                    let (mut conn, _) = listener.accept()?;
                    let mut buf = Vec::new();
                    conn.read_to_end(&mut buf)?;
                    Ok(buf.len())
                });
                conn.write_all(&[7u8; 4096])?;
                drop(conn);
                let got = server.join().expect("server thread")?;
                ensure!(got == 4096, "the server got {got} of 4096 bytes");
            }
            (Err(e), true) => bail!("connect to {target}: {e}"),
            (Ok(_), false) => bail!("connected to {target} through a block rule"),
            (Err(e), false) => {
                ensure!(e.kind() == ErrorKind::TimedOut, "connect to {target} failed with {e}, not a timeout");
                listener.set_nonblocking(true)?;
                ensure!(listener.accept().is_err(), "a connection reached the listener");
            }
        }
        // Counted once the peer's side has gone quiet.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let sent = self.ns.run(tcp_segments_sent)? - segs_before;
            let counted = self.rule(label)? - before;
            if sent == counted && sent > 0 {
                println!("vmtest:   {label}: {counted} segments from the peer, all counted");
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("rule {label:?} counted {counted} packets; the peer sent {sent} TCP segments");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `block out proto udp to port 7401`: datagrams A sends to the peer never arrive.
    fn out_block_check(&self) -> Result<()> {
        let before = self.rule("out-block")?;
        let server = self.ns.run(|| UdpSocket::bind(SocketAddr::new(B_V4.into(), 7401)))?;
        server.set_read_timeout(Some(QUIET))?;
        let client = UdpSocket::bind("0.0.0.0:0")?;
        let n = 10;
        for i in 0u64..n {
            // A dropped packet at TC egress may report an error to the sender (NET_XMIT_DROP
            // becomes ENOBUFS on some kernels); what matters is that nothing arrives.
            let _ = client.send_to(&i.to_be_bytes(), (B_V4, 7401));
        }
        let got = drain(&server)?;
        ensure!(got == 0, "{got} datagrams passed the out block rule");
        self.expect_rule("out-block", before + n)
    }

    /// A opens 32 TCP connections to the peer (an `out ... keep state` rule); replies
    /// arriving at A are blocked by rule and can only pass by state. With RSS spreading the
    /// flows over both RX queues (and so both CPUs), every connection must work, both
    /// queues must have carried replies, and the state must account for every segment:
    /// each connection's SYN passes by the out rule (opening the flow), every other
    /// segment A sends and every segment the peer sends pass by state.
    fn state_check(&self) -> Result<()> {
        let conns: u64 = 32;
        let q_before = rx_queue_packets(&self.a)?;
        ensure!(q_before.len() >= 2, "{} has {} RX queues", self.a, q_before.len());
        let blocked_before = self.rule("tcp-from-7301")?;
        let opened_before = self.rule("out-tcp-state")?;
        let state_before = self.state_matches()?;
        let peer_before = self.ns.run(tcp_segments_sent)?;
        let a_before = tcp_segments_sent()?;
        let listener = self.ns.run(|| TcpListener::bind(SocketAddr::new(B_V4.into(), 7301)))?;
        let server = std::thread::spawn(move || -> Result<usize> {
            let mut total = 0;
            for _ in 0..conns {
                let (mut c, _) = listener.accept()?;
                let mut buf = Vec::new();
                c.read_to_end(&mut buf)?;
                c.write_all(&buf)?;
                total += buf.len();
            }
            Ok(total)
        });
        for i in 0..conns {
            let mut c = TcpStream::connect_timeout(&SocketAddr::new(B_V4.into(), 7301), Duration::from_secs(3))
                .with_context(|| format!("connection {i} to the peer"))?;
            c.write_all(&[i as u8; 100])?;
            c.shutdown(std::net::Shutdown::Write)?;
            let mut echo = Vec::new();
            c.read_to_end(&mut echo)?;
            ensure!(echo.len() == 100, "connection {i}: {} of 100 bytes echoed", echo.len());
        }
        let total = server.join().expect("server thread")?;
        ensure!(total == 100 * conns as usize, "the peer got {total} bytes");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let peer_sent = self.ns.run(tcp_segments_sent)? - peer_before;
            let a_sent = tcp_segments_sent()? - a_before;
            let opened = self.rule("out-tcp-state")? - opened_before;
            let by_state = self.state_matches()? - state_before;
            if opened == conns && by_state == peer_sent + a_sent - conns {
                println!(
                    "vmtest:   {conns} flows opened by rule; {by_state} packets passed by state: {peer_sent} from the peer, {} from A",
                    a_sent - conns
                );
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "{opened} flows opened (expected {conns}); {by_state} packets passed by state, \
                     expected {peer_sent} from the peer + {a_sent} from A - {conns} opening SYNs"
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        ensure!(self.rule("tcp-from-7301")? == blocked_before, "replies hit the block rule: state was not found");
        let q_after = rx_queue_packets(&self.a)?;
        let per_queue: Vec<u64> = q_after.iter().zip(&q_before).map(|(a, b)| a - b).collect();
        println!("vmtest:   RX packets per queue during the check: {per_queue:?}");
        ensure!(per_queue.iter().filter(|&&n| n > 0).count() >= 2, "replies arrived on one queue only: {per_queue:?}");
        Ok(())
    }

    /// The peer streams UDP to a passed port while A applies a changed ruleset and back: every datagram arrives, the counter (kept by label) counts each, and
    /// the igb link never loses carrier.
    fn apply_under_traffic(&self) -> Result<()> {
        let a = self.a.as_str();
        let before = self.rule("udp-pass")?;
        let carrier_before = carrier_changes(a)?;
        let tcx = kernel_at_least(6, 6);
        let (_, egress_before) = self.egress_hook(tcx)?;
        let server = UdpSocket::bind(SocketAddr::new(A_V4.into(), 7101))?;
        xdpwall_tests::big_receive_buffer(&server);
        server.set_read_timeout(Some(QUIET))?;
        let client = self.ns.run(|| UdpSocket::bind("0.0.0.0:0"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let sender = std::thread::spawn(move || -> Result<u64> {
            let mut sent = 0u64;
            while !stop2.load(Ordering::Relaxed) {
                client.send_to(&sent.to_be_bytes(), (A_V4, 7101))?;
                sent += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            Ok(sent)
        });
        let stop3 = stop.clone();
        let receiver = std::thread::spawn(move || drain_until(&server, &stop3));
        let mut applied = Vec::new();
        for (i, file) in ["rules-changed.conf", "rules.conf"].iter().enumerate() {
            let out = self.xdpwall.run(["apply", &self.rules_file(file)]);
            match out {
                Ok(o) => applied.push(format!(
                    "apply {}: {}",
                    i + 1,
                    String::from_utf8_lossy(&o.stdout).lines().last().unwrap_or("")
                )),
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    let _ = sender.join();
                    return Err(e.context(format!("apply {} of 2", i + 1)));
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        let sent = sender.join().expect("sender thread")?;
        let got = receiver.join().expect("receiver thread")?;
        for line in &applied {
            println!("vmtest:   {line}");
        }
        ensure!(sent > 0, "nothing was sent");
        ensure!(got == sent, "{got} of {sent} datagrams arrived across 2 applies");
        self.expect_rule("udp-pass", before + sent)?;
        let carrier_after = carrier_changes(a)?;
        ensure!(
            carrier_after == carrier_before,
            "the link lost carrier during apply ({} changes)",
            carrier_after - carrier_before
        );
        ensure!(xdp_attached(a)?, "XDP is no longer attached");
        let (kind, egress_after) = self.egress_hook(tcx)?;
        ensure!(egress_after != egress_before, "the egress program was not replaced ({kind}, program {egress_after})");
        println!("vmtest:   {sent} datagrams sent and received during 2 applies, carrier changes 0");
        Ok(())
    }
}

/// Datagrams received until `QUIET` passes without one (the sender is done).
fn drain(sock: &UdpSocket) -> Result<u64> {
    drain_until(sock, &AtomicBool::new(true))
}

/// Datagrams received until `stop` is set and then `QUIET` passes without one.
fn drain_until(sock: &UdpSocket, stop: &AtomicBool) -> Result<u64> {
    let mut buf = [0u8; 64];
    let mut n = 0;
    loop {
        match sock.recv(&mut buf) {
            Ok(_) => n += 1,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if stop.load(Ordering::Relaxed) {
                    return Ok(n);
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn unspecified(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    }
}

/// TCP segments this thread's network namespace has sent: `OutSegs + RetransSegs` from
/// /proc/thread-self/net/snmp (not /proc/net, which is the process's namespace).
fn tcp_segments_sent() -> Result<u64> {
    let snmp = std::fs::read_to_string("/proc/thread-self/net/snmp")?;
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (tcp.next().context("no Tcp: header")?, tcp.next().context("no Tcp: values")?);
    let field = |want: &str| -> Result<u64> {
        let i = names.split_whitespace().position(|n| n == want).with_context(|| format!("no {want}"))?;
        Ok(values.split_whitespace().nth(i).context("short Tcp: line")?.parse()?)
    };
    Ok(field("OutSegs")? + field("RetransSegs")?)
}

/// `rx_queue_N_packets` from `ethtool -S`, by queue.
fn rx_queue_packets(iface: &str) -> Result<Vec<u64>> {
    let stats = cmd_out("ethtool", &["-S", iface])?;
    let mut queues: Vec<(u32, u64)> = stats
        .lines()
        .filter_map(|l| {
            let (name, value) = l.trim().split_once(':')?;
            let q = name.strip_prefix("rx_queue_")?.strip_suffix("_packets")?.parse().ok()?;
            Some((q, value.trim().parse().ok()?))
        })
        .collect();
    queues.sort();
    Ok(queues.into_iter().map(|(_, v)| v).collect())
}

/// Whether the running kernel is at least `major.minor` (osrelease "6.1.0-57-amd64").
fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release.trim().split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (major, minor)
}

fn carrier_changes(iface: &str) -> Result<u64> {
    let path = format!("/sys/class/net/{iface}/carrier_changes");
    Ok(std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?.trim().parse()?)
}

/// igb drops the link when XDP is attached or detached, or the MTU changes; carrier is
/// back about two seconds later. For A, in the root namespace (whose /sys this is).
fn wait_carrier(iface: &str) -> Result<()> {
    let path = format!("/sys/class/net/{iface}/carrier");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !std::fs::read_to_string(&path).is_ok_and(|s| s.trim() == "1") {
        if Instant::now() > deadline {
            bail!("{iface} has no carrier after 15 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// The peer's NIC lives in another namespace, whose /sys this process does not see:
/// ask `ip -n` for LOWER_UP instead.
fn wait_peer_carrier(ns: &str, iface: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !cmd_out("ip", &["-n", ns, "link", "show", iface])?.contains("LOWER_UP") {
        if Instant::now() > deadline {
            bail!("{iface} (peer) has no carrier after 15 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn xdp_attached(iface: &str) -> Result<bool> {
    let link = cmd_out("ip", &["link", "show", iface])?;
    Ok(link.split_whitespace().any(|w| w.starts_with("xdp")))
}

fn ip(args: &[&str]) -> Result<()> {
    cmd_out("ip", args).map(drop)
}

fn cmd_out(prog: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(prog).args(args).output().with_context(|| format!("running {prog}"))?;
    if !out.status.success() {
        bail!("`{prog} {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
