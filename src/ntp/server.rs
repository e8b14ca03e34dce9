//! The server decision, sans IO: a request, the system state and the time
//! in; a reply, a kiss-o'-death or a reasoned drop out.

use std::net::{IpAddr, SocketAddr};

use super::packet::{
    self, HEADER_LEN, Header, Leap, NtpTimestamp, ParseError, RefId, UnixNanos, mode,
};
use super::ratelimit::{RateLimitSettings, RateLimiter, Verdict};
use super::{PHI, STRATUM_UNSYNC};
use crate::net::Cidr;

/// What the server knows about its own time, as published by the sync
/// engine (or by the lab-only local reference).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SystemState {
    pub leap: Leap,
    /// 1-15 when synchronised, [`STRATUM_UNSYNC`] when not.
    pub stratum: u8,
    pub refid: RefId,
    /// When the clock was last updated from its reference; `None` before the
    /// first update.
    pub reference_time: Option<UnixNanos>,
    /// Round-trip delay to the primary reference, seconds.
    pub root_delay: f64,
    /// Error bound to the primary reference at `reference_time`, seconds.
    pub root_dispersion: f64,
}

impl SystemState {
    /// No reference: leap alarm, stratum 0 on the wire, refid 0 as chrony
    /// sends while unsynchronised.
    pub fn unsynchronised() -> Self {
        SystemState {
            leap: Leap::Unsynchronised,
            stratum: STRATUM_UNSYNC,
            refid: RefId::default(),
            reference_time: None,
            root_delay: 0.0,
            root_dispersion: 0.0,
        }
    }

    /// The lab-only local reference: the local clock taken as true at
    /// `stratum`, refreshed at `now`. refid LOCL as ntpd's local driver.
    pub fn local(stratum: u8, now: UnixNanos) -> Self {
        SystemState {
            leap: Leap::None,
            stratum,
            refid: RefId::ascii(b"LOCL"),
            reference_time: Some(now),
            root_delay: 0.0,
            root_dispersion: 0.0,
        }
    }

    pub fn is_synchronised(&self) -> bool {
        self.leap != Leap::Unsynchronised && (1..STRATUM_UNSYNC).contains(&self.stratum)
    }

    /// The root dispersion grown by PHI for every second since the last
    /// update (RFC 5905 §11.2).
    pub fn root_dispersion_at(&self, now: UnixNanos) -> f64 {
        match self.reference_time {
            Some(t) => self.root_dispersion + PHI * now.seconds_since(t).max(0.0),
            None => self.root_dispersion,
        }
    }
}

/// Who may be served, and how often.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AccessPolicy {
    /// Served networks; empty means everyone.
    pub allow: Vec<Cidr>,
    /// Never served; wins over `allow`.
    pub deny: Vec<Cidr>,
    pub ratelimit: Option<RateLimitSettings>,
}

impl AccessPolicy {
    pub fn permits(&self, ip: IpAddr) -> bool {
        !self.deny.iter().any(|c| c.contains(ip))
            && (self.allow.is_empty() || self.allow.iter().any(|c| c.contains(ip)))
    }
}

/// Why a packet got no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    Malformed(ParseError),
    /// A mode the server does not answer: 1, 2, 4, 5, and 6/7 (control and
    /// private: the monlist amplification vector), or 0 unless it is NTPv1.
    Mode(u8),
    Denied,
    RateLimited,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Answered,
    /// Over the rate limit but answered through the leak.
    Leaked,
    /// Over the rate limit and sent a RATE kiss-o'-death.
    KissRate,
    Dropped(DropReason),
}

impl Outcome {
    pub fn reply_sent(self) -> bool {
        matches!(
            self,
            Outcome::Answered | Outcome::Leaked | Outcome::KissRate
        )
    }
}

/// One received datagram and when it arrived.
pub struct Request<'a> {
    pub packet: &'a [u8],
    pub source: SocketAddr,
    /// Wall-clock receive time, from the kernel where it gives one.
    pub received: UnixNanos,
    /// Monotonic time for rate limiting, nanoseconds.
    pub monotonic_ns: u64,
}

/// The well-known port: an NTPv1 mode-0 packet from it comes from a peer,
/// not a client (chrony's rule).
const NTP_PORT: u16 = 123;

pub struct Server {
    policy: AccessPolicy,
    limiter: Option<RateLimiter>,
    precision: i8,
}

impl Server {
    /// `precision` is the measured log2 precision of the clock that stamps
    /// replies; `seed` drives the rate limiter's leak.
    pub fn new(policy: AccessPolicy, limiter_capacity: usize, precision: i8, seed: u64) -> Self {
        let limiter = policy
            .ratelimit
            .map(|s| RateLimiter::new(s, limiter_capacity, seed));
        Server {
            policy,
            limiter,
            precision,
        }
    }

    /// Sources the rate limiter saw since `since_ns` (monotonic); `None`
    /// with rate limiting off.
    pub fn clients_active(&self, since_ns: u64) -> Option<usize> {
        self.limiter.as_ref().map(|l| l.active_since(since_ns))
    }

    /// Decide on one request. When the outcome sends a reply, `out` holds it
    /// with every field but the transmit timestamp, which the caller writes
    /// with [`packet::set_transmit`] as late as it can.
    pub fn handle(
        &mut self,
        state: &SystemState,
        req: &Request<'_>,
        out: &mut [u8; HEADER_LEN],
    ) -> Outcome {
        // Control (6) and private (7) messages have their own formats, often
        // shorter than a header: name them by their mode, not as malformed.
        if let Some(&first) = req.packet.first() {
            let (version, m) = ((first >> 3) & 7, first & 7);
            if (1..=4).contains(&version) && (m == mode::CONTROL || m == mode::PRIVATE) {
                return Outcome::Dropped(DropReason::Mode(m));
            }
        }
        let header = match packet::parse(req.packet) {
            Ok(h) => h,
            Err(e) => return Outcome::Dropped(DropReason::Malformed(e)),
        };
        let answerable = match header.mode {
            mode::CLIENT => true,
            mode::RESERVED => header.version == 1 && req.source.port() != NTP_PORT,
            _ => false,
        };
        if !answerable {
            return Outcome::Dropped(DropReason::Mode(header.mode));
        }
        if !self.policy.permits(req.source.ip()) {
            return Outcome::Dropped(DropReason::Denied);
        }
        let verdict = match &mut self.limiter {
            Some(l) => l.check(req.source.ip(), req.monotonic_ns),
            None => Verdict::Allowed,
        };
        let kod = self.policy.ratelimit.is_some_and(|r| r.kod);
        let outcome = match verdict {
            Verdict::Allowed => Outcome::Answered,
            Verdict::Leaked => Outcome::Leaked,
            Verdict::Limited if kod => Outcome::KissRate,
            Verdict::Limited => return Outcome::Dropped(DropReason::RateLimited),
        };
        self.reply(state, &header, req.received, outcome == Outcome::KissRate)
            .encode(out);
        outcome
    }

    fn reply(&self, state: &SystemState, req: &Header, received: UnixNanos, kiss: bool) -> Header {
        let min_poll = self.policy.ratelimit.map_or(i8::MIN, |r| r.poll_exponent());
        let mut reply = Header {
            leap: state.leap,
            version: req.version,
            mode: mode::SERVER,
            // Stratum 16 is "unsynchronised" internally and 0 on the wire.
            stratum: if state.stratum >= STRATUM_UNSYNC {
                0
            } else {
                state.stratum
            },
            poll: req.poll.max(min_poll).min(17),
            precision: self.precision,
            root_delay: packet::short_from_secs(state.root_delay),
            root_dispersion: packet::short_from_secs(state.root_dispersion_at(received)),
            refid: state.refid,
            reference: state
                .reference_time
                .map_or(NtpTimestamp::ZERO, NtpTimestamp::from_unix),
            origin: req.transmit,
            receive: NtpTimestamp::from_unix(received),
            transmit: NtpTimestamp::ZERO,
        };
        if kiss {
            // RFC 5905 §7.4: a kiss-o'-death is stratum 0 with the kiss code
            // in the refid; leap 3 so that no client takes its time.
            reply.leap = Leap::Unsynchronised;
            reply.stratum = 0;
            reply.refid = RefId::ascii(b"RATE");
        }
        reply
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ntp::ratelimit::DEFAULT_CAPACITY;

    const SEC: i64 = 1_000_000_000;
    const NOW: UnixNanos = UnixNanos(1_795_000_000 * SEC);

    fn server(policy: AccessPolicy) -> Server {
        Server::new(policy, DEFAULT_CAPACITY, -20, 1)
    }

    fn request(version: u8, mode: u8, poll: i8, transmit: u64) -> [u8; HEADER_LEN] {
        let mut p = [0u8; HEADER_LEN];
        p[0] = (version << 3) | mode;
        p[2] = poll as u8;
        p[40..48].copy_from_slice(&transmit.to_be_bytes());
        p
    }

    fn ask(
        s: &mut Server,
        state: &SystemState,
        packet: &[u8],
        src: &str,
        mono: u64,
    ) -> (Outcome, Header) {
        let req = Request {
            packet,
            source: src.parse().unwrap(),
            received: NOW,
            monotonic_ns: mono,
        };
        let mut out = [0u8; HEADER_LEN];
        let outcome = s.handle(state, &req, &mut out);
        if !outcome.reply_sent() {
            assert_eq!(out, [0u8; HEADER_LEN], "nothing written for a drop");
            return (outcome, Header::default());
        }
        (outcome, packet::parse(&out).expect("replies parse"))
    }

    #[test]
    fn unsynchronised_reply_is_an_alarm() {
        let mut s = server(AccessPolicy::default());
        let (o, r) = ask(
            &mut s,
            &SystemState::unsynchronised(),
            &request(4, 3, 6, 99),
            "[2001:db8::1]:40000",
            1,
        );
        assert_eq!(o, Outcome::Answered);
        assert_eq!(r.leap, Leap::Unsynchronised);
        assert_eq!(r.stratum, 0);
        assert_eq!(r.refid, RefId::default());
        assert_eq!(r.reference, NtpTimestamp::ZERO);
        assert_eq!(r.origin, NtpTimestamp(99));
    }

    #[test]
    fn local_reference_fields() {
        let mut s = server(AccessPolicy::default());
        let state = SystemState::local(7, UnixNanos(NOW.0 - 100 * SEC));
        let (o, r) = ask(&mut s, &state, &request(4, 3, 6, 5), "192.0.2.1:123", 1);
        assert_eq!(o, Outcome::Answered);
        assert_eq!(
            (r.leap, r.stratum, r.mode, r.version),
            (Leap::None, 7, mode::SERVER, 4)
        );
        assert_eq!(r.refid, RefId::ascii(b"LOCL"));
        assert_eq!(r.precision, -20);
        assert_eq!(r.receive, NtpTimestamp::from_unix(NOW));
        assert_eq!(
            r.reference,
            NtpTimestamp::from_unix(state.reference_time.unwrap())
        );
        // 100 s since the update: 1.5 ms of dispersion.
        let disp = packet::short_to_secs(r.root_dispersion);
        assert!((disp - 100.0 * PHI).abs() < 1e-4, "{disp}");
    }

    #[test]
    fn ntpv1_mode_zero_only_from_client_ports() {
        let mut s = server(AccessPolicy::default());
        let state = SystemState::local(3, NOW);
        let (o, r) = ask(&mut s, &state, &request(1, 0, 6, 5), "192.0.2.1:5000", 1);
        assert_eq!(o, Outcome::Answered);
        assert_eq!((r.version, r.mode), (1, mode::SERVER));
        let (o, _) = ask(&mut s, &state, &request(1, 0, 6, 5), "192.0.2.1:123", 1);
        assert_eq!(o, Outcome::Dropped(DropReason::Mode(0)));
        let (o, _) = ask(&mut s, &state, &request(2, 0, 6, 5), "192.0.2.1:5000", 1);
        assert_eq!(o, Outcome::Dropped(DropReason::Mode(0)));
    }

    #[test]
    fn control_and_private_modes_are_dropped_by_mode() {
        let mut s = server(AccessPolicy::default());
        let state = SystemState::local(3, NOW);
        // ntpq's 12-byte mode 6 readvar and a 192-byte mode 7 monlist request.
        let mut readvar = [0u8; 12];
        readvar[0] = (2 << 3) | 6;
        readvar[1] = 2;
        let mut monlist = [0u8; 192];
        monlist[0] = (2 << 3) | 7;
        monlist[3] = 42;
        assert_eq!(
            ask(&mut s, &state, &readvar, "192.0.2.1:40000", 1).0,
            Outcome::Dropped(DropReason::Mode(6))
        );
        assert_eq!(
            ask(&mut s, &state, &monlist, "192.0.2.1:40000", 1).0,
            Outcome::Dropped(DropReason::Mode(7))
        );
    }

    #[test]
    fn deny_wins_over_allow() {
        let policy = AccessPolicy {
            allow: vec![Cidr::parse("2001:db8::/32").unwrap().0],
            deny: vec![Cidr::parse("2001:db8:bad::/48").unwrap().0],
            ratelimit: None,
        };
        let mut s = server(policy);
        let state = SystemState::local(3, NOW);
        let req = request(4, 3, 6, 1);
        assert_eq!(
            ask(&mut s, &state, &req, "[2001:db8::1]:1000", 1).0,
            Outcome::Answered
        );
        assert_eq!(
            ask(&mut s, &state, &req, "[2001:db8:bad::1]:1000", 1).0,
            Outcome::Dropped(DropReason::Denied)
        );
        assert_eq!(
            ask(&mut s, &state, &req, "192.0.2.1:1000", 1).0,
            Outcome::Dropped(DropReason::Denied)
        );
    }

    #[test]
    fn kiss_of_death_when_enabled() {
        let settings = RateLimitSettings {
            kod: true,
            leak: 63,
            burst: 1,
            ..RateLimitSettings::default()
        };
        let mut s = server(AccessPolicy {
            ratelimit: Some(settings),
            ..AccessPolicy::default()
        });
        let state = SystemState::local(2, NOW);
        let req = request(4, 3, 0, 77);
        let (o, r) = ask(&mut s, &state, &req, "192.0.2.9:1000", 1);
        assert_eq!(o, Outcome::Answered);
        assert_eq!(r.poll, 1, "raised to the rate-limit interval");
        let (o, r) = ask(&mut s, &state, &req, "192.0.2.9:1000", 2);
        assert_eq!(o, Outcome::KissRate);
        assert_eq!(
            (r.leap, r.stratum, r.refid),
            (Leap::Unsynchronised, 0, RefId::ascii(b"RATE"))
        );
        assert_eq!(r.origin, NtpTimestamp(77));
    }

    /// A deterministic generator for the property tests below.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn property_replies_are_sane_for_any_input() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut s = server(AccessPolicy {
            ratelimit: Some(RateLimitSettings {
                kod: true,
                ..RateLimitSettings::default()
            }),
            ..AccessPolicy::default()
        });
        let states = [SystemState::unsynchronised(), SystemState::local(5, NOW)];
        let mut answered_by_mode = [0u32; 8];
        for i in 0..200_000u64 {
            let len = match rng.next() % 4 {
                0 => (rng.next() % 200) as usize,
                1 => HEADER_LEN,
                2 => HEADER_LEN + 4 * (rng.next() % 20) as usize,
                _ => HEADER_LEN + 20,
            };
            let mut pkt: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if len >= HEADER_LEN && i % 2 == 0 {
                // Bias half of them towards valid versions.
                pkt[0] = (pkt[0] & 0xc7) | (((rng.next() % 4) as u8 + 1) << 3);
            }
            let src = format!(
                "[2001:db8::{:x}]:{}",
                rng.next() % 50_000,
                rng.next() % 65536
            );
            let req = Request {
                packet: &pkt,
                source: src.parse().unwrap(),
                received: NOW,
                monotonic_ns: i * 1_000_000,
            };
            let mut out = [0u8; HEADER_LEN];
            let outcome = s.handle(&states[(i % 2) as usize], &req, &mut out);
            if !outcome.reply_sent() {
                continue;
            }
            let q = packet::parse(&pkt).expect("only valid packets are answered");
            let r = packet::parse(&out).expect("replies parse");
            assert!(
                matches!(q.mode, mode::CLIENT | mode::RESERVED),
                "answered mode {}",
                q.mode
            );
            assert_eq!(r.version, q.version);
            assert_eq!(r.mode, mode::SERVER);
            assert_eq!(r.origin, q.transmit);
            assert!(r.poll >= q.poll.min(17));
            answered_by_mode[q.mode as usize] += 1;
        }
        assert!(answered_by_mode[3] > 1000, "{answered_by_mode:?}");
        for m in [1, 2, 4, 5, 6, 7] {
            assert_eq!(answered_by_mode[m], 0, "mode {m} answered");
        }
    }

    /// A request of `len` bytes from a client of `version`: the header,
    /// then as many 16-byte extension fields as fit (NTPv4), then what is
    /// left as a MAC.
    fn shaped_request(version: u8, len: usize) -> Vec<u8> {
        let mut p = request(version, 3, 6, 7).to_vec();
        p.resize(len, 0);
        if len > HEADER_LEN && version == 4 {
            let mut at = HEADER_LEN;
            while len - at >= 16 && !MAC_TAILS.contains(&(len - at)) {
                p[at + 3] = 16;
                at += 16;
            }
        }
        p
    }

    const MAC_TAILS: [usize; 4] = [4, 12, 20, 24];

    #[test]
    fn a_reply_is_never_longer_than_its_request() {
        // Where it could break: requests shorter than a header, NTPv1-3
        // with their MACs (crypto-NAK, DES, MD5, SHA-1), NTPv4 with
        // extension fields and MACs. An answer to anything shorter than the
        // 48-byte reply would amplify.
        let mut s = server(AccessPolicy::default());
        let state = SystemState::local(2, NOW);
        let mut answered_lengths = std::collections::BTreeSet::new();
        for version in 1..=4u8 {
            for len in 0..=HEADER_LEN + 100 {
                let (outcome, reply) = ask(
                    &mut s,
                    &state,
                    &shaped_request(version, len),
                    "192.0.2.9:4000",
                    len as u64,
                );
                if outcome.reply_sent() {
                    assert!(HEADER_LEN <= len, "v{version}: {len}-byte request answered");
                    assert_eq!(reply.version, version);
                    answered_lengths.insert((version, len));
                }
            }
        }
        // The shapes a client really sends are answered (the check above is
        // not vacuous): v1-3 bare and with each MAC, v4 with extension
        // fields and with both.
        for version in 1..=3 {
            for len in [48, 52, 60, 68, 72] {
                assert!(
                    answered_lengths.contains(&(version, len)),
                    "v{version} {len}"
                );
            }
            assert!(
                !answered_lengths.contains(&(version, 64)),
                "v{version}: no extension fields"
            );
        }
        for len in [48, 64, 80, 84, 148] {
            assert!(answered_lengths.contains(&(4, len)), "v4 {len}");
        }
    }
}
