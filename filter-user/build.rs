//! Builds the eBPF crate (nightly, bpfel-unknown-none) and leaves the object in OUT_DIR,
//! where `dataplane` embeds it.
use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR")?;
    let root = std::path::Path::new(&manifest_dir)
        .parent()
        .ok_or_else(|| anyhow!("filter-user has no parent dir"))?
        .join("filter-ebpf");
    let root = root.to_str().ok_or_else(|| anyhow!("non-UTF-8 path {root:?}"))?;
    println!("cargo:rerun-if-changed=../filter-common/src");
    aya_build::build_ebpf(
        [aya_build::Package { name: "filter-ebpf", root_dir: root, ..Default::default() }],
        aya_build::Toolchain::default(),
    )
}
