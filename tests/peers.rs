//! Real NTP implementations against ntpgate: chronyd as a client (-Q: it
//! measures and never touches the clock) and as a server (-x), and ntpsec's
//! ntpdig, which only speaks to port 123 and so runs in a network namespace.

mod common;

use std::process::Command;

use common::*;

fn local_config(port: u16, stratum: Option<u8>) -> String {
    let stratum = stratum.map_or(SILENT_UPSTREAM.to_string(), |s| {
        format!("\toption local_stratum '{s}'\n")
    });
    format!(
        "config server 'main'\n\tlist listen '127.0.0.1'\n\tlist listen '::1'\n\toption port '{port}'\n{stratum}"
    )
}

#[test]
fn chronyd_accepts_ntpgate_as_a_source() {
    let port = free_port();
    let _d = Daemon::start(&local_config(port, Some(6)), 2);
    for address in ["127.0.0.1", "::1"] {
        let (ok, stderr, log) = chronyd_client(
            &format!("server {address} port {port} iburst maxsamples 4"),
            "measurements",
            20,
        );
        assert!(ok, "chronyd -Q failed:\n{stderr}");
        // Same machine, same clock: chronyd must find it right to well
        // under a millisecond.
        let wrong_by: f64 = stderr
            .lines()
            .find_map(|l| l.split("System clock wrong by ").nth(1))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no offset in:\n{stderr}"));
        assert!(wrong_by.abs() < 0.001, "offset {wrong_by}");
        let rows = rows(&log);
        assert!(rows.len() >= 3, "measurements:\n{log}");
        for r in rows {
            // Date Time IP L St 123 567 ABCD LP RP Score Offset Peer-del Peer-disp Root-del Root-disp Refid Mode TX RX
            assert_eq!(r[2], address);
            assert_eq!(r[3], "N", "leap: none");
            assert_eq!(r[4], "6", "stratum");
            assert_eq!(
                (r[5].as_str(), r[6].as_str(), r[7].as_str()),
                ("111", "111", "1111"),
                "all of chrony's tests pass"
            );
            assert_eq!(r[14].parse::<f64>().unwrap(), 0.0, "root delay");
            assert!(
                r[15].parse::<f64>().unwrap() < 0.001,
                "root dispersion {}",
                r[15]
            );
            assert_eq!(r[16], "4C4F434C", "refid LOCL");
            assert_eq!(r[17], "4B", "mode 4 reply, iburst");
            assert_eq!(r[19], "K", "chrony saw our kernel receive timestamp path");
        }
    }
}

#[test]
fn chronyd_rejects_an_unsynchronised_ntpgate() {
    let port = free_port();
    let _d = Daemon::start(&local_config(port, None), 2);
    let (ok, stderr, log) = chronyd_client(
        &format!("server 127.0.0.1 port {port} iburst maxsamples 2"),
        "rawmeasurements",
        6,
    );
    assert!(
        !ok,
        "chronyd must not synchronise to an unsynchronised server:\n{stderr}"
    );
    let rows = rows(&log);
    assert!(!rows.is_empty(), "chronyd got replies:\n{log}");
    for r in rows {
        assert_eq!(r[3], "?", "leap: alarm");
        assert_eq!(r[4], "0", "stratum 0 on the wire");
        assert_eq!(r[16], "00000000", "refid");
    }
}

#[test]
fn ntpgate_query_reads_a_chronyd_server() {
    let chrony = Chronyd::server(5);
    let out = Command::new(BIN)
        .args(["query", &format!("127.0.0.1:{}", chrony.port)])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |name: &str| -> String {
        text.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    };
    assert_eq!(field("stratum"), "5");
    assert_eq!(field("refid"), "127.127.1.1", "chrony's local reference id");
    assert_eq!(field("leap"), "0 (no leap)");
    let offset: f64 = field("offset").trim_end_matches(" s").parse().unwrap();
    assert!(offset.abs() < 0.001, "same clock, offset {offset}");
    let delay: f64 = field("delay").trim_end_matches(" s").parse().unwrap();
    assert!((0.0..0.05).contains(&delay), "delay {delay}");
}

#[test]
fn ntpgate_query_reports_an_unsynchronised_server() {
    let port = free_port();
    let _d = Daemon::start(&local_config(port, None), 2);
    let out = Command::new(BIN)
        .args(["query", &format!("[::1]:{port}")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("leap       3 (unsynchronised (alarm))"),
        "{text}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("not synchronised"));
}

#[test]
fn ntpdig_on_port_123_in_a_namespace() {
    let ntpdig = require("ntpdig", "ntpsec-ntpdig");
    let ns = Netns::new();
    let d = Daemon::start_with(ns.command(BIN), &local_config(123, Some(2)), 2);
    for address in ["127.0.0.1", "::1"] {
        let out = run_ok(ns.command(&ntpdig).args(["-j", "-t", "2", address]));
        let json: serde_json::Value =
            serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(json["stratum"], 2, "{json}");
        assert_eq!(json["leap"], "no-leap", "{json}");
        assert_eq!(json["ip"], address, "{json}");
        let offset = json["offset"].as_f64().unwrap();
        assert!(offset.abs() < 0.001, "offset {offset}");
        // ntpdig's "precision" is in fact the synchronisation distance.
        let distance = json["precision"].as_f64().unwrap();
        assert!((0.0..0.05).contains(&distance), "distance {distance}");
    }
    assert_eq!(d.counters()["answered"], 2);
    drop(d);

    // Unsynchronised: ntpdig must refuse the answer.
    let _d = Daemon::start_with(ns.command(BIN), &local_config(123, None), 2);
    let out = ns
        .command(&ntpdig)
        .args(["-t", "2", "127.0.0.1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no eligible servers"), "{stderr}");
}
