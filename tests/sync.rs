//! ntpgate synchronising to real upstreams: three chronyd servers on
//! loopback (`local stratum 1`, all with -x: none touches the clock), and
//! ntpgate in observe mode (clock_control 0: it measures, serves, and never
//! steers this machine's clock).

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// Ask the daemon for its sync state (SIGUSR1) and parse the `sync:` line.
fn sync_state(d: &Daemon) -> HashMap<String, String> {
    let line = d.usr1_line("notice: sync:");
    let mut fields: HashMap<String, String> = line
        .split_whitespace()
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    fields.insert(
        "state".into(),
        line.split_whitespace().nth(2).unwrap().to_string(),
    );
    fields
}

/// The upstream lines of one SIGUSR1 (there are `n`), by name.
fn upstream_states(d: &Daemon, n: usize) -> HashMap<String, HashMap<String, String>> {
    d.usr1_lines("notice: upstream:", n)
        .iter()
        .map(|line| {
            let name = line.split_whitespace().nth(2).unwrap().to_string();
            let fields = line
                .split_whitespace()
                .filter_map(|kv| {
                    kv.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                })
                .collect();
            (name, fields)
        })
        .collect()
}

/// The reach register (octal) says the last poll went unanswered.
fn last_poll_missed(reach: &str) -> bool {
    u8::from_str_radix(reach, 8).unwrap() & 1 == 0
}

fn wait_until(what: &str, limit: Duration, done: impl FnMut() -> bool) -> Duration {
    within_every(Duration::from_millis(500), limit, done)
        .unwrap_or_else(|| panic!("not {what} within {limit:?}"))
}

#[test]
fn three_chronyd_upstreams_then_losing_them() {
    let mut upstreams: Vec<Chronyd> = (0..3).map(|_| Chronyd::server(1)).collect();
    let port = free_port();
    let dir = scratch_dir();
    let lines: String = upstreams
        .iter()
        .map(|c| format!("\tlist upstream '127.0.0.1:{}'\n", c.port))
        .collect();
    // max_distance 4 ms: between updates the error bound grows by
    // 15 ppm x the poll interval, so this keeps it synchronised while
    // updates come, and lets the test see holdover end within minutes.
    let config = format!(
        "config server\n\tlist listen '127.0.0.1'\n\toption port '{port}'\n{lines}\toption clock_control '0'\n\toption min_sources '2'\n\toption max_distance '0.004'\n\toption driftfile '{}'\n",
        dir.join("drift").display()
    );
    let d = Daemon::start(&config, 1);

    let took = wait_until("synchronised", Duration::from_secs(30), || {
        sync_state(&d)["state"] == "synchronised"
    });
    println!("synchronised after {took:?}");
    let s = sync_state(&d);
    assert_eq!(s["stratum"], "2");
    assert_eq!(s["refid"], "127.0.0.1");
    let offset: f64 = s["offset"].parse().unwrap();
    assert!(offset.abs() < 0.001, "offset {offset}");
    assert!(
        d.log().contains("synchronised to 127.0.0.1:"),
        "{}",
        d.log()
    );
    let selected = d
        .log()
        .lines()
        .filter(|l| l.contains("status=selected"))
        .count();
    assert!(selected >= 1);

    // One upstream gone, during the initial burst of polls: the other two
    // go on updating the clock. (Merely staying synchronised would prove
    // nothing: holdover keeps that for four polls without any update.)
    let gone = upstreams.remove(0);
    let gone_name = format!("127.0.0.1:{}", gone.port);
    drop(gone);
    // Its next poll goes unanswered...
    let reach_of_gone = || upstream_states(&d, 3)[&gone_name]["reach"].clone();
    wait_until("the lost upstream polled", Duration::from_secs(100), || {
        last_poll_missed(&reach_of_gone())
    });
    let missed = Instant::now();
    // ... and the clock is updated after that, from the two left.
    let took = wait_until(
        "updated by the two upstreams left",
        Duration::from_secs(300),
        || {
            let s = sync_state(&d);
            let since: f64 = s["since_update"].parse().unwrap_or(f64::INFINITY);
            s["state"] == "synchronised" && since < missed.elapsed().as_secs_f64()
        },
    );
    println!("updated {took:?} after the lost upstream missed a poll");
    for (name, u) in &upstream_states(&d, 3) {
        if *name == gone_name {
            assert!(last_poll_missed(&u["reach"]), "{name}: {u:?}");
        } else {
            assert!(!last_poll_missed(&u["reach"]), "{name}: {u:?}");
            assert!(
                ["selected", "candidate"].contains(&u["status"].as_str()),
                "{name}: {u:?}"
            );
        }
    }

    // What clients see: ntpgate query ...
    let out = Command::new(BIN)
        .args(["query", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("stratum    2\n")
            && text.contains("refid      127.0.0.1\n")
            && text.contains("leap       0 "),
        "{text}"
    );
    // ... and chronyd -Q.
    let chronyd = require("chronyd", "chrony");
    let logdir = scratch_dir();
    let q = Command::new(chronyd)
        .args(["-Q", "-u", "root", "-t", "20"])
        .arg(format!("server 127.0.0.1 port {port} iburst maxsamples 3"))
        .arg(format!("logdir {}", logdir.display()))
        .arg("log measurements")
        .output()
        .unwrap();
    assert!(q.status.success(), "{}", String::from_utf8_lossy(&q.stderr));
    let m = std::fs::read_to_string(logdir.join("measurements.log")).unwrap();
    let row: Vec<&str> = m
        .lines()
        .find(|l| l.starts_with("20"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        (row[3], row[4], row[16]),
        ("N", "2", "7F000001"),
        "leap, stratum, refid: {m}"
    );

    // All gone: holdover (still synchronised, with a growing error bound),
    // then unsynchronised once the bound passes max_distance.
    upstreams.clear();
    let held = sync_state(&d);
    assert_eq!(held["state"], "synchronised");
    let took = wait_until("unsynchronised", Duration::from_secs(400), || {
        sync_state(&d)["state"] == "unsynchronised"
    });
    println!("unsynchronised {took:?} after losing every upstream");
    let out = Command::new(BIN)
        .args(["query", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "the server now says it is unsynchronised"
    );
    assert!(d.log().contains("unsynchronised: answering with leap 3"));
}
