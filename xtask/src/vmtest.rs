//! `cargo xtask vmtest`: xdpwall on the igb driver and on Debian's stock kernels, in QEMU.
//!
//! For each kernel of [`MATRIX`] this boots a QEMU guest (TCG, 2 vCPUs, 1 GiB) with two
//! emulated Intel 82576 NICs (`-device igb`, driven by the same igb driver as i350/i210)
//! on one QEMU hub, and runs the guest suite ([`guest`], this very binary, `xtask
//! vmtest-guest`) against the freshly built `xdpwall`. The guest sees the host's root file
//! system read-only over 9p, so it runs the host's tools (ip, ping, ethtool); an initramfs
//! of our own (static busybox, the kernel's 9p, igb, VLAN and TC modules, and the xtask
//! and xdpwall binaries, wherever the workspace is) mounts it and chroots.
//! No udev, no systemd, no modprobe: every module the suite needs is loaded by `/init`.
//!
//! Why these choices (found getting a guest to work on these machines):
//! - QEMU's igb device needs QEMU >= 8; Debian 12 has 7.2, bookworm-backports has 10.
//! - TCG, not KVM: /dev/kvm here cannot run stock kernels.
//! - The kernels are extracted from their packages (`apt-get download`, `dpkg-deb -x`)
//!   under the target directory, never installed over the host's (the 6.12 backport would
//!   pull a newer systemd/udev with it).
//! - Each igb gets an explicit PCI slot: a PF in slot N reserves slots N+16 and N+17 for
//!   its VFs, so auto-placed cards collide.
//!
//! The guest's console comes back line by line, prefixed with the kernel's label, and is
//! kept in `<target>/vmtest/<label>.log`; the suite's `vmtest: FAIL` lines name the
//! check, and the host's summary names the kernel.

pub mod guest;

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::{build_xdpwall, output, run, target_dir};

/// A kernel of the test matrix: the flavour of Debian's `linux-image-amd64` metapackage
/// in `suite` (None: the default candidate, i.e. bookworm with its security updates).
struct Kernel {
    label: &'static str,
    suite: Option<&'static str>,
}

/// Debian 12's own kernel (the most common appliance kernel) and the backported 6.12.
const MATRIX: [Kernel; 2] = [Kernel { label: "6.1", suite: None }, Kernel { label: "6.12", suite: Some(BACKPORTS) }];

const BACKPORTS: &str = "bookworm-backports";
const BACKPORTS_LIST: &str = "/etc/apt/sources.list.d/xdpwall-bookworm-backports.sources";
const BACKPORTS_SOURCE: &str = "\
# Added by `cargo xtask vmtest` (xdpwall): QEMU >= 8 (igb device) and Linux 6.12 for the VM tests.
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
";

/// Modules `/init` loads (with their dependencies), by name: 9p for the host's root, igb,
/// 802.1Q for the VLAN checks, clsact and cls_bpf for the classic TC attach (< 6.6).
const GUEST_MODULES: [&str; 7] = ["virtio_pci", "9pnet_virtio", "9p", "igb", "8021q", "sch_ingress", "cls_bpf"];

/// A guest that has not powered off by then is killed (a normal run takes about two
/// minutes; the guest's own watchdog ends a hung check after 90 s).
const GUEST_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Args)]
pub struct VmtestArgs {
    /// Only these kernels of the matrix (by label: 6.1, 6.12); all when none given.
    #[arg(long = "kernel", value_name = "LABEL")]
    kernels: Vec<String>,
}

pub fn run_vmtest(args: &VmtestArgs) -> Result<()> {
    for label in &args.kernels {
        if !MATRIX.iter().any(|k| k.label == label) {
            bail!("no kernel {label} in the matrix (have {})", labels());
        }
    }
    let dir = target_dir()?.join("vmtest");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    host_packages()?;
    let busybox = with_fresh_lists("getting busybox-static", || busybox(&dir))?;
    let kernels: Vec<(&Kernel, KernelTree)> = MATRIX
        .iter()
        .filter(|k| args.kernels.is_empty() || args.kernels.iter().any(|l| l == k.label))
        .map(|k| Ok((k, with_fresh_lists(&format!("getting the {} kernel", k.label), || kernel_tree(&dir, k))?)))
        .collect::<Result<_>>()?;

    let xdpwall = build_xdpwall()?;
    let xtask = std::env::current_exe().context("locating the xtask binary")?;

    let started = Instant::now();
    let mut results = Vec::new();
    for (kernel, tree) in &kernels {
        let outcome = boot(&dir, kernel, tree, &busybox, &xtask, &xdpwall);
        results.push((kernel.label, tree.release.clone(), outcome));
    }

    println!("\nvmtest summary ({} s):", started.elapsed().as_secs());
    let mut failed = Vec::new();
    for (label, release, outcome) in &results {
        match outcome {
            Ok(run) => {
                println!("  {} in {} s", run.summary, run.seconds);
                for check in &run.failures {
                    println!("    FAIL [{label}] {check}");
                }
                if !run.failures.is_empty() || !run.passed_all {
                    failed.push(*label);
                }
            }
            Err(e) => {
                println!("  {label} ({release}): did not complete: {e:#}");
                failed.push(*label);
            }
        }
    }
    if !failed.is_empty() {
        bail!("vmtest failed on {} (logs in {})", failed.join(", "), dir.display());
    }
    Ok(())
}

fn labels() -> String {
    MATRIX.iter().map(|k| k.label).collect::<Vec<_>>().join(", ")
}

/// QEMU with the igb device (from bookworm-backports) and xz for compressed modules.
/// Says what it changes; silent when everything is there.
fn host_packages() -> Result<()> {
    if !Path::new(BACKPORTS_LIST).exists() {
        std::fs::write(BACKPORTS_LIST, BACKPORTS_SOURCE).with_context(|| format!("writing {BACKPORTS_LIST}"))?;
        println!("vmtest setup: added Debian's {BACKPORTS} suite to apt ({BACKPORTS_LIST})");
    }
    if !backports_known()? {
        println!("vmtest setup: apt-get update (for {BACKPORTS})");
        run(Command::new("apt-get").arg("update").env("DEBIAN_FRONTEND", "noninteractive"))?;
        if !backports_known()? {
            bail!("apt knows no {BACKPORTS} packages after apt-get update (see {BACKPORTS_LIST})");
        }
    }
    if !qemu_has_igb() {
        println!("vmtest setup: installing qemu-system-x86 from {BACKPORTS} (QEMU >= 8 has the igb device)");
        run(Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "-t", BACKPORTS, "qemu-system-x86"])
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
        if !qemu_has_igb() {
            bail!("qemu-system-x86_64 from {BACKPORTS} still has no igb device");
        }
    }
    if Command::new("xz").arg("--version").output().is_err() {
        println!("vmtest setup: installing xz-utils (the 6.12 kernel's modules are .ko.xz)");
        run(Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "xz-utils"])
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    }
    Ok(())
}

fn backports_known() -> Result<bool> {
    let out = output(Command::new("apt-cache").args(["policy", "qemu-system-x86"]))?;
    Ok(String::from_utf8_lossy(&out.stdout).contains(BACKPORTS))
}

fn qemu_has_igb() -> bool {
    Command::new("qemu-system-x86_64")
        .args(["-device", "help"])
        .output()
        .is_ok_and(|out| out.status.success() && String::from_utf8_lossy(&out.stdout).contains("name \"igb\""))
}

/// Downloads `package` (from `suite` when given) into `dir` and extracts it to `dir/<into>`;
/// returns the extraction directory. Nothing is installed.
fn extract_package(dir: &Path, package: &str, suite: Option<&str>, into: &str) -> Result<PathBuf> {
    let root = dir.join(into);
    let done = root.join(".extracted");
    if done.exists() {
        return Ok(root);
    }
    let downloads = dir.join("downloads");
    let _ = std::fs::remove_dir_all(&downloads);
    std::fs::create_dir_all(&downloads)?;
    let spec = match suite {
        Some(s) => format!("{package}/{s}"),
        None => package.to_string(),
    };
    // apt's sandbox user cannot write into root's directories: download as root, quietly.
    run(Command::new("apt-get")
        .args(["download", "-q", "-o", "APT::Sandbox::User=root", &spec])
        .current_dir(&downloads))?;
    let deb = std::fs::read_dir(&downloads)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .with_context(|| format!("apt-get download {spec} left no .deb in {}", downloads.display()))?;
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
    std::fs::write(&done, deb.file_name().unwrap_or_default().as_encoded_bytes())?;
    let _ = std::fs::remove_dir_all(&downloads);
    println!("vmtest setup: extracted {} into {} (not installed)", deb.display(), root.display());
    Ok(root)
}

/// Runs `f`; if it fails, refreshes apt's package lists and runs it once more. Stale
/// lists name versions the archive has dropped (security updates replace kernels, even
/// under a new package name), so `f` must resolve names itself.
fn with_fresh_lists<T>(what: &str, f: impl Fn() -> Result<T>) -> Result<T> {
    match f() {
        Ok(v) => Ok(v),
        Err(e) => {
            println!("vmtest setup: {what} failed ({e:#}); apt-get update and once more");
            run(Command::new("apt-get").arg("update").env("DEBIAN_FRONTEND", "noninteractive"))?;
            f()
        }
    }
}

/// The static busybox that runs the guest's /init (the `busybox-static` package conflicts
/// with the host's `busybox`, so it is extracted, not installed).
fn busybox(dir: &Path) -> Result<PathBuf> {
    let root = extract_package(dir, "busybox-static", None, "busybox-static")?;
    let bin = root.join("bin/busybox");
    if !bin.is_file() {
        bail!("busybox-static has no {}", bin.display());
    }
    Ok(bin)
}

/// An extracted kernel package.
struct KernelTree {
    /// `uname -r` of the kernel, e.g. 6.1.0-57-amd64.
    release: String,
    vmlinuz: PathBuf,
    /// lib/modules/<release>.
    modules: PathBuf,
}

/// Resolves the matrix entry to a versioned package (`linux-image-6.1.0-57-amd64`) through
/// the metapackage and extracts it.
fn kernel_tree(dir: &Path, kernel: &Kernel) -> Result<KernelTree> {
    let meta = match kernel.suite {
        Some(s) => format!("linux-image-amd64/{s}"),
        None => "linux-image-amd64".to_string(),
    };
    let out = output(Command::new("apt-cache").args(["depends", &meta]))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let package = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Depends: ").filter(|p| p.starts_with("linux-image-")))
        .with_context(|| format!("`apt-cache depends {meta}` names no linux-image package:\n{text}"))?
        .trim()
        .to_string();
    let root = extract_package(dir, &package, kernel.suite, &format!("kernels/{package}"))?;
    let release = package.strip_prefix("linux-image-").expect("checked above").to_string();
    let vmlinuz = root.join(format!("boot/vmlinuz-{release}"));
    let modules = root.join(format!("lib/modules/{release}"));
    if !vmlinuz.is_file() || !modules.is_dir() {
        bail!("{package} has no {} or {}", vmlinuz.display(), modules.display());
    }
    Ok(KernelTree { release, vmlinuz, modules })
}

/// Module name as the kernel knows it: file stem, `-` as `_`.
fn module_name(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let stem =
        name.strip_suffix(".ko").or_else(|| name.strip_suffix(".ko.xz")).or_else(|| name.strip_suffix(".ko.zst"))?;
    Some(stem.replace('-', "_"))
}

/// The module's bytes, decompressed.
fn module_bytes(path: &Path) -> Result<Vec<u8>> {
    let name = path.to_string_lossy();
    let tool = if name.ends_with(".xz") {
        "xz"
    } else if name.ends_with(".zst") {
        "zstd"
    } else {
        return std::fs::read(path).with_context(|| format!("reading {name}"));
    };
    Ok(output(Command::new(tool).arg("-dc").arg(path))?.stdout)
}

/// `depends=a,b` from the module's .modinfo strings.
fn module_depends(bytes: &[u8]) -> Vec<String> {
    let key = b"\0depends=";
    let Some(at) = bytes.windows(key.len()).position(|w| w == key) else {
        return Vec::new();
    };
    let value = &bytes[at + key.len()..];
    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
    String::from_utf8_lossy(&value[..end]).split(',').filter(|s| !s.is_empty()).map(|s| s.replace('-', "_")).collect()
}

/// `wanted` and everything they depend on, in load order (dependencies first), as
/// (name, decompressed bytes). Modules built into the kernel are skipped.
fn modules_in_load_order(tree: &KernelTree, wanted: &[&str]) -> Result<Vec<(String, Vec<u8>)>> {
    let builtin: HashSet<String> = std::fs::read_to_string(tree.modules.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| module_name(Path::new(l)))
        .collect();
    let mut files = BTreeMap::new();
    let mut stack = vec![tree.modules.join("kernel")];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("listing {}", d.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Some(name) = module_name(&path) {
                files.insert(name, path);
            }
        }
    }

    fn visit(
        name: &str,
        files: &BTreeMap<String, PathBuf>,
        builtin: &HashSet<String>,
        seen: &mut HashSet<String>,
        order: &mut Vec<(String, Vec<u8>)>,
    ) -> Result<()> {
        if builtin.contains(name) || !seen.insert(name.to_string()) {
            return Ok(());
        }
        let path = files.get(name).with_context(|| format!("the kernel has no module {name}"))?;
        let bytes = module_bytes(path)?;
        for dep in module_depends(&bytes) {
            visit(&dep, files, builtin, seen, order)?;
        }
        order.push((name.to_string(), bytes));
        Ok(())
    }
    let mut seen = HashSet::new();
    let mut order = Vec::new();
    for name in wanted {
        visit(name, &files, &builtin, &mut seen, &mut order)?;
    }
    Ok(order)
}

/// The guest's /init: load the modules, mount the host's root read-only over 9p with
/// writable tmpfs where the suite writes (/tmp, /run), run the suite chrooted there, and
/// power off (QEMU runs with -no-reboot, so that ends it; a panic reboots, which too).
fn init_script(modules: &[String], label: &str) -> String {
    format!(
        r#"#!/bin/busybox sh
# PID 1 of an xdpwall vmtest guest, generated by xtask/src/vmtest.rs.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in {modules}; do
    insmod /modules/$m.ko || echo "vmtest-init: insmod $m failed"
done
if mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose hostroot /host; then
    mount -t proc proc /host/proc
    mount -t sysfs sysfs /host/sys
    mount -t devtmpfs devtmpfs /host/dev
    mount -t tmpfs tmpfs /host/tmp
    mount -t tmpfs tmpfs /host/run
    mount -t bpf bpf /host/sys/fs/bpf
    # The binaries come in the initramfs: the workspace may sit where the guest cannot
    # see it (under /tmp, which the tmpfs above hides, or on another mount).
    cp /vmbin/xtask /vmbin/xdpwall /host/run/
    chroot /host /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/tmp RUST_BACKTRACE=1 /run/xtask vmtest-guest --kernel {label} --xdpwall /run/xdpwall
    echo "vmtest-init: the suite exited with status $?"
else
    echo "vmtest-init: cannot mount the host's root file system over 9p"
fi
poweroff -f
echo o > /proc/sysrq-trigger
"#,
        modules = modules.join(" "),
    )
}

/// A newc cpio archive (what the kernel unpacks as initramfs), written in memory.
#[derive(Default)]
struct Cpio {
    data: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), body: &[u8]) {
        self.ino += 1;
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            body.len(),
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() + 1,
            0
        );
        self.data.extend_from_slice(header.as_bytes());
        self.data.extend_from_slice(name.as_bytes());
        self.data.push(0);
        self.pad();
        self.data.extend_from_slice(body);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.data.len().is_multiple_of(4) {
            self.data.push(0);
        }
    }

    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040755, (0, 0), &[]);
    }

    fn file(&mut self, name: &str, mode: u32, body: &[u8]) {
        self.entry(name, 0o100000 | mode, (0, 0), body);
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        self.data
    }
}

fn initramfs(tree: &KernelTree, busybox: &Path, xtask: &Path, xdpwall: &Path, label: &str) -> Result<Vec<u8>> {
    let modules = modules_in_load_order(tree, &GUEST_MODULES)?;
    let mut cpio = Cpio::default();
    for d in ["bin", "dev", "proc", "sys", "host", "modules", "vmbin"] {
        cpio.dir(d);
    }
    // The kernel opens /dev/console for PID 1 before /init could mount devtmpfs.
    cpio.entry("dev/console", 0o020600, (5, 1), &[]);
    let bb = std::fs::read(busybox).with_context(|| format!("reading {}", busybox.display()))?;
    cpio.file("bin/busybox", 0o755, &bb);
    let names: Vec<String> = modules.iter().map(|(n, _)| n.clone()).collect();
    for (name, bytes) in &modules {
        cpio.file(&format!("modules/{name}.ko"), 0o644, bytes);
    }
    for (name, path) in [("xtask", xtask), ("xdpwall", xdpwall)] {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        cpio.file(&format!("vmbin/{name}"), 0o755, &bytes);
    }
    cpio.file("init", 0o755, init_script(&names, label).as_bytes());
    Ok(cpio.finish())
}

/// What one guest run reported.
struct GuestRun {
    /// The suite's `RESULT` line.
    summary: String,
    /// Checks that failed.
    failures: Vec<String>,
    /// The suite reported its result and no failure.
    passed_all: bool,
    seconds: u64,
}

/// Boots `kernel` with the suite and streams its console, prefixed with the label.
fn boot(
    dir: &Path,
    kernel: &Kernel,
    tree: &KernelTree,
    busybox: &Path,
    xtask: &Path,
    xdpwall: &Path,
) -> Result<GuestRun> {
    let label = kernel.label;
    let initrd = dir.join(format!("initramfs-{label}.cpio"));
    std::fs::write(&initrd, initramfs(tree, busybox, xtask, xdpwall, label)?)
        .with_context(|| format!("writing {}", initrd.display()))?;
    let log_path = dir.join(format!("{label}.log"));
    let mut log = std::fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;

    println!("vmtest: booting {} ({label}) in QEMU (TCG, 2 vCPUs, two igb NICs on one hub)", tree.release);
    let started = Instant::now();
    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.args(["-nodefaults", "-no-user-config", "-no-reboot", "-display", "none", "-serial", "stdio"])
        .args(["-machine", "q35", "-accel", "tcg", "-cpu", "max", "-smp", "2", "-m", "1G"])
        .arg("-kernel")
        .arg(&tree.vmlinuz)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", "console=ttyS0 panic=-1 loglevel=4"])
        .args(["-fsdev", "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap"])
        .args(["-device", "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot,addr=0x05"])
        .args(["-netdev", "hubport,id=h0,hubid=0", "-device", "igb,netdev=h0,addr=0x0a,mac=52:54:00:98:00:01"])
        .args(["-netdev", "hubport,id=h1,hubid=0", "-device", "igb,netdev=h1,addr=0x0c,mac=52:54:00:98:00:02"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = qemu.spawn().context("starting qemu-system-x86_64")?;

    let (tx, rx) = mpsc::channel::<String>();
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n').map_while(Result::ok) {
            let _ = tx.send(String::from_utf8_lossy(&line).trim_end_matches('\r').to_string());
        }
    });
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).split(b'\n').map_while(Result::ok) {
            let _ = tx2.send(format!("qemu: {}", String::from_utf8_lossy(&line)));
        }
    });

    let mut summary = None;
    let mut failures = Vec::new();
    let deadline = started + GUEST_TIMEOUT;
    let mut timed_out = false;
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                println!("[{label}] {line}");
                let _ = writeln!(log, "{line}");
                if let Some(check) = line.strip_prefix("vmtest: FAIL ") {
                    failures.push(check.to_string());
                } else if let Some(result) = line.strip_prefix("vmtest: RESULT ") {
                    summary = Some(result.to_string());
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if Instant::now() > deadline {
            timed_out = true;
            let _ = child.kill();
        }
    }
    let status = child.wait().context("waiting for QEMU")?;
    let seconds = started.elapsed().as_secs();
    if timed_out {
        bail!("the guest did not power off within {} s (killed; log: {})", GUEST_TIMEOUT.as_secs(), log_path.display());
    }
    let Some(summary) = summary else {
        bail!("the suite reported no result (QEMU {status}; log: {})", log_path.display());
    };
    let passed_all = failures.is_empty() && summary.contains(" 0 failed");
    Ok(GuestRun { summary, failures, passed_all, seconds })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_and_depends() {
        assert_eq!(
            module_name(Path::new("kernel/drivers/i2c/algos/i2c-algo-bit.ko.xz")).as_deref(),
            Some("i2c_algo_bit")
        );
        assert_eq!(module_name(Path::new("igb.ko")).as_deref(), Some("igb"));
        assert_eq!(module_name(Path::new("modules.dep")), None);
        let modinfo = b"\0license=GPL\0depends=dca,i2c-algo-bit,ptp\0retpoline=Y\0";
        assert_eq!(module_depends(modinfo), ["dca", "i2c_algo_bit", "ptp"]);
        assert!(module_depends(b"\0depends=\0name=x\0").is_empty());
    }

    #[test]
    fn cpio_entries_are_aligned_and_terminated() {
        let mut c = Cpio::default();
        c.file("init", 0o755, b"abc");
        let data = c.finish();
        assert!(data.starts_with(b"070701"));
        assert_eq!(data.len() % 4, 0);
        let trailer = b"TRAILER!!!\0";
        assert!(data.windows(trailer.len()).any(|w| w == trailer));
    }
}
