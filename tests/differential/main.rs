//! Differential tests: generated rulesets and packets through the real XDP program
//! (BPF_PROG_TEST_RUN) and through the reference model (`filter_user::model`); both
//! must pick the same rule (or default, non-IP, malformed reason) and the same action.
//!
//! Each case is a pool of values (nested prefixes of both families, ports, VLAN ids,
//! ICMP types, protocols), a ruleset drawn from the pool (`quick` and non-`quick` rules
//! in pf's order, `in` and direction-less rules, `no state`, every match field, negated
//! lists, tables with nested entries, `on` the loopback's name or another, `out` rules
//! that received packets must skip, default pass or block, sometimes more than 64
//! rules), rendered as pf text and parsed (so the parser is exercised too), and
//! packets drawn from the pool, half of them aimed at a rule of the ruleset (its
//! addresses, ports, flags, ... at and just past their edges). Packets are mangled now
//! and then: VLAN tags (up to 3), IPv4 options and fragments, IPv6 extension chains
//! (up to 11 headers, fragments first and later), bad versions and header lengths,
//! random cuts, random bytes. The IP packets of rulesets without state also leave
//! through the TC egress program, as the host's own: `out` and direction-less rules
//! judge them there, and what none decides passes (the model's `decide_going`).
//!
//! Default run: 200 rulesets, 500 packets each; `XDPWALL_DIFF_SCALE=N` multiplies the
//! rulesets. The totals, and which rule features decided packets, are printed to
//! stderr. Failures shrink and are saved in `differential.proptest-regressions` (beside this directory)
//! (replayed first on every run); concrete ones found so far are the `regression_*`
//! tests at the end. This property is stateless: its pass rules say `no state`;
//! state (`keep state`, and pf's default state with `flags S/SA` on TCP) on `in` and
//! direction-less rules is left to the second property,
//! `kernel_agrees_with_model_on_sequences`; rate limits to the third,
//! `kernel_agrees_with_model_on_buckets` (`rates.rs`: full and empty buckets).
//!
//! The second property checks connection tracking: rulesets whose pass rules keep
//! state (written, or pf's default) or say `no state`, `quick` or not, `in`, `out` or
//! both ways (in about one ruleset in five, most `keep state` rules with
//! `(max-src-states N)`, N from 1 to 3, so that sources reach their limit and see
//! openings refused; never `max-src-conn`, `max-src-conn-rate` or `overload`, which
//! the model does not know), and per ruleset a dozen flows (TCP, UDP, ICMP/ICMPv6 echo between a few
//! hosts) each emitting a scripted sequence in both directions (handshakes, data, FINs,
//! RSTs, reconnections, retransmissions, stray ACKs, unsolicited SYN-ACKs, SYNs on
//! established flows, wrong ports and identifiers, ...) with random mutations,
//! interleaved across flows. Every ruleset gets a freshly loaded program (its own pin
//! dir, so the pinned flow table starts empty) and a fresh `model::state::Tracker`;
//! every packet's decision must agree, "passed by state" included. As on a router,
//! both directions enter through XDP. Default run: 100 rulesets of at least 200
//! packets; `XDPWALL_DIFF_SCALE` multiplies the rulesets.

use std::{
    cell::RefCell,
    fmt::{self, Write as _},
    io::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
    sync::atomic::{AtomicU64, Ordering},
    time::Instant,
};

use filter_common::{
    Malformed, names, slot,
    wire::{ETH_P_IP, ETH_P_IPV6},
};
use filter_user::{
    compile,
    dataplane::Decision,
    model::{
        self, ModelDecision,
        packet::{Dissected, dissect},
        state::Tracker,
    },
    rules::{self, Action, AddrItem, AddrMatch, Direction, Family, Rule, Ruleset},
};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use proptest::{
    collection::vec,
    prelude::*,
    sample::{Index, select},
    test_runner::{Config, FileFailurePersistence, TestCaseError, TestRunner},
};
use xdpwall_tests::bpf::{Bed, LO};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
/// Rulesets per default run.
const RULESETS: u32 = 200;
/// Packets per ruleset.
const PACKETS: usize = 500;
/// Frames are kept below what BPF_PROG_TEST_RUN takes for XDP (a page less head- and
/// tailroom).
const MAX_FRAME: usize = 3000;
/// Interface names rules use; the loopback is loaded as one of the first two or not at all.
const IFACE_NAMES: [&str; 3] = ["lo", "wan0", "eth1"];
const TABLES: usize = 3;

mod packets;
mod pool;
mod rates;
mod regressions;
mod render;
mod rulesets;
mod run;
mod sequences;

use packets::*;
use pool::*;
use render::*;
use rulesets::*;
use run::*;
use sequences::*;
