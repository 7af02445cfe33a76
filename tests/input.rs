//! Bounded input through the real `xdpwall` binary (`XDPWALL_BIN`): files that never end,
//! block or are too big, words that used to cost "did you mean" seconds and gigabytes,
//! limits reported at the rule or table that crosses them, empty rulesets, and the
//! checked-in corpus of broken rulesets (`tests/corpus/*.conf`, each with the exact
//! error in `*.expect`).
//!
//! Everything but `empty_apply_over_a_blocking_ruleset_changes_nothing` (netns, veth,
//! XDP) needs neither root nor a loaded filter: parsing happens before anything touches
//! the kernel.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use xdpwall_tests::cli::Xdpwall;
use xdpwall_tests::netns::{Netns, VethPair};

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "xdpwall-input-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    fn fifo(&self, name: &str) -> PathBuf {
        let path = self.0.join(name);
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `xdpwall ARGS`, expected to fail with exactly `xdpwall: {message}` and print nothing
/// on stdout.
fn fails_with(fw: &Xdpwall, args: &[&str], message: &str) {
    let out = fw.output(args).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stderr), format!("xdpwall: {message}\n"), "xdpwall {}", args.join(" "));
    assert_eq!(out.status.code(), Some(1), "xdpwall {}", args.join(" "));
    assert!(out.stdout.is_empty(), "xdpwall {}: {out:?}", args.join(" "));
}

#[test]
fn huge_words_get_no_suggestion_work() {
    // Was: 15 s and 1.3 GB building the edit-distance matrix; 50 MB aborted.
    let fw = Xdpwall::isolated();
    let dir = Scratch::new("word");
    let mut text = b"set default block\npass in ".to_vec();
    text.resize(text.len() + (10 << 20), b'x');
    text.extend_from_slice(b" from any\n");
    let path = dir.write("word.conf", &text);
    fails_with(
        &fw,
        &["check", s(&path)],
        &format!(
            "{}:2:9: this word is longer than 256 bytes; no keyword, number or address is that long",
            path.display()
        ),
    );
    // 50 MB: over the ruleset file cap, refused before it is read.
    let mut text = b"pass in ".to_vec();
    text.resize(text.len() + (50 << 20), b'x');
    let size = text.len();
    let path = dir.write("word50.conf", &text);
    fails_with(
        &fw,
        &["check", s(&path)],
        &format!("{}: cannot read ruleset: it is {size} bytes; the limit is 16 MiB", path.display()),
    );
}

#[test]
fn labels_of_megabytes_are_refused() {
    let fw = Xdpwall::isolated();
    let dir = Scratch::new("label");
    // 50 MB: over the ruleset file cap, refused before it is read.
    let mut text = b"pass in all label \"".to_vec();
    text.resize(text.len() + (50 << 20), b'l');
    text.extend_from_slice(b"\"\n");
    let size = text.len();
    let path = dir.write("huge.conf", &text);
    fails_with(
        &fw,
        &["check", s(&path)],
        &format!("{}: cannot read ruleset: it is {size} bytes; the limit is 16 MiB", path.display()),
    );
    // 1 MB: within the cap, refused as a string no label or path can be.
    let mut text = b"pass in all label \"".to_vec();
    text.resize(text.len() + (1 << 20), b'l');
    text.extend_from_slice(b"\"\n");
    let path = dir.write("big.conf", &text);
    fails_with(
        &fw,
        &["check", s(&path)],
        &format!(
            "{}:1:19: this string is longer than 4096 bytes (labels are at most 63 bytes, paths 4096)",
            path.display()
        ),
    );
}

#[test]
fn dev_zero_is_refused_as_ruleset_and_as_table_file() {
    // Was: grew to gigabytes.
    let fw = Xdpwall::isolated();
    fails_with(
        &fw,
        &["check", "/dev/zero"],
        "/dev/zero: cannot read ruleset: it is a character device, not a regular file",
    );
    let dir = Scratch::new("zero");
    let path = dir.write("zero.conf", "set default block\ntable <t> file \"/dev/zero\"\nblock in from <t>\n");
    fails_with(
        &fw,
        &["check", s(&path)],
        &format!(
            "{}:2:16: cannot read table file `/dev/zero`: it is a character device, not a regular file",
            path.display()
        ),
    );
}

/// Runs `xdpwall ARGS` while `fifo` has no writer. Should the binary open the FIFO and
/// wait for data (the old behaviour), the test opens the write end and closes it, which
/// ends the wait with an empty file: a regression fails the assertions instead of
/// hanging the suite.
fn output_with_fifo(fw: &Xdpwall, args: &[&str], fifo: &Path) -> Output {
    let mut child = fw.command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        // Succeeds only while a reader has the FIFO open.
        let _ = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(fifo);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn fifos_are_refused_without_blocking() {
    // Was: blocked forever.
    let fw = Xdpwall::isolated();
    let dir = Scratch::new("fifo");
    let fifo = dir.fifo("rules.conf");
    let out = output_with_fifo(&fw, &["check", s(&fifo)], &fifo);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("xdpwall: {}: cannot read ruleset: it is a named pipe (FIFO), not a regular file\n", fifo.display())
    );
    let table = dir.fifo("table.txt");
    let path = dir.write("t.conf", "table <t> file \"table.txt\"\nblock in from <t>\n");
    let out = output_with_fifo(&fw, &["check", s(&path)], &table);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "xdpwall: {}:1:16: cannot read table file `{}`: it is a named pipe (FIFO), not a regular file\n",
            path.display(),
            table.display()
        )
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn oversized_table_file_is_refused_before_it_is_read() {
    let fw = Xdpwall::isolated();
    let dir = Scratch::new("bigfile");
    let table = dir.0.join("big.txt");
    // Sparse: takes no disk space; the size is checked before anything is read.
    std::fs::File::create(&table).unwrap().set_len((128 << 20) + 1).unwrap();
    let path = dir.write("t.conf", "table <t> file \"big.txt\"\nblock in from <t>\n");
    fails_with(
        &fw,
        &["check", s(&path)],
        &format!(
            "{}:1:16: cannot read table file `{}`: it is 134217729 bytes; the limit is 128 MiB",
            path.display(),
            table.display()
        ),
    );
}

#[test]
fn rule_4097_is_reported_at_its_position() {
    // Was: "the ruleset has 4097 rules; the limit is 4096", no file, no line.
    let fw = Xdpwall::isolated();
    let dir = Scratch::new("rules");
    let mut text = String::from("set default block\n");
    for i in 0..4096 {
        let _ = writeln!(text, "pass in proto udp to port {}", 1000 + i);
    }
    let ok = dir.write("ok.conf", &text);
    let out = fw.run(["check", s(&ok)]).unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK: 4096 rules"), "{out:?}");
    text.push_str("\n  block in all\n");
    let path = dir.write("over.conf", &text);
    fails_with(
        &fw,
        &["check", s(&path)],
        &format!("{}:4099:3: this is rule 4097; a ruleset holds at most 4096 rules", path.display()),
    );
}

/// `n` distinct IPv6 hosts written in full, each with a comment, as a table file.
fn ipv6_table(n: u32) -> String {
    let mut text = String::with_capacity(n as usize * 110);
    text.push_str("# a million IPv6 hosts, written out in full\n");
    for i in 0..n {
        let _ = writeln!(
            text,
            "2001:0db8:0000:0000:0000:0000:{:04x}:{:04x}/128  # host {i:07}, listed 2026-12-01 by the abuse desk, ticket 4711",
            i >> 16,
            i & 0xffff
        );
    }
    text
}

#[test]
fn table_over_a_million_entries_is_reported_at_the_table() {
    // Was: "table <big> has 1000001 entries; the limit is 1000000", no position.
    let fw = Xdpwall::isolated();
    let dir = Scratch::new("entries");
    let table = dir.write("big.txt", ipv6_table(1_000_001));
    assert!(table.metadata().unwrap().len() > 100 << 20, "the table file is realistic");
    let path = dir.write("t.conf", "set default pass\n\ntable <big> file \"big.txt\"\nblock in from <big>\n");
    fails_with(
        &fw,
        &["check", s(&path)],
        &format!(
            "{}:3:7: table <big> has more than 1000000 distinct entries in its file; a table holds at most 1000000",
            path.display()
        ),
    );
}

#[test]
fn a_million_ipv6_prefixes_with_comments_fit_the_table_file_cap() {
    let fw = Xdpwall::isolated();
    let dir = Scratch::new("million");
    let table = dir.write("big.txt", ipv6_table(1_000_000));
    let path = dir.write("t.conf", "table <big> file \"big.txt\"\nblock in from <big>\n");
    let out = fw.run(["check", s(&path)]).expect("a 1M-entry table file is accepted");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("1 tables (1000000 entries)"), "{stdout}");
    assert!(table.metadata().unwrap().len() > 100 << 20);
}

#[test]
fn empty_rulesets_are_refused_unless_allowed() {
    let fw = Xdpwall::isolated();
    let dir = Scratch::new("empty");
    let empty = dir.write("empty.conf", "# nothing yet\n");
    let message = format!(
        "{}: the ruleset has no rules (it is empty or holds only comments, settings and tables), so it would pass every packet; use --allow-empty if that is what you want",
        empty.display()
    );
    for args in [
        vec!["check", s(&empty)],
        vec!["apply", s(&empty)],
        vec!["apply", "--dry-run", s(&empty)],
        vec!["load", "xw-no-such-if", s(&empty)],
    ] {
        fails_with(&fw, &args, &message);
    }
    let out = fw.run(["check", "--allow-empty", s(&empty)]).unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .starts_with(&format!("{}: OK: 0 rules, 0 tables (0 entries), default pass", empty.display())),
        "{out:?}"
    );
    // With the flag, the commands get past the ruleset to their own checks.
    let out = fw.output(["apply", "--allow-empty", s(&empty)]).unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("xdpwall: xdpwall is not loaded"), "{out:?}");
    fails_with(&fw, &["load", "--allow-empty", "xw-no-such-if", s(&empty)], "no interface named xw-no-such-if");
}

#[test]
fn empty_apply_over_a_blocking_ruleset_changes_nothing() {
    // Was: an apply of an empty file over `set default block` passed everything,
    // without a word.
    let ns = Netns::new("empty").unwrap();
    let veth = VethPair::new(&ns).unwrap();
    let fw = Xdpwall::isolated();
    let dir = Scratch::new("emptyapply");
    let block = dir.write("block.conf", "set default block\nblock in proto udp to port 9\n");
    fw.run(["load", &veth.host, s(&block)]).expect("load");
    let host: IpAddr = veth.host_v4.into();
    assert_eq!(ns.ping_replies(host, 1), 0, "pings are blocked");
    let empty = dir.write("empty.conf", "");
    fails_with(
        &fw,
        &["apply", s(&empty)],
        &format!(
            "{}: the ruleset has no rules (it is empty or holds only comments, settings and tables), so it would pass every packet; use --allow-empty if that is what you want",
            empty.display()
        ),
    );
    let status = fw.run(["status"]).unwrap();
    assert!(String::from_utf8_lossy(&status.stdout).contains("(generation 1), default block"));
    assert_eq!(ns.ping_replies(host, 1), 0, "still blocked");
    // Forced, the operator gets what they asked for.
    fw.run(["apply", "--allow-empty", s(&empty)]).expect("forced apply");
    assert_eq!(ns.ping_replies(host, 1), 1, "an empty ruleset passes");
}

#[test]
fn a_file_that_is_not_a_ruleset_is_not_echoed() {
    let fw = Xdpwall::isolated();
    let dir = Scratch::new("foreign");
    let secret = "s3cr3t-hunter2-s3cr3t";
    let shadow = dir
        .write("shadow", format!("root:$6${secret}$abcdefghijklmnop:19000:0:99999:7:::\nbin:*:19000:0:99999:7:::\n"));
    let out = fw.output(["check", s(&shadow)]).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err,
        format!(
            "xdpwall: {}:1:1: expected `pass`, `block`, `table`, `set` or `include`, found `root:$6$s3cr3t-h…`\n",
            shadow.display()
        )
    );
    assert!(!err.contains(secret));
    let path = dir.write("t.conf", format!("table <t> file \"{}\"\n", shadow.display()));
    let out = fw.output(["check", s(&path)]).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with(&format!("xdpwall: {}:1:1: ", shadow.display())), "{err}");
    assert!(!err.contains(secret), "{err}");
}

/// The corpus: each `NAME.conf` must fail `xdpwall check` with exactly the message in
/// `NAME.expect`, where `{FILE}` is the ruleset's path and `{DIR}` the corpus directory.
#[test]
fn corpus_of_broken_rulesets_gives_each_its_error() {
    let fw = Xdpwall::isolated();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut confs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    confs.sort();
    assert!(confs.len() >= 20, "the corpus is all there: {}", confs.len());
    for conf in &confs {
        let expect = std::fs::read_to_string(conf.with_extension("expect"))
            .unwrap_or_else(|e| panic!("{}: no .expect: {e}", conf.display()));
        let expected = expect.trim_end_matches('\n').replace("{FILE}", s(conf)).replace("{DIR}", s(&dir));
        fails_with(&fw, &["check", s(conf)], &expected);
    }
}
