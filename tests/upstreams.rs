//! The daemon against upstreams that misbehave or a clock it may not
//! steer: loopback servers that answer as each test tells them
//! (common::FakeUpstream).

mod common;

use std::time::Duration;

use common::*;

fn config(port: u16, upstreams: &[FakeUpstream], extra: &str) -> String {
    let lines: String = upstreams
        .iter()
        .map(|u| format!("\tlist upstream '127.0.0.1:{}'\n", u.port))
        .collect();
    format!(
        "config server\n\tlist listen '127.0.0.1'\n\toption port '{port}'\n{lines}\toption min_sources '2'\n{extra}"
    )
}

fn synchronised(d: &Daemon) -> bool {
    d.usr1_line("notice: sync:")
        .starts_with("notice: sync: synchronised ")
}

/// A datagram in client mode, as if the upstream asked us.
fn client_mode() -> Vec<u8> {
    request(4, 3, 6, 42)
}

#[test]
fn junk_from_the_upstream_before_its_reply_does_not_lose_the_reply() {
    let junk = FakeAnswer {
        junk: vec![b"garbage".to_vec(), client_mode(), vec![0x24; 47]],
        ..FakeAnswer::good()
    };
    let upstreams: Vec<FakeUpstream> = (0..3).map(|_| FakeUpstream::start(junk.clone())).collect();
    let d = Daemon::start(
        &config(free_port(), &upstreams, "\toption clock_control '0'\n"),
        1,
    );
    // Every upstream is reached, each answer found behind the junk.
    within_every(Duration::from_millis(500), Duration::from_secs(30), || {
        synchronised(&d)
            && d.usr1_lines("notice: upstream:", 3)
                .iter()
                .all(|l| !l.contains("reach=000"))
    })
    .unwrap_or_else(|| panic!("not every answer found: {}", d.log()));
}

/// Three upstreams agree the time is 1000 s ahead, and the kernel refuses
/// every clock command (no CAP_SYS_TIME): the clock stays 1000 s off, so
/// the server must say it is unsynchronised, and the log says why once.
#[test]
fn a_clock_the_kernel_will_not_steer_is_not_served_as_synchronised() {
    let ahead = FakeAnswer {
        offset: 1000.0,
        ..FakeAnswer::good()
    };
    let upstreams: Vec<FakeUpstream> = (0..3).map(|_| FakeUpstream::start(ahead.clone())).collect();
    let port = free_port();
    let d = Daemon::start_unable_to_steer(&config(port, &upstreams, ""), 1);
    d.wait_for_log(|l| l.contains("cannot steer the clock"), "the refused step");
    // The burst goes on (2 s apart), and every update fails again: wait
    // for four answers from each upstream.
    within_every(Duration::from_millis(500), Duration::from_secs(30), || {
        d.usr1_lines("notice: upstream:", 3).iter().all(|l| {
            let reach = l
                .split("reach=")
                .nth(1)
                .and_then(|r| r.get(..3))
                .unwrap_or("0");
            u8::from_str_radix(reach, 8).unwrap_or(0).count_ones() >= 4
        })
    })
    .unwrap_or_else(|| panic!("the upstreams were not asked again: {}", d.log()));
    let out = std::process::Command::new(BIN)
        .args(["query", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "served as unsynchronised: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!synchronised(&d));
    let log = d.log();
    assert_eq!(
        log.matches("cannot steer the clock (clock_adjtime").count(),
        1,
        "said once: {log}"
    );
    assert!(!log.contains("cannot tell the kernel"), "{log}");
}

/// A reload that changes only local_stratum keeps the sync state.
#[test]
fn a_reload_of_local_stratum_alone_keeps_the_sync_state() {
    let upstreams: Vec<FakeUpstream> = (0..3)
        .map(|_| FakeUpstream::start(FakeAnswer::good()))
        .collect();
    let text = config(free_port(), &upstreams, "\toption clock_control '0'\n");
    let d = Daemon::start(&text, 1);
    within_every(Duration::from_millis(500), Duration::from_secs(30), || {
        synchronised(&d)
    })
    .unwrap_or_else(|| panic!("never synchronised: {}", d.log()));
    std::fs::write(&d.config_path, text + "\toption local_stratum '5'\n").unwrap();
    d.signal("HUP");
    d.wait_for_log(
        |l| l.contains("reload: configuration applied"),
        "the reload",
    );
    let line = d.usr1_line("notice: sync:");
    assert!(
        line.starts_with("notice: sync: synchronised stratum=2 "),
        "{line}"
    );
}
