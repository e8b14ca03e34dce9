//! The `ntpgate` ubus object: the status model for LuCI, scripts and
//! `ntpgate status`, and `reload`. The connection is kept up: when ubusd
//! restarts, the object is published again without a daemon restart.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{Shared, lock};
use crate::clock::SystemClock;
use crate::firewall::plan::Health;
use crate::ntp::clock::Clock;
use crate::status::{self, Clients, PinholeStatus, Snapshot};
use crate::ubus::blob::Msg;
use crate::ubus::session::{self, Connection, Handler, Signature, Table};
use crate::ubus::wire::status as code;
use crate::{info, notice, warning};

/// How long to wait before connecting to ubusd again.
const RECONNECT: Duration = Duration::from_secs(2);
/// blobmsg INT32, for the signature.
const INT32: u32 = 5;

fn signature() -> Signature {
    vec![
        ("status", vec![]),
        ("upstreams", vec![]),
        ("pinholes", vec![]),
        ("clients", vec![("limit", INT32)]),
        ("reload", vec![]),
    ]
}

/// What a reload request gets back: applied or unchanged, or why not.
pub type ReloadResult = Result<&'static str, Vec<String>>;
pub type ReloadRequest = oneshot::Sender<ReloadResult>;

pub fn start(socket: PathBuf, shared: &Arc<Shared>) -> JoinHandle<()> {
    let shared = Arc::clone(shared);
    tokio::spawn(async move { keep_published(socket, shared).await })
}

async fn keep_published(socket: PathBuf, shared: Arc<Shared>) {
    let object = Object {
        shared: Arc::clone(&shared),
    };
    let mut warned = false;
    loop {
        let published = async {
            let mut c = Connection::connect(&socket).await.map_err(|e| e.to_string())?;
            let id = c
                .add_object("ntpgate", &signature())
                .await
                .map_err(|e| match e {
                    // ubusd_obj.c: a publish its ACL does not allow, or a
                    // path another client holds, is INVALID_ARGUMENT.
                    session::Error::Status(code::INVALID_ARGUMENT) => format!(
                        "ubusd refused to publish the object ntpgate ({e}): this user ({}) is not allowed by ubusd's ACL (/usr/share/acl.d/ntpgate.json, which ubusd reads only at its start and on SIGHUP), or another ntpgate holds the object",
                        shared.user
                    ),
                    other => other.to_string(),
                })?;
            Ok::<_, String>((c, id))
        }
        .await;
        match published {
            Ok((mut c, id)) => {
                notice!(
                    "ubus: object ntpgate published (id {id:08x}) on {}",
                    socket.display()
                );
                warned = false;
                let why = c
                    .serve(id, &object, || *lock(&shared.ubus_malformed) += 1)
                    .await;
                warning!("ubus: connection lost ({why}); publishing again");
            }
            Err(e) if !warned => {
                warning!("ubus: {e}; retrying every {} s", RECONNECT.as_secs());
                warned = true;
            }
            Err(_) => {}
        }
        tokio::time::sleep(RECONNECT).await;
    }
}

struct Object {
    shared: Arc<Shared>,
}

/// A JSON object as a ubus DATA table.
fn table(v: Value) -> Table {
    match Msg::from_json(&v) {
        Msg::Table(fields) => fields,
        _ => Vec::new(),
    }
}

impl Handler for Object {
    async fn invoke(&self, method: &str, args: &[(String, Msg)]) -> Result<Table, u32> {
        let args = &without_session(args)?[..];
        let no_args = |args: &[(String, Msg)]| {
            if args.is_empty() {
                Ok(())
            } else {
                Err(code::INVALID_ARGUMENT)
            }
        };
        match method {
            "status" => {
                no_args(args)?;
                let mut v = status_json(&self.shared);
                v["addresses"] = global_addresses().await;
                Ok(table(v))
            }
            "upstreams" => no_args(args).map(|()| {
                let s = snapshot_json(&self.shared, |s| s.upstreams_json());
                table(json!({ "upstreams": s }))
            }),
            "pinholes" => no_args(args).map(|()| {
                let s = snapshot_json(&self.shared, |s| s.pinholes_json());
                table(json!({ "pinholes": s }))
            }),
            "clients" => {
                let limit = match args {
                    [] => 20,
                    [(name, Msg::Int32(n))] if name == "limit" && *n > 0 => *n as usize,
                    _ => return Err(code::INVALID_ARGUMENT),
                };
                let top = lock(&self.shared.clients).top(limit.min(Clients::SLOTS));
                Ok(table(json!({
                    "clients": status::clients_json(&top),
                    "window": "counts halve every minute",
                })))
            }
            "reload" => {
                no_args(args)?;
                let (tx, rx) = oneshot::channel();
                self.shared
                    .reload
                    .send(tx)
                    .await
                    .map_err(|_| code::UNKNOWN_ERROR)?;
                match rx.await.map_err(|_| code::UNKNOWN_ERROR)? {
                    Ok(outcome) => Ok(table(json!({ "result": outcome }))),
                    Err(errors) => {
                        info!("ubus: reload refused");
                        Ok(table(json!({ "result": "refused", "errors": errors })))
                    }
                }
            }
            _ => Err(code::METHOD_NOT_FOUND),
        }
    }
}

/// The arguments without `ubus_rpc_session`, which uhttpd adds to every
/// call it forwards from LuCI (shared/fixtures/luci/uhttpd-ubus-capture.txt);
/// OpenWrt's own objects ignore it. Anything but a string there is a bad
/// argument.
fn without_session(args: &[(String, Msg)]) -> Result<Vec<(String, Msg)>, u32> {
    let mut rest = Vec::with_capacity(args.len());
    for (name, value) in args {
        match (name.as_str(), value) {
            ("ubus_rpc_session", Msg::String(_)) => {}
            ("ubus_rpc_session", _) => return Err(code::INVALID_ARGUMENT),
            _ => rest.push((name.clone(), value.clone())),
        }
    }
    Ok(rest)
}

fn health_text(h: Option<&Health>, checked: bool) -> String {
    match (checked, h) {
        (false, _) => "not checked".into(),
        (true, Some(Health::Good)) => "good".into(),
        (true, Some(Health::Bad(why))) => format!("bad: {why}"),
        (true, _) => "waiting".into(),
    }
}

/// Build the snapshot under the locks and make `part` of it.
fn snapshot_json(shared: &Shared, part: impl FnOnce(&Snapshot<'_>) -> Value) -> Value {
    let now = SystemClock.now();
    let monotonic = shared.epoch.elapsed();
    let pinholes = {
        let states = lock(&shared.firewall.pinholes);
        let configs = lock(&shared.firewall.config);
        configs
            .iter()
            .map(|p| {
                let state = states.iter().find(|s| s.name == p.name);
                let addresses = state.map(|s| s.addresses.clone()).unwrap_or_default();
                let (passed, limited) = shared.firewall.traffic(&addresses);
                PinholeStatus {
                    name: p.name.clone(),
                    target: p.target.to_string(),
                    interface: p.interface.clone(),
                    device: p.device.clone(),
                    addresses: addresses.iter().map(|a| a.to_string()).collect(),
                    open: state.is_some_and(|s| s.open),
                    reason: state.map_or("not planned yet".into(), |s| s.reason.clone()),
                    health: health_text(
                        shared.firewall.health_of(&p.name).as_ref(),
                        p.health_check,
                    ),
                    packets: passed.packets,
                    bytes: passed.bytes,
                    limited: limited.packets,
                }
            })
            .collect()
    };
    let engine = lock(&shared.engine);
    let rates = lock(&shared.rates);
    let clients_seen = lock(&shared.server)
        .clients_active((monotonic.as_nanos() as u64).saturating_sub(3_600_000_000_000));
    let snapshot = Snapshot {
        version: env!("CARGO_PKG_VERSION"),
        uptime_s: monotonic.as_secs(),
        now,
        engine: &engine,
        clock_control: shared.clock_control(),
        counters: *lock(&shared.counters),
        rates: &rates,
        clients_seen,
        pinholes,
        serve_wan: shared.serve_wan.load(std::sync::atomic::Ordering::Relaxed),
        wan_open: shared
            .firewall
            .wan_open
            .load(std::sync::atomic::Ordering::Relaxed),
    };
    part(&snapshot)
}

/// The router's global IPv6 addresses, from a netlink dump.
async fn global_addresses() -> Value {
    let Ok((connection, handle)) = crate::netwatch::connect() else {
        return Value::Array(Vec::new());
    };
    let task = tokio::spawn(connection);
    let dump = crate::netwatch::dump(&handle).await;
    task.abort();
    let Ok(snapshot) = dump else {
        return Value::Array(Vec::new());
    };
    let found: Vec<_> = snapshot
        .addrs
        .iter()
        .filter(|a| crate::config::pinhole::is_global(a.address))
        .map(|a| {
            let device = snapshot
                .links
                .iter()
                .find(|l| l.index == a.index)
                .map_or(String::new(), |l| l.name.clone());
            (device, a.address, a.prefix_len, a.temporary, a.deprecated)
        })
        .collect();
    status::addresses_json(&found)
}

/// The whole status, as `ubus call ntpgate status` answers it.
pub fn status_json(shared: &Shared) -> Value {
    let mut v = snapshot_json(shared, |s| s.to_json());
    v["ubus"] = json!({ "malformed": *lock(&shared.ubus_malformed) });
    v
}

/// Sample the request counter for the rates, and age the busiest clients.
pub fn start_sampler(shared: &Arc<Shared>) -> JoinHandle<()> {
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(status::RateHistory::STEP));
        let mut n = 0u64;
        loop {
            tick.tick().await;
            let received = lock(&shared.counters).received;
            lock(&shared.rates).sample(shared.epoch.elapsed().as_secs(), received);
            n += 1;
            if n % (60 / status::RateHistory::STEP) == 0 {
                lock(&shared.clients).decay();
            }
        }
    })
}
