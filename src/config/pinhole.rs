//! `config pinhole` sections: LAN hosts whose NTP server is open to the WAN.

use std::fmt;
use std::net::Ipv6Addr;

use super::{Report, Resolved, parse_bool, parse_range};

/// How a pinhole finds its host's address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// An interface identifier under each of the LAN's prefixes (`::50`).
    Suffix(Ipv6Addr),
    /// The host's global addresses from the neighbour table, and its
    /// EUI-64 address under each prefix.
    Mac([u8; 6]),
    /// One fixed address.
    Address(Ipv6Addr),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Suffix(s) => write!(f, "suffix {s}"),
            Target::Mac(m) => write!(
                f,
                "mac {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                m[0], m[1], m[2], m[3], m[4], m[5]
            ),
            Target::Address(a) => write!(f, "address {a}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Pinhole {
    /// The section name, or `pinhole N` for an anonymous one.
    pub name: String,
    pub enabled: bool,
    /// OpenWrt interface name, default `lan`.
    pub interface: String,
    /// Its Linux device: the `device` option, or the interface's device in
    /// the network config (netifd's answer replaces it while the daemon
    /// runs).
    pub device: String,
    /// `device` was given: netifd is not asked.
    pub device_given: bool,
    pub target: Target,
    pub health_check: bool,
    /// Packets per second per WAN source, at the firewall.
    pub limit_pps: Option<u32>,
    /// Seconds between health checks.
    pub health_interval: u32,
}

/// The host part of a LAN prefix is 64 bits: a suffix must fit in it.
const HOST_BITS: u32 = 64;

pub(super) fn pinhole(
    name: String,
    line: usize,
    options: &[Resolved],
    report: &mut Report<'_>,
) -> Option<Pinhole> {
    let mut p = Pinhole {
        name,
        enabled: true,
        interface: "lan".into(),
        device: String::new(),
        device_given: false,
        target: Target::Address(Ipv6Addr::UNSPECIFIED),
        health_check: false,
        limit_pps: None,
        health_interval: 60,
    };
    let mut targets: Vec<(Target, usize)> = Vec::new();
    let mut interface_at = line;
    let mut ok = true;
    for opt in options {
        let (value, at) = (opt.values[0].0.as_str(), opt.values[0].1);
        let mut bad = |why: String| {
            report.error(at, format!("pinhole '{}': {}: {why}", p.name, opt.name));
            ok = false;
        };
        match opt.name.as_str() {
            "enabled" => match parse_bool(value) {
                Ok(v) => p.enabled = v,
                Err(e) => bad(e),
            },
            "interface" => {
                interface_at = at;
                if valid_name(value) {
                    p.interface = value.into();
                } else {
                    bad(format!("'{value}' is not an interface name"));
                }
            }
            "device" => {
                if valid_name(value) && value.len() < 16 {
                    p.device = value.into();
                    p.device_given = true;
                } else {
                    bad(format!("'{value}' is not a device name"));
                }
            }
            "suffix" => match parse_suffix(value) {
                Ok(s) => targets.push((Target::Suffix(s), at)),
                Err(e) => bad(e),
            },
            "mac" => match parse_mac(value) {
                Ok(m) => targets.push((Target::Mac(m), at)),
                Err(e) => bad(e),
            },
            "address" => match value.parse::<Ipv6Addr>() {
                Ok(a) if is_global(a) => targets.push((Target::Address(a), at)),
                Ok(_) => bad(format!(
                    "'{value}' is not a global IPv6 address (the WAN cannot reach it)"
                )),
                Err(_) => bad(format!("'{value}' is not an IPv6 address")),
            },
            "health_check" => match parse_bool(value) {
                Ok(v) => p.health_check = v,
                Err(e) => bad(e),
            },
            "health_interval" => match parse_range::<u32>(value, 1, 3600) {
                Ok(n) => p.health_interval = n,
                Err(e) => bad(e),
            },
            "limit_pps" => match parse_range::<u32>(value, 1, 1_000_000) {
                Ok(n) => p.limit_pps = Some(n),
                Err(e) => bad(e),
            },
            other => {
                report.error(
                    at,
                    format!("pinhole '{}': unknown option '{other}'", p.name),
                );
                ok = false;
            }
        }
    }
    match targets.as_slice() {
        [(t, _)] => p.target = *t,
        [] if ok => {
            report.error(
                line,
                format!("pinhole '{}': needs one of suffix, mac or address", p.name),
            );
            return None;
        }
        [] => return None,
        [_, (_, second), ..] => {
            report.error(
                *second,
                format!(
                    "pinhole '{}': give one of suffix, mac or address, not several",
                    p.name
                ),
            );
            return None;
        }
    }
    if p.device.is_empty() && ok {
        match report.interfaces.device(&p.interface) {
            Ok(device) => p.device = device,
            Err(why) => {
                report.error(interface_at, format!("pinhole '{}': {why}", p.name));
                return None;
            }
        }
    }
    ok.then_some(p)
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// `::50`: an interface identifier; it must fit in the 64-bit host part.
fn parse_suffix(text: &str) -> Result<Ipv6Addr, String> {
    let s: Ipv6Addr = text
        .parse()
        .map_err(|_| format!("'{text}' is not an IPv6 suffix such as ::50"))?;
    let bits = u128::from(s);
    if bits == 0 {
        return Err("the suffix ::0 is the subnet-router anycast address".into());
    }
    if bits >> HOST_BITS != 0 {
        return Err(format!(
            "'{text}' is longer than the {HOST_BITS}-bit host part of a LAN prefix"
        ));
    }
    Ok(s)
}

/// `aa:bb:cc:dd:ee:ff` or with `-`.
pub fn parse_mac(text: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = text.split([':', '-']).collect();
    let mut mac = [0u8; 6];
    if parts.len() != 6 {
        return Err(format!("'{text}' is not a MAC address (six hex octets)"));
    }
    for (byte, part) in mac.iter_mut().zip(&parts) {
        *byte = match u8::from_str_radix(part, 16) {
            Ok(b) if part.len() == 2 => b,
            _ => return Err(format!("'{text}' is not a MAC address (six hex octets)")),
        };
    }
    if mac[0] & 1 == 1 || mac == [0; 6] {
        return Err(format!(
            "'{text}' is not a host's MAC address (multicast or zero)"
        ));
    }
    Ok(mac)
}

/// Reachable from the internet: global unicast (2000::/3).
pub fn is_global(a: Ipv6Addr) -> bool {
    a.segments()[0] & 0xe000 == 0x2000
}

/// Two pinholes on one interface that would open the same hole.
pub(super) fn check_duplicates(pinholes: &[(Pinhole, usize)], report: &mut Report<'_>) {
    for (i, (a, _)) in pinholes.iter().enumerate() {
        for (b, line) in &pinholes[i + 1..] {
            if a.device == b.device && a.target == b.target {
                report.error(
                    *line,
                    format!(
                        "pinhole '{}' claims the same host as pinhole '{}' ({})",
                        b.name, a.name, a.target
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_and_macs() {
        assert_eq!(
            parse_suffix("::50").unwrap(),
            "::50".parse::<Ipv6Addr>().unwrap()
        );
        assert!(
            parse_suffix("::1:0:0:0:0")
                .unwrap_err()
                .contains("longer than the 64-bit host part")
        );
        assert!(parse_suffix("::").is_err());
        assert!(parse_suffix("50").is_err());
        assert_eq!(
            parse_mac("02:11:22:33:44:55").unwrap(),
            [2, 0x11, 0x22, 0x33, 0x44, 0x55]
        );
        assert_eq!(
            parse_mac("02-11-22-33-44-55").unwrap(),
            [2, 0x11, 0x22, 0x33, 0x44, 0x55]
        );
        for bad in [
            "02:11:22:33:44",
            "02:11:22:33:44:5g",
            "2:11:22:33:44:55",
            "01:00:5e:00:00:01",
            "00:00:00:00:00:00",
        ] {
            assert!(parse_mac(bad).is_err(), "{bad}");
        }
        assert!(is_global("2001:db8::1".parse().unwrap()));
        assert!(!is_global("fd00::1".parse().unwrap()));
        assert!(!is_global("fe80::1".parse().unwrap()));
    }
}
