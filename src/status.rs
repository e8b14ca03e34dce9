//! The one status model: what the daemon knows about itself, as the JSON
//! that its ubus object answers, `ntpgate status --json` prints, and LuCI
//! shows; and the text `ntpgate status` makes of that JSON.

use std::collections::VecDeque;
use std::fmt::{self, Write as _};
use std::net::IpAddr;

use serde_json::{Value, json};

use crate::ntp::engine::{SyncEngine, TimeSource};
use crate::ntp::packet::UnixNanos;
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
    fn to_json(self) -> Value {
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

/// One pinhole, for the status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinholeStatus {
    pub name: String,
    pub target: String,
    pub interface: String,
    pub device: String,
    pub addresses: Vec<String>,
    pub open: bool,
    pub reason: String,
    pub health: String,
    pub packets: u64,
    pub bytes: u64,
    pub limited: u64,
}

/// Everything the status is made of, gathered by the daemon at one moment.
pub struct Snapshot<'a> {
    pub version: &'a str,
    pub uptime_s: u64,
    pub now: UnixNanos,
    pub engine: &'a SyncEngine,
    pub clock_control: bool,
    pub counters: ServerCounters,
    pub rates: &'a RateHistory,
    /// Sources the rate limiter saw in the last hour (by its prefix).
    pub clients_seen: Option<usize>,
    pub pinholes: Vec<PinholeStatus>,
    /// `serve_wan`, and whether the router's port is in the firewall now.
    pub serve_wan: bool,
    pub wan_open: bool,
}

fn secs(ns: i128) -> f64 {
    ns as f64 / 1e9
}

impl Snapshot<'_> {
    pub fn sync_json(&self) -> Value {
        let served = self.engine.served();
        let s = &served.state;
        let d = self.engine.discipline();
        json!({
            "synchronised": s.is_synchronised(),
            "stratum": s.stratum,
            // The local reference's refid is a code (LOCL) at any stratum.
            "refid": s.refid.display(if served.source == TimeSource::LocalClock {
                1
            } else {
                s.stratum
            }),
            "leap": s.leap as u8,
            "leap_text": s.leap.describe(),
            "offset_s": d.offset(),
            "frequency_ppm": d.frequency() * 1e6,
            "root_delay_s": s.root_delay,
            "root_dispersion_s": s.root_dispersion_at(self.now),
            "since_update_s": s.reference_time.map(|t| secs(self.now.0 as i128 - t.0 as i128)),
            "source": match served.source {
                TimeSource::Upstreams => "upstreams",
                TimeSource::LocalClock => "local clock (local_stratum)",
                TimeSource::None => "none",
            },
            "clock_control": self.clock_control,
        })
    }

    pub fn upstreams_json(&self) -> Value {
        Value::Array(
            self.engine
                .upstreams
                .iter()
                .map(|u| {
                    let m = u.source.measurement();
                    let host = u.name.rsplit_once(':').map_or(u.name.as_str(), |(h, _)| h);
                    json!({
                        "name": u.name,
                        "pool_name": crate::config::is_pool_name(host),
                        "smears_leap_seconds": crate::config::smears_leap_seconds(host),
                        "address": u.address.map(|a| a.to_string()),
                        "status": u.status.label(),
                        "reach": u.source.reach(),
                        "poll": u.source.poll(),
                        "stratum": m.map(|m| m.stratum),
                        "refid": m.map(|m| m.refid.display(m.stratum)),
                        "offset_s": m.map(|m| m.offset),
                        "delay_s": m.map(|m| m.delay),
                        "jitter_s": m.map(|m| m.jitter),
                        "since_s": m.map(|m| secs(self.now.0 as i128 - m.time.0 as i128)),
                    })
                })
                .collect(),
        )
    }

    pub fn pinholes_json(&self) -> Value {
        Value::Array(
            self.pinholes
                .iter()
                .map(|p| {
                    json!({
                        "name": p.name, "target": p.target, "interface": p.interface,
                        "device": p.device, "addresses": p.addresses, "open": p.open,
                        "reason": p.reason, "health": p.health, "packets": p.packets,
                        "bytes": p.bytes, "limited": p.limited,
                    })
                })
                .collect(),
        )
    }

    pub fn server_json(&self) -> Value {
        json!({
            "counters": self.counters.to_json(),
            "requests_per_s": {
                "minute": self.rates.rate(60),
                "hour": self.rates.rate(3600),
                "per_minute": self.rates.per_minute(),
            },
            "clients_seen_hour": self.clients_seen,
        })
    }

    pub fn to_json(&self) -> Value {
        json!({
            "version": self.version,
            "uptime_s": self.uptime_s,
            "sync": self.sync_json(),
            "upstreams": self.upstreams_json(),
            "server": self.server_json(),
            "pinholes": self.pinholes_json(),
            "firewall": { "serve_wan": self.serve_wan, "wan_open": self.wan_open },
        })
    }
}

/// The router's global IPv6 addresses, for the pool checklist: a pool
/// server needs one that stays (not a privacy address, not deprecated).
pub fn addresses_json(addresses: &[(String, std::net::Ipv6Addr, u8, bool, bool)]) -> Value {
    Value::Array(
        addresses
            .iter()
            .map(|(device, a, len, temporary, deprecated)| {
                json!({
                    "device": device, "address": a.to_string(), "prefix_len": len,
                    "temporary": temporary, "deprecated": deprecated,
                })
            })
            .collect(),
    )
}

/// The busiest clients as JSON.
pub fn clients_json(top: &[(IpAddr, u64)]) -> Value {
    Value::Array(
        top.iter()
            .map(|(ip, n)| json!({ "address": ip.to_string(), "requests": n }))
            .collect(),
    )
}

fn num(v: &Value, scale: f64, digits: usize) -> String {
    v.as_f64()
        .map_or("-".into(), |x| format!("{:.digits$}", x * scale))
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// `ntpgate status`: a summary, then tables like `chronyc sources` and
/// `chronyc serverstats`, made from the status JSON.
pub fn render(status: &Value) -> String {
    let mut out = String::new();
    let sync = &status["sync"];
    let synced = sync["synchronised"].as_bool() == Some(true);
    let _ = writeln!(
        out,
        "ntpgate {}, up {} s: {}",
        text(&status["version"]),
        text(&status["uptime_s"]),
        if synced {
            format!(
                "synchronised, stratum {}, reference {}, offset {} ms",
                text(&sync["stratum"]),
                text(&sync["refid"]),
                num(&sync["offset_s"], 1e3, 3)
            )
        } else {
            "NOT synchronised: clients are told so (leap 3)".to_string()
        }
    );
    let _ = writeln!(
        out,
        "frequency {} ppm, root delay {} ms, root dispersion {} ms, leap {}, time from {}",
        num(&sync["frequency_ppm"], 1.0, 3),
        num(&sync["root_delay_s"], 1e3, 3),
        num(&sync["root_dispersion_s"], 1e3, 3),
        text(&sync["leap_text"]),
        text(&sync["source"])
    );
    let upstreams = status["upstreams"].as_array().cloned().unwrap_or_default();
    let _ = writeln!(out, "\nUpstreams ({}):", upstreams.len());
    let _ = writeln!(
        out,
        "  {:<12} {:<32} {:>2} {:>4} {:>4} {:>11} {:>10} {:>10}",
        "state", "name (address)", "st", "poll", "reach", "offset ms", "delay ms", "jitter ms"
    );
    for u in &upstreams {
        let name = match u["address"].as_str() {
            Some(a) if a != u["name"].as_str().unwrap_or_default() => {
                format!("{} ({a})", text(&u["name"]))
            }
            _ => text(&u["name"]),
        };
        let _ = writeln!(
            out,
            "  {:<12} {:<32} {:>2} {:>4} {:>4o} {:>11} {:>10} {:>10}",
            text(&u["status"]),
            name,
            text(&u["stratum"]),
            text(&u["poll"]),
            u["reach"].as_u64().unwrap_or(0),
            num(&u["offset_s"], 1e3, 3),
            num(&u["delay_s"], 1e3, 3),
            num(&u["jitter_s"], 1e3, 3)
        );
    }
    let server = &status["server"];
    let c = &server["counters"];
    let d = &c["dropped"];
    let _ = writeln!(out, "\nServer:");
    for (label, value) in [
        (
            "requests/s, last minute",
            num(&server["requests_per_s"]["minute"], 1.0, 2),
        ),
        (
            "requests/s, last hour",
            num(&server["requests_per_s"]["hour"], 1.0, 2),
        ),
        (
            "clients seen, last hour",
            text(&server["clients_seen_hour"]),
        ),
        ("packets received", text(&c["received"])),
        ("packets answered", text(&c["answered"])),
        ("rate limited", text(&c["limited"])),
        ("  answered anyway (leak)", text(&c["leaked"])),
        ("  kiss-o'-death sent", text(&c["kod_sent"])),
        ("dropped: malformed", text(&d["malformed"])),
        ("dropped: mode", text(&d["mode"])),
        ("dropped: denied", text(&d["denied"])),
        ("dropped: rate limit", text(&d["ratelimit"])),
        ("send failures", text(&d["send_failed"])),
    ] {
        let _ = writeln!(out, "  {label:<26}: {value}");
    }
    let pinholes = status["pinholes"].as_array().cloned().unwrap_or_default();
    if !pinholes.is_empty() {
        let _ = writeln!(out, "\nPinholes ({}):", pinholes.len());
        for p in &pinholes {
            let addresses: Vec<String> = p["addresses"]
                .as_array()
                .into_iter()
                .flatten()
                .map(text)
                .collect();
            let _ = writeln!(
                out,
                "  {} ({} on {}): {} [{}] health {}, {} packets, {} bytes, {} limited{}",
                text(&p["name"]),
                text(&p["target"]),
                text(&p["device"]),
                if p["open"].as_bool() == Some(true) {
                    "OPEN"
                } else {
                    "closed"
                },
                if addresses.is_empty() {
                    "-".to_string()
                } else {
                    addresses.join(", ")
                },
                text(&p["health"]),
                text(&p["packets"]),
                text(&p["bytes"]),
                text(&p["limited"]),
                if p["open"].as_bool() == Some(true) {
                    String::new()
                } else {
                    format!(": {}", text(&p["reason"]))
                }
            );
        }
    }
    out
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
