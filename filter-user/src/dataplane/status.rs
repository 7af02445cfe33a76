//! What `xdpwall status` reports: per-rule and per-interface counters, and whether
//! every interface really runs the committed ruleset (its links are attached to it,
//! on both hooks, and not severed).

use filter_common::{Malformed, slot};
use serde::{Deserialize, Serialize};

use super::{
    Error, Paths, flows,
    flows::FlowTable,
    links::{self, Hook, LinkState, Pinned},
    nic, privilege, program,
    state::State,
    transaction,
};
use crate::rules::Action;

/// Counters of one rule or reason.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuleStatus {
    /// Rule number, from 1, in ruleset order.
    pub number: usize,
    /// The rule as written.
    pub text: String,
    /// Label, if any.
    pub label: Option<String>,
    /// pass or block.
    pub action: Action,
    /// Packets the rule decided.
    pub packets: u64,
    /// Bytes of those packets.
    pub bytes: u64,
    /// Rules with a rate limit: packets the rule would have matched but for its rate
    /// (they went on to the later rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub over_rate: Option<u64>,
    /// Rules with `log`: records of their packets written to the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logged: Option<u64>,
    /// Rules with limits per source: packets they passed that a limit dropped (a new
    /// flow over `max-src-states`, a handshake over `max-src-conn` or
    /// `max-src-conn-rate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_limited: Option<u64>,
}

/// The packet log's counters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LogStatus {
    /// Records written to the ring buffer.
    pub written: u64,
    /// Packets not logged: the log was over `set log-rate`.
    pub suppressed: u64,
    /// Records lost: the ring buffer was full (no reader, or a slow one).
    pub lost: u64,
}

/// One interface's totals.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IfaceStatus {
    /// Name.
    pub name: String,
    /// Kernel index.
    pub ifindex: u32,
    /// native or generic.
    pub mode: String,
    /// Whether both hooks' links are attached to this interface and run the committed
    /// ruleset's programs.
    pub attached: bool,
    /// What is wrong when `attached` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// What the driver imposes while XDP is attached (igb: the largest MTU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Packets passed.
    pub passed_packets: u64,
    /// Bytes passed.
    pub passed_bytes: u64,
    /// Packets dropped.
    pub dropped_packets: u64,
    /// Bytes dropped.
    pub dropped_bytes: u64,
}

/// A named counter (default policy, non-IP, malformed reasons).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NamedCounter {
    /// What it counts.
    pub name: String,
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
}

/// Everything `xdpwall status` shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// What recovery did before reading (an interrupted apply finished or rolled back).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Ruleset file last applied.
    pub ruleset_file: Option<String>,
    /// Apply count since load.
    pub generation: u64,
    /// Per rule.
    pub rules: Vec<RuleStatus>,
    /// The default policy and its counter.
    pub default_action: Action,
    /// Packets decided by the default policy.
    pub default: NamedCounter,
    /// Non-IP frames passed.
    pub non_ip: NamedCounter,
    /// Malformed packets dropped, by reason.
    pub malformed: Vec<NamedCounter>,
    /// Per interface.
    pub interfaces: Vec<IfaceStatus>,
    /// Packets passed on the fast path of tracked flows.
    pub state_matches: NamedCounter,
    /// Outgoing packets no rule (`out` or without direction) matched (passed).
    pub out_unmatched: NamedCounter,
    /// Packets on interfaces named by `set skip on`, passed unjudged.
    pub skipped: NamedCounter,
    /// Blocked packets answered by a `block return` rule (an RST or ICMP error sent).
    pub answers_sent: NamedCounter,
    /// Blocked packets left unanswered because answers hit their rate limit.
    pub answers_suppressed: NamedCounter,
    /// Packets dropped by limits per source (all rules together).
    pub source_limited: NamedCounter,
    /// The flow table.
    pub flow_table: FlowTable,
    /// The packet log.
    #[serde(default)]
    pub log: LogStatus,
    /// Dynamic tables (`table <t> persist`) and the sources in each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dyn_tables: Vec<super::DynTableStatus>,
    /// Sources the dynamic tables hold together.
    #[serde(default)]
    pub dyn_capacity: u32,
}

impl Status {
    /// The rule with this label.
    pub fn rule(&self, label: &str) -> Option<&RuleStatus> {
        self.rules.iter().find(|r| r.label.as_deref() == Some(label))
    }
}

/// Reads the state and counters, after finishing or rolling back an interrupted apply,
/// and checks each interface's links against the pins.
pub fn status(paths: &Paths) -> Result<Status, Error> {
    privilege::require_privileges()?;
    let _lock = privilege::lock(&paths.run_dir)?;
    let mut notes = Vec::new();
    transaction::recover(paths, &mut notes)?;
    transaction::check_pinned_abi(paths)?;
    let state = match State::read(&paths.state_file()) {
        Ok(Some(state)) => state,
        Ok(None) if links::pinned_ifaces(paths).is_empty() => return Err(Error::NotLoaded(paths.state_file())),
        Ok(None) | Err(Error::State(..)) => {
            return Err(Error::Stranded { state_file: paths.state_file(), pin_dir: paths.pin_dir.clone() });
        }
        Err(e) => return Err(e),
    };
    let enforcing = [
        links::program_id(paths, Hook::Xdp, Pinned::Current)?,
        links::program_id(paths, Hook::Egress, Pinned::Current)?,
    ];
    let counters = program::read_counters(&paths.pin_dir)?;
    let ifc = program::read_iface_counters(&paths.pin_dir)?;
    // Pinned by the first load of a build that has it: a filter loaded by an older
    // build has none until its next apply.
    let events = program::read_rule_events(&paths.pin_dir).unwrap_or_default();
    let at = |slot: u32| counters.get(slot as usize).copied().unwrap_or_default();
    let named =
        |name: &str, slot: u32| NamedCounter { name: name.into(), packets: at(slot).packets, bytes: at(slot).bytes };
    let default_slot = match state.default_action {
        Action::Pass => slot::DEFAULT_PASS,
        Action::Block => slot::DEFAULT_BLOCK,
    };
    let interfaces = state
        .interfaces
        .iter()
        .map(|i| {
            let c = ifc.get(i.stats_slot as usize).copied().unwrap_or_default();
            let problem = link_problem(paths, &i.name, enforcing)?;
            Ok(IfaceStatus {
                name: i.name.clone(),
                ifindex: i.ifindex,
                mode: i.mode.clone(),
                attached: problem.is_none(),
                problem,
                note: if i.mode == "native" { nic::mtu_limit_note(&i.name) } else { None },
                passed_packets: c.passed.packets,
                passed_bytes: c.passed.bytes,
                dropped_packets: c.dropped.packets,
                dropped_bytes: c.dropped.bytes,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let (dyn_tables, dyn_capacity) = super::dyn_tables::fill(paths);
    Ok(Status {
        notes,
        ruleset_file: state.ruleset_file.clone(),
        generation: state.generation,
        rules: state
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| RuleStatus {
                number: i + 1,
                text: r.info.text.clone(),
                label: r.info.label.clone(),
                action: r.info.action,
                packets: at(r.counter).packets,
                bytes: at(r.counter).bytes,
                over_rate: r
                    .info
                    .rate
                    .map(|_| events.get(r.counter as usize).map_or(0, |e: &filter_common::RuleEvents| e.over_rate)),
                logged: r.info.log.then(|| events.get(r.counter as usize).map_or(0, |e| e.logged)),
                source_limited: (!r.info.source_limits.is_empty())
                    .then(|| events.get(r.counter as usize).map_or(0, |e| e.source_limited)),
            })
            .collect(),
        default_action: state.default_action,
        default: named("default", default_slot),
        non_ip: named("non-ip", slot::NON_IP),
        state_matches: named("state", slot::STATE),
        out_unmatched: named("out-unmatched", slot::OUT_UNMATCHED),
        skipped: named("skipped", slot::SKIPPED),
        answers_sent: named("answers-sent", slot::ANSWERS_SENT),
        answers_suppressed: named("answers-suppressed", slot::ANSWERS_SUPPRESSED),
        source_limited: named("source-limited", slot::SOURCE_LIMIT),
        flow_table: flows::summary(paths)?,
        malformed: Malformed::ALL.iter().map(|m| named(m.name(), m.slot())).collect(),
        interfaces,
        dyn_tables,
        dyn_capacity,
        log: program::read_log_counters(&paths.pin_dir)
            .map(|c| LogStatus { written: c.written, suppressed: c.suppressed, lost: c.lost })
            .unwrap_or_default(),
    })
}

impl Status {
    /// Whether every interface enforces the committed ruleset.
    pub fn healthy(&self) -> bool {
        self.interfaces.iter().all(|i| i.attached)
    }
}

/// Why `iface` does not run the committed programs on both hooks, if it does not.
fn link_problem(paths: &Paths, iface: &str, enforcing: [Option<u32>; 2]) -> Result<Option<String>, Error> {
    let now = super::ifindex(iface).ok();
    for (hook, want) in Hook::ALL.into_iter().zip(enforcing) {
        let problem = match links::link_state(paths, hook, iface)? {
            LinkState::Missing => format!("its {hook:?} link is not pinned: run `xdpwall apply` to attach again"),
            LinkState::Severed => {
                "the interface was removed (or removed and re-created): nothing filters it; run `xdpwall apply` to attach again".to_string()
            }
            LinkState::Attached { ifindex, .. } if Some(ifindex) != now => {
                "the interface was re-created: its link filters nothing; run `xdpwall apply` to attach again".to_string()
            }
            LinkState::Attached { program_id, .. } if Some(program_id) != want => {
                format!("its {hook:?} hook runs another program than the committed ruleset's: run `xdpwall apply`")
            }
            LinkState::Attached { .. } => continue,
        };
        return Ok(Some(problem));
    }
    Ok(None)
}
