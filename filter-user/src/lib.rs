//! xdpwall's user side: the rule language, the compiler to classifier tables, and
//! the data plane driver (load, apply, status, unload) through aya.
#![deny(missing_docs)]

pub mod cli;
pub mod compile;
pub mod control;
pub mod dataplane;
pub mod host;
pub mod model;
pub mod rules;
pub mod serve;
