//! Which addresses should have a pinhole, and why the others do not: a
//! pure function of the config, the state of the LAN and the health checks.
//! The firewall shell makes nftables match its result, on every event and
//! on a timer.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv6Addr;

use crate::config::pinhole::{Pinhole, Target, is_global};
use crate::net;

/// One of the router's own addresses on a LAN device, which tells the
/// prefix the LAN hosts use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LanAddress {
    pub address: Ipv6Addr,
    pub prefix_len: u8,
    /// Privacy addresses come and go; deprecated ones belong to a prefix
    /// on its way out (after a re-delegation). Neither marks a prefix to
    /// open holes in.
    pub temporary: bool,
    pub deprecated: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Neighbour {
    pub address: Ipv6Addr,
    pub mac: [u8; 6],
}

/// What netwatch knows about one LAN.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LanState {
    pub device: String,
    pub up: bool,
    pub addresses: Vec<LanAddress>,
    pub neighbours: Vec<Neighbour>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Not checked yet.
    Unknown,
    Good,
    Bad(String),
}

/// A pinhole's state, for the status and the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinholeState {
    pub name: String,
    pub addresses: Vec<Ipv6Addr>,
    pub open: bool,
    /// Why it is closed, or what it opens.
    pub reason: String,
}

/// A per-source rate limit on the packets to one hole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Limit {
    pub address: Ipv6Addr,
    /// Packets per second from any one WAN source.
    pub pps: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Every address that should have a hole.
    pub holes: BTreeSet<Ipv6Addr>,
    /// The rate limits on those holes.
    pub limits: BTreeSet<Limit>,
    pub pinholes: Vec<PinholeState>,
}

/// The usable LAN prefixes (network, length) of a device.
fn prefixes(lan: &LanState) -> Vec<(Ipv6Addr, u8)> {
    let mut out: Vec<(Ipv6Addr, u8)> = lan
        .addresses
        .iter()
        .filter(|a| !a.temporary && !a.deprecated && is_global(a.address) && a.prefix_len <= 64)
        .filter_map(|a| match net::mask(a.address.into(), a.prefix_len) {
            std::net::IpAddr::V6(n) => Some((n, a.prefix_len)),
            std::net::IpAddr::V4(_) => None,
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The modified EUI-64 interface identifier of a MAC (RFC 4291 appendix A).
pub fn eui64(mac: [u8; 6]) -> u64 {
    u64::from_be_bytes([
        mac[0] ^ 0x02,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ])
}

fn with_suffix(network: Ipv6Addr, suffix: u64) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(network) | u128::from(suffix))
}

/// The addresses a pinhole's host has now.
fn addresses(p: &Pinhole, lan: &LanState) -> Vec<Ipv6Addr> {
    let prefixes = prefixes(lan);
    let mut out: Vec<Ipv6Addr> = match p.target {
        Target::Suffix(s) => prefixes
            .iter()
            .map(|&(n, _)| with_suffix(n, u128::from(s) as u64))
            .collect(),
        Target::Mac(mac) => {
            let mut a: Vec<Ipv6Addr> = prefixes
                .iter()
                .map(|&(n, _)| with_suffix(n, eui64(mac)))
                .collect();
            // Its other addresses, where they are in a current prefix (an
            // address from an old prefix may belong to someone else now).
            a.extend(
                lan.neighbours
                    .iter()
                    .filter(|nb| nb.mac == mac && is_global(nb.address))
                    .filter(|nb| in_prefixes(nb.address, &prefixes))
                    .map(|nb| nb.address),
            );
            a
        }
        Target::Address(a) => [a]
            .into_iter()
            .filter(|&a| in_prefixes(a, &prefixes))
            .collect(),
    };
    out.sort();
    out.dedup();
    out
}

fn in_prefixes(a: Ipv6Addr, prefixes: &[(Ipv6Addr, u8)]) -> bool {
    prefixes
        .iter()
        .any(|&(n, len)| net::mask(a.into(), len) == std::net::IpAddr::V6(n))
}

/// The health checks' verdicts: by pinhole name, then by address. Each of
/// a host's addresses is checked, and opened, on its own.
pub type Verdicts = HashMap<String, BTreeMap<Ipv6Addr, Health>>;

/// The verdicts that still hold under a new config: those of pinholes whose
/// host and checks did not change. A pinhole pointed elsewhere, or checked
/// anew, waits for its first check again.
pub fn carried_over(old: &[Pinhole], new: &[Pinhole], verdicts: &Verdicts) -> Verdicts {
    let same_host = |a: &Pinhole, b: &Pinhole| {
        a.enabled
            && a.health_check
            && (
                a.enabled,
                a.health_check,
                a.target,
                &a.interface,
                a.device_given,
            ) == (
                b.enabled,
                b.health_check,
                b.target,
                &b.interface,
                b.device_given,
            )
            && (!a.device_given || a.device == b.device)
    };
    verdicts
        .iter()
        .filter(|(name, _)| {
            let find = |list: &[Pinhole]| list.iter().find(|p| &p.name == *name).cloned();
            find(old)
                .zip(find(new))
                .is_some_and(|(a, b)| same_host(&a, &b))
        })
        .map(|(name, v)| (name.clone(), v.clone()))
        .collect()
}

/// Which of a health-checked host's addresses open, and why the others do
/// not (`None`: all open).
fn checked(
    addresses: &[Ipv6Addr],
    verdicts: Option<&BTreeMap<Ipv6Addr, Health>>,
) -> (Vec<Ipv6Addr>, Option<String>) {
    let verdict = |a: &Ipv6Addr| verdicts.and_then(|v| v.get(a)).unwrap_or(&Health::Unknown);
    let good: Vec<Ipv6Addr> = addresses
        .iter()
        .copied()
        .filter(|a| *verdict(a) == Health::Good)
        .collect();
    let why_not = addresses
        .iter()
        .filter(|a| *verdict(a) != Health::Good)
        .map(|a| match verdict(a) {
            Health::Bad(why) => format!("health check failed: {why}"),
            _ if addresses.len() == 1 => "waiting for the first health check".to_string(),
            _ => format!("{a}: waiting for its first health check"),
        })
        .min_by_key(|why| !why.starts_with("health"));
    (good, why_not)
}

/// The plan. `lans` maps a device to its state; `health` holds the checks'
/// verdicts.
pub fn plan(pinholes: &[Pinhole], lans: &HashMap<String, LanState>, health: &Verdicts) -> Plan {
    let mut result = Plan::default();
    for p in pinholes {
        let (addresses, open_addresses, reason) = match lans.get(&p.device) {
            _ if !p.enabled => (Vec::new(), Vec::new(), "disabled".to_string()),
            None => (
                Vec::new(),
                Vec::new(),
                format!("device {} ({}) not found", p.device, p.interface),
            ),
            Some(lan) if !lan.up => (Vec::new(), Vec::new(), format!("{} is down", lan.device)),
            Some(lan) => {
                let addrs = addresses(p, lan);
                if addrs.is_empty() {
                    let why = match p.target {
                        Target::Address(a) => {
                            format!("{a} is in none of {}'s prefixes", lan.device)
                        }
                        _ if prefixes(lan).is_empty() => {
                            format!("no global prefix on {}", lan.device)
                        }
                        _ => "host not seen on the LAN".to_string(),
                    };
                    (addrs, Vec::new(), why)
                } else if p.health_check {
                    let (good, why_not) = checked(&addrs, health.get(&p.name));
                    let reason = match (good.is_empty(), why_not) {
                        (_, None) => "open".to_string(),
                        (true, Some(why)) => why,
                        (false, Some(why)) => format!(
                            "open for {} of {} addresses; {why}",
                            good.len(),
                            addrs.len()
                        ),
                    };
                    (addrs, good, reason)
                } else {
                    (addrs.clone(), addrs, "open".to_string())
                }
            }
        };
        result.holes.extend(open_addresses.iter().copied());
        if let Some(pps) = p.limit_pps {
            result
                .limits
                .extend(open_addresses.iter().map(|&address| Limit { address, pps }));
        }
        result.pinholes.push(PinholeState {
            name: p.name.clone(),
            addresses,
            open: !open_addresses.is_empty(),
            reason,
        });
    }
    result
}

/// The pinholes as they stand when the firewall could not be given the
/// plan (refused, its sets missing, nft failing): none is open, and each
/// that should be says why not.
pub fn held_back(planned: &[PinholeState], why: &str) -> Vec<PinholeState> {
    planned
        .iter()
        .map(|p| PinholeState {
            open: false,
            reason: if p.open {
                format!(
                    "the firewall was not written: {}",
                    why.trim_start_matches("pinholes: ")
                )
            } else {
                p.reason.clone()
            },
            ..p.clone()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pinhole(name: &str, target: Target) -> Pinhole {
        Pinhole {
            name: name.into(),
            enabled: true,
            interface: "lan".into(),
            device: "br-lan".into(),
            device_given: true,
            target,
            health_check: false,
            limit_pps: None,
            health_interval: 60,
        }
    }

    fn ip(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn lan(router_addresses: &[(&str, bool, bool)]) -> HashMap<String, LanState> {
        let state = LanState {
            device: "br-lan".into(),
            up: true,
            addresses: router_addresses
                .iter()
                .map(|&(a, temporary, deprecated)| LanAddress {
                    address: ip(a),
                    prefix_len: 64,
                    temporary,
                    deprecated,
                })
                .collect(),
            neighbours: vec![
                Neighbour {
                    address: ip("2001:db8:1:0:aaaa::1"),
                    mac: [2, 0, 0, 0, 0, 7],
                },
                Neighbour {
                    address: ip("2001:db8:9:0:bbbb::1"),
                    mac: [2, 0, 0, 0, 0, 7],
                },
                Neighbour {
                    address: ip("fe80::7"),
                    mac: [2, 0, 0, 0, 0, 7],
                },
            ],
        };
        HashMap::from([("br-lan".to_string(), state)])
    }

    #[test]
    fn suffix_follows_the_prefix() {
        let p = [pinhole("nas", Target::Suffix(ip("::50")))];
        let before = plan(
            &p,
            &lan(&[("2001:db8:1::1", false, false)]),
            &HashMap::new(),
        );
        assert_eq!(before.holes, BTreeSet::from([ip("2001:db8:1::50")]));
        // Re-delegation: the new prefix arrives, the old one is deprecated.
        let during = plan(
            &p,
            &lan(&[
                ("2001:db8:1::1", false, true),
                ("2001:db8:2::1", false, false),
            ]),
            &HashMap::new(),
        );
        assert_eq!(
            during.holes,
            BTreeSet::from([ip("2001:db8:2::50")]),
            "the old address loses its hole"
        );
        // Privacy addresses, ULAs and link-locals do not mark a prefix.
        let odd = plan(
            &p,
            &lan(&[("2001:db8:3::1234", true, false), ("fd00::1", false, false)]),
            &HashMap::new(),
        );
        assert!(odd.holes.is_empty());
        assert_eq!(odd.pinholes[0].reason, "no global prefix on br-lan");
    }

    #[test]
    fn mac_gives_eui64_and_current_neighbour_addresses() {
        assert_eq!(
            eui64([0x00, 0x11, 0x22, 0x33, 0x44, 0x55]),
            0x0211_22ff_fe33_4455
        );
        let p = [pinhole("pc", Target::Mac([2, 0, 0, 0, 0, 7]))];
        let r = plan(
            &p,
            &lan(&[("2001:db8:1::1", false, false)]),
            &HashMap::new(),
        );
        // EUI-64 under the prefix, and the neighbour address in the prefix;
        // not the one from another prefix, not the link-local.
        assert_eq!(
            r.holes,
            BTreeSet::from([ip("2001:db8:1::ff:fe00:7"), ip("2001:db8:1:0:aaaa::1")])
        );
    }

    #[test]
    fn fixed_address_only_inside_a_current_prefix() {
        let p = [pinhole("fixed", Target::Address(ip("2001:db8:1::99")))];
        assert_eq!(
            plan(
                &p,
                &lan(&[("2001:db8:1::1", false, false)]),
                &HashMap::new()
            )
            .holes
            .len(),
            1
        );
        let r = plan(
            &p,
            &lan(&[("2001:db8:2::1", false, false)]),
            &HashMap::new(),
        );
        assert!(r.holes.is_empty());
        assert_eq!(
            r.pinholes[0].reason,
            "2001:db8:1::99 is in none of br-lan's prefixes"
        );
    }

    #[test]
    fn health_disabled_down_and_unknown() {
        let mut checked = pinhole("nas", Target::Suffix(ip("::50")));
        checked.health_check = true;
        let mut off = pinhole("off", Target::Suffix(ip("::51")));
        off.enabled = false;
        let mut elsewhere = pinhole("guest", Target::Suffix(ip("::52")));
        elsewhere.interface = "guest".into();
        elsewhere.device = "br-guest".into();
        let p = [checked, off, elsewhere];
        let lans = lan(&[("2001:db8:1::1", false, false)]);
        let r = plan(&p, &lans, &HashMap::new());
        assert!(r.holes.is_empty());
        let reasons: Vec<&str> = r.pinholes.iter().map(|s| s.reason.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "waiting for the first health check",
                "disabled",
                "device br-guest (guest) not found"
            ]
        );
        let good = verdicts("nas", &[("2001:db8:1::50", Health::Good)]);
        assert_eq!(
            plan(&p, &lans, &good).holes,
            BTreeSet::from([ip("2001:db8:1::50")])
        );
        let bad = verdicts("nas", &[("2001:db8:1::50", Health::Bad("leap 3".into()))]);
        let r = plan(&p, &lans, &bad);
        assert!(r.holes.is_empty());
        assert_eq!(r.pinholes[0].reason, "health check failed: leap 3");
        let mut down = lans.clone();
        down.get_mut("br-lan").unwrap().up = false;
        assert_eq!(plan(&p, &down, &good).pinholes[0].reason, "br-lan is down");
    }

    fn verdicts(name: &str, by_address: &[(&str, Health)]) -> Verdicts {
        HashMap::from([(
            name.to_string(),
            by_address.iter().map(|(a, h)| (ip(a), h.clone())).collect(),
        )])
    }

    #[test]
    fn each_address_opens_on_its_own_health_check() {
        // A host by MAC: its EUI-64 address and the neighbour address.
        let mut p = pinhole("pc", Target::Mac([2, 0, 0, 0, 0, 7]));
        p.health_check = true;
        let lans = lan(&[("2001:db8:1::1", false, false)]);
        let (eui64, other) = (ip("2001:db8:1::ff:fe00:7"), ip("2001:db8:1:0:aaaa::1"));
        let r = plan(
            std::slice::from_ref(&p),
            &lans,
            &verdicts("pc", &[("2001:db8:1::ff:fe00:7", Health::Good)]),
        );
        assert_eq!(r.holes, BTreeSet::from([eui64]), "unchecked: not open");
        assert_eq!(r.pinholes[0].addresses, [eui64, other]);
        assert!(r.pinholes[0].open);
        assert_eq!(
            r.pinholes[0].reason,
            "open for 1 of 2 addresses; 2001:db8:1:0:aaaa::1: waiting for its first health check"
        );
        let r = plan(
            std::slice::from_ref(&p),
            &lans,
            &verdicts(
                "pc",
                &[
                    ("2001:db8:1::ff:fe00:7", Health::Good),
                    ("2001:db8:1:0:aaaa::1", Health::Bad("no answer".into())),
                ],
            ),
        );
        assert_eq!(r.holes, BTreeSet::from([eui64]), "failed: not open");
        assert!(
            r.pinholes[0]
                .reason
                .ends_with("health check failed: no answer")
        );
        // A new prefix: the new address waits for its own check.
        let moved = lan(&[("2001:db8:2::1", false, false)]);
        let r = plan(
            std::slice::from_ref(&p),
            &moved,
            &verdicts("pc", &[("2001:db8:1::ff:fe00:7", Health::Good)]),
        );
        assert!(r.holes.is_empty());
    }

    #[test]
    fn a_reload_keeps_only_the_verdicts_of_unchanged_pinholes() {
        let mut nas = pinhole("nas", Target::Suffix(ip("::50")));
        nas.health_check = true;
        let mut pc = pinhole("pc", Target::Suffix(ip("::60")));
        pc.health_check = true;
        let old = [nas.clone(), pc.clone()];
        let mut all = verdicts("nas", &[("2001:db8:1::50", Health::Good)]);
        all.extend(verdicts("pc", &[("2001:db8:1::60", Health::Good)]));
        // Unchanged, or changed in what does not move the host: kept.
        let mut limited = nas.clone();
        limited.limit_pps = Some(10);
        let kept = carried_over(&old, &[limited, pc.clone()], &all);
        assert_eq!(kept, all);
        // Pointed at another host, or its checks turned off and on: gone.
        let mut retargeted = pc.clone();
        retargeted.target = Target::Suffix(ip("::50"));
        let kept = carried_over(&old, &[nas.clone(), retargeted], &all);
        assert_eq!(kept.keys().collect::<Vec<_>>(), ["nas"]);
        let mut unchecked = nas.clone();
        unchecked.health_check = false;
        let off = carried_over(&old, &[unchecked.clone(), pc.clone()], &all);
        assert!(
            !carried_over(&[unchecked, pc.clone()], &[nas.clone(), pc], &off).contains_key("nas")
        );
        // A pinhole taken out of the config: gone.
        assert!(!carried_over(&old, &[nas], &all).contains_key("pc"));
    }

    #[test]
    fn a_hole_the_firewall_did_not_get_is_not_open() {
        let planned = vec![
            PinholeState {
                name: "nas".into(),
                addresses: vec!["2001:db8::50".parse().unwrap()],
                open: true,
                reason: "open".into(),
            },
            PinholeState {
                name: "off".into(),
                addresses: Vec::new(),
                open: false,
                reason: "no address".into(),
            },
        ];
        let held = held_back(&planned, "pinholes: refusing to write to the firewall: x");
        assert!(held.iter().all(|p| !p.open));
        assert_eq!(
            held[0].reason,
            "the firewall was not written: refusing to write to the firewall: x"
        );
        assert_eq!(held[0].addresses, planned[0].addresses);
        assert_eq!(held[1].reason, "no address");
    }
}
