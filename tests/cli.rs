//! The command line as a user meets it: check, help, and the demo.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

fn ntpgate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write_config(text: &str) -> String {
    let path = scratch_dir().join("ntpgate");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn check_reports_every_problem_with_file_and_line() {
    let path = write_config(
        "config server 'main'\n\toption port '0'\n\toption ratelimit_interval 'soon'\n\tlist allow '2001:db8::/129'\n\toption listen_on '::'\n\toption local_stratum '3'\n",
    );
    let (code, out, _) = ntpgate(&["check", "--config", &path]);
    assert_eq!(code, 1, "{out}");
    for expected in [
        format!("{path}:2: error: port: '0' is not a whole number from 1 to 65535"),
        format!("{path}:3: error: ratelimit_interval: 'soon' is not a number of seconds"),
        format!("{path}:4: error: allow: '129' is not a prefix length (0-128)"),
        format!("{path}:5: error: unknown option 'listen_on' in the server section"),
        format!("{path}:6: warning: local_stratum serves"),
        "4 error(s), 1 warning(s)".to_string(),
    ] {
        assert!(out.contains(&expected), "missing {expected:?} in:\n{out}");
    }
}

#[test]
fn check_accepts_a_good_config() {
    let path = write_config(
        "config server 'main'\n\tlist listen '::'\n\toption port '123'\n\tlist allow '2001:db8::/32'\n",
    );
    let (code, out, _) = ntpgate(&["check", "-c", &path]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("OK (0 warning(s))"), "{out}");
}

#[test]
fn check_names_a_missing_file() {
    let (code, out, _) = ntpgate(&["check", "--config", "/nonexistent/ntpgate"]);
    assert_eq!(code, 1);
    assert!(
        out.starts_with("/nonexistent/ntpgate:0: error: cannot read:"),
        "{out}"
    );
}

#[test]
fn help_names_every_command() {
    let (code, out, _) = ntpgate(&["--help"]);
    assert_eq!(code, 0);
    for command in ["run", "check", "query", "demo"] {
        assert!(
            out.lines().any(|l| l.trim_start().starts_with(command)),
            "{command} missing:\n{out}"
        );
    }
    let (_, out, _) = ntpgate(&["help", "query"]);
    assert!(
        out.contains("HOST:PORT") && out.contains("--timeout"),
        "{out}"
    );
}

#[test]
fn query_without_an_answer_fails_clearly() {
    // A port where nothing listens: the kernel refuses, or nothing comes back.
    let port = free_port();
    let (code, _, err) = ntpgate(&["query", "--timeout", "0.5", &format!("127.0.0.1:{port}")]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
}

#[test]
fn demo_serves_on_localhost() {
    let mut demo = Command::new(BIN)
        .args(["demo", "--loopback"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut answered = None;
    within_every(Duration::from_millis(100), Duration::from_secs(15), || {
        let (code, out, _) = ntpgate(&["query", "--timeout", "0.2", "127.0.0.1:12300"]);
        answered = (code == 0).then_some(out);
        answered.is_some()
    });
    let _ = Command::new("kill")
        .args(["-TERM", &demo.id().to_string()])
        .status();
    let status = demo.wait().unwrap();
    let out = answered.expect("the demo answered a query");
    assert!(out.contains("stratum    10"), "{out}");
    assert!(status.success());
}

#[test]
fn pinhole_interfaces_are_checked_against_the_network_config() {
    let path = write_config(
        "config server\n\toption local_stratum '3'\nconfig pinhole 'nas'\n\toption suffix '::50'\nconfig pinhole 'cam'\n\toption interface 'iot'\n\toption mac '02:11:22:33:44:55'\n",
    );
    let network = std::path::Path::new(&path).with_file_name("network");
    // No network config beside it: the interface cannot be resolved.
    let (code, out, _) = ntpgate(&["check", "--config", &path]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "{path}:3: error: pinhole 'nas': cannot tell the device of interface 'lan'"
        )),
        "{out}"
    );
    std::fs::write(
        &network,
        "config interface 'lan'\n\toption device 'br-lan'\n\toption proto 'static'\n",
    )
    .unwrap();
    let (code, out, _) = ntpgate(&["check", "--config", &path]);
    assert_eq!(code, 1, "{out}");
    let expected = format!(
        "{path}:6: error: pinhole 'cam': unknown interface 'iot' (not in {})",
        network.display()
    );
    assert!(out.contains(&expected), "{out}");
    assert!(!out.contains("'nas'"), "lan resolves: {out}");
    // The daemon refuses the same file at start, with the same words.
    let run = Command::new(BIN)
        .args(["run", "--config", &path])
        .output()
        .unwrap();
    assert!(!run.status.success());
    assert!(
        String::from_utf8_lossy(&run.stderr).contains(&expected.replace(":6: error:", ":6:")),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

#[test]
fn the_network_demo_crosses_the_router_and_cleans_up() {
    require_root("the network demo");
    require("nft", "nftables");
    let out = Command::new(BIN).arg("demo").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "without ntpgate: no answer: fw4 drops it",
        "stratum    2",
        "serve_wan): answered",
        "the hole moved to 2001:db8:2000::50",
        "query to the new address: answered",
        "query to the old address: no answer: closed",
        "notice: pinhole: nas open addresses=2001:db8:2000::50",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    let left = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&left.stdout).contains("ntpgate-demo"),
        "namespaces left behind"
    );
}
