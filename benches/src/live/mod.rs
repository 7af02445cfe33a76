//! Throughput on veth pairs: the receiver ends in the root namespace (where the filter
//! under test runs), the sender ends in a namespace of their own, and a generator made of
//! BPF_PROG_TEST_RUN with XDP live frames running `bench_tx` on a sender end, which
//! XDP_TXes every frame to its receiver.
//!
//! There are two pairs: the *test* pair, whose receiver runs what a row measures, and the
//! *reference* pair, whose receiver runs the bare XDP_DROP program for the whole run. A
//! row alternates the generator between them, sub-window by sub-window, so each rate has
//! a ceiling measured seconds before it: the ratio stays honest when the machine's speed
//! drifts or a neighbour steals cycles.
//!
//! Everything made here (namespace, veth pairs, route) is removed on drop, also when a
//! measurement fails or panics.

use std::fs::File;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd as _;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use aya::{TestRun as _, TestRunAttrs, TestRunOptions};
use xdpwall_tests::netns::Netns;
use xdpwall_tests::packet::PacketBuilder;

use crate::kernel::{PinDir, Reference, RunTime, enable_run_time_stats};
use crate::ruleset::{Probe, SOURCE_NET};

mod generator;
mod host;
mod sampling;
mod topology;

pub use generator::*;
pub use host::*;
pub use sampling::*;
pub use topology::*;
