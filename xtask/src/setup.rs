//! `cargo xtask setup`: bring a fresh machine to the point where the build and the tests
//! run. Every step checks first and prints a line only when it changes something.
//! The facts behind each step (toolchains, bpf-linker against rustc's own LLVM, bpffs) are
//! in the README's "Requirements and toolchain" section.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{output, run};

/// Debian packages the tests, the demo and the benchmarks call (xdp-tools: xdp-filter, the
/// benchmark's peer for plain blocklists; prometheus: `promtool check metrics` for the
/// daemon's /metrics; systemd: `systemd-analyze verify` for the unit; curl: the API over
/// its unix socket; dpkg-dev: dpkg-shlibdeps, which cargo-deb asks for the package's
/// dependencies).
const PACKAGES: &[&str] =
    &["iproute2", "ethtool", "iputils-ping", "nftables", "bpftool", "xdp-tools", "prometheus", "systemd", "curl"];
/// cargo-deb builds the Debian package (`cargo xtask deb`); pinned so the package's
/// layout does not change under us.
pub const CARGO_DEB_VERSION: &str = "3.8.0";
const BPF_LINKER_VERSION: &str = "0.13.0";
const BPFFS: &str = "/sys/fs/bpf";

pub fn ensure() -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!("xtask needs root (XDP, network namespaces, bpffs, apt): run it as root");
    }
    debian_packages()?;
    let sysroot = nightly_sysroot()?;
    rust_src(&sysroot)?;
    bpf_linker(&sysroot)?;
    cargo_deb()?;
    mount_bpffs()
}

/// cargo-deb at [`CARGO_DEB_VERSION`], for `cargo xtask deb` and the package test.
fn cargo_deb() -> Result<()> {
    let installed = Command::new("cargo")
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains(CARGO_DEB_VERSION));
    if installed {
        return Ok(());
    }
    println!("setup: installing cargo-deb {CARGO_DEB_VERSION}");
    run(Command::new("cargo").args(["install", "cargo-deb", "--locked", "--force", "--version", CARGO_DEB_VERSION]))
}

fn debian_packages() -> Result<()> {
    let missing: Vec<&str> = PACKAGES.iter().copied().filter(|p| !dpkg_installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!("setup: installing Debian packages: {}", missing.join(" "));
    run(Command::new("apt-get").arg("update").env("DEBIAN_FRONTEND", "noninteractive"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn dpkg_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|out| out.status.success() && out.stdout == b"install ok installed")
}

fn nightly_sysroot() -> Result<PathBuf> {
    let out = output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))
        .context("the nightly toolchain is needed to build filter-ebpf")?;
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

/// `-Z build-std=core` for bpfel-unknown-none needs the nightly's library sources.
fn rust_src(sysroot: &Path) -> Result<()> {
    if sysroot.join("lib/rustlib/src/rust").is_dir() {
        return Ok(());
    }
    println!("setup: adding rust-src to the nightly toolchain");
    run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
}

/// bpf-linker, built against the nightly rustc's own libLLVM so the LLVM versions always agree.
fn bpf_linker(sysroot: &Path) -> Result<()> {
    let version = Command::new("bpf-linker").arg("--version").output();
    if let Ok(out) = &version {
        let text = String::from_utf8_lossy(&out.stdout);
        if out.status.success() && text.split_whitespace().nth(1) == Some(BPF_LINKER_VERSION) {
            return Ok(());
        }
    }

    let lib_dir = sysroot.join("lib");
    let names = std::fs::read_dir(&lib_dir)
        .with_context(|| format!("listing {}", lib_dir.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok());
    let llvm = names
        .filter(|n| llvm_major(n).is_some())
        .min()
        .with_context(|| format!("no libLLVM.so.<version> in {}", lib_dir.display()))?;
    let major = llvm_major(&llvm).expect("filtered above");

    // LLVM_PREFIX/lib must hold both names: llvm-sys links `-lLLVM`, the loader wants the real one.
    // bpf-linker finds libLLVM through these links at run time, so they live beside the
    // installed binary (CARGO_HOME), not in a target dir that `cargo clean` or a fresh
    // clone would take away.
    let prefix = cargo_home()?.join("xdpwall-llvm-prefix");
    let prefix_lib = prefix.join("lib");
    std::fs::create_dir_all(&prefix_lib).with_context(|| format!("creating {}", prefix_lib.display()))?;
    for link in ["libLLVM.so", llvm.as_str()] {
        let link = prefix_lib.join(link);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(lib_dir.join(&llvm), &link)
            .with_context(|| format!("symlinking {}", link.display()))?;
    }

    println!(
        "setup: building bpf-linker {BPF_LINKER_VERSION} against {} (LLVM {major}), LLVM_PREFIX={}",
        lib_dir.join(&llvm).display(),
        prefix.display()
    );
    run(Command::new("cargo")
        .args(["install", "bpf-linker", "--force", "--version", BPF_LINKER_VERSION])
        .args(["--no-default-features", "--features", &format!("llvm-{major}")])
        .env("LLVM_PREFIX", &prefix))?;

    let out = output(Command::new("bpf-linker").arg("--version"))
        .context("bpf-linker was installed but is not on PATH (add ~/.cargo/bin)")?;
    print!("setup: {}", String::from_utf8_lossy(&out.stdout));
    Ok(())
}

fn cargo_home() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("CARGO_HOME") {
        return Ok(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME").context("neither CARGO_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".cargo"))
}

/// `libLLVM.so.22.1-rust-1.97.0-nightly` -> `22`. Other names (the `libLLVM-22-...so` linker
/// script beside it, librustc_driver) -> None.
fn llvm_major(file_name: &str) -> Option<u32> {
    let version = file_name.strip_prefix("libLLVM.so.")?;
    version.split(['.', '-']).next()?.parse().ok()
}

/// The pin directory of xdpwall (and of the tests) lives on bpffs.
fn mount_bpffs() -> Result<()> {
    let mounts = std::fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
    let mounted = mounts.lines().any(|line| {
        let mut fields = line.split_whitespace();
        let (_dev, dir, fstype) = (fields.next(), fields.next(), fields.next());
        dir == Some(BPFFS) && fstype == Some("bpf")
    });
    if mounted {
        return Ok(());
    }
    run(Command::new("mount").args(["-t", "bpf", "bpf", BPFFS]))?;
    println!("setup: mounted bpffs at {BPFFS}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::llvm_major;

    #[test]
    fn llvm_major_from_sysroot_file_names() {
        assert_eq!(llvm_major("libLLVM.so.22.1-rust-1.97.0-nightly"), Some(22));
        assert_eq!(llvm_major("libLLVM.so.19.1-rust-1.84.0-nightly"), Some(19));
        assert_eq!(llvm_major("libLLVM-22-rust-1.97.0-nightly.so"), None);
        assert_eq!(llvm_major("librustc_driver-b5a965480ee51f9a.so"), None);
        assert_eq!(llvm_major("libLLVM.so"), None);
    }
}
