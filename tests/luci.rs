//! luci-app-ntpgate in headless Chromium: the views, loaded by a shim of
//! LuCI's JavaScript API (tests/luci/shim.js), render real `status` answers
//! captured here from the running daemon (synchronised to four chronyd
//! upstreams, unsynchronised, a closed pinhole, no upstreams); the
//! assertions are on the text a person sees, and screenshots land in
//! target/luci-screenshots/. The settings form validates as `ntpgate
//! check` does, case by case. And the app's files: the ACL covers exactly
//! the ubus methods the views call, the menu points at views that exist,
//! the .pot is in step with the _() strings, every file parses.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::ubusd::Ubusd;
use common::*;
use ntpgate::config::network::Interfaces;
use ntpgate::ubus::blob::Msg;
use ntpgate::ubus::session::Connection;
use serde_json::{Value, json};

const APP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/luci-app/luci-app-ntpgate");
const VIEWS: &str = "htdocs/luci-static/resources/view";

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

/// Run the daemon with `config` on a test ubusd until its status satisfies
/// `ready`; that status.
fn capture(config: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let socket = scratch_dir().join("ubus.sock");
    let _ubusd = Ubusd::start(&socket);
    let config = config.replacen(
        "config server\n",
        &format!(
            "config server\n\toption ubus_socket '{}'\n",
            socket.display()
        ),
        1,
    );
    let d = Daemon::start(&config, 1);
    let start = Instant::now();
    loop {
        if let Some(status) = call_status(&socket).filter(|s| ready(s)) {
            return status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "status never ready: {}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn chromium() -> PathBuf {
    require("chromium", "chromium")
}

/// A page that renders `view` (a file under the app's view directory) with
/// the shim, `ubus` answers and `uci` data, then runs `after` (JS).
fn page(name: &str, view: &str, ubus: &Value, uci: &Value, after: &str) -> PathBuf {
    let shim =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/luci/shim.js"))
            .unwrap();
    let source = std::fs::read_to_string(Path::new(APP).join(VIEWS).join(view)).unwrap();
    let html = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{name}</title></head>\
         <body style=\"font-family: sans-serif\"><div id=\"maincontent\"></div>\
         <script>{shim}</script>\
         <script>window.UBUS = {ubus}; window.UCI = {uci};\
         window.renderView({source}).then(function() {{ {after} }});</script></body></html>",
        source = serde_json::to_string(&source).unwrap(),
    );
    let path = scratch_dir().join(format!("{name}.html"));
    std::fs::write(&path, html).unwrap();
    path
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
        "--virtual-time-budget=5000",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("--user-data-dir={}", dir.display())])
    .collect()
}

/// The DOM after the page's scripts ran, and a screenshot of it.
fn render(page: &Path, screenshot: &str) -> String {
    let profile = scratch_dir();
    let out = Command::new(chromium())
        .args(chromium_args(&profile))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        dom.contains("data-rendered=\"yes\""),
        "the view did not render:\n{dom}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/luci-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let png = shots.join(format!("{screenshot}.png"));
    let _ = std::fs::remove_file(&png);
    let profile = scratch_dir();
    run_ok(
        Command::new(chromium())
            .args(chromium_args(&profile))
            .arg(format!("--screenshot={}", png.display()))
            .arg("--window-size=1280,2400")
            .arg(format!("file://{}", page.display())),
    );
    assert!(
        std::fs::metadata(&png).unwrap().len() > 10_000,
        "screenshot {}",
        png.display()
    );
    dom
}

/// The visible text of a DOM dump, tags dropped, entities decoded.
fn text(dom: &str) -> String {
    let body = dom.split("<div id=\"maincontent\">").nth(1).unwrap_or(dom);
    let body = body.split("<script>").next().unwrap_or(body);
    let mut out = String::new();
    let mut in_tag = false;
    for c in body.chars() {
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
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn assert_shows(text: &str, expected: &[&str]) {
    for e in expected {
        assert!(text.contains(e), "missing {e:?} in:\n{text}");
    }
}

fn status_page(name: &str, status: &Value) -> String {
    let ubus = json!({ "ntpgate": { "status": status, "reload": { "result": "applied" } } });
    text(&render(
        &page(name, "ntpgate/status.js", &ubus, &json!({}), ""),
        &format!("status-{name}"),
    ))
}

#[test]
fn status_page_renders_real_status_answers() {
    require("chronyd", "chrony");
    // Synchronised to four upstreams (chronyd -x, stratum 1; observe mode).
    let upstreams: Vec<Chronyd> = (0..4).map(|_| Chronyd::server(1)).collect();
    let lines: String = upstreams
        .iter()
        .map(|c| format!("\tlist upstream '127.0.0.1:{}'\n", c.port))
        .collect();
    let synced = capture(
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
    let t = status_page("synchronised", &synced);
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

    // Unsynchronised: its upstreams never answer.
    let unsynced = capture(
        &format!(
            "config server\n\tlist listen '127.0.0.1'\n\toption port '{}'\n{SILENT_UPSTREAM}",
            free_port()
        ),
        |s| s["upstreams"].as_array().is_some_and(|u| !u.is_empty()),
    );
    let t = status_page("unsynchronised", &unsynced);
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

    // A pinhole whose device is not there: closed, and why.
    let closed = capture(
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
    let t = status_page("pinhole-closed", &closed);
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

    // No upstreams, the local clock served (a lab).
    let local = capture(
        &format!(
            "config server\n\tlist listen '127.0.0.1'\n\toption port '{}'\n\toption local_stratum '3'\n",
            free_port()
        ),
        |s| s["sync"]["synchronised"] == true,
    );
    let t = status_page("no-upstreams", &local);
    assert_shows(
        &t,
        &[
            "Serving the local clock (local_stratum): for labs only",
            "No upstream servers are configured.",
            "\u{2718} No pool or leap-smearing upstream servers",
        ],
    );

    // The Status > Overview widget, and the daemon not answering.
    let ubus = json!({ "ntpgate": { "status": synced } });
    let t = text(&render(
        &page(
            "widget",
            "status/include/50_ntpgate.js",
            &ubus,
            &json!({}),
            "",
        ),
        "overview-widget",
    ));
    assert_shows(&t, &["Synchronised", "Stratum 2", "Pinholes open 0 / 0"]);
    let t = text(&render(
        &page("down", "ntpgate/status.js", &json!({}), &json!({}), ""),
        "status-daemon-down",
    ));
    assert_shows(&t, &["The ntpgate daemon does not answer on ubus"]);
}

/// UCI data as LuCI's uci.js holds it, from a UCI file.
fn uci_json(text: &str) -> Value {
    let file = ntpgate::config::uci::parse(text).unwrap();
    let mut config = serde_json::Map::new();
    for (n, s) in file.sections.iter().enumerate() {
        let name = s.name.clone().unwrap_or_else(|| format!("cfg{n:02x}"));
        let mut section = serde_json::Map::new();
        section.insert(".type".into(), json!(s.kind));
        for o in &s.options {
            if o.is_list {
                let list = section.entry(o.name.clone()).or_insert_with(|| json!([]));
                list.as_array_mut().unwrap().push(json!(o.value));
            } else {
                section.insert(o.name.clone(), json!(o.value));
            }
        }
        config.insert(name, Value::Object(section));
    }
    json!({ "ntpgate": config })
}

#[test]
fn settings_form_validates_as_ntpgate_check() {
    let default = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("openwrt-package/ntpgate/files/ntpgate.config"),
    )
    .unwrap();
    let uci = uci_json(
        &(default.clone()
            + "config pinhole 'nas'\n\toption interface 'lan'\nconfig firewall 'fw'\n"),
    );
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
    let js_cases = serde_json::to_string(&cases).unwrap();
    let after = format!(
        "var r = {js_cases}.map(function(c) {{ var v = window.FORM_MAP.validate(c[0], c[1], c[2]); return v === true ? null : String(v); }});\
         var pre = document.createElement('pre'); pre.id = 'validation'; pre.textContent = JSON.stringify(r);\
         document.getElementById('maincontent').appendChild(pre);"
    );
    let dom = render(
        &page("settings", "ntpgate/settings.js", &json!({}), &uci, &after),
        "settings",
    );
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
    let results: Vec<Option<String>> = serde_json::from_str(
        &dom.split("<pre id=\"validation\">")
            .nth(1)
            .unwrap()
            .split("</pre>")
            .next()
            .unwrap()
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">"),
    )
    .unwrap();
    let network = Interfaces::parse(
        "config interface 'lan'\n\toption device 'br-lan'\n",
        "network",
    );
    for ((section, option, value), ui) in cases.iter().zip(&results) {
        let text = if *section == "fw" {
            format!(
                "config server 'main'\n\toption local_stratum '3'\nconfig firewall 'fw'\n\toption {option} '{value}'\n"
            )
        } else if *section == "main" {
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
        let checked = ntpgate::config::parse(&text, "t", &network);
        let check_error = checked.errors().next().map(|d| d.message.clone());
        assert_eq!(
            ui.is_some(),
            check_error.is_some(),
            "{section}.{option} = {value:?}: the form says {ui:?}, ntpgate check says {check_error:?}"
        );
    }
}

#[test]
fn app_files_are_consistent() {
    let app = Path::new(APP);
    let views: Vec<PathBuf> = [
        "ntpgate/status.js",
        "ntpgate/settings.js",
        "status/include/50_ntpgate.js",
    ]
    .iter()
    .map(|v| app.join(VIEWS).join(v))
    .collect();
    // Every JSON file parses; every view is valid JavaScript.
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
    // The ACL grants exactly the ubus methods the views call.
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
    let acl: Value = serde_json::from_str(
        &std::fs::read_to_string(app.join("root/usr/share/rpcd/acl.d/luci-app-ntpgate.json"))
            .unwrap(),
    )
    .unwrap();
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
