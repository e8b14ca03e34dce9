//! The ubus session against OpenWrt's real ubusd, as captured in
//! `../shared/fixtures/ubus/c_server_cli.txt` (ubusd, the `ubus` CLI and
//! libubus's example server): a scripted ubusd plays ubusd's side of each
//! captured connection byte for byte, and every message our session sends
//! must equal what the C client or server sent, in both roles: as the
//! object's owner answering the captured INVOKEs, and as the caller.
//!
//! The ids ubusd handed out are replaced by others before the replay, so a
//! session that copied the capture's ids instead of using the ones it was
//! given would fail.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ntpgate::ubus::blob::Msg;
use ntpgate::ubus::session::{Connection, Error, Handler, Table};
use ntpgate::ubus::wire;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

struct Captured {
    conn: u32,
    to_daemon: bool,
    bytes: Vec<u8>,
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The capture, with each id ubusd gave (client, object and type ids) moved
/// to another value.
fn capture() -> HashMap<u32, Captured> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/fixtures/ubus/c_server_cli.txt"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let ids = [
        "6793cef1", "73e9aaf3", "7ffd7e4f", "546c5c1c", "6753ce03", "f47e5b13", "4c27b5e6",
        "92a07784", "1f9d8348",
    ];
    let mut out = HashMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let mut h = f[4].to_string();
        for (i, id) in ids.iter().enumerate() {
            h = h.replace(id, &format!("{:08x}", 0x0a0b_0c00 + i as u32));
        }
        out.insert(
            f[0].parse().unwrap(),
            Captured {
                conn: f[1].parse().unwrap(),
                to_daemon: f[2] == "C>D",
                bytes: hex(&h),
            },
        );
    }
    out
}

fn socket(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("ubus-replay-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ubus.sock");
    let _ = std::fs::remove_file(&path);
    path
}

/// Play ubusd's side of `script` (message numbers of the capture) on the
/// next connection: send what ubusd sent, and check what arrives against
/// what the C program sent.
async fn play(listener: &UnixListener, capture: &HashMap<u32, Captured>, script: &[u32]) {
    let (mut stream, _) = listener.accept().await.unwrap();
    for n in script {
        let m = &capture[n];
        if m.to_daemon {
            let mut start = [0u8; 12];
            stream.read_exact(&mut start).await.unwrap();
            let mut got = vec![0u8; wire::length(&start).unwrap()];
            got[..12].copy_from_slice(&start);
            stream.read_exact(&mut got[12..]).await.unwrap();
            assert_eq!(
                got, m.bytes,
                "message {n} (conn {}) differs from the capture",
                m.conn
            );
        } else {
            stream.write_all(&m.bytes).await.unwrap();
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The example server's object (libubus examples/server.c): `count` and
/// `hello` as it answers them, `watch` not called.
struct TestObject;

impl Handler for TestObject {
    async fn invoke(&self, method: &str, args: &[(String, Msg)]) -> Result<Table, u32> {
        match method {
            "count" => Ok(vec![("rc".into(), Msg::Int32(0))]),
            "hello" => {
                let msg = Msg::Table(args.to_vec());
                let Some(Msg::String(text)) = msg.get("msg") else {
                    return Err(wire::status::INVALID_ARGUMENT);
                };
                Ok(vec![(
                    "message".into(),
                    Msg::String(format!("test received a message: {text}")),
                )])
            }
            _ => Err(wire::status::METHOD_NOT_FOUND),
        }
    }
}

const STRING: u32 = 3;
const INT32: u32 = 5;

#[test]
fn as_the_owner_of_an_object() {
    let capture = capture();
    let path = socket("owner");
    let rt = runtime();
    let listener = rt.block_on(async { UnixListener::bind(&path).unwrap() });
    rt.block_on(async {
        // ubusd's side of conn 1, without the example's second, anonymous
        // object (5-7), and the INVOKEs of conns 2, 3 and 5 as ubusd
        // forwarded them. The reply to `hello` went with a file descriptor,
        // which does not change its bytes.
        let ubusd = play(
            &listener,
            &capture,
            &[1, 2, 3, 4, 13, 14, 15, 23, 24, 25, 37, 38],
        );
        let owner = async {
            let mut c = Connection::connect(&path).await.unwrap();
            assert_eq!(c.client_id, 0x0a0b_0c00, "the client id from HELLO");
            let signature = vec![
                ("hello", vec![("id", INT32), ("msg", STRING)]),
                ("watch", vec![("id", INT32), ("counter", INT32)]),
                ("count", vec![("to", INT32), ("string", STRING)]),
            ];
            let id = c.add_object("test", &signature).await.unwrap();
            assert_eq!(id, 0x0a0b_0c01, "the object id from ubusd");
            let mut malformed = 0;
            let end = c.serve(id, &TestObject, || malformed += 1).await;
            assert!(matches!(end, Error::Io(_)), "{end}");
            assert_eq!(malformed, 0);
        };
        tokio::join!(ubusd, owner);
    });
}

#[test]
fn as_a_caller() {
    let capture = capture();
    let path = socket("caller");
    let rt = runtime();
    let listener = rt.block_on(async { UnixListener::bind(&path).unwrap() });
    rt.block_on(async {
        let ubusd = async {
            play(&listener, &capture, &[8, 9, 10, 11, 12, 16, 17]).await;
            play(&listener, &capture, &[18, 19, 20, 21, 22, 26, 27]).await;
            play(&listener, &capture, &[32, 33, 34, 35, 36, 39]).await;
            play(&listener, &capture, &[40, 41, 42]).await;
        };
        let caller = async {
            let call = |method: &'static str, args: serde_json::Value, object: &'static str| {
                let path = path.clone();
                async move {
                    let mut c = Connection::connect(&path).await.unwrap();
                    let Msg::Table(args) = Msg::from_json(&args) else {
                        unreachable!()
                    };
                    c.call(object, method, args).await
                }
            };
            // `ubus call test count '{"to":3,"string":"0 1 2 "}'`: json-c
            // keeps the order of the keys, so must the arguments here.
            let args = Msg::Table(vec![
                ("to".into(), Msg::Int32(3)),
                ("string".into(), Msg::String("0 1 2 ".into())),
            ]);
            let mut c = Connection::connect(&path).await.unwrap();
            let Msg::Table(args) = args else {
                unreachable!()
            };
            let answer = c.call("test", "count", args).await.unwrap();
            assert_eq!(answer, vec![("rc".to_string(), Msg::Int32(0))]);
            drop(c);
            let args = Msg::Table(vec![
                ("id".into(), Msg::Int32(1)),
                ("msg".into(), Msg::String("hi".into())),
            ]);
            let mut c = Connection::connect(&path).await.unwrap();
            let Msg::Table(args) = args else {
                unreachable!()
            };
            let answer = c.call("test", "hello", args).await.unwrap();
            assert_eq!(
                Msg::Table(answer).to_json(),
                serde_json::json!({"message": "test received a message: hi"})
            );
            drop(c);
            let err = call("nosuch", serde_json::json!({}), "test")
                .await
                .unwrap_err();
            assert!(matches!(err, Error::Status(3)), "{err}");
            let err = call("x", serde_json::json!({}), "nosuch")
                .await
                .unwrap_err();
            assert!(matches!(err, Error::Status(4)), "{err}");
        };
        tokio::join!(ubusd, caller);
    });
}
