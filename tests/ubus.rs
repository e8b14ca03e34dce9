//! The daemon on ubus: its `ntpgate` object, `ntpgate status`, reload over
//! ubus, the status codes for bad calls, and publishing again after ubusd
//! restarts. ubusd here is the routing stand-in of common::ubusd.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::lan::*;
use common::ubusd::Ubusd;
use common::*;
use ntpgate::ubus::blob::Msg;
use ntpgate::ubus::session::{Connection, Error, Handler, Table};

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
    let start = std::time::Instant::now();
    while call(&socket, "status", serde_json::json!({})).unwrap()["sync"]["stratum"] != 4 {
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "stratum 4 not served"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // ubusd restarts: the object is published again, no daemon restart.
    ubusd.restart();
    assert!(!ubusd.has_object("ntpgate"));
    let start = std::time::Instant::now();
    while !ubusd.has_object("ntpgate") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "not published again: {}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "published again {:?} after the ubusd restart",
        start.elapsed()
    );
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
    let _ubusd = Ubusd::start(&socket);
    let owner_socket = socket.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut c = Connection::connect(&owner_socket).await.unwrap();
            let id = c
                .add_object("network.interface", &vec![("dump", vec![])])
                .await
                .unwrap();
            let dump = serde_json::json!({"interface": [
                {"interface": "lan", "up": true, "device": "br-lan", "l3_device": "br-lan"}
            ]});
            let mut malformed = 0;
            c.serve(id, &Netifd(dump), &mut malformed).await;
        });
    });
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
}
