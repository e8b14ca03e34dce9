//! The status model as JSON: what `ubus call ntpgate status` answers,
//! `ntpgate status --json` prints and LuCI shows, made from a snapshot the
//! daemon takes at one moment.

use std::net::IpAddr;

use serde_json::{Value, json};

use super::counters::{RateHistory, ServerCounters};
use crate::ntp::engine::{SyncEngine, TimeSource};
use crate::ntp::packet::UnixNanos;

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
