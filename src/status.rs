//! The one status model. For now: the server's counters, kept by the daemon
//! and shown in its log; the ubus object and `ntpgate status` will publish
//! the same model.

use std::fmt;

use crate::ntp::server::{DropReason, Outcome};

/// Every outcome of every datagram the server received.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerCounters {
    pub received: u64,
    /// Replies sent with time in them (including leaked ones).
    pub answered: u64,
    /// Requests over their client's rate limit, whatever became of them.
    pub limited: u64,
    /// Limited requests answered anyway by the leak.
    pub leaked: u64,
    pub kod_sent: u64,
    /// Not NTP: too short, too long, bad version, bad extension fields.
    pub malformed: u64,
    /// Dropped for their mode: 0 (unless NTPv1), 1, 2, 4, 5, 6, 7.
    pub dropped_mode: u64,
    /// Dropped by the allow/deny lists.
    pub dropped_denied: u64,
    /// Dropped by the rate limit.
    pub dropped_ratelimit: u64,
    /// Replies the kernel would not take (socket buffer full).
    pub send_failed: u64,
}

impl ServerCounters {
    pub fn record(&mut self, outcome: Outcome) {
        self.received += 1;
        match outcome {
            Outcome::Answered => self.answered += 1,
            Outcome::Leaked => {
                self.answered += 1;
                self.leaked += 1;
                self.limited += 1;
            }
            Outcome::KissRate => {
                self.kod_sent += 1;
                self.limited += 1;
            }
            Outcome::Dropped(DropReason::Malformed(_)) => self.malformed += 1,
            Outcome::Dropped(DropReason::Mode(_)) => self.dropped_mode += 1,
            Outcome::Dropped(DropReason::Denied) => self.dropped_denied += 1,
            Outcome::Dropped(DropReason::RateLimited) => {
                self.dropped_ratelimit += 1;
                self.limited += 1;
            }
        }
    }

    pub fn add(&mut self, other: &ServerCounters) {
        self.received += other.received;
        self.answered += other.answered;
        self.limited += other.limited;
        self.leaked += other.leaked;
        self.kod_sent += other.kod_sent;
        self.malformed += other.malformed;
        self.dropped_mode += other.dropped_mode;
        self.dropped_denied += other.dropped_denied;
        self.dropped_ratelimit += other.dropped_ratelimit;
        self.send_failed += other.send_failed;
    }
}

impl fmt::Display for ServerCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "received={} answered={} limited={} leaked={} kod_sent={} malformed={} dropped_mode={} dropped_denied={} dropped_ratelimit={} send_failed={}",
            self.received,
            self.answered,
            self.limited,
            self.leaked,
            self.kod_sent,
            self.malformed,
            self.dropped_mode,
            self.dropped_denied,
            self.dropped_ratelimit,
            self.send_failed
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ntp::packet::ParseError;

    #[test]
    fn every_outcome_is_counted_once_as_received() {
        let mut c = ServerCounters::default();
        for o in [
            Outcome::Answered,
            Outcome::Leaked,
            Outcome::KissRate,
            Outcome::Dropped(DropReason::Malformed(ParseError::TooShort)),
            Outcome::Dropped(DropReason::Mode(6)),
            Outcome::Dropped(DropReason::Denied),
            Outcome::Dropped(DropReason::RateLimited),
        ] {
            c.record(o);
        }
        assert_eq!(c.received, 7);
        assert_eq!((c.answered, c.leaked, c.kod_sent, c.limited), (2, 1, 1, 3));
        assert_eq!(
            (
                c.malformed,
                c.dropped_mode,
                c.dropped_denied,
                c.dropped_ratelimit
            ),
            (1, 1, 1, 1)
        );
        let mut sum = ServerCounters::default();
        sum.add(&c);
        sum.add(&c);
        assert_eq!(sum.received, 14);
        assert!(c.to_string().starts_with("received=7 answered=2 limited=3"));
    }
}
