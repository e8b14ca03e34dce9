//! The daemon on ubus: its `ntpgate` object, `ntpgate status`, reload over
//! ubus, the status codes for bad calls, and publishing again after ubusd
//! restarts. ubusd here is the routing stand-in of common::ubusd.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::lan::*;
use common::ubusd::{Ubusd, publish_in_thread};
use common::*;
use ntpgate::ubus::blob::Msg;
use ntpgate::ubus::session::{Connection, Error, Handler, Table};
use ntpgate::ubus::wire::{self as wire, Message, Value, attr, kind};

fn config(socket: &std::path::Path, port: u16) -> String {
    format!(
        "config server\n\tlist listen '127.0.0.1'\n\toption port '{port}'\n\toption local_stratum '3'\n\toption ubus_socket '{}'\n",
        socket.display()
    )
}

fn call(
    socket: &std::path::Path,
    method: &str,
    args: serde_json::Value,
) -> Result<serde_json::Value, Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = Connection::connect(socket).await?;
        let Msg::Table(args) = Msg::from_json(&args) else {
            unreachable!()
        };
        c.call("ntpgate", method, args)
            .await
            .map(|t| Msg::Table(t).to_json())
    })
}

fn status_command(socket: &std::path::Path, json: bool) -> (i32, String) {
    let mut cmd = Command::new(BIN);
    cmd.arg("status").arg("--ubus-socket").arg(socket);
    if json {
        cmd.arg("--json");
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn status_methods_reload_and_ubusd_restarts() {
    let socket = scratch_dir().join("ubus.sock");
    let ubusd = Ubusd::start(&socket);
    let port = free_port();
    let d = Daemon::start(&config(&socket, port), 1);
    d.wait_for_log(
        |l| l.contains("ubus: object ntpgate published"),
        "the ubus object",
    );

    // Traffic for the counters and the client list.
    let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    for i in 0..5 {
        let reply = exchange(
            "127.0.0.1:0".parse().unwrap(),
            server,
            &request(4, 3, 6, ntp_now() + i),
            Duration::from_secs(1),
        );
        assert!(reply.is_some());
    }

    // `ntpgate status`: the summary and the tables, exit 0 when synchronised.
    let (code, text) = status_command(&socket, false);
    assert_eq!(code, 0, "{text}");
    for expected in [
        "synchronised, stratum 3",
        "time from local clock (local_stratum)",
        "Upstreams (0):",
        "packets received          : 5",
        "packets answered          : 5",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    let (code, json) = status_command(&socket, true);
    assert_eq!(code, 0, "{json}");
    let v: serde_json::Value = serde_json::from_str(&json).expect("status --json is JSON");
    assert_eq!(v["sync"]["stratum"], 3);
    assert_eq!(v["sync"]["refid"], "LOCL", "a code, not an address");
    assert_eq!(v["sync"]["source"], "local clock (local_stratum)");
    assert_eq!(v["sync"]["leap"], 0);
    assert_eq!(v["server"]["counters"]["received"], 5);
    assert_eq!(v["server"]["counters"]["dropped"]["mode"], 0);
    assert!(v["upstreams"].as_array().unwrap().is_empty());
    assert!(v["pinholes"].as_array().unwrap().is_empty());
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));

    // The other methods, and the status codes of bad calls.
    let clients = call(&socket, "clients", serde_json::json!({"limit": 5})).unwrap();
    assert_eq!(clients["clients"][0]["address"], "127.0.0.1", "{clients}");
    assert_eq!(clients["clients"][0]["requests"], 5, "{clients}");
    let upstreams = call(&socket, "upstreams", serde_json::json!({})).unwrap();
    assert!(upstreams["upstreams"].is_array());
    for (method, args, code) in [
        ("nosuch", serde_json::json!({}), 3),
        ("clients", serde_json::json!({"limit": "five"}), 2),
        ("clients", serde_json::json!({"limit": 0}), 2),
        ("status", serde_json::json!({"verbose": true}), 2),
    ] {
        match call(&socket, method, args) {
            Err(Error::Status(c)) => assert_eq!(c, code, "{method}"),
            other => panic!("{method}: {other:?}"),
        }
    }

    // reload over ubus: a broken config is refused with its errors, the
    // running one kept; a good one is applied.
    std::fs::write(&d.config_path, "config server\n\toption port 'x'\n").unwrap();
    let refused = call(&socket, "reload", serde_json::json!({})).unwrap();
    assert_eq!(refused["result"], "refused");
    let error = refused["errors"][0].as_str().unwrap();
    assert!(
        error.contains(":2: error: port: 'x' is not a whole number"),
        "{refused}"
    );
    std::fs::write(
        &d.config_path,
        config(&socket, port).replace("local_stratum '3'", "local_stratum '4'"),
    )
    .unwrap();
    let applied = call(&socket, "reload", serde_json::json!({})).unwrap();
    assert_eq!(applied["result"], "applied", "{applied}");
    // The new stratum is served from the next tick of the sync engine (1 s).
    within(Duration::from_secs(3), || {
        call(&socket, "status", serde_json::json!({})).unwrap()["sync"]["stratum"] == 4
    })
    .expect("stratum 4 served");

    // ubusd restarts: the object is published again, no daemon restart.
    ubusd.restart();
    assert!(!ubusd.has_object("ntpgate"));
    let took = within(Duration::from_secs(10), || ubusd.has_object("ntpgate"))
        .unwrap_or_else(|| panic!("not published again: {}", d.log()));
    println!("published again {took:?} after the ubusd restart");
    let (code, text) = status_command(&socket, false);
    assert_eq!(code, 0, "{text}");
    assert!(d.log().contains("ubus: connection lost"), "{}", d.log());

    // Without a daemon: a clear message and exit 1.
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
    let (code, text) = status_command(&socket, false);
    assert_eq!(code, 1);
    assert!(text.contains("the daemon is not running"), "{text}");
}

/// netifd's stand-in: `network.interface` answering `dump`.
struct Netifd(serde_json::Value);

impl Handler for Netifd {
    async fn invoke(&self, method: &str, _args: &[(String, Msg)]) -> Result<Table, u32> {
        match (method, Msg::from_json(&self.0)) {
            ("dump", Msg::Table(t)) => Ok(t),
            _ => Err(3),
        }
    }
}

#[test]
fn pinhole_devices_come_from_netifd() {
    let net = Network::build();
    let socket = scratch_dir().join("ubus.sock");
    let ubusd = Ubusd::start(&socket);
    let dump = serde_json::json!({"interface": [
        {"interface": "lan", "up": true, "device": "br-lan", "l3_device": "br-lan"}
    ]});
    publish_in_thread(
        &socket,
        "network.interface",
        vec![("dump", vec![])],
        |mut c, id| async move {
            c.serve(id, &Netifd(dump), || {}).await;
        },
    );
    let _lan_ntp = Daemon::start_with(
        net.lan.command(BIN),
        "config server\n\tlist listen '::'\n\toption port '123'\n\toption local_stratum '2'\n",
        1,
    );
    // The network config names another device for `lan`: only netifd's
    // answer finds the host.
    let config = format!(
        "config server\n\tlist listen '::'\n\toption port '123'\n\toption local_stratum '3'\n\toption ubus_socket '{}'\nconfig pinhole 'nas'\n\toption suffix '::50'\n",
        socket.display()
    );
    let d = Daemon::start_with_files(
        net.router.command(BIN),
        &config,
        1,
        &[(
            "network",
            "config interface 'lan'\n\toption device 'br-old'\n",
        )],
    );
    within(Duration::from_secs(10), || net.answers(LAN_HOST, 123))
        .unwrap_or_else(|| panic!("no hole: {}", d.log()));
    assert!(
        d.log().contains("pinholes: interface devices from netifd"),
        "{}",
        d.log()
    );

    // netifd goes away (ubusd restarts without it): at its next ask (every
    // 30 s) the daemon falls back to the network config, whose device
    // does not hold the host: the hole closes.
    ubusd.restart();
    within_every(Duration::from_secs(1), Duration::from_secs(45), || {
        !net.answers(LAN_HOST, 123)
    })
    .unwrap_or_else(|| panic!("the hole stayed on netifd's old answer: {}", d.log()));
    assert!(
        d.log()
            .contains("devices from the network config until it answers again"),
        "{}",
        d.log()
    );
}

fn read_message(stream: &mut std::os::unix::net::UnixStream) -> Message {
    use std::io::Read;
    let mut start = [0u8; 12];
    stream.read_exact(&mut start).unwrap();
    let mut bytes = vec![0u8; wire::length(&start).unwrap()];
    bytes[..12].copy_from_slice(&start);
    stream.read_exact(&mut bytes[12..]).unwrap();
    wire::decode(&bytes).unwrap()
}

/// What the object receives when LuCI calls it: uhttpd adds the caller's
/// `ubus_rpc_session` to every call (shared/fixtures/luci/: the JSON-RPC
/// capture, and the INVOKE byte for byte as ubusd delivered it). The
/// daemon answers it; any other unexpected argument is still status 2.
#[test]
fn luci_calls_through_uhttpd_are_answered() {
    use std::io::Write;

    let fixture = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/fixtures/luci/invoke-status-from-uhttpd.hex"
    ))
    .unwrap();
    let invoke_hex: String = fixture.split_whitespace().collect();
    // The fixture's object id is ubusd's choice of that run; this ubusd
    // hands out another, and the INVOKE is addressed to it.
    let (captured_id, our_id) = ("d9c2f37f", 0x0a0b_0c0d_u32);
    assert!(invoke_hex.contains(captured_id));
    let invoke = invoke_hex.replace(captured_id, &format!("{our_id:08x}"));
    let invoke: Vec<u8> = (0..invoke.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&invoke[i..i + 2], 16).unwrap())
        .collect();

    let socket = scratch_dir().join("ubus.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let d = Daemon::start(&config(&socket, free_port()), 1);
    let (mut stream, _) = listener.accept().unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // ubusd's side: HELLO with the client id, then the object's id.
    let client_id = 0x914c_64f8;
    stream
        .write_all(&Message::new(kind::HELLO, 0, client_id).encode())
        .unwrap();
    let add = read_message(&mut stream);
    assert_eq!(add.kind, kind::ADD_OBJECT, "{}", d.log());
    assert_eq!(add.str(attr::OBJPATH), Some("ntpgate"));
    stream
        .write_all(
            &Message::new(kind::DATA, add.seq, 0)
                .with(attr::OBJID, Value::U32(our_id))
                .with(attr::OBJTYPE, Value::U32(0x0a0b_0c0e))
                .encode(),
        )
        .unwrap();
    stream
        .write_all(
            &Message::new(kind::STATUS, add.seq, 0)
                .with(attr::STATUS, Value::U32(0))
                .encode(),
        )
        .unwrap();

    // The captured INVOKE: the status, then STATUS 0, to the caller.
    stream.write_all(&invoke).unwrap();
    let data = read_message(&mut stream);
    assert_eq!(data.kind, kind::DATA, "{}", d.log());
    let caller = 0x1858_895f;
    assert_eq!(data.peer, caller);
    let status = Msg::Table(data.table(attr::DATA).unwrap().to_vec()).to_json();
    assert_eq!(status["sync"]["stratum"], 3, "{status}");
    let done = read_message(&mut stream);
    assert_eq!((done.kind, done.u32(attr::STATUS)), (kind::STATUS, Some(0)));

    // The same call with one argument more, or a session that is not a
    // string: invalid argument, as before.
    for (seq, data) in [
        (
            0x20,
            vec![
                ("ubus_rpc_session".to_string(), Msg::String("0".repeat(32))),
                ("verbose".to_string(), Msg::Bool(true)),
            ],
        ),
        (0x21, vec![("ubus_rpc_session".to_string(), Msg::Int32(1))]),
    ] {
        let m = Message::new(kind::INVOKE, seq, caller)
            .with(attr::OBJID, Value::U32(our_id))
            .with(attr::METHOD, Value::Str("status".into()))
            .with(attr::USER, Value::Str("root".into()))
            .with(attr::GROUP, Value::Str("root".into()))
            .with(attr::DATA, Value::Table(data));
        stream.write_all(&m.encode()).unwrap();
        let answer = read_message(&mut stream);
        assert_eq!(
            (answer.kind, answer.seq, answer.u32(attr::STATUS)),
            (kind::STATUS, seq, Some(2))
        );
    }
    // An INVOKE that does not decode (a blobmsg name running past its
    // attribute): answered with invalid argument at once, and counted.
    let broken_hex = invoke_hex.replacen("0010756275735f", "00ff756275735f", 1);
    assert_ne!(broken_hex, invoke_hex);
    let broken: Vec<u8> = (0..broken_hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&broken_hex[i..i + 2], 16).unwrap())
        .collect();
    assert!(wire::decode(&broken).is_err());
    stream.write_all(&broken).unwrap();
    let answer = read_message(&mut stream);
    assert_eq!(
        (
            answer.kind,
            answer.seq,
            answer.peer,
            answer.u32(attr::STATUS)
        ),
        (kind::STATUS, 0x0010, caller, Some(2))
    );
    stream.write_all(&invoke).unwrap();
    let data = read_message(&mut stream);
    let status = Msg::Table(data.table(attr::DATA).unwrap().to_vec()).to_json();
    assert_eq!(status["ubus"]["malformed"], 1, "{status}");
    drop(stream);
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
}

/// A fresh install, as on a router: ubusd was started before the package
/// put its ACL file in place, and the daemon runs as its own user. Until
/// ubusd reads its ACLs again (SIGHUP, which the package's post-install
/// sends) the object cannot be published, and the log says why.
#[test]
fn publishing_waits_for_ubusd_to_read_the_acl() {
    require_root("starting the daemon as root");
    let acl_dir = scratch_dir().join("acl.d");
    std::fs::create_dir_all(&acl_dir).unwrap();
    let socket = scratch_dir().join("ubus.sock");
    let ubusd = Ubusd::start_with_acl(&socket, Some(&acl_dir));
    let config = config(&socket, free_port()) + "\toption user 'nobody'\n";
    let d = Daemon::start(&config, 1);
    d.wait_for_log(
        |l| l.contains("ubusd refused to publish the object ntpgate"),
        "the refusal",
    );
    assert!(
        d.log()
            .contains("this user (nobody) is not allowed by ubusd's ACL"),
        "{}",
        d.log()
    );

    // The package's ACL file, for this test's user, as opkg leaves it.
    let acl = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/openwrt-package/ntpgate/files/ntpgate.acl.json"
    ))
    .unwrap()
    .replacen("\"user\": \"ntpgate\"", "\"user\": \"nobody\"", 1);
    let file = acl_dir.join("ntpgate.json");
    std::fs::write(&file, acl).unwrap();
    // Not read until ubusd is told.
    assert_eq!(
        within(Duration::from_secs(3), || ubusd.has_object("ntpgate")),
        None
    );
    ubusd.reload_acl();
    within(Duration::from_secs(5), || ubusd.has_object("ntpgate")).expect("published");
    assert_eq!(status_command(&socket, false).0, 0);
}
