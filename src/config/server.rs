//! The `server` section: where and how NTP is served, and the sync
//! engine's options (upstreams, min_sources, makestep, clock control ...).

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use super::Resolved;
use super::diagnostics::Report;
use super::lint::{is_pool_name, smears_leap_seconds};
use super::values::{cidrs, parse_bool, parse_range, parse_seconds, set};
use crate::ntp::STRATUM_UNSYNC;
use crate::ntp::ratelimit::RateLimitSettings;
use crate::ntp::server::AccessPolicy;

#[derive(Clone, Debug, PartialEq)]
pub struct ServerConfig {
    pub enabled: bool,
    pub listen: Vec<IpAddr>,
    pub port: u16,
    /// Lab only: serve the local clock as the reference at this stratum
    /// whenever no upstream is selected.
    pub local_stratum: Option<u8>,
    pub access: AccessPolicy,
    pub sync: SyncConfig,
    /// Open UDP `port` of the router itself to the WAN (fw4's input_wan).
    pub serve_wan: bool,
    /// Seconds a pinhole element lives unless refreshed: the holes close
    /// this long after the daemon dies.
    pub pinhole_timeout: u32,
    /// ubusd's socket.
    pub ubus_socket: PathBuf,
    /// Started as root: run as this user, keeping only the capabilities
    /// the job needs.
    pub user: Option<String>,
}

/// The sync engine's part of the config.
#[derive(Clone, Debug, PartialEq)]
pub struct SyncConfig {
    /// Upstream servers as configured: host names or addresses with
    /// optional ports.
    pub upstreams: Vec<Upstream>,
    pub min_sources: usize,
    /// Step the clock when it is off by more than this at start (seconds);
    /// 0 never steps.
    pub makestep: f64,
    pub driftfile: Option<PathBuf>,
    /// Steer the clock; off: observe mode, measure and serve only.
    pub clock_control: bool,
    /// Report unsynchronised once the root distance passes this (seconds).
    pub max_distance: f64,
}

/// One `list upstream` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else if self.port == 123 {
            f.write_str(&self.host)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Used when no `upstream` is configured (and no `local_stratum`): primary
/// (stratum 1) servers of national time institutes and exchanges, reachable
/// over IPv6 and IPv4, that do not smear leap seconds. No pool names: a
/// server in the pool must not take its time from the pool.
pub const DEFAULT_UPSTREAMS: &[&str] = &[
    "ptbtime1.ptb.de",
    "ptbtime2.ptb.de",
    "ptbtime3.ptb.de",
    "sth1.ntp.se",
    "gbg1.ntp.se",
];

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            upstreams: Vec::new(),
            min_sources: 3,
            makestep: 0.128,
            driftfile: Some(PathBuf::from("/var/lib/ntpgate/drift")),
            clock_control: true,
            max_distance: 1.0,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            enabled: true,
            listen: vec![IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)],
            port: 123,
            local_stratum: None,
            access: AccessPolicy {
                ratelimit: Some(RateLimitSettings::default()),
                ..AccessPolicy::default()
            },
            sync: SyncConfig::default(),
            serve_wan: false,
            pinhole_timeout: 60,
            ubus_socket: PathBuf::from(crate::ubus::session::DEFAULT_SOCKET),
            user: None,
        }
    }
}

pub(super) const LIST_OPTIONS: &[&str] = &["listen", "allow", "deny", "upstream"];

pub(super) const SINGLE_OPTIONS: &[&str] = &[
    "enabled",
    "port",
    "local_stratum",
    "ratelimit",
    "ratelimit_interval",
    "ratelimit_burst",
    "ratelimit_leak",
    "ratelimit_kod",
    "ratelimit_prefix6",
    "clock_control",
    "min_sources",
    "makestep",
    "driftfile",
    "max_distance",
    "serve_wan",
    "pinhole_timeout",
    "ubus_socket",
    "user",
];

pub(super) fn server_config(options: &[Resolved], report: &mut Report<'_>) -> ServerConfig {
    let mut cfg = ServerConfig::default();
    let mut rl = RateLimitSettings::default();
    let mut ratelimit_on = true;
    for opt in options {
        let (value, line) = (opt.values[0].0.as_str(), opt.values[0].1);
        let name = opt.name.as_str();
        match name {
            "enabled" => {
                set(report, line, name, parse_bool(value), &mut cfg.enabled);
            }
            "listen" => cfg.listen = listen(opt, report),
            "port" => {
                set(
                    report,
                    line,
                    name,
                    parse_range::<u16>(value, 1, 65535),
                    &mut cfg.port,
                );
            }
            "local_stratum" => {
                let mut s = 0u8;
                if set(
                    report,
                    line,
                    name,
                    parse_range::<u8>(value, 1, STRATUM_UNSYNC - 1),
                    &mut s,
                ) {
                    cfg.local_stratum = Some(s);
                    report.warning(
                        line,
                        "local_stratum serves this router's own clock as if it were a reference: for labs, demos and tests only; a pool server must never use it"
                            .into(),
                    );
                }
            }
            "ratelimit" => {
                set(report, line, name, parse_bool(value), &mut ratelimit_on);
            }
            "ratelimit_interval" => {
                set(
                    report,
                    line,
                    name,
                    parse_seconds(value, 0.001, 3600.0),
                    &mut rl.interval,
                );
            }
            "ratelimit_burst" => {
                set(
                    report,
                    line,
                    name,
                    parse_range::<u32>(value, 1, 1024),
                    &mut rl.burst,
                );
            }
            "ratelimit_leak" => {
                if set(
                    report,
                    line,
                    name,
                    parse_range::<u8>(value, 0, 16),
                    &mut rl.leak,
                ) && rl.leak == 0
                {
                    report.warning(
                        line,
                        "ratelimit_leak 0 answers every limited request: rate limiting has no effect".into(),
                    );
                }
            }
            "ratelimit_kod" => {
                set(report, line, name, parse_bool(value), &mut rl.kod);
            }
            "ratelimit_prefix6" => {
                set(
                    report,
                    line,
                    name,
                    parse_range::<u8>(value, 16, 128),
                    &mut rl.prefix6,
                );
            }
            "upstream" => cfg.sync.upstreams = upstreams(opt, report),
            "min_sources" => {
                let mut n = 0u8;
                if set(report, line, name, parse_range::<u8>(value, 1, 16), &mut n) {
                    cfg.sync.min_sources = usize::from(n);
                }
            }
            "makestep" => {
                set(
                    report,
                    line,
                    name,
                    parse_seconds(value, 0.0, 1e6),
                    &mut cfg.sync.makestep,
                );
            }
            "driftfile" => {
                cfg.sync.driftfile = Some(PathBuf::from(value));
                if !value.starts_with('/') {
                    report.error(
                        line,
                        format!("driftfile: '{value}' is not an absolute path"),
                    );
                }
            }
            "clock_control" => {
                set(
                    report,
                    line,
                    name,
                    parse_bool(value),
                    &mut cfg.sync.clock_control,
                );
            }
            "max_distance" => {
                set(
                    report,
                    line,
                    name,
                    parse_seconds(value, 0.001, 16.0),
                    &mut cfg.sync.max_distance,
                );
            }
            "serve_wan" => {
                set(report, line, name, parse_bool(value), &mut cfg.serve_wan);
            }
            "pinhole_timeout" => {
                set(
                    report,
                    line,
                    name,
                    parse_range::<u32>(value, 3, 3600),
                    &mut cfg.pinhole_timeout,
                );
            }
            "allow" => cfg.access.allow = cidrs(opt, report),
            "deny" => cfg.access.deny = cidrs(opt, report),
            "ubus_socket" => cfg.ubus_socket = PathBuf::from(value),
            "user" => {
                let valid = value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                    && !value.starts_with('-');
                if valid {
                    cfg.user = Some(value.to_string());
                } else {
                    report.error(line, format!("user: '{value}' is not a user name"));
                }
            }
            other => report.error(
                line,
                format!("unknown option '{other}' in the server section"),
            ),
        }
    }
    cfg.access.ratelimit = ratelimit_on.then_some(rl);
    let configured = options.iter().find(|o| o.name == "upstream");
    if configured.is_none() && cfg.local_stratum.is_none() {
        cfg.sync.upstreams = DEFAULT_UPSTREAMS
            .iter()
            .map(|h| Upstream {
                host: h.to_string(),
                port: 123,
            })
            .collect();
    }
    if let Some(o) = configured {
        let n = cfg.sync.upstreams.len();
        if n < 4 && cfg.local_stratum.is_none() {
            report.warning(
                o.values[0].1,
                format!("{n} upstream(s): a pool server needs at least 4, so that one bad or lost upstream is outvoted"),
            );
        }
        if cfg.sync.min_sources > n.max(1) {
            report.warning(
                o.values[0].1,
                format!(
                    "min_sources {} is more than the {n} upstream(s): all of them must agree",
                    cfg.sync.min_sources
                ),
            );
        }
    }
    cfg
}

/// The listen addresses. A wildcard covers others on the same port, and
/// the kernel refuses to bind both (EADDRINUSE): `::` (dual-stack) covers
/// every address, `0.0.0.0` every IPv4 address. Such a pair is an error,
/// not a family silently lost.
fn listen(opt: &Resolved, report: &mut Report<'_>) -> Vec<IpAddr> {
    let mut out: Vec<(IpAddr, usize)> = Vec::new();
    for (v, line) in &opt.values {
        let Ok(ip) = v.parse::<IpAddr>() else {
            report.error(
                *line,
                format!("listen: '{v}' is not an IPv4 or IPv6 address"),
            );
            continue;
        };
        let covered = out
            .iter()
            .find(|(other, _)| *other == ip || covers(*other, ip) || covers(ip, *other));
        match covered {
            Some((other, first)) if *other == ip => report.error(
                *line,
                format!("listen: '{v}' is listed twice (first on line {first})"),
            ),
            Some((other, first)) => {
                let (wide, narrow) = if covers(*other, ip) {
                    (*other, ip)
                } else {
                    (ip, *other)
                };
                report.error(
                    *line,
                    format!(
                        "listen: '{wide}' already serves {} on this port, so '{narrow}' cannot be bound beside it (line {first}): list only '{wide}'",
                        if wide.is_ipv6() {
                            "every IPv4 and IPv6 address"
                        } else {
                            "every IPv4 address"
                        }
                    ),
                );
            }
            None => out.push((ip, *line)),
        }
    }
    out.into_iter().map(|(ip, _)| ip).collect()
}

/// A socket bound to `wide` takes the port on `narrow` too.
fn covers(wide: IpAddr, narrow: IpAddr) -> bool {
    match wide {
        IpAddr::V6(w) if w.is_unspecified() => true,
        IpAddr::V4(w) if w.is_unspecified() => narrow.is_ipv4(),
        _ => false,
    }
}

fn upstreams(opt: &Resolved, report: &mut Report<'_>) -> Vec<Upstream> {
    opt.values
        .iter()
        .filter_map(|(v, line)| match parse_upstream(v) {
            Ok(u) => {
                if is_pool_name(&u.host) {
                    report.warning(
                        *line,
                        format!("upstream: '{v}' is a pool name: a server in the NTP Pool must not use the pool; choose fixed servers"),
                    );
                }
                if smears_leap_seconds(&u.host) {
                    report.warning(
                        *line,
                        format!("upstream: '{v}' smears leap seconds: around a leap second its time differs from UTC by up to 0.5 s"),
                    );
                }
                Some(u)
            }
            Err(why) => {
                report.error(*line, format!("upstream: {why}"));
                None
            }
        })
        .collect()
}

/// `host`, `host:port`, an IPv6 address, or `[IPv6]:port`.
pub fn parse_upstream(text: &str) -> Result<Upstream, String> {
    let (host, port) = crate::net::parse_host_port(text, 123)?;
    Ok(Upstream { host, port })
}
