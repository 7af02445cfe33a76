//! The third property: rate limits. Generated rulesets (as for the first property,
//! pass rules `no state`) get `rate`/`max-pkt-rate` on some rules, in the two states
//! of a bucket that do not depend on timing: always full (`rate 1000000000/s`: a
//! billion a second, never spent in a test) and empty after one packet
//! (`max-pkt-rate 1/86400`, and per source `rate 1/d per-source`: one packet a day).
//! The model tracks which buckets are spent ([`model::decide_with_buckets`]): a rule
//! over its rate does not match, and what decides is what decides without it.

// The case types, generators and imports of the sibling modules, gathered in main.rs.
use crate::*;

/// Rulesets per default run (`XDPWALL_DIFF_SCALE` multiplies them).
const RATE_RULESETS: u32 = 40;
/// Packets per ruleset.
const RATE_PACKETS: usize = 200;

/// A rule's limiter in a generated case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bucket {
    /// No rate.
    None,
    /// Always full.
    Full,
    /// Empty after one packet, for the rule.
    Once,
    /// Empty after one packet, per source (/32, /64).
    OncePerSource,
}

impl Bucket {
    fn option(self) -> &'static str {
        match self {
            Bucket::None => "",
            Bucket::Full => " rate 1000000000/s",
            Bucket::Once => " max-pkt-rate 1/86400",
            Bucket::OncePerSource => " rate 1/d per-source",
        }
    }
}

/// The case's ruleset text with `no state` on `in` pass rules and the buckets added.
fn with_buckets(text: &str, buckets: &[Bucket]) -> String {
    let mut out = String::new();
    let mut rule = 0;
    for line in text.lines() {
        out.push_str(line);
        if line.starts_with("pass") || line.starts_with("block") {
            if line.starts_with("pass") && !line.contains("keep state") && !line.contains("no state") {
                out.push_str(" no state");
            }
            out.push_str(buckets.get(rule).copied().unwrap_or(Bucket::None).option());
            rule += 1;
        }
        out.push('\n');
    }
    out
}

/// The source key of a per-source limiter: the address, IPv6 cut to its /64.
fn source_key(src: IpAddr) -> IpAddr {
    match src {
        IpAddr::V4(_) => src,
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & !((1u128 << 64) - 1))),
    }
}

fn bucket_case() -> impl Strategy<Value = (Case, Vec<Bucket>)> {
    let buckets = vec(
        prop_oneof![
            6 => Just(Bucket::None),
            1 => Just(Bucket::Full),
            2 => Just(Bucket::Once),
            2 => Just(Bucket::OncePerSource),
        ],
        0..=filter_common::MAX_RATE_RULES as usize,
    );
    pool().prop_flat_map(move |pool| {
        (ruleset(&pool), vec(packet(&pool), RATE_PACKETS..=RATE_PACKETS), buckets.clone())
            .prop_map(|(ruleset, packets, buckets)| (Case { ruleset, packets }, buckets))
    })
}

#[test]
fn kernel_agrees_with_model_on_buckets() {
    let scale = scale();
    let mut runner = TestRunner::new(config(RATE_RULESETS * scale, 500));
    let (checked, over) = (AtomicU64::new(0), AtomicU64::new(0));
    let result = runner.run(&bucket_case(), |(case, buckets)| {
        let text = with_buckets(&render(&case.ruleset), &buckets);
        let rs = parse(&text).map_err(TestCaseError::fail)?;
        let lo_name = case.ruleset.lo_name;
        let mut loaded = Loaded::new(&rs, String::new(), lo_name).map_err(TestCaseError::fail)?;
        // Spent buckets: (rule, source key for per-source limiters).
        let mut spent: std::collections::HashSet<(usize, Option<IpAddr>)> = Default::default();
        let bucket = |i: usize| buckets.get(i).copied().unwrap_or(Bucket::None);
        for p in &case.packets {
            let frame = build(p, &rs);
            let src = match dissect(&frame) {
                Dissected::Ip(f) => Some(source_key(f.src)),
                _ => None,
            };
            let key = |i: usize| match bucket(i) {
                Bucket::OncePerSource => (i, src),
                _ => (i, None),
            };
            let empty = |i: usize| matches!(bucket(i), Bucket::Once | Bucket::OncePerSource) && spent.contains(&key(i));
            let d = model::decide_with_buckets(&rs, &frame, lo_name, &empty);
            let full = model::decide(&rs, &frame, lo_name);
            let want = expected(&rs, &d);
            let got = loaded.bed.program.test_run_traced(&frame, Some(LO)).map_err(|e| format!("test run: {e:?}"));
            let got = got.map_err(TestCaseError::fail)?;
            if got != want {
                return Err(TestCaseError::fail(format!(
                    "kernel and model disagree (buckets {buckets:?}, spent {spent:?})\n\
                     --- ruleset (lo known as {lo_name:?}) ---\n{text}\
                     --- frame ({} bytes) ---\n{}\n\
                     model:  {d:?}: {}\n\
                     kernel: {}",
                    frame.len(),
                    hex(&frame),
                    describe(&want),
                    describe(&got),
                )));
            }
            checked.fetch_add(1, Ordering::Relaxed);
            if d != full {
                over.fetch_add(1, Ordering::Relaxed);
            }
            if let ModelDecision::Rule(i) = d
                && matches!(bucket(i), Bucket::Once | Bucket::OncePerSource)
            {
                spent.insert(key(i));
            }
        }
        Ok(())
    });
    let _ = writeln!(
        std::io::stderr(),
        "differential (rates): {} packets checked, {} decided otherwise than with full buckets",
        checked.load(Ordering::Relaxed),
        over.load(Ordering::Relaxed)
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(over.load(Ordering::Relaxed) > 0, "some packets met an empty bucket");
}
