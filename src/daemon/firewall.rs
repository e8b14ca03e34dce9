//! The firewall shell: watch the LAN (netlink), plan (pure), make the fw4
//! sets match (nft), and run the pinholes' health checks. It reconciles on
//! every netlink event, when a health check changes its mind, and every few
//! seconds, so that sets emptied by an fw4 restart fill again quickly; the
//! element timeouts are refreshed at a third of their length.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::{Shared, lock};
use crate::config::Config;
use crate::config::pinhole::Pinhole;
use crate::firewall::apply::{self, Counters, SetNames};
use crate::firewall::plan::{self, Health, LanAddress, LanState, Neighbour, PinholeState};
use crate::netwatch::{self, Snapshot};
use crate::ntp::packet::Leap;
use crate::ntp::server::STRATUM_UNSYNC;
use crate::{info, notice, warning};

/// How often the sets are checked (an fw4 restart empties them).
const CHECK_INTERVAL: Duration = Duration::from_secs(2);
/// How long to let a burst of netlink events settle before planning.
const SETTLE: Duration = Duration::from_millis(20);

/// What the firewall shell shares with the health checks and the status.
#[derive(Default)]
pub struct FirewallState {
    pub pinholes: std::sync::Mutex<Vec<PinholeState>>,
    pub health: std::sync::Mutex<HashMap<String, Health>>,
    pub wake: Notify,
    /// Packets and bytes through each address's hole: what refreshed
    /// elements had counted (a refresh restarts an element's counter), and
    /// what the live elements count now.
    counted: std::sync::Mutex<(HashMap<Ipv6Addr, Counters>, HashMap<Ipv6Addr, Counters>)>,
}

impl FirewallState {
    /// Packets and bytes through the holes of these addresses so far.
    pub fn traffic(&self, addresses: &[Ipv6Addr]) -> Counters {
        let counted = lock(&self.counted);
        let (done, live) = (&counted.0, &counted.1);
        addresses
            .iter()
            .flat_map(|a| [done.get(a), live.get(a)])
            .flatten()
            .fold(Counters::default(), |t, c| Counters {
                packets: t.packets + c.packets,
                bytes: t.bytes + c.bytes,
            })
    }

    /// Remember the counters read from the sets; `refreshing` when the
    /// elements are about to be replaced (their counts move to the totals).
    fn count(&self, current: &BTreeMap<Ipv6Addr, Counters>, refreshing: bool) {
        let mut counted = lock(&self.counted);
        let (done, live) = &mut *counted;
        live.clear();
        for (a, c) in current {
            if refreshing {
                let t = done.entry(*a).or_default();
                t.packets += c.packets;
                t.bytes += c.bytes;
            } else {
                live.insert(*a, *c);
            }
        }
    }
}

/// Log every pinhole with its traffic (SIGUSR1).
pub fn log_pinholes(shared: &Shared) {
    for p in lock(&shared.firewall.pinholes).iter() {
        let t = shared.firewall.traffic(&p.addresses);
        let addrs: Vec<String> = p.addresses.iter().map(|a| a.to_string()).collect();
        notice!(
            "pinhole: {} {} addresses={} packets={} bytes={} ({})",
            p.name,
            if p.open { "open" } else { "closed" },
            if addrs.is_empty() {
                "-".to_string()
            } else {
                addrs.join(",")
            },
            t.packets,
            t.bytes,
            p.reason
        );
    }
}

/// The tasks for this config: none when there is nothing to open.
pub fn start(config: &Config, shared: &Arc<Shared>) -> Vec<JoinHandle<()>> {
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
    let shared = Arc::clone(shared);
    tasks.push(tokio::spawn(async move {
        reconcile_task(pinholes, router, timeout, shared).await
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

/// The device a pinhole's host is on: its `device`, else OpenWrt's bridge
/// for the interface (`lan` is `br-lan`) until netifd is asked over ubus.
fn device_of(p: &Pinhole) -> String {
    p.device
        .clone()
        .unwrap_or_else(|| format!("br-{}", p.interface))
}

fn lan_states(pinholes: &[Pinhole], snapshot: &Snapshot) -> HashMap<String, LanState> {
    let mut lans = HashMap::new();
    for p in pinholes {
        let key = p.device.clone().unwrap_or_else(|| p.interface.clone());
        let device = device_of(p);
        let Some(link) = snapshot.links.iter().find(|l| l.name == device) else {
            continue;
        };
        lans.insert(
            key,
            LanState {
                device,
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
    pinholes: Vec<Pinhole>,
    router: BTreeSet<u16>,
    timeout: u32,
    shared: Arc<Shared>,
) {
    let names = SetNames::default();
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
    let mut sets_missing = false;
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
        let health = lock(&shared.firewall.health).clone();
        let planned = plan::plan(&pinholes, &lan_states(&pinholes, &snapshot), &health);
        {
            let mut states = lock(&shared.firewall.pinholes);
            log_changes(&states, &planned.pinholes);
            *states = planned.pinholes.clone();
        }
        let current = match apply::read(&names).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                if !sets_missing {
                    warning!(
                        "pinholes: sets {} and {} not found in table inet {} (firewall stopped or restarting? the fw4 include files installed?); retrying",
                        names.lan_set,
                        names.router_set,
                        names.table
                    );
                }
                sets_missing = true;
                continue;
            }
            Err(e) => {
                warning!("pinholes: {e}");
                continue;
            }
        };
        if sets_missing {
            info!("pinholes: sets found again");
            sets_missing = false;
        }
        let stale =
            refreshed.is_none_or(|t| t.elapsed() >= Duration::from_secs(u64::from(timeout / 3)));
        let differs = current.lan.keys().copied().collect::<BTreeSet<_>>() != planned.holes
            || current.router != router;
        let replace = stale || differs;
        shared.firewall.count(&current.lan, replace);
        if replace {
            match apply::apply(apply::batch(
                &names,
                &current,
                &planned.holes,
                &router,
                timeout,
            ))
            .await
            {
                Ok(()) => refreshed = Some(Instant::now()),
                Err(e) => warning!("pinholes: {e}"),
            }
        }
    }
}

/// Remove our elements (a clean stop closes the holes at once).
pub async fn close_all() {
    let names = SetNames::default();
    match apply::read(&names).await {
        Ok(Some(current)) if !current.lan.is_empty() || !current.router.is_empty() => {
            let batch = apply::batch(&names, &current, &BTreeSet::new(), &BTreeSet::new(), 0);
            if let Err(e) = apply::apply(batch).await {
                warning!("pinholes: cannot close: {e}");
            } else {
                notice!("pinholes closed");
            }
        }
        Ok(_) => {}
        Err(e) => warning!("pinholes: cannot close: {e}"),
    }
}

/// Ask the host's NTP server every `health_interval`: the hole is open only
/// while it answers synchronised (leap not 3, stratum 1-15).
async fn health_task(pinhole: Pinhole, shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(u64::from(pinhole.health_interval)));
    loop {
        tick.tick().await;
        let address = lock(&shared.firewall.pinholes)
            .iter()
            .find(|p| p.name == pinhole.name)
            .and_then(|p| p.addresses.first().copied());
        let Some(address) = address else {
            continue;
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
