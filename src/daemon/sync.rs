//! The sync engine's IO shell: one task per upstream (name lookup, a fresh
//! socket and source port per request, timeouts), a one-second tick
//! (holdover, the state the server publishes, the kernel's sync status),
//! the drift file, and applying clock commands to the system clock.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use super::{Shared, lock, random_u64, udp};
use crate::clock::SystemClock;
use crate::config::{self, SyncConfig};
use crate::ntp::clock::{self, Clock, ClockCommand, ClockControl};
use crate::ntp::discipline::DisciplineSettings;
use crate::ntp::engine::{EngineSettings, SyncEngine, TimeSource};
use crate::ntp::packet::UnixNanos;
use crate::ntp::select::NoSelection;
use crate::ntp::source::{REPLY_TIMEOUT, Reject};
use crate::{info, notice, warning};

/// The drift file is written at most this often: flash wears.
const DRIFT_SAVE_INTERVAL: Duration = Duration::from_secs(3600);
/// Updates before the frequency estimate is worth saving.
const DRIFT_MIN_UPDATES: u32 = 8;

pub fn engine_settings(sync: &SyncConfig) -> EngineSettings {
    EngineSettings {
        min_sources: sync.min_sources,
        discipline: DisciplineSettings {
            makestep: if sync.makestep > 0.0 {
                sync.makestep
            } else {
                f64::INFINITY
            },
            observe: !sync.clock_control,
            ..DisciplineSettings::default()
        },
        max_distance: sync.max_distance,
    }
}

pub fn new_engine(sync: &SyncConfig, frequency: f64, local_stratum: Option<u8>) -> SyncEngine {
    let names: Vec<String> = sync.upstreams.iter().map(|u| u.to_string()).collect();
    let mut engine = SyncEngine::new(&names, engine_settings(sync), frequency);
    engine.set_local_stratum(local_stratum);
    engine
}

/// The frequency compensation remembered in the drift file (ppm, as text).
pub fn read_drift(path: Option<&Path>) -> f64 {
    let Some(path) = path else {
        return 0.0;
    };
    match std::fs::read_to_string(path) {
        Ok(text) => match text
            .split_whitespace()
            .next()
            .and_then(|w| w.parse::<f64>().ok())
        {
            Some(ppm) if ppm.is_finite() && ppm.abs() <= 500.0 => {
                info!("{}: frequency {ppm:+.3} ppm", path.display());
                ppm * 1e-6
            }
            _ => {
                warning!(
                    "{}: not a frequency in ppm; starting from 0",
                    path.display()
                );
                0.0
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0.0,
        Err(e) => {
            warning!("{}: {e}; starting from frequency 0", path.display());
            0.0
        }
    }
}

/// Write the drift file by way of a temporary file, so that a power cut
/// leaves the old one or the new one, never half of one.
fn write_drift(path: &Path, frequency: f64) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{:.4}\n", frequency * 1e6))?;
    std::fs::rename(&tmp, path)
}

/// Start the upstream tasks and the tick.
pub fn start(sync: &SyncConfig, shared: &Arc<Shared>) -> Vec<JoinHandle<()>> {
    let mut tasks: Vec<JoinHandle<()>> = sync
        .upstreams
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let (shared, upstream) = (Arc::clone(shared), u.clone());
            tokio::spawn(async move { upstream_task(i, upstream, shared).await })
        })
        .collect();
    let shared = Arc::clone(shared);
    let driftfile = sync.driftfile.clone().filter(|_| sync.clock_control);
    tasks.push(tokio::spawn(
        async move { tick_task(shared, driftfile).await },
    ));
    tasks
}

async fn resolve(upstream: &config::Upstream) -> io::Result<SocketAddr> {
    let target = (upstream.host.clone(), upstream.port);
    let addrs = tokio::task::spawn_blocking(move || {
        target.to_socket_addrs().map(|a| a.collect::<Vec<_>>())
    })
    .await
    .map_err(io::Error::other)??;
    addrs
        .into_iter()
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))
}

async fn upstream_task(index: usize, upstream: config::Upstream, shared: Arc<Shared>) {
    let name = upstream.to_string();
    let mut first = true;
    loop {
        let needs_lookup = {
            let e = lock(&shared.engine);
            let u = &e.upstreams[index];
            u.address.is_none() || u.source.needs_resolve()
        };
        if needs_lookup {
            match resolve(&upstream).await {
                Ok(addr) => {
                    let mut e = lock(&shared.engine);
                    if e.upstreams[index].address != Some(addr) {
                        info!("upstream {name}: using {addr}");
                    }
                    e.set_address(index, addr);
                }
                Err(e) => {
                    warning!("upstream {name}: cannot resolve: {e}");
                    tokio::time::sleep(Duration::from_secs(64)).await;
                    continue;
                }
            }
        }
        let (addr, interval) = {
            let e = lock(&shared.engine);
            let u = &e.upstreams[index];
            (u.address.expect("resolved above"), u.source.poll_interval())
        };
        // Spread the first requests of the upstreams a little.
        let wait = if first {
            (random_u64() % 1000) as f64 / 1000.0
        } else {
            interval
        };
        first = false;
        tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        if let Err(e) = exchange(index, addr, &shared).await {
            warning!("upstream {name} ({addr}): {e}");
        }
        if let Some(code) = lock(&shared.engine).upstreams[index].source.stopped() {
            warning!(
                "upstream {name} ({addr}) sent kiss-o'-death {}: no longer asking it",
                code.display(1)
            );
            return;
        }
    }
}

/// One request and its reply (or timeout) on a fresh socket: a new random
/// source port each time, so that an off-path attacker cannot aim replies.
async fn exchange(index: usize, addr: SocketAddr, shared: &Arc<Shared>) -> io::Result<()> {
    let bind: SocketAddr = if addr.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(addr).await?;
    let fd = socket.as_raw_fd();
    let kernel_timestamps = udp::enable_timestamps(fd);
    let request = {
        let mut e = lock(&shared.engine);
        e.request(index, SystemClock.now(), random_u64())
    };
    socket.send(&request).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(REPLY_TIMEOUT);
    let mut buf = [0u8; 1024];
    loop {
        let ready = tokio::time::timeout_at(deadline, socket.readable()).await;
        if ready.is_err() {
            lock(&shared.engine).timed_out(index);
            return Ok(());
        }
        let (n, timestamp) = match socket.try_io(tokio::io::Interest::READABLE, || {
            udp::receive_one(fd, &mut buf)
        }) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            // ICMP unreachable and the like: the upstream is not there.
            Err(e) => {
                lock(&shared.engine).timed_out(index);
                return Err(e);
            }
        };
        let t4 = timestamp
            .filter(|_| kernel_timestamps)
            .unwrap_or_else(|| SystemClock.now());
        let result = lock(&shared.engine).reply(index, &buf[..n], t4);
        match result {
            // Not an answer to this request (another's, a forgery, a
            // malformed datagram or one in another mode): keep waiting for
            // the real one until the timeout.
            Err(Reject::NotOurs | Reject::Invalid(_)) => continue,
            Err(Reject::Kiss(code)) => {
                info!("{addr}: kiss-o'-death {}", code.display(1));
                return Ok(());
            }
            Err(e) => {
                info!("{addr}: reply not used: {e}");
                return Ok(());
            }
            Ok(command) => {
                if let Some(c) = command {
                    apply(shared, c);
                }
                let _ = publish(shared, t4);
                return Ok(());
            }
        }
    }
}

/// Carry out a clock command (only with clock_control on).
fn apply(shared: &Shared, command: ClockCommand) {
    if !shared.clock_control() {
        return;
    }
    let result = clock::apply(&mut SystemClock, command);
    if result.is_ok()
        && let Some(step) = command.step
    {
        notice!("clock stepped by {step:+.6} s");
    }
    steered(shared, result);
}

/// Tell the engine whether the kernel took a clock command. While it
/// refuses, the server says it is unsynchronised; the log says so once.
fn steered(shared: &Shared, result: io::Result<()>) {
    let changed = lock(&shared.engine).clock_command_done(result.is_ok());
    match result {
        Err(e) if changed => warning!(
            "cannot steer the clock ({e}): answering as unsynchronised (leap 3) until the kernel takes clock commands; the daemon needs CAP_SYS_TIME, or option clock_control '0' for observe mode"
        ),
        Ok(()) if changed => notice!("the kernel takes clock commands again"),
        _ => {}
    }
}

/// What the server says from now on (the engine decides; the sockets get
/// a copy under the engine's lock, so that the status, taken under the
/// same lock, never mixes moments), and what the kernel is told. Returns
/// whether the upstreams keep the clock synchronised.
pub fn publish(shared: &Shared, now: UnixNanos) -> bool {
    let (previous, served, peer) = {
        let mut e = lock(&shared.engine);
        let previous = e.served();
        let served = e.publish(now);
        *lock(&shared.state) = served.state;
        let peer = e
            .peer()
            .map(|p| (e.upstreams[p].name.clone(), e.upstreams[p].address));
        (previous, served, peer)
    };
    let (was, is) = (previous.state, served.state);
    if previous.source != served.source || was.refid != is.refid {
        match (served.source, peer) {
            (TimeSource::Upstreams, Some((name, addr))) => notice!(
                "synchronised to {name} ({}), stratum {}",
                addr.map_or("?".into(), |a| a.to_string()),
                is.stratum
            ),
            (TimeSource::Upstreams, None) => {
                notice!("synchronised, stratum {} (holdover)", is.stratum)
            }
            (TimeSource::LocalClock, _) => notice!(
                "serving the local clock at stratum {} (local_stratum)",
                is.stratum
            ),
            (TimeSource::None, _) => {
                notice!("unsynchronised: answering with leap 3 until the upstreams agree again")
            }
        }
    }
    let synchronised = served.source == TimeSource::Upstreams;
    if shared.clock_control() && synchronised {
        let distance = is.root_delay / 2.0 + is.root_dispersion_at(now);
        let told = SystemClock.set_sync_status(true, distance, is.root_dispersion);
        steered(shared, told);
    }
    synchronised
}

async fn tick_task(shared: Arc<Shared>, driftfile: Option<std::path::PathBuf>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_save: Option<Instant> = None;
    let mut was_synchronised = false;
    loop {
        tick.tick().await;
        let now = SystemClock.now();
        let command = lock(&shared.engine).tick(now);
        if let Some(c) = command {
            notice!("no usable upstreams: holding the clock at its last frequency");
            apply(&shared, c);
        }
        let synchronised = publish(&shared, now);
        let (frequency, updates) = {
            let e = lock(&shared.engine);
            (e.discipline().frequency(), e.discipline().updates())
        };
        if was_synchronised && !synchronised && shared.clock_control() {
            let _ = SystemClock.set_sync_status(false, 16.0, 16.0);
        }
        was_synchronised = synchronised;
        if let Some(path) = &driftfile {
            let due = last_save.is_none_or(|t| t.elapsed() >= DRIFT_SAVE_INTERVAL);
            if due && updates >= DRIFT_MIN_UPDATES {
                match write_drift(path, frequency) {
                    Ok(()) => info!(
                        "{}: saved frequency {:+.3} ppm",
                        path.display(),
                        frequency * 1e6
                    ),
                    Err(e) => warning!("{}: cannot save the frequency: {e}", path.display()),
                }
                last_save = Some(Instant::now());
            }
        }
    }
}

/// Log the sync state and every upstream (SIGUSR1).
pub fn log_sources(shared: &Shared) {
    let now = SystemClock.now();
    let e = lock(&shared.engine);
    let state = e.served().state;
    notice!(
        "sync: {} stratum={} refid={} offset={:+.6} frequency={:+.3}ppm root_delay={:.6} root_dispersion={:.6} since_update={}",
        if state.is_synchronised() {
            "synchronised"
        } else {
            "unsynchronised"
        },
        state.stratum,
        state.refid.display(state.stratum),
        e.discipline().offset(),
        e.discipline().frequency() * 1e6,
        state.root_delay,
        state.root_dispersion_at(now),
        state
            .reference_time
            .map_or("-".into(), |t| format!("{:.1}", now.seconds_since(t)))
    );
    match e.last_failure {
        Some(NoSelection::NoMajority) => notice!("selection: no majority of the upstreams agree"),
        Some(NoSelection::TooFew { agreeing, required }) => {
            notice!("selection: {agreeing} upstream(s) agree, {required} needed")
        }
        None => {}
    }
    for u in &e.upstreams {
        let status = u.status.label();
        let measured = u.source.measurement().map_or(String::new(), |m| {
            format!(
                " stratum={} delay={:.6} jitter={:.6}",
                m.stratum, m.delay, m.jitter
            )
        });
        notice!(
            "upstream: {} address={} reach={:03o} poll={} status={status}{measured}",
            u.name,
            u.address.map_or("-".into(), |a| a.to_string()),
            u.source.reach(),
            u.source.poll()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_file_round_trip_and_bad_content() {
        let dir = std::env::temp_dir().join(format!("ntpgate-drift-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("drift");
        assert_eq!(read_drift(Some(&path)), 0.0, "no file yet");
        write_drift(&path, -12.3456e-6).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "-12.3456\n");
        assert!((read_drift(Some(&path)) + 12.3456e-6).abs() < 1e-12);
        std::fs::write(&path, "garbage\n").unwrap();
        assert_eq!(read_drift(Some(&path)), 0.0);
        std::fs::write(&path, "900\n").unwrap();
        assert_eq!(read_drift(Some(&path)), 0.0, "beyond what the kernel takes");
        assert_eq!(read_drift(None), 0.0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
