//! The client side of one NTP exchange, sans IO: build a request, check the
//! reply against it, and compute offset and delay (RFC 5905 §8).

use std::fmt;

use super::packet::{
    self, HEADER_LEN, Header, Leap, NtpTimestamp, ParseError, RefId, UnixNanos, mode,
};

/// A version 4 client request whose transmit timestamp is `transmit`. The
/// server copies it into the reply's origin, which is how the reply is
/// matched to the request.
pub fn request(transmit: NtpTimestamp, poll: i8) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    Header {
        leap: Leap::Unsynchronised,
        version: 4,
        mode: mode::CLIENT,
        poll,
        transmit,
        ..Header::default()
    }
    .encode(&mut out);
    out
}

/// One measurement against a server.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// Server clock minus local clock, seconds.
    pub offset: f64,
    /// Round-trip delay minus the server's processing time, seconds.
    pub delay: f64,
    /// The reply as received.
    pub reply: Header,
}

impl Sample {
    /// The server's time at the moment the reply arrived, by its own account.
    pub fn server_time(&self, local_receive: UnixNanos) -> UnixNanos {
        UnixNanos(local_receive.0 + (self.offset * 1e9) as i64)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyError {
    Malformed(ParseError),
    NotServerMode(u8),
    /// The origin timestamp is not the one we sent: late, duplicate or forged.
    OriginMismatch,
    /// Stratum 0: a kiss-o'-death with its code (RATE, DENY, RSTR ...).
    Kiss(RefId),
    /// The server has never set its clock (transmit timestamp zero).
    NoTime,
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::Malformed(e) => write!(f, "malformed reply: {e}"),
            ReplyError::NotServerMode(m) => write!(f, "reply is mode {m}, not a server reply"),
            ReplyError::OriginMismatch => {
                f.write_str("reply does not answer our request (origin timestamp differs)")
            }
            ReplyError::Kiss(code) => write!(f, "kiss-o'-death {}", code.display(1)),
            ReplyError::NoTime => f.write_str("server sent no transmit timestamp"),
        }
    }
}

impl ReplyError {
    /// Whether this reply answers the request (and so ends the exchange:
    /// a kiss-o'-death, a server without time), rather than being some
    /// other datagram to ignore while waiting for the answer (someone
    /// else's, a forgery, a malformed one, one in another mode).
    pub fn ends_exchange(self) -> bool {
        matches!(self, ReplyError::Kiss(_) | ReplyError::NoTime)
    }
}

/// One client exchange, sans IO: the request, and the verdict on whatever
/// arrives until the answer. The one exchange of `ntpgate query`, of the
/// daemon's upstreams (through [`Source`](super::source::Source)) and of
/// the simulator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exchange {
    transmit: NtpTimestamp,
    sent: UnixNanos,
}

impl Exchange {
    /// The request to send at local time `now`, carrying `transmit` (a
    /// random cookie, or the clock's time as ntpdig sends it), which the
    /// answer must echo.
    pub fn start(now: UnixNanos, transmit: NtpTimestamp, poll: i8) -> (Exchange, [u8; HEADER_LEN]) {
        (
            Exchange {
                transmit,
                sent: now,
            },
            request(transmit, poll),
        )
    }

    /// A datagram received at local time `t4`: the sample, or why it is
    /// not one ([`ReplyError::ends_exchange`] tells whether to keep
    /// waiting).
    pub fn receive(&self, datagram: &[u8], t4: UnixNanos) -> Result<Sample, ReplyError> {
        evaluate(datagram, self.transmit, self.sent, t4)
    }

    /// When the request went out, local time.
    pub fn sent(&self) -> UnixNanos {
        self.sent
    }
}

/// Check a reply to the request that carried `sent_transmit`, sent at local
/// time `t1` and received at `t4`, and compute the sample.
pub fn evaluate(
    reply: &[u8],
    sent_transmit: NtpTimestamp,
    t1: UnixNanos,
    t4: UnixNanos,
) -> Result<Sample, ReplyError> {
    let h = packet::parse(reply).map_err(ReplyError::Malformed)?;
    if h.mode != mode::SERVER {
        return Err(ReplyError::NotServerMode(h.mode));
    }
    if h.origin != sent_transmit {
        return Err(ReplyError::OriginMismatch);
    }
    // Stratum 0 with a code in the refid is a kiss-o'-death; with refid 0
    // it is just an unsynchronised server, which the caller sees by its leap.
    if h.stratum == 0 && h.refid != RefId::default() {
        return Err(ReplyError::Kiss(h.refid));
    }
    if h.transmit == NtpTimestamp::ZERO {
        return Err(ReplyError::NoTime);
    }
    let t1 = NtpTimestamp::from_unix(t1);
    let t4 = NtpTimestamp::from_unix(t4);
    // Differences of wire timestamps are era-safe (RFC 5905 §6).
    let there = h.receive.wrapping_sub(t1).as_secs_f64();
    let back = h.transmit.wrapping_sub(t4).as_secs_f64();
    let round_trip = t4.wrapping_sub(t1).as_secs_f64();
    let served = h.transmit.wrapping_sub(h.receive).as_secs_f64();
    Ok(Sample {
        offset: (there + back) / 2.0,
        delay: (round_trip - served).max(0.0),
        reply: h,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i64 = 1_000_000_000;

    fn reply_for(
        req: &[u8; HEADER_LEN],
        t2: UnixNanos,
        t3: UnixNanos,
        stratum: u8,
    ) -> [u8; HEADER_LEN] {
        let q = packet::parse(req).unwrap();
        let mut out = [0u8; HEADER_LEN];
        Header {
            version: 4,
            mode: mode::SERVER,
            stratum,
            refid: RefId::ascii(b"RATE"),
            origin: q.transmit,
            receive: NtpTimestamp::from_unix(t2),
            transmit: NtpTimestamp::from_unix(t3),
            ..Header::default()
        }
        .encode(&mut out);
        out
    }

    #[test]
    fn offset_and_delay_across_the_2036_rollover() {
        // Local clock just before the era boundary, server 0.75 s ahead.
        let era1 = ((1i64 << 32) - 2_208_988_800) * SEC;
        let t1 = UnixNanos(era1 - SEC / 2);
        let t2 = UnixNanos(t1.0 + 750_000_000 + 10_000_000);
        let t3 = UnixNanos(t2.0 + 1_000_000);
        let t4 = UnixNanos(t1.0 + 21_000_000);
        let tx = NtpTimestamp::from_unix(t1);
        let req = request(tx, 6);
        let s = evaluate(&reply_for(&req, t2, t3, 2), tx, t1, t4).unwrap();
        assert!((s.offset - 0.75).abs() < 1e-6, "offset {}", s.offset);
        assert!((s.delay - 0.020).abs() < 1e-6, "delay {}", s.delay);
        let server_now = s.server_time(t4);
        assert!((server_now.0 - (t4.0 + 750_000_000)).abs() < 1000);
    }

    #[test]
    fn rejects_what_is_not_our_answer() {
        let t = UnixNanos(1_800_000_000 * SEC);
        let tx = NtpTimestamp(0x1234_5678_9abc_def0);
        let req = request(tx, 6);
        let good = reply_for(&req, t, t, 2);
        assert!(evaluate(&good, tx, t, t).is_ok());
        assert_eq!(
            evaluate(&good, NtpTimestamp(1), t, t),
            Err(ReplyError::OriginMismatch)
        );
        assert_eq!(evaluate(&req, tx, t, t), Err(ReplyError::NotServerMode(3)));
        assert_eq!(
            evaluate(&good[..40], tx, t, t),
            Err(ReplyError::Malformed(ParseError::TooShort))
        );
        let kiss = reply_for(&req, t, t, 0);
        assert_eq!(
            evaluate(&kiss, tx, t, t),
            Err(ReplyError::Kiss(RefId::ascii(b"RATE")))
        );
    }
}
