//! A stand-in for the web server between LuCI's `rpc.js` and ubus: uhttpd
//! with its ubus JSON-RPC endpoint (`uhttpd -u /ubus`) and rpcd's session
//! access check, so that the views in headless Chromium talk to the real
//! `ntpgate` object on a test ubusd.
//!
//! What it mirrors, and where that is shown (openwrt/uhttpd `ubus.c`
//! unless said otherwise):
//! - `POST /ubus` or `/ubus/`, any query string dropped
//!   (`uh_ubus_handle_request` cuts the URL at `?`; luci.js adds a
//!   timestamp to every request URL).
//! - The body is one JSON-RPC request object, or an array of them
//!   (`uh_ubus_data_done`): each element of an array is handled in turn as
//!   a single request would be and the answer is the array of their
//!   answers, in order (`uh_ubus_init_batch`, `uh_ubus_next_batched_request`,
//!   `uh_ubus_complete_batch`); anything else is one -32700 "Parse error".
//!   luci.js sends every ubus call it queued in one animation frame as
//!   such an array (luci-base luci.js `flushRequestQueue`, in LuCI since
//!   2019; the capture in shared/fixtures/luci lists each call on its own).
//! - A request (`uh_ubus_handle_request_object`, `parse_json_rpc`,
//!   `parse_call_params`): not an object, no `jsonrpc: "2.0"`, no string
//!   `method`, or a `call` whose params are not [string, string, string,
//!   object] is -32700 "Parse error"; an object ubusd does not know is
//!   -32000 "Object not found"; a call the session may not make is -32002
//!   "Access denied"; a method other than `call` and `list` is -32601
//!   "Method not found". Every answer carries the request's `id` (null
//!   when it had none or was no object).
//! - `call` is forwarded with `ubus_rpc_session` (the session id) added
//!   after the browser's arguments; arguments that already hold
//!   `ubus_rpc_session` are -32602 "Invalid parameters"
//!   (`uh_ubus_send_request`; shared/fixtures/luci/uhttpd-ubus-capture.txt
//!   shows the object receiving `{"ubus_rpc_session": ...}` for `{}`).
//! - The answer to a call is `{"jsonrpc":"2.0","id":N,"result":[status]}`,
//!   or `[status, data]` whenever the object sent data, whatever the status
//!   (`uh_ubus_request_cb`, the legacy format; the capture shows
//!   `"result":[2]`). An object that is gone by the time the call reaches
//!   ubusd is status 4, not found (ubusd's answer to the invoke). No answer
//!   within uhttpd's default script timeout (60 s, `-t`; main.c) is -32003
//!   "ubus request timed out"; so is a connection to ubusd lost after the
//!   call went out (nothing else completes the request in uhttpd; it would
//!   answer when its timeout fires, this stand-in at once). A call that
//!   cannot be sent at all is -32603 "Internal error".
//! - `list` (`uh_ubus_send_list`), which LuCI's endpoint probe sends
//!   (luci.js `probeRPCBaseURL`): without an array of params, the paths of
//!   every object; with one, for each path listed the object's methods
//!   and their argument types by name. No session check.
//! - The session check is rpcd's `session access` (openwrt/rpcd
//!   `session.c`) for a root login with `read '*'` and `write '*'` (rpcd's
//!   default `/etc/config/rpcd`): every ACL group in acl.d is granted, so a
//!   call is allowed when an ACL file grants the method. The ACL given to
//!   [`Uhttpd::start`] is the app's own file; luci-base's grant of the
//!   `uci` object's methods is taken as given.
//! - Calls to the `uci` object go to [`super::rpcd_uci::Uci`], a stand-in for
//!   rpcd's uci plugin (no rpcd here), which `list` shows beside the
//!   objects on the test ubusd; everything else goes over the test ubusd to
//!   whoever published the object.
//!
//! Not served, because LuCI's views do not use them: `/ubus/call/...`,
//! GET (`/ubus/list`, subscriptions), CORS, and wildcards in `list` paths.
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
use ntpgate::ubus::wire::{Message, Value as Attr, attr, kind, status};
use serde_json::{Value, json};

use super::rpcd_uci::Uci;

/// uhttpd's default script timeout, which bounds a ubus call.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

type RpcError = (i32, &'static str);
const PARSE_ERROR: RpcError = (-32700, "Parse error");
const METHOD_NOT_FOUND: RpcError = (-32601, "Method not found");
const INVALID_PARAMETERS: RpcError = (-32602, "Invalid parameters");
const INTERNAL_ERROR: RpcError = (-32603, "Internal error");
const OBJECT_NOT_FOUND: RpcError = (-32000, "Object not found");
const ACCESS_DENIED: RpcError = (-32002, "Access denied");
const TIMED_OUT: RpcError = (-32003, "ubus request timed out");

/// One JSON-RPC `call` as uhttpd handled it: what the object received
/// (with the session) and the `result` or `error` sent back.
#[derive(Clone, Debug)]
pub struct Call {
    pub object: String,
    pub method: String,
    pub args: Value,
    pub answer: Result<Value, RpcError>,
}

type Hook = Box<dyn Fn(&str, &str) + Send + Sync>;

struct State {
    socket: PathBuf,
    acl: Value,
    pages: HashMap<String, String>,
    canned: HashMap<(String, String), Value>,
    calls: Vec<Call>,
    bodies: Vec<Value>,
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
            bodies: Vec::new(),
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

    /// The JSON bodies POSTed to the endpoint, in the order they came
    /// (null for one that did not parse).
    pub fn bodies(&self) -> Vec<Value> {
        self.state.lock().unwrap().bodies.clone()
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
    let verb = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("");
    let path = target.split('?').next().unwrap_or("").to_string();
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
            endpoint(state, &body).to_string(),
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

/// The endpoint's answer to one POST body: one request, or a batch.
fn endpoint(state: &Mutex<State>, body: &[u8]) -> Value {
    let parsed = serde_json::from_slice::<Value>(body).ok();
    state
        .lock()
        .unwrap()
        .bodies
        .push(parsed.clone().unwrap_or(Value::Null));
    match parsed {
        Some(Value::Array(requests)) => requests.iter().map(|r| request(state, r)).collect(),
        Some(one @ Value::Object(_)) => request(state, &one),
        _ => envelope(&Value::Null, Err(PARSE_ERROR)),
    }
}

fn envelope(id: &Value, answer: Result<Value, RpcError>) -> Value {
    match answer {
        Ok(result) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
        Err((code, message)) => {
            json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } })
        }
    }
}

/// One JSON-RPC request object, as uhttpd handles it.
fn request(state: &Mutex<State>, request: &Value) -> Value {
    let Value::Object(fields) = request else {
        return envelope(&Value::Null, Err(PARSE_ERROR));
    };
    let id = fields.get("id").cloned().unwrap_or(Value::Null);
    let method = fields.get("method").and_then(Value::as_str);
    if fields.get("jsonrpc") != Some(&json!("2.0")) || method.is_none() {
        return envelope(&id, Err(PARSE_ERROR));
    }
    let params = fields.get("params");
    let answer = match method {
        Some("call") => call_request(state, params),
        Some("list") => list(state, params),
        _ => Err(METHOD_NOT_FOUND),
    };
    envelope(&id, answer)
}

/// `call`: check the params, then look the object up, check the session's
/// access and forward; the call is logged.
fn call_request(state: &Mutex<State>, params: Option<&Value>) -> Result<Value, RpcError> {
    let params = params.and_then(Value::as_array);
    let field = |i: usize| params.and_then(|p| p.get(i));
    let (Some(sid), Some(object), Some(method), Some(args)) = (
        field(0).and_then(Value::as_str),
        field(1).and_then(Value::as_str),
        field(2).and_then(Value::as_str),
        field(3).and_then(Value::as_object),
    ) else {
        return Err(PARSE_ERROR);
    };
    let (sent, answer) = call(state, sid, object, method, args);
    state.lock().unwrap().calls.push(Call {
        object: object.into(),
        method: method.into(),
        args: sent,
        answer: answer.clone(),
    });
    answer
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
) -> (Value, Result<Value, RpcError>) {
    let socket = state.lock().unwrap().socket.clone();
    if object != "uci" && !on_bus(&socket, object) {
        return (Value::Null, Err(OBJECT_NOT_FOUND));
    }
    if !granted(&state.lock().unwrap().acl, object, method) {
        return (Value::Null, Err(ACCESS_DENIED));
    }
    if args.contains_key("ubus_rpc_session") {
        return (Value::Null, Err(INVALID_PARAMETERS));
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
) -> Result<Value, RpcError> {
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
    let (code, data) = if object == "uci" {
        let mut st = state.lock().unwrap();
        let acl = st.acl.clone();
        match st.uci.call(&acl, method, &args) {
            Ok(reply) => (status::OK, reply),
            Err(code) => (code, Vec::new()),
        }
    } else {
        runtime().block_on(invoke(socket, object, method, args))?
    };
    Ok(if data.is_empty() {
        json!([code])
    } else {
        json!([code, Msg::Table(data).to_json()])
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

/// The ubus status of the call and the data the object sent with it,
/// collected as libubus does (`ubus_invoke_async` with a data callback):
/// every DATA message of the request, then its STATUS.
async fn invoke(
    socket: &Path,
    object: &str,
    method: &str,
    args: Vec<(String, Msg)>,
) -> Result<(u32, Vec<(String, Msg)>), RpcError> {
    let mut c = Connection::connect(socket)
        .await
        .map_err(|_| INTERNAL_ERROR)?;
    let id = match c.lookup(object).await {
        Ok(id) => id,
        Err(Error::Status(code)) => return Ok((code, Vec::new())),
        Err(_) => return Err(INTERNAL_ERROR),
    };
    // A sequence number of its own, apart from the lookup's.
    let seq = 0x4000;
    let invoke = Message::new(kind::INVOKE, seq, id)
        .with(attr::OBJID, Attr::U32(id))
        .with(attr::METHOD, Attr::Str(method.into()))
        .with(attr::DATA, Attr::Table(args));
    c.send(&invoke).await.map_err(|_| INTERNAL_ERROR)?;
    let answer = async {
        let mut data = Vec::new();
        loop {
            let m = match c.recv().await {
                Ok(m) => m,
                Err(Error::Malformed(_)) => continue,
                Err(_) => return Err(TIMED_OUT),
            };
            if m.seq != seq {
                continue;
            }
            match m.kind {
                kind::DATA => data.extend(m.table(attr::DATA).unwrap_or_default().to_vec()),
                kind::STATUS => return Ok((m.u32(attr::STATUS).unwrap_or(status::OK), data)),
                _ => {}
            }
        }
    };
    tokio::time::timeout(SCRIPT_TIMEOUT, answer)
        .await
        .unwrap_or(Err(TIMED_OUT))
}

/// `list`: every object's path, or the methods of the paths asked for.
fn list(state: &Mutex<State>, params: Option<&Value>) -> Result<Value, RpcError> {
    let socket = state.lock().unwrap().socket.clone();
    let objects = runtime().block_on(objects(&socket));
    let Some(paths) = params.and_then(Value::as_array) else {
        let mut names: Vec<Value> = objects.iter().map(|(p, _)| json!(p)).collect();
        names.push(json!("uci"));
        return Ok(Value::Array(names));
    };
    let mut out = serde_json::Map::new();
    for path in paths.iter().filter_map(Value::as_str) {
        for (_, signature) in objects.iter().filter(|(p, _)| p == path) {
            out.insert(path.into(), methods(signature));
        }
    }
    Ok(Value::Object(out))
}

/// Every object on the bus with its signature (a LOOKUP without a path).
async fn objects(socket: &Path) -> Vec<(String, Vec<(String, Msg)>)> {
    let Ok(mut c) = Connection::connect(socket).await else {
        return Vec::new();
    };
    let seq = 0x4001;
    if c.send(&Message::new(kind::LOOKUP, seq, 0)).await.is_err() {
        return Vec::new();
    }
    let mut found = Vec::new();
    while let Ok(m) = c.recv().await {
        match (m.seq == seq, m.kind) {
            (true, kind::DATA) => found.push((
                m.str(attr::OBJPATH).unwrap_or_default().to_string(),
                m.table(attr::SIGNATURE).unwrap_or_default().to_vec(),
            )),
            (true, kind::STATUS) => break,
            _ => {}
        }
    }
    found
}

/// A signature as uhttpd's verbose `list` shows it: each method's
/// arguments with the name of their blobmsg type.
fn methods(signature: &[(String, Msg)]) -> Value {
    let mut out = serde_json::Map::new();
    for (method, policy) in signature {
        let mut args = serde_json::Map::new();
        if let Msg::Table(fields) = policy {
            for (name, kind) in fields {
                let Msg::Int32(kind) = kind else { continue };
                let name_of_kind = match kind {
                    1 => "array",
                    2 => "object",
                    3 => "string",
                    5 => "number",
                    7 => "boolean",
                    _ => "unknown",
                };
                args.insert(name.clone(), json!(name_of_kind));
            }
        }
        out.insert(method.clone(), Value::Object(args));
    }
    Value::Object(out)
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
