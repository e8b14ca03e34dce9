//! luci-app-ntpgate in headless Chromium, talking to the real daemon: each
//! page is served by a stand-in for uhttpd (tests/luci/uhttpd.rs), whose
//! ubus JSON-RPC endpoint forwards the views' calls to the `ntpgate` object
//! on a test ubusd, as uhttpd does (adding `ubus_rpc_session`, answering
//! `[status]` or `[status, reply]`, or a JSON-RPC error). The views run on
//! tests/luci/shim.js, LuCI's runtime as far as the views use it (rpc.js's
//! handling of those answers, the poller, form.js's Flag, GridSection and
//! save). The assertions are on the text a person sees; no page may show
//! `undefined` or `NaN`; screenshots land in target/luci-screenshots/.
//!
//! Covered: the shim's handling of uhttpd's answers as rpc.js's; the
//! status page on live daemons (synchronised to four chronyd
//! upstreams, unsynchronised, a closed pinhole, no upstreams), the overview
//! widget, the daemon not running (no object, or status 4), a refused call
//! (the captured `[2]`), answers the pages cannot use, access denied,
//! reload applied / unchanged / refused with its errors, the poll calling
//! again; the settings form's validation against the real `ntpgate check`
//! (listen, allow and deny on a table of addresses and prefixes, listen
//! conflicts included), what a save sends to UCI and that the daemon reads
//! the saved file as it read the original, Save stopped by an invalid
//! value, placeholders that are the daemon's defaults, `modalonly` options
//! left to the edit dialog; and the app's files (ACL, menu, .pot).

mod common;
#[path = "luci/rpcd_uci.rs"]
mod rpcd_uci;
#[path = "luci/uhttpd.rs"]
mod uhttpd;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::ubusd::{Ubusd, publish_in_thread};
use common::*;
use ntpgate::config::network::Interfaces;
use ntpgate::ubus::blob::Msg;
use ntpgate::ubus::session::Connection;
use rpcd_uci::Uci;
use serde_json::{Value, json};
use uhttpd::Uhttpd;

const APP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/luci-app/luci-app-ntpgate");
const VIEWS: &str = "htdocs/luci-static/resources/view";
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/luci");

fn app_acl() -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(APP).join("root/usr/share/rpcd/acl.d/luci-app-ntpgate.json"),
        )
        .unwrap(),
    )
    .unwrap()
}

/// A router as far as LuCI sees it: a ubusd, and the web server in front
/// of it with the app's ACL and `uci` as /etc/config/ntpgate.
struct Router {
    socket: PathBuf,
    web: Uhttpd,
    _ubusd: Ubusd,
}

impl Router {
    fn new(uci: &str) -> Router {
        Self::with_acl(uci, app_acl())
    }

    fn with_acl(uci: &str, acl: Value) -> Router {
        let socket = scratch_dir().join("ubus.sock");
        let ubusd = Ubusd::start(&socket);
        let web = Uhttpd::start(&socket, acl, Uci::parse("ntpgate", uci));
        Router {
            socket,
            web,
            _ubusd: ubusd,
        }
    }

    /// Run the daemon with `config` on this router's ubusd until its
    /// status satisfies `ready`.
    fn daemon(&self, config: &str, ready: impl Fn(&Value) -> bool) -> Daemon {
        let config = if config.contains("ubus_socket") {
            config.to_string()
        } else {
            config.replacen(
                "config server\n",
                &format!(
                    "config server\n\toption ubus_socket '{}'\n",
                    self.socket.display()
                ),
                1,
            )
        };
        let d = Daemon::start(&config, 1);
        within_every(Duration::from_millis(200), Duration::from_secs(30), || {
            call_status(&self.socket).is_some_and(|s| ready(&s))
        })
        .unwrap_or_else(|| panic!("status never ready: {}", d.log()));
        d
    }

    /// A page that opens `view` (a file under the app's view directory) as
    /// LuCI's dispatcher does, then runs `after` (JS) once it rendered.
    fn view(&self, name: &str, view: &str, after: &str) -> String {
        let source = std::fs::read_to_string(Path::new(APP).join(VIEWS).join(view)).unwrap();
        self.page(
            name,
            &format!(
                "window.luciView({});",
                serde_json::to_string(&source).unwrap()
            ),
            after,
        )
    }

    /// Status > Overview with the app's include.
    fn overview(&self, name: &str) -> String {
        let source = std::fs::read_to_string(
            Path::new(APP)
                .join(VIEWS)
                .join("status/include/50_ntpgate.js"),
        )
        .unwrap();
        self.page(
            name,
            &format!(
                "window.luciOverview([{}]);",
                serde_json::to_string(&source).unwrap()
            ),
            "",
        )
    }

    fn page(&self, name: &str, open: &str, after: &str) -> String {
        let modules = app_modules();
        let shim = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/luci/shim.js"),
        )
        .unwrap();
        let html = format!(
            "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{name}</title></head>\
             <body style=\"font-family: sans-serif\"><div id=\"maincontent\"><div id=\"view\"></div></div>\
             <script>window.LUCI_ENV = {{ sessionid: '0123456789abcdef0123456789abcdef' }};\
             window.LUCI_SOURCES = {modules};</script>\
             <script>{shim}</script>\
             <script>{open}\
             (function wait() {{ if (document.body.getAttribute('data-rendered')) {{ {after} }} else setTimeout(wait, 20); }})();\
             </script></body></html>"
        );
        self.web.page(&format!("{name}.html"), html)
    }
}

/// The app's modules besides its views (under htdocs/luci-static/resources),
/// by the name a view requires them with, and their source.
fn app_modules() -> Value {
    let resources = Path::new(APP).join("htdocs/luci-static/resources");
    let mut modules = serde_json::Map::new();
    let mut dirs = vec![resources.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().map(Result::unwrap) {
            let path = entry.path();
            if path.is_dir() && path != resources.join("view") {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "js") {
                let name = path
                    .strip_prefix(&resources)
                    .unwrap()
                    .with_extension("")
                    .to_string_lossy()
                    .replace('/', ".");
                modules.insert(name, json!(std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    Value::Object(modules)
}

fn call_status(socket: &Path) -> Option<Value> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = Connection::connect(socket).await.ok()?;
        c.call("ntpgate", "status", Vec::new())
            .await
            .ok()
            .map(|t| Msg::Table(t).to_json())
    })
}

fn chromium() -> PathBuf {
    require("chromium", "chromium")
}

fn chromium_args(dir: &Path) -> Vec<String> {
    [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        // Virtual time: the poller's seconds pass at once; it stands still
        // while a request is out.
        "--virtual-time-budget=8000",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("--user-data-dir={}", dir.display())])
    .collect()
}

/// The DOM after the page's scripts ran (8 s of the page's time).
fn dump(url: &str) -> String {
    let profile = scratch_dir();
    let out = Command::new(chromium())
        .args(chromium_args(&profile))
        .arg("--dump-dom")
        .arg(url)
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        dom.contains("data-rendered=\"yes\""),
        "the view did not render:\n{dom}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dom
}

fn screenshot(url: &str, name: &str) {
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/luci-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let png = shots.join(format!("{name}.png"));
    let _ = std::fs::remove_file(&png);
    let profile = scratch_dir();
    run_ok(
        Command::new(chromium())
            .args(chromium_args(&profile))
            .arg(format!("--screenshot={}", png.display()))
            .arg("--window-size=1280,2400")
            .arg(url),
    );
    assert!(
        std::fs::metadata(&png).unwrap().len() > 10_000,
        "screenshot {}",
        png.display()
    );
}

/// The visible text of a DOM dump from #maincontent to the end of the
/// body (where LuCI's dialogs go), scripts and tags dropped, entities
/// decoded; no page may show what a script failed to fill in.
fn text(dom: &str) -> String {
    let body = dom.split("<div id=\"maincontent\">").nth(1).unwrap_or(dom);
    let body = body.split("</body>").next().unwrap_or(body);
    let t = visible(&without_scripts(body));
    for bad in ["undefined", "NaN", "[object Object]"] {
        assert!(!t.contains(bad), "the page shows {bad:?}:\n{t}");
    }
    t
}

/// `html` without its <script> elements (the page's own scripts follow
/// #maincontent, before a dialog).
fn without_scripts(html: &str) -> String {
    let mut out = String::new();
    let mut rest = html;
    while let Some(start) = rest.find("<script") {
        out.push_str(&rest[..start]);
        rest = rest[start..]
            .split_once("</script>")
            .map_or("", |(_, after)| after);
    }
    out + rest
}

fn visible(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => {
                in_tag = true;
                out.push(' ');
            }
            '>' => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Render and screenshot; the visible text.
fn show(url: &str, screenshot_name: &str) -> String {
    let t = text(&dump(url));
    screenshot(url, screenshot_name);
    t
}

fn assert_shows(text: &str, expected: &[&str]) {
    for e in expected {
        assert!(text.contains(e), "missing {e:?} in:\n{text}");
    }
}

#[test]
fn status_page_renders_live_answers() {
    require("chronyd", "chrony");
    let router = Router::new("");
    // Synchronised to four upstreams (chronyd -x, stratum 1; observe mode).
    let upstreams: Vec<Chronyd> = (0..4).map(|_| Chronyd::server(1)).collect();
    let lines: String = upstreams
        .iter()
        .map(|c| format!("\tlist upstream '127.0.0.1:{}'\n", c.port))
        .collect();
    let d = router.daemon(
        &format!(
            "config server\n\tlist listen '127.0.0.1'\n\toption port '{}'\n{lines}\toption clock_control '0'\n",
            free_port()
        ),
        |s| {
            let ups = s["upstreams"].as_array().unwrap();
            s["sync"]["synchronised"] == true
                && ups.iter().all(|u| u["reach"] != 0)
                && ups.iter().any(|u| u["status"] == "selected")
        },
    );
    let t = show(
        &router.view("synchronised", "ntpgate/status.js", ""),
        "status-synchronised",
    );
    assert_shows(
        &t,
        &[
            "Serving time, synchronised",
            "Stratum: 2",
            "Serving good time.",
            "Upstream servers",
            "127.0.0.1:",
            "At least 4 upstream servers",
            "Server",
            "Requests received",
        ],
    );
    // Four rows in the upstreams table, one of them the selected peer.
    assert_eq!(t.matches(" 127.0.0.1:").count(), 4, "{t}");
    assert!(t.contains(" selected"), "{t}");
    // The checklist: synchronised at stratum 2 and four good upstreams pass;
    // no WAN port (serve_wan off) fails with its fix.
    assert!(
        t.contains("\u{2714} Synchronised, at stratum 4 or better"),
        "{t}"
    );
    assert!(t.contains("\u{2714} At least 4 upstream servers"), "{t}");
    assert!(
        t.contains("\u{2714} No pool or leap-smearing upstream servers"),
        "{t}"
    );
    assert!(t.contains("\u{2718} The router's NTP port is open to the WAN Enable \"Serve the WAN\" in the Settings."), "{t}");
    assert!(t.contains("No pinholes are configured."), "{t}");
    // What the object received: the browser's {} and uhttpd's session.
    let calls = router.web.calls();
    let status = calls
        .iter()
        .find(|c| c.method == "status")
        .expect("a status call");
    assert_eq!(
        status.args,
        json!({ "ubus_rpc_session": "0123456789abcdef0123456789abcdef" })
    );
    assert_eq!(status.answer.as_ref().unwrap()[0], 0, "{status:?}");

    // The Status > Overview widget.
    let t = show(&router.overview("widget"), "overview-widget");
    assert_shows(
        &t,
        &[
            "NTP server",
            "Synchronised",
            "Stratum 2",
            "Pinholes open 0 / 0",
        ],
    );
    drop(d);

    // Unsynchronised: its upstreams never answer.
    let _d = router.daemon(
        &format!(
            "config server\n\tlist listen '127.0.0.1'\n\toption port '{}'\n{SILENT_UPSTREAM}",
            free_port()
        ),
        |s| s["upstreams"].as_array().is_some_and(|u| !u.is_empty()),
    );
    let t = show(
        &router.view("unsynchronised", "ntpgate/status.js", ""),
        "status-unsynchronised",
    );
    assert_shows(
        &t,
        &[
            "Serving, not synchronised",
            "Not synchronised: clients are told so (leap 3)",
            "\u{2718} Synchronised, at stratum 4 or better",
            "\u{2718} At least 4 upstream servers",
            "unreachable",
        ],
    );
    drop(_d);

    // A pinhole whose device is not there: closed, and why.
    let _d = router.daemon(
        &format!(
            "config server\n\tlist listen '127.0.0.1'\n\toption port '{}'\n\toption local_stratum '3'\nconfig pinhole 'nas'\n\toption device 'br-none'\n\toption suffix '::50'\n",
            free_port()
        ),
        |s| {
            s["pinholes"][0]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("not found"))
        },
    );
    let t = show(
        &router.view("pinhole-closed", "ntpgate/status.js", ""),
        "status-pinhole-closed",
    );
    assert_shows(
        &t,
        &[
            "Pinholes",
            "nas",
            "suffix ::50 (br-none)",
            "closed",
            "device br-none (lan) not found",
        ],
    );
    drop(_d);

    // No upstreams, the local clock served (a lab).
    let _d = router.daemon(
        &format!(
            "config server\n\tlist listen '127.0.0.1'\n\toption port '{}'\n\toption local_stratum '3'\n",
            free_port()
        ),
        |s| s["sync"]["synchronised"] == true,
    );
    let t = show(
        &router.view("no-upstreams", "ntpgate/status.js", ""),
        "status-no-upstreams",
    );
    assert_shows(
        &t,
        &[
            "Serving the local clock (local_stratum): for labs only",
            "No upstream servers are configured.",
            "\u{2718} No pool or leap-smearing upstream servers",
        ],
    );
}

/// The `result` uhttpd sent for LuCI's `ntpgate <method>` in the capture.
fn captured_result(method: &str) -> Value {
    let capture =
        std::fs::read_to_string(Path::new(FIXTURES).join("uhttpd-ubus-capture.txt")).unwrap();
    let lines: Vec<&str> = capture.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("POST /ubus") && l.contains(&format!("\"{method}\"")))
        .unwrap_or_else(|| panic!("the {method} call in the capture"));
    let answer: Value =
        serde_json::from_str(lines[at + 1].trim_start_matches("<- ")).expect("uhttpd's answer");
    answer["result"].clone()
}

/// rpc.js's handling of uhttpd's answers, on the shim: a non-zero status
/// resolves as the bare number unless the call rejects, `expect` picks or
/// falls back, a JSON-RPC error rejects (shared/fixtures/luci/README.md),
/// `filter` makes the result (luci-base rpc.js).
#[test]
fn shim_treats_answers_as_rpc_js_does() {
    let router = Router::new("");
    let _d = local_clock(&router);
    router
        .web
        .answer("ntpgate", "reload", captured_result("reload"));
    let view = r#"'use strict';
'require view';
'require rpc';
var plain = rpc.declare({ object: 'ntpgate', method: 'reload', expect: { } });
var rejecting = rpc.declare({ object: 'ntpgate', method: 'reload', expect: { }, reject: true });
var whole = rpc.declare({ object: 'ntpgate', method: 'reload', expect: { '': { fallback: true } } });
var sync = rpc.declare({ object: 'ntpgate', method: 'status', expect: { sync: { } } });
var absent = rpc.declare({ object: 'nosuchobject', method: 'status', reject: true });
var filtered = rpc.declare({ object: 'ntpgate', method: 'status', expect: { sync: { } },
	filter: function(sync, args, extra) { return [ sync.stratum, args, extra ]; } });
function settle(p) {
	return p.then(function(v) { return { resolved: v }; }, function(e) { return { rejected: e.name + ': ' + e.message }; });
}
return view.extend({
	load: function() { return Promise.all([ plain(), rejecting(), whole(), sync(), absent(), filtered('beyond the params') ].map(settle)); },
	render: function(r) { return E('pre', { 'id': 'results' }, [ JSON.stringify(r) ]); }
});
"#;
    let url = router.page(
        "rpc",
        &format!("window.luciView({});", serde_json::to_string(view).unwrap()),
        "",
    );
    let dom = dump(&url);
    let results: Value = serde_json::from_str(
        &dom.split("<pre id=\"results\">")
            .nth(1)
            .expect("the results")
            .split("</pre>")
            .next()
            .unwrap()
            .replace("&quot;", "\""),
    )
    .unwrap();
    assert_eq!(results[0], json!({ "resolved": 2 }), "{results}");
    assert_eq!(
        results[1],
        json!({ "rejected": "RPCError: RPC call to ntpgate/reload failed with ubus code 2: Invalid argument" })
    );
    assert_eq!(results[2], json!({ "resolved": { "fallback": true } }));
    assert_eq!(results[3]["resolved"]["stratum"], 3, "{results}");
    assert_eq!(
        results[4],
        json!({ "rejected": "RPCError: RPC call to nosuchobject/status failed with error -32000: Object not found" })
    );
    // filter(the expected value, the params sent, the extra arguments).
    assert_eq!(
        results[5],
        json!({ "resolved": [3, {}, "beyond the params"] }),
        "{results}"
    );
    // Each went out as rpc.js sends it.
    let first = router.web.calls()[0].clone();
    assert_eq!(
        first.args,
        json!({ "ubus_rpc_session": "0123456789abcdef0123456789abcdef" })
    );
}

/// POST `body` to the router's ubus endpoint at `path`; the JSON answer.
fn post(router: &Router, path: &str, body: &str) -> Value {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", router.web.port)).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, json) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{answer}");
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {answer}"))
}

/// The uhttpd stand-in as uhttpd's ubus.c answers: a batch element by
/// element, in order, each with its id; `list` as LuCI's probe sends it;
/// a non-zero status keeps the data the object sent with it.
#[test]
fn web_server_answers_as_uhttpd() {
    let router = Router::new("config server 'main'\n");
    let _d = local_clock(&router);
    let session = "0123456789abcdef0123456789abcdef";
    let call = |id: u32, object: &str, method: &str| json!({ "jsonrpc": "2.0", "id": id, "method": "call", "params": [session, object, method, {}] });
    let batch = json!([
        call(1, "ntpgate", "status"),
        5,
        call(3, "nosuchobject", "status"),
        { "jsonrpc": "2.0", "id": 4, "method": "nosuchmethod" },
        { "jsonrpc": "2.0", "id": 5, "method": "call", "params": [session, "ntpgate"] },
        call(6, "uci", "get"),
    ]);
    // luci.js adds a timestamp to the URL; uhttpd drops the query.
    let answers = post(&router, "/ubus/?1700000000000", &batch.to_string());
    let answers = answers.as_array().expect("an array of answers");
    assert_eq!(answers.len(), 6, "{answers:?}");
    assert_eq!(answers[0]["id"], 1);
    assert_eq!(answers[0]["result"][0], 0, "{answers:?}");
    assert_eq!(answers[0]["result"][1]["sync"]["stratum"], 3);
    assert_eq!(
        answers[1],
        json!({ "jsonrpc": "2.0", "id": null, "error": { "code": -32700, "message": "Parse error" } })
    );
    assert_eq!(
        answers[2],
        json!({ "jsonrpc": "2.0", "id": 3, "error": { "code": -32000, "message": "Object not found" } })
    );
    assert_eq!(answers[3]["error"]["code"], -32601, "{answers:?}");
    assert_eq!(answers[4]["error"]["code"], -32700, "{answers:?}");
    // uci get without a config: rpcd's invalid argument, as a ubus status.
    assert_eq!(
        answers[5],
        json!({ "jsonrpc": "2.0", "id": 6, "result": [2] })
    );
    assert_eq!(router.web.bodies(), [batch]);

    // LuCI's endpoint probe: `list` without params, every object's path.
    let probe = post(
        &router,
        "/ubus/",
        r#"{"jsonrpc":"2.0","id":"init","method":"list"}"#,
    );
    assert_eq!(probe["id"], "init");
    let paths = probe["result"].as_array().expect("a list of paths");
    assert!(paths.contains(&json!("ntpgate")), "{probe}");
    let methods = post(
        &router,
        "/ubus",
        r#"{"jsonrpc":"2.0","id":7,"method":"list","params":["ntpgate"]}"#,
    );
    assert_eq!(
        methods["result"]["ntpgate"]["status"],
        json!({}),
        "{methods}"
    );
}

/// The rpcd uci stand-in as rpcd's uci.c applies a change: a list set
/// again moves to the end of its section; a set with one bad value
/// changes nothing; values are strings, integers or booleans.
#[test]
fn uci_stand_in_changes_as_rpcd() {
    let router = Router::new(
        "config server 'main'\n\tlist listen '192.0.2.1'\n\toption port '123'\n\toption driftfile '/tmp/d'\n",
    );
    let session = "0123456789abcdef0123456789abcdef";
    let uci = |method: &str, args: Value| {
        let mut args = args;
        args["config"] = json!("ntpgate");
        let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "call", "params": [session, "uci", method, args] });
        post(&router, "/ubus", &body.to_string())["result"].clone()
    };
    let file = || router.web.uci().export();
    let before = file();
    // Any bad value: the answer is its status, and nothing is applied.
    for bad in [
        json!({ "port": "124", "bad-name": "x" }),
        json!({ "port": 1.5 }),
        json!({ "port": "124", "listen": [] }),
        json!({ "port": { "nested": "x" } }),
    ] {
        let answer = uci("set", json!({ "section": "main", "values": bad }));
        assert_eq!(answer, json!([2]), "{bad}");
        assert_eq!(file(), before, "{bad}");
    }
    assert_eq!(
        uci("set", json!({ "section": "main", "values": {} })),
        json!([4])
    );
    assert_eq!(
        uci(
            "set",
            json!({ "section": "nosuch", "values": { "port": "1" } })
        ),
        json!([4])
    );
    assert_eq!(
        uci(
            "delete",
            json!({ "section": "main", "options": ["nosuch"] })
        ),
        json!([4])
    );
    // A list set again goes last; an option keeps its place; integers
    // as libubox holds them (int32 unsigned), booleans as 1/0. (The
    // values arrive in key order: see the stand-in's header.)
    let answer = uci(
        "set",
        json!({ "section": "main", "values": { "listen": ["192.0.2.2"], "port": 7, "enabled": true, "ratelimit_burst": -1 } }),
    );
    assert_eq!(answer, json!([0]));
    assert_eq!(
        file(),
        "\nconfig server 'main'\n\toption port '7'\n\toption driftfile '/tmp/d'\n\toption enabled '1'\n\tlist listen '192.0.2.2'\n\toption ratelimit_burst '4294967295'\n\n"
    );
    // A single value on a list replaces it, last; an empty one deletes.
    let answer = uci(
        "set",
        json!({ "section": "main", "values": { "port": "", "listen": "::" } }),
    );
    assert_eq!(answer, json!([0]));
    assert_eq!(
        file(),
        "\nconfig server 'main'\n\toption driftfile '/tmp/d'\n\toption enabled '1'\n\toption ratelimit_burst '4294967295'\n\toption listen '::'\n\n"
    );
}

/// An object that answers `refuse` with data and then status 2, as an
/// object may: uhttpd's legacy format keeps both.
#[test]
fn web_server_keeps_data_sent_with_an_error() {
    let mut acl = app_acl();
    acl["luci-app-ntpgate"]["read"]["ubus"]["oddobject"] = json!(["refuse"]);
    let router = Router::with_acl("", acl);
    publish_in_thread(
        &router.socket,
        "oddobject",
        vec![("refuse", vec![])],
        |mut c, id| async move {
            use ntpgate::ubus::wire::{Message, Value as Attr, attr, kind};
            while let Ok(m) = c.recv().await {
                if m.kind != kind::INVOKE {
                    continue;
                }
                let why = vec![("why".to_string(), Msg::String("refused".into()))];
                let data = Message::new(kind::DATA, m.seq, m.peer)
                    .with(attr::OBJID, Attr::U32(id))
                    .with(attr::DATA, Attr::Table(why));
                let status = Message::new(kind::STATUS, m.seq, m.peer)
                    .with(attr::STATUS, Attr::U32(2))
                    .with(attr::OBJID, Attr::U32(id));
                c.send(&data).await.unwrap();
                c.send(&status).await.unwrap();
            }
        },
    );
    let answer = post(
        &router,
        "/ubus",
        r#"{"jsonrpc":"2.0","id":1,"method":"call","params":["0123456789abcdef0123456789abcdef","oddobject","refuse",{}]}"#,
    );
    assert_eq!(
        answer["result"],
        json!([2, { "why": "refused" }]),
        "{answer}"
    );
}

fn local_clock(router: &Router) -> Daemon {
    router.daemon(
        &format!(
            "config server\n\tlist listen '127.0.0.1'\n\toption port '{}'\n\toption local_stratum '3'\n",
            free_port()
        ),
        |s| s["sync"]["synchronised"] == true,
    )
}

#[test]
fn pages_when_the_daemon_is_not_running() {
    // ubusd has no ntpgate object: uhttpd answers -32000.
    let router = Router::new("");
    let t = show(
        &router.view("daemon-down", "ntpgate/status.js", ""),
        "status-daemon-down",
    );
    assert_shows(&t, &["ntpgate is not running", "/etc/init.d/ntpgate start"]);
    assert!(!t.contains("not synchronised"), "{t}");
    assert_eq!(
        router.web.calls()[0].answer,
        Err((-32000, "Object not found"))
    );
    let t = show(
        &router.overview("widget-daemon-down"),
        "overview-daemon-down",
    );
    assert_shows(&t, &["ntpgate is not running", "/etc/init.d/ntpgate start"]);
}

/// Answers the pages cannot use: each is named for what it is, never
/// shown as "undefined" (text() refuses that) nor as a generic failure.
#[test]
fn pages_when_the_answer_is_not_understood() {
    let router = Router::new("");
    let _d = local_clock(&router);
    for (name, result, expected) in [
        // ubusd lost the object between uhttpd's lookup and the call.
        ("gone", json!([4]), "ntpgate is not running"),
        (
            "no-sync",
            json!([0, { "server": {} }]),
            "does not understand (it has no sync section): {\"server\":{}}",
        ),
        (
            "sync-not-object",
            json!([0, { "sync": 3 }]),
            "does not understand (it has no sync section)",
        ),
        ("no-data", json!([0]), "does not understand (no object): 0"),
        (
            "no-status",
            json!([]),
            "The router sent an answer this page does not understand: RPC call to ntpgate/status failed with ubus code 0",
        ),
    ] {
        router.web.answer("ntpgate", "status", result);
        let t = text(&dump(&router.view(
            &format!("status-{name}"),
            "ntpgate/status.js",
            "",
        )));
        assert_shows(&t, &[expected]);
        for wrong in [
            "No answer from the router",
            "refused the request",
            "Stratum",
        ] {
            assert!(!t.contains(wrong), "{name}: {wrong:?} in:\n{t}");
        }
        let t = text(&dump(&router.overview(&format!("overview-{name}"))));
        assert_shows(&t, &[expected]);
    }
}

#[test]
fn pages_when_the_daemon_refuses_the_call() {
    // The status uhttpd sent in the capture: [2], what a daemon that
    // refused ubus_rpc_session answered.
    let refused = captured_result("status");
    assert_eq!(refused, json!([2]));
    let router = Router::new("");
    let _d = local_clock(&router);
    router.web.answer("ntpgate", "status", refused);
    let t = show(
        &router.view("status-refused", "ntpgate/status.js", ""),
        "status-refused",
    );
    assert_shows(
        &t,
        &["The ntpgate daemon refused the request", "Invalid argument"],
    );
    assert!(!t.contains("not synchronised"), "{t}");
    let t = show(&router.overview("widget-refused"), "overview-refused");
    assert_shows(&t, &["The ntpgate daemon refused the request"]);
    assert!(!t.contains("Stratum"), "{t}");
}

#[test]
fn pages_when_access_is_denied() {
    // A LuCI user whose ACL does not grant `ntpgate status`: -32002.
    let mut acl = app_acl();
    acl["luci-app-ntpgate"]["read"]["ubus"]["ntpgate"] = json!([]);
    let router = Router::with_acl("", acl);
    let _d = local_clock(&router);
    let t = show(
        &router.view("status-denied", "ntpgate/status.js", ""),
        "status-denied",
    );
    assert_shows(&t, &["Access denied"]);
    // Not taken for one of explain()'s other cases.
    for other in ["is not running", "No answer from the router", "refused"] {
        assert!(!t.contains(other), "{other:?} in:\n{t}");
    }
    assert_eq!(router.web.calls()[0].answer, Err((-32002, "Access denied")));
    let t = show(&router.overview("widget-denied"), "overview-denied");
    assert_shows(&t, &["Access denied"]);
}

/// Click Reload on the status page; the notification's text.
fn reload(router: &Router, name: &str) -> String {
    let after = "document.querySelector('.cbi-page-actions button').click();";
    let t = show(&router.view(name, "ntpgate/status.js", after), name);
    let note = t
        .split("Dismiss")
        .next()
        .expect("a notification")
        .to_string();
    assert!(t.contains("Dismiss"), "no notification after Reload:\n{t}");
    note
}

#[test]
fn reload_says_what_the_daemon_did() {
    let router = Router::new("");
    let port = free_port();
    let config = |burst: &str| {
        format!(
            "config server\n\toption ubus_socket '{}'\n\tlist listen '127.0.0.1'\n\toption port '{port}'\n\toption local_stratum '3'\n\toption ratelimit_burst '{burst}'\n",
            router.socket.display()
        )
    };
    let d = router.daemon(&config("16"), |s| s["sync"]["synchronised"] == true);

    let note = reload(&router, "reload-unchanged");
    assert!(note.contains("Configuration unchanged."), "{note}");

    std::fs::write(&d.config_path, config("20")).unwrap();
    let note = reload(&router, "reload-applied");
    assert!(note.contains("Configuration applied."), "{note}");

    // A file the daemon refuses: the page shows the daemon's errors.
    std::fs::write(&d.config_path, config("0")).unwrap();
    let note = reload(&router, "reload-refused");
    assert!(note.contains("Configuration refused"), "{note}");
    let answer = router
        .web
        .calls()
        .into_iter()
        .rfind(|c| c.method == "reload")
        .unwrap()
        .answer
        .unwrap();
    assert_eq!(answer[1]["result"], "refused", "{answer}");
    let errors = answer[1]["errors"].as_array().unwrap();
    assert!(!errors.is_empty());
    for e in errors {
        assert!(note.contains(e.as_str().unwrap()), "{e} in:\n{note}");
    }
    assert!(note.contains("ratelimit_burst: '0'"), "{note}");
    assert!(!note.contains("unchanged"), "{note}");

    // A daemon that refuses the call itself (the capture's [2]).
    router
        .web
        .answer("ntpgate", "reload", captured_result("reload"));
    let note = reload(&router, "reload-call-refused");
    assert!(
        note.contains("The ntpgate daemon refused the request"),
        "{note}"
    );
    assert!(!note.contains("unchanged"), "{note}");
}

#[test]
fn status_page_polls_again() {
    let router = Router::new("");
    let port = free_port();
    let _d = router.daemon(
        &format!(
            "config server\n\tlist listen '127.0.0.1'\n\toption port '{port}'\n\toption local_stratum '3'\n"
        ),
        |s| s["sync"]["synchronised"] == true,
    );
    // One NTP request before each status call: the Nth answer says N
    // requests received.
    let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    router.web.before_call(move |object, method| {
        if (object, method) == ("ntpgate", "status") {
            let reply = exchange(
                "127.0.0.1:0".parse().unwrap(),
                server,
                &request(4, 3, 6, ntp_now()),
                Duration::from_secs(2),
            );
            assert!(reply.is_some(), "the daemon answers NTP");
        }
    });
    let url = router.view("polling", "ntpgate/status.js", "");
    let t = text(&dump(url.as_str()));
    let calls = router
        .web
        .calls()
        .iter()
        .filter(|c| c.method == "status")
        .count();
    let shown: usize = t
        .split("Requests received ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no request count in:\n{t}"));
    // load, the poll at once, and the poll 5 s later.
    assert!(calls >= 3, "{calls} status calls");
    assert!(
        shown >= 3 && shown <= calls,
        "the page shows {shown} of {calls}:\n{t}"
    );
    screenshot(&url, "status-polled");
}

/// UCI for the settings tests: the package's default config, a pinhole
/// and a firewall section.
fn settings_uci() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("openwrt-package/ntpgate/files/ntpgate.config"),
    )
    .unwrap()
        + "config pinhole 'nas'\n\toption interface 'lan'\n\toption suffix '::50'\nconfig firewall 'fw'\n"
}

/// Type each (section, option, value) into the settings form on a page
/// of `router`, in turn, as a person would: the DOM, the page's URL, and
/// per case the form's verdict (None when it accepts) and the option's
/// form value after typing (a list's is what Save would write).
fn validate_on_page(
    router: &Router,
    name: &str,
    cases: &[(&str, &str, &str)],
) -> (String, String, Vec<(Option<String>, Value)>) {
    let js_cases = serde_json::to_string(cases).unwrap();
    let after = format!(
        "var cases = {js_cases}, r = [];\
         cases.reduce(function(p, c) {{ return p.then(function() {{ return window.luciValidate(c[0], c[1], c[2]).then(function(v) {{\
         r.push([ v === true ? null : String(v), window.FORM_MAP.lookup(c[1], c[0]).formvalue(c[0]) ]); }}); }}); }}, Promise.resolve())\
         .then(function() {{ var pre = document.createElement('pre'); pre.id = 'validation'; pre.textContent = JSON.stringify(r);\
         document.getElementById('maincontent').appendChild(pre); }});"
    );
    let url = router.view(name, "ntpgate/settings.js", &after);
    let dom = dump(&url);
    let results: Vec<(Option<String>, Value)> = serde_json::from_str(
        &dom.split("<pre id=\"validation\">")
            .nth(1)
            .expect("the validation results")
            .split("</pre>")
            .next()
            .unwrap()
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
    .unwrap();
    assert_eq!(results.len(), cases.len());
    (dom, url, results)
}

/// The real `ntpgate check` on `config`, beside a network config with the
/// interface 'lan': its first error, or None when the daemon would take
/// the file.
fn ntpgate_check(config: &str) -> Option<String> {
    let dir = scratch_dir();
    std::fs::write(
        dir.join("network"),
        "config interface 'lan'\n\toption device 'br-lan'\n",
    )
    .unwrap();
    let path = dir.join("ntpgate");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    match out.status.code() {
        Some(0) => None,
        Some(1) => Some(
            report
                .lines()
                .find(|l| l.contains(": error: "))
                .unwrap_or(&report)
                .to_string(),
        ),
        other => panic!("ntpgate check exited with {other:?}:\n{report}"),
    }
}

#[test]
fn settings_form_validates_as_ntpgate_check() {
    let router = Router::new(&settings_uci());
    // (section, option, value): every validated option, good and bad values.
    let cases: Vec<(&str, &str, &str)> = vec![
        ("main", "port", "123"),
        ("main", "port", "0"),
        ("main", "port", "65536"),
        ("main", "port", "x"),
        ("main", "ratelimit_burst", "8"),
        ("main", "ratelimit_burst", "0"),
        ("main", "ratelimit_burst", "1025"),
        ("main", "ratelimit_interval", "0.5"),
        ("main", "ratelimit_interval", "0"),
        ("main", "ratelimit_interval", "x"),
        ("main", "ratelimit_leak", "16"),
        ("main", "ratelimit_leak", "17"),
        ("main", "ratelimit_prefix6", "64"),
        ("main", "ratelimit_prefix6", "8"),
        ("main", "min_sources", "3"),
        ("main", "min_sources", "0"),
        ("main", "min_sources", "17"),
        ("main", "makestep", "0.128"),
        ("main", "makestep", "-1"),
        ("main", "max_distance", "1"),
        ("main", "max_distance", "0.0001"),
        ("main", "max_distance", "17"),
        ("main", "local_stratum", "3"),
        ("main", "local_stratum", "0"),
        ("main", "local_stratum", "16"),
        ("main", "pinhole_timeout", "60"),
        ("main", "pinhole_timeout", "2"),
        ("main", "upstream", "time.example.net"),
        ("main", "upstream", "[2001:db8::1]:1123"),
        ("main", "upstream", "2001:db8::1"),
        ("main", "upstream", "ntp.example.org:0"),
        ("main", "upstream", "ntp.example.org:70000"),
        ("main", "upstream", "bad host"),
        ("main", "upstream", "[2001:db8::1"),
        ("main", "upstream", "0.pool.ntp.org"),
        ("nas", "suffix", "::50"),
        ("nas", "suffix", "::1:0:0:0:50"),
        ("nas", "suffix", "::"),
        ("nas", "suffix", "50"),
        ("nas", "address", "2001:db8::123"),
        ("nas", "address", "fd00::1"),
        ("nas", "address", "nope"),
        ("nas", "mac", "02:11:22:33:44:55"),
        ("nas", "mac", "01:00:5e:00:00:01"),
        ("nas", "mac", "02:11:22:33:44"),
        ("nas", "health_interval", "60"),
        ("nas", "health_interval", "0"),
        ("nas", "limit_pps", "50"),
        ("nas", "limit_pps", "0"),
    ];
    let (dom, url, checked) = validate_on_page(&router, "settings", &cases);
    let results: Vec<Option<String>> = checked.into_iter().map(|(verdict, _)| verdict).collect();
    let t = text(&dom);
    assert_shows(
        &t,
        &[
            "NTP server",
            "Server",
            "Upstream servers",
            "Rate limiting",
            "Pinholes",
            "Serve the WAN",
            "Limit per source (packets/s)",
            "nas",
        ],
    );
    assert_eq!(results.len(), cases.len());
    // LuCI's own datatype message (shared/fixtures/luci/README.md).
    assert_eq!(
        results[3].as_deref(),
        Some("Expecting: valid port value"),
        "port x"
    );
    for ((section, option, value), ui) in cases.iter().zip(&results) {
        let text = if *section == "main" {
            let list = if *option == "upstream" {
                "list"
            } else {
                "option"
            };
            format!(
                "config server 'main'\n\toption local_stratum '3'\n\t{list} {option} '{value}'\n"
            )
        } else if ["suffix", "mac", "address"].contains(option) {
            format!(
                "config server 'main'\n\toption local_stratum '3'\nconfig pinhole 'nas'\n\toption {option} '{value}'\n"
            )
        } else {
            format!(
                "config server 'main'\n\toption local_stratum '3'\nconfig pinhole 'nas'\n\toption suffix '::50'\n\toption {option} '{value}'\n"
            )
        };
        // local_stratum's own cases replace the line above.
        let text = if *option == "local_stratum" {
            format!("config server 'main'\n\tlist upstream 'a'\n\toption local_stratum '{value}'\n")
        } else {
            text
        };
        let check_error = ntpgate_check(&text);
        assert_eq!(
            ui.is_some(),
            check_error.is_some(),
            "{section}.{option} = {value:?}: the form says {ui:?}, ntpgate check says {check_error:?}"
        );
    }
    screenshot(&url, "settings");
}

/// listen, allow and deny: what the form lets into the list is what
/// `ntpgate check` takes, with the list it joins (a listen address beside
/// a wildcard, twice, in another spelling), and what the form refuses
/// `ntpgate check` refuses.
#[test]
fn address_lists_validate_as_ntpgate_check() {
    let addresses = [
        "192.0.2.1",
        "::1",
        "::",
        "0.0.0.0",
        "0:0::0",
        "2001:db8::7",
        "2001:DB8:0::7",
        "::ffff:192.0.2.1",
        "1::2:3:4:5:6:7",
        "::1:2:3:4:5:6:7",
        "1:2:3:4:5:6:7::",
        "1:2:3:4:5:6:7:8",
        "1:2:3:4:5:6:7:8:9",
        "1::2::3",
        "::1.2.3.4",
        "1:2:3:4:5:6:1.2.3.4",
        "1.2.3.4::",
        "12345::1",
        "01.2.3.4",
        "1.2.3",
        "256.1.1.1",
        "fe80::1%eth0",
        "[::1]",
        "127.0.0.1:123",
        "localhost",
    ];
    let prefixes = [
        "10.0.0.0/8",
        "10.0.0.1",
        "10.0.0.0/33",
        "10.0.0.0/+8",
        "10.0.0.0/08",
        "10.0.0.0/",
        "10.0.0.0/8/8",
        "10.0.0.0/-1",
        "10.0.0.0/256",
        "/8",
        "nope/8",
        "2001:db8::/32",
        "2001:db8::/129",
        "::ffff:10.0.0.0/24",
        "::ffff:10.0.0.0/104",
        "2001:db8::1/64",
    ];
    // Two lists for listen to join: the package's ('::'), and an IPv4
    // wildcard beside an IPv6 address; allow and deny join a prefix.
    let contexts = [
        ("shipped", vec!["::"]),
        ("wildcard4", vec!["0.0.0.0", "2001:db8::7"]),
    ];
    for (name, listen) in contexts {
        let mut uci = "config server 'main'\n\toption local_stratum '3'\n\tlist allow '192.0.2.0/24'\n\tlist deny '192.0.2.0/24'\n".to_string();
        for l in &listen {
            uci += &format!("\tlist listen '{l}'\n");
        }
        let router = Router::new(&uci);
        let mut cases: Vec<(&str, &str, &str)> =
            addresses.iter().map(|a| ("main", "listen", *a)).collect();
        if name == "shipped" {
            for option in ["allow", "deny"] {
                cases.extend(prefixes.iter().map(|p| ("main", option, *p)));
            }
        }
        let (_, _, results) = validate_on_page(&router, &format!("address-lists-{name}"), &cases);
        let mut refused = 0;
        for ((_, option, value), (verdict, formvalue)) in cases.iter().zip(&results) {
            let before: Vec<&str> = match *option {
                "listen" => listen.clone(),
                _ => vec!["192.0.2.0/24"],
            };
            // Accepted: the list as Save would write it. Refused: the list
            // with the value added, as a person would write the file.
            let list: Vec<String> = if verdict.is_none() {
                serde_json::from_value(formvalue.clone()).expect("a list")
            } else {
                let mut l: Vec<String> = before.iter().map(|v| v.to_string()).collect();
                l.push(value.to_string());
                l
            };
            if verdict.is_some() {
                refused += 1;
                assert!(
                    !formvalue
                        .as_array()
                        .is_some_and(|l| l.contains(&json!(value))),
                    "{option} {value:?}: refused, yet in the form value {formvalue}"
                );
            }
            let mut config = "config server 'main'\n\toption local_stratum '3'\n".to_string();
            for (o, values) in [
                (
                    "listen",
                    listen.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
                ),
                ("allow", vec!["192.0.2.0/24".to_string()]),
                ("deny", vec!["192.0.2.0/24".to_string()]),
            ] {
                for v in if o == *option { &list } else { &values } {
                    config += &format!("\tlist {o} '{v}'\n");
                }
            }
            let check_error = ntpgate_check(&config);
            assert_eq!(
                verdict.is_some(),
                check_error.is_some(),
                "{name}: {option} {value:?}: the form says {verdict:?}, ntpgate check says {check_error:?} of\n{config}"
            );
        }
        // Both kinds are in the table.
        assert!(
            refused > 0 && refused < cases.len(),
            "{name}: {refused} refused"
        );
    }
}

fn daemon_reads(text: &str) -> ntpgate::config::Config {
    let network = Interfaces::parse(
        "config interface 'lan'\n\toption device 'br-lan'\n",
        "network",
    );
    let loaded = ntpgate::config::parse(text, "ntpgate", &network);
    assert!(
        loaded.errors().next().is_none(),
        "{:?}\n{text}",
        loaded.diagnostics
    );
    loaded.config.unwrap()
}

/// JS: press the page's Save button.
const PRESS_SAVE: &str = "Array.prototype.filter.call(document.querySelectorAll('.cbi-page-actions button'),\
                          function(b) { return b.textContent == 'Save'; })[0].click();";

/// Open the settings with `uci`, press Save; what UCI then holds.
fn save(name: &str, uci: &str) -> (Router, Uci) {
    let router = Router::new(uci);
    let t = text(&dump(&router.view(name, "ntpgate/settings.js", PRESS_SAVE)));
    assert!(!t.contains("Save error"), "{t}");
    let saved = router.web.uci();
    (router, saved)
}

/// A value the form refuses stops Save: LuCI's "Save error" dialog says
/// which option and why, and nothing reaches UCI.
#[test]
fn settings_save_refuses_an_invalid_value() {
    let router = Router::new(&settings_uci());
    let after =
        format!("window.luciValidate('main', 'port', 'x').then(function() {{ {PRESS_SAVE} }});");
    let t = text(&dump(&router.view(
        "settings-save-invalid",
        "ntpgate/settings.js",
        &after,
    )));
    assert_shows(
        &t,
        &[
            "Save error",
            "Option \"Port\" contains an invalid input value. Expecting: valid port value",
        ],
    );
    let writes: Vec<String> = router
        .web
        .calls()
        .into_iter()
        .filter(|c| c.object == "uci" && c.method != "get")
        .map(|c| c.method)
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
}

#[test]
fn settings_save_keeps_what_the_daemon_reads() {
    // The package's config as shipped: Save drops the flags that equal
    // their default (ratelimit '1', serve_wan '0') and every comment.
    let shipped = settings_uci();
    let (router, saved) = save("settings-save-default", &shipped);
    let deletes: Vec<Value> = router
        .web
        .calls()
        .into_iter()
        .filter(|c| (c.object.as_str(), c.method.as_str()) == ("uci", "delete"))
        .map(|c| c.args)
        .collect();
    assert!(
        deletes.iter().any(|a| a["section"] == "main"
            && a["options"].as_array().is_some_and(
                |o| o.contains(&json!("ratelimit")) && o.contains(&json!("serve_wan"))
            )),
        "uci delete of the default-valued flags: {deletes:?}"
    );
    let file = saved.export();
    assert!(!file.contains('#'), "{file}");
    assert!(!file.contains("option ratelimit '1'"), "{file}");
    assert_eq!(daemon_reads(&file), daemon_reads(&shipped), "{file}");

    // Every flag set, to the daemon's default and away from it, in the
    // spellings the daemon accepts (README: 1/0, yes/no, on/off,
    // true/false, enabled/disabled).
    for (name, on, off) in [
        ("settings-save-flags-10", "1", "0"),
        ("settings-save-flags-yes", "yes", "no"),
        ("settings-save-flags-on", "on", "off"),
        ("settings-save-flags-true", "true", "false"),
        ("settings-save-flags-enabled", "enabled", "disabled"),
    ] {
        for (first, second) in [(on, off), (off, on)] {
            let uci = format!(
                "config server 'main'\n\toption enabled '{first}'\n\toption local_stratum '3'\n\toption serve_wan '{first}'\n\toption clock_control '{second}'\n\toption ratelimit '{first}'\n\toption ratelimit_kod '{first}'\n\
                 config pinhole 'nas'\n\toption enabled '{second}'\n\toption suffix '::50'\n\toption health_check '{first}'\n"
            );
            let (_, saved) = save(name, &uci);
            let file = saved.export();
            assert_eq!(
                daemon_reads(&file),
                daemon_reads(&uci),
                "{uci}\nsaved as\n{file}"
            );
        }
    }
}

#[test]
fn placeholders_are_the_daemons_defaults() {
    let router = Router::new(&settings_uci());
    let after = "var rows = [];\
        window.FORM_MAP.children.forEach(function(s) { s.children.forEach(function(o) {\
          if (o.placeholder != null) rows.push([s.sectiontype, o.option, String(o.placeholder)]); }); });\
        var pre = document.createElement('pre'); pre.id = 'placeholders'; pre.textContent = JSON.stringify(rows);\
        document.getElementById('maincontent').appendChild(pre);";
    let dom = dump(&router.view("settings-placeholders", "ntpgate/settings.js", after));
    let rows: Vec<(String, String, String)> = serde_json::from_str(
        &dom.split("<pre id=\"placeholders\">")
            .nth(1)
            .expect("the placeholders")
            .split("</pre>")
            .next()
            .unwrap()
            .replace("&quot;", "\""),
    )
    .unwrap();
    assert!(rows.len() > 15, "{rows:?}");
    let network = Interfaces::parse(
        "config interface 'lan'\n\toption device 'br-lan'\n",
        "network",
    );
    let base = |section: &str, extra: &str| match section {
        "server" => format!("config server 'main'\n\toption local_stratum '3'\n{extra}"),
        "firewall" => {
            format!(
                "config server 'main'\n\toption local_stratum '3'\nconfig firewall 'fw'\n{extra}"
            )
        }
        _ => format!(
            "config server 'main'\n\toption local_stratum '3'\nconfig pinhole 'nas'\n\toption suffix '::50'\n{extra}"
        ),
    };
    // The suffix's placeholder shows the form of a value; there is no default.
    let examples = [("pinhole", "suffix")];
    for (section, option, placeholder) in &rows {
        if examples.contains(&(section.as_str(), option.as_str())) {
            continue;
        }
        let kind = if option == "listen" { "list" } else { "option" };
        let absent = ntpgate::config::parse(&base(section, ""), "t", &network);
        let given = ntpgate::config::parse(
            &base(section, &format!("\t{kind} {option} '{placeholder}'\n")),
            "t",
            &network,
        );
        // A placeholder that is no value at all describes the default.
        if given.errors().next().is_some() {
            assert!(
                placeholder.contains(' '),
                "{section}.{option}: placeholder {placeholder:?} looks like a value but is refused"
            );
            continue;
        }
        assert_eq!(
            given.config, absent.config,
            "{section}.{option}: the placeholder {placeholder:?} is not the daemon's default"
        );
    }
}

#[test]
fn grid_leaves_modalonly_options_to_the_dialog() {
    let router = Router::new(&settings_uci());
    let after = "document.querySelector('.cbi-section-table-row .cbi-button-edit').click();";
    let dom = dump(&router.view("settings-grid", "ntpgate/settings.js", after));
    let grid = dom
        .split("cbi-section-table-titles\">")
        .nth(1)
        .expect("the grid's title row")
        .split("</tr>")
        .next()
        .unwrap();
    let columns = visible(grid);
    assert_shows(
        &columns,
        &["Name", "Enabled", "Interface", "Suffix", "Limit per source"],
    );
    assert!(!columns.contains("Device"), "{columns}");
    let dialog = dom
        .split("id=\"modal_overlay\"")
        .nth(1)
        .expect("the edit dialog");
    assert_shows(&visible(dialog), &["nas", "Device", "Interface", "Suffix"]);
}

#[test]
fn app_files_are_consistent() {
    let app = Path::new(APP);
    let views: Vec<PathBuf> = [
        "view/ntpgate/status.js",
        "view/ntpgate/settings.js",
        "view/status/include/50_ntpgate.js",
        "ntpgate.js",
    ]
    .iter()
    .map(|v| app.join("htdocs/luci-static/resources").join(v))
    .collect();
    // Every JSON file parses; every view and module is valid JavaScript.
    for json_file in [
        "root/usr/share/luci/menu.d/luci-app-ntpgate.json",
        "root/usr/share/rpcd/acl.d/luci-app-ntpgate.json",
        "root/usr/share/ucitrack/luci-app-ntpgate.json",
    ] {
        let text = std::fs::read_to_string(app.join(json_file)).unwrap();
        serde_json::from_str::<Value>(&text).unwrap_or_else(|e| panic!("{json_file}: {e}"));
    }
    let node = require("node", "nodejs");
    for v in &views {
        run_ok(Command::new(&node).arg("--check").arg(v));
    }
    // The ACL grants exactly the ubus methods the app calls.
    let mut called: Vec<String> = Vec::new();
    for v in &views {
        let source = std::fs::read_to_string(v).unwrap();
        for decl in source.split("rpc.declare({").skip(1) {
            let field = |name: &str| {
                decl.split(&format!("{name}: '"))
                    .nth(1)
                    .and_then(|r| r.split('\'').next())
                    .unwrap()
                    .to_string()
            };
            called.push(format!("{}.{}", field("object"), field("method")));
        }
    }
    called.sort();
    called.dedup();
    let acl = app_acl();
    let mut granted: Vec<String> = Vec::new();
    for mode in ["read", "write"] {
        for (object, methods) in acl["luci-app-ntpgate"][mode]["ubus"]
            .as_object()
            .into_iter()
            .flatten()
        {
            for m in methods.as_array().unwrap() {
                granted.push(format!("{object}.{}", m.as_str().unwrap()));
            }
        }
    }
    granted.sort();
    assert_eq!(
        granted, called,
        "the ACL's ubus methods against the views' calls"
    );
    assert_eq!(
        acl["luci-app-ntpgate"]["write"]["ubus"]["ntpgate"],
        json!(["reload"]),
        "write: reload only"
    );
    assert_eq!(acl["luci-app-ntpgate"]["write"]["uci"], json!(["ntpgate"]));
    // The menu's views exist.
    let menu: Value = serde_json::from_str(
        &std::fs::read_to_string(app.join("root/usr/share/luci/menu.d/luci-app-ntpgate.json"))
            .unwrap(),
    )
    .unwrap();
    let mut pointed = 0;
    for (entry, item) in menu.as_object().unwrap() {
        if item["action"]["type"] == "view" {
            let path = app
                .join(VIEWS)
                .join(format!("{}.js", item["action"]["path"].as_str().unwrap()));
            assert!(path.exists(), "{entry} points at {}", path.display());
            pointed += 1;
        }
    }
    assert_eq!(pointed, 2);
    // The .pot has exactly the _() strings of the views.
    run_ok(Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("luci-app/pot")).arg("--check"));
}

#[test]
fn luci_package_holds_the_app() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    run_ok(Command::new(root.join("cross/package")).arg("luci"));
    let ipk = root.join(format!(
        "dist/luci-app-ntpgate_{}-r1_all.ipk",
        env!("CARGO_PKG_VERSION")
    ));
    let dir = scratch_dir();
    run_ok(
        Command::new("tar")
            .arg("-xzf")
            .arg(&ipk)
            .arg("-C")
            .arg(&dir),
    );
    let data = run_ok(
        Command::new("tar")
            .arg("-tzvf")
            .arg(dir.join("data.tar.gz")),
    );
    for path in [
        "./www/luci-static/resources/view/ntpgate/status.js",
        "./www/luci-static/resources/view/ntpgate/settings.js",
        "./www/luci-static/resources/view/status/include/50_ntpgate.js",
        "./www/luci-static/resources/ntpgate.js",
        "./usr/share/luci/menu.d/luci-app-ntpgate.json",
        "./usr/share/rpcd/acl.d/luci-app-ntpgate.json",
        "./usr/share/ucitrack/luci-app-ntpgate.json",
    ] {
        let line = data
            .lines()
            .find(|l| l.ends_with(path))
            .unwrap_or_else(|| panic!("{path} missing:\n{data}"));
        assert!(line.starts_with("-rw-r--r-- 0/0"), "{line}");
    }
    let control = run_ok(
        Command::new("tar")
            .arg("-xzOf")
            .arg(dir.join("control.tar.gz"))
            .arg("./control"),
    );
    for field in [
        "Package: luci-app-ntpgate",
        "Architecture: all",
        "Depends: libc, luci-base, ntpgate",
    ] {
        assert!(control.contains(field), "{field} in:\n{control}");
    }
}
