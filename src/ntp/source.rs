//! One upstream server, sans IO: when to ask it, what to ask, whether its
//! answer is sane, and the filtered measurement it yields.
//!
//! The sample filter prefers low-delay samples, after NTP's clock filter
//! (RFC 5905 §10): queueing only ever adds delay, and a sample that waited
//! in a queue on one leg has that wait as error in its offset. The last
//! eight delays are kept and a new sample is used only if its delay is no
//! more than the median of them; unlike RFC 5905's filter, which may pick
//! an older sample with a lower delay, only fresh samples are used, so a
//! sample never carries the clock's drift since it was taken into an
//! update. A sample that jumps by more than three times the jitter from the
//! previous one is held back as a popcorn spike unless the jump persists.
//! A Kalman filter (ntpd-rs) would weigh every sample instead, with a noise
//! model per path and more state; with the regression in `discipline`
//! averaging over time, this filter does what a router needs in a few
//! dozen lines.

use std::fmt;

use super::PHI;
use super::client::{Exchange, ReplyError};
use super::packet::{Leap, NtpTimestamp, RefId, UnixNanos, short_to_secs};

/// Poll interval bounds, log2 seconds: 64 s to 1024 s.
pub const MIN_POLL: i8 = 6;
pub const MAX_POLL: i8 = 10;
/// Requests at start (and after a step), 2 s apart (iburst).
const BURST_COUNT: u8 = 6;
const BURST_INTERVAL: f64 = 2.0;
/// How long to wait for an answer.
pub const REPLY_TIMEOUT: f64 = 1.0;
const FILTER_STAGES: usize = 8;
/// RFC 5905 MAXDIST: a source further than this from a primary reference
/// is not fit to synchronise to.
pub const MAX_DISTANCE: f64 = 1.5;
/// Popcorn spike gate (RFC 5905 SGATE).
const SPIKE_GATE: f64 = 3.0;

#[derive(Clone, Copy, Debug, PartialEq)]
struct FilterSample {
    offset: f64,
    delay: f64,
    dispersion: f64,
    time: UnixNanos,
}

/// What the filter makes of a source: the input to selection.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Measurement {
    /// Reference time minus local time, seconds, plus the discipline's
    /// frame at `time`.
    pub offset: f64,
    pub delay: f64,
    pub dispersion: f64,
    pub jitter: f64,
    /// Local time of the sample.
    pub time: UnixNanos,
    pub stratum: u8,
    pub refid: RefId,
    pub leap: Leap,
    pub root_delay: f64,
    pub root_dispersion: f64,
}

impl Measurement {
    /// RFC 5905 root distance: half the round trip to the primary
    /// reference plus every error bound, grown since the sample was taken.
    pub fn root_distance(&self, now: UnixNanos) -> f64 {
        (self.root_delay + self.delay) / 2.0
            + self.root_dispersion
            + self.dispersion
            + PHI * now.seconds_since(self.time).max(0.0)
            + self.jitter
    }
}

/// Why a reply was not used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    /// No request outstanding, or the origin is not our transmit
    /// timestamp: late, duplicated on the way, or forged.
    NotOurs,
    Invalid(ReplyError),
    /// The same server transmit timestamp as the previous reply.
    Duplicate,
    /// The server gives no usable time: leap 3, or stratum 0 (not a kiss
    /// code) or 16 and above.
    Unsynchronised,
    /// Root distance beyond [`MAX_DISTANCE`].
    TooFar,
    /// A kiss-o'-death: RATE slows us down, DENY and RSTR stop the source.
    Kiss(RefId),
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reject::NotOurs => f.write_str("not an answer to our request"),
            Reject::Invalid(e) => write!(f, "{e}"),
            Reject::Duplicate => f.write_str("duplicate reply"),
            Reject::Unsynchronised => f.write_str("server not synchronised"),
            Reject::TooFar => f.write_str("root distance too large"),
            Reject::Kiss(code) => write!(f, "kiss-o'-death {}", code.display(1)),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Source {
    /// Reachability register: one bit per poll, 1 when answered.
    reach: u8,
    poll: i8,
    /// Raised by RATE kisses; never polled faster than this.
    min_poll: i8,
    burst: u8,
    outstanding: Option<Exchange>,
    last_server_transmit: NtpTimestamp,
    stages: [Option<FilterSample>; FILTER_STAGES],
    next_stage: usize,
    measurement: Option<Measurement>,
    /// Kiss code that stopped this source (DENY, RSTR).
    stopped: Option<RefId>,
    polls_since_answer: u32,
    /// Set when a new measurement replaced the previous one.
    fresh: bool,
    /// A popcorn spike was held back; the next jump is believed.
    spike_held: bool,
}

/// Local clock precision assumed for sample dispersion (seconds).
const LOCAL_PRECISION: f64 = 1e-6;

impl Source {
    pub fn new() -> Source {
        Source {
            reach: 0,
            poll: MIN_POLL,
            min_poll: MIN_POLL,
            burst: BURST_COUNT,
            outstanding: None,
            last_server_transmit: NtpTimestamp::ZERO,
            stages: [None; FILTER_STAGES],
            next_stage: 0,
            measurement: None,
            stopped: None,
            polls_since_answer: 0,
            fresh: false,
            spike_held: false,
        }
    }

    pub fn reach(&self) -> u8 {
        self.reach
    }

    pub fn poll(&self) -> i8 {
        self.poll
    }

    pub fn measurement(&self) -> Option<&Measurement> {
        self.measurement.as_ref()
    }

    pub fn stopped(&self) -> Option<RefId> {
        self.stopped
    }

    /// Seconds until the next request should go out.
    pub fn poll_interval(&self) -> f64 {
        if self.burst > 0 {
            BURST_INTERVAL
        } else {
            f64::from(1u32 << self.poll)
        }
    }

    /// The system's poll, within this source's limits.
    pub fn set_poll(&mut self, poll: i8) {
        self.poll = poll.clamp(self.min_poll, MAX_POLL);
    }

    /// Poll quickly again (after a clock step cleared the filter).
    pub fn rearm_burst(&mut self) {
        self.burst = BURST_COUNT.min(4);
    }

    /// Forget the samples (their offsets are stale after a clock step).
    pub fn clear_filter(&mut self) {
        self.stages = [None; FILTER_STAGES];
        self.measurement = None;
    }

    /// Nothing heard for 8 polls: time to look the name up again.
    pub fn needs_resolve(&self) -> bool {
        self.polls_since_answer >= 8
    }

    /// A new measurement since the last call.
    pub fn take_fresh(&mut self) -> bool {
        std::mem::take(&mut self.fresh)
    }

    /// The request to send now, at local time `now`. `cookie` is a random
    /// 64-bit value sent as the transmit timestamp (RFC 9109: a server or
    /// an observer learns nothing of our clock from it, and a reply must
    /// echo it to be believed).
    pub fn request(&mut self, now: UnixNanos, cookie: u64) -> [u8; 48] {
        self.reach <<= 1;
        self.polls_since_answer += 1;
        self.burst = self.burst.saturating_sub(1);
        let (exchange, request) = Exchange::start(now, NtpTimestamp(cookie), self.poll);
        self.outstanding = Some(exchange);
        request
    }

    /// A reply received at local time `t4`. `frame` is the discipline's
    /// frame at `t4` ([`Discipline::frame_at`](super::discipline::Discipline::frame_at)):
    /// offsets are kept in it so that samples of different ages compare.
    pub fn reply(&mut self, packet: &[u8], t4: UnixNanos, frame: f64) -> Result<(), Reject> {
        let exchange = self.outstanding.ok_or(Reject::NotOurs)?;
        let t1 = exchange.sent();
        let sample = match exchange.receive(packet, t4) {
            Ok(s) => s,
            Err(ReplyError::OriginMismatch) => return Err(Reject::NotOurs),
            Err(ReplyError::Kiss(code)) => {
                self.outstanding = None;
                return Err(self.kiss(code));
            }
            Err(e) => return Err(Reject::Invalid(e)),
        };
        self.outstanding = None;
        let h = sample.reply;
        if h.transmit == self.last_server_transmit {
            return Err(Reject::Duplicate);
        }
        self.last_server_transmit = h.transmit;
        // It answered: reachable, even if what it says is not usable.
        self.reach |= 1;
        self.polls_since_answer = 0;
        if !h.claims_synchronised() {
            return Err(Reject::Unsynchronised);
        }
        let root_delay = short_to_secs(h.root_delay);
        let root_dispersion = short_to_secs(h.root_dispersion);
        if (root_delay + sample.delay) / 2.0 + root_dispersion > MAX_DISTANCE {
            return Err(Reject::TooFar);
        }
        let dispersion = 2f64.powi(i32::from(h.precision))
            + LOCAL_PRECISION
            + PHI * t4.seconds_since(t1).max(0.0);
        self.stages[self.next_stage] = Some(FilterSample {
            offset: sample.offset + frame,
            delay: sample.delay,
            dispersion,
            time: t4,
        });
        self.next_stage = (self.next_stage + 1) % FILTER_STAGES;
        self.filter(t4, h.stratum, h.refid, h.leap, root_delay, root_dispersion);
        Ok(())
    }

    /// No answer within [`REPLY_TIMEOUT`]: stop waiting for it.
    pub fn timed_out(&mut self) {
        self.outstanding = None;
    }

    fn kiss(&mut self, code: RefId) -> Reject {
        match &code.0 {
            b"RATE" => {
                // Ask less often: at least twice the interval we used.
                self.min_poll = (self.poll + 1).min(MAX_POLL);
                self.poll = self.poll.max(self.min_poll);
                self.burst = 0;
            }
            b"DENY" | b"RSTR" => self.stopped = Some(code),
            _ => {}
        }
        Reject::Kiss(code)
    }

    fn filter(
        &mut self,
        now: UnixNanos,
        stratum: u8,
        refid: RefId,
        leap: Leap,
        root_delay: f64,
        root_dispersion: f64,
    ) {
        let newest = self.stages[(self.next_stage + FILTER_STAGES - 1) % FILTER_STAGES]
            .expect("just stored");
        let mut delays: Vec<f64> = self.stages.iter().flatten().map(|s| s.delay).collect();
        delays.sort_by(f64::total_cmp);
        if newest.delay > delays[(delays.len() - 1) / 2] {
            return;
        }
        let jitter = match self.measurement {
            Some(prev) => {
                // Exponential average of the squared differences between
                // consecutive used samples (RFC 5905's peer jitter, in
                // the frame that makes them comparable).
                let d = (newest.offset - prev.offset).powi(2);
                if (newest.offset - prev.offset).abs() > SPIKE_GATE * prev.jitter
                    && newest.time.seconds_since(prev.time) < 2.0 * f64::from(1u32 << self.poll)
                    && delays.len() >= 4
                    && !self.spike_held
                {
                    self.spike_held = true;
                    return;
                }
                (prev.jitter.powi(2) + (d - prev.jitter.powi(2)) / 4.0).sqrt()
            }
            None => newest.dispersion,
        }
        .max(LOCAL_PRECISION);
        self.spike_held = false;
        self.measurement = Some(Measurement {
            offset: newest.offset,
            delay: newest.delay,
            dispersion: newest.dispersion + PHI * now.seconds_since(newest.time).max(0.0),
            jitter,
            time: newest.time,
            stratum,
            refid,
            leap,
            root_delay,
            root_dispersion,
        });
        self.fresh = true;
    }
}

impl Default for Source {
    fn default() -> Self {
        Source::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ntp::packet::{Header, mode};

    const SEC: i64 = 1_000_000_000;

    /// A server `offset` seconds ahead, `delay` seconds of round trip.
    fn answer(
        req: &[u8; 48],
        t1: UnixNanos,
        offset: f64,
        delay: f64,
        stratum: u8,
        refid: &[u8; 4],
    ) -> ([u8; 48], UnixNanos) {
        let q = crate::ntp::packet::parse(req).unwrap();
        let half = (delay / 2.0 * 1e9) as i64;
        let t2 = UnixNanos(t1.0 + half + (offset * 1e9) as i64);
        let mut out = [0u8; 48];
        Header {
            version: 4,
            mode: mode::SERVER,
            stratum,
            precision: -20,
            refid: RefId::ascii(refid),
            origin: q.transmit,
            receive: NtpTimestamp::from_unix(t2),
            transmit: NtpTimestamp::from_unix(t2),
            ..Header::default()
        }
        .encode(&mut out);
        (out, UnixNanos(t1.0 + 2 * half))
    }

    #[test]
    fn burst_then_poll_and_reach() {
        let mut s = Source::new();
        let mut t = UnixNanos(1_800_000_000 * SEC);
        for i in 0..BURST_COUNT {
            assert_eq!(s.poll_interval(), BURST_INTERVAL, "burst request {i}");
            let req = s.request(t, 1000 + u64::from(i));
            let (reply, t4) = answer(&req, t, 0.001, 0.010, 1, b"GPS\0");
            s.reply(&reply, t4, 0.0).unwrap();
            t = UnixNanos(t.0 + 2 * SEC);
        }
        assert_eq!(s.poll_interval(), 64.0);
        assert_eq!(s.reach(), 0b0011_1111);
        let m = s.measurement().unwrap();
        assert!((m.offset - 0.001).abs() < 1e-6, "{m:?}");
        assert!((m.delay - 0.010).abs() < 1e-6);
        assert!(m.root_distance(t) < 0.01);
    }

    #[test]
    fn replies_that_are_not_ours_or_not_sane() {
        let mut s = Source::new();
        let t = UnixNanos(1_800_000_000 * SEC);
        let req = s.request(t, 42);
        let (mut reply, t4) = answer(&req, t, 0.0, 0.01, 2, b"\x0a\0\0\x01");
        // Forged origin.
        reply[24] ^= 1;
        assert_eq!(s.reply(&reply, t4, 0.0), Err(Reject::NotOurs));
        reply[24] ^= 1;
        assert_eq!(s.reply(&reply, t4, 0.0), Ok(()));
        // The same reply again: nothing outstanding any more.
        assert_eq!(s.reply(&reply, t4, 0.0), Err(Reject::NotOurs));
        // Unsynchronised server.
        let t = UnixNanos(t.0 + 64 * SEC);
        let req = s.request(t, 43);
        let (mut reply, t4) = answer(&req, t, 0.0, 0.01, 2, b"\x0a\0\0\x01");
        reply[0] |= 0xc0;
        assert_eq!(s.reply(&reply, t4, 0.0), Err(Reject::Unsynchronised));
        // Root distance far beyond MAXDIST.
        let t = UnixNanos(t.0 + 64 * SEC);
        let req = s.request(t, 44);
        let (mut reply, t4) = answer(&req, t, 0.0, 0.01, 2, b"\x0a\0\0\x01");
        reply[8..12].copy_from_slice(&(3u32 << 16).to_be_bytes());
        assert_eq!(s.reply(&reply, t4, 0.0), Err(Reject::TooFar));
    }

    #[test]
    fn kisses() {
        let mut s = Source::new();
        let t = UnixNanos(1_800_000_000 * SEC);
        let req = s.request(t, 7);
        let (mut reply, t4) = answer(&req, t, 0.0, 0.01, 0, b"RATE");
        reply[1] = 0;
        assert_eq!(
            s.reply(&reply, t4, 0.0),
            Err(Reject::Kiss(RefId::ascii(b"RATE")))
        );
        assert_eq!(s.poll(), MIN_POLL + 1);
        assert_eq!(s.poll_interval(), 128.0, "burst cancelled, slower");
        s.set_poll(MIN_POLL);
        assert_eq!(s.poll(), MIN_POLL + 1, "never below the kissed minimum");
        let req = s.request(t, 8);
        let (reply, t4) = answer(&req, t, 0.0, 0.01, 0, b"DENY");
        assert_eq!(
            s.reply(&reply, t4, 0.0),
            Err(Reject::Kiss(RefId::ascii(b"DENY")))
        );
        assert_eq!(s.stopped(), Some(RefId::ascii(b"DENY")));
    }

    #[test]
    fn filter_prefers_low_delay_and_drops_spikes() {
        let mut s = Source::new();
        s.burst = 0;
        let mut t = UnixNanos(1_800_000_000 * SEC);
        let exchange = |s: &mut Source, t: &mut UnixNanos, cookie: u64, offset: f64, delay: f64| {
            let req = s.request(*t, cookie);
            let (reply, t4) = answer(&req, *t, offset, delay, 2, b"\x0a\0\0\x01");
            s.reply(&reply, t4, 0.0).unwrap();
            *t = UnixNanos(t.0 + 64 * SEC);
            s.take_fresh()
        };
        // Eight samples near 1 ms with 10 ms of delay: each is used.
        for i in 0..8 {
            assert!(
                exchange(
                    &mut s,
                    &mut t,
                    100 + i,
                    0.001 + (i % 2) as f64 * 2e-5,
                    0.010
                ),
                "sample {i}"
            );
        }
        let settled = *s.measurement().unwrap();
        assert!((settled.offset - 0.00102).abs() < 1e-6);
        // A sample that queued on the way (delay above the median): not used.
        assert!(!exchange(&mut s, &mut t, 200, 0.004, 0.016));
        assert_eq!(*s.measurement().unwrap(), settled);
        // A 50 ms jump with a low delay: held back once as a spike ...
        assert!(!exchange(&mut s, &mut t, 201, 0.050, 0.009));
        assert_eq!(*s.measurement().unwrap(), settled);
        // ... and believed when it persists.
        assert!(exchange(&mut s, &mut t, 202, 0.050, 0.009));
        assert!((s.measurement().unwrap().offset - 0.050).abs() < 1e-6);
    }

    #[test]
    fn unanswered_polls_ask_for_a_new_lookup() {
        let mut s = Source::new();
        let t = UnixNanos(1_800_000_000 * SEC);
        for i in 0..8 {
            assert!(!s.needs_resolve());
            s.request(t, i);
            s.timed_out();
        }
        assert!(s.needs_resolve());
        assert_eq!(s.reach(), 0);
    }
}
