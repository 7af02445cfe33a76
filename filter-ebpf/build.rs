use which::which;

/// Rebuild the eBPF object when bpf-linker changes (it is the linker, so a new one
/// can change the output); see aya-template.
fn main() {
    let bpf_linker = which("bpf-linker").expect("bpf-linker not found: run `cargo xtask setup`");
    println!("cargo:rerun-if-changed={}", bpf_linker.to_str().unwrap());
}
