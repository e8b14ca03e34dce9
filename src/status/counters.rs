//! What the server counts: every outcome of every datagram, the request
//! rates over the last hour, and the busiest clients in bounded memory.

use std::collections::VecDeque;
use std::fmt;
use std::net::IpAddr;

use serde_json::{Value, json};

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

impl ServerCounters {
    pub(super) fn to_json(self) -> Value {
        json!({
            "received": self.received,
            "answered": self.answered,
            "limited": self.limited,
            "leaked": self.leaked,
            "kod_sent": self.kod_sent,
            "dropped": {
                "malformed": self.malformed,
                "mode": self.dropped_mode,
                "denied": self.dropped_denied,
                "ratelimit": self.dropped_ratelimit,
                "send_failed": self.send_failed,
            },
        })
    }
}

/// Requests received, sampled every [`RateHistory::STEP`] seconds over the
/// last hour: the request rates now, and per minute for the graph.
#[derive(Debug, Default)]
pub struct RateHistory {
    /// (seconds since start, requests received so far), oldest first.
    samples: VecDeque<(u64, u64)>,
}

impl RateHistory {
    pub const STEP: u64 = 10;
    const KEEP: usize = 3600 / Self::STEP as usize + 1;

    pub fn sample(&mut self, at_s: u64, received: u64) {
        if self.samples.len() == Self::KEEP {
            self.samples.pop_front();
        }
        self.samples.push_back((at_s, received));
    }

    /// Requests per second over the last `span` seconds (or as much of it
    /// as there is), `None` before two samples.
    pub fn rate(&self, span: u64) -> Option<f64> {
        let &(t1, n1) = self.samples.back()?;
        let &(t0, n0) = self
            .samples
            .iter()
            .find(|(t, _)| t1 - t <= span)
            .filter(|(t, _)| *t < t1)?;
        Some(n1.saturating_sub(n0) as f64 / (t1 - t0) as f64)
    }

    /// Requests per second in each whole minute of the last hour, oldest
    /// first.
    pub fn per_minute(&self) -> Vec<f64> {
        let per = (60 / Self::STEP) as usize;
        let v: Vec<&(u64, u64)> = self.samples.iter().collect();
        let end = v.len().saturating_sub(1);
        (0..60)
            .rev()
            .filter_map(|m| {
                let hi = end.checked_sub(m * per)?;
                let lo = hi.checked_sub(per)?;
                let ((t0, n0), (t1, n1)) = (v[lo], v[hi]);
                Some(n1.saturating_sub(*n0) as f64 / (t1 - t0).max(1) as f64)
            })
            .collect()
    }
}

/// The busiest clients, in bounded memory: the space-saving algorithm over
/// [`Clients::SLOTS`] addresses (a newcomer takes the slot of the least
/// counted and inherits its count), with every count halved each minute so
/// that the list shows who is busy now. The server samples: one request in
/// up to [`Clients::SAMPLE`] stands for all of them, which keeps the cost
/// per request small under load and the totals right.
#[derive(Debug, Default)]
pub struct Clients {
    slots: Vec<(IpAddr, u64)>,
}

impl Clients {
    pub const SLOTS: usize = 64;
    pub const SAMPLE: usize = 8;

    /// `requests` requests, with `ip` standing for them.
    pub fn observe(&mut self, ip: IpAddr, requests: u64) {
        if let Some(slot) = self.slots.iter_mut().find(|(a, _)| *a == ip) {
            slot.1 += requests;
        } else if self.slots.len() < Self::SLOTS {
            self.slots.push((ip, requests));
        } else if let Some(least) = self.slots.iter_mut().min_by_key(|(_, n)| *n) {
            *least = (ip, least.1 + requests);
        }
    }

    pub fn decay(&mut self) {
        for slot in &mut self.slots {
            slot.1 /= 2;
        }
        self.slots.retain(|(_, n)| *n > 0);
    }

    /// The `n` busiest, busiest first, with their (decayed) counts.
    pub fn top(&self, n: usize) -> Vec<(IpAddr, u64)> {
        let mut v = self.slots.clone();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(n);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ntp::packet::ParseError;

    #[test]
    fn rates_over_the_minute_and_the_hour() {
        let mut h = RateHistory::default();
        assert_eq!(h.rate(60), None);
        // 100/s for the first half hour, then 10/s.
        let mut n = 0;
        for step in 0..=360u64 {
            h.sample(step * RateHistory::STEP, n);
            n += if step < 180 { 1000 } else { 100 };
        }
        assert_eq!(h.rate(60), Some(10.0));
        assert_eq!(h.rate(3600), Some(55.0));
        let minutes = h.per_minute();
        assert_eq!(minutes.len(), 60);
        assert_eq!((minutes[0], minutes[59]), (100.0, 10.0));
        // Bounded: an hour and a step.
        for step in 361..2000u64 {
            h.sample(step * RateHistory::STEP, n);
        }
        assert_eq!(h.samples.len(), RateHistory::KEEP);
    }

    #[test]
    fn busiest_clients_survive_a_flood_of_one_off_sources() {
        let mut c = Clients::default();
        let ip = |i: u32| IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
        let mut truth = std::collections::HashMap::new();
        let mut total = 0;
        let mut observe = |c: &mut Clients, who: IpAddr, n: u64| {
            c.observe(who, n);
            *truth.entry(who).or_insert(0) += n;
            total += n;
        };
        // Two busy clients, and between their requests a stream of
        // one-off sources (a scan, or the pool's many clients).
        let mut one_off = 1000;
        for _ in 0..1000 {
            observe(&mut c, ip(1), 3);
            observe(&mut c, ip(2), 2);
            for _ in 0..20 {
                observe(&mut c, ip(one_off), 1);
                one_off += 1;
            }
        }
        // Space-saving's guarantees: every client above total/SLOTS is
        // listed, and each count is over its true count by at most that.
        let error = total / Clients::SLOTS as u64;
        let top = c.top(usize::MAX);
        assert_eq!(top.len(), Clients::SLOTS, "the table is full, and no more");
        assert_eq!((top[0].0, top[1].0), (ip(1), ip(2)), "{top:?}");
        for (who, n) in &top {
            let t = truth[who];
            assert!(
                t <= *n && *n <= t + error,
                "{who}: {n} for {t} (total {total})"
            );
        }
        // Counts halve every minute: the list empties once nobody asks.
        for _ in 0..64 {
            c.decay();
        }
        assert!(c.top(Clients::SLOTS).is_empty());
    }

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
