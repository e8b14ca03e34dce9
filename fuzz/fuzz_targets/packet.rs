//! Packet parsing and the server's decision on arbitrary datagrams: never a
//! panic, and every reply obeys the invariants (version echoed, mode 4,
//! origin copied, only client modes answered). The client-side check of a
//! reply gets the same bytes. (That no reply is longer than its request is
//! tested where requests of every shape and length reach the server:
//! `ntp::server`'s unit tests and tests/server.rs over real sockets.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use ntpgate::net::Cidr;
use ntpgate::ntp::client;
use ntpgate::ntp::packet::{self, HEADER_LEN, NtpTimestamp, UnixNanos};
use ntpgate::ntp::ratelimit::RateLimitSettings;
use ntpgate::ntp::server::{AccessPolicy, Request, Server, SystemState};

fuzz_target!(|data: &[u8]| {
    // The first bytes choose the circumstances; the rest is the datagram.
    let Some((&knobs, rest)) = data.split_first() else {
        return;
    };
    let Some((&port_byte, datagram)) = rest.split_first() else {
        return;
    };
    let policy = AccessPolicy {
        allow: if knobs & 1 != 0 { vec![Cidr::parse("2001:db8::/32").unwrap().0] } else { vec![] },
        deny: if knobs & 2 != 0 { vec![Cidr::parse("2001:db8:bad::/48").unwrap().0] } else { vec![] },
        ratelimit: (knobs & 4 != 0).then(|| RateLimitSettings {
            burst: 1 + u32::from(knobs >> 5),
            kod: knobs & 8 != 0,
            ..RateLimitSettings::default()
        }),
    };
    let state = if knobs & 16 != 0 {
        SystemState::local(1 + knobs % 15, UnixNanos(1_900_000_000_000_000_000))
    } else {
        SystemState::unsynchronised()
    };
    let mut server = Server::new(policy, 64, -20, 1);
    let source = format!("[2001:db8:bad::1]:{}", if port_byte == 0 { 123 } else { 1000 + u16::from(port_byte) });
    let now = UnixNanos(2_085_978_496_000_000_000 + i64::from(knobs) * 1_000_000_000);
    for round in 0..2u64 {
        let req = Request {
            packet: datagram,
            source: source.parse().unwrap(),
            received: now,
            monotonic_ns: round,
        };
        let mut out = [0u8; HEADER_LEN];
        let outcome = server.handle(&state, &req, &mut out);
        if outcome.reply_sent() {
            let q = packet::parse(datagram).expect("only valid requests are answered");
            let r = packet::parse(&out).expect("replies are valid packets");
            assert_eq!(r.version, q.version);
            assert_eq!(r.mode, 4);
            assert_eq!(r.origin, q.transmit);
            assert!(!matches!(q.mode, 1 | 2 | 4 | 5 | 6 | 7));
        }
    }
    let _ = client::evaluate(datagram, NtpTimestamp(1), now, now);
});
