//! What runs on the receiver end during a throughput row: the bare XDP_DROP program,
//! xdpwall (through its CLI, as an operator runs it), an nftables netdev table or
//! xdp-filter (xdp-tools). Each removes itself from the interface on drop.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use aya::maps::{Map, MapData, PerCpuArray, PerCpuHashMap, PerCpuValues};
use aya::programs::XdpMode;
use xdpwall_tests::cli::Xdpwall;

use crate::kernel::{PinDir, Reference, RunTime, XDP_DROP};
use crate::live::{Counts, run};
use crate::report::LogCounts;

/// `bench_drop` attached in driver mode; the program owns its link, so dropping this
/// detaches it.
pub struct Ceiling {
    program: Reference,
}

impl Ceiling {
    /// Loads `bench_drop` and attaches it to `iface`.
    pub fn attach(pins: &PinDir, iface: &str) -> Result<Ceiling> {
        let mut program = Reference::drop_program(pins)?;
        program
            .program_mut()
            .attach(iface, XdpMode::Driver)
            .with_context(|| format!("attaching bench_drop to {iface} (native)"))?;
        Ok(Ceiling { program })
    }

    /// The program's run-time statistics (see [`RunTime`]).
    pub fn run_time(&self) -> Result<RunTime> {
        self.program.run_time()
    }
}

/// xdpwall on one interface through its CLI, with pin and run directories of its own;
/// `xdpwall unload` and the directories' removal on drop.
pub struct XdpwallCli {
    cli: Xdpwall,
    iface: String,
    loaded: bool,
}

impl XdpwallCli {
    /// The binary `bin`, not loaded yet.
    pub fn new(bin: &Path, iface: &str) -> XdpwallCli {
        let name = format!("xdpwall-bench-{}", std::process::id());
        let cli = Xdpwall::with_dirs(bin, Path::new("/sys/fs/bpf").join(&name), Path::new("/run").join(&name));
        XdpwallCli { cli, iface: iface.to_string(), loaded: false }
    }

    /// Makes `rules` the ruleset: `load IFACE RULES --mode native` the first time,
    /// `apply RULES` after that.
    pub fn set_rules(&mut self, rules: &Path) -> Result<()> {
        if self.loaded {
            self.cli.run(["apply".as_ref(), rules.as_os_str()])?;
        } else {
            self.cli.run([
                "load".as_ref(),
                self.iface.as_ref(),
                rules.as_os_str(),
                "--mode".as_ref(),
                "native".as_ref(),
            ])?;
            self.loaded = true;
        }
        Ok(())
    }

    /// Packets counted by rule `number` (from 1), from `xdpwall status --json`.
    pub fn rule_packets(&self, number: usize) -> Result<u64> {
        Ok(self.rules_packets(&[number])?[0])
    }

    /// Packets counted by each of the rules `numbers` (from 1), from one
    /// `xdpwall status --json`.
    pub fn rules_packets(&self, numbers: &[usize]) -> Result<Vec<u64>> {
        let out = self.cli.run(["status", "--json"])?;
        let status: serde_json::Value =
            serde_json::from_slice(&out.stdout).context("parsing `xdpwall status --json`")?;
        let rules = status["rules"].as_array().context("`xdpwall status --json` has no rules")?;
        numbers
            .iter()
            .map(|&number| {
                rules
                    .iter()
                    .find(|r| r["number"].as_u64() == Some(number as u64))
                    .and_then(|r| r["packets"].as_u64())
                    .with_context(|| format!("`xdpwall status --json` has no packet count for rule {number}"))
            })
            .collect()
    }

    /// The packet log's counters (`log` in `xdpwall status --json`).
    pub fn log_counts(&self) -> Result<LogCounts> {
        let out = self.cli.run(["status", "--json"])?;
        let status: serde_json::Value =
            serde_json::from_slice(&out.stdout).context("parsing `xdpwall status --json`")?;
        let get = |name: &str| {
            status["log"][name].as_u64().with_context(|| format!("`xdpwall status --json` has no log.{name}"))
        };
        Ok(LogCounts { written: get("written")?, suppressed: get("suppressed")?, lost: get("lost")? })
    }

    /// `xdpwall log --follow`, its output discarded: a reader that keeps the log's ring
    /// from filling. The caller kills it.
    pub fn log_reader(&self) -> Result<std::process::Child> {
        self.cli
            .command(["log", "--follow"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .context("starting `xdpwall log --follow`")
    }

    /// Packets passed on the fast path of tracked flows (`state_matches` in
    /// `xdpwall status --json`, counter slot `STATE`).
    pub fn state_packets(&self) -> Result<u64> {
        let out = self.cli.run(["status", "--json"])?;
        let status: serde_json::Value =
            serde_json::from_slice(&out.stdout).context("parsing `xdpwall status --json`")?;
        status["state_matches"]["packets"].as_u64().context("`xdpwall status --json` has no state_matches.packets")
    }

    /// The run-time statistics (see [`RunTime`]) of the XDP program xdpwall enforces,
    /// which it pins as `program_xdp` in its pin directory.
    pub fn run_time(&self) -> Result<RunTime> {
        RunTime::of_pinned(&self.cli.pin_dir().join("program_xdp"))
    }

    /// Unloads now (also done on drop).
    pub fn unload(&mut self) -> Result<()> {
        if self.loaded {
            self.cli.run(["unload"])?;
            self.loaded = false;
        }
        Ok(())
    }
}

/// An nftables table, deleted on drop.
pub struct NftTable {
    name: String,
}

impl NftTable {
    /// Loads `script` (which defines `table netdev NAME`) with `nft -f`.
    pub fn load(name: &str, script: &str, dir: &Path) -> Result<NftTable> {
        let path: PathBuf = dir.join(format!("{name}.nft"));
        std::fs::write(&path, script).with_context(|| format!("writing {}", path.display()))?;
        let _ = Command::new("nft").args(["delete", "table", "netdev", name]).output();
        run(Command::new("nft").arg("-f").arg(&path)).context("loading the nftables rules (is nftables installed?)")?;
        Ok(NftTable { name: name.to_string() })
    }

    /// Packets counted by the table's named counter `hits`.
    pub fn counted(&self) -> Result<u64> {
        self.counter("hits")
    }

    /// Packets counted by the table's named counter `name`.
    pub fn counter(&self, name: &str) -> Result<u64> {
        nft_counter_packets(&self.name, name)
    }
}

impl Drop for NftTable {
    fn drop(&mut self) {
        let _ = Command::new("nft").args(["delete", "table", "netdev", &self.name]).output();
    }
}

/// Where xdp-filter pins its maps (one set for every interface it is loaded on).
const XDP_FILTER_PINS: &str = "/sys/fs/bpf/xdp-filter";
/// xdp-filter's map value flag for a source address (`MAP_FLAG_SRC`); each entry's hit
/// counter is kept in the same per-CPU value, above bit `COUNTER_SHIFT`.
const XDP_FILTER_SRC: u64 = 1;
/// xdp-filter's `COUNTER_SHIFT`.
const XDP_FILTER_COUNTER_SHIFT: u32 = 6;

/// xdp-filter (xdp-tools, `xdp-filter load IFACE --mode native`, default policy allow) on
/// one interface: a deny list of source addresses filled straight into its pinned maps
/// (`xdp-filter ip` runs once per address), and optionally its deny list of UDP
/// destination ports. `xdp-filter unload` on drop.
///
/// xdp-filter holds hosts only (no prefixes): `filter_ipv4` and `filter_ipv6` are per-CPU
/// hashes keyed by address, each value the flags (source/destination) and a hit counter.
/// Every packet is looked up by destination and by source address, then by UDP port.
pub struct XdpFilter {
    iface: String,
    loaded: bool,
}

impl XdpFilter {
    /// Loads xdp-filter on `iface`. Fails if xdp-filter is loaded anywhere else (its maps
    /// are shared by every interface, so another user's lists would mix with ours) or its
    /// maps are pinned with no program (`--keep-maps`: their lists would mix too). What an
    /// interrupted run of this benchmark left (programs pinned for test receivers that are
    /// gone, `xwbt<pid>`) is removed first.
    pub fn load(iface: &str) -> Result<XdpFilter> {
        let pins = Path::new(XDP_FILTER_PINS);
        if pins.exists() {
            let names: Vec<String> = std::fs::read_dir(pins.join("programs"))
                .map(|dir| dir.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
                .unwrap_or_default();
            let ours_stale = |n: &String| n.starts_with("xwbt") && !Path::new("/sys/class/net").join(n).exists();
            if !names.is_empty() && names.iter().all(ours_stale) {
                let _ = std::fs::remove_dir_all(pins);
            } else if !names.is_empty() {
                bail!("xdp-filter is loaded on {} already; its maps would be shared", names.join(", "));
            } else {
                bail!(
                    "xdp-filter's maps are pinned in {XDP_FILTER_PINS} with no program using \
                     them (unloaded with --keep-maps?); their lists would mix with the \
                     benchmark's: remove them to run this row"
                );
            }
        }
        run(Command::new("xdp-filter").args(["load", iface, "--mode", "native"]))
            .context("loading xdp-filter (is xdp-tools installed? `cargo xtask setup`)")?;
        Ok(XdpFilter { iface: iface.to_string(), loaded: true })
    }

    fn map(name: &str) -> Result<MapData> {
        let path = Path::new(XDP_FILTER_PINS).join(name);
        MapData::from_pin(&path).with_context(|| format!("opening {}", path.display()))
    }

    /// How many addresses of `v6` or IPv4 the deny list holds at most (its hash's size).
    pub fn capacity(v6: bool) -> Result<usize> {
        let name = if v6 { "filter_ipv6" } else { "filter_ipv4" };
        let map = Self::map(name)?;
        Ok(map.info()?.max_entries() as usize)
    }

    /// Adds source addresses to the deny list, written straight into the pinned map (what
    /// `xdp-filter ip -m src ADDR` writes, without a process per address).
    pub fn deny_sources(&self, v4: &[Ipv4Addr], v6: &[Ipv6Addr]) -> Result<()> {
        let cpus = aya::util::nr_cpus().map_err(|(what, e)| anyhow::anyhow!("{what}: {e}"))?;
        let flags = || PerCpuValues::try_from(vec![XDP_FILTER_SRC; cpus]);
        if !v4.is_empty() {
            let mut map: PerCpuHashMap<MapData, u32, u64> =
                PerCpuHashMap::try_from(Map::PerCpuHashMap(Self::map("filter_ipv4")?))?;
            for a in v4 {
                // The key is the address as it is in the packet (network order).
                map.insert(u32::from_ne_bytes(a.octets()), flags()?, 0)
                    .with_context(|| format!("adding {a} to xdp-filter's filter_ipv4"))?;
            }
        }
        if !v6.is_empty() {
            let mut map: PerCpuHashMap<MapData, [u8; 16], u64> =
                PerCpuHashMap::try_from(Map::PerCpuHashMap(Self::map("filter_ipv6")?))?;
            for a in v6 {
                map.insert(a.octets(), flags()?, 0)
                    .with_context(|| format!("adding {a} to xdp-filter's filter_ipv6"))?;
            }
        }
        Ok(())
    }

    /// Denies UDP packets to `port` (`xdp-filter port PORT -p udp`): the catch-all that
    /// drops what the address list does not.
    pub fn deny_udp_port(&self, port: u16) -> Result<()> {
        run(Command::new("xdp-filter").args(["port", &port.to_string(), "-p", "udp"]))
    }

    /// Packets dropped (xdp-filter's own per-action statistics, `XDP_DROP`) and, of those,
    /// packets its address lists matched (the sum of their entries' hit counters).
    pub fn counts(&self) -> Result<Counts> {
        let stats: PerCpuArray<MapData, [u64; 2]> =
            PerCpuArray::try_from(Map::PerCpuArray(Self::map("xdp_stats_map")?))?;
        // struct xdp_stats_record { packets, bytes }, indexed by action.
        let dropped: u64 = stats.get(&XDP_DROP, 0)?.iter().map(|r| r[0]).sum();
        let mut hits = 0u64;
        let v4: PerCpuHashMap<MapData, u32, u64> =
            PerCpuHashMap::try_from(Map::PerCpuHashMap(Self::map("filter_ipv4")?))?;
        for entry in v4.iter() {
            let (_, values) = entry?;
            hits += values.iter().map(|v| v >> XDP_FILTER_COUNTER_SHIFT).sum::<u64>();
        }
        let v6: PerCpuHashMap<MapData, [u8; 16], u64> =
            PerCpuHashMap::try_from(Map::PerCpuHashMap(Self::map("filter_ipv6")?))?;
        for entry in v6.iter() {
            let (_, values) = entry?;
            hits += values.iter().map(|v| v >> XDP_FILTER_COUNTER_SHIFT).sum::<u64>();
        }
        Ok(Counts { expected: dropped, hits: Some(hits) })
    }

    /// The name of the XDP program xdp-filter attached (it picks one by features).
    pub fn program_name(&self) -> Result<String> {
        Ok(self.attached()?.1)
    }

    /// The attached program's id and name, from `ip -j link show`.
    fn attached(&self) -> Result<(u32, String)> {
        let out =
            Command::new("ip").args(["-j", "link", "show", "dev", &self.iface]).output().context("cannot run ip")?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("parsing `ip -j link show`")?;
        let prog = &v[0]["xdp"]["prog"];
        let id = prog["id"].as_u64().with_context(|| format!("no XDP program on {}", self.iface))?;
        Ok((id as u32, prog["name"].as_str().unwrap_or("?").to_string()))
    }

    /// The run-time statistics (see [`RunTime`]) of the XDP program on the interface.
    pub fn run_time(&self) -> Result<RunTime> {
        let (id, _) = self.attached()?;
        for info in aya::programs::loaded_programs() {
            let info = info?;
            if info.id() == id {
                return Ok(RunTime::of(&info));
            }
        }
        bail!("no loaded program with id {id}")
    }

    /// Unloads now (also done on drop); xdp-filter removes its maps with its last program.
    pub fn unload(&mut self) -> Result<()> {
        if self.loaded {
            self.loaded = false;
            run(Command::new("xdp-filter").args(["unload", &self.iface]))?;
        }
        Ok(())
    }
}

impl Drop for XdpFilter {
    fn drop(&mut self) {
        if let Err(e) = self.unload() {
            eprintln!("warning: {e:#}");
        }
    }
}

/// Packets counted by the named counter `name` of nftables table `netdev TABLE`, asked of
/// the kernel directly (one `NFT_MSG_GETOBJ` over netlink). `nft list counter` would do,
/// but it first reads the whole table into its cache, set elements included: with the
/// flood's 1M-element interval set, minutes per read.
pub fn nft_counter_packets(table: &str, name: &str) -> Result<u64> {
    // <linux/netfilter/nf_tables.h>, <linux/netfilter/nfnetlink.h>, <linux/netfilter.h>.
    const NFNL_SUBSYS_NFTABLES: u16 = 10;
    const NFT_MSG_GETOBJ: u16 = 19;
    const NFPROTO_NETDEV: u8 = 5;
    const NFTA_OBJ_TABLE: u16 = 1;
    const NFTA_OBJ_NAME: u16 = 2;
    const NFTA_OBJ_TYPE: u16 = 3;
    const NFTA_OBJ_DATA: u16 = 4;
    const NFT_OBJECT_COUNTER: u32 = 1;
    const NFTA_COUNTER_PACKETS: u16 = 2;
    const NLMSG_ERROR: u16 = 2;
    const NLA_TYPE_MASK: u16 = 0x3fff;

    fn attr(buf: &mut Vec<u8>, kind: u16, payload: &[u8]) {
        buf.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(payload);
        buf.resize(buf.len().next_multiple_of(4), 0);
    }
    /// The attributes in `buf`: (type, payload).
    fn attrs(mut buf: &[u8]) -> Vec<(u16, &[u8])> {
        let mut out = Vec::new();
        while buf.len() >= 4 {
            let len = usize::from(u16::from_ne_bytes([buf[0], buf[1]]));
            let kind = u16::from_ne_bytes([buf[2], buf[3]]) & NLA_TYPE_MASK;
            if len < 4 || len > buf.len() {
                break;
            }
            out.push((kind, &buf[4..len]));
            buf = &buf[len.next_multiple_of(4).min(buf.len())..];
        }
        out
    }
    let cstr = |s: &str| {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        v
    };

    let mut body = vec![NFPROTO_NETDEV, 0, 0, 0]; // struct nfgenmsg, res_id 0
    attr(&mut body, NFTA_OBJ_TABLE, &cstr(table));
    attr(&mut body, NFTA_OBJ_NAME, &cstr(name));
    attr(&mut body, NFTA_OBJ_TYPE, &NFT_OBJECT_COUNTER.to_be_bytes());
    let mut msg = Vec::with_capacity(16 + body.len());
    msg.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
    msg.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETOBJ).to_ne_bytes());
    msg.extend_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    msg.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel assigns one
    msg.extend_from_slice(&body);

    // SAFETY: plain socket calls on a descriptor owned below; buffers are valid for the
    // lengths given.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 12) };
    if fd < 0 {
        bail!("netlink socket: {}", std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor nobody else owns.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    // SAFETY: a zeroed sockaddr_nl is valid; port 0 is the kernel.
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as u16;
    // SAFETY: see above.
    let sent = unsafe {
        libc::sendto(
            raw,
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    if sent < 0 {
        bail!("netlink send: {}", std::io::Error::last_os_error());
    }
    let mut reply = vec![0u8; 8192];
    // SAFETY: see above.
    let got = unsafe { libc::recv(raw, reply.as_mut_ptr().cast(), reply.len(), 0) };
    if got < 20 {
        bail!(
            "netlink receive: {}",
            if got < 0 { std::io::Error::last_os_error().to_string() } else { "short reply".into() }
        );
    }
    let reply = &reply[..got as usize];
    let len = (u32::from_ne_bytes(reply[0..4].try_into()?) as usize).min(reply.len());
    let kind = u16::from_ne_bytes([reply[4], reply[5]]);
    if kind == NLMSG_ERROR {
        let errno = -i32::from_ne_bytes(reply[16..20].try_into()?);
        bail!("reading nftables counter {name} of table netdev {table}: {}", std::io::Error::from_raw_os_error(errno));
    }
    // nlmsghdr (16) + nfgenmsg (4), then the object's attributes.
    let data = attrs(&reply[20..len])
        .into_iter()
        .find(|(k, _)| *k == NFTA_OBJ_DATA)
        .with_context(|| format!("nftables counter {name}: no data in the reply"))?;
    let packets = attrs(data.1)
        .into_iter()
        .find(|(k, _)| *k == NFTA_COUNTER_PACKETS)
        .with_context(|| format!("nftables counter {name}: no packet count in the reply"))?;
    Ok(u64::from_be_bytes(
        packets
            .1
            .try_into()
            .with_context(|| format!("nftables counter {name}: a packet count of {} bytes", packets.1.len()))?,
    ))
}
