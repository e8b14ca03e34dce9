//! A stand-in for the web server between LuCI's `rpc.js` and ubus: uhttpd
//! with its ubus JSON-RPC endpoint (`uhttpd -u /ubus`) and rpcd's session
//! access check, so that the views in headless Chromium talk to the real
//! `ntpgate` object on a test ubusd.
//!
//! What it mirrors, and where that is shown:
//! - `POST /ubus` with one JSON-RPC object, `method: "call"`,
//!   `params: [session, object, method, args]` (openwrt/uhttpd `ubus.c`,
//!   `uh_ubus_handle_request_object`, `parse_call_params`): a request that
//!   does not parse, or whose params miss one of the four, is error -32700
//!   "Parse error"; an object that ubusd does not know is -32000 "Object not
//!   found"; a call the session may not make is -32002 "Access denied"; a
//!   method other than `call` is -32601 "Method not found". Errors carry the
//!   request's `id`.
//! - The call is forwarded with `ubus_rpc_session` (the session id) added
//!   after the browser's arguments; arguments that already hold
//!   `ubus_rpc_session` are -32602 "Invalid parameters"
//!   (`uh_ubus_send_request`; shared/fixtures/luci/uhttpd-ubus-capture.txt
//!   shows the object receiving `{"ubus_rpc_session": ...}` for `{}`).
//! - The answer is `{"jsonrpc":"2.0","id":N,"result":[status]}`, or
//!   `[status, reply]` when the object sent data (`uh_ubus_request_cb`, the
//!   legacy format; the capture shows `"result":[2]`). No answer within the
//!   script timeout is -32003 "ubus request timed out" (this stand-in waits
//!   10 s, uhttpd's default is 60 s).
//! - The session check is rpcd's `session access` (openwrt/rpcd
//!   `session.c`) for a root login with `read '*'` and `write '*'` (rpcd's
//!   default `/etc/config/rpcd`): every ACL group in acl.d is granted, so a
//!   call is allowed when an ACL file grants the method. The ACL given to
//!   [`Uhttpd::start`] is the app's own file; luci-base's grant of the
//!   `uci` object's methods is taken as given.
//! - Calls to the `uci` object go to [`super::rpcd_uci::Uci`], a stand-in for
//!   rpcd's uci plugin (no rpcd here); everything else goes over the test
//!   ubusd to whoever published the object.
//!
//! Not served, because the views do not use them: `list`, batched
//! requests (a JSON array), `/ubus/call/...`, GET and subscriptions.
//!
//! Canned answers ([`Uhttpd::answer`]) replace only the object's answer: the
//! request still goes through the same parsing, lookup and access check
//! and gets the same envelope.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ntpgate::ubus::blob::Msg;
use ntpgate::ubus::session::{Connection, Error};
use serde_json::{Value, json};

use super::rpcd_uci::Uci;

const TIMEOUT: Duration = Duration::from_secs(10);

/// One JSON-RPC `call` as uhttpd handled it: what the object received
/// (with the session) and the `result` or `error` sent back.
#[derive(Clone, Debug)]
pub struct Call {
    pub object: String,
    pub method: String,
    pub args: Value,
    pub answer: Result<Value, (i32, &'static str)>,
}

type Hook = Box<dyn Fn(&str, &str) + Send + Sync>;

struct State {
    socket: PathBuf,
    acl: Value,
    pages: HashMap<String, String>,
    canned: HashMap<(String, String), Value>,
    calls: Vec<Call>,
    uci: Uci,
    before_call: Option<Hook>,
}

pub struct Uhttpd {
    pub port: u16,
    state: Arc<Mutex<State>>,
}

impl Uhttpd {
    /// Serve on 127.0.0.1, forwarding to the ubusd at `socket`, with the
    /// grants of `acl` (an rpcd acl.d file) and `uci` as the UCI config.
    pub fn start(socket: &Path, acl: Value, uci: Uci) -> Uhttpd {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the test web server");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State {
            socket: socket.to_path_buf(),
            acl,
            pages: HashMap::new(),
            canned: HashMap::new(),
            calls: Vec::new(),
            uci,
            before_call: None,
        }));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let state = Arc::clone(&shared);
                std::thread::spawn(move || serve(&state, stream));
            }
        });
        Uhttpd { port, state }
    }

    /// Serve `html` at /`name`; its URL.
    pub fn page(&self, name: &str, html: String) -> String {
        self.state
            .lock()
            .unwrap()
            .pages
            .insert(format!("/{name}"), html);
        format!("http://127.0.0.1:{}/{name}", self.port)
    }

    /// Answer `object.method` with this ubus `result` instead of the object.
    pub fn answer(&self, object: &str, method: &str, result: Value) {
        self.state
            .lock()
            .unwrap()
            .canned
            .insert((object.into(), method.into()), result);
    }

    /// Run `hook(object, method)` before each call is forwarded.
    pub fn before_call(&self, hook: impl Fn(&str, &str) + Send + Sync + 'static) {
        self.state.lock().unwrap().before_call = Some(Box::new(hook));
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }

    /// The UCI config as it stands after the calls.
    pub fn uci(&self) -> Uci {
        self.state.lock().unwrap().uci.clone()
    }
}

fn serve(state: &Mutex<State>, stream: TcpStream) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (verb, path) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let mut length = 0;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let (code, kind, text) = match (verb.as_str(), path.as_str()) {
        ("POST", "/ubus" | "/ubus/") => (
            "200 OK",
            "application/json",
            json_rpc(state, &body).to_string(),
        ),
        ("GET", page) => match state.lock().unwrap().pages.get(page) {
            Some(html) => ("200 OK", "text/html; charset=utf-8", html.clone()),
            None => ("404 Not Found", "text/plain", String::new()),
        },
        _ => ("400 Bad Request", "text/plain", String::new()),
    };
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {code}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
}

fn error(id: &Value, code: i32, message: &str) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } })
}

/// uhttpd's handling of one JSON-RPC request object.
fn json_rpc(state: &Mutex<State>, body: &[u8]) -> Value {
    let Ok(Value::Object(request)) = serde_json::from_slice::<Value>(body) else {
        return error(&Value::Null, -32700, "Parse error");
    };
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    if request.get("jsonrpc") != Some(&json!("2.0")) || !request["method"].is_string() {
        return error(&id, -32700, "Parse error");
    }
    if request["method"] != "call" {
        return error(&id, -32601, "Method not found");
    }
    let params = request.get("params").and_then(Value::as_array);
    let (Some(sid), Some(object), Some(method), Some(args)) = (
        params.and_then(|p| p.first()).and_then(Value::as_str),
        params.and_then(|p| p.get(1)).and_then(Value::as_str),
        params.and_then(|p| p.get(2)).and_then(Value::as_str),
        params.and_then(|p| p.get(3)).and_then(Value::as_object),
    ) else {
        return error(&id, -32700, "Parse error");
    };
    let (sent, answer) = call(state, sid, object, method, args);
    state.lock().unwrap().calls.push(Call {
        object: object.into(),
        method: method.into(),
        args: sent,
        answer: answer.clone(),
    });
    match answer {
        Ok(result) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
        Err((code, message)) => error(&id, code, message),
    }
}

/// Look the object up, check the session's access, forward the call with
/// the session added: the arguments sent (null when none were), and the
/// ubus `result` array or a JSON-RPC error.
fn call(
    state: &Mutex<State>,
    sid: &str,
    object: &str,
    method: &str,
    args: &serde_json::Map<String, Value>,
) -> (Value, Result<Value, (i32, &'static str)>) {
    let socket = state.lock().unwrap().socket.clone();
    if object != "uci" && !on_bus(&socket, object) {
        return (Value::Null, Err((-32000, "Object not found")));
    }
    if !granted(&state.lock().unwrap().acl, object, method) {
        return (Value::Null, Err((-32002, "Access denied")));
    }
    if args.contains_key("ubus_rpc_session") {
        return (Value::Null, Err((-32602, "Invalid parameters")));
    }
    // uhttpd copies the browser's arguments, then adds the session.
    let mut sent = match Msg::from_json(&Value::Object(args.clone())) {
        Msg::Table(t) => t,
        _ => Vec::new(),
    };
    sent.push(("ubus_rpc_session".into(), Msg::String(sid.into())));
    let answer = forward(state, &socket, object, method, sent.clone());
    (Msg::Table(sent).to_json(), answer)
}

/// The object's answer to the call, as uhttpd's `result`.
fn forward(
    state: &Mutex<State>,
    socket: &Path,
    object: &str,
    method: &str,
    args: Vec<(String, Msg)>,
) -> Result<Value, (i32, &'static str)> {
    if let Some(hook) = &state.lock().unwrap().before_call {
        hook(object, method);
    }
    let canned = state
        .lock()
        .unwrap()
        .canned
        .get(&(object.to_string(), method.to_string()))
        .cloned();
    if let Some(result) = canned {
        return Ok(result);
    }
    let answer = if object == "uci" {
        let acl = state.lock().unwrap().acl.clone();
        let Value::Object(args) = Msg::Table(args).to_json() else {
            unreachable!("a table is a JSON object")
        };
        state.lock().unwrap().uci.call(&acl, method, &args)
    } else {
        invoke(socket, object, method, args)?
    };
    Ok(match answer {
        Ok(reply) if reply.as_object().is_some_and(|r| !r.is_empty()) => json!([0, reply]),
        Ok(_) => json!([0]),
        Err(code) => json!([code]),
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn on_bus(socket: &Path, object: &str) -> bool {
    runtime().block_on(async {
        match Connection::connect(socket).await {
            Ok(mut c) => c.lookup(object).await.is_ok(),
            Err(_) => false,
        }
    })
}

/// The object's reply (a JSON object) or its ubus status.
fn invoke(
    socket: &Path,
    object: &str,
    method: &str,
    args: Vec<(String, Msg)>,
) -> Result<Result<Value, u32>, (i32, &'static str)> {
    runtime().block_on(async {
        let answer = tokio::time::timeout(TIMEOUT, async {
            let mut c = Connection::connect(socket).await?;
            c.call(object, method, args).await
        })
        .await
        .map_err(|_| (-32003, "ubus request timed out"))?;
        match answer {
            Ok(table) => Ok(Ok(Msg::Table(table).to_json())),
            Err(Error::Status(s)) => Ok(Err(s)),
            Err(_) => Err((-32603, "Internal error")),
        }
    })
}

/// rpcd's `session access` for a root login: some ACL group grants
/// `method` of `object` for read or write. luci-base's ACL grants the uci
/// object's methods; the config itself is checked by the uci plugin.
fn granted(acl: &Value, object: &str, method: &str) -> bool {
    object == "uci"
        || acl.as_object().into_iter().flatten().any(|(_, group)| {
            ["read", "write"].iter().any(|mode| {
                group[mode]["ubus"][object]
                    .as_array()
                    .is_some_and(|m| m.iter().any(|m| m == method || m == "*"))
            })
        })
}

/// The configs an ACL grants for `mode` (read or write) in the `uci` scope.
pub fn uci_grants(acl: &Value, mode: &str) -> Vec<String> {
    acl.as_object()
        .into_iter()
        .flatten()
        .flat_map(|(_, group)| group[mode]["uci"].as_array().into_iter().flatten())
        .filter_map(|c| c.as_str().map(str::to_string))
        .collect()
}
