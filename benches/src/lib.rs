//! xdpwall's benchmarks.
//!
//! - [`ruleset`]: rulesets generated in code (rules that differ in source, port and
//!   protocol; million-entry tables) and the packets that match their last rule or none.
//! - [`flood`]: the spoofed-source flood: million-entry blocklists (IPv4 and IPv6) drawn
//!   inside the networks the generator spoofs its sources from, and their rulesets.
//! - [`kernel`]: the eBPF object's programs (xdpwall for a compiled ruleset, the
//!   `bench_drop` ceiling, the `bench_tx` generator) and their per-packet cost through
//!   BPF_PROG_TEST_RUN with `repeat`.
//! - [`live`]: veth pairs (test and reference) with the receivers in the root namespace and
//!   the senders in a namespace, the XDP live-frames generator, and paired sampling.
//! - [`receiver`]: what the receiver runs: `bench_drop`, xdpwall (its CLI), nftables,
//!   xdp-filter (xdp-tools).
//! - [`report`]: what a run measured (rows, targets; serialised as report.json), rendered
//!   as Markdown (`report::markdown`) and as an SVG plot (`report::plot`).
//!
//! `benches/` holds the criterion benches (compile speed, per-packet cost); the
//! `xdpwall-bench` binary, run by `cargo xtask bench`, measures everything in one run
//! and writes the report. Everything but [`ruleset`] and [`report`] needs root.

#![warn(missing_docs)]

pub mod flood;
pub mod kernel;
pub mod live;
pub mod receiver;
pub mod report;
pub mod ruleset;
