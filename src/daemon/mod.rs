//! The daemon: a thin tokio shell around the protocol core. It binds the
//! sockets, moves datagrams between them and [`ntp::server`](crate::ntp::server),
//! runs the upstream tasks of the sync engine (`sync`), the pinholes
//! (`firewall`, with `netifd`), the ubus object (`ubus`), keeps the
//! counters, and handles signals: SIGTERM/SIGINT stop, SIGHUP (or ubus
//! `reload`) reloads the config, SIGUSR1 logs the counters and the state.

mod firewall;
mod netifd;
mod privileges;
mod sync;
mod ubus;
mod udp;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::clock::{self, SystemClock};
use crate::config::network::Interfaces;
use crate::config::{self, Config, Loaded, Severity};
use crate::ntp::clock::Clock;
use crate::ntp::engine::SyncEngine;
use crate::ntp::ratelimit::DEFAULT_CAPACITY;
use crate::ntp::server::{Server, SystemState};
use crate::status::{Clients, RateHistory, ServerCounters};
use crate::{error, info, notice, warning};
use udp::{ServerSocket, serve_socket};

/// Where the configuration comes from.
#[derive(Clone, Debug)]
pub enum ConfigSource {
    File(PathBuf),
    /// A config compiled into the binary (the demo); `label` names it in messages.
    Embedded {
        label: &'static str,
        text: &'static str,
    },
}

impl ConfigSource {
    pub fn load(&self) -> Loaded {
        match self {
            ConfigSource::File(path) => config::load(path),
            ConfigSource::Embedded { label, text } => config::parse(
                text,
                label,
                &Interfaces::Unavailable {
                    why: "an embedded config has no network config".into(),
                },
            ),
        }
    }

    fn describe(&self) -> String {
        match self {
            ConfigSource::File(path) => path.display().to_string(),
            ConfigSource::Embedded { label, .. } => label.to_string(),
        }
    }
}

/// State shared by the socket tasks. Each lock is taken once per batch of
/// datagrams, not per datagram.
struct Shared {
    server: Mutex<Server>,
    state: Mutex<SystemState>,
    counters: Mutex<ServerCounters>,
    engine: Mutex<SyncEngine>,
    precision: i8,
    /// Origin of the monotonic time the rate limiter runs on.
    epoch: Instant,
    clock_control: AtomicBool,
    firewall: firewall::FirewallState,
    /// Requests received over the last hour, for the rates.
    rates: Mutex<RateHistory>,
    /// The busiest sources.
    clients: Mutex<Clients>,
    /// Reloads asked for on ubus, done by the main loop.
    reload: mpsc::Sender<ubus::ReloadRequest>,
    /// The config's `serve_wan`, for the status.
    serve_wan: AtomicBool,
    /// ubus messages dropped because they did not decode (a Mutex: 32-bit
    /// MIPS has no 64-bit atomics).
    ubus_malformed: Mutex<u64>,
    /// The user the daemon runs as, for messages.
    user: String,
}

impl Shared {
    fn clock_control(&self) -> bool {
        self.clock_control.load(Ordering::Relaxed)
    }

    fn set_policy(&self, config: &Config) {
        self.serve_wan
            .store(config.server.serve_wan, Ordering::Relaxed);
        self.clock_control
            .store(config.server.sync.clock_control, Ordering::Relaxed);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic aborts the process (panic = "abort"), so a poisoned lock
    // cannot be observed in the daemon; tests may unwind, so recover.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn log_diagnostics(loaded: &Loaded) {
    for d in &loaded.diagnostics {
        match d.severity {
            Severity::Error => error!("{}:{}: {}", d.file, d.line, d.message),
            Severity::Warning => warning!("{}:{}: {}", d.file, d.line, d.message),
        }
    }
}

fn new_server(config: &Config, precision: i8) -> Server {
    Server::new(
        config.server.access.clone(),
        DEFAULT_CAPACITY,
        precision,
        random_u64(),
    )
}

/// 64 random bits from the kernel: request cookies, the rate limiter's seed.
fn random_u64() -> u64 {
    let mut seed = [0u8; 8];
    // SAFETY: getrandom writes at most 8 bytes into `seed`.
    let n = unsafe { libc::getrandom(seed.as_mut_ptr().cast(), seed.len(), 0) };
    if n == 8 {
        u64::from_ne_bytes(seed)
    } else {
        // No getrandom (very old kernel): the clock's nanoseconds, which an
        // off-path attacker cannot see.
        clock::realtime().0 as u64
    }
}

/// Run the daemon until SIGTERM or SIGINT. Returns the process exit code.
pub fn run(source: ConfigSource) -> i32 {
    let loaded = source.load();
    log_diagnostics(&loaded);
    let Some(config) = loaded.config else {
        error!("{}: configuration refused, not starting", source.describe());
        return 1;
    };
    // Before any thread exists: the switch must hold for the whole process.
    let user = match privileges::drop_to(config.server.user.as_deref()) {
        Ok(p) => {
            log_privileges(&p, &config, &source);
            p.name
        }
        Err(e) => {
            error!(
                "cannot run as user '{}': {e}; not starting",
                config.server.user.as_deref().unwrap_or_default()
            );
            return 1;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            error!("cannot start the runtime: {e}");
            return 1;
        }
    };
    runtime.block_on(serve(source, config, user))
}

fn log_privileges(p: &privileges::Privileges, config: &Config, source: &ConfigSource) {
    let kept: Vec<String> = p.kept.iter().map(|c| c.to_string()).collect();
    match &p.switched_to {
        Some(user) => notice!(
            "running as user {user} (uid {}) with {}, no_new_privs",
            p.uid,
            if kept.is_empty() {
                "no capabilities".to_string()
            } else {
                kept.join(", ")
            }
        ),
        None if p.uid == 0 && matches!(source, ConfigSource::File(_)) => warning!(
            "running as root: set option user (the package's config names 'ntpgate') to keep only what the daemon needs"
        ),
        None => {}
    }
    for cap in &p.lacking {
        let server = &config.server;
        let needed = match cap {
            privileges::Cap::SysTime => server.sync.clock_control,
            privileges::Cap::NetBindService => server.enabled && server.port < 1024,
            privileges::Cap::NetAdmin => server.serve_wan || !config.pinholes.is_empty(),
        };
        let why = if p.switched_to.is_some() {
            "not in the bounding set"
        } else {
            "not held"
        };
        if needed {
            warning!("{cap} {why}: cannot {}", cap.purpose());
        } else {
            info!("{cap} {why}: not needed with this config");
        }
    }
}

struct Running {
    config: Config,
    sockets: Vec<JoinHandle<()>>,
    sync: Vec<JoinHandle<()>>,
    firewall: Vec<JoinHandle<()>>,
    ubus: Option<JoinHandle<()>>,
}

async fn serve(source: ConfigSource, config: Config, user: String) -> i32 {
    let precision = clock::measure_precision(&SystemClock);
    notice!(
        "ntpgate {} starting, config {}, clock precision 2^{} s",
        env!("CARGO_PKG_VERSION"),
        source.describe(),
        precision
    );
    let frequency = sync::read_drift(config.server.sync.driftfile.as_deref());
    let (reload_tx, mut reload_rx) = mpsc::channel(4);
    let shared = Arc::new(Shared {
        server: Mutex::new(new_server(&config, precision)),
        state: Mutex::new(SystemState::unsynchronised()),
        counters: Mutex::new(ServerCounters::default()),
        engine: Mutex::new(sync::new_engine(
            &config.server.sync,
            frequency,
            config.server.local_stratum,
        )),
        precision,
        epoch: Instant::now(),
        clock_control: AtomicBool::new(false),
        firewall: firewall::FirewallState::default(),
        rates: Mutex::new(RateHistory::default()),
        clients: Mutex::new(Clients::default()),
        reload: reload_tx,
        ubus_malformed: Mutex::new(0),
        serve_wan: AtomicBool::new(false),
        user,
    });
    shared.set_policy(&config);
    log_sync_setup(&config);
    // The state to serve from the first request on (the local reference,
    // with local_stratum), not only from the sync engine's first tick.
    sync::publish(&shared, SystemClock.now());
    let mut running = Running {
        sockets: Vec::new(),
        sync: Vec::new(),
        firewall: Vec::new(),
        ubus: None,
        config,
    };
    if let Err(e) = start_sockets(&mut running, &shared) {
        error!("{e}");
        return 1;
    }
    running.sync = sync::start(&running.config.server.sync, &shared);
    running.firewall = firewall::start(&running.config, &shared);
    running.ubus = Some(ubus::start(
        running.config.server.ubus_socket.clone(),
        &shared,
    ));
    let sampler = ubus::start_sampler(&shared);

    let signals = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
        signal(SignalKind::user_defined1()),
    );
    let (Ok(mut term), Ok(mut int), Ok(mut hup), Ok(mut usr1)) = signals else {
        error!("cannot install signal handlers");
        return 1;
    };
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                let _ = reload(&source, &mut running, &shared).await;
            }
            Some(reply) = reload_rx.recv() => {
                let _ = reply.send(reload(&source, &mut running, &shared).await);
            }
            _ = usr1.recv() => {
                notice!("counters: {}", *lock(&shared.counters));
                sync::log_sources(&shared);
                firewall::log_pinholes(&shared);
            }
        }
    }
    stop_tasks(&mut running.sockets).await;
    stop_tasks(&mut running.sync).await;
    stop_tasks(&mut running.ubus.into_iter().chain([sampler]).collect()).await;
    if !running.firewall.is_empty() {
        stop_tasks(&mut running.firewall).await;
        firewall::close_all(&running.config.firewall).await;
    }
    notice!("counters: {}", *lock(&shared.counters));
    notice!("stopped");
    0
}

/// Bind every listen address and start a task for each. Addresses that
/// fail are logged; it is an error only if none can be bound.
fn start_sockets(running: &mut Running, shared: &Arc<Shared>) -> io::Result<()> {
    let server = &running.config.server;
    if !server.enabled {
        notice!("server disabled (option enabled '0'): not serving NTP");
        return Ok(());
    }
    for ip in &server.listen {
        let addr = SocketAddr::new(*ip, server.port);
        match ServerSocket::bind(addr) {
            Ok(socket) => {
                notice!(
                    "serving NTP on {} (kernel receive timestamps: {})",
                    socket.local,
                    if socket.kernel_timestamps {
                        "yes"
                    } else {
                        "no"
                    }
                );
                let shared = Arc::clone(shared);
                running.sockets.push(tokio::spawn(
                    async move { serve_socket(socket, shared).await },
                ));
            }
            Err(e) => error!("cannot serve on {addr}: {e}"),
        }
    }
    if running.sockets.is_empty() {
        return Err(io::Error::other(
            "no listen address could be bound; not serving",
        ));
    }
    Ok(())
}

async fn stop_tasks(tasks: &mut Vec<JoinHandle<()>>) {
    for task in tasks.drain(..) {
        task.abort();
        // Awaiting the aborted task drops what it owns (its socket: the
        // port is free again).
        let _ = task.await;
    }
}

fn log_sync_setup(config: &Config) {
    let sync = &config.server.sync;
    if sync.upstreams.is_empty() {
        notice!("no upstreams configured");
    } else {
        let names: Vec<String> = sync.upstreams.iter().map(|u| u.to_string()).collect();
        notice!(
            "upstreams: {} (at least {} must agree); clock control {}",
            names.join(", "),
            sync.min_sources.min(names.len()),
            if sync.clock_control {
                "on"
            } else {
                "off: observe mode, the clock is never changed"
            }
        );
    }
    match config.server.local_stratum {
        Some(stratum) => warning!(
            "local_stratum {stratum}: the local clock is served as a reference while no upstream is selected (lab use only)"
        ),
        None => {
            notice!("until the upstreams agree, answering as unsynchronised (leap 3, stratum 0)")
        }
    }
}

/// SIGHUP or ubus `reload`: re-read the config. A config with errors
/// changes nothing; the errors are the answer.
async fn reload(
    source: &ConfigSource,
    running: &mut Running,
    shared: &Arc<Shared>,
) -> ubus::ReloadResult {
    let loaded = source.load();
    log_diagnostics(&loaded);
    let Some(new) = loaded.config else {
        error!(
            "{}: reload refused, keeping the running configuration",
            source.describe()
        );
        return Err(loaded.errors().map(|d| d.to_string()).collect());
    };
    if new.server.user != running.config.server.user {
        warning!("reload: a change of option user takes effect at the next start");
    }
    if new == running.config {
        info!("reload: configuration unchanged");
        return Ok("unchanged");
    }
    let old = std::mem::replace(&mut running.config, new);
    if old.server.access != running.config.server.access {
        *lock(&shared.server) = new_server(&running.config, shared.precision);
    }
    let sockets_changed = (old.server.enabled, &old.server.listen, old.server.port)
        != (
            running.config.server.enabled,
            &running.config.server.listen,
            running.config.server.port,
        );
    if sockets_changed {
        stop_tasks(&mut running.sockets).await;
        if let Err(e) = start_sockets(running, shared) {
            error!("reload: {e}");
        }
    }
    shared.set_policy(&running.config);
    let local_stratum = running.config.server.local_stratum;
    if old.server.sync != running.config.server.sync {
        stop_tasks(&mut running.sync).await;
        let frequency = lock(&shared.engine).discipline().frequency();
        *lock(&shared.engine) =
            sync::new_engine(&running.config.server.sync, frequency, local_stratum);
        log_sync_setup(&running.config);
        running.sync = sync::start(&running.config.server.sync, shared);
    } else if old.server.local_stratum != local_stratum {
        // The sync state stays: only what is served without upstreams.
        lock(&shared.engine).set_local_stratum(local_stratum);
        log_sync_setup(&running.config);
    }
    sync::publish(shared, SystemClock.now());
    let firewall_changed = old.pinholes != running.config.pinholes
        || old.firewall != running.config.firewall
        || old.server.ubus_socket != running.config.server.ubus_socket
        || (
            old.server.serve_wan,
            old.server.port,
            old.server.pinhole_timeout,
            old.server.enabled,
        ) != (
            running.config.server.serve_wan,
            running.config.server.port,
            running.config.server.pinhole_timeout,
            running.config.server.enabled,
        );
    if firewall_changed {
        let had = !running.firewall.is_empty();
        stop_tasks(&mut running.firewall).await;
        running.firewall = firewall::start(&running.config, shared);
        if had && (running.firewall.is_empty() || old.firewall != running.config.firewall) {
            firewall::close_all(&old.firewall).await;
        }
    }
    if old.server.ubus_socket != running.config.server.ubus_socket {
        stop_tasks(&mut running.ubus.take().into_iter().collect()).await;
        running.ubus = Some(ubus::start(
            running.config.server.ubus_socket.clone(),
            shared,
        ));
    }
    notice!("reload: configuration applied");
    Ok("applied")
}
