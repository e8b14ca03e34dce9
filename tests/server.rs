//! The running daemon over real UDP on loopback: what it answers, what it
//! refuses, and that its counters say so.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_millis(400);

fn config(port: u16, extra: &str) -> String {
    format!(
        "config server 'main'\n\tlist listen '127.0.0.1'\n\tlist listen '::1'\n\toption port '{port}'\n\toption local_stratum '4'\n{extra}"
    )
}

fn v4(port: u16) -> SocketAddr {
    ([127, 0, 0, 1], port).into()
}

fn from(ip: &str) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), 0)
}

#[test]
fn answers_every_version_with_correct_fields() {
    let port = free_port();
    let d = Daemon::start(&config(port, ""), 2);
    for (version, mode) in [(1u8, 0u8), (1, 3), (2, 3), (3, 3), (4, 3)] {
        for (client, server) in [
            ("127.0.0.1", v4(port)),
            ("::1", format!("[::1]:{port}").parse().unwrap()),
        ] {
            let t1 = ntp_now();
            let reply = exchange(from(client), server, &request(version, mode, 5, t1), WAIT)
                .unwrap_or_else(|| panic!("no reply to v{version} mode {mode} over {client}"));
            let t4 = ntp_now();
            assert_eq!(reply.len(), 48);
            assert_eq!(reply[0] >> 6, 0, "leap");
            assert_eq!((reply[0] >> 3) & 7, version, "version echoed");
            assert_eq!(reply[0] & 7, 4, "server mode");
            assert_eq!(reply[1], 4, "stratum");
            assert_eq!(
                reply[2] as i8, 5,
                "poll: the client's (above the 2 s limit interval)"
            );
            assert!(
                (-30..=-6).contains(&(reply[3] as i8)),
                "precision {}",
                reply[3] as i8
            );
            assert_eq!(&reply[12..16], b"LOCL");
            assert_eq!(u64_at(&reply, 24), t1, "origin = our transmit, verbatim");
            let (rx, tx) = (u64_at(&reply, 32), u64_at(&reply, 40));
            assert!(
                t1 <= rx && rx <= tx && tx <= t4,
                "t1 {t1:x} <= rx {rx:x} <= tx {tx:x} <= t4 {t4:x}"
            );
            let reference = u64_at(&reply, 16);
            assert!(reference != 0 && reference <= rx);
        }
    }
    let c = d.counters();
    assert_eq!((c["received"], c["answered"]), (10, 10));
    let (status, log) = d.stop();
    assert!(status.success(), "clean stop: {status}\n{log}");
    assert!(log.contains("notice: stopped"));
}

#[test]
fn unsynchronised_without_a_reference() {
    let port = free_port();
    let d = Daemon::start(
        &format!(
            "config server\n\tlist listen '127.0.0.1'\n\toption port '{port}'\n{SILENT_UPSTREAM}"
        ),
        1,
    );
    let reply = exchange(from("127.0.0.1"), v4(port), &request(4, 3, 6, 7), WAIT).expect("a reply");
    assert_eq!(reply[0] >> 6, 3, "leap alarm");
    assert_eq!(reply[1], 0, "stratum 0 on the wire");
    assert_eq!(&reply[12..16], &[0, 0, 0, 0], "refid 0, as chrony");
    assert_eq!(u64_at(&reply, 16), 0, "never updated");
    assert!(d.log().contains("answering as unsynchronised"));
}

#[test]
fn garbage_gets_no_reply_and_is_counted() {
    let port = free_port();
    let d = Daemon::start(&config(port, ""), 2);
    let to = v4(port);
    let mut readvar = vec![0u8; 12];
    readvar[0] = (2 << 3) | 6;
    readvar[1] = 2;
    let mut monlist = vec![0u8; 192];
    monlist[0] = (2 << 3) | 7;
    monlist[3] = 42;
    let mut bad_ext = request(4, 3, 6, 1);
    bad_ext.extend_from_slice(&[0, 1, 0x10, 0]); // length past the end
    bad_ext.extend_from_slice(&[0; 12]);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "malformed"),
        ("truncated", request(4, 3, 6, 1)[..47].to_vec(), "malformed"),
        ("oversized", vec![0x23; 1500], "malformed"),
        (
            "odd length",
            [request(4, 3, 6, 1), vec![0; 3]].concat(),
            "malformed",
        ),
        ("version 0", request(0, 3, 6, 1), "malformed"),
        ("version 5", request(5, 3, 6, 1), "malformed"),
        ("bad extension field", bad_ext, "malformed"),
        ("mode 1", request(4, 1, 6, 1), "dropped_mode"),
        ("mode 2", request(4, 2, 6, 1), "dropped_mode"),
        ("mode 4", request(4, 4, 6, 1), "dropped_mode"),
        ("mode 5", request(4, 5, 6, 1), "dropped_mode"),
        ("mode 0 v2", request(2, 0, 6, 1), "dropped_mode"),
        ("mode 6 readvar", readvar, "dropped_mode"),
        ("mode 7 monlist", monlist, "dropped_mode"),
    ];
    let mut expected = std::collections::HashMap::<&str, u64>::new();
    for (what, packet, counter) in &cases {
        assert_eq!(
            exchange(from("127.0.0.1"), to, packet, WAIT),
            None,
            "{what} was answered"
        );
        *expected.entry(counter).or_default() += 1;
    }
    // Still alive, and a valid request with extension fields and a MAC gets
    // a plain 48-byte reply: nothing is echoed.
    let mut with_ext = request(4, 3, 6, 99);
    with_ext.extend_from_slice(&[0x12, 0x34, 0x00, 0x14]);
    with_ext.extend_from_slice(&[0xee; 16]);
    with_ext.extend_from_slice(&[0xdd; 24]);
    let reply = exchange(from("127.0.0.1"), to, &with_ext, WAIT).expect("valid request answered");
    assert_eq!(reply.len(), 48);
    let c = d.counters();
    assert_eq!(c["received"], cases.len() as u64 + 1);
    assert_eq!(c["answered"], 1);
    for (counter, n) in expected {
        assert_eq!(c[counter], n, "{counter}");
    }
}

/// What goes out on the wire is never longer than what came in, for
/// requests of the shapes clients send and those an amplifier would want
/// answered: shorter than a header, NTPv1-3 with each MAC, NTPv4 with
/// extension fields and MACs.
#[test]
fn no_reply_is_longer_than_its_request() {
    let port = free_port();
    let d = Daemon::start(&config(port, "\toption ratelimit '0'\n"), 2);
    let ext = |p: &mut Vec<u8>| {
        p.extend_from_slice(&[0x01, 0x04, 0x00, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    };
    let mut cases: Vec<(String, Vec<u8>, bool)> = Vec::new();
    for version in 1..=4u8 {
        let full = request(version, 3, 6, 1);
        for len in [0, 1, 4, 12, 40, 44, 47] {
            cases.push((
                format!("v{version} {len} bytes"),
                full[..len].to_vec(),
                false,
            ));
        }
        for mac in [0, 4, 12, 20, 24] {
            let mut p = full.clone();
            p.resize(48 + mac, 0xab);
            cases.push((format!("v{version} MAC {mac}"), p, true));
        }
    }
    for mac in [0, 20, 24] {
        let mut p = request(4, 3, 6, 1);
        ext(&mut p);
        ext(&mut p);
        p.resize(p.len() + mac, 0xab);
        cases.push((format!("v4 two extension fields, MAC {mac}"), p, true));
    }
    for (what, packet, answered) in &cases {
        match exchange(from("127.0.0.1"), v4(port), packet, WAIT) {
            Some(reply) => {
                assert!(*answered, "{what}: answered");
                assert!(
                    reply.len() <= packet.len(),
                    "{what}: {} bytes answered with {}",
                    packet.len(),
                    reply.len()
                );
            }
            None => assert!(!answered, "{what}: no reply"),
        }
    }
    let c = d.counters();
    assert_eq!(c["received"], cases.len() as u64);
}

#[test]
fn rate_limit_isolates_a_flooding_client() {
    let port = free_port();
    let d = Daemon::start(
        &config(
            port,
            "\toption ratelimit_burst '4'\n\toption ratelimit_interval '10'\n\toption ratelimit_leak '16'\n",
        ),
        2,
    );
    let to = v4(port);
    let flooder = std::net::UdpSocket::bind("127.0.0.2:0").unwrap();
    flooder
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    for i in 0..50u64 {
        flooder.send_to(&request(4, 3, 0, i + 1), to).unwrap();
    }
    let mut answered = 0;
    let mut buf = [0u8; 100];
    while let Ok((n, _)) = flooder.recv_from(&mut buf) {
        assert_eq!(n, 48);
        assert_eq!(
            buf[2] as i8, 4,
            "poll raised to the limit interval (2^4 >= 10 s)"
        );
        answered += 1;
    }
    assert_eq!(answered, 4, "the burst, then nothing (leak 1 in 65536)");
    // A different client is unaffected.
    assert!(exchange(from("127.0.0.3"), to, &request(4, 3, 6, 1), WAIT).is_some());
    let c = d.counters();
    assert_eq!(c["received"], 51);
    assert_eq!(c["answered"], 5);
    assert_eq!(c["limited"], 46);
    assert_eq!(c["dropped_ratelimit"], 46);
}

#[test]
fn kiss_of_death_rate() {
    let port = free_port();
    let d = Daemon::start(
        &config(
            port,
            "\toption ratelimit_burst '1'\n\toption ratelimit_leak '16'\n\toption ratelimit_kod '1'\n",
        ),
        2,
    );
    let to = v4(port);
    let first =
        exchange(from("127.0.0.4"), to, &request(4, 3, 6, 11), WAIT).expect("first answered");
    assert_eq!(first[1], 4);
    let kod =
        exchange(from("127.0.0.4"), to, &request(4, 3, 6, 12), WAIT).expect("a kiss-o'-death");
    assert_eq!((kod[0] >> 6, kod[1]), (3, 0), "leap 3, stratum 0");
    assert_eq!(&kod[12..16], b"RATE");
    assert_eq!(u64_at(&kod, 24), 12, "origin copied");
    assert_eq!(d.counters()["kod_sent"], 1);
}

#[test]
fn allow_and_deny() {
    let port = free_port();
    let d = Daemon::start(
        &config(
            port,
            "\tlist allow '127.0.0.0/24'\n\tlist deny '127.0.0.66'\n",
        ),
        2,
    );
    assert!(exchange(from("127.0.0.5"), v4(port), &request(4, 3, 6, 1), WAIT).is_some());
    assert!(exchange(from("127.0.0.66"), v4(port), &request(4, 3, 6, 1), WAIT).is_none());
    // Not in the allow list: ::1 and 127.0.1.x.
    assert!(
        exchange(
            from("::1"),
            format!("[::1]:{port}").parse().unwrap(),
            &request(4, 3, 6, 1),
            WAIT
        )
        .is_none()
    );
    assert!(exchange(from("127.0.1.1"), v4(port), &request(4, 3, 6, 1), WAIT).is_none());
    assert_eq!(d.counters()["dropped_denied"], 3);
}

#[test]
fn sighup_reloads_and_keeps_running_on_a_bad_config() {
    let port = free_port();
    let d = Daemon::start(&config(port, ""), 2);
    // A broken config: refused, the old one keeps serving.
    std::fs::write(&d.config_path, "config server\n\toption port 'x'\n").unwrap();
    d.signal("HUP");
    d.wait_for_log(|l| l.contains("reload refused"), "the refusal");
    assert!(
        d.log().contains(":2: port: 'x' is not a whole number"),
        "{}",
        d.log()
    );
    assert!(exchange(from("127.0.0.1"), v4(port), &request(4, 3, 6, 1), WAIT).is_some());
    // A good one on another port and stratum: applied.
    let new_port = free_port();
    std::fs::write(
        &d.config_path,
        format!("config server\n\tlist listen '127.0.0.1'\n\toption port '{new_port}'\n\toption local_stratum '9'\n"),
    )
    .unwrap();
    d.signal("HUP");
    d.wait_for_log(
        |l| l.contains("reload: configuration applied"),
        "the reload",
    );
    assert!(exchange(from("127.0.0.1"), v4(port), &request(4, 3, 6, 1), WAIT).is_none());
    let reply =
        exchange(from("127.0.0.1"), v4(new_port), &request(4, 3, 6, 1), WAIT).expect("new port");
    assert_eq!(reply[1], 9);
}

#[test]
fn refuses_to_start_on_a_broken_config() {
    let dir = scratch_dir();
    let path = dir.join("bad.conf");
    std::fs::write(
        &path,
        "config server\n\toption port 123 456\n\tlist allow 'nonsense'\n",
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let p = path.display();
    assert!(
        err.contains(&format!("{p}:2: too many arguments to 'option'")),
        "{err}"
    );
    assert!(err.contains("configuration refused"), "{err}");
}

/// A router's addresses come and go (a prefix arrives by DHCPv6-PD after
/// the daemon started): a listen address that is not on any interface yet
/// is bound anyway (IPV6_FREEBIND) and answered on once it comes up.
#[test]
fn binds_an_address_that_is_not_up_yet() {
    let ns = Netns::new();
    let port = free_port();
    let d = Daemon::start_with(
        ns.command(BIN),
        &format!(
            "config server\n\tlist listen '2001:db8::7'\n\tlist listen '127.0.0.1'\n\toption port '{port}'\n\toption local_stratum '5'\n"
        ),
        2,
    );
    assert!(
        d.log()
            .contains(&format!("serving NTP on [2001:db8::7]:{port}")),
        "{}",
        d.log()
    );
    let server: SocketAddr = format!("[2001:db8::7]:{port}").parse().unwrap();
    let ask = || {
        ns.run(|| {
            exchange(
                "[2001:db8::7]:0".parse().unwrap(),
                server,
                &request(4, 3, 6, 9),
                WAIT,
            )
        })
    };
    // The address comes up on an interface after the daemon bound it.
    run_ok(
        ns.command("ip")
            .args(["-6", "addr", "add", "2001:db8::7/64", "dev", "lo", "nodad"]),
    );
    let reply = ask().expect("answered once the address is up");
    assert_eq!(reply[1], 5, "stratum");
    assert_eq!(d.counters()["answered"], 1);
}

#[test]
fn dual_stack_wildcard_replies_from_the_address_asked() {
    // The default listen address: one socket for IPv4 and IPv6. A router
    // has many addresses; a reply from another one than the client asked
    // is dropped by the client, so each reply must leave from the address
    // its request came to (exchange() checks the reply's source).
    let port = free_port();
    let d = Daemon::start(
        &format!("config server\n\toption port '{port}'\n\toption local_stratum '3'\n"),
        1,
    );
    assert!(
        d.log().contains(&format!("serving NTP on [::]:{port}")),
        "{}",
        d.log()
    );
    for (client, server) in [
        ("127.0.0.1", "127.0.0.1"),
        ("127.0.0.7", "127.0.0.9"),
        ("127.0.0.7", "127.3.2.1"),
        ("::1", "::1"),
    ] {
        let to = SocketAddr::new(server.parse().unwrap(), port);
        let reply = exchange(from(client), to, &request(4, 3, 6, 5), WAIT)
            .unwrap_or_else(|| panic!("no reply from {to} to {client}"));
        assert_eq!(reply[1], 3);
    }
    assert_eq!(d.counters()["answered"], 4);
}
