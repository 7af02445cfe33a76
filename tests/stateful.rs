//! Stateful filtering with real traffic: a router namespace between a client and a
//! server (`keep state` opens flows on one interface, replies match on the other),
//! and a host whose own connections are tracked by the TC egress hook.

use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    path::PathBuf,
    process::{Command, Output},
    time::Duration,
};

use filter_user::dataplane::{FlowEntry, Status};
use xdpwall_tests::{
    cli::{Xdpwall, bin_from_env},
    netns::{Netns, VethPair, serve_tcp, tcp_exchange},
};

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// A bpffs of the test's own, mounted outside /sys so that `ip netns exec` (which
/// remounts /sys) still sees it: xdpwall runs inside the router namespace.
struct Bpffs(PathBuf);

impl Bpffs {
    fn new() -> Bpffs {
        let dir = PathBuf::from(format!("/run/xw-bpffs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new("mount").args(["-t", "bpf", "bpf"]).arg(&dir).output().unwrap();
        assert!(out.status.success(), "mount bpffs: {}", String::from_utf8_lossy(&out.stderr));
        Bpffs(dir)
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).output();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// client (10.203.X.2) -- r1 [router] r2 -- server (10.203.Y.2), with xdpwall on r1
/// and r2 inside the router namespace.
struct Routed {
    client: Netns,
    router: Netns,
    server: Netns,
    client_ip: Ipv4Addr,
    server_ip: Ipv4Addr,
    bpffs: Bpffs,
    dir: PathBuf,
}

impl Routed {
    fn new() -> Routed {
        let (client, router, server) =
            (Netns::new("cl").unwrap(), Netns::new("rt").unwrap(), Netns::new("sv").unwrap());
        // Subnets from the pid keep parallel test processes apart.
        let x = (std::process::id() % 100) as u8 + 100;
        let (c, s) = (format!("10.203.{x}"), format!("10.204.{x}"));
        ip(&[
            "link",
            "add",
            "xwc0",
            "netns",
            client.name(),
            "type",
            "veth",
            "peer",
            "name",
            "r1",
            "netns",
            router.name(),
        ]);
        ip(&[
            "link",
            "add",
            "xws0",
            "netns",
            server.name(),
            "type",
            "veth",
            "peer",
            "name",
            "r2",
            "netns",
            router.name(),
        ]);
        for (ns, dev, addr) in [
            (&client, "xwc0", format!("{c}.2/24")),
            (&router, "r1", format!("{c}.1/24")),
            (&router, "r2", format!("{s}.1/24")),
            (&server, "xws0", format!("{s}.2/24")),
        ] {
            ip(&["-n", ns.name(), "addr", "add", &addr, "dev", dev]);
            ip(&["-n", ns.name(), "link", "set", dev, "up"]);
        }
        ip(&["-n", client.name(), "route", "add", "default", "via", &format!("{c}.1")]);
        ip(&["-n", server.name(), "route", "add", "default", "via", &format!("{s}.1")]);
        let fwd = router.exec(&["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
        assert!(fwd.status.success());
        let bpffs = Bpffs::new();
        let dir = std::env::temp_dir().join(format!("xdpwall-routed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Routed {
            client,
            router,
            server,
            client_ip: format!("{c}.2").parse().unwrap(),
            server_ip: format!("{s}.2").parse().unwrap(),
            bpffs,
            dir,
        }
    }

    /// `xdpwall ARGS` inside the router namespace.
    fn xdpwall(&self, args: &[&str]) -> Output {
        let bin = bin_from_env();
        let pin = self.bpffs.0.join("xdpwall");
        let run = self.dir.join("run");
        let mut cmd: Vec<&str> = vec![bin.to_str().unwrap(), "--pin-dir", pin.to_str().unwrap()];
        cmd.extend(["--run-dir", run.to_str().unwrap()]);
        cmd.extend(args);
        let out = self.router.exec(&cmd);
        assert!(out.status.success(), "xdpwall {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        out
    }

    fn status(&self) -> Status {
        serde_json::from_slice(&self.xdpwall(&["status", "--json"]).stdout).unwrap()
    }

    fn states(&self, args: &[&str]) -> Vec<FlowEntry> {
        let mut a = vec!["states", "--json"];
        a.extend(args);
        serde_json::from_slice(&self.xdpwall(&a).stdout).unwrap()
    }
}

impl Drop for Routed {
    fn drop(&mut self) {
        let _ = self.router.exec(&[
            bin_from_env().to_str().unwrap(),
            "--pin-dir",
            self.bpffs.0.join("xdpwall").to_str().unwrap(),
            "--run-dir",
            self.dir.join("run").to_str().unwrap(),
            "unload",
        ]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const ROUTER_RULES: &str = r#"
set default block
set timeout udp.first 2
set timeout udp.multiple 2
pass in on r1 proto tcp to port 8080 keep state label "web out"
pass in on r1 proto udp to port 5353 keep state label "dns out"
pass in on r1 proto icmp icmp-type echoreq keep state label "ping out"
"#;

#[test]
fn router_keeps_state_across_interfaces() {
    let net = Routed::new();
    let rules = net.dir.join("router.conf");
    std::fs::write(&rules, ROUTER_RULES).unwrap();
    net.xdpwall(&["load", "r1", "r2", rules.to_str().unwrap()]);

    // TCP opened by the client passes both ways; the replies enter on r2, where no
    // rule would pass them.
    let web = SocketAddr::new(net.server_ip.into(), 8080);
    let _server = serve_tcp(&net.server, web);
    for _ in 0..3 {
        assert!(tcp_exchange(&net.client, web), "client -> server:8080 through the router");
    }
    let flows = net.states(&["--proto", "tcp", "--port", "8080"]);
    assert!(!flows.is_empty(), "the router tracks the connections");
    assert_eq!(flows[0].src, net.client_ip, "oriented from the opener: {flows:?}");
    assert_eq!(flows[0].rule.as_deref(), Some("pass in on r1 proto tcp to port 8080 keep state label \"web out\""));
    assert!(flows.iter().all(|f| ["ESTABLISHED", "CLOSING", "FIN_WAIT"].contains(&f.state.as_str())), "{flows:?}");

    // Unsolicited: the server may not open connections to the client.
    let back = SocketAddr::new(net.client_ip.into(), 8080);
    let _client_server = serve_tcp(&net.client, back);
    let default_before = net.status().default.packets;
    assert!(!tcp_exchange(&net.server, back), "server -> client is blocked");
    assert!(net.status().default.packets > default_before, "its SYN hit the default block");

    // UDP request/response, and a response nobody asked for.
    let dns = SocketAddr::new(net.server_ip.into(), 5353);
    let server_sock = net.server.run(|| UdpSocket::bind(dns).unwrap());
    let client_sock = net.client.run(|| UdpSocket::bind((net.client_ip, 0)).unwrap());
    client_sock.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    server_sock.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    net.client.run(|| client_sock.send_to(b"q", dns).unwrap());
    let mut buf = [0u8; 8];
    let (_, peer) = server_sock.recv_from(&mut buf).expect("query reaches the server");
    net.server.run(|| server_sock.send_to(b"a", peer).unwrap());
    assert!(client_sock.recv_from(&mut buf).is_ok(), "answer returns by state");
    let stranger = net.server.run(|| UdpSocket::bind((net.server_ip, 5454)).unwrap());
    net.server.run(|| stranger.send_to(b"x", peer).unwrap());
    assert!(client_sock.recv_from(&mut buf).is_err(), "a datagram from another port is blocked");

    // ping, and the flow table in status.
    assert_eq!(net.client.ping_replies(net.server_ip.into(), 3), 3);
    assert_eq!(net.server.ping_replies(net.client_ip.into(), 1), 0, "the server may not ping in");
    let st = net.status();
    assert!(st.flow_table.flows >= 3, "{st:#?}");
    assert!(st.state_matches.packets > 10);

    // Timeouts: after udp.multiple (2 s) the UDP flow is gone and a late answer is blocked.
    std::thread::sleep(Duration::from_millis(2100));
    assert!(net.states(&["--proto", "udp"]).is_empty(), "the UDP flow expired");
    net.server.run(|| server_sock.send_to(b"late", peer).unwrap());
    assert!(client_sock.recv_from(&mut buf).is_err(), "a late answer is blocked");

    // Flushing forgets every flow.
    let out = net.xdpwall(&["flush", "states"]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("flushed "), "{out:?}");
    assert!(net.states(&[]).is_empty());
}

#[test]
fn host_connections_are_tracked_by_egress() {
    let ns = Netns::new("host").unwrap();
    let veth = VethPair::new(&ns).unwrap();
    let fw = Xdpwall::isolated();
    let dir = std::env::temp_dir().join(format!("xdpwall-host-{}-{}", std::process::id(), veth.subnet));
    std::fs::create_dir_all(&dir).unwrap();
    let rules = dir.join("host.conf");
    std::fs::write(
        &rules,
        "set default block\n\
         pass out proto { tcp udp } keep state label \"own flows\"\n\
         pass out proto icmp icmp-type echoreq keep state\n\
         pass in proto icmp6 label \"nd\"\n",
    )
    .unwrap();
    fw.run(["load", &veth.host, rules.to_str().unwrap()]).expect("load");
    let peer: IpAddr = veth.peer_v4.into();

    // The host's own TCP connection: SYN leaves through egress (opening the flow),
    // the SYN-ACK and data come back through XDP by state.
    let at = SocketAddr::new(peer, 9090);
    let _server = serve_tcp(&ns, at);
    let ok = match TcpStream::connect_timeout(&at, Duration::from_secs(1)) {
        Ok(mut s) => {
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut buf = [0u8; 4];
            s.write_all(b"ping").is_ok() && s.read_exact(&mut buf).is_ok()
        }
        Err(_) => false,
    };
    assert!(ok, "the host's own connection works under default block");

    // UDP and ping from the host.
    let sock = UdpSocket::bind((veth.host_v4, 0)).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let echo = ns.run(|| UdpSocket::bind((veth.peer_v4, 7777)).unwrap());
    sock.send_to(b"q", (veth.peer_v4, 7777)).unwrap();
    let mut buf = [0u8; 8];
    let (_, from) = echo.recv_from(&mut buf).unwrap();
    ns.run(|| echo.send_to(b"a", from).unwrap());
    assert!(sock.recv_from(&mut buf).is_ok(), "the UDP answer returns by state");
    assert_eq!(xdpwall_tests::netns::ping_replies(peer, 2), 2, "the host can ping out");

    // Nobody may come in.
    let inbound = TcpListener::bind((veth.host_v4, 9191)).unwrap();
    let came_in = ns.run(|| {
        TcpStream::connect_timeout(&SocketAddr::new(veth.host_v4.into(), 9191), Duration::from_secs(1)).is_ok()
    });
    assert!(!came_in, "inbound connections are blocked");
    drop(inbound);
    assert_eq!(ns.ping_replies(veth.host_v4.into(), 1), 0, "inbound ping is blocked");

    let st = fw.status().unwrap();
    let own = st.rule("own flows").unwrap();
    assert!(own.packets >= 2, "the out rule opened the flows: {own:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sends IPv4 packets (from the IP header on) as they are, source addresses and all,
/// through a raw socket of the calling thread's namespace.
fn send_raw_v4(packets: &[Vec<u8>], to: Ipv4Addr) {
    // SAFETY: plain socket calls on a descriptor this function owns and closes.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW);
        assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr { s_addr: u32::from(to).to_be() },
            sin_zero: [0; 8],
        };
        for (i, p) in packets.iter().enumerate() {
            // Paced: a veth with XDP queues at most 256 frames for the other end.
            if i % 64 == 63 {
                std::thread::sleep(Duration::from_micros(200));
            }
            let sent = libc::sendto(
                fd,
                p.as_ptr().cast(),
                p.len(),
                0,
                (&addr as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            );
            assert_eq!(sent, p.len() as isize, "sendto: {}", std::io::Error::last_os_error());
        }
        libc::close(fd);
    }
}

/// Issue 11's flood with real traffic: with `set limit states 1000`, 1600 spoofed
/// tuples (addresses of the pair's subnet that nobody holds, so the host's answers
/// never leave it) send 3 packets each. An established inbound TCP connection and the
/// host's own UDP flow, both answered, keep working: their next packets in pass by
/// state (no rule would pass them).
#[test]
fn a_spoofed_flood_keeps_established_and_own_flows() {
    use xdpwall_tests::packet::{PacketBuilder, TCP_SYN};

    let ns = Netns::new("flood").unwrap();
    let veth = VethPair::new(&ns).unwrap();
    let fw = Xdpwall::isolated();
    let dir = std::env::temp_dir().join(format!("xdpwall-flood-{}-{}", std::process::id(), veth.subnet));
    std::fs::create_dir_all(&dir).unwrap();
    let rules = dir.join("flood.conf");
    std::fs::write(
        &rules,
        "set default block\n\
         set limit states 1000\n\
         pass in proto tcp to port 9393 flags S/SA keep state label \"service\"\n\
         pass in proto udp to port 9394 keep state label \"flooded\"\n\
         pass out proto udp keep state label \"own\"\n",
    )
    .unwrap();
    fw.run(["load", &veth.host, rules.to_str().unwrap()]).expect("load");
    let status = || fw.status().unwrap();

    // An inbound connection to the host's service, established and kept open.
    let service = SocketAddr::new(veth.host_v4.into(), 9393);
    let listener = TcpListener::bind(service).unwrap();
    let mut client =
        ns.run(|| TcpStream::connect_timeout(&service, Duration::from_secs(2))).expect("the client connects");
    let (mut server, _) = listener.accept().unwrap();
    for s in [&client, &server] {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    }
    let mut exchange = |what: &str| {
        let mut buf = [0u8; 4];
        let ok = client.write_all(b"ping").is_ok()
            && server.read_exact(&mut buf).is_ok()
            && server.write_all(b"pong").is_ok()
            && client.read_exact(&mut buf).is_ok();
        assert!(ok, "the established connection exchanges data {what}");
    };
    exchange("before the flood");

    // The host's own UDP flow: a query out, an answer in.
    let sock = UdpSocket::bind((veth.host_v4, 0)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let echo = ns.run(|| UdpSocket::bind((veth.peer_v4, 7777)).unwrap());
    sock.send_to(b"q", (veth.peer_v4, 7777)).unwrap();
    let mut buf = [0u8; 8];
    let (_, host_end) = echo.recv_from(&mut buf).unwrap();
    ns.run(|| echo.send_to(b"a1", host_end).unwrap());
    assert!(sock.recv_from(&mut buf).is_ok(), "the answer returns by state");
    let t = status().flow_table;
    assert_eq!(t.answered, 2, "both flows answered: {t:?}");

    // The flood: a SYN to the service, a datagram to the flooded port, the SYN again.
    let mut packets = Vec::new();
    for i in 0..1600u16 {
        let src = Ipv4Addr::new(10, 201, veth.subnet, 10 + (i % 200) as u8);
        let sport = 20000 + i;
        let ip_part = |b: PacketBuilder| b.build().bytes[14..].to_vec();
        let syn = ip_part(PacketBuilder::eth().ipv4(src, veth.host_v4).tcp(sport, 9393, TCP_SYN));
        packets.push(syn.clone());
        packets.push(ip_part(PacketBuilder::eth().ipv4(src, veth.host_v4).udp(sport, 9394).payload(b"x")));
        packets.push(syn);
    }
    ns.run(|| send_raw_v4(&packets, veth.host_v4));
    // The flood reached the filter: (nearly) every tuple opened its flows by rule,
    // each kind three times as many as the unanswered table holds.
    std::thread::sleep(Duration::from_millis(300));
    let st = status();
    let by_label = |label: &str| st.rule(label).unwrap().packets;
    assert!(by_label("service") >= 1500 && by_label("flooded") >= 1500, "the flood opened its flows: {st:?}");
    let t = &st.flow_table;
    assert_eq!(t.answered, 2, "the flood's flows are never answered ones: {t:?}");
    assert!(t.unanswered <= t.unanswered_limit as usize, "{t:?}");

    // The established connection: the client's segment comes in first, and only its
    // flow's state can pass it (the rule wants a SYN).
    exchange("after the flood");
    // The host's own flow: the other end sends again, unasked.
    ns.run(|| echo.send_to(b"a2", host_end).unwrap());
    let got = sock.recv_from(&mut buf);
    assert!(matches!(got, Ok((2, _))) && &buf[..2] == b"a2", "the answered UDP flow still passes: {got:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
