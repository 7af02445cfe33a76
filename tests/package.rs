//! Packaging: the Debian package (cargo-deb) holds the binary, the systemd unit and
//! /etc/xdpwall, extracted into a scratch root with `dpkg-deb -x`; the unit passes
//! `systemd-analyze verify`; the shipped configuration and ruleset are valid.
//!
//! The package is made from the binary the suite already built (`--no-build`, the dev
//! profile), so this test adds no second build; `cargo xtask deb` makes the release one.

use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use xdpwall_tests::TempDir;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_debian_package_installs_the_binary_the_unit_and_the_configuration() {
    let tmp = TempDir::new("deb");
    let deb = tmp.write("xdpwall.deb", "");
    run(Command::new("cargo")
        .current_dir(workspace())
        .args(["deb", "-p", "filter-user", "--no-build", "--no-strip", "--fast", "--profile", "dev", "--output"])
        .arg(&deb));
    let root = deb.with_file_name("root");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    let control = run(Command::new("dpkg-deb").arg("--field").arg(&deb).args(["Package", "Architecture"]));
    assert!(control.contains("Package: xdpwall"), "{control}");
    let listing = run(Command::new("dpkg-deb").arg("--contents").arg(&deb));
    for path in [
        "./usr/bin/xdpwall",
        "./lib/systemd/system/xdpwall.service",
        "./etc/xdpwall/serve.toml",
        "./etc/xdpwall/xdpwall.conf",
        "./usr/share/doc/xdpwall/README.md",
        "./usr/share/doc/xdpwall/openapi.json",
    ] {
        assert!(listing.lines().any(|l| l.ends_with(path)), "{path} is not in the package:\n{listing}");
    }
    let conffiles = deb.with_file_name("control");
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&conffiles));
    let conffiles = std::fs::read_to_string(conffiles.join("conffiles")).unwrap();
    assert_eq!(conffiles.lines().collect::<Vec<_>>(), ["/etc/xdpwall/serve.toml", "/etc/xdpwall/xdpwall.conf"]);

    // The configuration is root's alone (it may name the token file).
    let mode = |p: &str| std::fs::metadata(root.join(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("etc/xdpwall/serve.toml"), 0o600);
    assert_eq!(mode("usr/bin/xdpwall"), 0o755);

    // The packaged binary runs, and the shipped ruleset is valid.
    let xdpwall = root.join("usr/bin/xdpwall");
    assert!(run(Command::new(&xdpwall).arg("--version")).starts_with("xdpwall "));
    run(Command::new(&xdpwall).arg("check").arg(root.join("etc/xdpwall/xdpwall.conf")));
    let conf: toml::Table =
        toml::from_str(&std::fs::read_to_string(root.join("etc/xdpwall/serve.toml")).unwrap()).unwrap();
    assert_eq!(conf["ruleset"].as_str(), Some("xdpwall.conf"));

    // The unit.
    let unit = std::fs::read_to_string(root.join("lib/systemd/system/xdpwall.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/xdpwall serve"), "{unit}");
    assert!(unit.contains("CapabilityBoundingSet=CAP_BPF CAP_NET_ADMIN"), "{unit}");
    assert!(unit.contains("ReadWritePaths=/sys/fs/bpf /run/xdpwall"), "{unit}");
    // Checked by systemd on this machine, with ExecStart pointing at the extracted binary
    // (systemd checks that the command exists; the rest of the unit is as shipped).
    let checked = deb.with_file_name("xdpwall.service");
    let extracted = root.join("usr/bin/xdpwall");
    std::fs::write(&checked, unit.replace("/usr/bin/xdpwall", extracted.to_str().unwrap())).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&checked)
        .output()
        .expect("systemd-analyze (Debian's systemd package; `cargo xtask setup` installs it)");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && !said.contains("xdpwall.service"), "systemd-analyze verify: {said}");
}
