//! Where the benchmark's traffic flows: the namespace, the test and reference veth pairs,
//! their addresses and MACs, and the frames sent on them.

use super::*;

/// The test receiver's address (the veth end in the root namespace).
pub const HOST_V4: Ipv4Addr = Ipv4Addr::new(10, 203, 0, 1);
/// The flood's IPv6 destination (a ULA; the receiver has IPv6 off).
pub const HOST_V6: Ipv6Addr = Ipv6Addr::new(0xfd78, 0x7762, 0, 0, 0, 0, 0, 1);
/// The test sender's address (the veth end in the namespace).
pub const PEER_V4: Ipv4Addr = Ipv4Addr::new(10, 203, 0, 2);
pub(super) const HOST_MAC: [u8; 6] = [0x02, 0x78, 0x77, 0x62, 0x00, 0x01];
pub(super) const PEER_MAC: [u8; 6] = [0x02, 0x78, 0x77, 0x62, 0x00, 0x02];
pub(super) const REF_HOST_MAC: [u8; 6] = [0x02, 0x78, 0x77, 0x62, 0x01, 0x01];
pub(super) const REF_PEER_MAC: [u8; 6] = [0x02, 0x78, 0x77, 0x62, 0x01, 0x02];

/// Where the receiver's packet processing (its NAPI poll) runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Napi {
    /// In a kernel thread pinned to a core of its own, apart from the generator: the
    /// receiver's rate is then limited by the receiver's own cost per packet.
    Threaded,
    /// In the generator's softirq, on the generator's core: the rate is limited by the
    /// generator's and the receiver's cost together.
    Shared,
}

/// One veth pair: `host` in the root namespace receives, `peer` in the namespace sends.
#[derive(Debug)]
pub struct Pair {
    /// Receiver end, in the root namespace.
    pub host: String,
    /// Sender end, in the namespace.
    pub peer: String,
    /// The sender end's index inside the namespace.
    pub peer_ifindex: u32,
    pub(super) queues: usize,
}

impl Pair {
    /// Receive-side statistics of the receiver end.
    pub fn rx(&self) -> Result<RxStats> {
        let read = |what: &str| -> Result<u64> {
            let path = format!("/sys/class/net/{}/statistics/{what}", self.host);
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
            text.trim().parse().with_context(|| format!("parsing {path}"))
        };
        Ok(RxStats { packets: read("rx_packets")?, dropped: read("rx_dropped")? })
    }

    /// Puts the receiver's NAPI poll where `napi` says: for `Threaded`, kernel threads
    /// pinned to the cores the generator threads leave free. Needs an XDP program or GRO
    /// on the receiver (so NAPI exists).
    pub fn place_napi(&self, napi: Napi, generator_cpus: &[usize]) -> Result<()> {
        let path = format!("/sys/class/net/{}/threaded", self.host);
        if napi == Napi::Shared {
            return std::fs::write(&path, "0").with_context(|| format!("writing 0 to {path}"));
        }
        std::fs::write(&path, "1").with_context(|| format!("writing 1 to {path}"))?;
        let cpus = online_cpus();
        let free: Vec<usize> = cpus.iter().copied().filter(|c| !generator_cpus.contains(c)).collect();
        let free = if free.is_empty() { cpus } else { free };
        // Kernel thread names are cut to 15 bytes: `napi/<dev>-<id>`.
        let prefix: String = format!("napi/{}-", self.host).chars().take(15).collect();
        let mut pids = Vec::new();
        for _ in 0..50 {
            pids = threads_named(&prefix);
            if pids.len() >= self.queues {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if pids.is_empty() {
            bail!("no NAPI thread {prefix}* appeared after enabling threaded NAPI on {}", self.host);
        }
        for (i, pid) in pids.iter().enumerate() {
            set_affinity(*pid, free[i % free.len()])?;
            favour(*pid)?;
        }
        Ok(())
    }
}

/// The test network: a namespace and two veth pairs, deleted on drop.
pub struct BenchNet {
    /// The pair whose receiver runs what a row measures.
    pub test: Pair,
    /// The pair whose receiver runs the XDP_DROP ceiling.
    pub reference: Pair,
    /// The namespace holding both sender ends (dropped after the pairs).
    pub netns: Netns,
}

impl BenchNet {
    /// Two pairs with `queues` receive queues per end (one per generator thread), GRO on
    /// the receiver ends (a veth takes XDP_TX'd frames only when its peer has XDP or GRO)
    /// and no IPv6 link-local chatter. 10.202.0.0/16 (the rules' sources) is routed to the
    /// test sender, so the kernel's replies to generated packets stay on the pair.
    pub fn new(queues: usize) -> Result<BenchNet> {
        let netns = Netns::new("bench")?;
        let pid = std::process::id() % 100_000;
        let queues = queues.max(1);
        let mut net = BenchNet {
            test: Pair { host: format!("xwbt{pid}"), peer: format!("xwbs{pid}"), peer_ifindex: 0, queues },
            reference: Pair { host: format!("xwbr{pid}"), peer: format!("xwbq{pid}"), peer_ifindex: 0, queues },
            netns,
        };
        let ns = net.netns.name().to_string();
        net.add_pair(true, HOST_MAC, PEER_MAC)?;
        net.add_pair(false, REF_HOST_MAC, REF_PEER_MAC)?;
        let (h, p) = (net.test.host.clone(), net.test.peer.clone());
        ip(&["addr", "add", &format!("{HOST_V4}/30"), "dev", &h])?;
        ip(&["-n", &ns, "addr", "add", &format!("{PEER_V4}/30"), "dev", &p])?;
        ip(&["neigh", "replace", &PEER_V4.to_string(), "lladdr", &mac(PEER_MAC), "dev", &h, "nud", "permanent"])?;
        ip(&["route", "add", &format!("{SOURCE_NET}/16"), "via", &PEER_V4.to_string(), "dev", &h])?;
        // The flood's sources (1.0.0.0/8, 2001:db8::/32) are not routed here, and every
        // flood row drops every frame before the stack. Should one get through anyway
        // (a failing row), strict reverse-path filtering drops it instead of answering a
        // spoofed address out of the machine's default route, and the receiver has no
        // IPv6 at all (XDP and netdev ingress still see every frame).
        sysctl(&format!("net/ipv4/conf/{h}/rp_filter"), "1")?;
        sysctl(&format!("net/ipv6/conf/{h}/disable_ipv6"), "1")?;
        Ok(net)
    }

    pub(super) fn add_pair(&mut self, test: bool, host_mac: [u8; 6], peer_mac: [u8; 6]) -> Result<()> {
        let ns = self.netns.name().to_string();
        let pair = if test { &mut self.test } else { &mut self.reference };
        let (h, p, q) = (pair.host.clone(), pair.peer.clone(), pair.queues.to_string());
        ip(&[
            "link",
            "add",
            &h,
            "address",
            &mac(host_mac),
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "type",
            "veth",
            "peer",
            "name",
            &p,
            "address",
            &mac(peer_mac),
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "netns",
            &ns,
        ])?;
        ip(&["link", "set", &h, "addrgenmode", "none"])?;
        ip(&["-n", &ns, "link", "set", &p, "addrgenmode", "none"])?;
        ip(&["link", "set", &h, "up"])?;
        ip(&["-n", &ns, "link", "set", &p, "up"])?;
        run(Command::new("ethtool").args(["-K", &h, "gro", "on"]))?;
        pair.peer_ifindex = self.netns.run(|| ifindex(&p))?;
        Ok(())
    }

    /// The frame the generator sends for `probe`: Ethernet + IPv4 + UDP, `size` bytes
    /// (without FCS), from the test sender to the test receiver's address and MAC. The
    /// reference pair gets the same bytes (its XDP_DROP program reads none of them).
    pub fn frame(probe: Probe, size: usize) -> Vec<u8> {
        frame(probe, size)
    }

    /// The spoofed flood's template: Ethernet + IPv4 or IPv6 + UDP from `src` to the test
    /// receiver (IPv6: a ULA the receiver does not have) and its MAC, port `dport`, `size`
    /// bytes or the family's headers if longer (62 for IPv6).
    pub fn flood_frame(src: IpAddr, dport: u16, size: usize) -> Vec<u8> {
        let headers = match src {
            IpAddr::V4(_) => 14 + 20 + 8,
            IpAddr::V6(_) => 14 + 40 + 8,
        };
        let dst: IpAddr = match src {
            IpAddr::V4(_) => HOST_V4.into(),
            IpAddr::V6(_) => HOST_V6.into(),
        };
        PacketBuilder::eth()
            .src_mac(PEER_MAC)
            .dst_mac(HOST_MAC)
            .ip(src, dst)
            .udp(32768, dport)
            .payload(&vec![0u8; size.saturating_sub(headers)])
            .build()
            .bytes
    }
}

/// Writes `value` to /proc/sys/`key`.
pub(super) fn sysctl(key: &str, value: &str) -> Result<()> {
    let path = Path::new("/proc/sys").join(key);
    std::fs::write(&path, value).with_context(|| format!("writing {value} to {}", path.display()))
}

impl Drop for BenchNet {
    fn drop(&mut self) {
        // Deleting one end deletes both, and the route with them; the namespace goes next.
        for host in [&self.test.host, &self.reference.host] {
            if Path::new("/sys/class/net").join(host).exists()
                && let Err(e) = ip(&["link", "delete", host])
            {
                eprintln!("warning: {e:#}");
            }
        }
    }
}

/// Receiver-end counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct RxStats {
    /// Frames the receiver's NAPI poll took off its queues (whatever their fate).
    pub packets: u64,
    /// Frames the sender could not queue because the receiver's ring was full.
    pub dropped: u64,
}

pub(super) fn frame(probe: Probe, size: usize) -> Vec<u8> {
    const HEADERS: usize = 14 + 20 + 8;
    let payload = vec![0u8; size.saturating_sub(HEADERS)];
    PacketBuilder::eth()
        .src_mac(PEER_MAC)
        .dst_mac(HOST_MAC)
        .ipv4(probe.src, HOST_V4)
        .udp(32768, probe.dport)
        .payload(&payload)
        .build()
        .bytes
}

pub(super) fn ifindex(name: &str) -> Result<u32> {
    let c = std::ffi::CString::new(name).context("interface name")?;
    // SAFETY: a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        bail!("no interface named {name}: {}", std::io::Error::last_os_error());
    }
    Ok(index)
}

pub(super) fn mac(m: [u8; 6]) -> String {
    m.map(|b| format!("{b:02x}")).join(":")
}
