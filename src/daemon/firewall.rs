//! The firewall shell: watch the LAN (netlink), plan (pure), make the fw4
//! sets match (nft), and run the pinholes' health checks. It reconciles on
//! every netlink event, when a health check changes its mind, and every few
//! seconds, so that sets emptied by an fw4 restart fill again quickly; the
//! element timeouts are refreshed at a third of their length.

use std::collections::{BTreeSet, HashMap};
use std::net::{Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::{Shared, lock, netifd};
use crate::config::Config;
use crate::config::firewall::FirewallConfig;
use crate::config::pinhole::Pinhole;
use crate::firewall::apply::{self, Counters, Current, Desired};
use crate::firewall::plan::{self, Health, LanAddress, LanState, Neighbour, PinholeState};
use crate::netwatch::{self, Snapshot};
use crate::ntp::STRATUM_UNSYNC;
use crate::ntp::packet::Leap;
use crate::{info, notice, warning};

/// How often the sets are checked (an fw4 restart empties them).
const CHECK_INTERVAL: Duration = Duration::from_secs(2);
/// How soon a health check looks again for its host's address.
const ADDRESS_RETRY: Duration = Duration::from_millis(250);
/// How often netifd is asked for the interfaces' devices.
const NETIFD_INTERVAL: Duration = Duration::from_secs(30);
/// How long to let a burst of netlink events settle before planning.
const SETTLE: Duration = Duration::from_millis(20);

/// What the firewall shell shares with the health checks and the status.
#[derive(Default)]
pub struct FirewallState {
    pub pinholes: std::sync::Mutex<Vec<PinholeState>>,
    /// The configured pinholes.
    pub config: std::sync::Mutex<Vec<Pinhole>>,
    /// The router's own port is in the firewall's set now.
    pub wan_open: AtomicBool,
    pub health: std::sync::Mutex<HashMap<String, Health>>,
    pub wake: Notify,
    /// Packets and bytes through each address's hole.
    passed: std::sync::Mutex<Tally>,
    /// Packets and bytes the rate limits dropped on the way to each address.
    limited: std::sync::Mutex<Tally>,
}

/// Running totals of nftables counters that restart when their element or
/// rule is replaced: what the replaced ones had counted, and what the live
/// ones count now.
#[derive(Default)]
struct Tally {
    done: HashMap<Ipv6Addr, Counters>,
    live: HashMap<Ipv6Addr, Counters>,
}

fn add(t: Counters, c: Counters) -> Counters {
    Counters {
        packets: t.packets + c.packets,
        bytes: t.bytes + c.bytes,
    }
}

impl Tally {
    fn total(&self, addresses: &[Ipv6Addr]) -> Counters {
        addresses
            .iter()
            .flat_map(|a| [self.done.get(a), self.live.get(a)])
            .flatten()
            .fold(Counters::default(), |t, c| add(t, *c))
    }

    /// Take the counters read; `replacing` when their elements or rules are
    /// about to be replaced (their counts move to the totals).
    fn take(&mut self, read: impl Iterator<Item = (Ipv6Addr, Counters)>, replacing: bool) {
        self.live.clear();
        for (a, c) in read {
            let into = if replacing {
                self.done.entry(a).or_default()
            } else {
                self.live.entry(a).or_default()
            };
            *into = add(*into, c);
        }
    }
}

impl FirewallState {
    /// Packets and bytes through the holes of these addresses so far, and
    /// dropped by their rate limits.
    pub fn traffic(&self, addresses: &[Ipv6Addr]) -> (Counters, Counters) {
        (
            lock(&self.passed).total(addresses),
            lock(&self.limited).total(addresses),
        )
    }

    fn count(&self, current: &Current, desired: &Desired, refreshing: bool) {
        lock(&self.passed).take(current.lan.iter().map(|(a, c)| (*a, *c)), refreshing);
        let limits_replaced = !current.limits.keys().eq(desired.limits.iter());
        lock(&self.limited).take(
            current.limits.iter().map(|(l, c)| (l.address, *c)),
            limits_replaced,
        );
    }
}

/// Log every pinhole with its traffic (SIGUSR1).
pub fn log_pinholes(shared: &Shared) {
    for p in lock(&shared.firewall.pinholes).iter() {
        let (t, limited) = shared.firewall.traffic(&p.addresses);
        let addrs: Vec<String> = p.addresses.iter().map(|a| a.to_string()).collect();
        notice!(
            "pinhole: {} {} addresses={} packets={} bytes={} limited={} ({})",
            p.name,
            if p.open { "open" } else { "closed" },
            if addrs.is_empty() {
                "-".to_string()
            } else {
                addrs.join(",")
            },
            t.packets,
            t.bytes,
            limited.packets,
            p.reason
        );
    }
}

/// The tasks for this config: none when there is nothing to open.
pub fn start(config: &Config, shared: &Arc<Shared>) -> Vec<JoinHandle<()>> {
    *lock(&shared.firewall.config) = config.pinholes.clone();
    shared.firewall.wan_open.store(false, Ordering::Relaxed);
    let router = router_ports(config);
    if config.pinholes.is_empty() && router.is_empty() {
        return Vec::new();
    }
    let pinholes = config.pinholes.clone();
    let timeout = config.server.pinhole_timeout;
    let mut tasks = Vec::new();
    for p in pinholes.iter().filter(|p| p.enabled && p.health_check) {
        let (shared, p) = (Arc::clone(shared), p.clone());
        tasks.push(tokio::spawn(async move { health_task(p, shared).await }));
    }
    let (shared, fw) = (Arc::clone(shared), config.firewall.clone());
    let ubus = config.server.ubus_socket.clone();
    tasks.push(tokio::spawn(async move {
        reconcile_task(pinholes, router, fw, timeout, ubus, shared).await
    }));
    tasks
}

fn router_ports(config: &Config) -> BTreeSet<u16> {
    let s = &config.server;
    if s.serve_wan && s.enabled {
        BTreeSet::from([s.port])
    } else {
        BTreeSet::new()
    }
}

/// The pinholes with the devices netifd gives their interfaces, where the
/// config did not name one.
fn with_devices(pinholes: &[Pinhole], devices: &HashMap<String, String>) -> Vec<Pinhole> {
    pinholes
        .iter()
        .map(|p| match devices.get(&p.interface) {
            Some(d) if !p.device_given => Pinhole {
                device: d.clone(),
                ..p.clone()
            },
            _ => p.clone(),
        })
        .collect()
}

fn lan_states(pinholes: &[Pinhole], snapshot: &Snapshot) -> HashMap<String, LanState> {
    let mut lans = HashMap::new();
    for p in pinholes {
        let Some(link) = snapshot.links.iter().find(|l| l.name == p.device) else {
            continue;
        };
        lans.insert(
            p.device.clone(),
            LanState {
                device: p.device.clone(),
                up: link.up,
                addresses: snapshot
                    .addrs
                    .iter()
                    .filter(|a| a.index == link.index)
                    .map(|a| LanAddress {
                        address: a.address,
                        prefix_len: a.prefix_len,
                        temporary: a.temporary,
                        deprecated: a.deprecated,
                    })
                    .collect(),
                neighbours: snapshot
                    .neighs
                    .iter()
                    .filter(|n| n.index == link.index)
                    .map(|n| Neighbour {
                        address: n.address,
                        mac: n.mac,
                    })
                    .collect(),
            },
        );
    }
    lans
}

fn log_changes(before: &[PinholeState], after: &[PinholeState]) {
    for p in after {
        let old = before.iter().find(|b| b.name == p.name);
        if old
            .is_some_and(|o| o.open == p.open && o.addresses == p.addresses && o.reason == p.reason)
        {
            continue;
        }
        let addrs: Vec<String> = p.addresses.iter().map(|a| a.to_string()).collect();
        if p.open {
            notice!("pinhole {}: open for {}", p.name, addrs.join(", "));
        } else {
            notice!("pinhole {}: closed: {}", p.name, p.reason);
        }
    }
}

async fn reconcile_task(
    configured: Vec<Pinhole>,
    router: BTreeSet<u16>,
    fw: FirewallConfig,
    timeout: u32,
    ubus: PathBuf,
    shared: Arc<Shared>,
) {
    let mut pinholes = configured.clone();
    // netifd is asked only for pinholes that name an interface, not a device.
    let needs_netifd = configured.iter().any(|p| !p.device_given);
    let mut netifd_asked: Option<Instant> = None;
    let mut netifd_answered = false;
    let (connection, handle, mut events) = match netwatch::subscribe() {
        Ok(c) => c,
        Err(e) => {
            warning!("pinholes: cannot watch the network through netlink: {e}");
            return;
        }
    };
    tokio::spawn(connection);
    let mut check = tokio::time::interval(CHECK_INTERVAL);
    let mut refreshed: Option<Instant> = None;
    let mut reported_missing = Vec::new();
    loop {
        tokio::select! {
            _ = check.tick() => {}
            Some(_) = events.next() => {
                // A prefix change comes as several messages: take them all.
                tokio::time::sleep(SETTLE).await;
                while let Ok(Some(_)) = tokio::time::timeout(Duration::ZERO, events.next()).await {}
            }
            _ = shared.firewall.wake.notified() => {}
        }
        let snapshot = match netwatch::dump(&handle).await {
            Ok(s) => s,
            Err(e) => {
                warning!("pinholes: netlink dump failed: {e}");
                continue;
            }
        };
        // Until netifd first answers (at boot it may start after us), it is
        // asked at every check.
        let ask_every = if netifd_answered {
            NETIFD_INTERVAL
        } else {
            CHECK_INTERVAL
        };
        if needs_netifd && netifd_asked.is_none_or(|t| t.elapsed() >= ask_every) {
            netifd_asked = Some(Instant::now());
            match netifd::devices(&ubus).await {
                Ok(devices) => {
                    if !netifd_answered {
                        info!("pinholes: interface devices from netifd");
                        netifd_answered = true;
                    }
                    pinholes = with_devices(&configured, &devices);
                    *lock(&shared.firewall.config) = pinholes.clone();
                }
                Err(e) if netifd_answered => {
                    warning!("pinholes: netifd: {e}; keeping the devices it gave last");
                    netifd_answered = false;
                }
                Err(_) => {}
            }
        }
        let health = lock(&shared.firewall.health).clone();
        let planned = plan::plan(&pinholes, &lan_states(&pinholes, &snapshot), &health);
        {
            let mut states = lock(&shared.firewall.pinholes);
            log_changes(&states, &planned.pinholes);
            *states = planned.pinholes.clone();
        }
        let mut found = match apply::read(&fw).await {
            Ok(found) => found,
            Err(e) => {
                warning!("pinholes: {e}");
                continue;
            }
        };
        if !found.missing.is_empty() && fw.create {
            match apply::apply(&apply::create(&fw, &found.current, &found.missing)).await {
                Ok(()) => info!("pinholes: added {}", found.missing.join(", ")),
                Err(e) => warning!(
                    "pinholes: cannot add {} to table {} {} (does the table exist?): {e}",
                    found.missing.join(", "),
                    fw.family.as_str(),
                    fw.table
                ),
            }
            found = match apply::read(&fw).await {
                Ok(found) => found,
                Err(e) => {
                    warning!("pinholes: {e}");
                    continue;
                }
            };
        }
        if found.missing != reported_missing {
            if found.missing.is_empty() {
                info!("pinholes: the firewall objects are back");
            } else if !fw.create {
                warning!(
                    "pinholes: {} not found (firewall stopped or restarting? the fw4 include files installed?); retrying",
                    found.missing.join(", ")
                );
            }
            reported_missing = found.missing.clone();
        }
        if !found.missing.is_empty() {
            continue;
        }
        let current = found.current;
        let desired = Desired {
            lan: planned.holes,
            router: router.clone(),
            limits: planned.limits,
        };
        let stale =
            refreshed.is_none_or(|t| t.elapsed() >= Duration::from_secs(u64::from(timeout / 3)));
        let differs = !current.lan.keys().eq(desired.lan.iter())
            || current.router != desired.router
            || !current.limits.keys().eq(desired.limits.iter());
        let replace = stale || differs;
        shared.firewall.count(&current, &desired, replace);
        let applied = replace
            && match apply::apply(&apply::batch(&fw, &current, &desired, timeout)).await {
                Ok(()) => {
                    refreshed = Some(Instant::now());
                    true
                }
                Err(e) => {
                    warning!("pinholes: {e}");
                    false
                }
            };
        let router_open = if applied {
            &desired.router
        } else {
            &current.router
        };
        shared
            .firewall
            .wan_open
            .store(!router_open.is_empty(), Ordering::Relaxed);
    }
}

/// Remove what we put in the firewall (a clean stop closes the holes at once).
pub async fn close_all(fw: &FirewallConfig) {
    let closed = match apply::read(fw).await {
        Ok(found) => apply::apply(&apply::remove(fw, &found)).await,
        Err(e) => Err(e),
    };
    match closed {
        Ok(()) => notice!("pinholes closed"),
        Err(e) => warning!("pinholes: cannot close: {e}"),
    }
}

/// Ask the host's NTP server every `health_interval`: the hole is open only
/// while it answers synchronised (leap not 3, stratum 1-15).
async fn health_task(pinhole: Pinhole, shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(u64::from(pinhole.health_interval)));
    loop {
        tick.tick().await;
        // The host's address comes from the plan, which may not be made
        // yet (at start) or may not find the host: look again shortly.
        let address = loop {
            let planned = lock(&shared.firewall.pinholes)
                .iter()
                .find(|p| p.name == pinhole.name)
                .and_then(|p| p.addresses.first().copied());
            match planned {
                Some(a) => break a,
                None => tokio::time::sleep(ADDRESS_RETRY).await,
            }
        };
        let target = SocketAddr::new(address.into(), 123);
        let result = tokio::task::spawn_blocking(move || {
            crate::query::exchange(target, Duration::from_secs(2))
        })
        .await;
        let health = match result {
            Ok(Ok((sample, _))) => {
                let r = sample.reply;
                if r.leap == Leap::Unsynchronised || r.stratum == 0 || r.stratum >= STRATUM_UNSYNC {
                    Health::Bad(format!(
                        "{address} is not synchronised (leap {}, stratum {})",
                        r.leap as u8, r.stratum
                    ))
                } else {
                    Health::Good
                }
            }
            Ok(Err(e)) => Health::Bad(e),
            Err(e) => Health::Bad(e.to_string()),
        };
        let changed = lock(&shared.firewall.health).insert(pinhole.name.clone(), health.clone())
            != Some(health);
        if changed {
            shared.firewall.wake.notify_one();
        }
    }
}
