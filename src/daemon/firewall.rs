//! The firewall shell: watch the LAN (netlink), plan (pure), read what nft
//! shows, reconcile (pure), run nft, and run the pinholes' health checks.
//! It reconciles on every netlink event, when a health check changes its
//! mind, and every few seconds, so that sets emptied by an fw4 restart
//! fill again quickly; the element timeouts are refreshed at a third of
//! their length.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::net::{Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::{Shared, lock, netifd};
use crate::config::Config;
use crate::config::firewall::FirewallConfig;
use crate::config::pinhole::Pinhole;
use crate::firewall::commands::Commands;
use crate::firewall::listing::Counters;
use crate::firewall::plan::{
    self, Health, LanAddress, LanState, Neighbour, PinholeState, Verdicts,
};
use crate::firewall::reconcile::{self, Decision, Desired, Reconciler, Tallies};
use crate::firewall::run::{self, Reader};
use crate::netwatch::{self, Snapshot};
use crate::{error, info, notice, warning};

/// How often the sets are checked (an fw4 restart empties them).
const CHECK_INTERVAL: Duration = Duration::from_secs(2);
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
    /// The health checks' verdicts, by pinhole and address.
    pub health: std::sync::Mutex<Verdicts>,
    /// Wakes the reconciler: a verdict changed.
    pub wake: Notify,
    /// Bumped when the plan gives a pinhole other addresses: its health
    /// check looks at the new ones at once.
    addresses_changed: watch::Sender<u64>,
    /// Packets and bytes through each address's hole, and dropped by its
    /// rate limit.
    tallies: std::sync::Mutex<Tallies>,
}

impl FirewallState {
    /// Packets and bytes through the holes of these addresses so far, and
    /// dropped by their rate limits.
    pub fn traffic(&self, addresses: &[Ipv6Addr]) -> (Counters, Counters) {
        let t = lock(&self.tallies);
        (t.passed.total(addresses), t.limited.total(addresses))
    }

    /// A pinhole's health in one word: bad if any address is, good if all
    /// checked are; `None` before its first check.
    pub fn health_of(&self, name: &str) -> Option<Health> {
        let health = lock(&self.health);
        let verdicts = health.get(name).filter(|v| !v.is_empty())?;
        let bad = verdicts.values().find(|h| matches!(h, Health::Bad(_)));
        Some(match bad {
            Some(h) => h.clone(),
            None if verdicts.values().all(|h| *h == Health::Good) => Health::Good,
            None => Health::Unknown,
        })
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
    let old = std::mem::replace(&mut *lock(&shared.firewall.config), config.pinholes.clone());
    {
        // A pinhole pointed elsewhere must not open on its old verdicts.
        let mut health = lock(&shared.firewall.health);
        *health = plan::carried_over(&old, &config.pinholes, &health);
    }
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

/// How long a netlink dump may take.
const DUMP_TIMEOUT: Duration = Duration::from_secs(5);

/// The netlink connection the firewall task watches the LAN through. It is
/// opened anew when a dump fails or hangs: a connection whose socket
/// overflowed may never answer again, and the pinholes must not wait on it
/// forever.
struct Watch {
    connection: JoinHandle<()>,
    handle: netwatch::Handle,
    events: Box<dyn futures_util::Stream<Item = netwatch::Notice> + Unpin + Send + Sync>,
}

impl Watch {
    fn open() -> std::io::Result<Watch> {
        let (connection, handle, events) = netwatch::subscribe()?;
        Ok(Watch {
            connection: tokio::spawn(connection),
            handle,
            events: Box::new(events),
        })
    }

    async fn dump(&self) -> Result<Snapshot, String> {
        match tokio::time::timeout(DUMP_TIMEOUT, netwatch::dump(&self.handle)).await {
            Ok(Ok(snapshot)) => Ok(snapshot),
            Ok(Err(e)) => Err(format!("netlink dump failed: {e}")),
            Err(_) => Err(format!(
                "netlink dump not answered in {} s",
                DUMP_TIMEOUT.as_secs()
            )),
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.connection.abort();
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
    let mut watch = match Watch::open() {
        Ok(w) => w,
        Err(e) => {
            warning!("pinholes: cannot watch the network through netlink: {e}");
            return;
        }
    };
    let mut check = tokio::time::interval(CHECK_INTERVAL);
    let mut reader = Reader::default();
    let mut reconciler = Reconciler::new(timeout);
    let mut problem = Problem::default();
    loop {
        tokio::select! {
            _ = check.tick() => {}
            Some(_) = watch.events.next() => {
                // A prefix change comes as several messages: take them all.
                tokio::time::sleep(SETTLE).await;
                while let Ok(Some(_)) = tokio::time::timeout(Duration::ZERO, watch.events.next()).await {}
            }
            _ = shared.firewall.wake.notified() => {}
        }
        let snapshot = match watch.dump().await {
            Ok(s) => s,
            Err(e) => {
                warning!("pinholes: {e}; opening the netlink connection again");
                match Watch::open() {
                    Ok(w) => watch = w,
                    Err(e) => warning!("pinholes: cannot watch the network through netlink: {e}"),
                }
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
                    // netifd is gone (or restarting): its last answer may be
                    // stale by the time it is back; the network config is
                    // what netifd itself starts from.
                    warning!(
                        "pinholes: netifd: {e}; devices from the network config until it answers again"
                    );
                    netifd_answered = false;
                    pinholes = configured.clone();
                    *lock(&shared.firewall.config) = pinholes.clone();
                }
                Err(_) => {}
            }
        }
        let health = lock(&shared.firewall.health).clone();
        let planned = plan::plan(&pinholes, &lan_states(&pinholes, &snapshot), &health);
        let moved = {
            let states = lock(&shared.firewall.pinholes);
            planned.pinholes.iter().any(|p| {
                !states
                    .iter()
                    .any(|s| s.name == p.name && s.addresses == p.addresses)
            })
        };
        let desired = Desired {
            lan: planned.holes,
            router: router.clone(),
            limits: planned.limits,
        };
        let written = match observe(&mut reader, &fw, &reconciler, &desired, &mut problem).await {
            None => false,
            Some((observed, decision)) => {
                let update = match &decision {
                    Decision::Update(update) => Some(update),
                    _ => None,
                };
                let mut applied = false;
                if let Some(update) = update {
                    match run::apply(&update.commands).await {
                        Ok(()) => {
                            problem.solved();
                            applied = true;
                        }
                        Err(e) => problem.warn(format!("pinholes: {e}")),
                    }
                    reconciler.applied(update, applied, Instant::now());
                }
                lock(&shared.firewall.tallies).settle(&observed, update, applied);
                let router_open = match update {
                    Some(u) if applied => u.router_open,
                    _ => observed.router_open(),
                };
                shared
                    .firewall
                    .wan_open
                    .store(router_open, Ordering::Relaxed);
                update.is_some() && applied
            }
        };
        // What the status says is what the firewall holds: a hole the plan
        // wants but the firewall could not be given is not open.
        let states = if written {
            planned.pinholes
        } else {
            plan::held_back(&planned.pinholes, problem.text())
        };
        {
            let mut shown = lock(&shared.firewall.pinholes);
            log_changes(&shown, &states);
            *shown = states;
        }
        if moved {
            // The health checks follow the addresses (they read them from
            // the states just stored).
            shared.firewall.addresses_changed.send_modify(|n| *n += 1);
        }
    }
}

/// The firewall's current problem: each is logged once, when it starts,
/// and its end once.
#[derive(Default)]
struct Problem(Option<String>);

impl Problem {
    fn warn(&mut self, text: String) {
        if self.0.as_ref() != Some(&text) {
            warning!("{text}");
            self.0 = Some(text);
        }
    }

    fn error(&mut self, text: String) {
        if self.0.as_ref() != Some(&text) {
            error!("{text}");
            self.0 = Some(text);
        }
    }

    fn text(&self) -> &str {
        self.0
            .as_deref()
            .unwrap_or("the firewall cannot be written")
    }

    fn solved(&mut self) {
        if self.0.take().is_some() {
            info!("pinholes: the firewall is as it should be again");
        }
    }
}

/// Read what nft shows and decide; in `create` mode add what is missing
/// first. `None` when there is nothing to apply (nft could not be read,
/// or our objects are not there to write to).
async fn observe(
    reader: &mut Reader,
    fw: &FirewallConfig,
    reconciler: &Reconciler,
    desired: &Desired,
    problem: &mut Problem,
) -> Option<(reconcile::Observed, Decision)> {
    let mut added = false;
    loop {
        let observed = match reader.read(fw).await {
            Ok(o) => o,
            Err(e) => {
                problem.warn(format!("pinholes: {e}"));
                return None;
            }
        };
        let decision = reconciler.decide(fw, &observed, desired, Instant::now());
        match &decision {
            Decision::Refuse(why) => problem.error(format!(
                "pinholes: refusing to write to the firewall: {}; give ntpgate names of its own in 'config firewall'",
                why.join("; ")
            )),
            Decision::Wait(missing) if !fw.create => problem.warn(format!(
                "pinholes: {} not found (firewall stopped or restarting? the fw4 include files installed?); retrying",
                missing.join(", ")
            )),
            Decision::Wait(missing) => problem.warn(format!(
                "pinholes: {} not found; retrying",
                missing.join(", ")
            )),
            Decision::Create { commands, missing } if !added => {
                if let Err(e) = run::apply(commands).await {
                    problem.warn(format!(
                        "pinholes: cannot add {} to table {} {}: {e}",
                        missing.join(", "),
                        fw.family.as_str(),
                        fw.table
                    ));
                    return None;
                }
                info!("pinholes: added {}", missing.join(", "));
                added = true;
                continue;
            }
            Decision::Create { missing, .. } => problem.warn(format!(
                "pinholes: {} still missing after adding them",
                missing.join(", ")
            )),
            Decision::Update(_) => {}
        }
        return Some((observed, decision));
    }
}

/// Remove what we put in the firewall (a clean stop closes the holes at
/// once); each nft run is bounded, so a wedged nft cannot hold the stop.
pub async fn close_all(fw: &FirewallConfig) {
    match close(fw).await {
        Ok(()) => notice!("pinholes closed"),
        Err(e) => warning!("pinholes: cannot close: {e}"),
    }
}

async fn close(fw: &FirewallConfig) -> Result<(), run::Error> {
    let mut reader = Reader::default();
    let mut removal = reconcile::remove(fw, &reader.read(fw).await?);
    if let Err(e) = run::apply(&removal.ours).await {
        if e.hung {
            return Err(e);
        }
        // Something changed between the read and the batch (a firewall
        // reload): once more from a fresh read.
        removal = reconcile::remove(fw, &reader.read(fw).await?);
        run::apply(&removal.ours).await?;
    }
    for (object, step) in removal.objects {
        let command = match step {
            Ok(command) => command,
            Err(why) => {
                warning!("pinholes: {object} {why}");
                continue;
            }
        };
        let one = Commands {
            text: vec![command],
            json: Vec::new(),
        };
        match run::apply(&one).await {
            Ok(()) => {}
            Err(e) if e.hung => return Err(e),
            Err(e) => warning!("pinholes: {object} left in place: {e}"),
        }
    }
    Ok(())
}

/// Ask the host's NTP server on each of its addresses every
/// `health_interval`, and at once on an address it did not have before: an
/// address is open only while it answers synchronised (leap not 3, stratum
/// 1-15).
async fn health_task(pinhole: Pinhole, shared: Arc<Shared>) {
    health_loop(&pinhole, &shared.firewall, probe).await
}

async fn probe(address: Ipv6Addr) -> Health {
    let target = SocketAddr::new(address.into(), 123);
    let result =
        tokio::task::spawn_blocking(move || crate::query::exchange(target, Duration::from_secs(2)))
            .await;
    match result {
        Ok(Ok((sample, _))) => {
            let r = sample.reply;
            if !r.claims_synchronised() {
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
    }
}

/// The health checks of one pinhole, with `probe` asking one address. It
/// sleeps between checks: a host with no address costs nothing until the
/// plan gives it one.
async fn health_loop<F, P>(pinhole: &Pinhole, state: &FirewallState, probe: P)
where
    P: Fn(Ipv6Addr) -> F,
    F: Future<Output = Health>,
{
    let mut tick = tokio::time::interval(Duration::from_secs(u64::from(pinhole.health_interval)));
    let mut moved = state.addresses_changed.subscribe();
    loop {
        let every_address = tokio::select! {
            _ = tick.tick() => true,
            Ok(()) = moved.changed() => false,
        };
        let planned: Vec<Ipv6Addr> = lock(&state.pinholes)
            .iter()
            .find(|p| p.name == pinhole.name)
            .map(|p| p.addresses.clone())
            .unwrap_or_default();
        let known = lock(&state.health)
            .get(&pinhole.name)
            .cloned()
            .unwrap_or_default();
        let ask: Vec<Ipv6Addr> = planned
            .iter()
            .copied()
            .filter(|a| every_address || !known.contains_key(a))
            .collect();
        let answers = futures_util::future::join_all(ask.iter().map(|&a| {
            let answer = probe(a);
            async move { (a, answer.await) }
        }))
        .await;
        let changed = {
            let mut health = lock(&state.health);
            let verdicts = health.entry(pinhole.name.clone()).or_default();
            let before = verdicts.clone();
            // The addresses the host no longer has are forgotten.
            verdicts.retain(|a, _| planned.contains(a));
            verdicts.extend(answers);
            *verdicts != before
        };
        if changed {
            state.wake.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::*;
    use crate::config::pinhole::Target;

    fn ip(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn pinhole(name: &str) -> Pinhole {
        Pinhole {
            name: name.into(),
            enabled: true,
            interface: "lan".into(),
            device: "br-lan".into(),
            device_given: true,
            target: Target::Suffix(ip("::50")),
            health_check: true,
            limit_pps: None,
            health_interval: 60,
        }
    }

    fn planned(state: &FirewallState, name: &str, addresses: &[Ipv6Addr]) {
        *lock(&state.pinholes) = vec![PinholeState {
            name: name.into(),
            addresses: addresses.to_vec(),
            open: false,
            reason: String::new(),
        }];
        state.addresses_changed.send_modify(|n| *n += 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_host_without_an_address_sleeps_until_it_has_one() {
        let state = FirewallState::default();
        let p = pinhole("nas");
        let asked = Mutex::new(Vec::new());
        let probe = |a: Ipv6Addr| {
            lock(&asked).push(a);
            async { Health::Good }
        };
        let mut checks = Box::pin(health_loop(&p, &state, probe));
        // Every poll of the loop is a wake-up of the daemon.
        let mut polls = 0;
        let counted = std::future::poll_fn(|cx| {
            polls += 1;
            checks.as_mut().poll(cx)
        });
        // Ten minutes of a plan that finds no address: one look per
        // health interval (60 s), not four a second.
        let _ = tokio::time::timeout(Duration::from_secs(600), counted).await;
        assert!(polls <= 20, "{polls} wake-ups in 10 minutes");
        assert!(lock(&asked).is_empty());

        // The plan finds the host: it is checked at once.
        let driver = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            planned(&state, "nas", &[ip("2001:db8::50")]);
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        tokio::select! {
            _ = &mut checks => unreachable!(),
            _ = driver => {}
        }
        assert_eq!(*lock(&asked), [ip("2001:db8::50")]);
    }

    #[tokio::test(start_paused = true)]
    async fn every_address_of_a_host_is_checked_and_new_ones_at_once() {
        let state = FirewallState::default();
        let p = pinhole("pc");
        let (a, b, c) = (ip("2001:db8::1"), ip("2001:db8::2"), ip("2001:db8:2::1"));
        planned(&state, "pc", &[a, b]);
        let asked = Mutex::new(Vec::new());
        let probe = |address: Ipv6Addr| {
            lock(&asked).push(address);
            async move {
                if address == b {
                    Health::Bad("no answer".into())
                } else {
                    Health::Good
                }
            }
        };
        let verdicts = |state: &FirewallState| lock(&state.health).get("pc").cloned();
        let driver = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            assert_eq!(
                verdicts(&state),
                Some(BTreeMap::from([
                    (a, Health::Good),
                    (b, Health::Bad("no answer".into()))
                ]))
            );
            // A new prefix: the host's new address is checked well before
            // the next interval, the old one forgotten, the kept one not
            // asked again until then.
            lock(&asked).clear();
            planned(&state, "pc", &[a, c]);
            tokio::time::sleep(Duration::from_secs(1)).await;
            assert_eq!(*lock(&asked), [c]);
            assert_eq!(
                verdicts(&state),
                Some(BTreeMap::from([(a, Health::Good), (c, Health::Good)]))
            );
            tokio::time::sleep(Duration::from_secs(60)).await;
            assert_eq!(*lock(&asked), [c, a, c]);
        };
        tokio::select! {
            _ = health_loop(&p, &state, probe) => unreachable!(),
            _ = driver => {}
        }
        assert_eq!(state.health_of("pc"), Some(Health::Good));
    }
}
