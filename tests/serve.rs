//! `xdpwall serve` with a real HTTP client against the daemon on a veth with real
//! traffic: the API, `/metrics` checked by Prometheus' own parser (`promtool check
//! metrics`) with values equal to the traffic sent, bearer tokens, anti-lockout,
//! commit-confirm, and the daemon's lifecycle (SIGHUP, SIGTERM, kill -9 and restart).
//!
//! Every rule says `quick` and `in`, so it means the same under first-match and under
//! pf's last-match evaluation.

use std::{
    io::Write as _,
    net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::unix::fs::PermissionsExt as _,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use reqwest::{StatusCode, blocking::Client};
use serde_json::Value;
use xdpwall_tests::{
    TempDir,
    cli::Xdpwall,
    netns::{Netns, VethPair},
};

const UDP_BLOCKED: u16 = 5555;
const UDP_PASSED: u16 = 5556;
/// A 4-byte UDP payload in an untagged IPv4 frame: 14 + 20 + 8 + 4 bytes.
const FRAME_BYTES: u64 = 46;
const TOKEN: &str = "test-token-0123456789abcdef";

const RULES: &str = "\
block in quick proto udp to port 5555 label \"udp-block\"
pass in quick proto udp to port 5556 no state label \"udp-pass\"
";

/// A free TCP port on `ip` (bound, then let go).
fn free_port(ip: IpAddr) -> u16 {
    TcpListener::bind((ip, 0)).unwrap().local_addr().unwrap().port()
}

/// The test bed: a netns with a veth pair (the filter on the host end), the CLI's
/// isolated directories, and a configuration for the daemon.
struct Bed {
    ns: Netns,
    veth: VethPair,
    fw: Xdpwall,
    /// Holds the configuration, ruleset and token; removed on drop.
    _dir: TempDir,
    config: PathBuf,
    port: u16,
    http: Client,
}

impl Bed {
    /// `extra`: more listen addresses (TOML, each after a comma) beside the unix socket
    /// and 127.0.0.1, given the pair.
    fn new(name: &str, extra: impl FnOnce(&VethPair) -> String) -> Bed {
        let ns = Netns::new(name).expect("netns");
        let veth = VethPair::new(&ns).expect("veth pair");
        let extra = extra(&veth);
        let fw = Xdpwall::isolated();
        let dir = TempDir::new(&format!("{name}-{}", veth.subnet));
        let rules = dir.write("xdpwall.conf", RULES);
        let port = free_port("127.0.0.1".parse().unwrap());
        let token = dir.write("token", TOKEN);
        std::fs::create_dir_all(token.with_file_name("tables")).unwrap();
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
        let config = dir.write(
            "serve.toml",
            &format!(
                "ruleset = \"{}\"\ninterfaces = [\"{}\"]\nlisten = [\"unix:{}\", \"127.0.0.1:{port}\"{extra}]\ntoken_file = \"token\"\ntable_dir = \"tables\"\n",
                rules.display(),
                veth.host,
                fw.run_dir().join("api.sock").display()
            ),
        );
        let http = Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
        Bed { ns, veth, fw, _dir: dir, config, port, http }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Starts the daemon and waits until it answers.
    fn serve(&self) -> Daemon {
        let child = self
            .fw
            .command(["serve", "--config"])
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("xdpwall serve starts");
        let mut d = Daemon(Some(child));
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = d.0.as_mut().unwrap().try_wait().unwrap() {
                panic!("xdpwall serve exited ({status}): {}", d.stderr());
            }
            assert!(Instant::now() < deadline, "xdpwall serve did not listen within 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        d
    }

    fn get(&self, path: &str) -> Value {
        let r = self.http.get(self.url(path)).send().unwrap();
        assert_eq!(r.status(), StatusCode::OK, "GET {path}");
        r.json().unwrap()
    }

    fn put(&self, query: &str, content_type: &str, body: impl Into<reqwest::blocking::Body>) -> (StatusCode, Value) {
        let r = self
            .http
            .put(self.url(&format!("/v1/ruleset{query}")))
            .header("content-type", content_type)
            .body(body)
            .send()
            .unwrap();
        (r.status(), r.json().unwrap())
    }

    fn rule_texts(&self) -> Vec<String> {
        self.get("/v1/rules").as_array().unwrap().iter().map(|r| r["text"].as_str().unwrap().to_string()).collect()
    }

    fn rule_packets(&self, label: &str) -> u64 {
        let rules = self.get("/v1/rules");
        let rule = rules.as_array().unwrap().iter().find(|r| r["label"] == label);
        rule.unwrap_or_else(|| panic!("no rule {label} in {rules:#}"))["packets"].as_u64().unwrap()
    }

    /// Sends `n` 4-byte UDP datagrams from the netns to the host end's `port`.
    fn send_udp(&self, port: u16, n: u32) {
        let to = SocketAddr::new(self.veth.host_ips()[0], port);
        self.ns.run(|| {
            let s = UdpSocket::bind("0.0.0.0:0").unwrap();
            for i in 0..n {
                s.send_to(&i.to_be_bytes(), to).unwrap();
            }
        });
        // Counters are read from per-CPU maps: the frames are judged by now, but let
        // the receive path finish.
        std::thread::sleep(Duration::from_millis(200));
    }

    /// `/metrics` in the classic text format, after `promtool check metrics` has
    /// parsed it; the OpenMetrics form (what Prometheus asks for) holds the same samples.
    fn metrics(&self) -> String {
        let r = self
            .http
            .get(self.url("/metrics"))
            .header("accept", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let ct = r.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
        let openmetrics = r.text().unwrap();
        assert!(openmetrics.trim_end().ends_with("# EOF"));
        let r = self.http.get(self.url("/metrics")).send().unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let ct = r.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
        let text = r.text().unwrap();
        let samples = |t: &str| {
            t.lines()
                .filter(|l| l.starts_with("xdpwall_rule_"))
                .map(str::to_owned)
                .collect::<std::collections::BTreeSet<_>>()
        };
        assert_eq!(samples(&text), samples(&openmetrics));
        let mut promtool = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("promtool (Debian's prometheus package; `cargo xtask setup` installs it)");
        promtool.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let out = promtool.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool check metrics: {}{}\n{text}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }
}

/// The value of the sample `series` (name and labels exactly as exposed).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no sample {series} in\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// A running daemon, killed on drop.
struct Daemon(Option<Child>);

impl Daemon {
    fn pid(&self) -> i32 {
        self.0.as_ref().unwrap().id() as i32
    }

    fn signal(&self, sig: i32) {
        // SAFETY: a signal to our own child.
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0);
    }

    /// Waits for it to exit (at most 30 s) and returns whether it exited with success.
    fn wait(&mut self) -> bool {
        let mut child = self.0.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.success();
            }
            assert!(Instant::now() < deadline, "the daemon did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What it logged (after it exited or was killed).
    fn stderr(&mut self) -> String {
        let Some(mut child) = self.0.take() else { return String::new() };
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn kill9(&mut self) {
        self.signal(libc::SIGKILL);
        self.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_until(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_api_serves_counters_and_metrics_of_real_traffic_and_applies_rulesets() {
    let bed = Bed::new("svapi", |_| String::new());
    let mut daemon = bed.serve();
    let host = &bed.veth.host;

    // The daemon loaded the configured ruleset on the configured interface.
    let status = bed.get("/v1/status");
    assert_eq!(status["interfaces"][0]["name"], host.as_str());
    assert_eq!(
        bed.rule_texts(),
        [
            "block in quick proto udp to port 5555 label \"udp-block\"",
            "pass in quick proto udp to port 5556 no state label \"udp-pass\""
        ]
    );

    bed.send_udp(UDP_BLOCKED, 100);
    bed.send_udp(UDP_PASSED, 50);
    let m = bed.metrics();
    let block = "{rule=\"1\",label=\"udp-block\",action=\"block\"}";
    let pass = "{rule=\"2\",label=\"udp-pass\",action=\"pass\"}";
    assert_eq!(sample(&m, &format!("xdpwall_rule_packets_total{block}")), 100.0);
    assert_eq!(sample(&m, &format!("xdpwall_rule_bytes_total{block}")), (100 * FRAME_BYTES) as f64);
    assert_eq!(sample(&m, &format!("xdpwall_rule_packets_total{pass}")), 50.0);
    assert_eq!(sample(&m, &format!("xdpwall_interface_packets_total{{interface=\"{host}\",verdict=\"drop\"}}")), 100.0);
    assert!(sample(&m, &format!("xdpwall_interface_packets_total{{interface=\"{host}\",verdict=\"pass\"}}")) >= 50.0);
    assert_eq!(sample(&m, "xdpwall_flow_limit{table=\"answered\"}"), 100_000.0);
    assert_eq!(sample(&m, "xdpwall_malformed_packets_total{reason=\"ipv4-truncated\"}"), 0.0);
    assert!(m.contains("xdpwall_build_info{version=\""), "{m}");
    eprintln!(
        "/metrics excerpt:\n{}",
        m.lines()
            .filter(|l| l.starts_with("xdpwall_") && !l.contains("malformed") && !l.contains("_bucket"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // The unix socket serves the same API (curl is a real HTTP client too).
    let out = Command::new("curl")
        .args(["-sS", "--unix-socket"])
        .arg(bed.fw.run_dir().join("api.sock"))
        .arg("http://xdpwall/v1/rules")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rules: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rules[0]["packets"], 100);

    // A dry run returns the diff and changes nothing.
    let new = "block in quick proto udp to port 5555 label \"udp-block\"\nblock in quick proto udp to port 5556 label \"udp-pass-now-blocked\"\n";
    let (code, body) = bed.put("?dry_run=true", "text/plain", new);
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["applied"], false);
    assert_eq!(
        body["diff"]["added"],
        serde_json::json!(["block in quick proto udp to port 5556 label \"udp-pass-now-blocked\""])
    );
    assert_eq!(body["diff"]["kept"], 1);
    assert_eq!(bed.rule_packets("udp-pass"), 50, "a dry run changes nothing");

    // A bad ruleset: 422 with where and what, and nothing changes.
    let (code, body) = bed.put("", "text/plain", "block in quick proto udp to port 5555\npass in quick prto tcp\n");
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!((body["line"].as_u64(), body["column"].as_u64()), (Some(2), Some(15)), "{body}");
    assert!(body["message"].as_str().unwrap().contains("prto"), "{body}");
    assert_eq!(bed.rule_packets("udp-pass"), 50);
    // A table file outside the table directory is not read.
    let (code, body) = bed.put("", "text/plain", "table <t> file \"/etc/passwd\"\nblock in quick from <t>\n");
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["message"].as_str().unwrap().starts_with("table files must be inside the table directory"), "{body}");
    // Nor is an empty ruleset taken by mistake.
    let (code, _) = bed.put("", "text/plain", "# nothing\n");
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);

    // A good one applies: the kept rule keeps its counter, the traffic follows the new rules.
    let (code, body) = bed.put("", "text/plain", new);
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["applied"], true);
    assert_eq!(body["generation"], 2);
    bed.send_udp(UDP_PASSED, 30);
    assert_eq!(bed.rule_packets("udp-block"), 100);
    assert_eq!(bed.rule_packets("udp-pass-now-blocked"), 30);
    let m = bed.metrics();
    assert_eq!(sample(&m, "xdpwall_applies_total{result=\"ok\"}"), 1.0);
    assert_eq!(sample(&m, "xdpwall_applies_total{result=\"error\"}"), 3.0);

    // The JSON form round-trips: what GET returns, PUT takes (tables inline).
    let record = bed.get("/v1/ruleset");
    assert_eq!(record["generation"], 2);
    let mut json = record["ruleset"].clone();
    json["rules"][1]["action"] = "pass".into();
    json["rules"][1]["text"] = "pass in quick proto udp to port 5556 no state label \"udp-pass-now-blocked\"".into();
    let (code, body) = bed.put("", "application/json", serde_json::to_vec(&json).unwrap());
    assert_eq!(code, StatusCode::OK, "{body}");
    bed.send_udp(UDP_PASSED, 10);
    let st = bed.get("/v1/status");
    assert_eq!(st["interfaces"][0]["dropped_packets"], 130, "the last 10 passed: {st:#}");
    // A JSON ruleset the text form would refuse is refused too.
    json["rules"][0]["protocols"] = Value::Null;
    let (code, body) = bed.put("", "application/json", serde_json::to_vec(&json).unwrap());
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["message"], "rule 1: port needs `proto tcp`, `udp` or `sctp`");

    // States: the CLI's filters as query parameters, and DELETE.
    let (code, _) = bed.put("", "text/plain", "pass in quick proto udp to port 5556 keep state label \"kept\"\n");
    assert_eq!(code, StatusCode::OK);
    bed.send_udp(UDP_PASSED, 3);
    let flows = bed.get(&format!("/v1/states?proto=udp&port={UDP_PASSED}"));
    assert_eq!(flows.as_array().unwrap().len(), 1, "{flows:#}");
    assert_eq!(flows[0]["src"], bed.veth.peer_ips()[0].to_string());
    assert_eq!(bed.get("/v1/states?proto=tcp").as_array().unwrap().len(), 0);
    let r = bed.http.delete(bed.url("/v1/states")).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().unwrap()["flushed"], 1);
    assert_eq!(bed.get("/v1/states").as_array().unwrap().len(), 0);

    // The OpenAPI description is served and names every route.
    let api = bed.get("/v1/openapi.json");
    for path in
        ["/v1/status", "/v1/rules", "/v1/states", "/v1/ruleset", "/v1/ruleset/confirm", "/v1/openapi.json", "/metrics"]
    {
        assert!(api["paths"].get(path).is_some(), "openapi.json lacks {path}");
    }

    // Every change is logged: who, what, the diff summary.
    daemon.signal(libc::SIGTERM);
    let log = daemon.stderr();
    assert!(log.contains("who=\"tcp 127.0.0.1:"), "{log}");
    assert!(log.contains("ruleset changed: +1 -1 =1"), "{log}");
}

#[test]
fn off_loopback_the_api_needs_the_token_and_refuses_to_lock_its_client_out() {
    let mut port = 0;
    let bed = Bed::new("svtok", |v| {
        // The host end's own address: the only way in is through the filter.
        port = free_port(v.host_ips()[0]);
        format!(", \"{}:{port}\"", v.host_ips()[0])
    });
    let _daemon = bed.serve();
    // The client in the peer namespace reaches the daemon through the filtered veth.
    let api = SocketAddr::new(bed.veth.host_ips()[0], port);
    let remote = |method: &str, path: &str, token: Option<&str>, body: &str| -> (StatusCode, Value) {
        let (method, path, token, body) =
            (method.to_string(), path.to_string(), token.map(str::to_string), body.to_string());
        bed.ns.run(move || {
            let http = Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
            let mut req = http.request(method.parse().unwrap(), format!("http://{api}{path}"));
            if let Some(t) = token {
                req = req.header("authorization", format!("Bearer {t}"));
            }
            match req.header("content-type", "text/plain").body(body).send() {
                Ok(r) => (r.status(), r.json().unwrap_or(Value::Null)),
                Err(e) => {
                    assert!(e.is_timeout() || e.is_connect(), "{e}");
                    (StatusCode::REQUEST_TIMEOUT, Value::Null)
                }
            }
        })
    };
    // Missing and wrong tokens are refused, on every route; loopback needs none.
    for path in ["/v1/status", "/metrics", "/v1/ruleset"] {
        assert_eq!(remote("GET", path, None, "").0, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(remote("GET", path, Some("test-token-0123456789abcdeX"), "").0, StatusCode::UNAUTHORIZED, "{path}");
    }
    assert_eq!(remote("PUT", "/v1/ruleset", Some("wrong"), "block in quick all\n").0, StatusCode::UNAUTHORIZED);
    assert_eq!(remote("GET", "/v1/status", Some(TOKEN), "").0, StatusCode::OK);
    assert_eq!(bed.http.get(bed.url("/v1/status")).send().unwrap().status(), StatusCode::OK);

    // Anti-lockout: a ruleset that blocks this API connection is refused, also when
    // only new connections would be blocked; a dry run says so.
    let lockout = format!("pass in quick proto udp to port 5556 no state\nblock in quick proto tcp to port {port}\n");
    let (code, body) = remote("PUT", "/v1/ruleset?dry_run=true", Some(TOKEN), &lockout);
    assert_eq!(code, StatusCode::OK);
    assert!(
        body["lockout"].as_str().unwrap().contains(&format!("rule 2 `block in quick proto tcp to port {port}`")),
        "{body}"
    );
    let (code, body) = remote("PUT", "/v1/ruleset", Some(TOKEN), &lockout);
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    let msg = body["error"].as_str().unwrap();
    assert!(msg.contains(&format!("to {api} on {}", bed.veth.host)) && msg.contains("refused (force it"), "{msg}");
    let syn_only = format!("block in quick proto tcp to port {port} flags S/SA\n");
    let (code, body) = remote("PUT", "/v1/ruleset", Some(TOKEN), &syn_only);
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    assert!(body["error"].as_str().unwrap().contains("would block a new connection"), "{body}");
    assert_eq!(bed.rule_texts().len(), 2, "nothing changed");
    // The same ruleset from the unix socket or loopback cuts off no client of its own.
    let (code, body) = bed.put("?dry_run=true", "text/plain", lockout.clone());
    assert_eq!((code, body.get("lockout")), (StatusCode::OK, None));

    // Forced, it applies: then the client cannot reach the API any more.
    let (code, _) = remote("PUT", "/v1/ruleset?force=true", Some(TOKEN), &lockout);
    assert!(code == StatusCode::OK || code == StatusCode::REQUEST_TIMEOUT, "{code}");
    assert_eq!(bed.rule_texts()[1], format!("block in quick proto tcp to port {port}"));
    assert_eq!(remote("GET", "/v1/status", Some(TOKEN), "").0, StatusCode::REQUEST_TIMEOUT);
}

#[test]
fn the_daemon_refuses_to_start_off_loopback_without_a_private_token() {
    let bed = Bed::new("svnotok", |v| format!(", \"{}:1\"", v.host_ips()[0]));
    let start = |config: &str| {
        let path = bed.config.with_file_name("bad.toml");
        std::fs::write(&path, config).unwrap();
        let out = bed.fw.command(["serve", "--config"]).arg(&path).output().unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let base = std::fs::read_to_string(&bed.config).unwrap();
    let without = base.lines().filter(|l| !l.starts_with("token_file")).collect::<Vec<_>>().join("\n");
    assert!(start(&without).contains("listening on a non-loopback address needs `token_file`"));
    let token = bed.config.with_file_name("token");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(start(&base).contains("readable by no one else (chmod 600)"));
    assert!(!bed.fw.run_dir().join("state.json").exists(), "nothing was loaded");
}

const NEW_RULES: &str = "pass in quick proto udp to port 5555 no state label \"udp-open\"\n";

#[test]
fn commit_confirm_rolls_back_without_confirmation_also_across_a_restart_and_keeps_with_it() {
    let bed = Bed::new("svcfm", |_| String::new());
    let mut daemon = bed.serve();
    let original = bed.rule_texts();

    // Not confirmed: rolled back at the deadline; traffic follows the old rules again.
    let (code, body) = bed.put("?confirm=2", "text/plain", NEW_RULES);
    assert_eq!(code, StatusCode::OK, "{body}");
    assert!(body["confirm_deadline"].as_u64().is_some(), "{body}");
    assert_eq!(bed.rule_texts().len(), 1);
    assert!(bed.get("/v1/ruleset")["pending_confirm"]["who"].as_str().unwrap().starts_with("tcp 127.0.0.1:"));
    let (code, body) = bed.put("", "text/plain", NEW_RULES);
    assert_eq!(code, StatusCode::CONFLICT, "another change waits: {body}");
    wait_until("the roll-back", 15, || bed.rule_texts() == original);
    assert!(bed.get("/v1/ruleset")["pending_confirm"].is_null());
    bed.send_udp(UDP_BLOCKED, 20);
    assert_eq!(bed.rule_packets("udp-block"), 20);
    assert_eq!(sample(&bed.metrics(), "xdpwall_applies_total{result=\"rollback\"}"), 1.0);

    // Confirmed: kept.
    let (code, _) = bed.put("?confirm=2", "text/plain", NEW_RULES);
    assert_eq!(code, StatusCode::OK);
    let r = bed.http.post(bed.url("/v1/ruleset/confirm")).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(bed.rule_texts(), ["pass in quick proto udp to port 5555 no state label \"udp-open\""]);
    assert_eq!(bed.http.post(bed.url("/v1/ruleset/confirm")).send().unwrap().status(), StatusCode::NOT_FOUND);

    // The pending roll-back survives the daemon's kill -9: the next daemon does it.
    let (code, _) = bed.put("?confirm=3", "text/plain", RULES);
    assert_eq!(code, StatusCode::OK);
    daemon.kill9();
    let _daemon = bed.serve();
    wait_until("the roll-back after a restart", 20, || bed.rule_texts().len() == 1);
}

#[test]
fn cli_commit_confirm_and_anti_lockout_for_the_ssh_session() {
    let bed = Bed::new("svcli", |_| String::new());
    let fw = &bed.fw;
    let rules = bed.config.with_file_name("xdpwall.conf");
    fw.run(["load", &bed.veth.host, rules.to_str().unwrap()]).unwrap();
    let new = bed.config.with_file_name("new.conf");
    std::fs::write(&new, NEW_RULES).unwrap();
    let rule_count = || {
        let st: Value = serde_json::from_slice(&fw.run(["status", "--json"]).unwrap().stdout).unwrap();
        st["rules"].as_array().unwrap().len()
    };

    // The command returns; a detached timer rolls back unless `xdpwall confirm` runs.
    let out = fw.run(["apply", new.to_str().unwrap(), "--confirm", "2"]).unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("rolls back in 2 s unless `xdpwall confirm`"));
    assert_eq!(rule_count(), 1);
    wait_until("the CLI's roll-back", 15, || rule_count() == 2);
    // With its timer killed, the next command rolls back an overdue change.
    fw.run(["apply", new.to_str().unwrap(), "--confirm", "2"]).unwrap();
    let timer = timer_pid(fw.run_dir()).expect("apply --confirm left its timer running");
    // SAFETY: a signal to the timer process this test's command started.
    assert_eq!(unsafe { libc::kill(timer, libc::SIGKILL) }, 0);
    std::thread::sleep(Duration::from_secs(3));
    let out = fw.run(["status"]).unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("rolled back the change by cli"), "{out:?}");
    assert_eq!(rule_count(), 2);
    fw.run(["apply", new.to_str().unwrap(), "--confirm", "2"]).unwrap();
    let out = fw.run(["confirm"]).unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("confirmed the change by cli"));
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(rule_count(), 1);
    assert!(!fw.output(["confirm"]).unwrap().status.success(), "nothing left to confirm");

    // Anti-lockout for the SSH session this runs in (SSH_CONNECTION).
    let [host, peer] = [bed.veth.host_ips()[0], bed.veth.peer_ips()[0]];
    let ssh = bed.config.with_file_name("ssh.conf");
    std::fs::write(&ssh, "block in quick proto tcp to port 22 label \"no-ssh\"\n").unwrap();
    let apply = |extra: &[&str]| {
        let mut cmd = fw.command(["apply", ssh.to_str().unwrap()]);
        cmd.args(extra).env("SSH_CONNECTION", format!("{peer} 40022 {host} 22")).output().unwrap()
    };
    let out = apply(&[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("would block this connection from {peer}:40022 to {host}:22 on {}", bed.veth.host)),
        "{err}"
    );
    assert_eq!(rule_count(), 1, "nothing changed");
    // Blocking only the replies locks out as surely.
    std::fs::write(&ssh, "block out quick proto tcp from port 22 label \"no-ssh-replies\"\n").unwrap();
    let out = apply(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("would block the replies of this connection"), "{err}");
    let out = apply(&["--force"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(rule_count(), 1);
}

/// The pid of the `xdpwall rollback-timer` process working on `run_dir`.
fn timer_pid(run_dir: &std::path::Path) -> Option<i32> {
    let run_dir = run_dir.to_str().unwrap();
    std::fs::read_dir("/proc").ok()?.filter_map(Result::ok).find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let ours = args.contains(&run_dir.as_bytes()) && args.contains(&b"rollback-timer".as_slice());
        ours.then_some(pid)
    })
}

#[test]
fn the_filter_outlives_the_daemon_which_adopts_it_and_re_applies_on_sighup() {
    let bed = Bed::new("svlife", |_| String::new());
    let mut daemon = bed.serve();
    bed.send_udp(UDP_BLOCKED, 100);
    assert_eq!(bed.rule_packets("udp-block"), 100);

    // kill -9: the pins keep enforcing; the CLI works without the daemon.
    daemon.kill9();
    bed.send_udp(UDP_BLOCKED, 50);
    let st: Value = serde_json::from_slice(&bed.fw.run(["status", "--json"]).unwrap().stdout).unwrap();
    assert_eq!(st["rules"][0]["packets"], 150);
    assert_eq!(st["interfaces"][0]["dropped_packets"], 150);

    // A new daemon adopts it: same generation, counters continue.
    let mut daemon = bed.serve();
    assert_eq!(bed.get("/v1/status")["generation"], 1);
    bed.send_udp(UDP_BLOCKED, 10);
    assert_eq!(bed.rule_packets("udp-block"), 160);

    // `status --watch` shows per-rule and per-interface rates while traffic flows.
    let mut watch = bed.fw.command(["status", "--watch"]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    for _ in 0..25 {
        bed.send_udp(UDP_BLOCKED, 100);
    }
    let _ = watch.kill();
    let screen = String::from_utf8_lossy(&watch.wait_with_output().unwrap().stdout).into_owned();
    let shows_rate = screen.lines().any(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        w.len() > 3 && w[0] == "1" && w[1] != "0" && l.ends_with("label \"udp-block\"")
    });
    assert!(shows_rate, "{screen}");
    assert!(screen.contains("dropped/s") && screen.contains(&bed.veth.host), "{screen}");

    // SIGHUP re-applies the configuration's ruleset, atomically; a broken one changes nothing.
    let rules = bed.config.with_file_name("xdpwall.conf");
    std::fs::write(&rules, format!("{RULES}block in quick proto udp to port 5557 label \"added\"\n")).unwrap();
    daemon.signal(libc::SIGHUP);
    wait_until("the SIGHUP apply", 30, || bed.rule_texts().len() == 3);
    assert_eq!(bed.rule_packets("udp-block"), 2660, "kept rules keep counting");
    std::fs::write(&rules, "block in quick proto udpp\n").unwrap();
    daemon.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(bed.rule_texts().len(), 3);
    assert_eq!(bed.get("/v1/status")["generation"], 2);

    // SIGTERM: the daemon exits, the filter keeps enforcing.
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait(), "exit status 0 on SIGTERM");
    assert!(!bed.fw.run_dir().join("api.sock").exists());
    bed.send_udp(UDP_BLOCKED, 10);
    let st: Value = serde_json::from_slice(&bed.fw.run(["status", "--json"]).unwrap().stdout).unwrap();
    assert_eq!(st["rules"][0]["packets"], 2670);
    assert_eq!(st["interfaces"][0]["attached"], true);
}
